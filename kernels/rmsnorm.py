"""
Fused RMSNorm in Triton, optionally fused with the residual add that precedes it.

    y = RMSNorm(x)                                   rms_norm(x, w)
    h = x + residual;  y = RMSNorm(h)  -> (y, h)     rms_norm(x, w, residual=residual)

RMSNorm is memory-bound: the win over PyTorch comes from reading each row once, keeping the
statistics in fp32 registers, and (with the residual) writing the new residual stream in the same
pass instead of a separate add kernel. Forward saves only h (the normalised input) and one fp32
rstd per row; backward recomputes x_hat from them.

Inputs of any float dtype; every load is cast to fp32 at once (also the only correct numerics
under the Triton interpreter, whose bf16 arithmetic is wrong) and results are cast on store.
Quick check against the PyTorch reference: `TRITON_INTERPRET=1 python -m kernels.rmsnorm` (CPU).
"""
import torch
import triton
import triton.language as tl

from kernels import INTERPRET, cast

# -----------------------------------------------------------------------------
# kernels


@triton.jit
def _rmsnorm_fwd(X, R, W, Y, H, RSTD, stride_x, stride_r, stride_y, stride_h, N, eps,
                 HAS_RESIDUAL: tl.constexpr, BLOCK_N: tl.constexpr, INTERPRETED: tl.constexpr = INTERPRET):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        # round the sum to the stream's dtype before normalising it: the stored h is what the
        # next layer sees, so the norm must be of exactly that tensor (as in the PyTorch path)
        h = cast(x + r, H.dtype.element_ty, INTERPRETED)
        tl.store(H + row * stride_h + cols, h, mask=mask)
        x = h.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride_y + cols, cast(x * rstd * w, Y.dtype.element_ty, INTERPRETED), mask=mask)
    tl.store(RSTD + row, rstd)


@triton.jit
def _rmsnorm_bwd(DY, DH, H, W, RSTD, DX, DW_PARTIAL, stride_dy, stride_dh, stride_h, stride_dx,
                 M, N, rows_per_program, HAS_DH: tl.constexpr, BLOCK_N: tl.constexpr,
                 INTERPRETED: tl.constexpr = INTERPRET):
    """Each program handles a contiguous run of rows and keeps its share of dW in registers;
    the partial sums (one row per program) are added up outside."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_N,), dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    # 64-bit row offsets: B*T*N can pass 2**31 elements for long sequences
    start = row_start.to(tl.int64)
    H += start * stride_h
    DY += start * stride_dy
    DH += start * stride_dh
    DX += start * stride_dx
    RSTD += start
    for _ in range(row_start, row_end):
        h = tl.load(H + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD)
        x_hat = h * rstd
        dw += dy * x_hat
        # y = x_hat * w, x_hat = h * rstd(h):  dh = rstd * (g - x_hat * mean(g * x_hat)), g = dy * w
        g = dy * w
        dh = rstd * (g - x_hat * (tl.sum(g * x_hat, axis=0) / N))
        if HAS_DH:  # gradient flowing into the new residual stream h directly
            dh += tl.load(DH + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + cols, cast(dh, DX.dtype.element_ty, INTERPRETED), mask=mask)
        H += stride_h
        DY += stride_dy
        DH += stride_dh
        DX += stride_dx
        RSTD += 1
    tl.store(DW_PARTIAL + pid * N + cols, dw, mask=mask)

# -----------------------------------------------------------------------------
# launch helpers and the autograd Function


def _launch_params(N, element_size):
    BLOCK_N = triton.next_power_of_2(N)
    if BLOCK_N * element_size > 65536:
        raise ValueError(f"rms_norm: rows of {N} elements do not fit one block; at most {65536 // element_size}")
    num_warps = min(max(BLOCK_N // 256, 1), 16)
    return BLOCK_N, num_warps


def _rows(t, N):
    t = t.reshape(-1, N)
    return t if t.stride(-1) == 1 else t.contiguous()


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, residual, eps):
        shape, N = x.shape, x.shape[-1]
        x2 = _rows(x, N)
        M = x2.shape[0]
        # the sum x + residual has the promoted dtype, as in PyTorch (under autocast the residual
        # stream stays fp32 while the block outputs are bf16); the normed output has h's dtype
        dtype = torch.promote_types(x.dtype, residual.dtype) if residual is not None else x.dtype
        BLOCK_N, num_warps = _launch_params(N, torch.finfo(dtype).bits // 8)
        y = torch.empty((M, N), dtype=dtype, device=x.device)
        rstd = torch.empty(M, dtype=torch.float32, device=x.device)
        if residual is not None:
            r2 = _rows(residual, N)
            h = torch.empty((M, N), dtype=dtype, device=x.device)
        else:
            r2, h = x2, x2  # unused pointer / h is x itself
        _rmsnorm_fwd[(M,)](x2, r2, weight, y, h, rstd, x2.stride(0), r2.stride(0), y.stride(0), h.stride(0),
                           N, eps, HAS_RESIDUAL=residual is not None, BLOCK_N=BLOCK_N, num_warps=num_warps)
        ctx.save_for_backward(h, weight, rstd)
        ctx.shape, ctx.x_dtype = shape, x.dtype
        ctx.r_dtype = residual.dtype if residual is not None else None
        if residual is not None:
            return y.view(shape), h.view(shape)
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy, dh=None):
        h, weight, rstd = ctx.saved_tensors
        M, N = h.shape
        has_residual = ctx.r_dtype is not None
        dy2 = _rows(dy, N)
        dh2 = _rows(dh, N) if dh is not None else dy2
        dx = torch.empty((M, N), dtype=h.dtype, device=h.device)
        BLOCK_N, num_warps = _launch_params(N, h.element_size())
        if h.is_cuda:
            n_programs = 4 * torch.cuda.get_device_properties(h.device).multi_processor_count
        else:
            n_programs = 8  # interpreter: few programs, each looping over rows
        n_programs = max(1, min(n_programs, M))
        rows_per_program = triton.cdiv(M, n_programs)
        n_programs = triton.cdiv(M, rows_per_program)
        dw_partial = torch.empty((n_programs, N), dtype=torch.float32, device=h.device)
        _rmsnorm_bwd[(n_programs,)](dy2, dh2, h, weight, rstd, dx, dw_partial, dy2.stride(0), dh2.stride(0),
                                    h.stride(0), dx.stride(0), M, N, rows_per_program,
                                    HAS_DH=dh is not None and has_residual, BLOCK_N=BLOCK_N, num_warps=num_warps)
        dw = dw_partial.sum(0).to(weight.dtype)
        dx = dx.view(ctx.shape)
        # h = x + residual: both inputs receive the same gradient (each in its own dtype)
        return dx.to(ctx.x_dtype), dw, (dx.to(ctx.r_dtype) if has_residual else None), None


def rms_norm(x, weight, eps=1e-5, residual=None):
    """x (..., N), weight (N,) -> RMSNorm(x) in x's dtype; with residual (..., N) returns
    (RMSNorm(x + residual), x + residual), both in the promoted dtype of x and residual."""
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"rms_norm: residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
    return RMSNormFunction.apply(x, weight, residual, eps)


def rms_norm_reference(x, weight, eps=1e-5, residual=None):
    """The PyTorch definition the kernel is tested against (same rounding points)."""
    if residual is not None:
        h = x + residual
        return rms_norm_reference(h, weight, eps), h
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)


if __name__ == "__main__":
    # quick check; the sweep lives in tests/test_kernels_rmsnorm.py, timings in kernels/bench.py
    if not torch.cuda.is_available() and not INTERPRET:
        raise SystemExit("no GPU: run with TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    x, r = torch.randn(3, 37, 256, device=device), torch.randn(3, 37, 256, device=device)
    w = 1 + 0.1 * torch.randn(256, device=device)
    for residual in (None, r):
        out, ref = rms_norm(x, w, residual=residual), rms_norm_reference(x, w, residual=residual)
        out, ref = (out, ref) if residual is not None else ((out,), (ref,))
        print(f"residual={residual is not None}: max |y - ref| = {(out[0] - ref[0]).abs().max().item():.2e}")
