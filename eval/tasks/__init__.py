"""
The benchmarks, one file each, in the manner of nanochat's tasks/: where its data comes from, how
its records become problems, its prompt and stop strings, and its oracle. A new benchmark is a new
file here plus its entry in BENCHMARKS.

What each file has:
  DATA                  {data name: dict(files=[names in a directory, the first is the cache's],
                        urls=[download mirrors, in order], sha256=of the jsonl or None,
                        select=None or fn(rows, file) -> rows)}: what eval.data finds and loads
  TASKS                 {eval task name (eval.run --tasks): the data names it reads}; {} for data only
  make_problems(task, path) -> [problem]   the runnable problems (fields: eval/execute.py)
  build_prompt(problem), STOP              what the model sees, where its completion ends
  outputs_match(out, exp, problem, args)   the oracle of a differential benchmark (kind "diff")
  equality_oracle(problem)                 True when that oracle is plain equality for the problem
                                           (no special oracle): an answer equal to the canonical's,
                                           with no float in it, passes without being decoded
  describe(task)                           what the task's number is, for results.json

    from eval.tasks import make_problems, build_prompt
    probs = make_problems("evoeval")
"""
from eval.tasks import bigcodebench, evoeval, gsm8k, humaneval, mbpp

BENCHMARKS = [humaneval, mbpp, bigcodebench, evoeval, gsm8k]

TASKS = {t: m for m in BENCHMARKS for t in m.TASKS}            # eval task name -> its benchmark file
SOURCES = {n: s for m in BENCHMARKS for n, s in m.DATA.items()}  # data name -> where its file comes from


def _module(task: str):
    if task not in TASKS:
        raise ValueError(f"unknown eval task {task!r}; known: {', '.join(TASKS)}")
    return TASKS[task]


def make_problems(task: str, path=None) -> list[dict]:
    """Benchmark records -> problems: {task, task_id, prompt, entry_point, canonical (a whole
    program), dataset, kind, ...}. `task` is one of TASKS."""
    return _module(task).make_problems(task, path)


def describe(task: str) -> str:
    return _module(task).describe(task)


def missing_data(task: str, path=None) -> list[str]:
    """The data names `task` reads that are not on this machine (load_benchmark would download them)."""
    from eval.data import locate
    out = []
    for name in _module(task).TASKS[task]:
        try:
            found = locate(name, path)
        except SystemExit:  # `path` is a directory that does not hold it
            found = None
        if found is None:
            out.append(name)
    return out


def equality_oracle(problem: dict) -> bool:
    """Does the problem's oracle pass any answer equal to the canonical's (no special oracle)? A
    benchmark file that does not say is asked every time (False)."""
    f = getattr(_module(problem["task"]), "equality_oracle", None)
    return bool(f and f(problem))


def build_prompt(problem: dict) -> str:
    """The text given to the model for a problem made by make_problems."""
    return _module(problem["task"]).build_prompt(problem)


def stop_strings(problem: dict) -> list[str]:
    return _module(problem["task"]).STOP


def program_from_completion(problem: dict, completion: str) -> str:
    """The whole program for a completion of build_prompt(problem), before sanitizing."""
    return build_prompt(problem) + completion


def outputs_match(out, exp, problem: dict, args) -> bool:
    """Is `out` (the sample's) right, given `exp` (the canonical's) on input `args`? Runs in the
    evaluator, on values the sandboxed child shipped as plain builtins; an oracle that raises on
    an odd answer counts it wrong."""
    try:
        return bool(_module(problem["task"]).outputs_match(out, exp, problem, args))
    except Exception:
        return False
