"""
Phase-3 data: the accepted synthetic files mixed with phase-2 data up to a token budget, with
Python at about half of it (the paper: ~2B synthetic tokens in a 5B-token phase, Python raised to
~50%).

    python -m prepare.phase3 --synthetic D/p3/synthetic.jsonl --phase2 D/p2 --tokenizer TOK \
        --budget-tokens N --out D/p3 [--python-share 0.5]

--synthetic is synthesize.py's output JSONL (its accepted files are read from the documents dir
beside it, D/p3/synthetic/) or any documents dir / part file. --phase2 is prepare/phase2's output
dir; its documents (DIR/selected, with "score") are repacked here, so phase 3 can choose how many
of them, per language, it needs.

How the budget is filled (train split; val is held out first and not counted):
  Python   budget * python_share: every synthetic Python file first, then phase-2 Python
           repositories, best-scored first, repeated in further passes if phase 2 is short;
  others   the rest: synthetic non-Python files, then phase-2's other languages, each given its
           share of phase-2's non-Python tokens (phase 2 kept phase 1's language mix).
The last sequence of a bucket is cut to land exactly on its target (it still ends with
<|endoftext|>), so the train tokens equal the budget and the Python share is met to the token
(unless a side has no data at all: then the other side fills the budget, with a warning).

Sequences use prepare/pack.py's format (StarCoder2 style, repository-level, metadata half the
time); a synthetic file is a repository of one file. Shards and manifest as README "Data formats":
DIR/shards-synthetic/*.bin (source "synthetic"), DIR/shards-phase2/*.bin (source "phase2"),
DIR/manifest.json (paths relative to DIR), DIR/sequences-00000.jsonl.gz (what each sequence holds,
and its pass). The shard dirs are prefixed so that synthesize.py's accepted-files folder
(DIR/synthetic/ when its output is DIR/synthetic.jsonl) is never overwritten.
"""
import argparse
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from formats import is_docs_path, manifest_totals, read_docs, write_docs, write_manifest
from prepare.pack import PackConfig, ShardWriter, code_version, sequence_segments, stable_u64, val_repos
from formats import load_tokenizer


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
            return p
    raise SystemExit(f"phase3: no phase-2 documents in {path}/selected (part-*.jsonl.gz)")


class SequenceSource:
    """One language of one source as a stream of packed sequences (uint16 arrays), tokenized
    lazily in batches and replayed from memory on later passes."""

    def __init__(self, source: str, lang: str, groups: list, enc, sp: dict, cfg: PackConfig):
        self.source, self.lang, self.groups, self.enc, self.sp, self.cfg = source, lang, groups, enc, sp, cfg
        self.done: list = []  # (repo, meta, ids, arr) already tokenized

    def tokens_hint(self) -> int:
        """Rough size before tokenizing (chars / 3), to split shares between languages."""
        return sum(len(d["content"]) for _, docs in self.groups for d in docs) // 3 + 1

    def _tokenize(self, start: int, n: int):
        batch = self.groups[start:start + n]
        seqs = [(repo,) + sequence_segments(self.lang, repo, docs, self.cfg) for repo, docs in batch]
        flat = [s for _, _, segs, _ in seqs for s in segs]
        ids = self.enc.encode_ordinary_batch(flat)
        j = 0
        for repo, meta, segs, docs in seqs:
            toks = []
            if meta:
                toks.append(self.sp["<repo_name>"])
                toks += ids[j]
                j += 1
            for _ in docs:
                toks.append(self.sp["<file_sep>"])
                toks += ids[j]
                j += 1
            toks.append(self.sp["<|endoftext|>"])
            self.done.append((repo, meta, [d["id"] for d in docs], np.array(toks, dtype=np.uint16)))

    def passes(self, max_passes: int):
        """Yield (pass, repo, meta, doc ids, tokens), cycling over the groups."""
        for p in range(max_passes):
            for i in range(len(self.groups)):
                if i >= len(self.done):
                    self._tokenize(i, 64)
                yield (p,) + self.done[i]


def fill(source: SequenceSource, target: int, writer: ShardWriter, index: list, bar, max_passes: int) -> dict:
    """Write sequences from `source` until exactly `target` tokens (the last one cut, ending in EOT)."""
    eot = source.sp["<|endoftext|>"]
    got, n_seq, last_pass = 0, 0, 0
    if target <= 0 or not source.groups:
        return {"tokens": 0, "sequences": 0, "passes": 0}
    for p, repo, meta, ids, arr in source.passes(max_passes):
        need = target - got
        if need < 2:  # one token cannot hold a sequence; the bucket ends a token short at worst
            break
        cut = len(arr) > need
        if cut:
            arr = np.concatenate([arr[:need - 1], np.array([eot], dtype=np.uint16)])
        path, off = writer.write(arr)
        index.append({"shard": f"shards-{source.source}/{path}", "offset": off, "tokens": len(arr), "split": writer.split,
                      "language": source.lang, "source": source.source, "repo": repo, "metadata": meta,
                      "ids": ids, "pass": p, "cut": cut})
        got += len(arr)
        n_seq += 1
        last_pass = p
        bar.update(len(arr))
        if got >= target:
            break
    return {"tokens": got, "sequences": n_seq, "passes": last_pass + 1}


def group_docs(docs, source: str, key_score: bool):
    """{language: [(repo, [docs])]} with repositories best-scored first (ties by a seeded hash)."""
    by = {}
    for d in docs:
        lang = d.get("language") or "unknown"
        # a synthetic file is a repository of its own: one file per sequence
        repo = f"synthetic/{d['id']}" if source == "synthetic" else (d.get("repo") or d["id"])
        by.setdefault(lang, {}).setdefault(repo, []).append(d)
    out = {}
    for lang, repos in by.items():
        def rank(item):
            repo, ds = item
            best = max(float(d.get("score", 0.0) or 0.0) for d in ds) if key_score else 0.0
            return (-best, stable_u64("phase3", lang, repo))
        out[lang] = sorted(repos.items(), key=rank)
    return out


def build(synthetic, phase2, tok_path, out_dir, cfg: Phase3Config, progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    enc = load_tokenizer(tok_path)
    if enc.n_vocab > 65536:
        raise SystemExit(f"phase3: {tok_path}: {enc.n_vocab} tokens do not fit uint16 shards")
    sp = {t: enc.encode_single_token(t) for t in ("<|endoftext|>", "<repo_name>", "<file_sep>")}
    syn_path, p2_path = synthetic_docs_path(synthetic), phase2_docs_path(phase2)
    syn = group_docs(read_docs(syn_path), "synthetic", key_score=False)
    p2 = group_docs(read_docs(p2_path), "phase2", key_score=True)
    if not syn and not p2:
        raise SystemExit("phase3: no documents in either input")

    # validation: a seeded share of each source's repositories, held out before the budget
    pcfg = PackConfig(metadata_prob=cfg.metadata_prob, val_fraction=cfg.val_fraction, seed=cfg.seed)
    val = {}
    for name, groups in (("synthetic", syn), ("phase2", p2)):
        held = val_repos({lang: {r for r, _ in g} for lang, g in groups.items()}, pcfg)
        val[name] = {lang: [x for x in g if (lang, x[0]) in held] for lang, g in groups.items()}
        for lang in groups:
            groups[lang] = [x for x in groups[lang] if (lang, x[0]) not in held]

    def src(name, lang, groups):
        return SequenceSource(name, lang, groups, enc, sp, PackConfig(**{**asdict(pcfg), "source": name}))

    # targets per (source, language)
    B = cfg.budget_tokens
    has_py = bool(syn.get("Python") or p2.get("Python"))
    has_other = any(g for l, g in list(syn.items()) + list(p2.items()) if l != "Python")
    py_target = round(B * cfg.python_share) if has_py and has_other else (B if has_py else 0)
    if not (has_py and has_other):
        print(f"phase3: warning: no {'non-Python' if has_py else 'Python'} data; the budget is all "
              f"{'Python' if has_py else 'other languages'}", flush=True)
    other_target = B - py_target

    for d in (out_dir / "shards-synthetic", out_dir / "shards-phase2"):
        if d.exists():
            shutil.rmtree(d)  # a rerun rewrites the shards from scratch
        d.mkdir(parents=True)
    writers, index, report = {}, [], {}

    def writer(name, split, lang):
        if (name, split, lang) not in writers:
            writers[(name, split, lang)] = ShardWriter(out_dir / f"shards-{name}", split, lang, 0,
                                                       PackConfig(**{**asdict(pcfg), "source": name}))
        return writers[(name, split, lang)]

    bar = tqdm(total=B, desc="phase3 mix", unit="tok", unit_scale=True, disable=not progress)
    # Python: synthetic first, then phase 2 (repeated if short)
    got = 0
    if syn.get("Python"):
        r = fill(src("synthetic", "Python", syn["Python"]), py_target, writer("synthetic", "train", "Python"),
                 index, bar, 1)
        report["synthetic/Python"] = r
        got += r["tokens"]
    if py_target - got >= 2 and p2.get("Python"):
        r = fill(src("phase2", "Python", p2["Python"]), py_target - got, writer("phase2", "train", "Python"),
                 index, bar, cfg.max_passes)
        report["phase2/Python"] = r
        got += r["tokens"]
    # other languages: synthetic first (best files of every language in turn), then phase 2 by its mix
    got_o = 0
    for lang in sorted(l for l in syn if l != "Python"):
        left = other_target - got_o
        if left < 2:
            break
        r = fill(src("synthetic", lang, syn[lang]), left, writer("synthetic", "train", lang), index, bar, 1)
        report[f"synthetic/{lang}"] = r
        got_o += r["tokens"]
    langs = sorted(l for l in p2 if l != "Python" and p2[l])
    left = other_target - got_o
    if left >= 2 and langs:
        sources = {l: src("phase2", l, p2[l]) for l in langs}
        hint = {l: s.tokens_hint() for l, s in sources.items()}
        share = {l: left * h / sum(hint.values()) for l, h in hint.items()}
        take = {l: int(v) for l, v in share.items()}
        for l in sorted(share, key=lambda k: -(share[k] - take[k]))[:left - sum(take.values())]:
            take[l] += 1
        carry = 0
        for l in langs:  # a language that falls short (max_passes) hands its rest to the next
            r = fill(sources[l], take[l] + carry, writer("phase2", "train", l), index, bar, cfg.max_passes)
            report[f"phase2/{l}"] = r
            carry = take[l] + carry - r["tokens"]
            got_o += r["tokens"]
    bar.close()
    # validation sequences, once each
    for name, groups in val.items():
        for lang, g in groups.items():
            if g:
                fill(src(name, lang, g), 1 << 62, writer(name, "val", lang), index, tqdm(disable=True), 1)

    shards = []
    for (name, split, lang), w in writers.items():
        w.close()
        for s in w.shards:
            shards.append({**s, "path": f"shards-{name}/{s['path']}", "source": name})
    shards.sort(key=lambda s: (s["split"] != "train", s["source"], s["language"], s["path"]))
    totals = manifest_totals(shards)
    tpl, tps, train = totals["tokens_per_language"], totals["tokens_per_source"], totals["tokens_train"]
    py_share = tpl.get("Python", 0) / max(1, train)
    write_docs(out_dir / "sequences-00000.jsonl.gz", index)  # deterministic gzip, atomic (as pack)
    man = {"vocab_size": enc.n_vocab, "eot_id": enc.eot_token, "shards": shards, **totals,
           "python_share": round(py_share, 6),
           "documents": len({i for r in index for i in r["ids"]}), "sequences": len(index),
           "documents_dir": str(syn_path.resolve()), "phase2_documents_dir": str(p2_path.resolve()),
           "fill": report, "settings": asdict(cfg), "code_version": code_version()}
    man = json.loads(write_manifest(out_dir, man, tokenizer=tok_path).read_text())
    print(f"phase3: {train:,} train tokens (budget {B:,}), Python {py_share:.1%}, "
          + ", ".join(f"{k} {v:,}" for k, v in tps.items()) + f"; {man['tokens_val']:,} val tokens", flush=True)
    for k, r in report.items():
        if k.startswith("phase2/") and r["passes"] > 1:
            print(f"phase3: {k}: phase 2 had too little, repeated over {r['passes']} passes", flush=True)
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
    a = ap.parse_args(argv)
    if a.budget_tokens <= 0 or not 0.0 <= a.python_share <= 1.0:
        ap.error("--budget-tokens must be > 0 and --python-share in [0, 1]")
    cfg = Phase3Config(budget_tokens=a.budget_tokens, python_share=a.python_share, val_fraction=a.val_fraction,
                       metadata_prob=a.metadata_prob, seed=a.seed, max_passes=a.max_passes)
    build(a.synthetic, a.phase2, a.tokenizer, a.out, cfg)


if __name__ == "__main__":
    main()
