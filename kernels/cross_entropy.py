"""
Fused linear + cross-entropy, chunked over tokens, so the (N, vocab) logits never exist in fp32.

    loss = mean over i with targets[i] != ignore_index of  -log softmax(h[i] @ weight.T)[targets[i]]
    fused_linear_cross_entropy(h, weight, targets)       h (N, C), weight (V, C), targets (N,) int

The language-model head is the largest activation of a training step: at vocab 64k the fp32
logits of one micro-batch are many GB, and autograd keeps them (and their softmax) until backward.
Here the tokens go through in chunks of `chunk` rows, and each chunk does exactly three matmuls:
    logits = h_c @ weight.T                     (chunk, V) in the compute dtype (bf16 under autocast)
    the row step overwrites the logits in place with G = softmax - onehot(target), in fp32 math
    dh_c = (G @ weight) * s;  dweight += G.T @ (h_c * s)      (fp32 accumulator)
where s (chunk,) is 1/n_valid, 0 on an ignored row: scaling the (chunk, C) side of each product
costs nothing next to scaling the (chunk, V) gradient. The loss is a scalar at the end of the
graph, so its gradient is computed during the forward, and backward only scales dh and dweight
by the incoming grad (as Liger-Kernel's fused linear CE does): no logits are recomputed.
Memory: one chunk of logits in the compute dtype, dh (N, C), dweight (V, C) in fp32.

The row step is one Triton program per row (fused_linear_cross_entropy) or a few PyTorch ops
on the chunk (linear_cross_entropy_chunked: the CPU training path, and any device).
cross_entropy_reference is the plain PyTorch definition (full logits) both are tested against.
"""
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels import INTERPRET, cast
from kernels.attention import LOG2E

DEFAULT_CHUNK_BYTES = 2**28  # one chunk of logits in the compute dtype: 256 MiB


@triton.jit
def _ce_rows(LOGITS, stride_l, TARGETS, LOSS, V, ignore_index,
             WRITE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr, INTERPRETED: tl.constexpr = INTERPRET):
    """One program per row of logits: LOSS[row] = logsumexp - logit[target] (0 for an ignored
    row, NaN for a target outside [0, V)); with WRITE_GRAD the row is overwritten by
    softmax - onehot(target) (unscaled: the caller applies 1/n_valid and zeroes ignored rows)."""
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride_l
    target = tl.load(TARGETS + row)
    m = tl.zeros([], dtype=tl.float32) - float("inf")
    s = tl.zeros([], dtype=tl.float32)
    for start in range(0, V, BLOCK_V):  # pass 1: running max and sum of exp2, fp32
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(base + cols, mask=cols < V, other=-float("inf")).to(tl.float32) * LOG2E
        m_new = tl.maximum(m, tl.max(x, 0))
        s = s * tl.math.exp2(m - m_new) + tl.sum(tl.math.exp2(x - m_new), 0)
        m = m_new
    lse = m + tl.math.log2(s)  # log2 units
    ignored = target == ignore_index
    in_vocab = (target >= 0) & (target < V)
    x_t = tl.load(base + target, mask=in_vocab & ~ignored, other=0.0).to(tl.float32) * LOG2E
    loss = tl.where(ignored, 0.0, tl.where(in_vocab, (lse - x_t) / LOG2E, float("nan")))
    tl.store(LOSS + row, loss)
    if WRITE_GRAD:
        for start in range(0, V, BLOCK_V):  # pass 2: softmax - onehot, in place
            cols = start + tl.arange(0, BLOCK_V)
            x = tl.load(base + cols, mask=cols < V, other=0.0).to(tl.float32) * LOG2E
            g = tl.math.exp2(x - lse) - tl.where(cols == target, 1.0, 0.0)
            tl.store(base + cols, cast(g, LOGITS.dtype.element_ty, INTERPRETED), mask=cols < V)


def _rows_triton(logits, targets, ignore_index, write_grad):
    N, V = logits.shape
    loss = torch.empty(N, dtype=torch.float32, device=logits.device)
    BLOCK_V = min(triton.next_power_of_2(V), 4096)
    _ce_rows[(N,)](logits, logits.stride(0), targets, loss, V, ignore_index,
                   WRITE_GRAD=write_grad, BLOCK_V=BLOCK_V, num_warps=8)
    return loss


def _rows_torch(logits, targets, ignore_index, write_grad):
    """The same row step in PyTorch, in fp32 (a low-precision chunk gets one fp32 copy).
    Two passes over the chunk: a row max, then softmax written over the chunk itself
    (aten's _softmax.out handles a row at a time, so out=input is safe: the tests compare
    against the full-logits reference). The out-of-place log-softmax + exp this replaces made
    the row step 5x slower on a CPU than the three matmuls' share of it (issue 15)."""
    x = logits.float()  # (n, V): the chunk itself when it is fp32
    ignored = targets == ignore_index
    t = torch.where(ignored, 0, targets)  # an ignored row's gradient is zeroed by the caller's scale
    x_t = x.gather(1, t[:, None])[:, 0]  # (n,) logit of the target
    m, at = x.max(dim=1)  # (n,) row max and where it is
    torch.ops.aten._softmax.out(x, 1, False, out=x)  # x = softmax, in place
    # logsumexp = m + log(sum exp(x - m)) = m - log(softmax at the max); that softmax is >= 1/V,
    # so this never underflows (log(softmax[target]) could, for a very unlikely target)
    lse = m - torch.log(x.gather(1, at[:, None])[:, 0])
    loss = torch.where(ignored, 0.0, lse - x_t)
    if write_grad:
        x[torch.arange(len(t), device=t.device), t] -= 1.0
        if x is not logits:
            logits.copy_(x)
    return loss


class LinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, ignore_index, chunk, rows):
        device = h.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
        need_dh, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.autocast(device, enabled=False):  # the dtypes below are chosen explicitly
            hc, wc = h.to(dtype), weight.to(dtype)  # (N, C), (V, C): what autocast would feed the matmul
            N, V = h.shape[0], weight.shape[0]
            valid = targets != ignore_index
            n_valid = valid.sum()
            # (N, 1) gradient scale of each row: 1/n_valid, 0 where ignored; a device tensor (no host sync)
            scale = torch.where(valid, 1.0 / n_valid.float(), 0.0)[:, None]
            loss_rows = torch.empty(N, dtype=torch.float32, device=h.device)
            dh = torch.empty_like(hc) if need_dh else None
            dw = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if need_dw else None
            for i in range(0, N, chunk):
                h_i, s_i = hc[i:i + chunk], scale[i:i + chunk]  # (n, C), (n, 1)
                logits = h_i @ wc.T  # (n, V) compute dtype; becomes softmax - onehot
                loss_rows[i:i + chunk] = rows(logits, targets[i:i + chunk], ignore_index, need_dh or need_dw)
                if need_dh:
                    torch.mm(logits, wc, out=dh[i:i + chunk])
                    dh[i:i + chunk] *= s_i
                if need_dw and dtype == torch.float32:
                    dw.addmm_(logits.T, h_i * s_i)
                elif need_dw:  # a (V, C) product in the compute dtype, summed in fp32
                    dw += logits.T @ (h_i * s_i).to(dtype)
            ctx.save_for_backward(dh, dw)
            ctx.dtypes = h.dtype, weight.dtype
        return loss_rows.sum() / n_valid  # a 0/0 NaN when every target is ignored, as in PyTorch

    @staticmethod
    def backward(ctx, g):
        dh, dw = ctx.saved_tensors
        dh = (dh * g).to(ctx.dtypes[0]) if dh is not None else None
        dw = (dw * g).to(ctx.dtypes[1]) if dw is not None else None
        return dh, dw, None, None, None, None


def _checked(h, weight, targets, chunk, name):
    if h.dim() != 2 or weight.dim() != 2 or h.shape[1] != weight.shape[1] or targets.shape != h.shape[:1]:
        raise ValueError(f"{name}: need h (N, C), weight (V, C), targets (N,); got {tuple(h.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name}: targets must be int64 or int32, got {targets.dtype}")
    if chunk is None:
        chunk = DEFAULT_CHUNK_BYTES // (weight.shape[0] * h.element_size())
    if chunk < 1:
        raise ValueError(f"{name}: chunk={chunk} must be >= 1")
    return max(1, min(chunk, h.shape[0])), targets.contiguous()


def fused_linear_cross_entropy(h, weight, targets, ignore_index=-100, chunk=None):
    """Mean cross-entropy of softmax(h @ weight.T) against targets, rows whose target is
    ignore_index left out. h (N, C) float, weight (V, C), targets (N,) int; chunk = rows per step
    (default: 256 MiB of logits). Gradients for h and weight (a tied embedding gets its share
    through autograd). Triton: runs on CUDA tensors, or on CPU under TRITON_INTERPRET=1. A target
    outside [0, V) that is not ignore_index makes the loss NaN (no host sync to check it)."""
    chunk, targets = _checked(h, weight, targets, chunk, "fused_linear_cross_entropy")
    return LinearCrossEntropyFunction.apply(h, weight, targets, ignore_index, chunk, _rows_triton)


def linear_cross_entropy_chunked(h, weight, targets, ignore_index=-100, chunk=None):
    """The same loss and gradients as fused_linear_cross_entropy, the per-row step in PyTorch
    (any device; one fp32 chunk of logits at a time). A target outside [0, V) raises ValueError."""
    chunk, targets = _checked(h, weight, targets, chunk, "linear_cross_entropy_chunked")
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= weight.shape[0]))
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"linear_cross_entropy_chunked: target {int(targets[i])} at row {i} is outside the "
                         f"vocabulary [0, {weight.shape[0]}) and is not ignore_index={ignore_index}")
    return LinearCrossEntropyFunction.apply(h, weight, targets, ignore_index, chunk, _rows_torch)


# model.py's CPU path calls it by this name
linear_cross_entropy_reference = linear_cross_entropy_chunked


def cross_entropy_reference(h, weight, targets, ignore_index=-100):
    """The plain PyTorch definition: full logits, fp32 cross-entropy."""
    return F.cross_entropy((h @ weight.T).float(), targets.long(), ignore_index=ignore_index)


if __name__ == "__main__":
    # quick check; the sweep lives in tests/test_kernels_cross_entropy.py, timings in kernels/bench.py
    if not torch.cuda.is_available() and not INTERPRET:
        raise SystemExit("no GPU: run with TRITON_INTERPRET=1")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    h, w = torch.randn(100, 64, device=device), torch.randn(1000, 64, device=device) / 8
    t = torch.randint(0, 1000, (100,), device=device)
    t[::7] = -100
    for fn in (fused_linear_cross_entropy, linear_cross_entropy_chunked):
        print(f"{fn.__name__}: |loss - ref| = {(fn(h, w, t, chunk=32) - cross_entropy_reference(h, w, t)).abs().item():.2e}")
