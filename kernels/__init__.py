"""Triton kernels: fused RMSNorm (+residual add), FlashAttention-style causal attention, a fused
linear + cross-entropy, RoPE and the SwiGLU gate (kernels/compile_check.py compiles them all for
an H100 without a GPU).

Each kernel file holds the kernel(s), the autograd Function, and the PyTorch reference it is
tested against; kernels/bench.py times them against PyTorch."""
import os

import triton
import triton.language as tl

# Under TRITON_INTERPRET=1 (CPU) the kernels run through numpy: bf16 arithmetic is wrong there
# (so every kernel computes in fp32 after loading) and fp32 -> bf16 casts truncate instead of
# rounding to nearest even (twice the error of a GPU's cast). cast() below fixes the latter.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def cast(x, DTYPE: tl.constexpr, INTERPRETED: tl.constexpr):
    """fp32 x -> DTYPE, rounding to nearest even also on the interpreter."""
    if INTERPRETED and DTYPE == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = bits.to(tl.float32, bitcast=True)
    return x.to(DTYPE)
