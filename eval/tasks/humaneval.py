"""
HumanEval and HumanEval+, both as EvalPlus judges them, from the HumanEval+ v0.1.10 file.

  humaneval   EvalPlus's "base" verdict: the sample's output on each of the task's base_input
              must equal the canonical solution's. This is what EvalPlus prints as HumanEval and
              what the paper reports. (Not the original check(): that runs the test inside the
              sample's own process, where the sample can forge it.)
  humaneval+  base_input, then plus_input (EvalPlus's "base + extra tests").

Both use the HumanEval+ records: the same prompts as the original HumanEval except HumanEval/115
(a fixed docstring), and EvalPlus's reworked canonical solutions. The original HumanEval file is
loaded only for decontamination.

Prompt: the task's prompt with trailing newlines stripped (as the paper says); the model continues
with the body. Stop strings: the bigcode-evaluation-harness set (EvalPlus's base-model set too).
Oracle: EvalPlus's comparison (common.evalplus_equal), except HumanEval/32 (find_zero), where any
root will do: |poly(xs, out)| <= atol (EvalPlus 0.3.1 means the same, but its branch skips the line that
counts an input as done, so it fails every HumanEval/32 sample).
"""
import math

from eval.tasks.common import evalplus_equal

TASKS = {"humaneval": ["humaneval+"], "humaneval+": ["humaneval+"]}  # task -> the data it reads

DATA = {
    "humaneval": dict(
        files=["HumanEval.jsonl.gz", "HumanEval.jsonl"],
        urls=["https://github.com/openai/human-eval/raw/6d43fb980f9fee3c892a914eda09951f772ad10d/data/HumanEval.jsonl.gz"],
        sha256="1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2"),
    "humaneval+": dict(
        files=["HumanEvalPlus-v0.1.10.jsonl.gz", "HumanEvalPlus.jsonl.gz", "HumanEvalPlus-v0.1.10.jsonl"],
        urls=["https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus-v0.1.10.jsonl.gz",
              "https://github.com/evalplus/humanevalplus_release/raw/200defce9e3429d28ca215b6dd061c0f7f31c18b/HumanEvalPlus.jsonl.gz"],
        sha256="42526ec0e7d5f3ee0b06d6ced98f8c8bae3d76519151bfb3d36f79010645bd7f"),
    "humaneval+-mini": dict(
        files=["HumanEvalPlus-Mini-v0.1.10.jsonl.gz", "HumanEvalPlus-Mini.jsonl.gz"],
        urls=["https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus-Mini-v0.1.10.jsonl.gz",
              "https://github.com/evalplus/humanevalplus_release/raw/200defce9e3429d28ca215b6dd061c0f7f31c18b/HumanEvalPlus-Mini.jsonl.gz"],
        sha256="78fbba8865b20c5a979cda6e02fd72538e1762e65980af7d1a6e93c3e87e93af"),
}

# the next top-level statement ends the body (bigcode-evaluation-harness; EvalPlus's and EvoEval's too)
STOP = ["\nclass ", "\ndef ", "\n#", "\n@", "\nprint(", "\nif ", "\n```", "<|endoftext|>"]


def describe(task: str) -> str:
    if task == "humaneval":
        return "EvalPlus's HumanEval (base inputs of HumanEval+ v0.1.10, differential)"
    return "EvalPlus's HumanEval+ (base + plus inputs, HumanEval+ v0.1.10, differential)"


def make_problems(task: str, path=None) -> list[dict]:
    from eval.data import benchmark_file, dataset_hash, load_benchmark
    rows = load_benchmark("humaneval+", path)
    if rows and "base_input" not in rows[0]:
        raise SystemExit(f"{task}: {benchmark_file('humaneval+', path)} is not a HumanEval+ file (no base_input): "
                         f"both HumanEval columns are judged on HumanEval+'s inputs")
    dhash = dataset_hash("humaneval+", path)
    groups = ["base"] if task == "humaneval" else ["base", "plus"]
    return [dict(task=task, task_id=r["task_id"], prompt=r["prompt"], entry_point=r["entry_point"],
                 canonical=r["prompt"] + r["canonical_solution"], dataset="humaneval", dhash=dhash, kind="diff",
                 base_input=r["base_input"], plus_input=r["plus_input"] or [], atol=float(r["atol"] or 0),
                 groups=groups) for r in rows]


def build_prompt(problem: dict) -> str:
    return problem["prompt"].rstrip("\n")


def _poly(xs, x):
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def equality_oracle(problem: dict) -> bool:
    return problem["entry_point"] != "find_zero"


def outputs_match(out, exp, problem: dict, args) -> bool:
    if problem["entry_point"] == "find_zero":  # HumanEval/32: any root will do
        return isinstance(out, (int, float)) and not isinstance(out, bool) and abs(_poly(args[0], out)) <= problem["atol"]
    return evalplus_equal(out, exp, problem["atol"])
