"""
Throughput of every phase-1 step on this machine's own Python code, with baselines measured in
the same run.

    python -m prepare.bench                 # ~50 MB of stdlib + site-packages Python
    python -m prepare.bench --mb 10 --vocab-size 16000
    python -m prepare.bench --scale         # the array at 1x and 4x: same output, flat memory per task
    python -m prepare.bench --decontam      # decontamination false positives on site-packages

Prints MB/s per stage (wall clock, all local cores) and two ratios against named baselines:
  tokenize+pack   prepare.pack end to end (read documents, tokenize, assemble StarCoder2
                  sequences, write uint16 shards) vs tiktoken's raw encode_ordinary_batch of the
                  same texts, already in memory, same tokenizer and thread count.  Target >= 0.8x.
  tokenizer       prepare.tokenizer.train_bpe vs the Hugging Face `tokenizers` BPE trainer with the
                  same split pattern, byte-level alphabet, special tokens and vocabulary size; then
                  bytes/token of both on held-out code.  Target: time <= 2x, bytes/token within 1%.
`tokenizers` is imported here only (pip install tokenizers); it is not a dependency of the project.

--scale: a generated corpus (this machine's Python files as The Stack-style JSONL, one file much
larger than the others, with planted exact copies, edited near copies and benchmark leaks: a
HumanEval prompt + solution inside a module, a GSM8K question as # comments, a short MBPP
solution) at 1x and 4x, each run through prepare.phase1 as a simulated Slurm array (one process
per --task K, the array resubmitted until the manifest appears) and as one task. Prints, per size
and task count, the kept documents, train + val tokens, the planted items removed, and the peak
RSS of the largest task process; checks that the array and the one-task run keep the same
documents and tokens.
--decontam: the share of site-packages Python files (a clean corpus: nothing in it copies a
benchmark on purpose) the matcher flags, and which benchmark fields they hit.
"""
import argparse
import os
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

from prepare import dedup, decontaminate, filter as filt, ingest, pack
from formats import read_docs
from formats import MANIFEST_NAME, SPECIAL_TOKENS, SPLIT_PATTERN, TOKENIZER_FILE, load_tokenizer, read_manifest, save_tokenizer
from prepare.tokenizer import train_bpe


def python_files(mb: float, skip: int = 0):
    """Python files of the stdlib then site-packages, in a stable order, `mb` MB of them after
    skipping the first `skip` bytes (a held-out slice)."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    out, total, seen = [], 0, set()
    for r in roots:
        for f in sorted(r.rglob("*.py")):
            rf = f.resolve()
            if rf in seen or not f.is_file():
                continue
            seen.add(rf)
            n = f.stat().st_size
            if skip > 0:
                skip -= n
                continue
            out.append(f)
            total += n
            if total >= mb * 1e6:
                return out
    return out


def timed(fn):
    t0 = time.time()
    r = fn()
    return r, time.time() - t0


# -----------------------------------------------------------------------------
# --scale

def make_corpus(out: Path, n_files: int, bench_dir: Path, seed: int = 0) -> dict:
    """n_files distinct Python files as 4 JSONL inputs (one holding 70% of the records), plus
    planted copies and leaks. Returns what was planted, by id."""
    import gzip
    import json
    import random
    rng = random.Random(seed)
    files = python_files(1e9)
    files = [f for f in files if 500 < f.stat().st_size < 60_000]
    rng.shuffle(files)
    texts = []
    for f in files:
        try:
            texts.append((f, f.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
        if len(texts) >= n_files:
            break
    recs = [{"id": f"f{i}", "content": t, "lang": "python", "max_stars_repo_name": f"repo{i // 12}",
             "max_stars_repo_path": f.name} for i, (f, t) in enumerate(texts)]
    planted = {"exact": [], "near": [], "leak": []}
    for i in rng.sample(range(len(recs)), len(recs) // 20):
        recs.append(dict(recs[i], id=f"exact{i}", max_stars_repo_name=f"fork{i}"))
        planted["exact"].append(f"exact{i}")
    for i in rng.sample(range(len(recs) - len(planted["exact"])), len(recs) // 20):
        lines = recs[i]["content"].split("\n")
        for _ in range(max(1, len(lines) // 50)):
            lines.insert(rng.randrange(len(lines) + 1), "# local change " + str(rng.random()))
        recs.append(dict(recs[i], id=f"near{i}", content="\n".join(lines), max_stars_repo_name=f"fork{i}"))
        planted["near"].append(f"near{i}")
    he = [json.loads(l) for l in gzip.open(bench_dir / "HumanEval.jsonl.gz", "rt")]
    gsm = [json.loads(l) for l in gzip.open(bench_dir / "gsm8k-test.jsonl.gz", "rt")]
    for j in range(max(2, n_files // 400)):
        t = he[j]
        recs.append({"id": f"leak-he{j}", "content": "import os\n\n" + t["prompt"] + t["canonical_solution"] + "\n",
                     "lang": "python", "max_stars_repo_name": f"leaky{j}", "max_stars_repo_path": "he.py"})
        q = gsm[j]["question"].split()
        recs.append({"id": f"leak-gsm{j}", "lang": "python", "max_stars_repo_name": f"leaky{j}", "max_stars_repo_path": "g.py",
                     "content": "".join("# " + " ".join(q[i:i + 9]) + "\n" for i in range(0, len(q), 9)) + "x = 1\n"})
        planted["leak"] += [f"leak-he{j}", f"leak-gsm{j}"]
    rng.shuffle(recs)
    out.mkdir(parents=True, exist_ok=True)
    cut = int(len(recs) * 0.7)
    chunks = [recs[:cut]] + [recs[cut:][i::3] for i in range(3)]
    for i, c in enumerate(chunks):
        (out / f"stack{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in c))
    return planted


def run_measured(cmd, env) -> tuple[int, float]:
    """Run a command; (exit code, its peak RSS in MB) from wait4's rusage of that process alone."""
    import subprocess
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"bench: {' '.join(map(str, cmd))} failed:\n{err.decode()[-2000:]}")
    return p.returncode, ru.ru_maxrss / 1024


def scale_run(src: Path, out: Path, tok: Path, bench: Path, n_tasks: int, env) -> dict:
    """prepare.phase1 as a Slurm array would run it: every task K of n_tasks as its own process,
    the whole array resubmitted until the manifest exists."""
    import json
    import sys
    base = [sys.executable, "-m", "prepare.phase1", "--out", str(out), "--input", *map(str, sorted(src.glob("*.jsonl"))),
            "--tokenizer", str(tok), "--benchmarks", str(bench), "--tasks", str(n_tasks), "--workers", "1"]
    peak, passes, t0 = 0.0, 0, time.time()
    while not (out / "shards" / MANIFEST_NAME).exists():
        passes += 1
        if passes > 20:
            raise SystemExit(f"bench: the array did not finish in 20 passes ({out})")
        for k in range(n_tasks):
            _, rss = run_measured(base + (["--task", str(k)] if n_tasks > 1 else []), env)
            peak = max(peak, rss)
    man = read_manifest(out / "shards")
    ids = sorted(d["id"] for d in read_docs(out / "decontaminate"))
    dedup_dropped = json.loads((out / "dedup" / "stats.json").read_text())["dropped"]
    return {"peak_mb": peak, "dedup": dedup_dropped, "passes": passes, "seconds": time.time() - t0, "ids": ids,
            "tokens": man["tokens_train"] + man["tokens_val"], "mb": sum(f.stat().st_size for f in src.glob("*.jsonl")) / 1e6}


def scale_bench(a):
    import sys
    bench_src = Path(decontaminate.default_bench_dir())
    work = Path(a.keep or tempfile.mkdtemp(prefix="snowcoder-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = work / "benchmarks"                 # the benchmarks the corpus leaks (a small index per process)
    bench.mkdir(exist_ok=True)
    for name in ("HumanEval.jsonl.gz", "mbpp.jsonl.gz", "gsm8k-test.jsonl.gz"):
        if not (bench / name).exists():
            (bench / name).symlink_to(bench_src / name)
    tok = work / TOKENIZER_FILE
    if not tok.exists():
        save_tokenizer(train_bpe([f.read_text(encoding="utf-8", errors="replace") for f in python_files(2)], 2048), tok)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    rows, ok = [], True
    for size in a.sizes:
        src = work / f"corpus-{size}x"
        planted = make_corpus(src, a.files * size, bench_src)
        runs = {}
        for n in (1, a.tasks_per_x * size):
            out = work / f"run-{size}x-{n}"
            shutil.rmtree(out, ignore_errors=True)
            runs[n] = r = scale_run(src, out, tok, bench, n, env)
            kept = set(r["ids"])
            suffix = {x.split(":", 1)[1] for x in kept}
            dd = r["dedup"]
            gone = {"exact": dd.get("exact_duplicate", 0), "near": dd.get("near_duplicate", 0),
                    "leak": sum(i not in suffix for i in planted["leak"])}
            rows.append((f"{size}x", n, r["mb"], len(r["ids"]), r["tokens"], gone, planted, r["peak_mb"], r["passes"], r["seconds"]))
            print(f"scale: {size}x ({r['mb']:.1f} MB) with {n} task(s): {len(r['ids']):,} docs kept, {r['tokens']:,} tokens, "
                  f"peak RSS of the largest task {r['peak_mb']:.0f} MB, {r['passes']} array pass(es), {r['seconds']:.0f} s",
                  flush=True)
        n_arr = a.tasks_per_x * size
        same = runs[1]["ids"] == runs[n_arr]["ids"] and runs[1]["tokens"] == runs[n_arr]["tokens"]
        ok &= same
        print(f"scale: {size}x: array of {n_arr} == one task: {'yes' if same else 'NO'} "
              f"(kept documents and tokens)", flush=True)
    print("\nexact / near: dropped by dedup / planted (the files themselves hold natural duplicates too); "
          "leaks: planted leaks removed / planted")
    print(f"{'size':>5s} {'tasks':>5s} {'MB':>6s} {'kept':>7s} {'tokens':>10s} {'exact':>7s} {'near':>7s} {'leaks':>7s} "
          f"{'peak RSS MB':>11s} {'passes':>6s} {'s':>5s}")
    for size, n, mb, kept, tokens, gone, planted, peak, passes, sec in rows:
        print(f"{size:>5s} {n:5d} {mb:6.1f} {kept:7,d} {tokens:10,d} "
              + " ".join(f"{gone[k]:>3d}/{len(planted[k]):<3d}" for k in ("exact", "near", "leak"))
              + f" {peak:11.0f} {passes:6d} {sec:5.0f}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    if not ok:
        raise SystemExit("scale: the array and the one-task run differ")


def decontam_bench(a):
    from collections import Counter
    m = decontaminate.get_matcher()
    files = sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py"))
    n, flagged = 0, []
    t0 = time.time()
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        n += 1
        hits = m.match(text)
        if hits:
            flagged.append((f, hits[0]))
    print(f"decontam: {len(flagged)} of {n:,} site-packages files flagged ({100 * len(flagged) / max(1, n):.3f}%) "
          f"in {time.time() - t0:.0f} s; by benchmark field: "
          + ", ".join(f"{b}/{fl} {c}" for (b, fl), c in Counter((h["benchmark"], h["field"]) for _, h in flagged).most_common()))
    for f, h in flagged:
        print(f"  {f}: {h['benchmark']} {h['task_id']} ({h['field']})")


def main(argv=None):
    ap = argparse.ArgumentParser(description="MB/s per phase-1 stage, with baselines measured in the same run.")
    ap.add_argument("--mb", type=float, default=50.0, help="MB of Python code to process")
    ap.add_argument("--vocab-size", type=int, default=64000, help="tokenizer size for both trainers")
    ap.add_argument("--tasks", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", default=None, help="work in this directory and keep it (default: a temp dir)")
    ap.add_argument("--scale", action="store_true", help="the array at 1x and 4x (see the module doc)")
    ap.add_argument("--files", type=int, default=500, help="--scale: distinct files at 1x")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4], help="--scale: corpus multiples")
    ap.add_argument("--tasks-per-x", type=int, default=2, help="--scale: array tasks per 1x of corpus")
    ap.add_argument("--decontam", action="store_true", help="decontamination false positives on site-packages")
    a = ap.parse_args(argv)
    if a.scale:
        return scale_bench(a)
    if a.decontam:
        return decontam_bench(a)
    work = Path(a.keep or tempfile.mkdtemp(prefix="snowcoder-bench-"))
    if work.exists() and a.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    print(f"bench: {a.mb:.0f} MB of Python, {cpus} cores, {a.tasks} tasks, vocab {a.vocab_size}, work dir {work}")
    rows = []

    # stage inputs: a directory of copies (symlinks) so ingest sees one tree
    src = work / "src"
    for i, f in enumerate(python_files(a.mb)):
        d = src / f"r{i // 20:04d}"                       # 20 files per "repository"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:06d}_{f.name}").symlink_to(f)
    common = dict(tasks=a.tasks, workers=a.tasks)
    st, dt = timed(lambda: ingest.run([src], work / "ingest", **common))
    mb_in = st["bytes_in"] / 1e6
    rows.append(("ingest", mb_in, dt))
    st, dt = timed(lambda: filt.run(work / "ingest", work / "filter", **common))
    rows.append(("filter", st["bytes_in"] / 1e6, dt))
    st, dt = timed(lambda: dedup.run(work / "filter", work / "dedup", **common))
    rows.append(("dedup (exact + MinHash LSH)", st["bytes_in"] / 1e6, dt))
    st, dt = timed(lambda: decontaminate.run(work / "dedup", work / "decontaminate", **common))
    rows.append(("decontaminate (incl. index build)", st["bytes_in"] / 1e6, dt))
    docs_dir = work / "decontaminate"
    texts = [d["content"] for d in read_docs(docs_dir)]
    mb_docs = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6

    # --- tokenizer training: ours vs Hugging Face tokenizers, same data and vocabulary
    ranks, t_ours = timed(lambda: train_bpe(texts, a.vocab_size, workers=cpus))
    tok = work / TOKENIZER_FILE
    save_tokenizer(ranks, tok)
    enc = load_tokenizer(tok)
    rows.append(("tokenizer training (ours)", mb_docs, t_ours))
    hf = None
    try:
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
        hf_tok = Tokenizer(models.BPE())
        hf_tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        hf_tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=a.vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        _, t_hf = timed(lambda: hf_tok.train_from_iterator(texts, trainer=trainer, length=len(texts)))
        rows.append(("tokenizer training (HF tokenizers)", mb_docs, t_hf))
        hf = hf_tok
    except ImportError:
        print("bench: `tokenizers` not installed (pip install tokenizers): HF baseline skipped")

    # --- tokenize + pack vs raw tiktoken
    # alternate the two and keep each one's best of 2 (a shared machine's load comes and goes)
    cfg = pack.PackConfig(threads=cpus)
    t_pack = t_raw = float("inf")
    for rep in range(2):
        _, dt = timed(lambda: enc.encode_ordinary_batch(texts, num_threads=cpus))
        t_raw = min(t_raw, dt)
        shutil.rmtree(work / "shards", ignore_errors=True)
        _, dt = timed(lambda: pack.run(docs_dir, tok, work / "shards", tasks=1, workers=1, cfg=cfg))
        t_pack = min(t_pack, dt)
    rows.append(("tokenize+pack (read docs, encode, write shards)", mb_docs, t_pack))
    rows.append(("raw tiktoken encode_ordinary_batch (baseline)", mb_docs, t_raw))

    print(f"\n{'stage':52s} {'MB':>7s} {'s':>7s} {'MB/s':>7s}")
    for name, mb, dt in rows:
        print(f"{name:52s} {mb:7.1f} {dt:7.2f} {mb / max(dt, 1e-9):7.2f}")
    print(f"\ntokenize+pack vs raw tiktoken: {t_raw / t_pack:.2f}x of raw throughput (target >= 0.8x)")

    # held-out code: Python files after the benchmark's slice
    held = [f.read_text(encoding="utf-8", errors="replace") for f in python_files(5, skip=int(a.mb * 1e6) + 1)]
    nb = sum(len(t.encode("utf-8")) for t in held)
    ours_bpt = nb / sum(map(len, enc.encode_ordinary_batch(held, num_threads=cpus)))
    print(f"tokenizer: ours {enc.n_vocab} entries, {ours_bpt:.3f} bytes/token on {nb / 1e6:.1f} MB held-out code")
    if hf is not None:
        hf_bpt = nb / sum(len(e.ids) for e in hf.encode_batch(held))
        print(f"tokenizer: HF   {hf.get_vocab_size()} entries, {hf_bpt:.3f} bytes/token")
        print(f"tokenizer training: {t_ours / t_hf:.2f}x HF's time (target <= 2x); "
              f"bytes/token {100 * (ours_bpt / hf_bpt - 1):+.2f}% vs HF (target within 1%)")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
