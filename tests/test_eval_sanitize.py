"""eval/sanitize.py and the prompts of eval/tasks/."""
from eval.sanitize import cut_at_stop, sanitize
from eval.tasks import build_prompt, humaneval
from eval.tasks.mbpp import mbpp_prompt


def test_cut_at_stop_earliest():
    assert cut_at_stop("    return 1\ndef g():\n    pass\nprint(1)", humaneval.STOP) == "    return 1"
    assert cut_at_stop("x = 1", ["\ndef "]) == "x = 1"


def test_sanitize_keeps_what_the_entry_point_needs():
    code = '''import math
from typing import List
"""a docstring"""
K = 3
UNUSED = 4
def helper(x):
    return x * K
class Thing:
    pass
def f(xs: List[int]) -> int:
    return sum(helper(x) for x in xs) + math.floor(0.5)
print(f([1, 2]))
assert f([1]) == 3
if __name__ == "__main__":
    f([])
def g(:
'''
    out = sanitize(code, "f")
    ns = {}
    exec(out, ns)
    assert ns["f"]([1, 2]) == 9
    assert "print(" not in out and "assert" not in out and "__main__" not in out
    assert "UNUSED" not in out and "def g" not in out
    assert "class Thing" in out  # every def and class stays: prompt helpers the tests call
    assert out.index("import math") < out.index("K = 3") < out.index("def helper") < out.index("def f")


def test_sanitize_truncated_and_fenced():
    trunc = "def f(x):\n    y = x + 1\n    return y\ndef other(:\n    return (1,"
    assert "return y" in sanitize(trunc, "f") and "other" not in sanitize(trunc, "f")
    chat = "Here you go:\n```python\ndef f(x):\n    return x\n```\nHope it helps."
    assert sanitize(chat, "f").strip() == "def f(x):\n    return x"
    deco = "import functools\n@functools.lru_cache(None)\ndef f(n):\n    return n if n < 2 else f(n-1) + f(n-2)\n"
    assert "@functools.lru_cache" in sanitize(deco, "f")


def test_prompts():
    t = {"prompt": "'''\nWrite a function to add.\n'''", "assertion": "\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n"}
    assert mbpp_prompt(t) == '"""\nWrite a function to add.\nassert add(1, 2) == 3\n"""\n'
    he = {"task": "humaneval", "prompt": "def f():\n    \"\"\"doc\"\"\"\n\n"}
    assert build_prompt(he) == "def f():\n    \"\"\"doc\"\"\""


def test_sanitize_keeps_module_state_helpers_and_exits():
    code = """import sys
TABLE = {}
for i in range(10):
    TABLE[i] = i * i
MEMO = {}
def fib(n):
    if n not in MEMO:
        MEMO[n] = n if n < 2 else fib(n - 1) + fib(n - 2)
    return MEMO[n]
fib(30)
def encode(s):
    return s[::-1]
try:
    def f(x):
        return TABLE[x] + fib(10)
except ImportError:
    pass
UNUSED = input()
assert f(1) == 99
print(f(2))
sys.exit(0)
"""
    out = sanitize(code, "f")
    assert "TABLE[i] = i * i" in out and "fib(30)" in out and "def encode" in out and "def f" in out
    assert "sys.exit(0)" in out  # EvalPlus would run it (and fail the sample): so must we
    assert "input()" not in out and "assert" not in out and "print(" not in out
    ns = {}
    exec(out.replace("sys.exit(0)", ""), ns)
    assert ns["f"](3) == 9 + 55 and len(ns["MEMO"]) == 31


def test_ground_truth_through_the_sample_path(bench_dir):
    """HumanEval/38 and /50: the canonical, taken as a completion, keeps the prompt helper check() calls."""
    from eval.execute import make_problems
    from eval.sanitize import ground_truth_program
    probs = {p["task_id"]: p for p in make_problems("humaneval", bench_dir)}
    assert "def encode_cyclic" in ground_truth_program(probs["HumanEval/38"])
    assert "def encode_shift" in ground_truth_program(probs["HumanEval/50"])


def test_prompt_constants_the_tests_read_are_kept(bench_dir):
    """BigCodeBench/597's prompt defines LETTERS, which only its tests read: the sample path keeps
    every statement of the prompt, while a completion's own unused constant is still dropped."""
    from eval.sanitize import sample_program
    from eval.tasks import make_problems
    p = next(q for q in make_problems("bigcodebench", bench_dir) if q["task_id"] == "BigCodeBench/597")
    assert "LETTERS" in p["prompt"] and "LETTERS" not in p["canonical"][len(p["prompt"]):]
    assert "LETTERS" in p["test"]
    raw = p["canonical"][len(p["prompt"]):] + "\nSCRATCH = 1\n"
    _, program = sample_program(p, raw)
    assert "LETTERS = " in program and "SCRATCH" not in program
    # the rule is the prompt's: the same constant written by the model, not used, is dropped
    assert "UNUSED_K" not in sanitize("UNUSED_K = 3\ndef f():\n    return 1\n", "f")
    assert "UNUSED_K" in sanitize("UNUSED_K = 3\ndef f():\n    return 1\n", "f", prompt_lines=1)
