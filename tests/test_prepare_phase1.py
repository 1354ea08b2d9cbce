"""prepare/phase1.py end to end: a run killed midway resumes only its unfinished tasks and ends
with exactly the output of an uninterrupted run."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import stdlib_dir

ROOT = Path(__file__).resolve().parent.parent


def make_input(tmp_path):
    src = tmp_path / "src"
    for sub in ("json", "email", "xml/dom", "concurrent/futures"):
        for f in sorted((stdlib_dir() / sub).glob("*.py"))[:8]:
            dst = src / sub / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
    shutil.copyfile(stdlib_dir() / "json" / "decoder.py", src / "email" / "decoder_copy.py")   # an exact duplicate
    return src


def phase1_cmd(out, src, tok, bench):
    return [sys.executable, "-m", "prepare.phase1", "--out", str(out), "--input", str(src), "--tokenizer", str(tok),
            "--benchmarks", str(bench), "--tasks", "4", "--workers", "1"]


def test_killed_run_resumes_and_matches(tmp_path, tiny_tokenizer_path, bench_dir):
    src = make_input(tmp_path)
    bench = tmp_path / "bench"                       # one benchmark keeps the index build short
    bench.mkdir()
    os.symlink(bench_dir / "HumanEval.jsonl.gz", bench / "HumanEval.jsonl.gz")
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    # uninterrupted reference run
    ref = subprocess.run(phase1_cmd(tmp_path / "ref", src, tiny_tokenizer_path, bench), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]

    # the same run, SIGKILLed as soon as its second filter task is done
    out = tmp_path / "run"
    p = subprocess.Popen(phase1_cmd(out, src, tiny_tokenizer_path, bench), cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not (out / "filter" / "done-00001").exists() and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.005)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done_filter = len(list((out / "filter").glob("done-*")))
    if (out / "shards" / "manifest.json").exists():
        pytest.skip("the run finished before it could be killed")
    assert 2 <= done_filter <= 4 and not (out / "dedup" / "done-00003").exists()

    res = subprocess.run(phase1_cmd(out, src, tiny_tokenizer_path, bench), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    log = res.stdout + res.stderr
    assert "ingest: 4 task(s) already done, skipped" in log
    if done_filter < 4:
        assert f"filter: {done_filter} task(s) already done, skipped" in log

    # identical output, byte for byte
    for step in ("ingest", "filter", "dedup", "decontaminate", "shards"):
        names = sorted(p.name for p in (tmp_path / "ref" / step).iterdir()
                       if p.name.startswith(("part-", "train-", "val-", "sequences-")))
        assert names == sorted(p.name for p in (out / step).iterdir()
                               if p.name.startswith(("part-", "train-", "val-", "sequences-")))
        assert names, step
        for n in names:
            assert (tmp_path / "ref" / step / n).read_bytes() == (out / step / n).read_bytes(), (step, n)
    import json
    a = json.loads((tmp_path / "ref" / "shards" / "manifest.json").read_text())
    b = json.loads((out / "shards" / "manifest.json").read_text())
    for k in ("shards", "tokens_per_language", "documents", "vocab_size", "eot_id"):
        assert a[k] == b[k]
    assert a["documents_dir"].endswith("ref/decontaminate") and b["documents_dir"].endswith("run/decontaminate")
    st = json.loads((out / "dedup" / "stats.json").read_text())
    assert st["dropped"].get("exact_duplicate") == 1


def test_tokenizer_sample_uniform_and_task_independent(tmp_path):
    """The tokenizer's sample: about the knob's size, drawn from every part and language, the same
    documents whether one task or three draw it."""
    import json
    from formats import read_docs, write_docs
    from prepare.phase1 import tokenizer_sample
    docs = []
    for i, f in enumerate(sorted(stdlib_dir().glob("*.py"))[:150]):
        lang = ("Python", "C", "Go")[i % 3]
        docs.append({"id": f"x{i}", "content": f.read_text(encoding="utf-8", errors="replace"), "language": lang,
                     "repo": "r", "path": f.name, "source": "t"})
    total = sum(len(d["content"].encode()) for d in docs)
    for k in range(3):
        write_docs(tmp_path / "docs" / f"part-{k:05d}.jsonl.gz", docs[k::3])
    (tmp_path / "docs" / "stats.json").write_text(json.dumps({"bytes_out": total}))
    mb = total / 4 / 1e6                                         # a quarter of the corpus
    one = tokenizer_sample(tmp_path / "docs", tmp_path / "s1", mb, 1337, tasks=1, task=None, workers=1)
    three = tokenizer_sample(tmp_path / "docs", tmp_path / "s3", mb, 1337, tasks=3, task=None, workers=1)
    ids1 = sorted(d["id"] for d in read_docs(tmp_path / "s1"))
    assert ids1 == sorted(d["id"] for d in read_docs(tmp_path / "s3"))
    assert 0.12 * total < one["bytes_out"] < 0.4 * total and one == {**one, "bytes_out": three["bytes_out"]}
    assert set(one["bytes_per_language"]) == {"Python", "C", "Go"}
    assert all(json.loads((tmp_path / "s3" / f"stats-{k:05d}.json").read_text())["docs_out"] > 0 for k in range(3))
