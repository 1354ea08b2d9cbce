"""
Prompts and stop strings: base-model completion prompts, as the paper evaluates.

- HumanEval(+): the task's prompt (imports, signature, docstring) with trailing newlines stripped,
  as the paper says; the model continues with the function body.
- MBPP(+): the task text and its first test as a module docstring (the layout EvalPlus adopted in
  MBPP+ v0.2.0), e.g.
      \"\"\"
      Write a function to find the shared elements from the given two lists.
      assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))
      \"\"\"
  followed by a newline; the model writes the whole function (and any helper or import it wants).
- BigCodeBench(-Hard): the "complete" split's prompt (imports, signature, docstring) as given.

Stop strings end a completion at the next top-level statement that is not part of the solution;
the sanitizer then keeps what the entry point needs.
"""

STOP = {
    # the bigcode-evaluation-harness HumanEval set: the body ends at the next top-level thing
    "humaneval": ["\nclass ", "\ndef ", "\n#", "\n@", "\nprint(", "\nif ", "\n```", "<|endoftext|>"],
    # MBPP: the model writes the function itself, helpers included, so no "\ndef " here
    "mbpp": ['\n"""', "\nassert ", "\nif __name__", "\nprint(", "\n```", "\n# Test", "\n# test", "<|endoftext|>"],
    # EvalPlus/BigCodeBench's base-model stops, plus the next top-level def/class (task_func is done)
    "bigcodebench": ["\nif __name__", "\ndef main(", "\nprint(", "\nclass ", "\n```", "<|endoftext|>"],
}


def mbpp_prompt(task: dict) -> str:
    """The MBPP(+) prompt above, from an MBPP+ record (pre-release or official)."""
    p = task["prompt"].strip()
    if p.startswith('"""'):  # an official v0.2.0 record already has this layout
        return p + "\n"
    text = p.strip("'").strip()
    first = next((ln.strip() for ln in task.get("assertion", "").splitlines() if ln.strip().startswith("assert")), "")
    return f'"""\n{text}\n{first}\n"""\n'


def build_prompt(problem: dict) -> str:
    """The text given to the model for a problem made by eval.execute.make_problems."""
    if problem["dataset"] == "humaneval":
        return problem["prompt"].rstrip("\n")
    return problem["prompt"]


def stop_strings(problem: dict) -> list[str]:
    return STOP[problem["dataset"]]


def program_from_completion(problem: dict, completion: str) -> str:
    """The whole program for a completion of build_prompt(problem), before sanitizing."""
    return build_prompt(problem) + completion
