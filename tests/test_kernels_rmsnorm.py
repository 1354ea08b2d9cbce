"""kernels/rmsnorm.py through the Triton interpreter (or on a GPU when TRITON_INTERPRET=0):
outputs and every gradient vs the PyTorch reference (fp32 to ~1e-5; bf16/fp16 error vs fp32
within 2x of PyTorch's own). Compiling for an H100:
tests/test_kernels_compile.py."""

import pytest
import torch

from kernels import INTERPRET
from kernels.rmsnorm import rms_norm, rms_norm_reference

DEVICE = "cpu" if INTERPRET else "cuda"


def run(fn, x, w, r, grads):
    """Outputs and gradients w.r.t. (x, w[, r]) of fn for the given output gradients."""
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    r = r.detach().requires_grad_() if r is not None else None
    out = fn(x, w, 1e-5, residual=r)
    out = out if isinstance(out, tuple) else (out,)
    inputs = (x, w) + ((r,) if r is not None else ())
    return [o.detach() for o in out] + list(torch.autograd.grad(out, inputs, grads[: len(out)]))


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("shape", [(2, 37, 256), (1, 1, 64), (5, 100)])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rmsnorm_matches_reference(shape, residual, dtype):
    torch.manual_seed(0)
    N = shape[-1]
    x32, r32 = torch.randn(shape, device=DEVICE), (torch.randn(shape, device=DEVICE) if residual else None)
    w32 = 1.0 + 0.2 * torch.randn(N, device=DEVICE)
    grads32 = [torch.randn(shape, device=DEVICE), torch.randn(shape, device=DEVICE)]
    x, w = x32.to(dtype), w32.to(dtype)
    r = r32.to(dtype) if residual else None
    grads = [g.to(dtype) for g in grads32]
    ours = run(rms_norm, x, w, r, grads)
    if dtype == torch.float32:
        ref = run(rms_norm_reference, x, w, r, grads)
        for a, b in zip(ours, ref):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert max_err(a, b) <= 1e-5 * max(1.0, b.abs().max().item())
        return
    # low precision: both the kernel and PyTorch in `dtype`, measured against fp32 math on the
    # same (rounded) inputs
    exact = run(rms_norm_reference, x.float(), w.float(), r.float() if residual else None, [g.float() for g in grads])
    torch_low = run(rms_norm_reference, x, w, r, grads)
    for i, (a, t, e) in enumerate(zip(ours, torch_low, exact)):
        assert a.dtype == dtype
        assert max_err(a, e) <= 2 * max_err(t, e) + 1e-6, f"output {i}: ours {max_err(a, e)} torch {max_err(t, e)}"


def test_rmsnorm_residual_contract_and_errors():
    x, r, w = (torch.randn(*s, device=DEVICE) for s in ((3, 8, 128), (3, 8, 128), (128,)))
    y, h = rms_norm(x, w, residual=r)
    assert torch.equal(h, x + r)
    assert torch.allclose(y, rms_norm(x + r, w), atol=1e-6)
    with pytest.raises(ValueError, match="residual shape"):
        rms_norm(x, w, residual=r[:, :4])


def test_rmsnorm_mixed_dtypes_as_under_autocast():
    # autocast: bf16 block output added to an fp32 residual stream -> fp32 sum, grads in each dtype
    torch.manual_seed(0)
    x = torch.randn(4, 96, device=DEVICE).bfloat16().requires_grad_()
    r = torch.randn(4, 96, device=DEVICE).requires_grad_()
    w = torch.randn(96, device=DEVICE).requires_grad_()
    (y, h), (y_ref, h_ref) = rms_norm(x, w, residual=r), rms_norm_reference(x, w, residual=r)
    assert y.dtype == h.dtype == torch.float32
    assert torch.equal(h, h_ref) and torch.allclose(y, y_ref, atol=1e-5)
    g = torch.randn(4, 96, device=DEVICE)
    grads = torch.autograd.grad((y, h), (x, w, r), (g, g))
    grads_ref = torch.autograd.grad((y_ref, h_ref), (x, w, r), (g, g))
    for a, b in zip(grads, grads_ref):
        assert a.dtype == b.dtype and torch.allclose(a.float(), b.float(), atol=1e-2 if a.dtype == torch.bfloat16 else 1e-5)

