"""eval/run.py end to end: scoring a samples file, and generation with a tiny random model that is
killed mid-way and resumed."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from eval.run import main
from eval.data import load_benchmark


def test_samples_file_scored(bench_dir, tmp_path):
    he = load_benchmark("humaneval", bench_dir)[:4]
    rows = [dict(task_id=he[0]["task_id"], completion=he[0]["canonical_solution"]),
            dict(task_id=he[1]["task_id"], completion=he[1]["canonical_solution"]),
            dict(task_id=he[2]["task_id"], completion="    return None\n"),
            dict(task_id=he[3]["task_id"], solution="def broken(:\n    pass\n")]
    f = tmp_path / "samples.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    summary = main(["--samples", str(f), "--tasks", "humaneval,humaneval+", "--limit", "4", "--out", str(out),
                    "--data", str(bench_dir)])
    assert summary["humaneval"]["pass@1"] == pytest.approx(0.5)
    assert summary["humaneval+"]["pass@1"] == pytest.approx(0.5)
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["humaneval"]["tasks"] == 4
    md = (out / "summary.md").read_text()
    assert "| humaneval+ | 4 | 4 | 4 | 50.0 |" in md
    assert res["summary"]["humaneval+"]["label"] == "HumanEval+ (subset: 4 of 164 tasks, first 4)"
    assert "HumanEval+ (subset: 4 of 164 tasks, first 4)" in md
    verdicts = [json.loads(l) for l in (out / "verdicts-humaneval+.jsonl").read_text().splitlines()]
    failed = {v["task_id"]: v for v in verdicts if not v["passed"]}
    assert set(failed) == {he[2]["task_id"], he[3]["task_id"]}
    assert failed[he[2]["task_id"]]["first_failure"]["group"] == "base"
    assert "SyntaxError" in failed[he[3]["task_id"]]["first_failure"]["error"]


def test_generate_tiny_model_kill_and_resume(root, bench_dir, tiny_tokenizer_path, tmp_path):
    import torch
    from model import ModelConfig, Transformer
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt"
    Transformer(ModelConfig.from_preset("tiny")).save_pretrained(str(ckpt))
    shutil.copy(tiny_tokenizer_path, ckpt / "tokenizer.tiktoken")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "eval.run", "--ckpt", str(ckpt), "--tasks", "humaneval,humaneval+", "--limit", "6",
           "--batch-size", "1", "--max-new-tokens", "24", "--out", str(out), "--data", str(bench_dir)]
    env = dict(os.environ, PYTHONPATH=str(root))
    samples = out / "samples-humaneval.jsonl"
    # 1. start, and kill -9 as soon as some samples are on disk
    p = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        if samples.exists() and 1 <= len(samples.read_text().splitlines()) < 6:
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    p.wait()
    killed_with = len(samples.read_text().splitlines()) if samples.exists() else 0
    # simulate a torn write too
    with open(samples, "a") as f:
        f.write('{"task_id": "HumanEval/5", "sam')
    # 2. rerun the same command: it resumes and finishes
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l) for l in samples.read_text().splitlines()]
    keys = [(x["task_id"], x["sample"]) for x in rows]
    assert len(keys) == len(set(keys)) == 6, keys
    assert killed_with < 6 or p.returncode == 0
    # HumanEval+ shares 5 of these 6 prompts with HumanEval: generated once, reused
    plus = {x["task_id"]: x for x in map(json.loads, (out / "samples-humaneval+.jsonl").read_text().splitlines())}
    same = [x for x in rows if x["task_id"] != "HumanEval/115"]
    assert all(plus[x["task_id"]]["raw"] == x["raw"] for x in same)
    res = json.loads((out / "results.json").read_text())
    for t in ("humaneval", "humaneval+"):
        assert res["summary"][t]["tasks"] == 6 and 0.0 <= res["summary"][t]["pass@1"] <= 1.0
    # 3. execution resumes too: drop two verdicts (one torn) and rerun; only those are redone
    vpath = out / "verdicts-humaneval.jsonl"
    lines = vpath.read_text().splitlines()
    vpath.write_text("\n".join(lines[:4]) + "\n" + lines[4][:10])
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    again = [json.loads(l) for l in vpath.read_text().splitlines()]
    assert sorted((v["task_id"], v["sample"]) for v in again) == sorted(keys)


def test_api_backend_with_a_local_server(bench_dir, tmp_path):
    """--api-base against a stand-in OpenAI-compatible server that answers with the canonical
    body for two prompts and a wrong one for the third."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    he = load_benchmark("humaneval", bench_dir)[:3]
    answers = {t["prompt"].rstrip("\n"): "\n" + t["canonical_solution"] + "\ndef extra():\n    pass\n" for t in he[:2]}
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            texts = [answers.get(p, "\n    return None\n") for p in body["prompt"]]
            data = json.dumps({"choices": [{"index": i, "text": t} for i, t in enumerate(texts)]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "out"
        summary = main(["--api-base", f"http://127.0.0.1:{srv.server_port}/v1", "--model", "stand-in",
                        "--tasks", "humaneval", "--limit", "3", "--out", str(out), "--data", str(bench_dir)])
    finally:
        srv.shutdown()
    assert summary["humaneval"]["pass@1"] == pytest.approx(2 / 3)
    assert seen and seen[0]["model"] == "stand-in" and seen[0]["temperature"] == 0.0
    rows = [json.loads(l) for l in (out / "samples-humaneval.jsonl").read_text().splitlines()]
    assert all("def extra" not in r["completion"] for r in rows)  # cut at the stop string


def _bcb_copy_with_an_absent_module(bench_dir, tmp_path, task_id):
    """The BigCodeBench file with one task's test importing a module no machine has, so that task
    is skipped whatever is installed here."""
    import gzip
    from eval.data import benchmark_file
    rows = [json.loads(l) for l in gzip.open(benchmark_file("bigcodebench", bench_dir), "rt")]
    for r in rows:
        if r["task_id"] == task_id:
            r["test"] = "import snowcoder_absent_module\n" + r["test"]
    d = tmp_path / "bench"
    d.mkdir()
    with gzip.open(d / "BigCodeBench-v0.1.0_hf.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return d, {r["task_id"]: r for r in rows}


def test_bigcodebench_headline_counts_skipped_as_failures(bench_dir, tmp_path, capsys):
    """Samples for three tasks (one right, one wrong, one whose module is absent): pass@1 is over
    all 1,140 tasks (1/1140), the skipped task is listed with its reason, and the label says 1,140."""
    from eval.execute import is_stdlib_only, make_problems
    d, rows = _bcb_copy_with_an_absent_module(bench_dir, tmp_path, "BigCodeBench/3")
    probs = {p["task_id"]: p for p in make_problems("bigcodebench", d)}
    assert len(probs) == 1140 and is_stdlib_only(probs["BigCodeBench/1"])
    good, bad = probs["BigCodeBench/1"], probs["BigCodeBench/2"]
    f = tmp_path / "samples.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in [
        dict(task_id=good["task_id"], solution=good["canonical"]),
        dict(task_id=bad["task_id"], solution=bad["prompt"] + "    return None\n"),
        dict(task_id="BigCodeBench/3", solution=probs["BigCodeBench/3"]["canonical"])]))
    out = tmp_path / "out"
    s = main(["--samples", str(f), "--tasks", "bigcodebench", "--out", str(out), "--data", str(d), "--workers", "2"])
    row = s["bigcodebench"]
    assert row["pass@1"] == pytest.approx(1 / 1140) and row["tasks"] == 1140
    assert row["label"] == "BigCodeBench (1,140 tasks)" and row["subset"] is None
    assert "BigCodeBench/3" in row["skipped_ids"]
    assert any("snowcoder_absent_module" in r for r in row["skip_reasons"])
    assert row["scored"] == 2 and row["skipped"] + row["missing"] == 1138
    res = json.loads((out / "results.json").read_text())["summary"]["bigcodebench"]
    assert res["pass@1"] == pytest.approx(1 / 1140) and res["label"] == row["label"]
    md = (out / "summary.md").read_text()
    assert "| bigcodebench | 1140 | 2 | 2 | 0.1 |" in md and "BigCodeBench (1,140 tasks)" in md
    assert "over the 2 that ran: 50.0" in md
    assert "| bigcodebench | 1140 | 2 | 2 | 0.1 |" in capsys.readouterr().out


def test_bigcodebench_subset_is_labelled(bench_dir, tmp_path):
    """--bcb-subset stdlib --limit 3: pass@1 over those 3 (a task without a sample is a failure),
    labelled as a subset of 1,140 in results.json and summary.md, never as the full set."""
    from eval.execute import is_stdlib_only, make_problems
    first3 = [p for p in make_problems("bigcodebench", bench_dir) if is_stdlib_only(p)][:3]
    f = tmp_path / "samples.jsonl"
    assert first3[1]["task_id"] == "BigCodeBench/1"  # a quick one (BigCodeBench/0 walks 10! permutations)
    f.write_text(json.dumps(dict(task_id=first3[1]["task_id"], solution=first3[1]["canonical"])) + "\n")
    out = tmp_path / "out"
    s = main(["--samples", str(f), "--tasks", "bigcodebench", "--bcb-subset", "stdlib", "--limit", "3",
              "--out", str(out), "--data", str(bench_dir)])
    row = s["bigcodebench"]
    assert row["pass@1"] == pytest.approx(1 / 3) and (row["tasks"], row["full"], row["missing"]) == (3, 1140, 2)
    want = "BigCodeBench (subset: 3 of 1,140 tasks, stdlib-only, first 3)"
    assert row["label"] == want
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["bigcodebench"]["label"] == want and res["meta"]["bcb_subset"] == "stdlib"
    md = (out / "summary.md").read_text()
    assert want in md and "BigCodeBench (1,140 tasks)" not in md


def test_evoeval_headline_and_categories(tmp_path):
    """EvoEval's ground truth on the release-format fixtures through the CLI: the headline over all
    problems, one row per category beside it, a --limit run labelled a subset in both."""
    from pathlib import Path
    fix = Path(__file__).parent / "fixtures" / "evoeval"
    n = sum(1 for f in fix.glob("EvoEval_*.jsonl") for line in f.read_text().splitlines() if line.strip())
    s = main(["--ground-truth", "--tasks", "evoeval", "--out", str(tmp_path / "gt"), "--data", str(fix), "--workers", "2"])
    cats = ["difficult", "creative", "subtle", "combine", "tool_use"]
    assert s["evoeval"]["pass@1"] == 1.0 and s["evoeval"]["tasks"] == n
    assert all(s[f"evoeval/{c}"]["pass@1"] == 1.0 for c in cats)
    assert sum(s[f"evoeval/{c}"]["tasks"] == s[f"evoeval/{c}"]["scored"] for c in cats) == 5
    assert sum(s[f"evoeval/{c}"]["tasks"] for c in cats) == n
    assert "EvoEval difficult (" in (tmp_path / "gt" / "summary.md").read_text()
    sub = main(["--ground-truth", "--tasks", "evoeval", "--limit", "3", "--out", str(tmp_path / "sub"),
                "--data", str(fix), "--workers", "2"])
    assert sub["evoeval"]["label"] == f"EvoEval (subset: 3 of {n} tasks, first 3)"
    labelled = [sub[f"evoeval/{c}"]["label"] for c in cats if f"evoeval/{c}" in sub]
    assert labelled and all("subset:" in l for l in labelled)
