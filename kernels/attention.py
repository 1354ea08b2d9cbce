"""
FlashAttention-style causal self-attention in Triton, forward and backward.

    o = softmax(q k^T * sm_scale + causal mask) v        flash_attention(q, k, v)
    q (B, H, T, D), k and v (B, H_kv, T, D), H a multiple of H_kv (GQA; H_kv == H is plain MHA)

Forward (one program per block of BLOCK_M queries of one head): stream over key blocks keeping a
running row max m, running denominator l and an unnormalised fp32 accumulator ("online softmax"),
so the T x T score matrix never exists in memory. Key blocks strictly below the diagonal need no
mask; only the diagonal blocks (and the ragged end, T need not be a multiple of anything) are
masked. The row logsumexp is saved for the backward pass, which recomputes the probabilities
block by block instead of storing them.

Backward in FlashAttention-2's shape: one program per (key block, batch, key head) holds k, v and
the dk, dv accumulators in registers and sweeps the query blocks that can see its keys (for GQA,
those of every query head in the group, so the group sum is free). Per query block it does the
five matmuls of the backward and nothing twice:
    s = k q^T,  dv += p^T do,  dp = do v^T,  dk += ds^T q,  dq += ds k      (ds = p * (dp - delta))
with delta = rowsum(do * o). dq is shared between key blocks, so each program adds its share into
an fp32 buffer with atomics (as FlashAttention-2 does) instead of a second kernel recomputing s
and dp. As in forward, the query blocks wholly after the key block run unmasked; only the
diagonal and the ragged end are masked.

Exponentials are base 2 (exp2 is the native instruction): scores are scaled by sm_scale*LOG2E
and the saved logsumexp is in log2 units. Matmul inputs are the input dtype (fp16/bf16 tensor
cores) with fp32 accumulation; softmax statistics are fp32. Under TRITON_INTERPRET=1 (CPU) the
kernels compute in fp32 after every load instead (bf16 arithmetic is broken in the interpreter),
rounding p and ds to the input dtype before their matmuls like the GPU does.
"""
import math

import torch
import triton
import triton.language as tl

from kernels import INTERPRET, cast

LOG2E = tl.constexpr(1.4426950408889634)  # log2(e): exp(x) == exp2(x * LOG2E)


@triton.jit
def _may_see(q_pos, k_pos, T):
    """The one causal rule of all three kernels: query q_pos sees key k_pos iff k_pos <= q_pos and
    the key exists. Padding queries past T see every real key, so their (discarded) softmax row
    stays finite and their zero do contributes nothing."""
    return (k_pos <= q_pos) & (k_pos < T)

# -----------------------------------------------------------------------------
# forward


def _fwd_configs():
    if INTERPRET:  # the interpreter cannot autotune over several configs
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64})]
    # BLOCK_M must be a multiple of BLOCK_N: the unmasked stage ends exactly at the diagonal
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w, s in FWD_TILES]


# (BLOCK_M, BLOCK_N, num_warps, num_stages): every one compiles for sm_90a at head dims 64 and 128
# without register spills and with wgmma (python -m kernels.compile_check; the ones dropped spill)
FWD_TILES = [(128, 64, 8, 3), (128, 64, 8, 2), (128, 32, 8, 3), (64, 32, 4, 4), (64, 32, 4, 3)]


@triton.jit
def _fwd_inner(acc, m_i, l_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, lo, hi, T, qk_scale,
               MASKED: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr, IN: tl.constexpr,
               INTERPRETED: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kt_ptrs = k_base + offs_n[None, :] * stride_kt + offs_d[:, None]  # (D, BLOCK_N): k transposed
        v_ptrs = v_base + offs_n[:, None] * stride_vt + offs_d[None, :]   # (BLOCK_N, D)
        if MASKED:
            kt = tl.load(kt_ptrs, mask=offs_n[None, :] < T, other=0.0).to(DOT)
        else:
            kt = tl.load(kt_ptrs).to(DOT)
        s = tl.dot(q, kt) * qk_scale  # (BLOCK_M, BLOCK_N) scores in log2 units
        if MASKED:
            s = tl.where(_may_see(offs_m[:, None], offs_n[None, :], T), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)  # rescales what was accumulated under the old max
        l_i = l_i * alpha + tl.sum(p, 1)
        if MASKED:
            v = tl.load(v_ptrs, mask=offs_n[:, None] < T, other=0.0).to(DOT)
        else:
            v = tl.load(v_ptrs).to(DOT)
        acc = tl.dot(cast(p, IN, INTERPRETED).to(DOT), v, acc * alpha[:, None])
        m_i = m_new
    return acc, m_i, l_i


@triton.autotune(configs=_fwd_configs(), key=["T", "HEAD_DIM", "GROUP"])
@triton.jit
def _attn_fwd(Q, K, V, O, LSE, sm_scale,
              stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
              stride_vb, stride_vh, stride_vt, stride_ob, stride_oh, stride_ot,
              H, T, GROUP,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              INTERPRETED: tl.constexpr = INTERPRET):
    IN: tl.constexpr = Q.dtype.element_ty
    DOT: tl.constexpr = tl.float32 if INTERPRETED else IN
    # heaviest query blocks (the last ones see the most keys) first, for every head in the first
    # wave: the grid's fast axis is the head, and the block axis runs backwards
    bh = tl.program_id(0)
    start_m = tl.num_programs(1) - 1 - tl.program_id(1)
    b, h = bh // H, bh % H
    hk = h // GROUP  # the key/value head this query head reads (GQA)
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + hk.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + hk.to(tl.int64) * stride_vh
    o_base = O + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], mask=offs_m[:, None] < T, other=0.0).to(DOT)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * LOG2E
    # stage 1: key blocks wholly before this query block, no masking needed
    diag = start_m * BLOCK_M
    acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d,
                               0, diag, T, qk_scale, False, BLOCK_N, DOT, IN, INTERPRETED)
    # stage 2: the diagonal, causal and end-of-sequence masks (every row sees at least key 0 of
    # this stage or of stage 1, so l_i > 0 even for padding rows past T)
    acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d,
                               diag, tl.minimum(diag + BLOCK_M, T), T, qk_scale, True, BLOCK_N, DOT, IN,
                               INTERPRETED)
    acc = acc / l_i[:, None]
    tl.store(LSE + bh.to(tl.int64) * T + offs_m, m_i + tl.math.log2(l_i), mask=offs_m < T)
    tl.store(o_base + offs_m[:, None] * stride_ot + offs_d[None, :], cast(acc, O.dtype.element_ty, INTERPRETED),
             mask=offs_m[:, None] < T)

# -----------------------------------------------------------------------------
# backward


# (BLOCK_M queries, BLOCK_N keys, num_warps, num_stages) per head dim. A program owns BLOCK_N keys
# and walks BLOCK_M queries at a time, so these tiles are the transpose of forward's: large BLOCK_N
# (the dk, dv accumulators), small BLOCK_M (the streamed q, do); one of the two divides the other.
# Kept: exactly the tiles that compile for sm_90a with 0 bytes of spills and only wgmma, in both
# launches kernels/compile_check.py specializes (MHA at T 8192, GQA at a ragged T). Per thread a
# tile holds dk and dv (2 BLOCK_N x D fp32), s, p, dp, ds (BLOCK_N x BLOCK_M) and dq's share
# (D x BLOCK_M fp32), against 255 registers:
#   D=64:  64x64 (8 warps, 2 or 3 stages), 64x128 and 32x128 (FlashAttention-2's Triton tiles, 8
#          warps) and 32x64 (4 warps) all fit.
#   D=128: only 32-query tiles with 8 warps fit: 32x128 (the same FA2 tile) and 32x64. Measured
#          and dropped: 64x64 (8 warps: 170-210 B of spills), 64x128 and 128x64 (0.3-1.4 KB),
#          32x64 with 4 warps (92 B in the GQA launch), 64x32 and 128x32 (and mma.sync).
# D <= 64 takes the first list, larger D the second (D=256 runs, but is not tuned: it spills).
BWD_TILES = {64: [(64, 64, 8, 2), (64, 64, 8, 3), (64, 128, 8, 2), (32, 128, 8, 2), (32, 64, 4, 2)],
             128: [(32, 128, 8, 2), (32, 64, 8, 2), (32, 64, 8, 3)]}


def _bwd_tiles_for_head_dim(configs, named_args, **kwargs):
    """The autotuner's early prune: of the union of BWD_TILES, only the head dim's own list."""
    tiles = BWD_TILES[64 if kwargs["HEAD_DIM"] <= 64 else 128]
    return [c for c in configs if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in tiles]


def _bwd_configs():
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 64})]
    tiles = dict.fromkeys(t for d in sorted(BWD_TILES) for t in BWD_TILES[d])  # the union, in order, once each
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in tiles]


@triton.jit
def _bwd_inner(dk, dv, k, v, q_base, do_base, dq_base, lse_base, delta_base,
               stride_qh, stride_qt, stride_doh, stride_dot, stride_dqh, stride_dqt,
               offs_n, offs_d, lo, n_blocks, jump_from, jump_to, T, GROUP, qk_scale, sm_scale,
               MASKED: tl.constexpr, BLOCK_M: tl.constexpr, DOT: tl.constexpr, IN: tl.constexpr,
               INTERPRETED: tl.constexpr):
    """n_blocks query blocks lo, lo + BLOCK_M, ... of each of the GROUP query heads, where a block
    start >= jump_from is moved on to jump_to + (start - jump_from): one masked loop covers the
    diagonal and the ragged end. One flat loop over (head, block), not a loop over heads around
    a loop over blocks: compiled for sm_90a at head dim 128 with GQA (GROUP not a constant), the
    nested form spilled (48 B at 32 x 64, 8 warps) where the flat one uses 225 registers."""
    for j in range(0, GROUP * n_blocks):
        g = j // n_blocks
        i = lo + (j - g * n_blocks) * BLOCK_M
        start_m = i + (i >= jump_from).to(tl.int32) * (jump_to - jump_from)
        offs_m = start_m + tl.arange(0, BLOCK_M)
        g64 = g.to(tl.int64)
        qt_ptrs = q_base + g64 * stride_qh + offs_m[None, :] * stride_qt + offs_d[:, None]     # (D, BLOCK_M): q^T
        do_ptrs = do_base + g64 * stride_doh + offs_m[:, None] * stride_dot + offs_d[None, :]  # (BLOCK_M, D)
        dqt_ptrs = dq_base + g64 * stride_dqh + offs_m[None, :] * stride_dqt + offs_d[:, None]  # (D, BLOCK_M) fp32
        row = g64 * T + offs_m  # this head's logsumexp and delta rows
        if MASKED:
            in_m = offs_m < T
            qt = tl.load(qt_ptrs, mask=in_m[None, :], other=0.0).to(DOT)
            do = tl.load(do_ptrs, mask=in_m[:, None], other=0.0).to(DOT)
            lse = tl.load(lse_base + row, mask=in_m, other=0.0)
            delta = tl.load(delta_base + row, mask=in_m, other=0.0)
        else:
            qt = tl.load(qt_ptrs).to(DOT)
            do = tl.load(do_ptrs).to(DOT)
            lse = tl.load(lse_base + row)
            delta = tl.load(delta_base + row)
        st = tl.dot(k, qt) * qk_scale  # 1. (BLOCK_N, BLOCK_M) scores, transposed, log2 units
        pt = tl.math.exp2(st - lse[None, :])
        if MASKED:
            pt = tl.where(_may_see(offs_m[None, :], offs_n[:, None], T), pt, 0.0)
        dv = tl.dot(cast(pt, IN, INTERPRETED).to(DOT), do, dv)  # 2.
        dpt = tl.dot(v, tl.trans(do))  # 3. (BLOCK_N, BLOCK_M)
        dst = cast(pt * (dpt - delta[None, :]), IN, INTERPRETED).to(DOT)
        dk = tl.dot(dst, tl.trans(qt), dk)  # 4.
        # 5. this key block's share of dq, transposed: (D, BLOCK_M) = k^T ds^T. As k^T ds^T the
        # matmul's M is HEAD_DIM, so 32-query tiles stay on wgmma (M must be 64 per warpgroup)
        dqt = tl.dot(tl.trans(k), dst) * sm_scale
        if MASKED:
            tl.atomic_add(dqt_ptrs, dqt, mask=in_m[None, :], sem="relaxed")
        else:
            tl.atomic_add(dqt_ptrs, dqt, sem="relaxed")
    return dk, dv


@triton.autotune(configs=_bwd_configs(), key=["T", "HEAD_DIM", "GROUP"], reset_to_zero=["DQ"],
                 prune_configs_by={"early_config_prune": _bwd_tiles_for_head_dim})
@triton.jit
def _attn_bwd(Q, K, V, DO, LSE, DELTA, DQ, DK, DV, sm_scale,
              stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
              stride_vb, stride_vh, stride_vt, stride_dob, stride_doh, stride_dot,
              stride_dqb, stride_dqh, stride_dqt, stride_dkb, stride_dkh, stride_dkt,
              stride_dvb, stride_dvh, stride_dvt,
              H, T, GROUP,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              INTERPRETED: tl.constexpr = INTERPRET):
    """One program per (key block, batch, key head): dk and dv stay in registers while it sweeps
    every query block (of every query head in the GQA group) that can see these keys; dq (fp32,
    zeroed) receives each block's share by atomic add."""
    IN: tl.constexpr = Q.dtype.element_ty
    DOT: tl.constexpr = tl.float32 if INTERPRETED else IN
    bk = tl.program_id(0)
    start_n = tl.program_id(1) * BLOCK_N  # the first key blocks are seen by the most queries: first
    HKV = H // GROUP
    b, hk = bk // HKV, bk % HKV
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    in_n = offs_n[:, None] < T
    k = tl.load(K + b.to(tl.int64) * stride_kb + hk.to(tl.int64) * stride_kh
                + offs_n[:, None] * stride_kt + offs_d[None, :], mask=in_n, other=0.0).to(DOT)
    v = tl.load(V + b.to(tl.int64) * stride_vb + hk.to(tl.int64) * stride_vh
                + offs_n[:, None] * stride_vt + offs_d[None, :], mask=in_n, other=0.0).to(DOT)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * LOG2E
    # queries before start_n see none of these keys. [start_n, diag_end) is the diagonal
    # (masked); after it come whole query blocks that see every key here (unmasked) and at most
    # one ragged block [bulk_end, T) (masked for the bound only), done by the diagonal's loop: two
    # loop bodies, not three, keep the register pressure down
    diag_end = start_n + tl.cdiv(tl.maximum(BLOCK_N, BLOCK_M), BLOCK_M) * BLOCK_M
    bulk_end = diag_end + tl.maximum(T - diag_end, 0) // BLOCK_M * BLOCK_M
    masked_end = tl.minimum(diag_end + tl.where(bulk_end < T, BLOCK_M, 0), T)  # blocks past T: none
    n_masked = tl.cdiv(masked_end - start_n, BLOCK_M)
    h0 = hk * GROUP  # the group's first query head
    q_base = Q + b.to(tl.int64) * stride_qb + h0.to(tl.int64) * stride_qh
    do_base = DO + b.to(tl.int64) * stride_dob + h0.to(tl.int64) * stride_doh
    dq_base = DQ + b.to(tl.int64) * stride_dqb + h0.to(tl.int64) * stride_dqh
    row_base = (b * H + h0).to(tl.int64) * T
    dk, dv = _bwd_inner(dk, dv, k, v, q_base, do_base, dq_base, LSE + row_base, DELTA + row_base,
                        stride_qh, stride_qt, stride_doh, stride_dot, stride_dqh, stride_dqt, offs_n, offs_d,
                        start_n, n_masked, diag_end, bulk_end, T, GROUP, qk_scale, sm_scale, True, BLOCK_M, DOT,
                        IN, INTERPRETED)
    dk, dv = _bwd_inner(dk, dv, k, v, q_base, do_base, dq_base, LSE + row_base, DELTA + row_base,
                        stride_qh, stride_qt, stride_doh, stride_dot, stride_dqh, stride_dqt, offs_n, offs_d,
                        diag_end, (bulk_end - diag_end) // BLOCK_M, bulk_end, bulk_end, T, GROUP, qk_scale,
                        sm_scale, False, BLOCK_M, DOT, IN, INTERPRETED)
    dk = dk * sm_scale
    tl.store(DK + b.to(tl.int64) * stride_dkb + hk.to(tl.int64) * stride_dkh + offs_n[:, None] * stride_dkt
             + offs_d[None, :], cast(dk, DK.dtype.element_ty, INTERPRETED), mask=in_n)
    tl.store(DV + b.to(tl.int64) * stride_dvb + hk.to(tl.int64) * stride_dvh + offs_n[:, None] * stride_dvt
             + offs_d[None, :], cast(dv, DV.dtype.element_ty, INTERPRETED), mask=in_n)

# -----------------------------------------------------------------------------
# autograd Function and the public entry point


def _strides(t):
    return t.stride(0), t.stride(1), t.stride(2)


class FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, sm_scale):
        B, H, T, D = q.shape
        GROUP = H // k.shape[1]
        o = torch.empty_like(q)  # same memory layout as q (e.g. a (B, T, H, D) buffer seen as (B, H, T, D))
        lse = torch.empty((B, H, T), dtype=torch.float32, device=q.device)  # log2 units
        grid = lambda meta: (B * H, triton.cdiv(T, meta["BLOCK_M"]))
        _attn_fwd[grid](q, k, v, o, lse, sm_scale, *_strides(q), *_strides(k), *_strides(v), *_strides(o),
                        H, T, GROUP, HEAD_DIM=D)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.sm_scale = sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        B, H, T, D = q.shape
        GROUP = H // k.shape[1]
        if do.stride(-1) != 1:
            do = do.contiguous()
        delta = (o.float() * do.float()).sum(-1)  # (B, H, T): rowsum(do * o), the softmax-backward term
        # dq is summed over key blocks by atomics: an fp32 buffer in q's layout, zeroed
        dq = torch.zeros_like(q, dtype=torch.float32)
        dk, dv = torch.empty_like(k), torch.empty_like(v)
        grid = lambda meta: (B * k.shape[1], triton.cdiv(T, meta["BLOCK_N"]))
        _attn_bwd[grid](q, k, v, do, lse, delta, dq, dk, dv, ctx.sm_scale, *_strides(q), *_strides(k),
                        *_strides(v), *_strides(do), *_strides(dq), *_strides(dk), *_strides(dv), H, T, GROUP,
                        HEAD_DIM=D)
        return dq.to(q.dtype), dk, dv, None


def flash_attention(q, k, v, sm_scale=None):
    """Causal attention. q (B, H, T, D); k, v (B, H_kv, T, D) with H % H_kv == 0; D a power of two
    in [16, 256]; fp32/fp16/bf16 (all three the same). Returns o (B, H, T, D) in q's dtype."""
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise ValueError(f"flash_attention: need q (B,H,T,D) and k, v (B,Hkv,T,D); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    B, H, T, D = q.shape
    if k.shape[0] != B or k.shape[2:] != (T, D) or H % k.shape[1]:
        raise ValueError(f"flash_attention: k/v shape {tuple(k.shape)} does not fit q {tuple(q.shape)} "
                         "(same B, T, D; H a multiple of H_kv)")
    if D not in (16, 32, 64, 128, 256):
        raise ValueError(f"flash_attention: head dim {D} not supported (16, 32, 64, 128 or 256)")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"flash_attention: dtypes {q.dtype}, {k.dtype}, {v.dtype}; need one of fp32/fp16/bf16")
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    return FlashAttentionFunction.apply(q, k, v, sm_scale if sm_scale is not None else 1.0 / math.sqrt(D))


def attention_reference(q, k, v, sm_scale=None):
    """The PyTorch definition: materialise the scores, mask the future, softmax in fp32."""
    H, Hkv, T, D = q.shape[1], k.shape[1], q.shape[2], q.shape[3]
    k = k.repeat_interleave(H // Hkv, dim=1)  # query head h reads kv head h // (H / Hkv)
    v = v.repeat_interleave(H // Hkv, dim=1)
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(D)
    s = (q @ k.transpose(-2, -1)).float() * scale  # (B, H, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    p = s.masked_fill(future, float("-inf")).softmax(-1)
    return (p.to(q.dtype) @ v).to(q.dtype)
