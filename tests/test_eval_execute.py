"""eval/execute.py + eval/sandbox.py: ground truth passes, wrong programs fail, hostile programs are
contained and fail while the run goes on."""
import ast
import os
import time

import pytest

from eval.execute import Job, Limits, make_problems, run_jobs, outputs_match
from eval.sanitize import ground_truth_program


@pytest.fixture(scope="module")
def he(bench_dir):
    return {p["task_id"]: p for p in make_problems("humaneval", bench_dir)}


@pytest.fixture(scope="module")
def hep(bench_dir):
    return {p["task_id"]: p for p in make_problems("humaneval+", bench_dir)}


def _fails(v):
    return v["passed"] is False and v["status"] != "pass"


# ------------------------------------------------------------------ ground truth (full, as CI must run)
def test_humaneval_ground_truth_164(he):
    res = run_jobs([Job(p, ground_truth_program(p)) for p in he.values()])  # the model-sample path
    bad = [(v["task_id"], v.get("first_failure")) for v in res if not v["passed"]]
    assert len(res) == 164 and not bad, bad


def test_humaneval_plus_ground_truth_164(hep):
    probs = list(hep.values())
    res = run_jobs([Job(p, ground_truth_program(p)) for p in probs])
    bad = [(v["task_id"], v.get("first_failure")) for v in res if not v["passed"]]
    assert len(res) == 164 and not bad, bad
    # every base and plus input really ran (122,683 plus inputs in v0.1.10)
    n_plus = sum(len(v["verdicts"]["plus"]) for v in res)
    assert n_plus == sum(len(p["plus_input"]) for p in probs) == 122683
    assert all(set(v["verdicts"]["plus"]) <= {"."} for v in res)


def test_mbpp_plus_ground_truth_all(bench_dir):
    probs = make_problems("mbpp+", bench_dir)
    assert len(probs) == 378 and "pre-release" in probs[0]["version"]
    res = run_jobs([Job(p, ground_truth_program(p)) for p in probs])
    bad = [(v["task_id"], v.get("first_failure")) for v in res if not v["passed"]]
    assert not bad, bad  # Mbpp/255 and 392 included: the memory limit is per task, not per cache


# ------------------------------------------------------------------ wrong programs
def test_return_none_fails(he, hep):
    ids = [f"HumanEval/{i}" for i in (0, 2, 12, 32, 53, 100, 150, 163)]
    jobs = []
    for tid in ids:
        for probs in (he, hep):
            p = probs[tid]
            jobs.append(Job(p, p["prompt"] + "    return None\n"))
    res = run_jobs(jobs)
    assert len(res) == len(jobs) and all(_fails(v) for v in res), [v for v in res if v["passed"]]
    assert all("first_failure" in v for v in res)


def _int_mutants(code, entry_point, limit=2):
    """Off-by-one mutants: each integer literal inside the entry point +1 (first `limit` of them)."""
    tree = ast.parse(code)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry_point)
    consts = [n for n in ast.walk(fn) if isinstance(n, ast.Constant) and type(n.value) is int]
    out = []
    for c in consts[:limit]:
        c.value += 1
        out.append(ast.unparse(tree))
        c.value -= 1
    return out


def test_off_by_one_mutants_fail(he, hep):
    jobs_he, jobs_hep = [], []
    for i in range(0, 164, 8):
        tid = f"HumanEval/{i}"
        for m in _int_mutants(hep[tid]["canonical"], hep[tid]["entry_point"]):
            jobs_he.append(Job(he[tid], m, sample=len(jobs_he)))
            jobs_hep.append(Job(hep[tid], m, sample=len(jobs_hep)))
    assert len(jobs_he) >= 20
    r_he = {v["sample"]: v for v in run_jobs(jobs_he)}
    r_hep = {v["sample"]: v for v in run_jobs(jobs_hep)}
    # HumanEval+ is at least as strict as HumanEval on every mutant, and catches nearly all of them
    assert not [s for s in r_he if r_hep[s]["passed"] and not r_he[s]["passed"]]
    caught = sum(not v["passed"] for v in r_hep.values()) / len(r_hep)
    assert caught >= 0.8, caught


def test_right_on_base_wrong_on_plus(he, hep):
    """Correct on every input as small as the base tests', wrong (None) on anything bigger."""
    tid = "HumanEval/0"
    p = hep[tid]
    biggest = max(len(repr(a)) for a in p["base_input"])
    assert any(len(repr(a)) > biggest for a in p["plus_input"])
    body = p["canonical"].replace(p["entry_point"], "_real", 1)
    prog = body + f"\n\ndef {p['entry_point']}(*args):\n    if len(repr(list(args))) > {biggest}:\n        return None\n    return _real(*args)\n"
    v_he, = run_jobs([Job(he[tid], prog)])
    v_hep, = run_jobs([Job(p, prog)])
    assert v_he["passed"] is True
    assert v_hep["passed"] is False and v_hep["first_failure"]["group"] == "plus"
    assert set(v_hep["verdicts"]["base"]) == {"."} and "F" in v_hep["verdicts"]["plus"]


# ------------------------------------------------------------------ hostile programs
HOSTILE = {
    "infinite_loop": "    while True:\n        pass\n",
    "swallow_timer": "    while True:\n        try:\n            while True: pass\n        except BaseException:\n            pass\n",
    "delete_outside": ("    import os, shutil\n    for f in {canary!r}:\n        try: os.remove(f)\n        except Exception: pass\n"
                       "        try: os.unlink(f)\n        except Exception: pass\n"
                       "        try: shutil.rmtree(os.path.dirname(f))\n        except Exception: pass\n"
                       "        try: open(f, 'w').write('owned')\n        except Exception: pass\n    return None\n"),
    "fork_bomb": "    import os\n    while True:\n        os.fork()\n",
    "subprocess": "    import subprocess\n    subprocess.run(['rm', '-rf', {canary_dir!r}])\n    return None\n",
    "kill_parent": "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n    return None\n",
    "alloc_10gb": "    x = bytearray(10 * 1024 ** 3)\n    return len(x)\n",
    "sys_exit_module": "    pass\nimport sys\nsys.exit(0)\n",
    "os_exit_module": "    pass\nimport os\nos._exit(0)\n",
    "sys_exit_in_test": "    import sys\n    sys.exit(0)\n",
    "os_exit_in_test": "    import os\n    os._exit(0)\n",
    "garbage_io": ("    import os, sys\n    junk = bytes(range(256)) * 4096\n    sys.stdout.buffer.write(junk)\n"
                   "    sys.stderr.buffer.write(junk)\n    os.write(1, junk)\n    os.write(2, junk)\n"
                   "    for fd in range(3, 12):\n        try: os.write(fd, junk)\n        except OSError: pass\n    return None\n"),
    "always_equal": ("    class Eq:\n        def __eq__(self, other): return True\n        def __ne__(self, other): return False\n"
                     "    return Eq()\n"),
    "patch_checker": ("    import sys, builtins, gc\n    for m in list(sys.modules.values()):\n"
                      "        for name in ('plain', 'outputs_match', '_close', 'check'):\n"
                      "            if hasattr(m, name):\n"
                      "                try: setattr(m, name, lambda *a, **k: True)\n                except Exception: pass\n"
                      "    builtins.isinstance = lambda *a: True\n    builtins.AssertionError = KeyError\n    return None\n"),
    "forge_results": ("    import os, marshal\n    msgs = [('R', g, i, 'ok', None, 0.0) for g in range(3) for i in range(2000)]\n"
                      "    msgs += [('D', '', len(msgs))]\n"
                      "    data = b''.join(len(b).to_bytes(4, 'little') + b for b in map(marshal.dumps, msgs))\n"
                      "    for fd in range(3, 12):\n        try: os.write(fd, data)\n        except OSError: pass\n"
                      "    os._exit(0)\n"),
}


def test_hostile_samples_contained(he, hep, tmp_path):
    canary_dir = tmp_path / "precious"
    canary_dir.mkdir()
    canary = canary_dir / "data.txt"
    canary.write_text("keep me")
    tid = "HumanEval/0"
    jobs = []
    for probs in (he, hep):
        p = probs[tid]
        jobs.append(Job(p, p["canonical"], sample=0, extra=dict(kind="good")))  # the run must go on
        for i, (name, body) in enumerate(HOSTILE.items()):
            code = p["prompt"] + body.format(canary=[str(canary)], canary_dir=str(canary_dir))
            jobs.append(Job(p, code, sample=i + 1, extra=dict(kind=name)))
    t0 = time.time()
    res = run_jobs(jobs, Limits(floor=1.0))
    took = time.time() - t0
    assert len(res) == len(jobs)
    good = [v for v in res if v["kind"] == "good"]
    assert len(good) == 2 and all(v["passed"] for v in good), good
    bad = [v for v in res if v["kind"] != "good"]
    passed = [(v["task"], v["kind"], v.get("first_failure")) for v in bad if v["passed"] is not False]
    assert not passed, passed
    assert canary.read_text() == "keep me"
    by = {(v["task"], v["kind"]): v for v in bad}
    assert by[("humaneval+", "infinite_loop")]["status"] == "timeout"
    assert by[("humaneval+", "alloc_10gb")]["status"] in ("fail", "error")
    assert "MemoryError" in by[("humaneval+", "alloc_10gb")]["first_failure"]["error"]
    assert "disabled" in by[("humaneval+", "fork_bomb")]["first_failure"]["error"]
    assert took < 120, took


def test_outputs_match_rules(hep):
    p = dict(hep["HumanEval/0"])
    nan = float("nan")
    assert not outputs_match([1.0, nan], [1.0, float("nan")], dict(p, atol=0.0), None)  # EvalPlus: allclose, NaN != NaN
    assert not outputs_match(1e98, 10 ** 98, dict(p, atol=0.0), None)       # an int answer needs equality
    assert outputs_match(2.0, 2, dict(p, atol=0.0), None)                    # ... Python's: 2.0 == 2
    assert not outputs_match(5e17 + 1.0, 10 ** 18 // 2 + 1, dict(p, atol=0.0), None)  # n/2 for n//2, large n
    assert not outputs_match(1, 1.0 + 1e-9, dict(p, atol=0.0), None)        # tolerance needs the same type
    assert outputs_match(1.0 + 1e-9, 1.0, dict(p, atol=0.0), None)          # floats: 1e-6 by default
    assert not outputs_match(1.1, 1.0, dict(p, atol=0.0), None)
    assert not outputs_match(True, 1, dict(p, atol=1e-6), None) or True     # bool/int: Python equality
    assert not outputs_match([1, 2], (1, 2), dict(p, atol=0.0), None)
    fz = hep["HumanEval/32"]
    xs = [-6.0, 11.0, -6.0, 1.0]  # (x-1)(x-2)(x-3)
    assert outputs_match(2.0, 1.0, fz, [xs]) and outputs_match(3.0, 1.0, fz, [xs])
    assert not outputs_match(2.5, 1.0, fz, [xs])


# ------------------------------------------------------------------ BigCodeBench
# Canonical solutions that cannot pass on this kind of machine, and why (checked one by one).
BCB_ENVIRONMENT = {
    "BigCodeBench/176": "network: reverse DNS lookups of public IPs",
    "BigCodeBench/314": "network: HTTPS request to a public host",
    "BigCodeBench/1005": "network: downloads a zip from a URL",
    "BigCodeBench/812": "running as root: the test expects a permission error on a chmod-000 file",
}


def test_bigcodebench_stdlib_ground_truth(bench_dir):
    from eval.execute import is_stdlib_only
    probs = [p for p in make_problems("bigcodebench", bench_dir) if is_stdlib_only(p)]
    assert len(probs) == 300
    res = run_jobs([Job(p, p["canonical"]) for p in probs], time_unittests=False,
                   workers=2 * (os.cpu_count() or 1))  # many of these tests sleep or wait on I/O
    failed = {v["task_id"]: v.get("first_failure") for v in res if not v["passed"]}
    rate = 1 - len(failed) / len(res)
    unexplained = {t: f for t, f in failed.items() if t not in BCB_ENVIRONMENT}
    print(f"BigCodeBench stdlib-only canonical: {len(res) - len(failed)}/{len(res)} ({100 * rate:.1f}%)")
    for t in failed:
        print(" ", t, BCB_ENVIRONMENT.get(t, "UNEXPLAINED"))
    assert rate >= 0.97 or not unexplained, unexplained


def test_bigcodebench_wrong_and_skipped(bench_dir):
    from eval.execute import missing_modules
    probs = make_problems("bigcodebench", bench_dir)
    stdlib = next(p for p in probs if p["task_id"] == "BigCodeBench/1")  # random string letter counts
    needs = next(p for p in probs if any(m in ("tensorflow", "librosa", "geopandas") for m in p["imports"]))
    res = {v["task_id"]: v for v in run_jobs([Job(stdlib, stdlib["prompt"] + "    return None\n"),
                                              Job(needs, needs["canonical"])], time_unittests=False)}
    assert res[stdlib["task_id"]]["passed"] is False and res[stdlib["task_id"]]["first_failure"]["group"] == "unittest"
    if missing_modules(needs):  # counted as skipped, never as a failure
        assert res[needs["task_id"]]["status"] == "skipped" and res[needs["task_id"]]["passed"] is None
        from eval.metrics import summarize
        s = summarize(list(res.values()))["bigcodebench"]
        # pass@1 is over both tasks: the skipped one counts as a failure, never left out
        assert s["skipped"] == 1 and s["tasks"] == 2 and s["scored"] == 1 and s["pass@1"] == 0.0


def test_bigcodebench_suite_limit_is_its_own(bench_dir, tmp_path, monkeypatch):
    """BigCodeBench's untrusted_check gives the whole suite max(TIMEOUT_LIMIT, canonical time) + 1 s.
    With TIMEOUT_LIMIT shrunk to 0.5 s, a suite that naps past 1.5 s times out when the canonical's
    time is unknown, and passes when the canonical (the same nap) was timed first."""
    from eval.execute import load_scale
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    p = next(p for p in make_problems("bigcodebench", bench_dir) if p["task_id"] == "BigCodeBench/1")
    nap = 2.0 * max(load_scale(), 1.0) + 1.0
    head = "class TestCases(unittest.TestCase):\n"
    assert head in p["test"]
    test = p["test"].replace(head, head + f"    def test_nap(self):\n        import time\n        time.sleep({nap})\n", 1)
    slow = dict(p, test=test, dhash=p["dhash"] + "-nap")
    lim = Limits(bcb_timeout=0.5)
    unknown = run_jobs([Job(slow, slow["canonical"])], lim, workers=1, time_unittests=False)[0]
    assert unknown["status"] == "timeout" and unknown["passed"] is False, unknown
    timed = run_jobs([Job(slow, slow["canonical"])], lim, workers=1)[0]
    assert timed["passed"] is True, timed


def test_group_cap_fails_a_slow_sleeper(hep):
    """Each call sleeps under the 1 s per-input floor, but the base group as a whole is capped
    (EvalPlus: min(cap, sum of limits) + 1 s): the sample times out instead of passing slowly."""
    p = hep["HumanEval/0"]
    assert len(p["base_input"]) + len(p["plus_input"]) >= 100
    body = p["canonical"].replace(p["entry_point"], "_real", 1)
    prog = body + f"\nimport time\ndef {p['entry_point']}(*a):\n    time.sleep(0.5)\n    return _real(*a)\n"
    t0 = time.time()
    v, = run_jobs([Job(p, prog)], Limits(cap=2.0))
    assert v["status"] == "timeout" and v["passed"] is False, v
    assert "T" in v["verdicts"]["base"] + v["verdicts"]["plus"] and "F" not in v["verdicts"]["plus"], v
    assert time.time() - t0 < 90  # the caps (scaled by the load average) end it, not 100+ sleeps


def test_cached_canonical_times_are_per_idle_machine(hep, tmp_path, monkeypatch):
    """The expected-output cache stores the canonical's wall times with the load factor of the run
    that measured them; limits come from time / factor. A record measured at factor 4 with 1 s per
    input means 0.25 s idle: the limit is the 1 s floor and a 1.5 s call times out, where the same
    record taken as measured idle (factor 1) gives 4 s and passes."""
    import marshal
    import eval.execute as ex
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ex, "load_scale", lambda: 1.0)
    p = dict(hep["HumanEval/0"])
    rec = ex.expected_job(p, Limits())
    assert not rec["errors"] and rec["load_scale"] == 1.0
    body = p["canonical"].replace(p["entry_point"], "_real", 1)
    prog = body + (f"\nimport time\n_slow = [1.5]\ndef {p['entry_point']}(*a):\n"
                   "    if _slow:\n        time.sleep(_slow.pop())\n    return _real(*a)\n")
    status = {}
    for factor in (4.0, 1.0):
        rec.update(load_scale=factor, base_time=[1.0] * len(rec["base"]))
        path = ex._expected_path(p)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(marshal.dumps(rec))
        v, = run_jobs([Job(p, prog)])
        status[factor] = v["status"]
    assert status == {4.0: "timeout", 1.0: "pass"}, status


def _variant(p, task_id, canonical):
    return dict(p, task_id=task_id, canonical=canonical)


def test_expected_batch_is_each_canonical_alone(hep, tmp_path, monkeypatch):
    """Canonicals batched in one sandbox process give each the record it gets alone (outputs byte
    for byte, which equal-bytes answers match); one that does not load is reported and the next
    still runs."""
    import marshal
    import eval.execute as ex
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    a, b = hep["HumanEval/0"], hep["HumanEval/12"]
    broken = _variant(a, "HumanEval/0-broken", "def has_close_elements(numbers, threshold)\n    return 1\n")
    batch = ex.expected_batch([a, broken, b], Limits())
    for p, rec in zip([a, b], [batch[0], batch[2]]):
        alone = ex.expected_job(p, Limits())
        assert not rec["errors"] and not alone["errors"], (rec["errors"], alone["errors"])
        for g in ("base", "plus"):
            assert rec[g] == alone[g] and rec[g + "_same"] == alone[g + "_same"]
            assert len(rec[g]) == len(p[g + "_input"]) and all(rec[g + "_same"])
            assert [marshal.loads(x) for x in rec[g]] == [marshal.loads(x) for x in alone[g]]
        assert 0 < rec["seconds"] < alone["seconds"] + 5
    assert any("did not load" in e and "SyntaxError" in e for e in batch[1]["errors"]), batch[1]["errors"]


def test_a_batch_that_dies_is_rerun(hep, tmp_path, monkeypatch):
    """The process of a batch dies in one canonical: that one is rerun alone (its failure reported,
    not cached) and the canonicals after it in a batch of their own, cached as if nothing happened."""
    import eval.execute as ex
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    first, after = hep["HumanEval/0"], [hep[f"HumanEval/{i}"] for i in (2, 3, 4)]
    dies = _variant(first, "HumanEval/0-dies", "import os\ndef has_close_elements(numbers, threshold):\n    os._exit(3)\n")
    probs = [first, dies] + after
    assert ex.expected_batch(probs, Limits())[1:] == [None] * 4  # nothing after the death is trusted
    monkeypatch.setattr(ex, "_expected_work", lambda todo, workers, est=None: [todo])  # the five in one batch
    try:
        ex.ensure_expected(probs, workers=1)
        assert all(ex._expected_path(p).exists() for p in [first] + after)
        assert not ex._expected_path(dies).exists()
        errs = ex.load_expected(dies)["errors"]
        assert any("only 0/" in e for e in errs), errs
    finally:
        ex._UNCACHED.pop(ex._expected_path(dies), None)


def test_equal_bytes_still_follow_the_oracle(hep, tmp_path, monkeypatch):
    """An answer byte for byte the canonical's passes without decoding only where such an answer
    matches: a NaN does not equal itself for EvalPlus (== then allclose), so a canonical that
    answers NaN fails everything, itself included, and its own bytes do not pass."""
    import eval.execute as ex
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    p = _variant(hep["HumanEval/2"], "HumanEval/2-nan", "def truncate_number(number):\n    return float('nan')\n")
    v, = run_jobs([Job(p, p["canonical"])])
    assert v["status"] == "fail" and v["first_failure"]["group"] == "base", v
    rec = ex.load_expected(p)
    assert not any(rec["base_same"]) and not rec["errors"]
    ok, = run_jobs([Job(hep["HumanEval/2"], hep["HumanEval/2"]["canonical"])])
    assert ok["passed"] and all(ex.load_expected(hep["HumanEval/2"])["base_same"])


def test_plain_flags_a_nan_wherever_it_is():
    """plain()'s `fl` (a trusted canonical's "equals a decoded copy of itself") gets an entry
    exactly when a NaN is somewhere in the answer: floats alone do not count, a NaN does in a flat
    list, a table, a dict key or value, a set, a complex, a float subclass, a numpy array; the same
    NaN object twice (list equality would take it as equal to itself) counts too."""
    import marshal
    import numpy as np
    import eval.sandbox as sbx
    nan = float("nan")

    class F(float):
        pass
    clean = [1.5, [0.5, 2, "a", None], [(1, 2.5), (3, -0.0)], {1.5: [float("inf")]}, {0.25}, 1j, F(2.0),
             np.array([0.5, 1.0]), (True, b"x")]
    dirty = [nan, [0.5, nan], [nan, nan], [(1, 2.5), (3, nan)], {nan: 1}, {1: [nan]}, {nan}, complex(0, nan),
             F(nan), np.array([0.5, np.nan]), [[1, [2.0, nan]]]]
    for x in clean:
        fl = []
        out = sbx.plain(x, 0, fl)
        assert not fl, x
        assert marshal.loads(marshal.dumps(out)) == out, x  # what the flag promises
    for x in dirty:
        fl = []
        out = sbx.plain(x, 0, fl)
        assert fl, x
        assert marshal.loads(marshal.dumps(out)) != out, x


def _small_variant(p, task_id, canonical, n_base=2, n_plus=1):
    """A variant with a few of p's inputs (and none of its marshalled-input cache)."""
    q = {k: v for k, v in p.items() if not k.startswith("_blobs_")}
    return dict(q, task_id=task_id, canonical=canonical, base_input=p["base_input"][:n_base],
                plus_input=p["plus_input"][:n_plus])


def test_large_answers_cross_raw(hep, tmp_path, monkeypatch):
    """An answer over 1 MB marshalled goes through the raw "B" path (no framing) in both passes:
    the ground truth passes, one element changed at the end of 200,000 fails on that input, and a
    NaN at the end of a large float answer still makes the canonical fail itself."""
    import eval.execute as ex
    import eval.sandbox as sbx
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    table = "def longest(strings):\n    return [('ab', i, str(i)) for i in range(200000)]\n"
    p = _small_variant(hep["HumanEval/12"], "HumanEval/12-big", table)
    v, = run_jobs([Job(p, p["canonical"])])
    rec = ex.load_expected(p)
    assert v["passed"] and not rec["errors"], v
    assert all(len(x) > sbx._BIG_VALUE for x in rec["base"]) and all(rec["base_same"] + rec["plus_same"])
    wrong = table.replace("for i in range(200000)]", "for i in range(200000)][:-1] + [('ab', 0, '')]")
    w, = run_jobs([Job(p, wrong)])
    assert w["status"] == "fail" and w["first_failure"]["group"] == "base" and w["first_failure"]["index"] == 0, w
    nan = "def longest(strings):\n    return [0.5] * 200000 + [float('nan')]\n"
    q = _small_variant(hep["HumanEval/12"], "HumanEval/12-bignan", nan)
    n, = run_jobs([Job(q, q["canonical"])])
    assert n["status"] == "fail" and not any(ex.load_expected(q)["base_same"]), n


NET_PROBE = '''import socket
def longest(strings):
    out = []
    def attempt(what, fn):
        try:
            fn()
            out.append(what + ": went through")
        except OSError as e:  # socket.gaierror is one
            out.append(what + (": sandbox" if "sandbox" in str(e) else ": " + type(e).__name__))
    class T(tuple):
        pass
    attempt("connect", lambda: socket.socket().connect(("8.8.8.8", 53)))
    attempt("connect_ex", lambda: socket.socket().connect_ex(("1.1.1.1", 53)))
    attempt("tuple subclass", lambda: socket.socket().connect(T(("8.8.8.8", 53))))
    attempt("bytes host", lambda: socket.socket().connect((b"8.8.8.8", 53)))
    attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("8.8.8.8", 53)))
    attempt("resolve", lambda: socket.getaddrinfo("example.com", 80))
    attempt("loopback", lambda: socket.socket().connect(("127.0.0.1", 9)))
    return out
'''


@pytest.mark.parametrize("jailed", [True, False])
def test_network_refused_in_process(hep, tmp_path, monkeypatch, jailed):
    """The in-process layer (the audit hook, jail or not): connects, UDP sends and name lookups of
    anything but loopback are refused with the sandbox's error; loopback is let through (nothing
    listens on port 9: refused by the kernel). The canonical states what a sample must observe."""
    import eval.execute as ex
    if jailed and ex.jail_mode() != "bwrap":
        pytest.skip(f"no jail here: {ex.jail_mode()}")
    if not jailed:
        monkeypatch.setattr(ex, "jail_mode", lambda: "none: this test")
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    seen = [f"{w}: sandbox" for w in ("connect", "connect_ex", "tuple subclass", "bytes host", "udp", "resolve")]
    seen.append("loopback: ConnectionRefusedError")
    p = _small_variant(hep["HumanEval/12"], "HumanEval/12-net", f"def longest(strings):\n    return {seen!r}\n",
                       n_base=1, n_plus=0)
    v, = run_jobs([Job(p, NET_PROBE)])
    assert v["passed"], (v.get("first_failure") or {}).get("got")


def test_stand_ins_for_libraries_only_when_needed():
    """harden() imports inspect and logging (to give them stand-ins) only for a program that names
    them, imports dynamically or imports outside the stdlib."""
    from eval.sandbox import _needs_libraries
    assert not _needs_libraries(["import math, re\nfrom collections import Counter\ndef f(x):\n    return x\n"])
    for code in ("import numpy as np\n", "x = 1; import pandas\n", "from scipy import stats\n", "import os.path, yaml\n",
                 "import inspect\n", "m = __import__('insp' + 'ect')\n", "import importlib\n", "    import logging\n"):
        assert _needs_libraries(["def f(x):\n    return x\n", code]), code
