"""kernels/attention.py through the Triton interpreter (or on a GPU when TRITON_INTERPRET=0):
causal attention outputs and dq, dk, dv vs the PyTorch reference. fp32 to ~1e-5; in bf16/fp16 the
error vs fp32 math must be within 2x of PyTorch's own (scaled_dot_product_attention in that dtype).
Compiling for an H100: tests/test_kernels_compile.py."""

import pytest
import torch
import torch.nn.functional as F

from kernels import INTERPRET
from kernels.attention import attention_reference, flash_attention

DEVICE = "cpu" if INTERPRET else "cuda"
# fp32 matmuls: exact in the interpreter, TF32 (10-bit mantissa) in tl.dot on a GPU
FP32_TOL = 1e-5 if INTERPRET else 1e-2


def run(fn, q, k, v, do):
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    o = fn(q, k, v)
    return [o.detach()] + list(torch.autograd.grad(o, (q, k, v), do))


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=q.shape[1] != k.shape[1])


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


# (B, H, H_kv, T, D): T=1, T below / not a multiple of / above the 64 block, GQA, head dims 64 and
# 128. The interpreter's backward tiles are 32 queries x 64 keys, so T=130 and T=161 run every stage
# (masked diagonal of two query blocks, unmasked bulk, ragged tail) over several key blocks whose
# atomic dq shares add up
SHAPES = [(1, 2, 2, 1, 64), (2, 4, 2, 37, 64), (1, 2, 1, 100, 128), (1, 2, 2, 64, 128), (1, 4, 4, 130, 64),
          (1, 4, 2, 161, 128)]


def inputs(shape, dtype, seed=0):
    B, H, Hkv, T, D = shape
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(B, H, T, D, generator=g), torch.randn(B, Hkv, T, D, generator=g), torch.randn(B, Hkv, T, D, generator=g)
    do = torch.randn(B, H, T, D, generator=g)
    return [t.to(device=DEVICE, dtype=dtype) for t in (q, k, v, do)]


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_fp32_matches_reference(shape):
    q, k, v, do = inputs(shape, torch.float32)
    ours, ref = run(flash_attention, q, k, v, do), run(attention_reference, q, k, v, do)
    for name, a, b in zip(("o", "dq", "dk", "dv"), ours, ref):
        assert a.shape == b.shape and a.dtype == torch.float32
        assert max_err(a, b) <= FP32_TOL * max(1.0, b.abs().max().item()), name


@pytest.mark.parametrize("shape, dtype", [(SHAPES[1], torch.bfloat16), (SHAPES[2], torch.bfloat16),
                                          (SHAPES[0], torch.bfloat16), (SHAPES[3], torch.float16),
                                          (SHAPES[5], torch.bfloat16)])
def test_attention_low_precision_error_within_2x_of_pytorch(shape, dtype):
    q, k, v, do = inputs(shape, dtype, seed=1)
    exact = run(attention_reference, q.float(), k.float(), v.float(), do.float())
    ours, torch_low = run(flash_attention, q, k, v, do), run(sdpa, q, k, v, do)
    for name, a, t, e in zip(("o", "dq", "dk", "dv"), ours, torch_low, exact):
        assert a.dtype == dtype
        # + 1e-6: at T=1 the exact dq and dk are 0 and both sides are rounding noise of ~1e-8
        assert max_err(a, e) <= 2 * max_err(t, e) + 1e-6, f"{name}: ours {max_err(a, e)} torch {max_err(t, e)}"


def test_attention_strided_inputs_as_the_model_passes_them():
    # the model hands (B, T, H, D) projections viewed as (B, H, T, D): no copies needed
    B, T, H, Hkv, D = 2, 45, 4, 2, 64
    q = torch.randn(B, T, H, D, device=DEVICE).transpose(1, 2)
    k = torch.randn(B, T, Hkv, D, device=DEVICE).transpose(1, 2)
    v = torch.randn(B, T, Hkv, D, device=DEVICE).transpose(1, 2)
    do = torch.randn(B, H, T, D, device=DEVICE)
    for a, b in zip(run(flash_attention, q, k, v, do), run(attention_reference, q, k, v, do)):
        assert max_err(a, b) <= FP32_TOL * max(1.0, b.abs().max().item())


def test_attention_bad_inputs():
    q, k = torch.randn(1, 4, 8, 64), torch.randn(1, 3, 8, 64)
    with pytest.raises(ValueError, match="multiple of H_kv"):
        flash_attention(q, k, k)
    with pytest.raises(ValueError, match="head dim 48"):
        flash_attention(*(torch.randn(1, 2, 8, 48),) * 3)

