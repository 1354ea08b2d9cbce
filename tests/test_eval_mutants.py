"""eval/mutants.py: deterministic, valid variants of the canonical solutions; a few dozen of them
through our real judge (eval.execute.run_jobs, the sandbox) get the verdict EvalPlus's rules give,
computed here independently: each program run directly in a subprocess on the inputs, compared
by EvalPlus's rules written out below (the full >= 2,000-sample check against EvalPlus itself is
`python -m eval.bench --parity 2000`, which installs EvalPlus; tests never do)."""
import ast
import copy
import math
import os
import pickle
import subprocess
import sys

import pytest

from eval import data as bdata
from eval.execute import Job, make_problems, run_jobs
from eval.mutants import SLOW, WRONG, apply, make_samples, sites, slow_variant, task_variants


@pytest.fixture(scope="module")
def hep(bench_dir):
    return make_problems("humaneval+", bench_dir)


@pytest.fixture(scope="module")
def mbpp(bench_dir):
    return make_problems("mbpp+", bench_dir)


# ------------------------------------------------------------------ the generator
def test_deterministic_and_per_task(hep):
    hep = hep[:50]
    a = make_samples(hep, 200, seed=0)
    assert a == make_samples(hep, 200, seed=0)
    b = make_samples(hep, 200, seed=1)
    assert [r["solution"] for r in a] != [r["solution"] for r in b]
    # a task's variants depend on the seed and the task only, not on the other tasks given
    some = hep[10:13]
    sub = make_samples(some, 3 * 4, seed=0)  # 3 variants per task, as above
    assert sub == [r for r in a if r["task_id"] in {p["task_id"] for p in some}]
    assert len(a) >= 200 and {r["task_id"] for r in a} == {p["task_id"] for p in hep}


def test_variants_valid_and_changed(hep):
    rows = make_samples(hep, 4 * len(hep), seed=3)
    canon = {p["task_id"]: ast.dump(ast.parse(p["canonical"])) for p in hep}
    kinds = set()
    for r in rows:
        compile(r["solution"], r["task_id"], "exec")  # syntactically valid
        if r["kind"] == "canonical":
            assert r["sample"] == 0
            continue
        kinds.add(r["kind"])
        assert ast.dump(ast.parse(r["solution"])) != canon[r["task_id"]], r
    assert set(WRONG) - {"not"} <= kinds, set(WRONG) - kinds  # every kind of wrong change is drawn
    # distinct within a task
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task_id"], []).append(r["solution"])
    assert all(len(set(s)) == len(s) for s in by_task.values())


def test_every_change_kind_applies(hep):
    """Each wrong kind at every one of its sites, and each slow kind, gives a valid program that
    differs from the canonical one in the way the kind says."""
    import random
    seen = set()
    for p in hep[:40]:
        tree = ast.parse(p["canonical"])
        for kind, i in sites(tree):
            t = copy.deepcopy(tree)
            desc = apply(t, kind, i, random.Random(0))
            ast.fix_missing_locations(t)
            src = ast.unparse(t)
            compile(src, p["task_id"], "exec")
            assert ast.dump(t) != ast.dump(tree), (p["task_id"], kind, desc)
            seen.add(kind)
    assert seen >= set(WRONG) - {"not"}
    p = hep[0]
    for kind in SLOW:
        t = ast.parse(p["canonical"])
        slow_variant(t, p["entry_point"], kind)
        src = ast.unparse(ast.fix_missing_locations(t))
        compile(src, "x", "exec")
        assert ("sleep" in src) == kind.startswith("sleep") and ("while True" in src) == kind.startswith("infinite")


# ------------------------------------------------------------------ EvalPlus's verdict, independently
# Run one program on one input group the way EvalPlus's evaluator does: the program exec'd in a
# fresh namespace, the function called on each input under a wall-clock alarm, the first failure
# ends the group; the expected outputs come from the canonical solution on deep copies of the inputs.
RUNNER = r"""
import copy, os, pickle, signal, sys, time
res_out = os.fdopen(os.dup(1), "wb")
sys.stdout = sys.stderr = open(os.devnull, "w")
code, entry, inputs, limits = pickle.loads(sys.stdin.buffer.read())
class Alarm(BaseException): pass
def on_alarm(*a): raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
res = []
ns = {}
try:
    exec(code, ns)
    fn = ns[entry]
except BaseException as e:
    res.append(("load", repr(e)[:200], 0.0))
    inputs = []
for args in inputs:
    args = copy.deepcopy(args)
    t0 = time.time()
    try:
        if limits is not None:
            signal.setitimer(signal.ITIMER_REAL, limits[len(res)])
        out = fn(*args)
        status = "ok"
    except Alarm:
        out, status = None, "timeout"
    except BaseException as e:
        out, status = repr(e)[:200], "err"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    dt = time.time() - t0
    try:
        pickle.dumps(out)
    except Exception:
        out, status = None, "unpicklable"
    res.append((status, out, dt))
    if status != "ok" and limits is not None:
        break
res_out.write(pickle.dumps(res))
res_out.flush()
"""


def run_group(code, entry, inputs, limits=None, timeout=None):
    """[(status, output, seconds)] per input run, or None if the whole group ran out of time."""
    try:
        r = subprocess.run([sys.executable, "-I", "-c", RUNNER], input=pickle.dumps((code, entry, inputs, limits)),
                           capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return pickle.loads(r.stdout) if r.stdout else [("died", None, 0.0)]


def is_floats(x):
    return isinstance(x, float) or (isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(v, float) for v in x))


def evalplus_equal(out, exp, atol):
    """EvalPlus's comparison: Python equality; only when that fails and the task has an atol (or
    the expected value is floats, then 1e-6), same type and length and allclose(rtol=1e-7)."""
    import numpy as np
    try:
        if out == exp:
            return True
        if atol == 0 and is_floats(exp):
            atol = 1e-6
        if atol == 0 or type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return bool(np.allclose(out, exp, rtol=1e-7, atol=atol))
    except Exception:
        return False


def evalplus_verdict(code, problem, expected):
    """True when every base and plus input is right within EvalPlus's time limits: per input
    max(1 s, 4 x the canonical's time), per group min(60 s, sum of those) + 1 s."""
    for g in ("base", "plus"):
        exp = expected[g]
        limits = [max(1.0, 4.0 * dt) for _, _, dt in exp]
        cap = min(60.0, sum(limits)) + 1.0
        got = run_group(code, problem["entry_point"], problem[g + "_input"], limits, timeout=cap + 1.0)
        if got is None or len(got) != len(exp):
            return False
        if not all(s == "ok" and evalplus_equal(o, e[1], problem["atol"]) for (s, o, _), e in zip(got, exp)):
            return False
    return True


SPECIAL = {"find_zero", "similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
           "intersection_array", "find_dissimilar", "Diff", "check_str", "text_match_three", "text_starta_endb",
           "are_equivalent", "sum_div", "surface_Area", "digit_distance_nums"}  # EvalPlus's special oracles


def _plain_tasks(problems, raw, step, n):
    """Every `step`-th task without a special oracle, whose stored inputs are the call arguments
    as they are (no tuple/set restoring), and whose canonical is fast: the reference above then
    needs nothing from our code."""
    raw = {r["task_id"]: r for r in raw}
    out = []
    for p in problems[::step]:
        r = raw[p["task_id"]]
        if p["entry_point"] in SPECIAL or p["base_input"] != r["base_input"] or p["plus_input"] != (r["plus_input"] or []):
            continue
        if len(p["base_input"]) + len(p["plus_input"]) > 600:
            continue
        out.append(p)
        if len(out) == n:
            break
    return out


def test_mutants_get_evalplus_verdicts(hep, mbpp, bench_dir):
    probs = (_plain_tasks(hep, bdata.load_benchmark("humaneval+", bench_dir), 4, 5)
             + _plain_tasks(mbpp, bdata.load_benchmark("mbpp+", bench_dir), 23, 5))
    assert len(probs) == 10
    jobs = []
    for k, p in enumerate(probs):
        for v in task_variants(p, 3, seed=7):
            jobs.append(Job(p, v["solution"], sample=len(jobs), extra=dict(kind=v["kind"])))
        kind = ("infinite", "sleep_small")[k % 2]  # both timing outcomes, every run
        t = ast.parse(p["canonical"])
        slow_variant(t, p["entry_point"], kind)
        jobs.append(Job(p, ast.unparse(ast.fix_missing_locations(t)), sample=len(jobs), extra=dict(kind=kind)))
    expected = {}
    for p in probs:
        expected[p["task_id"]] = {g: run_group(p["canonical"], p["entry_point"], p[g + "_input"]) for g in ("base", "plus")}
        assert all(s == "ok" for g in ("base", "plus") for s, _, _ in expected[p["task_id"]][g]), p["task_id"]
    ours = {v["sample"]: v for v in run_jobs(jobs)}
    ref = {j.sample: evalplus_verdict(j.program, j.problem, expected[j.problem["task_id"]]) for j in jobs}
    wrong = [(j.problem["task_id"], j.extra["kind"], ours[j.sample]["status"], ref[j.sample], ours[j.sample].get("first_failure"))
             for j in jobs if bool(ours[j.sample]["passed"]) != ref[j.sample]]
    assert not wrong, wrong
    # the sample has both outcomes, timing ones included
    assert sum(ref.values()) >= 5 and len(ref) - sum(ref.values()) >= 10
    assert {ours[j.sample]["status"] for j in jobs if j.extra["kind"] == "infinite"} == {"timeout"}
