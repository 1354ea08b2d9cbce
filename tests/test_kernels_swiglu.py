"""kernels/swiglu.py through the Triton interpreter (or on a GPU when TRITON_INTERPRET=0): y = silu(a) * b
and both gradients vs the PyTorch reference (fp32 to ~1e-5; bf16/fp16 error vs fp32 within 2x of
PyTorch's own), sizes that are not a multiple of the block, strided inputs, and a finite
difference of the closed-form backward. The model with this kernel: tests/test_model.py."""

import pytest
import torch

from kernels import INTERPRET
from kernels.swiglu import BLOCK, swiglu, swiglu_reference

DEVICE = "cpu" if INTERPRET else "cuda"


def run(fn, a, b, dy):
    a, b = a.detach().requires_grad_(), b.detach().requires_grad_()
    y = fn(a, b)
    return [y.detach(), *torch.autograd.grad(y, (a, b), dy)]


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


# the tiny model's MLP (B, T, 176), one element, one block plus one, a 1.3B-width row
SHAPES = [(2, 37, 176), (1,), (BLOCK + 1,), (3, 5632)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_swiglu_matches_reference(shape, dtype):
    torch.manual_seed(0)
    a32, b32, dy32 = (3 * torch.randn(shape, device=DEVICE) for _ in range(3))  # wide a: both tails of silu
    a, b, dy = a32.to(dtype), b32.to(dtype), dy32.to(dtype)
    ours = run(swiglu, a, b, dy)
    if dtype == torch.float32:
        for a_, r in zip(ours, run(swiglu_reference, a, b, dy)):
            assert a_.dtype == r.dtype and a_.shape == r.shape
            assert max_err(a_, r) <= 1e-5 * max(1.0, r.abs().max().item())
        return
    # low precision: the kernel and PyTorch both in `dtype`, against fp32 math on the same inputs
    exact = run(swiglu_reference, a.float(), b.float(), dy.float())
    torch_low = run(swiglu_reference, a, b, dy)
    for name, o, t, e in zip(("y", "da", "db"), ours, torch_low, exact):
        assert o.dtype == dtype
        assert max_err(o, e) <= 2 * max_err(t, e) + 1e-6, f"{name}: ours {max_err(o, e)} torch {max_err(t, e)}"


def test_swiglu_backward_is_the_derivative():
    # the closed-form d silu/da checked by central differences of the forward, independent of autograd
    torch.manual_seed(0)
    a, b = torch.linspace(-8, 8, 101, device=DEVICE), torch.randn(101, device=DEVICE)
    _, da, db = run(swiglu, a, b, torch.ones(101, device=DEVICE))
    h = 1e-2
    numeric = (swiglu(a + h, b) - swiglu(a - h, b)) / (2 * h)
    assert torch.allclose(da, numeric, atol=2e-3)
    assert torch.allclose(db, a * torch.sigmoid(a), atol=1e-6)


def test_swiglu_strided_inputs_and_errors():
    torch.manual_seed(0)
    a, b = torch.randn(4, 64, device=DEVICE).t(), torch.randn(64, 8, device=DEVICE)[:, ::2]  # (64, 4) views
    dy = torch.randn(64, 4, device=DEVICE)
    for o, r in zip(run(swiglu, a, b, dy), run(swiglu_reference, a, b, dy)):
        assert o.shape == r.shape and torch.allclose(o, r, atol=1e-6)
    with pytest.raises(ValueError, match="one shape and one float dtype"):
        swiglu(a, b[:, :2])
    with pytest.raises(ValueError, match="one shape and one float dtype"):
        swiglu(a, b.double())
