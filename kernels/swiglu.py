"""
The SwiGLU gate in Triton: y = silu(a) * b, a = gate_proj(x), b = up_proj(x), all (..., I).

    y = swiglu(a, b)
    forward:   y  = a * sigmoid(a) * b
    backward:  db = dy * silu(a)
               da = dy * b * sigmoid(a) * (1 + a * (1 - sigmoid(a)))     (d silu / da)

Elementwise and memory-bound: PyTorch's eager F.silu(a) * b writes silu(a) to memory, reads it
back for the product, and autograd keeps it for backward next to a and b. Here one pass reads a
and b and writes y; sigmoid is recomputed in backward, so only a and b are saved (one (.., I)
tensor less per layer), and the backward writes da and db in one pass. Loads are cast to fp32
at once (math in registers), stores round once to the input dtype.

Quick check against the PyTorch reference: `TRITON_INTERPRET=1 python -m kernels.swiglu` (CPU).
"""
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels import INTERPRET, cast

# elements per program: 16 per thread at 8 warps (two 16-byte loads per tensor in bf16); big
# blocks also keep the interpreter usable, whose cost is per program, not per element
BLOCK = 4096
NUM_WARPS = 8

# -----------------------------------------------------------------------------
# kernels


@triton.jit
def _swiglu_fwd(A, B, Y, N, BLOCK: tl.constexpr, INTERPRETED: tl.constexpr = INTERPRET):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # 64-bit: B*T*I can pass 2**31
    mask = offs < N
    a = tl.load(A + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + offs, cast(a * tl.sigmoid(a) * b, Y.dtype.element_ty, INTERPRETED), mask=mask)


@triton.jit
def _swiglu_bwd(A, B, DY, DA, DB, N, BLOCK: tl.constexpr, INTERPRETED: tl.constexpr = INTERPRET):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(A + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(a)
    silu = a * sig
    tl.store(DB + offs, cast(dy * silu, DB.dtype.element_ty, INTERPRETED), mask=mask)
    tl.store(DA + offs, cast(dy * b * (sig + silu * (1.0 - sig)), DA.dtype.element_ty, INTERPRETED), mask=mask)

# -----------------------------------------------------------------------------
# the autograd Function


def _flat(t):
    return t.reshape(-1) if t.is_contiguous() else t.contiguous().view(-1)


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        a2, b2 = _flat(a), _flat(b)
        y = torch.empty_like(a2)
        N = a2.numel()
        _swiglu_fwd[(triton.cdiv(N, BLOCK),)](a2, b2, y, N, BLOCK=BLOCK, num_warps=NUM_WARPS)
        ctx.save_for_backward(a2, b2)
        ctx.shape = a.shape
        return y.view(a.shape)

    @staticmethod
    def backward(ctx, dy):
        a2, b2 = ctx.saved_tensors
        dy2 = _flat(dy)
        da, db = torch.empty_like(a2), torch.empty_like(b2)
        N = a2.numel()
        _swiglu_bwd[(triton.cdiv(N, BLOCK),)](a2, b2, dy2, da, db, N, BLOCK=BLOCK, num_warps=NUM_WARPS)
        return da.view(ctx.shape), db.view(ctx.shape)


def swiglu(a, b):
    """silu(a) * b for a, b of one shape and one float dtype; the result in that dtype."""
    if a.shape != b.shape or a.dtype != b.dtype or not a.is_floating_point():
        raise ValueError(f"swiglu: a {tuple(a.shape)} {a.dtype} and b {tuple(b.shape)} {b.dtype} "
                         "must have one shape and one float dtype")
    return SwiGLUFunction.apply(a, b)


def swiglu_reference(a, b):
    """The PyTorch definition the kernel is tested against (what model.py's torch path runs)."""
    return F.silu(a) * b


if __name__ == "__main__":
    # quick check; the sweep lives in tests/test_kernels_swiglu.py, timings in kernels/bench.py
    if not torch.cuda.is_available() and not INTERPRET:
        raise SystemExit("no GPU: run with TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    a, b = torch.randn(3, 37, 176, device=device), torch.randn(3, 37, 176, device=device)
    print(f"max |y - ref| = {(swiglu(a, b) - swiglu_reference(a, b)).abs().max().item():.2e}")
