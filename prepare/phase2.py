"""
Phase-2 data: the top-scored documents per language, up to a token budget, repeated 4x; and the
control arms of the paper's Table 4, each from the same run.

    python -m prepare.phase2 --docs D/p1/decontaminate --scores D/scores --tokenizer TOK \\
        --budget-tokens N --out D/p2 [--epochs 4] [--tasks 8 [--task K]]
    python -m prepare.phase2 ... --scores D/scores-a D/scores-b --select all --out D/arms
                                    # one arm per annotator + a random arm, D/arms/<arm>/

The paper (§2.2): files are ranked by the quality annotator's score *per language* and taken
from the top until the budget is met (12.5B tokens, trained 4 epochs = 50B), keeping phase 1's
language mix. Here:
  - a document's tokens are its content's tokens under the phase-1 tokenizer;
  - phase 1's mix is each language's share of all scored documents' tokens, and a language's
    budget is share x budget;
  - within a language, documents go best score first (ties by id), and the cut is placed where
    the running total is closest to the budget, the rounding error carried to the next language
    (languages in name order), so the total lands within half a document of the budget and
    every language within one document of its share.
Arms (--select): `top` one arm per --scores folder (one per annotator); `random` documents ranked
by a seeded hash of their id instead of a score; `all` both. Every arm after the first takes as
its per-language budgets exactly the tokens the first annotator's arm selected per language, so
arms differ in which documents they hold, not in how many tokens of each language (each within
one document), and all share --epochs.

Streaming, in stages split into tasks like phase 1 (task k handles docs parts k, k+N, ...; each
holds one part at a time):
  1. pass1    tokens per document (kept in _work/pass1/tokens-PART.npy) and, per arm and language,
              a histogram of tokens over `bins` score bins;
  2. bounds   the histograms say which few bins can hold each language's cut (the budget plus or
              minus the largest document); each task collects (score, id, tokens) of its
              documents in those bins only;
  3. select   the exact cut per arm and language (computed by every task from the small files of
              1-2, the same in all), then each task writes its selected documents, with "score",
              in input order -> ARM/selected/part-KKKKK.jsonl.gz;
  4. pack     prepare/pack.py (source "phase2"), partitioned the same way.
No stage holds more than one part, a histogram and the boundary documents.

Writes into the arm's dir (D/p2 with one arm):
  selected/part-KKKKK.jsonl.gz  the selected documents with "score" (phase 3's seeds)
  *.bin + manifest.json          shards; train shards carry "epochs": 4, the repeat count train.py
                                  applies; manifest "phase2" holds the arm, budget and tokens
  hist.png                       score histograms per language, the cut-off marked
  selection.json                 per-language counts, budgets, cut-offs and shares
With several arms, D/arms.json sums them up (per arm and language: documents, tokens).
"""
import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from formats import doc_files, read_docs, write_docs, write_manifest
from prepare.pack import stable_u64
from prepare.pipeline import add_task_args, check_settings, run_tasks
from formats import load_tokenizer


@dataclass
class Phase2Config:
    budget_tokens: int = 12_500_000_000  # the paper's 12.5B unique tokens
    epochs: int = 4                      # repeats in training (the paper: 4 x 12.5B = 50B)
    val_fraction: float = 0.01           # of each language's repositories (prepare/pack.py)
    seed: int = 1337
    bins: int = 10_000                   # score histogram bins over [0, 1]


RANDOM = "random"


def arm_names(scores: list, select: str) -> list:
    """[(arm name, scores dir or None for random)]; the first is the reference arm (it sets the
    per-language budgets of the others) and is computed even when not written."""
    arms, seen = [], set()
    for i, s in enumerate(scores):
        name = Path(s).name or f"annotator{i}"
        while name in seen or name == RANDOM:
            name += f"-{i}"
        seen.add(name)
        arms.append((name, str(s)))
    if select in ("random", "all"):
        arms.append((RANDOM, None))
    if not arms:
        raise SystemExit("phase2: --select top needs --scores")
    return arms


def written(arms, select):
    return [a for a, s in arms if select == "all" or (select == "random") == (s is None)]


def task_parts(docs_path, k, n_tasks):
    parts = doc_files(docs_path)
    return [(p, parts[p]) for p in range(k, len(parts), n_tasks)]


def part_scores(arm_dir, part, ids, seed):
    """The arm's score of each document of a part (given its ids): the annotator's (ids checked),
    or the seeded hash of the id for the random arm."""
    if arm_dir is None:
        return np.array([stable_u64(seed, RANDOM, i) / 2**64 for i in ids])
    sf = Path(arm_dir) / part.name
    if not sf.is_file():
        raise SystemExit(f"phase2: {sf} missing: score {part} first (annotate.py score)")
    scores = list(read_docs(sf))
    if len(ids) != len(scores):
        raise SystemExit(f"phase2: {sf} has {len(scores)} scores for {len(ids)} documents in {part}")
    for i, (d, s) in enumerate(zip(ids, scores)):
        if s.get("id") != d:
            raise SystemExit(f"phase2: {sf} line {i + 1}: id {s.get('id')!r} does not match document {d!r}")
    return np.array([float(s["score"]) for s in scores])


def bin_of(scores, bins):
    return np.clip((np.asarray(scores) * bins).astype(np.int64), 0, bins - 1)


def pass1_task(k, n_tasks, docs_path, arms, tok_path, work, cfg):
    enc = load_tokenizer(tok_path)
    hist, maxdoc = {}, 0
    for p, part in task_parts(docs_path, k, n_tasks):
        docs = list(read_docs(part))
        lens = np.array([len(t) for t in enc.encode_ordinary_batch([d["content"] for d in docs],
                                                                  num_threads=os.cpu_count() or 1)], dtype=np.int64)
        langs = np.array([d["language"] for d in docs])
        np.save(Path(work) / f"tokens-{p:05d}.npy", lens)
        np.save(Path(work) / f"langs-{p:05d}.npy", langs)
        ids = [d["id"] for d in docs]
        (Path(work) / f"ids-{p:05d}.json").write_text(json.dumps(ids))
        maxdoc = max([maxdoc] + lens.tolist())
        for arm, sdir in arms:
            b = bin_of(part_scores(sdir, part, ids, cfg.seed), cfg.bins)
            for lang in np.unique(langs):
                m = langs == lang
                h = hist.setdefault(f"{arm}|{lang}", np.zeros((2, cfg.bins), np.int64))
                np.add.at(h[0], b[m], lens[m])
                np.add.at(h[1], b[m], 1)
    tmp = Path(work) / f"hist-{k:05d}.tmp.npz"
    np.savez(tmp, maxdoc=np.array(maxdoc), **hist)
    os.replace(tmp, Path(work) / f"hist-{k:05d}.npz")
    return {"docs_in": sum(int(h[1].sum()) for key, h in hist.items() if key.startswith(arms[0][0] + "|")),
            "tokens": sum(int(h[0].sum()) for key, h in hist.items() if key.startswith(arms[0][0] + "|"))}


def merged_hist(work, n_tasks):
    hist, maxdoc = {}, 0
    for k in range(n_tasks):
        z = np.load(Path(work) / f"hist-{k:05d}.npz")
        maxdoc = max(maxdoc, int(z["maxdoc"]))
        for key in z.files:
            if key != "maxdoc":
                hist[key] = hist.get(key, 0) + z[key]
    return hist, maxdoc


def boundary_bins(hist, arms, maxdoc, budget):
    """{arm|lang: (lo, hi)}: the bins whose documents can hold the cut, the reference budget of the
    language plus or minus the largest document (the carried rounding error is at most half of one)."""
    ref = arms[0][0]
    langs = sorted(key.split("|", 1)[1] for key in hist if key.startswith(ref + "|"))
    total = sum(int(hist[f"{ref}|{l}"][0].sum()) for l in langs)
    out = {}
    for arm, _ in arms:
        for l in langs:
            tok = hist[f"{arm}|{l}"][0][::-1]               # best bin first
            cum = np.cumsum(tok)
            t0 = budget * int(tok.sum()) / max(1, total)
            lo_r = int(np.searchsorted(cum, t0 - maxdoc, side="right"))   # reversed index of the first bin not fully below
            hi_r = int(np.searchsorted(cum, t0 + maxdoc, side="left"))
            nb = len(tok)
            out[f"{arm}|{l}"] = (max(0, nb - 1 - min(hi_r, nb - 1)), nb - 1 - min(lo_r, nb - 1))
    return langs, total, out


def bounds_task(k, n_tasks, docs_path, arms, work, bounds, cfg):
    rows = {key: [] for key in bounds}
    for p, part in task_parts(docs_path, k, n_tasks):
        lens = np.load(Path(work) / f"tokens-{p:05d}.npy")
        langs = np.load(Path(work) / f"langs-{p:05d}.npy")
        ids = json.loads((Path(work) / f"ids-{p:05d}.json").read_text())     # the documents are not read
        for arm, sdir in arms:
            s = part_scores(sdir, part, ids, cfg.seed)
            b = bin_of(s, cfg.bins)
            lo = np.array([bounds[f"{arm}|{l}"][0] for l in langs], dtype=np.int64)
            hi = np.array([bounds[f"{arm}|{l}"][1] for l in langs], dtype=np.int64)
            for i in np.flatnonzero((b >= lo) & (b <= hi)):
                rows[f"{arm}|{langs[i]}"].append([float(s[i]), ids[i], int(lens[i])])
    tmp = Path(work).parent / "bounds" / f"bounds-{k:05d}.json.tmp"
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, tmp.with_suffix(""))
    return {"boundary_docs": sum(len(v) for v in rows.values())}


def cuts(work, n_tasks, arms, hist, langs, total, bounds, budget):
    """The exact greedy cut per arm and language from the histograms and boundary documents:
    {arm: {lang: info}} with info["cut"] = (lo bin, hi bin, last taken (score, id) or None)."""
    rows = {key: [] for key in bounds}
    for k in range(n_tasks):
        for key, v in json.loads((Path(work) / f"bounds-{k:05d}.json").read_text()).items():
            rows[key] += v
    result, ref_taken = {}, {}
    for j, (arm, _) in enumerate(arms):
        info, carry = {}, 0.0
        for l in langs:
            tok, cnt = hist[f"{arm}|{l}"]
            have = int(tok.sum())
            lo, hi = bounds[f"{arm}|{l}"]
            target = budget * have / total + carry if j == 0 else ref_taken[l]
            taken, k_docs, last = int(tok[hi + 1:].sum()), int(cnt[hi + 1:].sum()), None
            for score, did, n in sorted(rows[f"{arm}|{l}"], key=lambda r: (-r[0], r[1])):
                if taken >= target or (taken + n > target and (taken + n - target) > (target - taken)):
                    break          # stopping here lands closer to the target than taking this one
                taken += n
                k_docs += 1
                last = (score, did)
            if j == 0:
                carry = target - taken          # the rounding error goes to the next language
                ref_taken[l] = taken
            info[l] = {"docs": int(cnt.sum()), "tokens": have, "share": have / total, "budget": round(target, 1),
                       "selected_docs": k_docs, "selected_tokens": taken,
                       "cutoff_score": last[0] if last else None, "cut": [lo, hi, last],
                       "hist": cnt.tolist()}
        sel = sum(v["selected_tokens"] for v in info.values())
        for v in info.values():
            v["selected_share"] = v["selected_tokens"] / sel if sel else 0.0
        result[arm] = info
    return result


def is_selected(score, bin_, did, cut):
    lo, hi, last = cut
    if bin_ > hi:
        return True
    if bin_ < lo or last is None:
        return False
    return (-score, did) <= (-last[0], last[1])


def select_task(k, n_tasks, docs_path, arms, out_dirs, plan, cfg):
    stats = {"docs_in": 0, "docs_out": 0, "selected_per_arm": {}, "tokens_per_arm": {}}
    for arm, sdir in arms:
        if arm not in out_dirs:
            continue

        def picked():
            for p, part in task_parts(docs_path, k, n_tasks):
                docs = list(read_docs(part))
                s = part_scores(sdir, part, [d["id"] for d in docs], cfg.seed)
                b = bin_of(s, cfg.bins)
                lens = np.load(Path(out_dirs["_work"]) / f"tokens-{p:05d}.npy")
                for i, d in enumerate(docs):
                    if is_selected(float(s[i]), int(b[i]), d["id"], plan[arm][d["language"]]["cut"]):
                        stats["selected_per_arm"][arm] = stats["selected_per_arm"].get(arm, 0) + 1
                        stats["tokens_per_arm"][arm] = stats["tokens_per_arm"].get(arm, 0) + int(lens[i])
                        yield dict(d, score=round(float(s[i]), 6))

        write_docs(Path(out_dirs[arm]) / "selected" / f"part-{k:05d}.jsonl.gz", picked())
    return stats


def plot(info, path, bins):
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
        h = np.array(v["hist"]).reshape(40, -1).sum(1) if bins % 40 == 0 else np.array(v["hist"])
        ax.stairs(h, np.linspace(0, 1, len(h) + 1), fill=True, color="tab:blue", alpha=0.8)
        if v["cutoff_score"] is not None:
            ax.axvline(v["cutoff_score"], color="tab:red", linestyle="--", label=f"cut-off {v['cutoff_score']:.3f}")
            ax.legend(fontsize=8)
        ax.set_title(f"{lang}: kept {v['selected_docs']}/{v['docs']} docs, {v['selected_share']:.1%} of tokens "
                     f"(phase 1: {v['share']:.1%})", fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel("documents")
    fig.suptitle("phase 2: scores per language (kept: right of the cut-off)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(docs_path, scores_paths, tok_path, out_dir, cfg: Phase2Config = Phase2Config(), select: str = "top",
        tasks: int = 1, task=None, workers=None):
    from prepare.pack import PackConfig, run as pack_run
    out_dir = Path(out_dir)
    if isinstance(scores_paths, (str, Path)):
        scores_paths = [scores_paths]
    if not Path(tok_path).is_file():
        raise SystemExit(f"phase2: tokenizer not found: {tok_path}")
    if cfg.budget_tokens <= 0:
        raise SystemExit("phase2: --budget-tokens must be positive")
    if not doc_files(docs_path):
        raise SystemExit(f"phase2: no documents in {docs_path}")
    arms = arm_names(scores_paths, select)
    names = written(arms, select)
    dirs = {a: (out_dir if len(names) == 1 else out_dir / a) for a in names}
    work = out_dir / "_work"
    dirs["_work"] = work / "pass1"
    settings = dict(asdict(cfg), docs=str(Path(docs_path).resolve()), tokenizer=str(Path(tok_path).resolve()),
                    arms=[[a, str(Path(s).resolve()) if s else None] for a, s in arms], select=select)
    check_settings(work, settings)
    common = dict(task=task, workers=workers, settings=settings, quiet=True)

    def wait(stage):
        print(f"phase2: {stage} pending in other tasks; rerun when all {tasks} are done", flush=True)

    if run_tasks(work / "pass1", tasks, pass1_task, args=(str(docs_path), arms, str(tok_path), str(work / "pass1"), cfg),
                 name="phase2/pass1", **common) is None:
        return wait("pass1")
    hist, maxdoc = merged_hist(work / "pass1", tasks)
    total_all = sum(int(h[0].sum()) for key, h in hist.items() if key.startswith(arms[0][0] + "|"))
    budget = cfg.budget_tokens
    if budget > total_all:
        print(f"phase2: budget {budget:,} exceeds the corpus' {total_all:,} tokens: taking everything")
        budget = total_all
    langs, total, bounds = boundary_bins(hist, arms, maxdoc, budget)
    if run_tasks(work / "bounds", tasks, bounds_task, args=(str(docs_path), arms, str(work / "pass1"), bounds, cfg),
                 name="phase2/bounds", **common) is None:
        return wait("bounds")
    plan = cuts(work / "bounds", tasks, arms, hist, langs, total, bounds, budget)
    if run_tasks(work / "select", tasks, select_task, args=(str(docs_path), arms, {k: str(v) for k, v in dirs.items()},
                                                            plan, cfg), name="phase2/select", **common) is None:
        return wait("select")
    for a in names:
        (dirs[a] / "selected" / "settings.json").write_text(json.dumps({"n_tasks": tasks}))
        for k in range(tasks):
            (dirs[a] / "selected" / f"done-{k:05d}").write_text("")
    summary = {}
    for a in names:
        info = plan[a]
        sel_tokens = sum(v["selected_tokens"] for v in info.values())
        sel_docs = sum(v["selected_docs"] for v in info.values())
        man = pack_run(dirs[a] / "selected", tok_path, dirs[a], tasks=tasks, task=task, workers=workers,
                       cfg=PackConfig(source="phase2", val_fraction=cfg.val_fraction, seed=cfg.seed))
        if man is None:
            return wait(f"pack ({a})")
        plot(info, dirs[a] / "hist.png", cfg.bins)
        # the repeat count lives on each train shard: train.py draws it `epochs` times per pass
        for s in man["shards"]:
            s["epochs"] = cfg.epochs if s["split"] == "train" else 1
        man["phase2"] = {"arm": a, "select": RANDOM if a == RANDOM else "top", "budget_tokens": budget,
                         "selected_tokens": sel_tokens, "epochs": cfg.epochs, "selected_docs": sel_docs,
                         "selected_tokens_per_language": {l: v["selected_tokens"] for l, v in info.items()},
                         "scores_dir": dict(arms)[a] and str(Path(dict(arms)[a]).resolve()),
                         "reference_arm": arms[0][0], "selected_dir": str((dirs[a] / "selected").resolve())}
        man["settings"] = dict(man["settings"], epochs=cfg.epochs, budget_tokens=budget)
        write_manifest(dirs[a], man)
        stats = {"arm": a, "budget_tokens": budget, "selected_tokens": sel_tokens, "selected_docs": sel_docs,
                 "corpus_tokens": total, "corpus_docs": sum(v["docs"] for v in info.values()),
                 "languages": {l: {k: v for k, v in d.items() if k not in ("hist", "cut")} for l, d in info.items()}}
        (dirs[a] / "selection.json").write_text(json.dumps(stats, indent=1))
        summary[a] = stats
        print(f"phase2 [{a}]: selected {sel_docs:,} of {stats['corpus_docs']:,} docs, {sel_tokens:,} tokens "
              f"(budget {budget:,}), x{cfg.epochs} epochs; per language: "
              + ", ".join(f"{l} {v['selected_tokens']:,} ({v['selected_share']:.1%} vs {v['share']:.1%})"
                          for l, v in sorted(info.items(), key=lambda kv: -kv[1]["tokens"])), flush=True)
    if len(names) > 1:
        tmp = out_dir / "arms.json.tmp"
        tmp.write_text(json.dumps({a: {"dir": str(dirs[a]), "selected_tokens": s["selected_tokens"],
                                       "selected_docs": s["selected_docs"], "epochs": cfg.epochs,
                                       "tokens_per_language": {l: v["selected_tokens"] for l, v in s["languages"].items()}}
                                   for a, s in summary.items()}, indent=1))
        os.replace(tmp, out_dir / "arms.json")
    return summary[names[0]] if len(names) == 1 else summary


def main(argv=None):
    ap = argparse.ArgumentParser(description="Phase-2 data: top-scored documents per language up to a token "
                                             "budget, packed into shards repeated --epochs times; control arms.")
    ap.add_argument("--docs", required=True, help="phase-1 documents (step dir) that were scored")
    ap.add_argument("--scores", nargs="*", default=[],
                    help="annotate.py score outputs (part files aligned with --docs), one per annotator")
    ap.add_argument("--select", choices=("top", "random", "all"), default="top",
                    help="top: one arm per --scores; random: seeded random documents at the first annotator's "
                         "per-language tokens; all: both (arms in OUT/<arm>/)")
    ap.add_argument("--tokenizer", required=True, help="the phase-1 tiktoken rank file")
    ap.add_argument("--budget-tokens", type=int, required=True, help="unique tokens to select (paper: 12.5B)")
    ap.add_argument("--out", required=True, help="output dir (manifest.json, shards, selected/, hist.png)")
    ap.add_argument("--epochs", type=int, default=4, help="repeats of the selected data in training")
    ap.add_argument("--val-fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1337, help="val choice, file order and the random arm")
    add_task_args(ap)
    a = ap.parse_args(argv)
    run(a.docs, a.scores, a.tokenizer, a.out,
        Phase2Config(budget_tokens=a.budget_tokens, epochs=a.epochs, val_fraction=a.val_fraction, seed=a.seed),
        select=a.select, tasks=a.tasks, task=a.task, workers=a.workers)


if __name__ == "__main__":
    main()
