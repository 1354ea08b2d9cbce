"""
The training step on a CPU, ours against Hugging Face transformers' LlamaForCausalLM with the
same weights (issue 15's CPU benchmark):

    python bench_train.py                 # the 19.6M config: "cpu" preset, vocab 64000, 8 x 512, fp32
    python bench_train.py --steps 3 --threads 2

One step = forward with the loss, backward, AdamW. Both models are built in this process from
one set of weights (checked: the same logits), and their steps alternate, so a busy machine
slows both alike; tokens/s is the median over the timed steps, and tokens/CPU-s the same per
second of this process's CPU time (steadier when other jobs share the cores; with --threads 1
it is the work itself, free of OpenMP's spinning). Peak memory is the high-water
mark of a child process's resident memory over its first two steps (Linux's VmHWM, reset just
before them), minus its resident memory then (the models built, nothing run), one child per
model; glibc is told to map every
allocation of 64 KB or more on its own (MALLOC_MMAP_THRESHOLD_), so freed tensors go back to
the system and the kernel's high-water mark is the step's own peak. Our loss never builds the
(tokens, vocab) logits (model.ChunkedLinearCrossEntropy); transformers' does, in fp32.

transformers is not a dependency of the project: when it is missing it is pip-installed here,
into .cache/bench-transformers (searched after the venv's own packages), never by the tests.
"""
import argparse
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.abspath(__file__))
HF_DIR = os.path.join(ROOT, ".cache", "bench-transformers")


def import_transformers():
    sys.path.append(HF_DIR)  # after the venv's packages: ours win where both have one
    try:
        import transformers
    except ImportError:
        print(f"installing transformers into {HF_DIR} (for this benchmark only)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", HF_DIR, "transformers"], check=True)
        importlib.invalidate_caches()
        sys.path_importer_cache.pop(HF_DIR, None)  # the folder did not exist when it was put on the path
        import transformers
    return transformers


def build(args):
    """(ours, theirs): the same weights in model.Transformer and in LlamaForCausalLM."""
    from model import ModelConfig, Transformer
    transformers = import_transformers()
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(args.preset, vocab_size=args.vocab_size, block_size=args.seq_len, backend="torch")
    ours = Transformer(cfg)
    hf_cfg = transformers.LlamaConfig(
        hidden_size=cfg.n_embd, intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head, head_dim=cfg.head_dim,
        vocab_size=cfg.vocab_size, max_position_embeddings=cfg.block_size, rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings, attn_implementation="sdpa")
    theirs = transformers.LlamaForCausalLM(hf_cfg)
    missing, unexpected = theirs.load_state_dict({k: v.detach().clone() for k, v in ours.hf_state_dict().items()},
                                                 strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    theirs.tie_weights()
    return ours, theirs


def step_fns(ours, theirs, x, y, lr=1e-4):
    """One training step of each: forward with the loss, backward, AdamW."""
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=lr)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=lr)

    def ours_step():
        ours(x, y, loss_only=True).backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def theirs_step():
        # transformers shifts the labels itself: its loss covers the T-1 targets inside x
        theirs(input_ids=x, labels=x).loss.backward()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)
    return {"ours": ours_step, "transformers": theirs_step}


def batch(args, vocab_size):
    g = torch.Generator().manual_seed(1)
    window = torch.randint(0, vocab_size, (args.batch_size, args.seq_len + 1), generator=g)
    return window[:, :-1], window[:, 1:]


def status_bytes(key):
    """VmRSS (resident now) or VmHWM (its high-water mark) of this process, in bytes."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1)) * 1024


def peak_child(args):
    """--peak NAME: build both (the other one idles in `before`), run two steps of NAME -> JSON line."""
    ours, theirs = build(args)
    x, y = batch(args, ours.config.vocab_size)
    fns = step_fns(ours, theirs, x, y)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the high-water mark to the resident size now: building is not counted
    before = status_bytes("VmRSS")
    for _ in range(2):
        fns[args.peak]()
    peak = status_bytes("VmHWM")  # per process image (getrusage's maxrss survives fork + exec)
    print(json.dumps({"name": args.peak, "before": before, "peak": peak, "step_peak": max(0, peak - before)}))


def peak_memory(name, argv):
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    p = subprocess.run([sys.executable, __file__, *argv, "--peak", name], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=1200)
    if p.returncode != 0:
        raise SystemExit(f"bench_train.py: the --peak {name} child failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--vocab_size", type=int, default=64000)
    ap.add_argument("--seq_len", type=int, default=512)
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="timed steps of each model")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--peak", choices=["ours", "transformers"], help=argparse.SUPPRESS)  # the memory child
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak:
        return peak_child(args)
    argv = [f"--{k}={v}" for k in ("preset", "vocab_size", "seq_len", "batch_size", "threads")
            if (v := getattr(args, k)) is not None]

    load_start = os.getloadavg()  # printed with the figures: other jobs on the cores slow both models
    ours, theirs = build(args)
    x, y = batch(args, ours.config.vocab_size)
    with torch.no_grad():  # the same function: same logits, same loss
        lo, loss_o = ours(x, y)
        lt = theirs(input_ids=x).logits
        loss_t = torch.nn.functional.cross_entropy(lt.view(-1, lt.size(-1)), y.reshape(-1))
    diff = (lo - lt).abs().max().item()
    assert diff < 1e-3 and abs(loss_o.item() - loss_t.item()) < 1e-4, (diff, loss_o.item(), loss_t.item())
    del lo, lt
    tokens = args.batch_size * args.seq_len
    print(f"{args.preset} preset, vocab {args.vocab_size}: {ours.num_params() / 1e6:.1f}M params, batch "
          f"{args.batch_size} x {args.seq_len} = {tokens:,} tokens/step, fp32, {torch.get_num_threads()} threads; "
          f"logits max |diff| {diff:.1e}")
    fns = step_fns(ours, theirs, x, y)
    times = {name: [] for name in fns}
    cpu = {name: [] for name in fns}  # CPU seconds: steadier than wall time on a shared machine
    for name, fn in fns.items():  # warm-up (allocations, AdamW state)
        fn()
    for _ in range(args.steps):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    del fns, ours, theirs
    mem = {name: peak_memory(name, argv) for name in times}
    print(f"{'':>14s} {'tokens/s':>10s} {'tokens/CPU-s':>13s} {'step peak memory':>18s}")
    for name in times:
        print(f"{name:>14s} {tokens / statistics.median(times[name]):10.0f} {tokens / statistics.median(cpu[name]):13.0f} "
              f"{mem[name]['step_peak'] / 2**20:14.0f} MiB")
    speed = statistics.median(times["transformers"]) / statistics.median(times["ours"])
    speed_cpu = statistics.median(cpu["transformers"]) / statistics.median(cpu["ours"])
    ratio = mem["ours"]["step_peak"] / mem["transformers"]["step_peak"]
    print(f"{'ours / hf':>14s} {speed:9.2f}x {speed_cpu:12.2f}x {ratio:17.2f}x   "
          "(target: tokens/s >= 1.0x, peak memory <= 0.6x; both timed in this run, steps alternating)")
    print("load average (1, 5, 15 min) at the start: {:.1f} {:.1f} {:.1f}, at the end: {:.1f} {:.1f} {:.1f}".format(
        *load_start, *os.getloadavg()))


if __name__ == "__main__":
    main()
