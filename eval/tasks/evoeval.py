"""
EvoEval v0.1.0 (Xia et al. 2024): HumanEval problems evolved by an LLM. The paper's fourth benchmark
uses the five default categories, 100 problems each in the release:

  evoeval             all five: pass@1 over their 500 problems, which is the mean of the five
                      categories' pass@1 because each has 100 (a file with another count is
                      reported as such: every problem counts once)
  evoeval-<category>  one of difficult, creative, subtle, combine, tool_use (EvoEval's
                      `--dataset EvoEval_<category>`), with EvoEval's own task ids

Data: the official release files EvoEval_<category>.jsonl.gz (github.com/evo-eval/evoeval_release,
tag v0.1.0), found by eval.data: a given directory (or file, for one category), $SNOWCODER_BENCHMARKS,
../shared/benchmarks, the download cache, else downloaded. EvoEval's own decompressed cache name
(EvoEval_<category>.jsonl) is accepted too. A record: task_id ("EvoEval/N"), prompt, entry_point,
canonical_solution, inputs (a list of strings, each one call's argument list as Python source),
parent (the HumanEval task it came from); tool_use adds main and helpers.

Prompt and stop strings: HumanEval's (EvoEval generates from `prompt` with the HumanEval stop set);
the canonical program is prompt + "\\n" + canonical_solution, as EvoEval's ground truth is built.

Judging, as EvoEval's evaluator (evoeval/evaluate.py, evoeval/eval_test/__init__.py) does:
  - inputs: each string s becomes the argument list eval(f"[{s}]");
  - differential: the canonical's outputs on those inputs are the expected ones; the sample passes
    when every input's output matches (no plus inputs for these five categories);
  - matching is EvoEval's is_equal, stricter than EvalPlus in one way and looser in others: the
    two values must be of the same class (None, bool, int, str, floats, tuple, list, dict, set;
    so 2 != 2.0 and True != 1), floats (a float, or a list/tuple whose items are all floats, an
    empty one included) by numpy allclose(expected, out, atol=1e-6, rtol=1e-5, equal_nan=True),
    lists/tuples and dicts item by item, the rest by ==; the task's atol is not used;
  - special oracles for six problems: difficult EvoEval/10 (any case-insensitive palindrome of the
    right length that starts with the input) and EvoEval/32 (a root inside the interval,
    |poly| <= 2e-2), creative EvoEval/26 (a move list that walks the maze from start to end),
    EvoEval/30 (a path of adjacent open cells from start to end) and EvoEval/69 (any index pair
    whose product is the target), subtle EvoEval/32 (a root of the sparse polynomial, |poly| <= 1e-6);
  - time limits: EvalPlus's scheme, which EvoEval's CLI defaults match (per input max(1 s,
    4 x canonical time), the inputs together capped at min(60 s, sum) + 1 s): eval/execute.py.
"""
import ast
import math
import marshal
import sys
from pathlib import Path

from eval.tasks import humaneval

CATEGORIES = ["difficult", "creative", "subtle", "combine", "tool_use"]
VERSION = "v0.1.0"
TASKS = {"evoeval": [f"evoeval-{c}" for c in CATEGORIES], **{f"evoeval-{c}": [f"evoeval-{c}"] for c in CATEGORIES}}
DATA = {f"evoeval-{c}": dict(
    files=[f"EvoEval_{c}.jsonl.gz", f"EvoEval_{c}.jsonl", f"EvoEval_{c}-{VERSION}.jsonl"],
    urls=[f"https://github.com/evo-eval/evoeval_release/releases/download/{VERSION}/EvoEval_{c}.jsonl.gz"],
    sha256=None) for c in CATEGORIES}

STOP = humaneval.STOP
build_prompt = humaneval.build_prompt


def describe(task: str) -> str:
    if task == "evoeval":
        return (f"EvoEval {VERSION}, the five default categories ({', '.join(CATEGORIES)}): pass@1 over all their "
                f"problems (100 each in the release: the mean of the five); EvoEval's evaluator rules")
    return f"EvoEval {VERSION} EvoEval_{task.split('-', 1)[1]}, EvoEval's evaluator rules"


def parse_inputs(strings: list, where: str) -> list:
    """EvoEval's inputs: each string is one call's arguments as Python source, eval(f"[{s}]").
    A literal is read without eval; anything else (float('inf'), [0] * 100) is evaluated as EvoEval
    does: it is the benchmark file's own text, never a sample's."""
    out = []
    for k, s in enumerate(strings):
        src = f"[{s}]"
        try:
            args = ast.literal_eval(src)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            args = eval(src, {})  # noqa: S307 - trusted benchmark data, as in EvoEval's evaluator
        marshal.dumps(args)  # the sandboxed child receives it marshalled: say so here if it cannot be
        out.append(args)
    return out


def make_problems(task: str, path=None) -> list[dict]:
    from eval.data import benchmark_file, dataset_hash, load_benchmark
    cats = CATEGORIES if task == "evoeval" else [task.split("-", 1)[1]]
    if task == "evoeval" and path is not None and Path(path).is_file():
        raise SystemExit(f"evoeval: {path} is one file, the task needs the five EvoEval_<category>.jsonl(.gz) "
                         f"files: pass their directory, or one category as --tasks evoeval-<category>")
    probs = []
    for c in cats:
        name = f"evoeval-{c}"
        f = benchmark_file(name, path)
        dhash = dataset_hash(name, path)
        for line, r in enumerate(load_benchmark(name, path), 1):
            try:
                inputs = parse_inputs(r["inputs"], f"{f}:{line}")
                tid = r["task_id"] if task != "evoeval" else f"EvoEval_{c}/{r['task_id']}"
                probs.append(dict(task=task, task_id=tid, source_id=r["task_id"], category=c, prompt=r["prompt"],
                                  entry_point=r["entry_point"], canonical=r["prompt"] + "\n" + r["canonical_solution"],
                                  dataset="evoeval", dhash=dhash, kind="diff", base_input=inputs, plus_input=[],
                                  atol=0.0, groups=["base"], parent=r.get("parent")))
            except Exception as e:  # one clear line; the other problems go on
                print(f"{f}: line {line} ({r.get('task_id', '?')}): skipped, {type(e).__name__}: {e}"[:500],
                      file=sys.stderr)
    return probs


def category_verdicts(verdicts: list[dict]) -> list[dict]:
    """The `evoeval` task's verdicts relabelled by category (task "evoeval/difficult", ...): summarize
    them for the per-category rows beside the headline."""
    return [dict(v, task="evoeval/" + v["task_id"].split("/")[0][len("EvoEval_"):]) for v in verdicts
            if v["task"] == "evoeval"]


# ---------------------------------------------------------------------------- EvoEval's comparison
def _floats(x) -> bool:
    """EvoEval's is_floats: a float, or a list/tuple whose items are all floats (an empty one too)."""
    return isinstance(x, float) or (isinstance(x, (list, tuple)) and all(isinstance(v, float) for v in x))


def _cls(x) -> str:
    """EvoEval's type classes, checked in its order (bool before int, floats before tuple/list)."""
    if x is None:
        return "none"
    for t in (bool, int, str):
        if isinstance(x, t):
            return t.__name__
    if _floats(x):
        return "floats"
    for t in (tuple, list, dict, set, type):
        if isinstance(x, t):
            return t.__name__
    return "other"


def evoeval_equal(exp, out) -> bool:
    """EvoEval's is_equal(expected, output). May raise (numpy on mismatched shapes): a failure."""
    import numpy as np
    c = _cls(exp)
    if c != _cls(out):
        return False
    if c == "floats":
        return bool(np.allclose(exp, out, equal_nan=True, atol=1e-6))
    if c in ("list", "tuple"):
        return len(exp) == len(out) and all(evoeval_equal(a, b) for a, b in zip(exp, out))
    if c == "dict":
        return len(exp) == len(out) and all(k in out and evoeval_equal(v, out[k]) for k, v in exp.items())
    return bool(exp == out)


# ---------------------------------------------------------------------------- its special oracles
def _poly(xs, x):
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _palindrome(out, string, exp):  # difficult EvoEval/10: shortest palindrome starting with `string`, any case
    return len(out) == len(exp) and out.startswith(string) and out.lower() == out[::-1].lower()


def _root_in(xs, interval, out, exp):  # difficult EvoEval/32: a root inside the interval, or None when none is
    if exp is None:
        return out is None
    lo, hi = interval
    return lo <= out <= hi and abs(_poly(xs, out)) <= 2e-2


def _maze_moves(maze, start, end, out, exp):  # creative EvoEval/26: moves that walk the maze to the end
    if not exp:
        return out == []
    step = {"right": (0, 1), "left": (0, -1), "up": (-1, 0), "down": (1, 0)}
    pos = start
    for m in out:
        pos = (pos[0] + step[m][0], pos[1] + step[m][1])
        if maze[pos[0]][pos[1]] == 1:  # a wall
            return False
    return pos == end


def _maze_path(maze, start, end, out, exp):  # creative EvoEval/30: adjacent open cells from start to end
    if not exp:
        return out == []
    # EvoEval checks maze[start[0]][start[0]] (sic) for the start cell: kept, it is the official verdict
    if not (out[0] == start and out[-1] == end and maze[start[0]][start[0]] != 0):
        return False
    for (px, py), (x, y) in zip(out, out[1:]):
        if maze[x][y] == 0 or abs(x - px) + abs(y - py) != 1:
            return False
    return True


def _product_pair(arr, target, out, exp):  # creative EvoEval/69: any i < j with arr[i] * arr[j] == target
    if exp == "No magic today":
        return exp == out
    if not isinstance(out, tuple):
        return False
    i, j = out
    return 0 <= i < j < len(arr) and arr[i] * arr[j] == target


def _sparse_root(xs, out):  # subtle EvoEval/32: xs are the coefficients of x^0, x^1, x^3, x^5, ...
    full = [xs[0], xs[1]]
    for c in xs[2:]:
        full += [0, c]
    return abs(_poly(full, out)) <= 1e-6


# (category, source id) -> its special oracle(out, exp, args); every other problem: is_equal
_ORACLES = {
    ("difficult", "EvoEval/10"): lambda out, exp, args: _palindrome(out, *args, exp),
    ("difficult", "EvoEval/32"): lambda out, exp, args: _root_in(*args, out, exp),
    ("creative", "EvoEval/26"): lambda out, exp, args: _maze_moves(*args, out, exp),
    ("creative", "EvoEval/30"): lambda out, exp, args: _maze_path(*args, out, exp),
    ("creative", "EvoEval/69"): lambda out, exp, args: _product_pair(*args, out, exp),
    ("subtle", "EvoEval/32"): lambda out, exp, args: _sparse_root(*args, out),
}


def equality_oracle(problem: dict) -> bool:
    return (problem["category"], problem["source_id"]) not in _ORACLES


def outputs_match(out, exp, problem: dict, args) -> bool:
    special = _ORACLES.get((problem["category"], problem["source_id"]))
    return special(out, exp, args) if special else evoeval_equal(exp, out)
