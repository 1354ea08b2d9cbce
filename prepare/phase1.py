"""
Phase-1 data, end to end: raw code -> cleaned documents -> tokenizer -> uint16 shards.

    python -m prepare.phase1 --out D/p1                               # this machine's own code
    python -m prepare.phase1 --out D/p1 --input /data/the-stack/*.parquet --tokenizer tok.tiktoken --tasks 64

Steps, each in its own directory under --out (and each runnable alone, see its module):
    ingest         D/p1/ingest          prepare/ingest.py      files / JSONL / Parquet -> documents
    filter         D/p1/filter          prepare/filter.py      StarCoder/BigCode heuristics
    dedup          D/p1/dedup           prepare/dedup.py       exact + MinHash-LSH near dedup
    decontaminate  D/p1/decontaminate   prepare/decontaminate.py   benchmark n-gram matching
    tokenizer      D/p1/tokenizer_sample    a deterministic uniform sample of the documents
                   D/p1/tokenizer.tiktoken  prepare/tokenizer.py  (only without --tokenizer)
    pack           D/p1/shards          prepare/pack.py        manifest.json + *.bin
The final documents (what phase 2 scores) are D/p1/decontaminate, named in the manifest's
"documents_dir". Every step resumes: a rerun skips finished tasks and steps. With --task K (or a
Slurm array) each process does its share of each step and stops at the first step still waiting
for other tasks; rerun the array (or once without --task) to go on.

The tokenizer's training text is a sample of all of D/p1/decontaminate, drawn by every task from
its own share: a document is in it when a hash of (seed, id) falls below rate = --tokenizer-mb /
the corpus' MB, so the sample is uniform over tasks, files and languages, about --tokenizer-mb
large, and the same whatever the task count (tokenizer_sample/stats.json has MB per language).
"""
import argparse
import json
import os
import time
from pathlib import Path

from prepare import dedup, decontaminate, filter as filt, ingest, pack
from formats import part_name, write_docs
from prepare.pack import stable_u64
from prepare.pipeline import add_task_args, run_tasks, task_docs
from formats import TOKENIZER_FILE, load_tokenizer, save_tokenizer
from prepare.tokenizer import iter_texts, train_bpe


def sample_task(k, n_tasks, docs_dir, out_dir, rate, seed):
    stats = {"docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0, "bytes_per_language": {}}

    def kept():
        for d in task_docs(docs_dir, k, n_tasks):
            n = len(d["content"].encode("utf-8", "surrogatepass"))
            stats["docs_in"] += 1
            stats["bytes_in"] += n
            if stable_u64(seed, "tokenizer", d["id"]) / 2**64 < rate:
                stats["docs_out"] += 1
                stats["bytes_out"] += n
                lang = d["language"]
                stats["bytes_per_language"][lang] = stats["bytes_per_language"].get(lang, 0) + n
                yield d

    write_docs(Path(out_dir) / part_name(k), kept())
    return stats


def tokenizer_sample(docs_dir, out_dir, mb: float, seed: int, **common):
    """The tokenizer's training documents: each task keeps its share's documents whose hash falls
    below mb / corpus MB (the corpus size from the step's merged stats)."""
    total = json.loads((Path(docs_dir) / "stats.json").read_text())["bytes_out"]
    rate = min(1.0, mb * 1e6 / max(1, total))
    return run_tasks(out_dir, common["tasks"], sample_task, args=(str(docs_dir), str(out_dir), rate, seed),
                     task=common["task"], workers=common["workers"], name="tokenizer_sample",
                     settings=dict(input=str(Path(docs_dir).resolve()), mb=mb, seed=seed, rate=rate))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the whole phase-1 data pipeline (ingest, filter, dedup, "
                                             "decontaminate, tokenizer, pack).")
    ap.add_argument("--out", required=True, help="output directory D (steps go to D/<step>)")
    ap.add_argument("--input", nargs="*", default=[], help="source dirs, .jsonl(.gz/.zst), .parquet (default: this machine's code)")
    ap.add_argument("--tokenizer", default=None, help="existing tiktoken rank file; default: train one into D/tokenizer.tiktoken")
    ap.add_argument("--vocab-size", type=int, default=64000, help="tokenizer entries incl. specials (paper: 64000)")
    ap.add_argument("--tokenizer-mb", type=float, default=500.0,
                    help="train the tokenizer on a uniform sample of about this many MB of the corpus")
    ap.add_argument("--max-mb", type=float, default=None, help="machine mode: read at most this many MB of code")
    ap.add_argument("--repo-level", type=int, default=1, help="directory depth naming a repository (directory inputs)")
    ap.add_argument("--benchmarks", default=None, help="benchmark dir for decontamination (default: $SNOWCODER_BENCHMARKS or ../shared/benchmarks)")
    ap.add_argument("--val-fraction", type=float, default=0.01, help="share of repositories per language held out")
    ap.add_argument("--seed", type=int, default=1337)
    add_task_args(ap)
    a = ap.parse_args(argv)
    out = Path(a.out)
    t0 = time.time()
    common = dict(tasks=a.tasks, task=a.task, workers=a.workers)

    def step(stats):
        if stats is None:      # other tasks of this step are still pending (--task / Slurm)
            raise SystemExit(0)

    step(ingest.run(a.input, out / "ingest", cfg=ingest.IngestConfig(repo_level=a.repo_level, max_mb=a.max_mb), **common))
    step(filt.run(out / "ingest", out / "filter", **common))
    step(dedup.run(out / "filter", out / "dedup", **common))
    step(decontaminate.run(out / "dedup", out / "decontaminate", bench_dir=a.benchmarks, **common))
    docs_dir = out / "decontaminate"

    tok = Path(a.tokenizer) if a.tokenizer else out / TOKENIZER_FILE
    if a.tokenizer is None and not tok.exists():
        sample = tokenizer_sample(docs_dir, out / "tokenizer_sample", a.tokenizer_mb, a.seed, **common)
        step(sample)
        me = a.task if a.task is not None else os.environ.get("SLURM_ARRAY_TASK_ID")
        if me is not None:
            # one process trains it (task 0); the others pick the file up on their next run
            if int(me) != 0:
                print(f"phase1: the tokenizer is trained by task 0; rerun when {tok} exists")
                raise SystemExit(0)
        print(f"tokenizer: training {a.vocab_size} entries on a {sample['bytes_out'] / 1e6:.1f} MB sample of "
              f"{docs_dir} ({sample['docs_out']:,} documents; MB per language: "
              + ", ".join(f"{l} {n / 1e6:.1f}" for l, n in sample["bytes_per_language"].items()) + ")", flush=True)
        ranks = train_bpe(iter_texts([out / "tokenizer_sample"]), a.vocab_size,
                          workers=a.workers or os.cpu_count() or 1, verbose=True)
        save_tokenizer(ranks, tok)
    enc = load_tokenizer(tok)
    print(f"tokenizer: {tok} ({enc.n_vocab} entries)", flush=True)

    man = pack.run(docs_dir, tok, out / "shards", cfg=pack.PackConfig(val_fraction=a.val_fraction, seed=a.seed), **common)
    step(man)
    print(f"phase1: done in {time.time() - t0:.0f}s -> {out / 'shards' / 'manifest.json'} "
          f"({man['tokens_train']:,} train tokens, {man['documents']:,} documents from {man['documents_dir']})")


if __name__ == "__main__":
    main()
