"""
Load benchmark for `sample.py --serve`: continuous against static batching, in the same run.

    python bench_server.py                        # a random "cpu"-preset model, 32 clients
    python bench_server.py --ckpt R/p2/export --clients 32 --requests 4 --max-batch 16

Both servers are real `sample.py --serve` subprocesses on 127.0.0.1 with the same checkpoint and
the same number of KV-cache slots; only --batching differs. `--clients` threads each send
`--requests` completion requests back to back (a new one as soon as the last is answered). Every
request is drawn once from a fixed seed, so both servers get exactly the same workload: prompt and
output lengths log-uniform (many short, a few long, as real traffic is), token-id prompts, greedy,
`ignore_eos` so each answer has exactly the length asked for. Reported per mode: completion
tokens per second of wall time, request latency p50 / p95 / max, errors (any non-200 or a wrong
number of tokens), and the ratio of the two throughputs. --out writes the figures as JSON.

Memory: one server process at a time; the client threads hold only their own requests.
"""
import argparse
import json
import math
import random
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from tqdm import tqdm

from sample import spawn_server

ROOT = Path(__file__).resolve().parent


def random_checkpoint(out: Path, preset: str, seed: int = 0) -> Path:
    """A random model of `preset` plus a small BPE trained on the standard library: the timing of
    a real model of that size, without training one."""
    import sysconfig
    import torch
    from model import ModelConfig, Transformer
    from formats import TOKENIZER_FILE, save_tokenizer
    from prepare.tokenizer import train_bpe
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:30]
    ranks = train_bpe([f.read_text(encoding="utf-8", errors="replace") for f in files], vocab_size=1024)
    torch.manual_seed(seed)
    Transformer(ModelConfig.from_preset(preset, vocab_size=1024)).save_pretrained(out)
    save_tokenizer(ranks, out / TOKENIZER_FILE)
    return out


def workload(n: int, context: int, vocab: int, seed: int, max_prompt: int, max_out: int) -> list[dict]:
    rng = random.Random(seed)

    def log_uniform(lo, hi):
        return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    reqs = []
    for _ in range(n):
        p = min(log_uniform(8, max_prompt), context - 8)
        m = min(log_uniform(4, max_out), context - p)
        reqs.append({"prompt": [rng.randrange(vocab - 4) for _ in range(p)], "max_tokens": m})
    return reqs


def post(port: int, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def run(port: int, reqs: list[dict], clients: int, timeout: float, desc: str) -> dict:
    per_client = [reqs[i::clients] for i in range(clients)]
    lat, tokens, errors = [], [0], []
    lock = threading.Lock()
    bar = tqdm(total=len(reqs), desc=desc, leave=False)

    def client(mine):
        for r in mine:
            t0 = time.perf_counter()
            try:
                out = post(port, {"model": "bench", "temperature": 0, "ignore_eos": True, **r}, timeout)
                got = out["usage"]["completion_tokens"]
                problem = None if got == r["max_tokens"] else f"{got} tokens for max_tokens={r['max_tokens']}"
            except Exception as e:  # counted, never hidden
                got, problem = 0, f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                tokens[0] += got
                if problem:
                    errors.append(problem)
                bar.update(1)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(m,)) for m in per_client]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    return {"wall": time.perf_counter() - t0, "tokens": tokens[0], "latencies": lat, "errors": errors}


def summary(runs: list[dict]) -> dict:
    """The rounds of one mode together: tokens over wall time, latency percentiles over all requests."""
    lat = sorted(x for r in runs for x in r["latencies"])
    wall, tokens = sum(r["wall"] for r in runs), sum(r["tokens"] for r in runs)
    errors = [e for r in runs for e in r["errors"]]

    def pct(q):
        return lat[min(len(lat) - 1, int(math.ceil(q * len(lat))) - 1)]
    return {"requests": len(lat), "wall_s": round(wall, 3), "completion_tokens": tokens,
            "tokens_per_s": round(tokens / wall, 1), "latency_p50_s": round(pct(0.50), 3),
            "latency_p95_s": round(pct(0.95), 3), "latency_max_s": round(lat[-1], 3),
            "errors": len(errors), "first_errors": errors[:3]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None, help="export dir (default: a random model of --preset)")
    ap.add_argument("--preset", default="cpu", help="model.py preset for the random model")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients")
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--max-batch", type=int, default=16, help="KV-cache slots, the same for both servers")
    ap.add_argument("--max-prompt", type=int, default=256, help="longest prompt drawn (tokens)")
    ap.add_argument("--max-out", type=int, default=256, help="longest output drawn (tokens)")
    ap.add_argument("--device", default=None, help="passed to sample.py (default: cuda if available)")
    ap.add_argument("--timeout", type=float, default=600.0, help="per-request timeout (s)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate the two modes this many times (a shared machine's load drifts)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.ckpt) if args.ckpt else random_checkpoint(Path(tmp) / "export", args.preset, args.seed)
        cfg = json.loads((ckpt / "config.json").read_text())
        vocab = cfg["vocab_size"]
        context = cfg["max_position_embeddings"]
        reqs = workload(args.clients * args.requests, context, vocab, args.seed, args.max_prompt, args.max_out)
        extra = ["--device", args.device] if args.device else []
        print(f"bench_server: {len(reqs)} requests from {args.clients} clients, {args.max_batch} slots, "
              f"context {context}; prompt tokens {sum(len(r['prompt']) for r in reqs)}, "
              f"output tokens {sum(r['max_tokens'] for r in reqs)}", flush=True)
        runs = {"static": [], "continuous": []}
        for k in range(args.rounds):
            for mode in runs:
                proc, port = spawn_server(ckpt, "--model-name", "bench", "--max-batch", str(args.max_batch),
                                          "--batching", mode, *extra, timeout=300)
                try:
                    run(port, reqs[:args.max_batch], args.max_batch, args.timeout, f"{mode} warm-up")
                    runs[mode].append(run(port, reqs, args.clients, args.timeout, f"{mode} round {k + 1}"))
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
                r = runs[mode][-1]
                print(f"  round {k + 1} {mode:10s} {r['tokens'] / r['wall']:8.1f} tok/s  wall {r['wall']:7.2f} s",
                      flush=True)
        results = {mode: summary(rs) for mode, rs in runs.items()}
        for mode, r in results.items():
            print(f"  {mode:10s} {r['tokens_per_s']:8.1f} tok/s  wall {r['wall_s']:7.2f} s  latency p50 "
                  f"{r['latency_p50_s']:.2f} s  p95 {r['latency_p95_s']:.2f} s  max {r['latency_max_s']:.2f} s  "
                  f"errors {r['errors']}", flush=True)
    ratio = results["continuous"]["tokens_per_s"] / results["static"]["tokens_per_s"]
    print(f"bench_server: continuous / static throughput = {ratio:.2f}x", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "ratio": round(ratio, 3), **results}, indent=2))
    return results


if __name__ == "__main__":
    main()
