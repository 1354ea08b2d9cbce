"""
What more than one benchmark shares: EvalPlus's rule for "the sample's output is the canonical's"
(HumanEval+ and MBPP+, and the `humaneval` column, which is EvalPlus's base verdict).

EvalPlus 0.3.1 compares with Python equality, and only when the expected answer is a float (or a
non-empty list/tuple of floats) or the task gives an atol does it fall back to numpy's allclose
(rtol 1e-7, atol the task's or 1e-6), after checking that the types (and lengths) agree. So an int
answer needs equality: 1e98 does not pass for 10**98, nor n/2 for n//2.
"""


def is_floats(x) -> bool:
    """EvalPlus's "this answer is floats": a float, or a non-empty list/tuple of floats."""
    return isinstance(x, float) or (isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(v, float) for v in x))


def allclose(out, exp, atol) -> bool:
    """EvalPlus's tolerant comparison: same type (and length), then numpy allclose with rtol 1e-7."""
    import numpy as np
    if type(out) is not type(exp):
        return False
    if isinstance(exp, (list, tuple)) and len(out) != len(exp):
        return False
    return bool(np.allclose(out, exp, rtol=1e-07, atol=atol))


def evalplus_equal(out, exp, atol: float) -> bool:
    """Is `out` (the sample's) EvalPlus-equal to `exp` (the canonical's)? May raise on odd types
    (the caller counts that as a wrong answer)."""
    exact = out == exp
    if atol == 0 and is_floats(exp):
        atol = 1e-6  # EvalPlus: floats get 1e-6 when the task gives no atol
    if not exact and atol != 0:
        return allclose(out, exp, atol)
    return bool(exact)  # everything else: Python equality, nothing more
