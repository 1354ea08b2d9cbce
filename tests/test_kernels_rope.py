"""kernels/rope.py through the Triton interpreter (or on a GPU when TRITON_INTERPRET=0): outputs
and gradients vs the PyTorch reference (fp32 to ~1e-5; bf16/fp16 error vs fp32 within 2x of
PyTorch's own), q and k head counts of a GQA model, odd head counts and head dims, strided and
per-row-position inputs. The model with this kernel: tests/test_model.py."""

import pytest
import torch

from kernels import INTERPRET
from kernels.rope import rope, rope_reference

DEVICE = "cpu" if INTERPRET else "cuda"


def tables(positions, D, dtype, theta=10000.0):
    """cos, sin for integer positions (T,) or (B, T), written out from the RoPE definition
    (angle = position * theta^(-2i/D)), independently of model.rope_cos_sin."""
    i = torch.arange(D // 2, dtype=torch.float64, device=positions.device)
    angle = positions.double()[..., None] * theta ** (-2 * i / D)
    return angle.cos().to(dtype), angle.sin().to(dtype)


def run(fn, x, cos, sin, dy):
    x = x.detach().requires_grad_()
    y = fn(x, cos, sin)
    return [y.detach(), torch.autograd.grad(y, x, dy)[0]]


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def q_layout(B, H, T, D, dtype=torch.float32):
    """(B, H, T, D) as the model makes q and k: a (B, T, H, D) tensor viewed transposed."""
    return torch.randn(B, T, H, D, device=DEVICE).to(dtype).transpose(1, 2)


# (B, H, T, D): a GQA pair (4 query heads, 2 kv heads) spanning two blocks of positions, head dims
# 128 and 2, head counts and a half width (48) that are not powers of two, and more heads than
# one program holds (72 > 64 at head dim 128)
SHAPES = [(2, 4, 37, 64), (2, 2, 37, 64), (1, 3, 5, 96), (3, 1, 7, 2), (1, 72, 3, 128), (1, 16, 9, 128)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_rope_matches_reference(shape, dtype):
    torch.manual_seed(0)
    B, H, T, D = shape
    x = q_layout(B, H, T, D, dtype)
    dy = torch.randn(B, H, T, D, device=DEVICE).to(dtype)
    cos, sin = tables(torch.arange(T, device=DEVICE), D, dtype)
    ours = run(rope, x, cos, sin, dy)
    if dtype == torch.float32:
        for a, b in zip(ours, run(rope_reference, x, cos, sin, dy)):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert max_err(a, b) <= 1e-5 * max(1.0, b.abs().max().item())
        return
    # low precision: the kernel and PyTorch both in `dtype`, measured against fp32 math on the
    # same (rounded) inputs and tables
    exact = run(rope_reference, x.float(), cos.float(), sin.float(), dy.float())
    torch_low = run(rope_reference, x, cos, sin, dy)
    for name, a, t, e in zip(("y", "dx"), ours, torch_low, exact):
        assert a.dtype == dtype
        assert max_err(a, e) <= 2 * max_err(t, e) + 1e-6, f"{name}: ours {max_err(a, e)} torch {max_err(t, e)}"


def test_rope_is_the_rotation_by_position_times_frequency():
    # independent of rope_reference: pairs (i, i + D/2) of position p rotated by p * theta^(-2i/D),
    # and the backward rotates back (the rotation is orthogonal: dx = R(-angle) dy)
    torch.manual_seed(0)
    B, H, T, D = 2, 3, 11, 32
    x = q_layout(B, H, T, D)
    cos, sin = tables(torch.arange(T, device=DEVICE), D, torch.float32)
    y = rope(x, cos, sin)
    for p in (0, 1, 10):
        angle = p * 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
        x1, x2 = x[1, 2, p, :D // 2].double(), x[1, 2, p, D // 2:].double()
        expect = torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()])
        assert torch.allclose(y[1, 2, p].double(), expect.to(y.device), atol=1e-5)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5)  # rotations keep the length
    x_back = rotate_back(y, cos, sin)
    assert torch.allclose(x_back, x, atol=1e-5)


def rotate_back(y, cos, sin):
    """x from y = rope(x): the backward of rope applied to y (dx = R^T dy)."""
    x = torch.zeros_like(y, requires_grad=True)
    return torch.autograd.grad(rope(x, cos, sin), x, y)[0]


def test_rope_per_row_positions_and_offsets():
    # decoding: every row has its own positions (left padding), starting past 0 (a KV-cache step)
    torch.manual_seed(0)
    B, H, T, D = 3, 2, 4, 64
    positions = torch.tensor([[5, 6, 7, 8], [0, 0, 1, 2], [100, 101, 102, 103]], device=DEVICE)
    cos, sin = tables(positions, D, torch.float32)
    x, dy = q_layout(B, H, T, D), torch.randn(B, H, T, D, device=DEVICE)
    for a, b in zip(run(rope, x, cos, sin, dy), run(rope_reference, x, cos, sin, dy)):
        assert max_err(a, b) <= 1e-5 * max(1.0, b.abs().max().item())
    # row 2 equals rotating it alone with a (T, D/2) table of its positions
    alone = rope(x[2:3], *tables(positions[2], D, torch.float32))
    assert torch.allclose(rope(x, cos, sin)[2:3], alone, atol=1e-6)


def test_rope_keeps_the_layout_and_reads_strided_inputs():
    torch.manual_seed(0)
    cos, sin = tables(torch.arange(6, device=DEVICE), 16, torch.float32)
    x = q_layout(2, 3, 6, 16)
    y = rope(x, cos, sin)
    assert y.stride() == x.stride()  # the transposed q_proj view is neither copied nor re-laid-out
    # a non-dense input (every other head) and a non-unit last stride give the reference's values
    wide = torch.randn(2, 6, 6, 16, device=DEVICE)
    for view in (wide[:, ::2], torch.randn(2, 3, 6, 32, device=DEVICE)[..., ::2]):
        assert torch.allclose(rope(view, cos, sin), rope_reference(view, cos, sin), atol=1e-6)


def test_rope_bad_input_is_one_clear_error():
    x = torch.randn(1, 2, 5, 8, device=DEVICE)
    cos, sin = tables(torch.arange(5, device=DEVICE), 8, torch.float32)
    with pytest.raises(ValueError, match="D even"):
        rope(torch.randn(1, 2, 5, 7, device=DEVICE), cos, sin)
    with pytest.raises(ValueError, match="does not fit"):
        rope(x, cos[:4], sin[:4])
    with pytest.raises(ValueError, match="require grad"):
        rope(x, cos.requires_grad_(), sin)
