"""eval/tasks/: one file per benchmark. HumanEval as EvalPlus's base verdict; EvoEval (on fixtures in
its release format, tests/fixtures/evoeval/, written for these tests) loaded by path,
$SNOWCODER_BENCHMARKS or download (from a loopback server), judged by EvoEval's evaluator rules,
its ground truth passing through the model-sample path."""
import gzip
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eval import tasks
from eval.execute import Job, run_jobs
from eval.sanitize import ground_truth_program, sample_program
from eval.tasks import evoeval, humaneval

FIX = Path(__file__).parent / "fixtures" / "evoeval"


def _rows(f):
    return [json.loads(line) for line in Path(f).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def evo():
    return {p["task_id"]: p for p in tasks.make_problems("evoeval", FIX)}


# ------------------------------------------------------------------ the registry
def test_every_task_has_one_file_with_the_interface():
    assert set(tasks.TASKS) >= {"humaneval", "humaneval+", "mbpp", "mbpp+", "bigcodebench", "bigcodebench-hard",
                                "evoeval", *(f"evoeval-{c}" for c in evoeval.CATEGORIES)}
    assert evoeval.CATEGORIES == ["difficult", "creative", "subtle", "combine", "tool_use"]
    for name, m in tasks.TASKS.items():
        assert callable(m.make_problems) and callable(m.build_prompt) and isinstance(m.STOP, list), name
        assert set(m.TASKS[name]) <= set(tasks.SOURCES), name  # every data name a task reads is loadable
        assert m.describe(name)
    for m in tasks.BENCHMARKS:  # data names are unique across files
        assert all(tasks.SOURCES[n] is s for n, s in m.DATA.items())
    with pytest.raises(ValueError, match="unknown eval task"):
        tasks.make_problems("humaneval++")


def test_staged_tasks_build(bench_dir):
    for t in ("humaneval", "humaneval+", "mbpp", "mbpp+", "bigcodebench-hard"):
        probs = tasks.make_problems(t, bench_dir)
        assert probs and all(p["task"] == t for p in probs)
        assert len({p["task_id"] for p in probs}) == len(probs)
        p = probs[0]
        assert tasks.stop_strings(p) == tasks.TASKS[t].STOP
        assert tasks.program_from_completion(p, "X") == tasks.build_prompt(p) + "X"


# ------------------------------------------------------------------ HumanEval = EvalPlus's base verdict
def test_humaneval_is_evalplus_base(bench_dir):
    plus_file = bench_dir / "HumanEvalPlus-v0.1.10.jsonl.gz"
    recs = {r["task_id"]: r for r in map(json.loads, gzip.open(plus_file, "rt"))}  # read independently
    he = tasks.make_problems("humaneval", bench_dir)
    hep = {p["task_id"]: p for p in tasks.make_problems("humaneval+", bench_dir)}
    assert len(he) == 164
    for p in he:
        r = recs[p["task_id"]]
        assert p["kind"] == "diff" and p["groups"] == ["base"] and "test" not in p  # no check() anywhere
        assert p["base_input"] == r["base_input"] and p["prompt"] == r["prompt"]
        assert p["canonical"] == r["prompt"] + r["canonical_solution"]
        # the same records and the same dataset hash as humaneval+: one expected-output cache for both
        assert p["dhash"] == hep[p["task_id"]]["dhash"] and hep[p["task_id"]]["groups"] == ["base", "plus"]
    assert humaneval.build_prompt(he[0]) == recs["HumanEval/0"]["prompt"].rstrip("\n")


def test_humaneval_forged_check_does_not_pass(bench_dir):
    """What forged the old check() column (the test ran in the sample's process): patching the
    builtins the test relies on, or defining check itself. The verdict is now the parent's
    comparison of shipped outputs, so a wrong answer fails whatever the sample patches."""
    he = {p["task_id"]: p for p in tasks.make_problems("humaneval", bench_dir)}
    p = he["HumanEval/0"]
    wrong = "    return None\n"
    forgeries = [
        wrong + "import builtins\nbuiltins.AssertionError = KeyError\nbuiltins.isinstance = lambda *a: True\n",
        wrong + "def check(candidate):\n    return True\n",
        "    class Eq:\n        def __eq__(self, other):\n            return True\n    return Eq()\n",
    ]
    jobs = [Job(p, p["prompt"] + f, sample=i) for i, f in enumerate(forgeries)]
    res = run_jobs(jobs)
    assert len(res) == 3 and not [v for v in res if v["passed"]], res
    assert all(v["first_failure"]["group"] in ("base", "load") for v in res)


# ------------------------------------------------------------------ EvoEval: loading
def test_evoeval_fixtures_are_in_the_release_format():
    for c in evoeval.CATEGORIES:
        rows = _rows(FIX / f"EvoEval_{c}.jsonl")
        assert rows, c
        for r in rows:
            assert {"task_id", "prompt", "canonical_solution", "entry_point", "inputs", "parent"} <= set(r)
            assert r["task_id"].startswith("EvoEval/") and all(isinstance(s, str) for s in r["inputs"])
            if c == "tool_use":
                assert {"main", "helpers"} <= set(r)


def test_evoeval_loads_by_path_env_and_gz(tmp_path, monkeypatch):
    from eval.data import benchmark_file, dataset_hash, load_benchmark, locate
    direct = {c: load_benchmark(f"evoeval-{c}", FIX) for c in evoeval.CATEGORIES}
    for c, rows in direct.items():
        assert rows == _rows(FIX / f"EvoEval_{c}.jsonl")
    # a single file for one category
    assert load_benchmark("evoeval-subtle", FIX / "EvoEval_subtle.jsonl") == direct["subtle"]
    # the release's .jsonl.gz, found in $SNOWCODER_BENCHMARKS; EvoEval's hash = md5 of the jsonl
    gz_dir = tmp_path / "bench"
    gz_dir.mkdir()
    for c in evoeval.CATEGORIES:
        (gz_dir / f"EvoEval_{c}.jsonl.gz").write_bytes(gzip.compress((FIX / f"EvoEval_{c}.jsonl").read_bytes()))
    monkeypatch.setenv("SNOWCODER_BENCHMARKS", str(gz_dir))
    assert benchmark_file("evoeval-creative") == gz_dir / "EvoEval_creative.jsonl.gz"
    assert load_benchmark("evoeval-creative") == direct["creative"]
    import hashlib
    assert dataset_hash("evoeval-creative") == hashlib.md5((FIX / "EvoEval_creative.jsonl").read_bytes()).hexdigest()
    assert len(tasks.make_problems("evoeval")) == sum(len(r) for r in direct.values())
    # a file path cannot stand for the five categories
    with pytest.raises(SystemExit, match="five"):
        tasks.make_problems("evoeval", FIX / "EvoEval_subtle.jsonl")
    # an empty directory: located nowhere, and a given directory without the file says so
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SNOWCODER_BENCHMARKS", str(empty))
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    if not (Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "EvoEval_difficult.jsonl.gz").exists():
        assert locate("evoeval-difficult") is None
        assert tasks.missing_data("evoeval") == [f"evoeval-{c}" for c in evoeval.CATEGORIES]
    with pytest.raises(SystemExit, match="neither a file nor a directory"):
        load_benchmark("evoeval-difficult", empty)


def test_evoeval_download_from_the_release_url(tmp_path, monkeypatch):
    """The download path, against a loopback server standing in for the GitHub release: the file
    lands in the cache and is read from there next time, with the server gone."""
    serve = tmp_path / "srv" / "download" / evoeval.VERSION
    serve.mkdir(parents=True)
    (serve / "EvoEval_combine.jsonl.gz").write_bytes(gzip.compress((FIX / "EvoEval_combine.jsonl").read_bytes()))

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path / "srv"), **k)

        def log_message(self, *a):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    from eval.data import benchmark_file, load_benchmark
    src = tasks.SOURCES["evoeval-combine"]
    assert src["urls"] == [f"https://github.com/evo-eval/evoeval_release/releases/download/{evoeval.VERSION}/EvoEval_combine.jsonl.gz"]
    monkeypatch.setitem(src, "urls", [f"http://127.0.0.1:{srv.server_port}/download/{evoeval.VERSION}/EvoEval_combine.jsonl.gz"])
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SNOWCODER_BENCHMARKS", str(empty))
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    import formats
    monkeypatch.setattr(formats, "PROJECT_ROOT", tmp_path / "nowhere")  # no ../shared/benchmarks either
    try:
        rows = load_benchmark("evoeval-combine")
    finally:
        srv.shutdown()
    assert rows == _rows(FIX / "EvoEval_combine.jsonl")
    assert benchmark_file("evoeval-combine") == tmp_path / "cache" / "benchmarks" / "EvoEval_combine.jsonl.gz"
    assert load_benchmark("evoeval-combine") == rows  # from the cache, the server is gone


# ------------------------------------------------------------------ EvoEval: problems and ground truth
def test_evoeval_problems(evo):
    n = {c: len(_rows(FIX / f"EvoEval_{c}.jsonl")) for c in evoeval.CATEGORIES}
    assert len(evo) == sum(n.values())
    for c in evoeval.CATEGORIES:
        for r in _rows(FIX / f"EvoEval_{c}.jsonl"):
            p = evo[f"EvoEval_{c}/{r['task_id']}"]
            assert p["category"] == c and p["source_id"] == r["task_id"] and p["groups"] == ["base"]
            assert p["base_input"] == [eval(f"[{s}]") for s in r["inputs"]]  # EvoEval's reading of inputs
            assert p["canonical"] == r["prompt"] + "\n" + r["canonical_solution"]  # as EvoEval builds it
            assert tasks.build_prompt(p) == r["prompt"].rstrip("\n") and tasks.stop_strings(p) == humaneval.STOP
    single = tasks.make_problems("evoeval-difficult", FIX)
    assert [p["task_id"] for p in single] == [r["task_id"] for r in _rows(FIX / "EvoEval_difficult.jsonl")]


def test_evoeval_ground_truth_through_the_sample_path(evo):
    probs = list(evo.values())
    progs = [ground_truth_program(p) for p in probs]
    helpers = [p for p in probs if p["category"] == "tool_use"]
    assert all("def is_vowel" in ground_truth_program(p) or "def digits" in ground_truth_program(p) for p in helpers)
    res = run_jobs([Job(p, prog) for p, prog in zip(probs, progs)])
    bad = [(v["task_id"], v.get("first_failure")) for v in res if not v["passed"]]
    assert len(res) == len(probs) and not bad, bad
    assert sum(len(v["verdicts"]["base"]) for v in res) == sum(len(p["base_input"]) for p in probs)


def test_evoeval_wrong_programs_fail(evo):
    jobs = []
    for p in evo.values():
        jobs.append(Job(p, sample_program(p, "\n    return None\n")[1], sample=0, extra=dict(kind="none")))
        # right on the first input only
        first = p["base_input"][0]
        body = p["canonical"].replace(f"def {p['entry_point']}(", "def _real(", 1)
        prog = body + f"\n\ndef {p['entry_point']}(*a):\n    r = _real(*a)\n    return r if list(a) == {first!r} else repr(r)\n"
        jobs.append(Job(p, prog, sample=1, extra=dict(kind="first-only")))
    res = run_jobs(jobs)
    wrong = [(v["task_id"], v["kind"]) for v in res if v["passed"]]
    # `return None` happens to be right where every expected answer is None: none of the fixtures
    assert not wrong, wrong


# ------------------------------------------------------------------ EvoEval: its comparison and oracles
def _m(evo, key, out, exp, args):
    return tasks.outputs_match(out, exp, evo[key], args)


def test_evoeval_is_equal_rules(evo):
    p = "EvoEval_combine/EvoEval/1"
    assert _m(evo, p, 3, 3, None)
    assert not _m(evo, p, 2.0, 2, None)            # EvoEval: int and float are different classes ...
    assert not _m(evo, p, 1, True, None)           # ... and so are int and bool
    assert not _m(evo, p, [1, 2], (1, 2), None)    # list and tuple
    assert _m(evo, p, 1.0 + 5e-6, 1.0, None)       # floats: allclose, rtol 1e-5 ...
    assert not _m(evo, p, 1.001, 1.0, None)
    assert _m(evo, p, float("nan"), float("nan"), None)  # ... with NaN equal to NaN
    assert _m(evo, p, [1.0, 2.0], (1.0, 2.0), None)      # all-float lists and tuples are one class
    assert _m(evo, p, ((1, 2), 2), ((1, 2), 2), None) and not _m(evo, p, ((1, 2), 2), ((1, 3), 2), None)
    assert _m(evo, p, {"a": 1, "b": [0.5]}, {"b": [0.5], "a": 1}, None)
    assert not _m(evo, p, {"a": 1.0}, {"a": 1}, None) and not _m(evo, p, {"a": 1}, {"a": 1, "b": 2}, None)
    assert _m(evo, p, {1, 2}, {2, 1}, None) and not _m(evo, p, [1, 2, 3], [1, 2], None)
    # the official rule as written: an empty list is "floats", and numpy broadcasts it, so [] and [x]
    # compare equal (kept: these are EvoEval's verdicts); a length mismatch otherwise fails
    assert _m(evo, p, [1.0], [], None) and not _m(evo, p, [1.0, 2.0], [], None)
    assert _m(evo, p, [2.5], 2.5, None) and _m(evo, p, [2.5, 2.5], 2.5, None)  # a float broadcasts the same way
    # the task's atol plays no part (EvoEval passes atol=0 and is_equal ignores it)
    assert not _m(evo, p, 1.1, 1.0, None)


def test_evoeval_special_oracles(evo):
    pal = "EvoEval_difficult/EvoEval/10"
    assert _m(evo, pal, "Aba", "AbA", ["Ab"])          # any case-insensitive palindrome of that length
    assert not _m(evo, pal, "Abba", "AbA", ["Ab"]) and not _m(evo, pal, "bAb", "AbA", ["Ab"])
    root = "EvoEval_difficult/EvoEval/32"
    assert _m(evo, root, 1.004, 1.0, [[-1, 1], [0, 2]])   # |poly| <= 2e-2 inside the interval
    assert not _m(evo, root, 3.0, 3.0, [[-3, 1], [0, 2]])  # outside the interval
    assert _m(evo, root, None, None, [[1, 0, 1], [-1, 1]]) and not _m(evo, root, 0.0, None, [[1, 0, 1], [-1, 1]])
    maze = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    moves = "EvoEval_creative/EvoEval/26"
    gt = ["down", "down", "right", "right"]
    assert _m(evo, moves, ["right", "right", "down", "down"], gt, [maze, (0, 0), (2, 2)])   # another way out
    assert not _m(evo, moves, ["down", "right", "right", "down"], gt, [maze, (0, 0), (2, 2)])  # through the wall
    assert not _m(evo, moves, ["right"], gt, [maze, (0, 0), (2, 2)])                        # not at the end
    assert _m(evo, moves, [], [], [[[0, 1], [1, 0]], (0, 0), (1, 1)])
    path = "EvoEval_creative/EvoEval/30"
    garden = [[1, 1, 1], [1, 0, 1], [1, 1, 1]]
    gt = [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
    assert _m(evo, path, [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2)], gt, [garden, (0, 0), (2, 2)])
    assert not _m(evo, path, [(0, 0), (1, 1), (2, 2)], gt, [garden, (0, 0), (2, 2)])
    assert not _m(evo, path, [(0, 0), (0, 2), (2, 2)], gt, [garden, (0, 0), (2, 2)])  # not adjacent
    pair = "EvoEval_creative/EvoEval/69"
    assert _m(evo, pair, (0, 1), (1, 2), [[1, 6, 2, 3], 6]) and _m(evo, pair, (2, 3), (0, 1), [[1, 6, 2, 3], 6])
    assert not _m(evo, pair, [0, 1], (0, 1), [[1, 6, 2, 3], 6])      # a tuple, as the oracle demands
    assert not _m(evo, pair, (1, 0), (0, 1), [[1, 6, 2, 3], 6])      # i < j
    assert _m(evo, pair, "No magic today", "No magic today", [[1, 2], 5])
    sparse = "EvoEval_subtle/EvoEval/32"
    assert _m(evo, sparse, -1.0, 5.0, [[2, 1, 1]])   # 2 + x + x**3: any root, whatever the canonical said
    assert not _m(evo, sparse, 1.0, -1.0, [[2, 1, 1]])
    # the same category name and id elsewhere is compared by is_equal, not by an oracle
    assert not _m(evo, "EvoEval_subtle/EvoEval/0", 2.6, 2.5, [[1.0]])


def test_evoeval_oracles_through_the_sandbox(evo):
    """Other valid answers pass a real run (the oracle judges in the parent); an int-for-float
    change that EvalPlus would accept fails, as in EvoEval."""
    pal = evo["EvoEval_difficult/EvoEval/10"]
    other_case = pal["prompt"] + ("    for i in range(len(string) + 1):\n        tail = string[i:]\n"
                                  "        if tail.lower() == tail[::-1].lower():\n"
                                  "            return string + string[:i][::-1].swapcase()\n    return string\n")
    pair = evo["EvoEval_creative/EvoEval/69"]
    last_pair = pair["prompt"] + ("    best = 'No magic today'\n    for i in range(len(arr)):\n"
                                  "        for j in range(i + 1, len(arr)):\n            if arr[i] * arr[j] == target:\n"
                                  "                best = (i, j)\n    return best\n")
    count = evo["EvoEval_subtle/EvoEval/12"]
    as_float = count["prompt"] + "    return float(sum(1 for i in range(1, len(s), 2) if s[i] in 'AEIOU'))\n"
    res = {v["task_id"]: v for v in run_jobs([Job(pal, other_case), Job(pair, last_pair), Job(count, as_float)])}
    assert res[pal["task_id"]]["passed"] and res[pair["task_id"]]["passed"], res
    assert res[count["task_id"]]["passed"] is False and res[count["task_id"]]["first_failure"]["group"] == "base"
    # the same float answer is right for EvalPlus's rule (2.0 == 2): the benchmarks' rules differ
    from eval.tasks.common import evalplus_equal
    assert evalplus_equal(2.0, 2, 0.0)


def test_evoeval_run_and_per_category(tmp_path):
    from eval.metrics import summarize
    from eval.run import main
    summary = main(["--ground-truth", "--tasks", "evoeval,evoeval-tool_use", "--out", str(tmp_path / "out"),
                    "--data", str(FIX)])
    assert summary["evoeval"]["pass@1"] == 1.0 and summary["evoeval"]["tasks"] == 14
    assert summary["evoeval-tool_use"]["pass@1"] == 1.0 and summary["evoeval-tool_use"]["tasks"] == 2
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "five default categories" in res["meta"]["notes"]["evoeval"]
    verdicts = [json.loads(l) for l in (tmp_path / "out" / "verdicts-evoeval-ground-truth.jsonl").read_text().splitlines()]
    per = summarize(evoeval.category_verdicts(verdicts), [1])
    assert sorted(per) == sorted(f"evoeval/{c}" for c in evoeval.CATEGORIES)
    assert {t: r["tasks"] for t, r in per.items()} == {f"evoeval/{c}": len(_rows(FIX / f"EvoEval_{c}.jsonl"))
                                                      for c in evoeval.CATEGORIES}


# ------------------------------------------------------------------ eval.loss: EvoEval when present
def test_loss_scores_evoeval_when_present_and_says_when_not(tmp_path, monkeypatch, tiny_tokenizer):
    import numpy as np
    from eval import loss as L
    pairs = L.solution_pairs("evoeval", FIX)
    assert len(pairs) == 14
    for (tid, ctx, cont), p in zip(pairs, tasks.make_problems("evoeval", FIX)):
        assert tid == p["task_id"] and ctx + cont == p["canonical"]

    def uniform(items):  # every token 1/1024: a stand-in scorer, the bits are then exact
        return [np.full(len(ids) - start, -np.log(1024.0)) for ids, start in items]
    monkeypatch.setenv("SNOWCODER_CACHE", str(tmp_path / "cache"))
    res = L.evaluate(uniform, tiny_tokenizer, ["evoeval", "humaneval+"], bench_path=FIX)
    a = res["aligned"]["evoeval"]
    assert a["n_tasks"] == 14 and a["bpb"] == pytest.approx(10.0 * a["tokens"] / a["bytes"])
    # humaneval+ is not in the fixture dir: named as missing, nothing downloaded
    assert "humaneval+" in res["missing"] and "HumanEvalPlus-v0.1.10.jsonl.gz" in res["missing"]["humaneval+"]
    empty = tmp_path / "empty"
    empty.mkdir()
    res = L.evaluate(uniform, tiny_tokenizer, ["evoeval"], bench_path=empty)
    assert not res["aligned"] and "not present here: EvoEval_difficult.jsonl.gz" in res["missing"]["evoeval"]
    assert "python -m eval.data evoeval-difficult" in res["missing"]["evoeval"]
    assert "evoeval | not measured" in L.table(res)
    assert not (tmp_path / "cache" / "benchmarks").exists()
