"""
Rotary position embeddings (RoPE) in Triton, in the activations' own dtype.

    y = rope(x, cos, sin)     x (B, H, T, D); cos, sin (T, D/2) or per-row (B, T, D/2)
    y[..., :D/2] = x1 * cos - x2 * sin        x1 = x[..., :D/2], x2 = x[..., D/2:]
    y[..., D/2:] = x2 * cos + x1 * sin

The Hugging Face Llama ("rotate_half") convention: dimension i is paired with i + D/2, not with
its neighbour, so HF checkpoints load without permuting the q/k projection rows.

One program per tile of positions x heads of one sequence: it loads the tile's cos/sin rows once
and rotates all the heads with them (q and k are launched separately, so GQA's different head
counts need nothing special). x is read in its dtype (bf16 in training), rotated in fp32
registers and rounded once on store: no fp32 copy of q or k is ever written, and the result has
one rounding where PyTorch's eager x1 * cos - x2 * sin in bf16 has three.

The rotation is orthogonal, so backward is the same kernel rotating dy by -theta; autograd saves
only cos and sin (shared by every layer), not q or k. Any strides with a unit last dimension are
read as they are: q from q_proj(x).view(B, T, H, D).transpose(1, 2) is not copied first.
Positions are whatever cos/sin were computed for: offsets (KV-cache decoding) and per-row
positions (left-padded batches) come in through the (B, T, D/2) form.

Quick check against the PyTorch reference: `TRITON_INTERPRET=1 python -m kernels.rope` (CPU).
"""
import torch
import triton
import triton.language as tl

from kernels import INTERPRET, cast

# -----------------------------------------------------------------------------
# kernel


@triton.jit
def _rope(X, COS, SIN, Y, stride_xb, stride_xh, stride_xt, stride_yb, stride_yh, stride_yt,
          stride_cb, stride_ct, T, H, HALF, INVERSE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
          BLOCK_HALF: tl.constexpr, INTERPRETED: tl.constexpr = INTERPRET):
    """One program: a (BLOCK_T positions, BLOCK_H heads, BLOCK_HALF) tile of each half of x."""
    n_tblocks = tl.cdiv(T, BLOCK_T)
    b = (tl.program_id(0) // n_tblocks).to(tl.int64)  # 64-bit offsets: B*T*H*D can pass 2**31
    t = (tl.program_id(0) % n_tblocks) * BLOCK_T + tl.arange(0, BLOCK_T)
    heads = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    cols = tl.arange(0, BLOCK_HALF)
    t_ok, col_ok = t < T, cols < HALF
    t = t.to(tl.int64)
    # cos/sin (BLOCK_T, BLOCK_HALF), loaded once for all the tile's heads
    cs_off = b * stride_cb + t[:, None] * stride_ct + cols[None, :]
    cs_mask = t_ok[:, None] & col_ok[None, :]
    c = tl.load(COS + cs_off, mask=cs_mask, other=0.0).to(tl.float32)[:, None, :]
    s = tl.load(SIN + cs_off, mask=cs_mask, other=0.0).to(tl.float32)[:, None, :]
    if INVERSE:  # backward: R(theta)^T = R(-theta)
        s = -s
    mask = cs_mask[:, None, :] & (heads < H)[None, :, None]  # (BLOCK_T, BLOCK_H, BLOCK_HALF)
    t3, h3 = t[:, None, None], heads.to(tl.int64)[None, :, None]
    x_ptr = X + b * stride_xb + t3 * stride_xt + h3 * stride_xh + cols[None, None, :]
    y_ptr = Y + b * stride_yb + t3 * stride_yt + h3 * stride_yh + cols[None, None, :]
    x1 = tl.load(x_ptr, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptr + HALF, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr, cast(x1 * c - x2 * s, Y.dtype.element_ty, INTERPRETED), mask=mask)
    tl.store(y_ptr + HALF, cast(x2 * c + x1 * s, Y.dtype.element_ty, INTERPRETED), mask=mask)

# -----------------------------------------------------------------------------
# launch helper and the autograd Function

TILE = 4096  # elements of each half of x per program: 4 positions x 16 heads at head dim 128


def launch_params(T, H, D):
    """(BLOCK_T, BLOCK_H, BLOCK_HALF, num_warps): all heads of a position in one program when
    they fit TILE (the cos/sin row is then loaded once), then as many positions as fill it.
    Big tiles also keep the interpreter usable: its cost is per program, not per element."""
    BLOCK_HALF = triton.next_power_of_2(D // 2)
    BLOCK_H = min(triton.next_power_of_2(H), max(1, TILE // BLOCK_HALF))
    BLOCK_T = min(triton.next_power_of_2(T), max(1, TILE // (BLOCK_H * BLOCK_HALF)))
    return BLOCK_T, BLOCK_H, BLOCK_HALF, 8


def _rotate(x, cos, sin, inverse):
    """x (B, H, T, D) any strides with a unit last one; cos/sin (B or 1, T, D/2) contiguous."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    B, H, T, D = x.shape
    y = torch.empty_like(x)  # same layout as x when x is dense (the transposed q_proj view stays so)
    BLOCK_T, BLOCK_H, BLOCK_HALF, num_warps = launch_params(T, H, D)
    stride_cb = 0 if cos.shape[0] == 1 else cos.stride(0)  # one table broadcast over the batch
    grid = (B * triton.cdiv(T, BLOCK_T), triton.cdiv(H, BLOCK_H))
    _rope[grid](x, cos, sin, y, x.stride(0), x.stride(1), x.stride(2), y.stride(0), y.stride(1), y.stride(2),
                stride_cb, cos.stride(1), T, H, D // 2, INVERSE=inverse, BLOCK_T=BLOCK_T, BLOCK_H=BLOCK_H,
                BLOCK_HALF=BLOCK_HALF, num_warps=num_warps)
    return y


class RoPEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, inverse=False)

    @staticmethod
    def backward(ctx, dy):
        cos, sin = ctx.saved_tensors
        return _rotate(dy, cos, sin, inverse=True), None, None


def rope(x, cos, sin):
    """x (B, H, T, D), cos/sin (T, D/2) or (B, T, D/2) of any float dtype -> x rotated, in x's
    dtype and shape. cos/sin get no gradient (they come from integer positions), so one that
    requires grad is an error rather than a silently missing gradient."""
    if x.dim() != 4 or x.shape[-1] % 2:
        raise ValueError(f"rope: x must be (B, H, T, D) with D even; got {tuple(x.shape)}")
    B, H, T, D = x.shape
    if cos.shape != sin.shape or cos.dim() not in (2, 3):
        raise ValueError(f"rope: cos {tuple(cos.shape)} and sin {tuple(sin.shape)} must both be (T, D/2) or (B, T, D/2)")
    cos, sin = (c[None] if c.dim() == 2 else c for c in (cos, sin))
    if cos.shape[1:] != (T, D // 2) or cos.shape[0] not in (1, B):
        raise ValueError(f"rope: cos/sin shape {tuple(cos.shape)} does not fit x {tuple(x.shape)} "
                         f"(need (T, D/2) = ({T}, {D // 2}) or (B, T, D/2))")
    if cos.requires_grad or sin.requires_grad:
        raise ValueError("rope: cos/sin require grad, but the kernel gives them none")
    if not cos.is_floating_point() or not x.is_floating_point():
        raise ValueError(f"rope: need float tensors; got x {x.dtype}, cos {cos.dtype}")
    return RoPEFunction.apply(x, cos.contiguous(), sin.contiguous())


def rope_reference(x, cos, sin):
    """The PyTorch definition the kernel is tested against, written as the rotation
    x * cos + rotate_half(x) * sin on full-width tables (as transformers writes it)."""
    if cos.dim() == 3:  # per-row (B, T, D/2) -> broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


if __name__ == "__main__":
    # quick check; the sweep lives in tests/test_kernels_rope.py, timings in kernels/bench.py
    if not torch.cuda.is_available() and not INTERPRET:
        raise SystemExit("no GPU: run with TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    x = torch.randn(2, 37, 4, 64, device=device).transpose(1, 2)  # (B, H, T, D) as q_proj makes it
    angles = torch.arange(37, device=device)[:, None] * 10000.0 ** (-torch.arange(0, 64, 2, device=device) / 64)
    out, ref = rope(x, angles.cos(), angles.sin()), rope_reference(x, angles.cos(), angles.sin())
    print(f"max |y - ref| = {(out - ref).abs().max().item():.2e}")
