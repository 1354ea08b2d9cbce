"""
BigCodeBench v0.1.0 ("complete" split), full (1,140 tasks) and Hard (148), judged by its own tests.

Data: the v0.1.0_hf file; "bigcodebench-hard" is the 148 Hard ids taken out of it (the official
list lives only on the HF Hub; see ../shared/benchmarks/README.md), or a Hard file used as-is.
Prompt: the record's complete_prompt (imports, signature, docstring) as given; the model writes
task_func's body. Stop strings: EvalPlus/BigCodeBench's base-model stops, plus the next top-level
class (task_func is done).
Judging: the task's unittest classes run against the program; every test method must pass (no
output oracle here: kind "unittest" in eval/execute.py). `imports` lists the top-level modules the
program and its tests import, so tasks this Python cannot run are skipped and counted.
"""
TASKS = {"bigcodebench": ["bigcodebench"], "bigcodebench-hard": ["bigcodebench-hard"]}  # task -> the data it reads

# BigCodeBench-Hard v0.1.0 ids
BCB_HARD_IDS = [13, 15, 17, 19, 34, 37, 82, 89, 92, 93, 99, 100, 101, 108, 120, 123, 124, 129, 139, 147, 161, 162, 177,
                184, 187, 199, 208, 211, 214, 227, 239, 241, 267, 273, 274, 287, 302, 308, 310, 313, 324, 326, 341, 346,
                360, 367, 368, 374, 399, 401, 409, 417, 418, 424, 443, 445, 454, 458, 461, 477, 486, 492, 501, 502, 503,
                509, 511, 513, 526, 528, 530, 532, 553, 560, 567, 574, 579, 582, 583, 587, 590, 592, 593, 594, 618, 636,
                637, 654, 655, 657, 678, 720, 723, 752, 760, 763, 765, 771, 777, 785, 800, 826, 845, 854, 857, 865, 870,
                879, 897, 906, 914, 915, 916, 917, 928, 942, 945, 952, 955, 963, 964, 969, 971, 985, 988, 990, 998, 999,
                1003, 1004, 1006, 1008, 1012, 1013, 1015, 1019, 1020, 1022, 1039, 1040, 1042, 1053, 1057, 1077, 1085,
                1124, 1129, 1137]


def _hard_selection(rows, f):
    if len(rows) == len(BCB_HARD_IDS):  # already the Hard file
        return rows
    keep = {f"BigCodeBench/{i}" for i in BCB_HARD_IDS}
    return [r for r in rows if r["task_id"] in keep]


_FULL = dict(
    files=["BigCodeBench-v0.1.0_hf.jsonl.gz", "BigCodeBench.jsonl.gz"],
    urls=["https://github.com/bigcode-project/bigcodebench-annotation/raw/d8a1b7b418b5c73b32e6d9731e062f549818c8d9/hf_data/BigCodeBench.jsonl.gz"],
    sha256="33baf4f414eb34507f1a8fd55ef9bcd79c1f9b4c3e8e2544f023edac1b20afec")
DATA = {
    "bigcodebench": _FULL,
    "bigcodebench-hard": dict(_FULL, files=["BigCodeBench-Hard-v0.1.0_hf.jsonl.gz"] + _FULL["files"], select=_hard_selection),
}

STOP = ["\nif __name__", "\ndef main(", "\nprint(", "\nclass ", "\n```", "<|endoftext|>"]


def describe(task: str) -> str:
    return ("BigCodeBench v0.1.0 complete split, " + ("all 1,140 tasks" if task == "bigcodebench" else "Hard subset (148)")
            + ", its unittest suites")


def bcb_imports(code: str) -> list[str]:
    """Top-level module names a BigCodeBench program and its tests import."""
    import ast
    import warnings
    names = set()
    try:
        with warnings.catch_warnings():  # task code has invalid escapes ("\S"): not our business here
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except SyntaxError:
        return []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(names)


def make_problems(task: str, path=None) -> list[dict]:
    from eval.data import dataset_hash, load_benchmark
    rows = load_benchmark(task, path)
    dhash = dataset_hash("bigcodebench", path) if task == "bigcodebench" else dataset_hash(task, path)
    return [dict(task=task, task_id=r["task_id"], prompt=r["complete_prompt"], entry_point=r["entry_point"],
                 canonical=r["complete_prompt"] + r["canonical_solution"], dataset="bigcodebench",
                 dhash=dhash, kind="unittest", test=r["test"], libs=r["libs"],
                 imports=bcb_imports(r["code_prompt"] + r["canonical_solution"] + "\n" + r["test"]))
            for r in rows]


def build_prompt(problem: dict) -> str:
    return problem["prompt"]
