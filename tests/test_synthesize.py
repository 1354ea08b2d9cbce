"""synthesize.py: seeds, the client's retries and resume, post-processing, end to end against the
real `sample.py --serve` (tiny random model) and against a faulty server (500s, 429s, hangs,
dropped and cut connections) on loopback."""
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import synthesize as syn
from formats import AppendLog, read_docs, write_docs
from conftest import stdlib_dir
from test_client import LoopbackServer, misbehave

ROOT_DIR = Path(syn.__file__).resolve().parent


# -----------------------------------------------------------------------------
# seeds: real stdlib Python files, plus a few other languages

C_SEED = "#include <stdio.h>\n\n/* sum the numbers on stdin */\nint main(void) {\n    int x, s = 0;\n" \
         "    while (scanf(\"%d\", &x) == 1) s += x;\n    printf(\"%d\\n\", s);\n    return 0;\n}\n"
JS_SEED = "// debounce a function\nfunction debounce(fn, ms) {\n  let t;\n  return (...a) => {\n" \
          "    clearTimeout(t);\n    t = setTimeout(() => fn(...a), ms);\n  };\n}\nmodule.exports = debounce;\n"


def make_seeds(path: Path, n_py: int = 14, n_other: int = 6) -> list[dict]:
    files = sorted(stdlib_dir().glob("*.py"))[:n_py]
    docs = [{"id": f"py-{i:03d}", "content": f.read_text(encoding="utf-8", errors="replace"), "language": "Python",
             "repo": "cpython", "path": f.name, "source": "test", "score": 1.0 - i / 100}
            for i, f in enumerate(files)]
    for i in range(n_other):
        lang, body = ("C", C_SEED) if i % 2 == 0 else ("JavaScript", JS_SEED)
        docs.append({"id": f"ot-{i:03d}", "content": body + f"\n// variant {i}\n", "language": lang,
                     "repo": "x", "path": f"f{i}.{'c' if lang == 'C' else 'js'}", "source": "test",
                     "score": 0.5 - i / 100})
    write_docs(path / "part-00000.jsonl.gz", docs[: len(docs) // 2])
    write_docs(path / "part-00001.jsonl.gz", docs[len(docs) // 2:])
    return docs


def test_select_seeds_python_share_and_order(tmp_path):
    docs = make_seeds(tmp_path, n_py=14, n_other=6)
    picked = syn.select_seeds(tmp_path, 8, 0.5)
    assert len(picked) == 8
    langs = Counter(d["language"] for d in picked)
    assert langs["Python"] == 4 and langs["C"] + langs["JavaScript"] == 4 and langs["C"] == 2
    # the best of each language, best first overall
    assert {d["id"] for d in picked if d["language"] == "Python"} == {f"py-{i:03d}" for i in range(4)}
    assert [d["score"] for d in picked] == sorted((d["score"] for d in picked), reverse=True)
    # other languages short: Python fills the rest; all seeds when no limit
    assert Counter(d["language"] for d in syn.select_seeds(tmp_path, 16, 0.5))["Python"] == 10
    assert len(syn.select_seeds(tmp_path, None, 0.5)) == len(docs)


def test_truncate_seed_at_line_end(tiny_tokenizer):
    text = "".join(f"line {i} = {i * i}\n" for i in range(200))
    t = syn.truncate_seed(text, 300)
    assert len(t) <= 300 and t.endswith("\n") and text.startswith(t) and len(t) > 250
    t = syn.truncate_seed(text, 10 ** 6, max_tokens=50, enc=tiny_tokenizer)
    assert len(tiny_tokenizer.encode(t)) <= 50 and t.endswith("\n") and text.startswith(t)
    assert syn.truncate_seed("short\n", 300) == "short\n"


def test_extract_and_check_code():
    good = "def f(x):\n    return x + 1\n"
    code, why = syn.extract_code({"chat": True, "text": f"Here:\n```python\n{good}```\nand\n```\nx\n```"})
    assert code == good and why is None
    assert syn.extract_code({"chat": True, "text": "no code here"}) == (None, "no_code_block")
    assert syn.extract_code({"chat": True, "text": "```python\ndef f(", "finish_reason": "length"}) == (None, "truncated")
    assert syn.extract_code({"chat": False, "text": good, "finish_reason": "stop"}) == (good, None)
    assert syn.extract_code({"chat": False, "text": good, "finish_reason": "length"}) == (None, "truncated")
    assert syn.syntax_ok(good, "Python") and not syn.syntax_ok("def f(:\n", "Python")
    assert syn.syntax_ok(C_SEED, "C") and not syn.syntax_ok(C_SEED.replace("}\n", "", 1), "C")
    assert syn.syntax_ok(JS_SEED, "JavaScript") and not syn.syntax_ok("f(() => { [1, 2) }", "JavaScript")
    if shutil.which("bash"):
        assert syn.syntax_ok("for i in 1 2; do echo $i; done\n", "Shell")
        assert not syn.syntax_ok("for i in 1 2; do echo $i\n", "Shell")


def test_torn_last_line_is_cut(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps({"key": "a:1"}) + "\n" + json.dumps({"key": "b:1"}) + "\n" + '{"key": "c:1", "te')
    assert [r["key"] for r in syn.load_records(out)] == ["a:1", "b:1"]
    assert out.read_text().endswith('"te')  # reading never changes the file ...
    with AppendLog(out, rows=False):  # ... the repair happens under the writer's lock
        pass
    assert out.read_text().endswith("}\n") and [r["key"] for r in syn.load_records(out)] == ["a:1", "b:1"]


# -----------------------------------------------------------------------------
# a faulty OpenAI-compatible server: canned, well-formed code, with faults for a share of requests

def canned_code(prompt: str) -> str:
    """Distinct, valid Python for each seed: a table of the seed's own identifiers."""
    seed = prompt.split("Seed file", 1)[-1]
    words = list(dict.fromkeys(re.findall(r"[A-Za-z_][A-Za-z_0-9]{5,}", seed)))[:60]
    if "HUMANEVAL_LEAK" in seed:  # a seed whose "model" regurgitates a benchmark solution
        return HUMANEVAL_0
    if "EXACT_TWIN" in seed:
        words = ["twin"]
    tag = hashlib.sha1(" ".join(words).encode()).hexdigest()[:8]
    return (f'"""Index the identifiers of a module ({tag})."""\n\nNAMES = {words!r}\n\n\n'
            f'def positions(text):\n    """Map each name to its first offset in text (-1 if absent)."""\n'
            f'    return {{n: text.find(n) for n in NAMES}}\n\n\nif __name__ == "__main__":\n'
            f'    assert all(v == -1 for v in positions("").values())\n    print(positions("{tag}"))\n')


HUMANEVAL_0 = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    """
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False
'''


class FaultyServer(LoopbackServer):
    """Each prompt's k-th attempt fails while k < its fault count (0..3, from a hash of the prompt;
    the kinds of fault taken in turn): so every normal seed succeeds within 4 attempts. Seeds
    containing ALWAYS_500 never succeed; BAD_REQUEST gets a 400. The faults: tests/test_client.py."""
    FAULTS = ["500", "429", "hang", "drop", "reset", "cut"]

    def __init__(self, fault_rate: float = 0.6, hang_s: float = 1.5, delay_s: float = 0.0):
        self.fault_rate, self.hang_s, self.delay_s = fault_rate, hang_s, delay_s
        self.attempts: Counter = Counter()
        self.n_faults = 0
        self.auth: set = set()
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        super().__init__(self.on_post, models=({"id": "canned", "object": "model"},))

    def on_post(self, h, body):
        chat = h.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        n = int(hashlib.sha1(prompt.encode()).hexdigest(), 16)
        with self.lock:
            k = self.attempts[prompt]
            self.attempts[prompt] += 1
        n_faults = (n % 4) if (n >> 8) % 100 < self.fault_rate * 100 else 0
        fault = "ok"
        if k < n_faults:  # the fault kinds in turn, so that every kind occurs
            with self.lock:
                fault = self.FAULTS[self.n_faults % len(self.FAULTS)]
                self.n_faults += 1
        if "ALWAYS_500" in prompt:
            fault = "500"
        if "BAD_REQUEST" in prompt:
            fault = "400"
        with self.lock:
            self.log.append((prompt[-40:], fault))
            self.auth.add(h.headers.get("Authorization"))
        if self.delay_s:
            self.stop.wait(self.delay_s)
        code = canned_code(prompt)
        text = f"Here is the file.\n\n```python\n{code}```\n" if chat else code
        resp = {"id": "x", "object": "chat.completion" if chat else "text_completion", "model": "canned",
                "choices": [{"index": 0, "finish_reason": "stop",
                             **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}],
                "usage": {"prompt_tokens": len(prompt) // 3, "completion_tokens": len(text) // 3,
                          "total_tokens": (len(prompt) + len(text)) // 3}}
        misbehave(h, fault, resp, self.stop, self.hang_s)


def fault_seeds(path: Path) -> list[dict]:
    docs = make_seeds(path, n_py=16, n_other=0)  # Python only: the canned answers are Python
    extra = [("ALWAYS_500", "Python"), ("BAD_REQUEST", "Python"), ("HUMANEVAL_LEAK", "Python"),
             ("EXACT_TWIN one", "Python"), ("EXACT_TWIN two", "Python")]
    for i, (marker, lang) in enumerate(extra):
        docs.append({"id": f"mk-{i}", "content": f"# {marker}\nx = {i}\n", "language": lang, "repo": "m",
                     "path": f"m{i}.py", "source": "test", "score": 0.9})
    write_docs(path / "part-00002.jsonl.gz", docs[-len(extra):])
    return docs


FAST = ["--timeout", "0.4", "--backoff-base", "0.01", "--backoff-max", "0.05", "--max-retries", "5",
        "--no-progress"]


def test_faulty_server_every_seed_one_record(tmp_path, monkeypatch):
    seeds_dir = tmp_path / "seeds"
    docs = fault_seeds(seeds_dir)
    out = tmp_path / "p3" / "synthetic.jsonl"
    monkeypatch.setenv("SNOWCODER_API_KEY", "sk-test-123")
    with FaultyServer(fault_rate=0.6) as srv:
        syn.main(["--seeds", str(seeds_dir), "--api-base", f"http://127.0.0.1:{srv.port}/v1", "--model", "canned",
                  "--out", str(out), "--concurrency", "4", *FAST])
        faults = Counter(f for _, f in srv.log)
    assert srv.auth == {"Bearer sk-test-123"}  # the key from the environment, on every request
    assert all(faults[f] > 0 for f in FaultyServer.FAULTS), faults  # every kind of fault happened
    recs = syn.load_records(out)
    keys = [r["key"] for r in recs]
    assert len(keys) == len(set(keys)) == len(docs)
    assert {r["seed_id"] for r in recs} == {d["id"] for d in docs}
    by_id = {r["seed_id"]: r for r in recs}
    assert by_id["mk-0"]["status"] == "failed" and by_id["mk-0"]["attempts"] == 6  # 1 + 5 retries
    assert by_id["mk-1"]["status"] == "failed" and by_id["mk-1"]["attempts"] == 1  # a 400 is not retried
    assert all(r["status"] == "ok" for r in recs if r["seed_id"] not in ("mk-0", "mk-1"))
    assert sum(r["attempts"] > 1 for r in recs) >= 5  # retries did happen and did recover

    # post-processing: counts add up; duplicates and the benchmark leak are filtered out
    stats = json.loads((tmp_path / "p3" / "synthetic" / "stats.json").read_text())
    assert stats["records"] == len(docs) and stats["failed"] == 2 and stats["ok"] == len(docs) - 2
    assert stats["accepted"] + sum(stats["dropped"].values()) == stats["ok"]
    assert stats["dropped"]["exact_duplicate"] == 1
    accepted = list(read_docs(tmp_path / "p3" / "synthetic"))
    assert len(accepted) == stats["accepted"] >= 10
    assert len({d["id"] for d in accepted}) == len(accepted)
    for d in accepted:
        compile(d["content"], d["path"], "exec")
        assert d["source"] == "synthetic" and d["language"] == "Python" and d["seed_id"]
    assert stats["dropped"]["contaminated"] == 1  # HumanEval/0's solution, caught by prepare/decontaminate.py
    assert all("has_close_elements" not in d["content"] for d in accepted)

    # a rerun has nothing left to do and writes nothing new
    before = out.read_bytes()
    with FaultyServer(fault_rate=0.0) as srv:
        syn.main(["--seeds", str(seeds_dir), "--api-base", f"http://127.0.0.1:{srv.port}/v1", "--model", "canned",
                  "--out", str(out), *FAST])
        assert srv.log == []
    assert out.read_bytes() == before


def test_kill9_mid_run_then_resume(tmp_path):
    """kill -9 while requests are in flight, then a torn line on top: the rerun completes every seed
    exactly once."""
    seeds_dir = tmp_path / "seeds"
    docs = make_seeds(seeds_dir, n_py=24, n_other=6)
    out = tmp_path / "synthetic.jsonl"
    with FaultyServer(fault_rate=0.3, hang_s=0.6, delay_s=0.05) as srv:
        cmd = [sys.executable, str(ROOT_DIR / "synthesize.py"), "--seeds", str(seeds_dir), "--api-base",
               f"http://127.0.0.1:{srv.port}/v1", "--out", str(out), "--concurrency", "3", "--completions",
               "--no-decontaminate", *FAST]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT_DIR)
        try:
            t0 = time.time()
            while time.time() - t0 < 60 and (not out.exists() or out.read_bytes().count(b"\n") < 8):
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        n_first = out.read_bytes().count(b"\n")
        assert 8 <= n_first < len(docs), "the first run should have been killed mid-way"
        with open(out, "ab") as f:  # what a writer killed mid-line would leave
            f.write(b'{"key": "py-000:trunc", "status": "ok", "te')
        subprocess.run(cmd, check=True, timeout=120, cwd=ROOT_DIR, stdout=subprocess.DEVNULL)
    recs = syn.load_records(out)
    keys = [r["key"] for r in recs]
    assert len(keys) == len(set(keys)) == len(docs)
    assert sorted(r["seed_id"] for r in recs) == sorted(d["id"] for d in docs)
    assert all(r["status"] == "ok" for r in recs)
    assert out.read_bytes().endswith(b"\n")


# -----------------------------------------------------------------------------
# end to end against the real server

def test_end_to_end_with_sample_server(tmp_path, tiny_tokenizer_path):
    import torch
    from model import ModelConfig, Transformer
    ckpt = tmp_path / "export"
    torch.manual_seed(0)
    # the tiny preset with a 1024-token context: the prompt template alone is ~220 tiny-BPE tokens
    Transformer(ModelConfig.from_preset("tiny", block_size=1024)).save_pretrained(ckpt)
    shutil.copy(tiny_tokenizer_path, ckpt / "tokenizer.tiktoken")
    seeds_dir = tmp_path / "seeds"
    docs = make_seeds(seeds_dir, n_py=6, n_other=4)
    proc, base = syn.start_server(ckpt)
    try:
        out = tmp_path / "p3" / "synthetic.jsonl"
        for mode in ("--completions", "--chat"):
            syn.main(["--seeds", str(seeds_dir), "--api-base", base, "--out", str(out), mode, "--limit", "6",
                      "--max-tokens", "24", "--concurrency", "3", "--no-progress", "--sampling-seed", "0"])
        recs = syn.load_records(out)
        # 6 seeds x 2 settings (fingerprints), each answered once by the real model
        assert len(recs) == len({r["key"] for r in recs}) == 12
        assert len({r["fingerprint"] for r in recs}) == 2
        # seeded sampling (the server honours `seed`): a random model that drew its end token first
        # would answer with 0 tokens, and unseeded that happened once in a CI run
        assert all(r["status"] == "ok" and r["usage"]["completion_tokens"] > 0 for r in recs)
        assert len({r["model"] for r in recs}) == 1 and recs[0]["model"]  # from the server's /v1/models
        assert sum(r["language"] == "Python" for r in recs) == 6  # 50% of 6 seeds, twice
        # seeds are fitted to the context the server announces; where the estimate was short, the
        # server's 400 (context length) made the client halve the seed and ask again
        for r in recs:
            assert all("context length" in e for e in r["errors"]) and len(r["errors"]) == r["attempts"] - 1
            assert r["usage"]["prompt_tokens"] < 1024
        stats = json.loads((tmp_path / "p3" / "synthetic" / "stats.json").read_text())
        assert stats["records"] == 12 and stats["ok"] == 12
        rejected = stats["dropped"]
        assert set(rejected) <= {"no_code_block", "truncated", "too_short", "too_long", "long_line",
                                 "syntax_error", "exact_duplicate", "near_duplicate", "contaminated"}
        assert stats["accepted"] + sum(rejected.values()) == 12  # a random model: nearly all rejected, counted
        with gzip.open(tmp_path / "p3" / "synthetic" / "rejected-00000.jsonl.gz", "rt") as f:
            assert sum(1 for _ in f) == sum(rejected.values())
    finally:
        syn.stop_server(proc)
    assert proc.returncode == 0


# -----------------------------------------------------------------------------
# the append-only output under two real processes

LIVE_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
import synthesize as syn
from pathlib import Path
from formats import AppendLog
log = AppendLog(Path(sys.argv[1]), rows=False).__enter__()
log.append([{"key": "live:1", "status": "ok"}])
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_is_taken_before_the_repair(tmp_path):
    """A live run holds the lock while its next record is half written; a second run must stop
    with a clear error and leave those bytes alone (before the fix it cut them first)."""
    out = tmp_path / "synthetic.jsonl"
    out.write_text(json.dumps({"key": "old:1", "status": "ok"}) + "\n")
    live = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(out), str(ROOT_DIR)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert live.stdout.readline().strip() == "locked"
        with open(out, "ab") as f:  # the live run's next record, half way through its write
            f.write(b'{"key": "live:2", "sta')
        before = out.read_bytes()
        seeds = tmp_path / "seeds"
        make_seeds(seeds, n_py=2, n_other=0)
        second = subprocess.run([sys.executable, str(ROOT_DIR / "synthesize.py"), "--seeds", str(seeds),
                                 "--api-base", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(out),
                                 "--no-progress"], cwd=ROOT_DIR, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert f"synthesize.py: {out} is in use by another process" in second.stderr
        assert "Traceback" not in second.stderr
        assert out.read_bytes() == before  # the live record's bytes are intact
    finally:
        live.kill()
        live.wait(timeout=10)
    with AppendLog(out, rows=False):  # the writer is gone: now the torn line is cut
        pass
    assert [r["key"] for r in syn.load_records(out)] == ["old:1", "live:1"] and out.read_bytes().endswith(b"\n")


# -----------------------------------------------------------------------------
# post-processing split into tasks

def raw_records(path: Path) -> tuple[list[str], list[dict]]:
    """A raw output file without a server: real stdlib files as answers, with exact copies, near
    copies (two lines changed), failures, a retried key, an answer with no code and a bad line."""
    files = [f for f in sorted(stdlib_dir().glob("*.py")) if 2000 < f.stat().st_size < 30000][:24]
    codes = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    codes = [c for c in codes if syn.syntax_ok(c.strip("\n") + "\n", "Python")]
    answers = list(codes)
    answers += [codes[1], codes[5], codes[5]]                             # exact copies
    for i in (2, 7):                                                      # near copies
        answers.append(codes[i] + f"\n\nEXTRA_SETTING_{i} = {i}\nANOTHER_SETTING = 'near copy'\n")
    recs = []
    for i, a in enumerate(answers):
        recs.append({"key": f"s{i:03d}:fp", "seed_id": f"s{i:03d}", "status": "ok", "chat": False,
                     "finish_reason": "stop", "text": a, "language": "Python", "model": "m", "fingerprint": "fp"})
    recs.append({"key": "f000:fp", "seed_id": "f000", "status": "failed", "error": "HTTP 500", "chat": False})
    recs.append({"key": "f001:fp", "seed_id": "f001", "status": "failed", "error": "HTTP 500", "chat": False})
    recs.append({**recs[-1], "status": "ok", "finish_reason": "stop", "text": codes[3] + "\nRETRIED = 1\n"})
    recs.append({"key": "n000:fp", "seed_id": "n000", "status": "ok", "chat": True, "text": "no code, sorry"})
    lines = [json.dumps(r) for r in recs]
    lines.insert(10, '{"key": "broken", "te')                               # a bad line in the middle
    lines.insert(20, '["not", "a", "record"]')
    path.write_text("\n".join(lines) + "\n")
    return answers, recs


def postprocess_with(tmp_path, name, raw, tasks, **kw):
    out = tmp_path / name / "synthetic.jsonl"
    out.parent.mkdir()
    shutil.copy(raw, out)
    syn.write_postprocessed(out, syn.SynthConfig(), decontaminate=False, tasks=tasks, progress=False, **kw)
    d = out.with_suffix("")
    acc = sorted((x["id"], x["content"]) for x in read_docs(d))
    rej = sorted((r["key"], r["reason"], r.get("duplicate_of_line"))
                 for f in sorted(d.glob("rejected-*.jsonl.gz")) for r in read_docs(f))
    return acc, rej, json.loads((d / "stats.json").read_text()), d


def test_postprocess_tasks_equal_one_task_and_the_reference(tmp_path, capsys):
    from prepare.dedup import cluster_texts
    raw = tmp_path / "raw.jsonl"
    answers, recs = raw_records(raw)
    acc1, rej1, st1, _ = postprocess_with(tmp_path, "one", raw, 1)
    err = capsys.readouterr().err
    assert f"{tmp_path / 'one' / 'synthetic.jsonl'}:11: skipping a bad record" in err  # file and line named
    assert ":21: skipping a bad record" in err and err.count("skipping a bad record") == 2
    acc3, rej3, st3, d3 = postprocess_with(tmp_path, "three", raw, 3)
    assert acc1 == acc3 and rej1 == rej3
    assert len(list(d3.glob("part-*.jsonl.gz"))) == 3 and len(list(d3.glob("done-*"))) == 3
    for k in ("records", "ok", "failed", "accepted", "bad_lines", "accepted_chars"):
        assert st1[k] == st3[k], k
    assert st1["dropped"] == st3["dropped"]
    assert st1["records"] == len(answers) + 3 and st1["bad_lines"] == 2 and st1["failed"] == 1  # f001 retried ok
    assert st1["dropped"] == {"exact_duplicate": 3, "near_duplicate": 3, "no_code_block": 1}  # f001 too
    # the independent reference: prepare/dedup.py's in-memory clustering of the same candidates, in file order
    cands = [a.strip("\n") + "\n" for a in answers]
    cands.append(recs[-2]["text"].strip("\n") + "\n")  # f001's retried answer, last in the file
    _, reason = cluster_texts(cands)
    kept = sorted(c for c, r in zip(cands, reason) if r == 0)
    assert sorted(c for _, c in acc1) == kept
    assert Counter(int(r) for r in reason) == {0: len(kept), 1: 3, 2: 3}
    # a duplicate names the raw line of the record that was kept
    lines = raw.read_text().split("\n")
    for key, why, line in rej1:
        if why in ("exact_duplicate", "near_duplicate"):
            assert json.loads(lines[line - 1])["key"] != key


def test_postprocess_array_tasks_and_rerun(tmp_path, capsys):
    """--task K runs only that task of each stage whose inputs are complete; the same command
    rerun by each array task finishes the step; a grown input redoes it locally."""
    raw = tmp_path / "raw.jsonl"
    raw_records(raw)
    out = tmp_path / "a" / "synthetic.jsonl"
    out.parent.mkdir()
    shutil.copy(raw, out)
    d = out.with_suffix("")
    args = ["--out", str(out), "--post-only", "--no-decontaminate", "--no-progress", "--tasks", "2"]
    for k in (0, 1, 0, 1, 0, 1):  # extract, pairs, then clusters + write
        syn.main(args + ["--task", str(k)])
    assert (d / "stats.json").exists() and len(list(d.glob("done-*"))) == 2
    acc, rej, st, _ = postprocess_with(tmp_path, "ref", raw, 1)
    assert sorted((x["id"], x["content"]) for x in read_docs(d)) == acc
    # the raw file grows (a later generation run): a local rerun notices and redoes the step
    with open(out, "a") as f:
        f.write(json.dumps({"key": "z:fp", "seed_id": "z", "status": "failed", "chat": False}) + "\n")
    syn.main(args)
    assert json.loads((d / "stats.json").read_text())["records"] == st["records"] + 1
    with pytest.raises(SystemExit):
        syn.main(["--out", str(out), "--task", "0", "--seeds", "x", "--api-base", "http://127.0.0.1:9/v1"])
    assert "use it with --post-only" in capsys.readouterr().err


def test_sampling_seed_is_per_seed_and_in_the_fingerprint():
    cfg = syn.SynthConfig(sampling_seed=7)
    a, b = {"id": "a", "content": "x"}, {"id": "b", "content": "x"}
    sa, sb = syn.build_request(a, "x", cfg)["seed"], syn.build_request(b, "x", cfg)["seed"]
    assert sa != sb and sa == syn.build_request(a, "x", cfg)["seed"]
    assert "seed" not in syn.build_request(a, "x", syn.SynthConfig())
    assert len({syn.SynthConfig().fingerprint(), cfg.fingerprint(), syn.SynthConfig(sampling_seed=8).fingerprint()}) == 3
