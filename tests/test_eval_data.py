"""eval/data.py: every benchmark loads from the staged files, with the documented selections (the
EvoEval files are not staged: tests/test_eval_tasks.py loads them from fixtures)."""
import gzip

import pytest

from eval.data import NAMES, SOURCES, load_benchmark, benchmark_file, dataset_hash, locate
from eval.tasks.bigcodebench import BCB_HARD_IDS
from eval.tasks.mbpp import MBPP_PLUS_DROPPED


@pytest.mark.parametrize("name,n", [("humaneval", 164), ("humaneval+", 164), ("humaneval+-mini", 164), ("mbpp", 974),
                                    ("mbpp-sanitized", 427), ("mbpp+", 378), ("bigcodebench", 1140),
                                    ("bigcodebench-hard", 148), ("gsm8k", 1319)])
def test_counts(bench_dir, name, n):
    rows = load_benchmark(name, bench_dir)
    assert len(rows) == n
    assert rows == load_benchmark(name)  # $SNOWCODER_BENCHMARKS (set by conftest) gives the same


def test_mbpp_plus_selection_is_labelled(bench_dir):
    rows = load_benchmark("mbpp+", bench_dir)
    ids = {int(r["task_id"].split("/")[1]) for r in rows}
    assert not ids & MBPP_PLUS_DROPPED and len(MBPP_PLUS_DROPPED) == 21
    assert all("pre-release" in r["version"] and "not the official" in r["version"] for r in rows)
    assert {"entry_point", "canonical_solution", "base_input", "plus_input", "atol"} <= set(rows[0])


def test_hashes_match_readme(bench_dir):
    assert dataset_hash("humaneval+", bench_dir) == "fe585eb4df8c88d844eeb463ea4d0302"
    assert dataset_hash("mbpp+", bench_dir) == "4378c708d1d35b4189d9b70d99861045"


def test_path_as_file_and_split_field(bench_dir, tmp_path):
    f = benchmark_file("humaneval", bench_dir)
    rows = load_benchmark("humaneval", f)
    assert rows[0]["task_id"] == "HumanEval/0" and rows[-1]["task_id"] == "HumanEval/163"
    # an uncompressed copy works too
    plain = tmp_path / "HumanEval.jsonl"
    plain.write_bytes(gzip.decompress(f.read_bytes()))
    assert load_benchmark("humaneval", plain) == rows
    mbpp = load_benchmark("mbpp", bench_dir)
    assert sum(r["split"] == "test" for r in mbpp) == 500


def test_bad_path_and_name(tmp_path):
    with pytest.raises(SystemExit, match="neither a file nor a directory"):
        load_benchmark("humaneval", tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("humaneval++")


def test_names_come_from_the_task_files(bench_dir):
    from eval.tasks import BENCHMARKS
    assert NAMES == sorted(n for m in BENCHMARKS for n in m.DATA)
    assert {"evoeval-difficult", "evoeval-creative", "evoeval-subtle", "evoeval-combine", "evoeval-tool_use"} <= set(NAMES)
    for name in NAMES:
        f = locate(name, bench_dir) if (bench_dir / SOURCES[name]["files"][0]).exists() else None
        if f is not None:  # what is staged is found without a download, under its listed name
            assert f.name in SOURCES[name]["files"] and benchmark_file(name, bench_dir) == f


def test_bigcodebench_hard_is_the_listed_ids(bench_dir):
    hard = load_benchmark("bigcodebench-hard", bench_dir)
    assert [r["task_id"] for r in hard] == [f"BigCodeBench/{i}" for i in BCB_HARD_IDS]
    # the same records as the full file's
    full = {r["task_id"]: r for r in load_benchmark("bigcodebench", bench_dir)}
    assert all(r == full[r["task_id"]] for r in hard)
