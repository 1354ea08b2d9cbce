"""
Bits per byte: the downstream-aligned metric that moves at small scale.

Greedy pass@1 is 0 for every small model, so it cannot rank data arms at toy scale. What does move
is how likely a checkpoint finds the benchmarks' own canonical solutions given their prompts:

    aligned bpb(benchmark) = sum over tasks of -log2 p(solution tokens | prompt tokens)
                             / sum over tasks of len(solution.encode("utf-8"))
    held-out bpb(language) = the same over the held-out (val) split of a token-shard manifest

Lower is better. Aligned bpb is the paper's "alignment with the downstream distribution" (Fig. 2)
measured on the model itself; held-out bpb is general ability on the corpus. The canonical solutions
were removed from the training data by prepare/decontaminate.py, so a low aligned bpb is alignment,
not memorisation.

    python -m eval.loss --ckpt R/p2/export --tasks humaneval+,mbpp+,bigcodebench --heldout D/p1/shards

Benchmarks (eval/tasks/): humaneval+, mbpp+, bigcodebench(-hard), and evoeval (its five categories
together; evoeval-<category> for one) when EvoEval's release files are on this machine. A benchmark
whose files are not here is not downloaded: it is listed under "missing" in the output with the
reason (where it was looked for, how to fetch it), and printed.
    python -m eval.loss --api-base http://127.0.0.1:8000/v1 --model p2 --tokenizer R/p2/export ...

Tokenization: prompt and solution are encoded separately and concatenated (context + continuation,
as lm-eval-harness does), so the bytes counted are exactly the solution's. A sequence longer than the
model's context is scored with a sliding window: every target token sees at least half a context.
Held-out: targets that are special tokens (<|endoftext|>, <file_sep>, ...) carry no bytes and are
left out of both sums. `--heldout-tokens` bounds the tokens scored per language; the bound is printed
and written to the output (nothing is capped silently). Through a server, the same token ids are sent
as a token-id prompt with echo=True, logprobs=0, max_tokens=0, and the returned prompt logprobs used.

Memory: one sequence window at a time (plus the model); held-out shards are memory-mapped.
"""
import argparse
import math
import sys

import numpy as np
from tqdm import tqdm

LN2 = math.log(2.0)
DEFAULT_TASKS = "humaneval+,mbpp+,bigcodebench,evoeval"


# -----------------------------------------------------------------------------
# what is scored

def solution_pairs(task: str, path=None) -> list[tuple[str, str, str]]:
    """(task_id, context, continuation) for every problem of a benchmark: the generation prompt and
    the canonical solution as a model would have to write it after that prompt."""
    from eval.execute import make_problems
    pairs = []
    for p in make_problems(task, path):
        prompt, canonical = p["prompt"], p["canonical"]
        cont = canonical[len(prompt):] if canonical.startswith(prompt) else canonical
        pairs.append((p["task_id"], prompt, cont))
    return pairs


# -----------------------------------------------------------------------------
# scoring with a local model

def windows(n: int, start: int, T: int) -> list[tuple[int, int, int]]:
    """(a, i, j) per window: inputs ids[a:j-1] predict targets ids[i:j]. Targets from `start` to n,
    each with up to T tokens of context and at least T // 2 once the sequence is longer than T
    (j <= i + T keeps a <= i - 1; a window that starts at 0 sees the whole prefix)."""
    if start < 1:
        raise ValueError("windows: the first token has no context (start must be >= 1)")
    out, i, stride = [], start, max(1, T // 2)
    while i < n:
        j = min(n, max(i + stride, T + 1))
        out.append((max(0, j - 1 - T), i, j))
        i = j
    return out


def local_scorer(model, T: int, batch_tokens: int = 8192):
    """score_many([(ids, start), ...]) -> [ln p(ids[t] | ids[:t]) for t >= start, ...] with a model.py
    Transformer. Windows of every sequence are batched by length; rows are right-padded, which a
    causal model's earlier positions never see."""
    import torch
    device = model.embed_tokens.weight.device

    @torch.no_grad()
    def score_many(items):
        jobs = [(k, a, i, j) for k, (ids, start) in enumerate(items) for a, i, j in windows(len(ids), start, T)]
        jobs.sort(key=lambda w: w[3] - w[1] - w[0])  # similar input lengths share a batch
        parts = {}
        b = 0
        bar = tqdm(total=len(jobs), desc="eval.loss", unit="window", leave=False)
        while b < len(jobs):
            L = jobs[b][3] - 1 - jobs[b][1]
            n = max(1, batch_tokens // max(L, 1))
            batch = jobs[b:b + n]
            L = max(j - 1 - a for _, a, _, j in batch)
            x = torch.zeros(len(batch), L, dtype=torch.long)
            for r, (k, a, i, j) in enumerate(batch):
                x[r, :j - 1 - a] = torch.tensor(items[k][0][a:j - 1])
            logits, _ = model(x.to(device))                       # (B, L, V)
            logp = torch.log_softmax(logits.float(), dim=-1)
            for r, (k, a, i, j) in enumerate(batch):
                tgt = torch.tensor(items[k][0][i:j], device=device)
                parts[(k, i)] = logp[r, torch.arange(i - a - 1, j - a - 1, device=device), tgt].double().cpu().numpy()
            b += len(batch)
            bar.update(len(batch))
        bar.close()
        out = []
        for k, (ids, start) in enumerate(items):
            got = [parts[(k, i)] for _, i, _ in windows(len(ids), start, T)]
            out.append(np.concatenate(got) if got else np.zeros(0))
        return out
    return score_many


def server_scorer(api_base: str, model_name: str):
    """Prompt logprobs from an OpenAI-compatible server: a token-id prompt, echo, max_tokens=0."""
    from client import Client
    cli = Client(api_base)

    def score_many(items):
        out = []
        for ids, start in tqdm(items, desc="eval.loss", unit="seq", leave=False):
            r = cli.completions(model=model_name, prompt=list(map(int, ids)), max_tokens=0, echo=True,
                                logprobs=0, temperature=0.0).data
            lp = r["choices"][0]["logprobs"]["token_logprobs"]
            if len(lp) != len(ids):
                raise RuntimeError(f"server returned {len(lp)} prompt logprobs for {len(ids)} tokens")
            out.append(np.array(lp[start:], dtype=np.float64))
        return out
    return score_many


# -----------------------------------------------------------------------------
# the two measurements

def aligned_bpb(score_many, enc, pairs) -> dict:
    """Bits and bytes summed over every (task_id, context, continuation) pair."""
    items, sizes = [], []
    for task_id, ctx, cont in pairs:
        c_ids = enc.encode(ctx, disallowed_special=()) or [enc.eot_token]  # an empty prompt still conditions
        s_ids = enc.encode(cont, disallowed_special=())
        items.append((c_ids + s_ids, len(c_ids)))
        sizes.append((len(s_ids), len(cont.encode("utf-8"))))
    bits = nbytes = ntok = 0.0
    per_task = {}
    for (task_id, _, _), lp, (nt, nb) in zip(pairs, score_many(items), sizes):
        b = float(-lp.sum() / LN2)
        bits, nbytes, ntok = bits + b, nbytes + nb, ntok + nt
        per_task[task_id] = round(b / max(nb, 1), 5)
    return {"bpb": bits / max(nbytes, 1), "bits": bits, "bytes": int(nbytes), "tokens": int(ntok),
            "n_tasks": len(pairs), "per_task": per_task}


def heldout_bpb(score_many, enc, manifest, max_tokens: int) -> dict:
    """Bits per byte of each language's val shards (the first max_tokens tokens of each language)."""
    special = set(enc.special_tokens_set) if hasattr(enc, "special_tokens_set") else set()
    special_ids = {enc.encode_single_token(s) for s in special}
    by_lang: dict[str, list] = {}
    for s in manifest["shards"]:
        if s.get("split") == "val":
            by_lang.setdefault(s["language"], []).append(s)
    out = {}
    for lang, shards in sorted(by_lang.items()):
        toks = np.concatenate([np.memmap(s["path"], dtype=np.uint16, mode="r") for s in shards])
        avail = len(toks)
        toks = toks[:max_tokens + 1].astype(np.int64).tolist()
        lp = score_many([(toks, 1)])[0]
        tgt = np.array(toks[1:])
        keep = ~np.isin(tgt, list(special_ids))
        nbytes = sum(len(enc.decode_single_token_bytes(t)) for t in tgt[keep].tolist())
        bits = float(-lp[keep].sum() / LN2)
        out[lang] = {"bpb": bits / max(nbytes, 1), "bits": bits, "bytes": nbytes, "tokens": int(keep.sum()),
                     "tokens_available": avail, "capped": avail > max_tokens + 1}
    if out:
        b, n = sum(v["bits"] for v in out.values()), sum(v["bytes"] for v in out.values())
        out["all"] = {"bpb": b / max(n, 1), "bits": b, "bytes": n, "tokens": sum(v["tokens"] for v in out.values())}
    return out


def evaluate(score_many, enc, tasks: list[str], heldout=None, heldout_tokens=20000, T=512, bench_path=None,
             limit: int = 0) -> dict:
    """The whole report for one checkpoint: {"aligned": {task: ...}, "heldout": {lang: ...}, "settings"}.
    limit > 0 scores only the first `limit` tasks of each benchmark; each such result says so
    ("subset": "first N of M") and is never the whole benchmark's figure."""
    from formats import read_manifest
    res = {"aligned": {}, "heldout": {}, "missing": {},
           "settings": {"tasks": tasks, "heldout": str(heldout) if heldout else None,
                        "heldout_tokens_per_language": heldout_tokens, "context": T, "limit": limit}}
    from eval.tasks import SOURCES, missing_data
    for t in tasks:
        # only what is on this machine is scored (never a download mid-run): an absent benchmark is
        # named, with where it was looked for and how to fetch it, in the output and on stderr
        try:
            absent = missing_data(t, bench_path)
            if absent:
                from formats import benchmark_dirs
                where = ", ".join(str(d) for d in benchmark_dirs(bench_path)) or "no benchmark directory"
                raise FileNotFoundError(f"not present here: {', '.join(SOURCES[n]['files'][0] for n in absent)} "
                                        f"(looked in {where}); fetch with `python -m eval.data {' '.join(absent)}` "
                                        f"or point $SNOWCODER_BENCHMARKS at a folder holding them")
            pairs = solution_pairs(t, bench_path)
        except (SystemExit, FileNotFoundError, ValueError) as e:  # e.g. EvoEval, whose files are not staged here
            res["missing"][t] = str(e).splitlines()[0][:500]
            print(f"eval.loss: {t}: skipped, {res['missing'][t]}", file=sys.stderr)
            continue
        n_all = len(pairs)
        if limit and limit < n_all:
            pairs = pairs[:limit]
        res["aligned"][t] = aligned_bpb(score_many, enc, pairs)
        print(f"eval.loss: {t}: {res['aligned'][t]['bpb']:.4f} bits/byte over {len(pairs)} tasks", flush=True)
        if len(pairs) < n_all:
            res["aligned"][t]["subset"] = f"first {len(pairs)} of {n_all}"
    if heldout:
        res["heldout"] = heldout_bpb(score_many, enc, read_manifest(str(heldout)), heldout_tokens)
    return res


def table(res: dict) -> str:
    rows = ["| set | bits/byte | tasks or tokens |", "|---|---|---|"]
    rows += [f"| {t} | {v['bpb']:.4f} | {v.get('subset', 'all')} {v['n_tasks']} tasks |" for t, v in res["aligned"].items()]
    rows += [f"| held-out {lang} | {v['bpb']:.4f} | {v['tokens']} tokens{' (capped)' if v.get('capped') else ''} |"
             for lang, v in res["heldout"].items()]
    rows += [f"| {t} | not measured | {why} |" for t, why in res.get("missing", {}).items()]
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="exported checkpoint dir (HF Llama layout + tokenizer)")
    src.add_argument("--api-base", help="an OpenAI-compatible server that returns prompt logprobs")
    ap.add_argument("--model", default=None, help="model name for --api-base")
    ap.add_argument("--tokenizer", default=None, help="tokenizer (file or export dir) for --api-base")
    ap.add_argument("--context", type=int, default=None, help="window for sliding scoring (default: the model's block_size)")
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma-separated benchmarks (default {DEFAULT_TASKS})")
    ap.add_argument("--benchmarks", default=None, help="benchmark data file or folder (default: formats.benchmark_dirs)")
    ap.add_argument("--heldout", default=None, help="token-shard dir (manifest.json) whose val split is scored")
    ap.add_argument("--heldout-tokens", type=int, default=20000, help="tokens scored per language (printed, recorded)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N tasks of each benchmark (labelled a subset)")
    ap.add_argument("--out", default=None, help="write the results JSON here")
    args = ap.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    if args.ckpt:
        from formats import load_tokenizer
        from model import Transformer
        enc = load_tokenizer(args.ckpt)
        model = Transformer.from_pretrained(args.ckpt, backend="torch").eval()
        T = args.context or model.config.block_size
        score = local_scorer(model, T)
    else:
        if not (args.model and args.tokenizer):
            ap.error("--api-base needs --model and --tokenizer")
        from formats import load_tokenizer
        enc, T = load_tokenizer(args.tokenizer), args.context or 10 ** 9
        score = server_scorer(args.api_base, args.model)
    if args.heldout:
        print(f"eval.loss: held-out tokens per language capped at {args.heldout_tokens}")
    if args.limit:
        print(f"eval.loss: only the first {args.limit} tasks of each benchmark (a subset, labelled as such)")
    res = evaluate(score, enc, tasks, args.heldout, args.heldout_tokens, T, args.benchmarks, args.limit)
    res["settings"]["ckpt"] = args.ckpt or args.api_base
    print("\n" + table(res))
    if args.out:
        from formats import write_json
        write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
