"""
Phase-2 data: the top-scored documents per language, up to a token budget, repeated 4x.

    python -m prepare.phase2 --docs D/p1/dedup --scores D/scores --tokenizer TOK \\
        --budget-tokens N --out D/p2 [--epochs 4]

The paper (§2.2): files are ranked by the quality annotator's score *per language* and taken
from the top until the budget is met (12.5B tokens, trained 4 epochs = 50B), keeping phase 1's
language mix. Here:
  - a document's tokens are its content's tokens under the phase-1 tokenizer;
  - phase 1's mix is each language's share of all scored documents' tokens, and a language's
    budget is share x budget;
  - within a language, documents go best score first (ties by id), and the cut is placed where
    the running total is closest to the budget, the rounding error carried to the next language
    (languages in name order), so the total lands within half a document of the budget and
    every language within one document of its share. No randomness: reruns select the same.

Writes into D/p2:
  selected/part-KKKKK.jsonl.gz  the selected documents with "score", highest first (phase 3's seeds)
  *.bin + manifest.json          shards packed by prepare/pack.py (source "phase2"); train shards
                                  carry "epochs": 4, the repeat count train.py applies
  hist.png                       score histograms per language, the cut-off marked
  selection.json                 per-language counts, budgets, cut-offs and shares
"""
import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from prepare.docs import doc_files, read_docs, write_docs
from prepare.pipeline import check_settings
from prepare.tokenizer import load_tokenizer


@dataclass
class Phase2Config:
    budget_tokens: int = 12_500_000_000  # the paper's 12.5B unique tokens
    epochs: int = 4                      # repeats in training (the paper: 4 x 12.5B = 50B)
    docs_per_part: int = 50_000          # selected/part-KKKKK.jsonl.gz size
    val_fraction: float = 0.01           # of each language's repositories (prepare/pack.py)
    seed: int = 1337


def read_scored(docs_path, scores_path, tok_path):
    """One row per document: (language, score, id, tokens, part index, line index). Checks the
    scores are aligned with the documents (same parts, same ids in the same order)."""
    enc = load_tokenizer(tok_path)
    rows = []
    parts = doc_files(docs_path)
    for p, part in enumerate(tqdm(parts, desc="phase2 read", unit="part")):
        sf = Path(scores_path) / part.name
        if not sf.is_file():
            raise SystemExit(f"phase2: {sf} missing: score {part} first (annotate.py score)")
        docs, scores = list(read_docs(part)), list(read_docs(sf))
        if len(docs) != len(scores):
            raise SystemExit(f"phase2: {sf} has {len(scores)} scores for {len(docs)} documents in {part}")
        # tiktoken's batch encoder runs in threads (the Rust encoder drops the GIL)
        lens = [len(t) for t in enc.encode_ordinary_batch([d["content"] for d in docs], num_threads=os.cpu_count() or 1)]
        for i, (d, s, n) in enumerate(zip(docs, scores, lens)):
            if s.get("id") != d["id"]:
                raise SystemExit(f"phase2: {sf} line {i + 1}: id {s.get('id')!r} does not match document {d['id']!r}")
            rows.append((d["language"], float(s["score"]), d["id"], n, p, i))
    if not rows:
        raise SystemExit(f"phase2: no documents in {docs_path}")
    return parts, rows


def select(rows, budget):
    """Top documents per language under phase 1's mix. Returns (chosen rows, per-language info)."""
    by_lang = {}
    for r in rows:
        by_lang.setdefault(r[0], []).append(r)
    total = sum(r[3] for r in rows)
    if budget > total:
        print(f"phase2: budget {budget:,} exceeds the corpus' {total:,} tokens: taking everything")
        budget = total
    chosen, info, carry = [], {}, 0.0
    for lang in sorted(by_lang):
        docs = sorted(by_lang[lang], key=lambda r: (-r[1], r[2]))  # best first, ties by id
        have = sum(r[3] for r in docs)
        target = budget * have / total + carry
        taken = 0
        k = 0
        while k < len(docs) and taken < target:
            n = docs[k][3]
            if taken + n > target and (taken + n - target) > (target - taken):
                break  # stopping here lands closer to the target than taking this one
            taken += n
            k += 1
        carry = target - taken  # the rounding error goes to the next language
        chosen += docs[:k]
        info[lang] = {"docs": len(docs), "tokens": have, "share": have / total, "budget": round(target, 1),
                      "selected_docs": k, "selected_tokens": taken,
                      "cutoff_score": docs[k - 1][1] if k else None,
                      "scores": [r[1] for r in docs]}
    sel_total = sum(v["selected_tokens"] for v in info.values())
    for v in info.values():
        v["selected_share"] = v["selected_tokens"] / sel_total if sel_total else 0.0
    return chosen, info, budget


def plot(info, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    langs = sorted(info, key=lambda l: -info[l]["tokens"])
    cols = min(3, len(langs))
    rows = (len(langs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat[len(langs):]:
        ax.axis("off")
    for ax, lang in zip(axes.flat, langs):
        v = info[lang]
        ax.hist(v["scores"], bins=40, range=(0, 1), color="tab:blue", alpha=0.8)
        if v["cutoff_score"] is not None:
            ax.axvline(v["cutoff_score"], color="tab:red", linestyle="--", label=f"cut-off {v['cutoff_score']:.3f}")
            ax.legend(fontsize=8)
        ax.set_title(f"{lang}: kept {v['selected_docs']}/{v['docs']} docs, {v['selected_share']:.1%} of tokens "
                     f"(phase 1: {v['share']:.1%})", fontsize=9)
        ax.set_xlabel("annotator score")
        ax.set_ylabel("documents")
    fig.suptitle("phase 2: quality scores per language (kept: right of the cut-off)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(docs_path, scores_path, tok_path, out_dir, cfg: Phase2Config = Phase2Config()):
    from prepare.pack import PackConfig, run as pack_run
    out_dir = Path(out_dir)
    if not Path(tok_path).is_file():
        raise SystemExit(f"phase2: tokenizer not found: {tok_path}")
    if cfg.budget_tokens <= 0:
        raise SystemExit("phase2: --budget-tokens must be positive")
    sel_dir = out_dir / "selected"
    # a rerun with other inputs must not mix with what is already there
    check_settings(sel_dir, dict(asdict(cfg), docs=str(Path(docs_path).resolve()),
                                 scores=str(Path(scores_path).resolve()), tokenizer=str(Path(tok_path).resolve())))
    parts, rows = read_scored(docs_path, scores_path, tok_path)
    chosen, info, budget = select(rows, cfg.budget_tokens)
    chosen.sort(key=lambda r: (-r[1], r[2]))  # highest score first, over all languages
    rank = {(r[4], r[5]): j for j, r in enumerate(chosen)}
    # second pass: fetch the chosen documents' text, part by part
    picked = [None] * len(chosen)
    for p, part in enumerate(tqdm(parts, desc="phase2 collect", unit="part")):
        for i, d in enumerate(read_docs(part)):
            j = rank.get((p, i))
            if j is not None:
                picked[j] = dict(d, score=chosen[j][1])
    if not (sel_dir / "done-00000").exists():
        for k in range(0, max(1, len(picked)), cfg.docs_per_part):
            write_docs(sel_dir / f"part-{k // cfg.docs_per_part:05d}.jsonl.gz", picked[k:k + cfg.docs_per_part])
        (sel_dir / "done-00000").write_text("")
    plot(info, out_dir / "hist.png")
    man = pack_run(sel_dir, tok_path, out_dir, tasks=1,
                   cfg=PackConfig(source="phase2", val_fraction=cfg.val_fraction, seed=cfg.seed))
    # the repeat count lives on each train shard: train.py draws it `epochs` times per pass
    for s in man["shards"]:
        s["epochs"] = cfg.epochs if s["split"] == "train" else 1
    sel_tokens = sum(v["selected_tokens"] for v in info.values())
    man["phase2"] = {"budget_tokens": budget, "selected_tokens": sel_tokens, "epochs": cfg.epochs,
                     "selected_docs": len(picked), "scores_dir": str(Path(scores_path).resolve()),
                     "selected_dir": str(sel_dir.resolve())}
    man["settings"] = dict(man["settings"], epochs=cfg.epochs, budget_tokens=budget)
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(man, indent=1))
    os.replace(tmp, out_dir / "manifest.json")
    stats = {"budget_tokens": budget, "selected_tokens": sel_tokens, "selected_docs": len(picked),
             "corpus_tokens": sum(v["tokens"] for v in info.values()), "corpus_docs": len(rows),
             "languages": {l: {k: v for k, v in d.items() if k != "scores"} for l, d in info.items()}}
    (out_dir / "selection.json").write_text(json.dumps(stats, indent=1))
    print(f"phase2: selected {len(picked):,} of {len(rows):,} docs, {sel_tokens:,} tokens "
          f"(budget {budget:,}), x{cfg.epochs} epochs; per language: "
          + ", ".join(f"{l} {v['selected_tokens']:,} ({v['selected_share']:.1%} vs {v['share']:.1%})"
                      for l, v in sorted(info.items(), key=lambda kv: -kv[1]["tokens"])))
    return stats


def main(argv=None):
    ap = argparse.ArgumentParser(description="Phase-2 data: top-scored documents per language up to a token "
                                             "budget, packed into shards repeated --epochs times.")
    ap.add_argument("--docs", required=True, help="phase-1 documents (step dir) that were scored")
    ap.add_argument("--scores", required=True, help="annotate.py score output (part files aligned with --docs)")
    ap.add_argument("--tokenizer", required=True, help="the phase-1 tiktoken rank file")
    ap.add_argument("--budget-tokens", type=int, required=True, help="unique tokens to select (paper: 12.5B)")
    ap.add_argument("--out", required=True, help="output dir (manifest.json, shards, selected/, hist.png)")
    ap.add_argument("--epochs", type=int, default=4, help="repeats of the selected data in training")
    ap.add_argument("--val-fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1337)
    a = ap.parse_args(argv)
    run(a.docs, a.scores, a.tokenizer, a.out,
        Phase2Config(budget_tokens=a.budget_tokens, epochs=a.epochs, val_fraction=a.val_fraction, seed=a.seed))


if __name__ == "__main__":
    main()
