"""kernels/cross_entropy.py through the Triton interpreter (or on a GPU when TRITON_INTERPRET=0):
the fused linear + cross-entropy and its chunked PyTorch path vs the plain PyTorch definition
(full logits): loss, d h and d weight; fp32 to ~1e-5, bf16 error vs fp32 math within 2x of
PyTorch's own; ignore_index, a tied embedding, autocast, and no full (N, V) fp32 logits."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kernels import INTERPRET
from kernels.cross_entropy import cross_entropy_reference, fused_linear_cross_entropy, linear_cross_entropy_chunked

DEVICE = "cpu" if INTERPRET else "cuda"
FP32_TOL = 1e-5 if INTERPRET else 1e-3  # TF32 matmuls on a GPU
IMPLS = [fused_linear_cross_entropy, linear_cross_entropy_chunked]


def run(fn, h, w, t, **kw):
    h, w = h.detach().requires_grad_(), w.detach().requires_grad_()
    loss = fn(h, w, t, **kw)
    return [loss.detach()] + list(torch.autograd.grad(loss, (h, w)))


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def inputs(N, C, V, dtype, seed=0, ignore_every=5):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, C, generator=g)
    w = torch.randn(V, C, generator=g) / C**0.5 * 2  # logits of std ~2: a peaked softmax, as when trained
    t = torch.randint(0, V, (N,), generator=g)
    if ignore_every:
        t[::ignore_every] = -100
    return h.to(DEVICE, dtype), w.to(DEVICE, dtype), t.to(DEVICE)


# (N, C, V, chunk): several chunks with a ragged last one; V one partial block, V over two blocks
# of the kernel's 4096; a chunk larger than N
CASES = [(37, 64, 1000, 16), (20, 32, 5000, 8), (9, 64, 777, 100)]


@pytest.mark.parametrize("fn", IMPLS)
@pytest.mark.parametrize("N, C, V, chunk", CASES)
def test_fp32_matches_reference(fn, N, C, V, chunk):
    h, w, t = inputs(N, C, V, torch.float32)
    ours, ref = run(fn, h, w, t, chunk=chunk), run(cross_entropy_reference, h, w, t)
    for name, a, b in zip(("loss", "dh", "dw"), ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
        assert max_err(a, b) <= FP32_TOL * max(1.0, b.abs().max().item()), name


@pytest.mark.parametrize("fn", IMPLS)
def test_bf16_error_within_2x_of_pytorch(fn):
    h, w, t = inputs(64, 64, 3000, torch.bfloat16, seed=1)
    exact = run(cross_entropy_reference, h.float(), w.float(), t)
    ours, torch_low = run(fn, h, w, t, chunk=24), run(cross_entropy_reference, h, w, t)
    for name, a, p, e in zip(("loss", "dh", "dw"), ours, torch_low, exact):
        assert a.dtype == p.dtype
        assert max_err(a, e) <= 2 * max_err(p, e) + 1e-6, f"{name}: ours {max_err(a, e)} torch {max_err(p, e)}"


@pytest.mark.parametrize("fn", IMPLS)
def test_under_autocast_like_the_model(fn):
    # autocast: fp32 h and weight, the head matmul in bf16; grads come back in fp32
    h, w, t = inputs(40, 64, 1500, torch.float32, seed=2)
    exact = run(cross_entropy_reference, h, w, t)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        ours = run(fn, h, w, t, chunk=16)
        torch_low = run(cross_entropy_reference, h, w, t)
    for name, a, p, e in zip(("loss", "dh", "dw"), ours, torch_low, exact):
        assert a.dtype == torch.float32
        assert max_err(a, e) <= 2 * max_err(p, e) + 1e-6, f"{name}: ours {max_err(a, e)} torch {max_err(p, e)}"


@pytest.mark.parametrize("fn", IMPLS)
def test_tied_embedding_gets_both_gradients(fn):
    V, C, B, T = 300, 32, 2, 9
    g = torch.Generator().manual_seed(3)
    emb = torch.nn.Embedding(V, C).to(DEVICE)
    idx, tgt = torch.randint(0, V, (B, T), generator=g).to(DEVICE), torch.randint(0, V, (B * T,), generator=g).to(DEVICE)
    grads = []
    for loss_fn in (fn, cross_entropy_reference):
        emb.zero_grad()
        h = torch.tanh(emb(idx)).view(B * T, C)  # the head reads the same table the input embedding does
        loss_fn(h, emb.weight, tgt).backward()
        grads.append(emb.weight.grad.clone())
    assert max_err(*grads) <= FP32_TOL


@pytest.mark.parametrize("fn", IMPLS)
def test_all_ignored_is_nan_like_pytorch_and_no_grad_needed(fn):
    h, w, t = inputs(6, 16, 50, torch.float32)
    t[:] = -100
    assert torch.isnan(fn(h, w, t)) and torch.isnan(cross_entropy_reference(h, w, t))
    h, w, t = inputs(6, 16, 50, torch.float32)
    with torch.no_grad():  # evaluation: the loss alone, no gradient matmuls
        assert abs(fn(h, w, t, chunk=4).item() - cross_entropy_reference(h, w, t).item()) < 1e-5


class LargestFloat32(TorchDispatchMode):
    """Records the largest fp32 tensor any op produces."""
    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor) and o.dtype == torch.float32:
                self.largest = max(self.largest, o.numel())
        return out


@pytest.mark.parametrize("fn", IMPLS)
def test_full_fp32_logits_never_exist(fn):
    N, C, V, chunk = 64, 16, 2000, 8
    h, w, t = (x.detach() for x in inputs(N, C, V, torch.bfloat16))
    h.requires_grad_(), w.requires_grad_()
    with LargestFloat32() as mode:
        fn(h, w, t, chunk=chunk).backward()
    # the fp32 d weight accumulator (V, C) and one chunk of logits are the largest; (N, V) never
    assert mode.largest <= max(chunk * V, V * C) < N * V
    with LargestFloat32() as mode:
        cross_entropy_reference(h, w, t).backward()
    assert mode.largest >= N * V  # the check can fail: the plain definition does build them


def test_bad_inputs():
    h, w, t = inputs(6, 16, 50, torch.float32, ignore_every=0)
    with pytest.raises(ValueError, match="need h"):
        fused_linear_cross_entropy(h, w[:, :8], t)
    t[3] = 50
    with pytest.raises(ValueError, match="target 50 at row 3 is outside the vocabulary"):
        linear_cross_entropy_chunked(h, w, t)
    assert torch.isnan(fused_linear_cross_entropy(h, w, t))  # no host sync on the fast path: NaN, loudly


@pytest.mark.parametrize("fn", IMPLS)
def test_grad_output_scales_the_gradients(fn):
    # the gradient is computed in the forward for an incoming grad of 1; backward must scale it
    h, w, t = inputs(30, 32, 700, torch.float32, seed=4)
    for g in (3.5, -0.25):
        ours = [x.detach().requires_grad_() for x in (h, w)]
        ref = [x.detach().requires_grad_() for x in (h, w)]
        (fn(*ours, t, chunk=8) * g).backward()
        (cross_entropy_reference(*ref, t) * g).backward()
        for a, b in zip(ours, ref):
            assert max_err(a.grad, b.grad) <= FP32_TOL * max(1.0, b.grad.abs().max().item())


@pytest.mark.parametrize("fn", IMPLS)
def test_ignored_rows_get_no_gradient_and_give_none(fn):
    h, w, t = inputs(24, 32, 600, torch.float32, seed=5, ignore_every=3)
    loss, dh, dw = run(fn, h, w, t, chunk=7)
    ignored = t == -100
    assert dh[ignored].abs().max().item() == 0.0 and dh[~ignored].abs().min().item() > 0
    h2 = h.clone()
    h2[ignored] = torch.randn(int(ignored.sum()), h.shape[1], device=h.device) * 5  # what ignored rows hold
    loss2, _, dw2 = run(fn, h2, w, t, chunk=7)
    assert max_err(loss, loss2) <= 1e-6 and max_err(dw, dw2) <= 1e-6


class CountMatmuls(TorchDispatchMode):
    """Counts matmul ops whose operands include a (rows, V) or (V, rows) matrix."""
    def __init__(self, V):
        super().__init__()
        self.V, self.count = V, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_):
            if any(isinstance(a, torch.Tensor) and self.V in a.shape for a in args):
                self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("fn", IMPLS)
def test_three_vocabulary_matmuls_per_chunk_forward_and_backward(fn):
    N, C, V, chunk = 40, 16, 900, 16  # 3 chunks
    h, w, t = (x.detach() for x in inputs(N, C, V, torch.float32, seed=6))
    h.requires_grad_(), w.requires_grad_()
    with CountMatmuls(V) as mode:
        fn(h, w, t, chunk=chunk).backward()
    assert mode.count == 3 * 3  # logits, d h, d weight: nothing recomputed in backward
    with CountMatmuls(V) as mode:
        cross_entropy_reference(h, w, t).backward()
    assert mode.count == 3  # the counter sees the plain definition's matmuls too
