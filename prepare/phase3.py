"""
Phase-3 data: the accepted synthetic files mixed with phase-2 data up to a token budget, with
Python at about half of it (the paper: ~2B synthetic tokens in a 5B-token phase, Python raised to
~50%).

    python -m prepare.phase3 --synthetic D/p3/synthetic.jsonl --phase2 D/p2 --tokenizer TOK \\
        --budget-tokens N --out D/p3 [--python-share 0.5] [--tasks 8 [--task K]]

--synthetic is synthesize.py's output JSONL (its accepted files are read from the documents dir
beside it, D/p3/synthetic/, which must be complete: all its tasks done) or any documents dir /
part file. --phase2 is prepare/phase2's output dir; its documents (DIR/selected, with "score") are
repacked here, so phase 3 can choose how many of them, per language, it needs.

How the budget is filled (train split; val is held out first and not counted):
  Python   budget * python_share: synthetic Python files first, then phase-2 Python repositories,
           repeated in further passes if phase 2 is short;
  others   the rest: synthetic non-Python files (languages in name order), then phase-2's other
           languages, each given its share of phase-2's non-Python tokens (phase 2 kept phase 1's
           language mix); a language short of its share (max_passes) hands the rest to the next.
The train tokens equal the budget and the Python share is met to the token, give or take one
token per task and language (unless a side has no data at all: then the other side fills the
budget, with a warning).

Streaming, in stages split into tasks like prepare/pack.py (prepare/pipeline.py's run_tasks:
--tasks/--task/$SLURM_ARRAY_TASK_ID, done markers, a settings check; an array run is rerun once per
stage, as phase 2):
  1. route  pack.py's route of the phase-2 documents into buckets by (language, repository), so a
            repository lives in one task. Holds: pack's flush buffer.
  2. count  task k packs its synthetic files (part files k, k+N, ...; a synthetic file is a
            repository of one file) and its phase-2 buckets into sequences (prepare/pack.py's
            StarCoder2 format, metadata half the time), written once to _work/count/seq-K.bin with
            an index (source, language, repository, ids, offset, tokens, best score), and a small
            counts-K.json: tokens per (source, language), those of the seeded val repositories and
            the 10 smallest val hashes (pack.py's "at least one val repository" rule).
            Holds: one bucket's documents (or 64 synthetic files) and their tokens.
  3. plan   from the N small counts files alone, the same in every task: the val repositories,
            each (source, language)'s target, and each task's quota of it, in proportion to the
            train tokens the task holds (largest remainder, so quotas sum to the target).
  4. write  task k fills its quotas from its own sequences, best-scored repository first (ties by a
            seeded hash), repeating in passes when short (synthetic files once, phase 2 up to
            max_passes), the last one cut to land on the quota (it still ends with <|endoftext|>);
            val sequences once each. Holds: the index rows of one (source, language) of its share
            (ids and offsets, no text; the tokens are read from a memmap) and the plan.
Nothing holds the corpus; the largest per-task item is the index of one language of its share.
A repository's sequence does not depend on the task count; which task cuts it, and where, does.

Shards and manifest as README "Data formats": DIR/shards-synthetic/*.bin (source "synthetic"),
DIR/shards-phase2/*.bin (source "phase2"), DIR/manifest.json (paths relative to DIR),
DIR/sequences-KKKKK.jsonl.gz (what each sequence of task K holds, its pass and whether it was cut).
The shard dirs are prefixed so that synthesize.py's accepted-files folder (DIR/synthetic/ when its
output is DIR/synthetic.jsonl) is never overwritten. _work/ keeps the stages' files; a rerun with
the same settings resumes, other settings are refused (delete DIR/_work).
"""
import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from formats import is_docs_path, load_tokenizer, manifest_totals, read_docs, write_docs, write_json, write_manifest
from prepare import pack
from prepare.pack import PackConfig, ShardWriter, VAL_KEEP, code_version, sequence_segments, stable_u64, val_hash
from prepare.pipeline import add_task_args, require_done, run_tasks, task_docs

SOURCES = ("synthetic", "phase2")


@dataclass
class Phase3Config:
    budget_tokens: int = 5_000_000_000  # train tokens of phase 3 (the paper: 5B)
    python_share: float = 0.5           # of the budget
    val_fraction: float = 0.01          # of each source's repositories (a synthetic file is one)
    metadata_prob: float = 0.5          # as prepare/pack.py
    seed: int = 1337
    max_passes: int = 64                # over phase-2 data, when it is smaller than its share


def synthetic_docs_path(path) -> Path:
    """synthesize.py's raw JSONL -> the dir of its accepted files; a documents path stays as it is."""
    path = Path(path)
    if path.suffix == ".jsonl" and not (path.is_file() and _looks_like_docs(path)):
        d = path.with_suffix("")
        if not (d / "part-00000.jsonl.gz").is_file():
            raise SystemExit(f"phase3: no accepted synthetic files at {d}/part-00000.jsonl.gz; run "
                             f"`python synthesize.py --out {path} --post-only` first")
        require_done(d, "phase3: synthetic files")
        return d
    if not is_docs_path(path):
        raise SystemExit(f"phase3: --synthetic {path} is neither synthesize.py's output nor a documents dir")
    return path


def _looks_like_docs(path: Path) -> bool:
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        return "content" in json.loads(first)
    except ValueError:
        return False


def phase2_docs_path(path) -> Path:
    path = Path(path)
    for p in (path / "selected", path):
        if p.is_dir() and any(p.glob("part-*.jsonl.gz")):
            require_done(p, "phase3: phase-2 documents")
            return p
    raise SystemExit(f"phase3: no phase-2 documents in {path}/selected (part-*.jsonl.gz)")


def pack_config(cfg: Phase3Config, source: str) -> PackConfig:
    return PackConfig(metadata_prob=cfg.metadata_prob, val_fraction=cfg.val_fraction, seed=cfg.seed, source=source)


def special_ids(enc, tok_path) -> dict:
    if enc.n_vocab > 65536:
        raise SystemExit(f"phase3: {tok_path}: {enc.n_vocab} tokens do not fit uint16 shards")
    return {t: enc.encode_single_token(t) for t in ("<|endoftext|>", "<repo_name>", "<file_sep>")}


# -----------------------------------------------------------------------------
# stage 2: count (pack every repository of the task's share once, to a work file)

def repo_groups(syn_path, route_dir, k, n_tasks, cfg):
    """Yield (source, lang, repo, docs, score) for task k's share: its synthetic part files (one file
    per repository) and its phase-2 buckets, one bucket at a time."""
    for d in task_docs(syn_path, k, n_tasks):
        yield "synthetic", d.get("language") or "unknown", f"synthetic/{d['id']}", [d], 0.0
    pcfg = pack_config(cfg, "phase2")
    mine, _ = pack.plan(route_dir, n_tasks, pcfg)
    for _, docs in pack.bucket_docs(route_dir, n_tasks, mine[k]):
        groups = {}
        for d in docs:
            groups.setdefault((pack.group_language(pcfg, d), d.get("repo") or ""), []).append(d)
        for (lang, repo) in sorted(groups):
            ds = groups[(lang, repo)]
            yield "phase2", lang, repo, ds, max(float(d.get("score", 0.0) or 0.0) for d in ds)


def count_task(k, n_tasks, syn_path, route_dir, tok_path, work, cfg: Phase3Config):
    enc = load_tokenizer(tok_path)
    sp = special_ids(enc, tok_path)
    work = Path(work)
    counts = {}      # "source|lang" -> tokens, val_tokens, repos, docs, smallest [[hash, repo, tokens]]
    bin_path = work / f"seq-{k:05d}.bin"
    f = open(str(bin_path) + ".tmp", "wb")
    offset = 0

    def packed(batch):
        nonlocal offset
        seqs = [(src, lang, repo, score) + sequence_segments(lang, repo, docs, pack_config(cfg, src))
                for src, lang, repo, docs, score in batch]
        ids = enc.encode_ordinary_batch([s for *_, segs, _ in seqs for s in segs])
        j = 0
        for src, lang, repo, score, meta, segs, docs in seqs:
            toks = []
            for i, _ in enumerate(segs):
                toks.append(sp["<repo_name>"] if meta and i == 0 else sp["<file_sep>"])
                toks += ids[j]
                j += 1
            toks.append(sp["<|endoftext|>"])
            arr = np.array(toks, dtype="<u2")
            arr.tofile(f)
            c = counts.setdefault(f"{src}|{lang}", {"tokens": 0, "val_tokens": 0, "repos": 0, "docs": 0, "smallest": []})
            h = val_hash(pack_config(cfg, src), lang, repo)
            c["tokens"] += len(arr)
            c["val_tokens"] += len(arr) if h < cfg.val_fraction else 0
            c["repos"] += 1
            c["docs"] += len(docs)
            c["smallest"] = sorted(c["smallest"] + [[h, repo, len(arr)]])[:VAL_KEEP]
            yield {"source": src, "language": lang, "repo": repo, "metadata": meta, "ids": [d["id"] for d in docs],
                   "offset": offset, "tokens": len(arr), "score": score}
            offset += len(arr)

    def rows():
        batch, chars = [], 0
        for g in repo_groups(syn_path, work.parent / "route", k, n_tasks, cfg):
            batch.append(g)
            chars += sum(len(d["content"]) for d in g[3])
            if len(batch) >= 64 or chars > 8_000_000:
                yield from packed(batch)
                batch, chars = [], 0
        yield from packed(batch)

    n = write_docs(work / f"index-{k:05d}.jsonl.gz", rows())
    f.close()
    os.replace(str(bin_path) + ".tmp", bin_path)
    write_json(work / f"counts-{k:05d}.json", counts)
    docs = sum(c["docs"] for c in counts.values())
    return {"sequences": n, "tokens": offset, "docs_in": docs, "docs_out": docs}


# -----------------------------------------------------------------------------
# stage 3: the plan, from the counts files alone (every task computes the same one)

def split_largest_remainder(total: int, weights: dict) -> dict:
    """{key: int} summing to total, in proportion to weights (largest remainder, ties by key)."""
    w = sum(weights.values())
    if total <= 0 or w <= 0:
        return {k: 0 for k in weights}
    share = {k: total * v / w for k, v in weights.items()}
    take = {k: int(v) for k, v in share.items()}
    for k in sorted(share, key=lambda k: (-(share[k] - take[k]), k))[:total - sum(take.values())]:
        take[k] += 1
    return take


def make_plan(work, n_tasks, cfg: Phase3Config) -> dict:
    """{"val": {key: forced val repo}, "targets": {key: tokens}, "quota": {key: [tokens per task]},
    "avail": {key: train tokens}}, keys "source|lang"."""
    counts = [json.loads((Path(work) / f"counts-{k:05d}.json").read_text()) for k in range(n_tasks)]
    keys = sorted({key for c in counts for key in c})
    forced, train = {}, {}
    for key in keys:
        smallest = sorted((h, r, n, k) for k, c in enumerate(counts) if key in c for h, r, n in c[key]["smallest"])
        repos = sum(c[key]["repos"] for c in counts if key in c)
        per_task = [c[key]["tokens"] - c[key]["val_tokens"] if key in c else 0 for c in counts]
        if smallest and smallest[0][0] >= cfg.val_fraction and repos >= VAL_KEEP:   # pack.val_repos' rule
            h, r, n, k = smallest[0]
            forced[key] = r
            per_task[k] -= n
        train[key] = per_task
    avail = {key: sum(v) for key, v in train.items()}
    lang_of = {key: key.split("|", 1)[1] for key in keys}
    src_of = {key: key.split("|", 1)[0] for key in keys}
    passes = {key: 1 if src_of[key] == "synthetic" else cfg.max_passes for key in keys}
    cap = {key: avail[key] * passes[key] for key in keys}

    B = cfg.budget_tokens
    has_py = any(avail[k] for k in keys if lang_of[k] == "Python")
    has_other = any(avail[k] for k in keys if lang_of[k] != "Python")
    py_target = round(B * cfg.python_share) if has_py and has_other else (B if has_py else 0)
    targets = {}
    left = py_target
    for src in SOURCES:         # Python: synthetic first, then phase 2
        key = f"{src}|Python"
        if key in cap and cap[key] and left >= 2:
            targets[key] = min(left, cap[key])
            left -= targets[key]
    left = B - py_target
    for key in sorted(k for k in keys if src_of[k] == "synthetic" and lang_of[k] != "Python"):
        if cap[key] and left >= 2:
            targets[key] = min(left, cap[key])
            left -= targets[key]
    p2 = [k for k in keys if src_of[k] == "phase2" and lang_of[k] != "Python" and cap[k]]
    if left >= 2 and p2:
        take, carry = split_largest_remainder(left, {k: avail[k] for k in p2}), 0
        for key in p2:          # a language short of its share (max_passes) hands the rest to the next
            targets[key] = min(take[key] + carry, cap[key])
            carry = take[key] + carry - targets[key]
    quota = {}
    for key, t in targets.items():
        q = split_largest_remainder(t, dict(enumerate(train[key])))
        q = [q[k] for k in range(n_tasks)]
        for k in range(n_tasks):            # a 1-token quota cannot hold a sequence: give it to the largest
            if q[k] == 1 and max(q) > 1:
                q[k] = 0
                q[q.index(max(q))] += 1
        quota[key] = q
    return {"val": forced, "targets": targets, "quota": quota, "avail": avail,
            "python_target": py_target, "warn": not (has_py and has_other), "has_py": has_py}


# -----------------------------------------------------------------------------
# stage 4: write the shards

def write_task(k, n_tasks, out_dir, work, cfg: Phase3Config):
    out_dir, work = Path(out_dir), Path(work)
    plan = make_plan(work / "count", n_tasks, cfg)
    for src in SOURCES:
        (out_dir / f"shards-{src}").mkdir(parents=True, exist_ok=True)
        for old in (out_dir / f"shards-{src}").glob(f"*-{k:05d}*.bin"):   # an earlier attempt's
            old.unlink()
    bin_path = work / "count" / f"seq-{k:05d}.bin"
    toks = np.memmap(bin_path, dtype="<u2", mode="r") if bin_path.stat().st_size else np.zeros(0, "<u2")
    index = work / "count" / f"index-{k:05d}.jsonl.gz"
    writers, fill, docs_used = {}, {}, 0

    def writer(src, split, lang):
        if (src, split, lang) not in writers:
            writers[(src, split, lang)] = ShardWriter(out_dir / f"shards-{src}", split, lang, k, pack_config(cfg, src))
        return writers[(src, split, lang)]

    def rows():
        nonlocal docs_used
        seen = sorted({(r["source"], r["language"]) for r in read_docs(index)})
        for src, lang in seen:
            key = f"{src}|{lang}"
            pcfg = pack_config(cfg, src)
            mine = [r for r in read_docs(index) if r["source"] == src and r["language"] == lang]
            is_val = [val_hash(pcfg, lang, r["repo"]) < cfg.val_fraction or plan["val"].get(key) == r["repo"]
                      for r in mine]
            for r, v in zip(mine, is_val):       # val: every held-out repository once
                if v:
                    path, off = writer(src, "val", lang).write(np.asarray(toks[r["offset"]:r["offset"] + r["tokens"]]))
                    docs_used += len(r["ids"])
                    yield seq_row(r, src, "val", path, off, r["tokens"], 0, False)
            train = sorted((r for r, v in zip(mine, is_val) if not v),
                           key=lambda r: (-r["score"], stable_u64("phase3", lang, r["repo"])))
            q = plan["quota"].get(key, [0] * n_tasks)[k]
            got, n_seq, last_pass = 0, 0, 0
            for p in range(1 if src == "synthetic" else cfg.max_passes):
                if q - got < 2 or not train:
                    break
                for r in train:
                    need = q - got
                    if need < 2:        # one token cannot hold a sequence: at worst a token short
                        break
                    arr = np.asarray(toks[r["offset"]:r["offset"] + r["tokens"]])
                    n = len(arr)
                    if n > need:
                        n = need
                    elif n == need - 1 and n >= 3:
                        n -= 1          # leave two tokens, not one, for the next (cut) sequence
                    cut = n < len(arr)
                    if cut:
                        arr = np.concatenate([arr[:n - 1], arr[-1:]])   # still ends with <|endoftext|>
                    path, off = writer(src, "train", lang).write(arr)
                    docs_used += len(r["ids"]) if p == 0 else 0
                    got += n
                    n_seq += 1
                    last_pass = p
                    yield seq_row(r, src, "train", path, off, n, p, cut)
            if key in plan["targets"]:
                fill[key] = {"tokens": got, "sequences": n_seq, "passes": last_pass + 1 if n_seq else 0}

    n_rows = write_docs(out_dir / f"sequences-{k:05d}.jsonl.gz", rows())
    shards = []
    for (src, split, lang), w in writers.items():
        w.close()
        shards += [{**s, "path": f"shards-{src}/{s['path']}", "source": src} for s in w.shards]
    write_json(work / "write" / f"result-{k:05d}.json", {"shards": shards, "fill": fill, "documents": docs_used,
                                                             "sequences": n_rows})
    return {"tokens": sum(s["tokens"] for s in shards if s["split"] == "train"), "sequences": n_rows,
            "docs_out": docs_used}


def seq_row(r, src, split, path, off, n, p, cut):
    return {"shard": f"shards-{src}/{path}", "offset": off, "tokens": n, "split": split, "language": r["language"],
            "source": src, "repo": r["repo"], "metadata": r["metadata"], "ids": r["ids"], "pass": p, "cut": cut}


# -----------------------------------------------------------------------------

def build(synthetic, phase2, tok_path, out_dir, cfg: Phase3Config, progress: bool = True, tasks: int = 1,
          task=None, workers=None) -> dict | None:
    out_dir = Path(out_dir)
    enc = load_tokenizer(tok_path)
    special_ids(enc, tok_path)
    syn_path, p2_path = synthetic_docs_path(synthetic), phase2_docs_path(phase2)
    work = out_dir / "_work"
    base = dict(synthetic=str(syn_path.resolve()), phase2=str(p2_path.resolve()), tokenizer=str(Path(tok_path).resolve()),
                val_fraction=cfg.val_fraction, metadata_prob=cfg.metadata_prob, seed=cfg.seed)
    common = dict(task=task, workers=workers, quiet=not progress)

    def wait(stage):
        print(f"phase3: {stage} pending in other tasks; rerun when all {tasks} are done", flush=True)

    pcfg = pack_config(cfg, "phase2")
    if run_tasks(work / "route", tasks, pack.route_task, args=(str(p2_path), str(work / "route"), pcfg),
                 name="phase3/route", settings=base, **common) is None:
        return wait("route")
    if run_tasks(work / "count", tasks, count_task, args=(str(syn_path), str(work / "count"), str(tok_path),
                                                          str(work / "count"), cfg),
                 name="phase3/count", settings=base, **common) is None:
        return wait("count")
    plan = make_plan(work / "count", tasks, cfg)
    if not plan["avail"] or not any(plan["avail"].values()):
        raise SystemExit("phase3: no documents in either input")
    if plan["warn"]:
        print(f"phase3: warning: no {'non-Python' if plan['has_py'] else 'Python'} data; the budget is all "
              f"{'Python' if plan['has_py'] else 'other languages'}", flush=True)
    if run_tasks(work / "write", tasks, write_task, args=(str(out_dir), str(work), cfg), name="phase3/write",
                 settings=dict(base, **asdict(cfg)), **common) is None:
        return wait("write")

    shards, fill, documents, n_out = [], {}, 0, 0
    for k in range(tasks):
        res = json.loads((work / "write" / f"result-{k:05d}.json").read_text())
        shards += res["shards"]
        documents += res["documents"]
        n_out += res["sequences"]
        for key, r in res["fill"].items():
            f = fill.setdefault(key.replace("|", "/"), {"target": plan["targets"][key], "tokens": 0, "sequences": 0,
                                                        "passes": 0})
            f["tokens"] += r["tokens"]
            f["sequences"] += r["sequences"]
            f["passes"] = max(f["passes"], r["passes"])
    shards.sort(key=lambda s: (s["split"] != "train", s["source"], s["language"], s["path"]))
    totals = manifest_totals(shards)
    tpl, tps, train = totals["tokens_per_language"], totals["tokens_per_source"], totals["tokens_train"]
    py_share = tpl.get("Python", 0) / max(1, train)
    n_seq = sum(json.loads((work / "count" / f"stats-{k:05d}.json").read_text())["sequences"] for k in range(tasks))
    man = {"vocab_size": enc.n_vocab, "eot_id": enc.eot_token, "shards": shards, **totals,
           "python_share": round(py_share, 6), "documents": documents, "sequences_packed": n_seq,
           "sequences": n_out,
           "documents_dir": str(syn_path.resolve()), "phase2_documents_dir": str(p2_path.resolve()),
           "fill": fill, "settings": dict(asdict(cfg), n_tasks=tasks), "code_version": code_version()}
    man = json.loads(write_manifest(out_dir, man, tokenizer=tok_path).read_text())
    print(f"phase3: {train:,} train tokens (budget {cfg.budget_tokens:,}), Python {py_share:.1%}, "
          + ", ".join(f"{k} {v:,}" for k, v in tps.items()) + f"; {man['tokens_val']:,} val tokens", flush=True)
    for key, r in fill.items():
        if key.startswith("phase2/") and r["passes"] > 1:
            print(f"phase3: {key}: phase 2 had too little, repeated over {r['passes']} passes", flush=True)
        if r["tokens"] < r["target"]:
            print(f"phase3: {key}: {r['tokens']:,} of its {r['target']:,} target tokens", flush=True)
    return man


def main(argv=None):
    d = Phase3Config()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", required=True, help="synthesize.py's --out JSONL, or a documents dir/file")
    ap.add_argument("--phase2", required=True, help="phase-2 output dir (documents in DIR/selected)")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.tiktoken")
    ap.add_argument("--budget-tokens", type=int, required=True, help="train tokens of phase 3")
    ap.add_argument("--out", required=True, help="output dir: manifest.json + shards")
    ap.add_argument("--python-share", type=float, default=d.python_share, help="Python share of the budget (0.5)")
    ap.add_argument("--val-fraction", type=float, default=d.val_fraction, help="repositories held out for val")
    ap.add_argument("--metadata-prob", type=float, default=d.metadata_prob, help="as prepare/pack.py")
    ap.add_argument("--seed", type=int, default=d.seed, help="val choice and file order")
    ap.add_argument("--max-passes", type=int, default=d.max_passes, help="most repeats of phase-2 data")
    add_task_args(ap)
    a = ap.parse_args(argv)
    if a.budget_tokens <= 0 or not 0.0 <= a.python_share <= 1.0:
        ap.error("--budget-tokens must be > 0 and --python-share in [0, 1]")
    cfg = Phase3Config(budget_tokens=a.budget_tokens, python_share=a.python_share, val_fraction=a.val_fraction,
                       metadata_prob=a.metadata_prob, seed=a.seed, max_passes=a.max_passes)
    return build(a.synthetic, a.phase2, a.tokenizer, a.out, cfg, tasks=a.tasks, task=a.task, workers=a.workers)


if __name__ == "__main__":
    main()
