"""
Benchmarks of the Triton kernels and of one training step of the model (a script, not a test).

    python kernels/bench.py            # attention TFLOPS vs every SDPA backend, RMSNorm, RoPE and
                                       # SwiGLU GB/s vs torch eager and torch.compile
    python kernels/bench.py --all      # all of the above plus fused CE and the model step at micro_batch 2, 3
    python kernels/bench.py --model    # 1.3B training step at seq 8192: tokens/s, MFU, peak memory,
                                       # triton path vs torch path

On a GPU: bf16, the paper's shapes (head dim 128, seq up to 8192). Targets on an H100: attention
fwd+bwd >= SDPA's flash backend; RMSNorm+residual fwd+bwd >= 1.2x torch.compile; the 1.3B step
>= 45% MFU. On a CPU the Triton kernels would only run through the (slow, correctness-only)
interpreter, so only the PyTorch reference paths are timed, on small shapes, and the output says so.
"""
import argparse
import contextlib
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root, for `kernels`, `model`

CUDA = torch.cuda.is_available()


def bench(fn, warmup=3, reps=10):
    """Median seconds per call."""
    if CUDA:
        import triton.testing
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") / 1e3
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def fmt(x):
    return f"{'n/a':>8s}" if x is None else f"{x:8.3g}"

# -----------------------------------------------------------------------------
# attention


def sdpa_backends():
    from torch.nn.attention import SDPBackend
    names = [("flash", "FLASH_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION"), ("cudnn", "CUDNN_ATTENTION"),
             ("math", "MATH")]
    return [(n, getattr(SDPBackend, b)) for n, b in names if hasattr(SDPBackend, b)]


def attention_fns(q, k, v):
    """name -> a callable computing causal attention, or None where that SDPA backend cannot
    run this device/dtype/shape."""
    from torch.nn.attention import sdpa_kernel
    gqa = q.shape[1] != k.shape[1]
    fns = {}
    if CUDA:
        from kernels.attention import flash_attention
        fns["ours (triton)"] = lambda: flash_attention(q, k, v)
    for name, backend in sdpa_backends():
        def run(backend=backend):
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        try:
            run().sum().backward()  # probe
            fns[f"sdpa {name}"] = run
        except RuntimeError:
            fns[f"sdpa {name}"] = None
    return fns


def bench_attention(shapes, dtype, device):
    print(f"\n== causal attention, {dtype}, TFLOPS (causal FLOPs: fwd 2*B*H*T^2*D, fwd+bwd 3.5x that) ==")
    print(f"{'B,H,Hkv,T,D':>22s} {'impl':>16s} {'fwd':>8s} {'fwd+bwd':>8s}")
    for B, H, Hkv, T, D in shapes:
        flops_fwd = 2 * B * H * T * T * D  # two matmuls of 2*T*T*D, half of them masked
        q = torch.randn(B, H, T, D, device=device, dtype=dtype, requires_grad=True)
        k = torch.randn(B, Hkv, T, D, device=device, dtype=dtype, requires_grad=True)
        v = torch.randn(B, Hkv, T, D, device=device, dtype=dtype, requires_grad=True)
        do = torch.randn_like(q)
        fns = attention_fns(q, k, v)
        results = {}
        for name, fn in fns.items():
            if fn is None:
                results[name] = (None, None)
                continue
            t_fwd = bench(fn)
            t_fwd_bwd = bench(lambda: torch.autograd.grad(fn(), (q, k, v), do))
            results[name] = (flops_fwd / t_fwd / 1e12, 3.5 * flops_fwd / t_fwd_bwd / 1e12)
        for name, (f, fb) in results.items():
            print(f"{str((B, H, Hkv, T, D)):>22s} {name:>16s} {fmt(f)} {fmt(fb)}")
        ours, flash = fns.get("ours (triton)"), fns.get("sdpa flash")
        if ours and flash:
            # correctness at the benchmarked shape: ours vs the flash backend, same dtype
            o1, o2 = ours(), flash()
            g1, g2 = torch.autograd.grad(o1, (q, k, v), do), torch.autograd.grad(o2, (q, k, v), do)
            diff = max((a.float() - b.float()).abs().max().item() for a, b in zip((o1, *g1), (o2, *g2)))
            print(f"{'':>22s} {'max |ours-flash|':>16s} {diff:8.2g} (over o, dq, dk, dv)")
            print(f"{'':>22s} {'ours / flash':>16s} {results['ours (triton)'][0] / results['sdpa flash'][0]:7.2f}x"
                  f" {results['ours (triton)'][1] / results['sdpa flash'][1]:7.2f}x")

# -----------------------------------------------------------------------------
# RMSNorm


def bench_rmsnorm(shapes, dtype, device, compile_):
    print(f"\n== RMSNorm fwd+bwd, {dtype}, GB/s (nominal bytes: 5 row-tensors moved, 8 with the residual) ==")
    print(f"{'rows x N':>16s} {'residual':>8s} {'impl':>16s} {'GB/s':>8s}")
    eps = 1e-5

    def torch_norm(x, w, r):
        if r is None:
            return F.rms_norm(x, (x.shape[-1],), w, eps)
        h = x + r
        return F.rms_norm(h, (x.shape[-1],), w, eps), h

    compiled = torch.compile(torch_norm) if compile_ else None
    for M, N in shapes:
        for residual in (False, True):
            x = torch.randn(M, N, device=device, dtype=dtype, requires_grad=True)
            r = torch.randn(M, N, device=device, dtype=dtype, requires_grad=True) if residual else None
            w = torch.ones(N, device=device, dtype=dtype, requires_grad=True)
            grads = [torch.randn(M, N, device=device, dtype=dtype) for _ in range(2 if residual else 1)]
            inputs = (x, w, r) if residual else (x, w)
            nbytes = (8 if residual else 5) * M * N * x.element_size()
            impls = {"torch eager": torch_norm}
            if compiled is not None:
                impls["torch compile"] = compiled
            if CUDA:
                from kernels.rmsnorm import rms_norm
                impls["ours (triton)"] = lambda x, w, r: rms_norm(x, w, eps, residual=r)
            gbs = {}
            for name, fn in impls.items():
                def step(fn=fn):
                    out = fn(x, w, r)
                    out = out if isinstance(out, tuple) else (out,)
                    torch.autograd.grad(out, inputs, grads)
                gbs[name] = nbytes / bench(step) / 1e9
                print(f"{f'{M}x{N}':>16s} {str(residual):>8s} {name:>16s} {fmt(gbs[name])}")
            if "ours (triton)" in gbs and "torch compile" in gbs:
                print(f"{'':>16s} {'':>8s} {'ours / compile':>16s} {gbs['ours (triton)'] / gbs['torch compile']:8.2f}x")

# -----------------------------------------------------------------------------
# RoPE and the SwiGLU gate (kernels/rope.py, kernels/swiglu.py)


def bench_rope_swiglu(dtype, device, compile_):
    """fwd+bwd of one layer's RoPE on q and of its SwiGLU gate at the 1.3B model's shapes (GPU),
    ours against the PyTorch code of model.py's torch path, eager and compiled."""
    from model import apply_rope, rope_cos_sin
    B, T, H, D, I = (2, 8192, 16, 128, 5632) if CUDA else (1, 256, 4, 64, 704)
    print(f"\n== RoPE and SwiGLU fwd+bwd, {dtype}, GB/s (nominal bytes: 4 tensors moved for RoPE, 8 for SwiGLU) ==")
    print(f"{'op (shape)':>28s} {'impl':>16s} {'GB/s':>8s}")
    cos, sin = rope_cos_sin(torch.arange(T, device=device), D, 10000.0, dtype=dtype)
    q = torch.randn(B, T, H, D, device=device, dtype=dtype).transpose(1, 2).requires_grad_()  # as q_proj makes it
    a, b = (torch.randn(B, T, I, device=device, dtype=dtype, requires_grad=True) for _ in range(2))
    cases = {f"rope {tuple(q.shape)}": ((q,), 4, lambda q: apply_rope(q, cos, sin), "rope"),
             f"swiglu {tuple(a.shape)}": ((a, b), 8, lambda a, b: F.silu(a) * b, "swiglu")}
    for name, (inputs, n_tensors, torch_fn, ours) in cases.items():
        impls = {"torch eager": torch_fn}
        if compile_:
            impls["torch compile"] = torch.compile(torch_fn)
        if CUDA:
            from kernels.rope import rope
            from kernels.swiglu import swiglu
            impls["ours (triton)"] = (lambda q: rope(q, cos, sin)) if ours == "rope" else swiglu
        dy = torch.randn_like(inputs[0])
        nbytes = n_tensors * inputs[0].numel() * inputs[0].element_size()
        gbs = {}
        for impl, fn in impls.items():
            gbs[impl] = nbytes / bench(lambda fn=fn: torch.autograd.grad(fn(*inputs), inputs, dy)) / 1e9
            print(f"{name:>28s} {impl:>16s} {fmt(gbs[impl])}")
        for base in ("torch eager", "torch compile"):
            if "ours (triton)" in gbs and base in gbs:
                print(f"{'':>28s} {'ours / ' + base.split()[1]:>16s} {gbs['ours (triton)'] / gbs[base]:8.2f}x")

# -----------------------------------------------------------------------------
# fused linear + cross-entropy


def bench_cross_entropy(shapes, dtype, device):
    from kernels.cross_entropy import cross_entropy_reference, fused_linear_cross_entropy, linear_cross_entropy_chunked
    print(f"\n== linear + cross-entropy fwd+bwd, {dtype}: ms, peak memory above inputs (GPU only) ==")
    print(f"{'N x C -> V':>22s} {'impl':>22s} {'ms':>8s} {'peak MiB':>9s}")
    for N, C, V in shapes:
        h = torch.randn(N, C, device=device, dtype=dtype, requires_grad=True)
        w = (torch.randn(V, C, device=device, dtype=dtype) / C**0.5).requires_grad_()
        t = torch.randint(0, V, (N,), device=device)
        impls = {"torch (full logits)": cross_entropy_reference, "torch chunked": linear_cross_entropy_chunked}
        if CUDA:
            impls["ours (triton)"] = fused_linear_cross_entropy
        for name, fn in impls.items():
            step = lambda fn=fn: torch.autograd.grad(fn(h, w, t), (h, w))
            peak = None
            if CUDA:
                step()
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                step()
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            print(f"{f'{N}x{C}->{V}':>22s} {name:>22s} {fmt(1e3 * bench(step))} {fmt(peak):>9s}")

# -----------------------------------------------------------------------------
# model step


def train_step(model, opt, idx, amp):
    with amp:  # as train.py's train_step: the loss alone, no (B, T, vocab) logits built or kept
        loss = model(idx, idx, loss_only=True)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def bench_model(preset, seq_len, batch_size, steps, device):
    from model import ModelConfig, Transformer
    print(f"\n== training step: preset {preset}, batch {batch_size} x seq {seq_len}, AdamW, "
          f"{'bf16 autocast, ' if CUDA else 'fp32, '}{device} ==")
    print(f"{'backend':>8s} {'tokens/s':>10s} {'MFU':>7s} {'peak mem':>10s}")
    backends = ["torch", "triton"] if CUDA else ["torch"]
    tok_s = {}
    for backend in backends:
        torch.manual_seed(0)
        cfg = ModelConfig.from_preset(preset, backend=backend, block_size=max(seq_len, 1))
        model = Transformer(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=CUDA)
        idx = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), device=device)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if CUDA else contextlib.nullcontext()
        train_step(model, opt, idx, amp)  # warmup (autotuning, allocator)
        if CUDA:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(model, opt, idx, amp)
        if CUDA:
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / steps
        tokens = batch_size * seq_len
        tok_s[backend] = tokens / dt
        mem = (torch.cuda.max_memory_allocated() / 2**30) if CUDA else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{backend:>8s} {tokens / dt:10.0f} {100 * model.estimate_mfu(tokens, dt, seq_len):6.3g}% "
              f"{mem:7.2f} GiB{'' if CUDA else ' (process max RSS)'}")
        del model, opt
        if CUDA:
            torch.cuda.empty_cache()
    if "triton" in tok_s:
        print(f"{'':>8s} triton / torch: {tok_s['triton'] / tok_s['torch']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="store_true", help="benchmark a full training step instead of the kernels")
    ap.add_argument("--all", action="store_true", help="the whole report: kernels, cross-entropy, and the model "
                    "step at micro_batch 2 and 3")
    ap.add_argument("--preset", default=None, help="model preset for --model (default: snowcoder-1.3b on GPU, cpu on CPU)")
    ap.add_argument("--seq_len", type=int, default=None, help="sequence length for --model (default 8192 GPU, 256 CPU)")
    ap.add_argument("--batch_size", type=int, default=1, help="sequences per step for --model")
    ap.add_argument("--steps", type=int, default=None, help="timed steps for --model (default 10 GPU, 3 CPU)")
    ap.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"], help="kernel benchmark dtype (default bf16 GPU, fp32 CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (a shared CPU is steadier with 1)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baselines (RMSNorm, RoPE, SwiGLU)")
    args = ap.parse_args()
    device = "cuda" if CUDA else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    if CUDA:
        print(f"device: {torch.cuda.get_device_name()}")
    else:
        print("device: CPU, no GPU. Triton kernels are not timed (they run here only through the interpreter, "
              "for correctness); timing the PyTorch reference paths on small shapes.")
    if args.model and not args.all:
        bench_model(args.preset or ("snowcoder-1.3b" if CUDA else "cpu"), args.seq_len or (8192 if CUDA else 256),
                    args.batch_size, args.steps or (10 if CUDA else 3), device)
        return
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype or ("bf16" if CUDA else "fp32")]
    if CUDA:
        attn_shapes = [(4, 16, 16, 2048, 128), (2, 16, 16, 4096, 128), (1, 16, 16, 8192, 128), (1, 16, 16, 16384, 128),
                       (2, 16, 4, 4096, 128), (4, 32, 32, 2048, 64), (1, 32, 32, 8192, 64), (1, 32, 32, 16384, 64)]
        norm_shapes = [(8192, 2048), (32768, 2048), (16384, 4096)]
    else:
        attn_shapes = [(1, 4, 4, 256, 64), (1, 4, 2, 512, 128)]
        norm_shapes = [(1024, 256), (4096, 2048)]
    bench_attention(attn_shapes, dtype, device)
    bench_rmsnorm(norm_shapes, dtype, device, compile_=not args.no_compile)
    bench_rope_swiglu(dtype, device, compile_=not args.no_compile)
    bench_cross_entropy([(8192, 2048, 64000)] if CUDA else [(512, 128, 8000)], dtype, device)
    if args.all:
        for micro_batch in (2, 3):
            bench_model(args.preset or ("snowcoder-1.3b" if CUDA else "cpu"), args.seq_len or (8192 if CUDA else 256),
                        micro_batch, args.steps or (10 if CUDA else 2), device)


if __name__ == "__main__":
    main()
