"""
Benchmark: wall time and throughput of the full ground-truth runs (every base and plus input of
every task, canonical solutions as the samples) on HumanEval+ and MBPP+.

    python -m eval.bench                       # both, cold and warm expected-output cache
    python -m eval.bench --tasks humaneval+ --workers 2

Reported per benchmark:
  cold: computing the expected outputs (canonical on all inputs) + judging the canonical samples
  warm: judging only (expected outputs cached on disk, the normal case for every later checkpoint)
Baseline, measured in the same run: a naive runner that starts one fresh Python process per test
input (exec the program, call it once, print the output), timed on a random sample of inputs and
extrapolated to all of them at the same worker count. Target: HumanEval+ warm <= 60 s on 2 cores.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from eval import execute as ex

NAIVE = """
import sys, marshal
ns = {}
exec(sys.argv[1], ns)
args = marshal.loads(sys.stdin.buffer.read())
print(repr(ns[sys.argv[2]](*args)))
"""


def naive_per_input(problems, n_inputs, workers, seed=0):
    """Seconds per input of the one-process-per-input baseline, from `n_inputs` random inputs."""
    import marshal
    rng = random.Random(seed)
    pool = [(p, g, i) for p in problems for g in ("base", "plus") for i in range(len(p[g + "_input"]))]
    pick = rng.sample(pool, min(n_inputs, len(pool)))

    def one(item):
        p, g, i = item
        subprocess.run([sys.executable, "-I", "-c", NAIVE, p["canonical"], p["entry_point"]],
                       input=marshal.dumps(p[g + "_input"][i]), capture_output=True, timeout=120)
    t0 = time.time()
    with ThreadPoolExecutor(workers) as pe:
        list(pe.map(one, pick))
    return (time.time() - t0) / len(pick), len(pool)


def bench(task, workers, n_baseline, data=None):
    probs = ex.make_problems(task, data)
    n_inputs = sum(len(p["base_input"]) + len(p["plus_input"]) for p in probs)
    cache = tempfile.mkdtemp(prefix="snowcoder-bench-cache-")
    old = os.environ.get("SNOWCODER_CACHE")
    os.environ["SNOWCODER_CACHE"] = cache
    try:
        t0 = time.time()
        ex.ensure_expected(probs, workers=workers)
        t_expected = time.time() - t0
        t0 = time.time()
        res = ex.run_jobs([ex.Job(p, p["canonical"]) for p in probs], workers=workers)
        t_warm = time.time() - t0
    finally:
        if old is None:
            os.environ.pop("SNOWCODER_CACHE")
        else:
            os.environ["SNOWCODER_CACHE"] = old
        import shutil
        shutil.rmtree(cache, ignore_errors=True)
    passed = sum(bool(v["passed"]) for v in res)
    per_input, _ = naive_per_input(probs, n_baseline, workers)
    naive_total = per_input * n_inputs
    print(f"{task}: {len(probs)} tasks, {n_inputs} inputs, ground truth {passed}/{len(probs)}, {workers} workers")
    print(f"  warm (judging):            {t_warm:7.1f} s  {len(probs) / t_warm:6.2f} samples/s  {n_inputs / t_warm:9.0f} inputs/s")
    print(f"  cold (+ expected outputs): {t_expected + t_warm:7.1f} s  (expected outputs {t_expected:.1f} s)")
    print(f"  baseline, one process per input: {per_input * 1000:.1f} ms/input on {n_baseline} random inputs "
          f"-> {naive_total:.0f} s extrapolated; speedup warm {naive_total / t_warm:.0f}x, "
          f"cold {naive_total / (t_expected + t_warm):.0f}x")
    return dict(task=task, tasks=len(probs), inputs=n_inputs, passed=passed, warm_s=t_warm, expected_s=t_expected,
                naive_s=naive_total)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="humaneval+,mbpp+")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--baseline-inputs", type=int, default=200, help="random inputs timed for the naive baseline")
    ap.add_argument("--data", default=None)
    a = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for t in a.tasks.split(","):
        bench(t.strip(), a.workers, a.baseline_inputs, a.data)


if __name__ == "__main__":
    main()
