"""Evaluation: HumanEval(+), MBPP(+), BigCodeBench with sandboxed execution (see eval/README.md)."""
