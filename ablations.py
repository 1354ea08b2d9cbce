"""
The paper's data findings as runnable experiments: Tables 3, 4, 5 and 6 at any scale.

    python speedrun.py --ablations               # the speedrun's phase 1 + annotator, then every table
    python speedrun.py --ablations --tables 4,5  # some tables
    python speedrun.py --quick --ablations       # the shortest run that produces every table (the test)

Every arm of a continued-pretraining table (4, 5, 6) starts from the same phase-1 export and trains
the same number of steps on the same batch, so every arm sees the same number of tokens; Table 3's
arms train phase 1 from scratch on the two packings. Each arm runs once per seed (--seeds, default 2;
the seed sets the data order, and the random arm's draw) so the report can show the spread.

  Table 3  packing:     by repository | by language, then repository (adopted)
  Table 4  annotators:  phase-1 model | random tokens (the control) | each annotator's top tokens
  Table 5  schedule:    linear MIN_LR -> 0 | constant MIN_LR | re-warmup 0 -> MAX_LR -> 0 (adopted)
  Table 6  repetition:  1x, 2x, 3x, 4x (adopted), 5x the unique budget/k, at equal total tokens

The measure is eval/loss.py's bits per byte: of each benchmark's canonical solutions given their
prompts (aligned), and of phase 1's held-out split (general). pass@1 is 0 at this size, so it is not
run here (speedrun.py runs it on its three checkpoints). The report, OUT/ablations.md, prints each
table in the paper's layout with the paper's pass@1 beside our bits per byte (mean, and min-max over
seeds), a plot per table, and one line per finding saying whether it reproduces at this scale.
"""
import json
import statistics
from pathlib import Path

from formats import TOKENIZER_FILE, read_manifest
from speedrun import PY, aligned_mean, run, stage, tokens_per_step
from train import load_config

# the paper's numbers (DESIGN.md section 5): HumanEval (+) / MBPP (+) / EvoEval, pass@1 in percent
PAPER = {
    "t3": {"by repository": "12.8 (10.4) / 30.7 (25.9) / 7.0",
           "by language, then repository": "17.1 (15.9) / 33.9 (27.8) / 7.4"},
    "t4": {"phase-1 model": "17.1 (15.9) / 33.9 (27.8) / 7.4", "random": "15.9 (12.8) / 30.7 (23.3) / 8.0",
           "annotator": "22.0 (18.3) / 40.2 (33.1) / 11.6 (ANN-HQINS)",
           "annotator HQ": "19.5 (16.5) / 33.9 (26.7) / 9.2 (ANN-HQ)",
           "annotator INS": "- (no such row; the paper's ANN-INS, 21.3 (18.3) / 37.3 (29.9) / 10.4, adds LLM-rated files)"},
    "t5": {"linear MIN_LR -> 0": "18.3 (16.5) / 37.0 (30.4) / 9.8", "constant MIN_LR": "20.7 (18.3) / 39.4 (31.7) / 9.4",
           "re-warmup 0 -> MAX_LR -> 0": "22.0 (18.3) / 40.2 (33.1) / 11.6"},
    "t6": {"1x": "17.4 (14.0) / 41.5 (33.6) / 9.6", "2x": "23.2 (19.5) / 42.1 (34.7) / 9.2",
           "3x": "23.8 (18.9) / 42.3 (34.4) / 11.2", "4x": "26.2 (21.3) / 40.2 (32.5) / 12.8",
           "5x": "20.1 (17.7) / 43.9 (36.0) / 10.4"},
}
TITLES = {"t3": "Table 3: packing phase-1 data", "t4": "Table 4: what continued pretraining selects",
          "t5": "Table 5: the continued-pretraining schedule", "t6": "Table 6: repetitions at equal total tokens"}
# the paper's finding per table: (better arm, worse arm), lower bits per byte being better for us
FINDINGS = {"t3": [("by language, then repository", "by repository")],
            "t4": [("annotator", "random"), ("annotator", "phase-1 model"), ("annotator", "annotator HQ")],
            "t5": [("re-warmup 0 -> MAX_LR -> 0", "linear MIN_LR -> 0"), ("re-warmup 0 -> MAX_LR -> 0", "constant MIN_LR"),
                   ("constant MIN_LR", "linear MIN_LR -> 0")],
            "t6": [("4x", "1x"), ("4x", "5x")]}
LOSS_TASKS = "humaneval+,mbpp+,evoeval"  # the benchmarks of the paper's ablation tables
# Table 4's annotators: arm -> the stand-in positive set it is trained on (prepare/positives.STANDIN_KINDS).
# "annotator" is the speedrun's own (hqins, the adopted one); the others are trained here. The first
# is the reference arm of the selection: every other arm gets its tokens per language.
ANNOTATORS = {"annotator": "hqins", "annotator HQ": "hq", "annotator INS": "ins"}


def arms(tables, p1_min_lr):
    """(table, arm, data recipe, train overrides, kind) for every arm; kind 'cpt' continues from the
    phase-1 export, 'p1' trains phase 1 from scratch, 'base' is the phase-1 export itself."""
    rewarm = {}  # cpu_phase2.py's own schedule: 0 -> its lr (phase 1's peak) -> 0
    out = []
    if "3" in tables:
        out += [("t3", "by repository", ("pack", "repo"), {}, "p1"),
                ("t3", "by language, then repository", ("pack", "language"), {}, "p1")]
    if "4" in tables:
        out += [("t4", "phase-1 model", None, None, "base"),
                ("t4", "random", ("select", "random", 4), rewarm, "cpt")]
        out += [("t4", arm, ("select", arm, 4), rewarm, "cpt") for arm in ANNOTATORS]
    if "5" in tables:
        out += [("t5", "linear MIN_LR -> 0", ("select", "annotator", 4),
                 {"lr": p1_min_lr, "min_lr": 0.0, "warmup_iters": 0, "lr_schedule": "linear"}, "cpt"),
                ("t5", "constant MIN_LR", ("select", "annotator", 4),
                 {"lr": p1_min_lr, "min_lr": p1_min_lr, "warmup_iters": 0, "lr_schedule": "linear"}, "cpt"),
                ("t5", "re-warmup 0 -> MAX_LR -> 0", ("select", "annotator", 4), rewarm, "cpt")]
    if "6" in tables:
        out += [("t6", f"{k}x", ("select", "annotator", k), rewarm, "cpt") for k in (1, 2, 3, 4, 5)]
    return out


def run_ablations(out: Path, sz, tables: str = "3,4,5,6", seeds: int = 2, timings: dict | None = None) -> Path:
    """Run every arm of the chosen tables under OUT/ablations/ and write OUT/ablations.md."""
    timings = {} if timings is None else timings
    D, R, A = out / "data", out / "runs", out / "ablations"
    L = A / "logs"
    env = {"WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    tok = D / "p1" / TOKENIZER_FILE
    p1man = read_manifest(D / "p1" / "shards")
    docs = Path(p1man["documents_dir"])
    docs = docs if docs.is_absolute() else (D / "p1" / "shards" / docs).resolve()
    # every continued-pretraining arm trains p2_iters steps: `total` tokens, so the k-x arm's unique
    # budget is total / k and it really sees its data k times (the paper: 50B = k x 50B/k)
    total = sz.p2_iters * tokens_per_step(R / "p1")
    p1cfg = load_config("configs/cpu_phase1.py")
    todo = arms(tables, p1cfg.min_lr)

    def score_dir(arm) -> Path:
        """D/scores/<annotator> (the speedrun's own for "annotator"; the others trained and scored once)."""
        kind = ANNOTATORS[arm]
        if arm == "annotator":
            return D / "scores" / "annotator"
        model, scores = R / f"annotator-{kind}", D / "scores" / f"annotator-{kind}"

        def train_score():
            run([PY, "annotate.py", "train", "--docs", docs, "--out", model, "--window", sz.score_window,
                 "--max-positives", sz.max_positives, "--standin", kind], L / f"annotator-{kind}.log", env)
            run([PY, "annotate.py", "score", "--model", model, "--docs", docs, "--out", scores, "--tasks", sz.tasks],
                L / f"annotator-{kind}.log", env)
            run([PY, "annotate.py", "auc", "--model", model, "--docs", docs, "--limit", sz.auc_limit],
                L / f"annotator-{kind}.log", env)
        stage(A, f"annotator-{kind}", train_score, timings)
        return scores

    def data_for(recipe, seed):
        """The shard dir an arm trains on; built once per (recipe, seed) (the random draw is seeded)."""
        if recipe[0] == "pack":
            d = A / "data" / f"pack-{recipe[1]}"
            if recipe[1] == "language":
                return D / "p1" / "shards"
            stage(A, d.name, lambda: run([PY, "-m", "prepare.pack", "--in", docs, "--tokenizer", tok, "--out", d,
                                          "--group", "repo", "--tasks", sz.tasks], L / f"{d.name}.log", env), timings)
            return d
        _, how, k = recipe
        # one phase2 run per (repetition, seed) makes both arms: the annotator's top tokens and the
        # random control at exactly the annotator arm's tokens per language
        # Table 4's repetition (4x) selects with every annotator at once, so its arms share the budgets
        scored = [a for a in ANNOTATORS if k == 4 and "4" in tables or a == "annotator"]
        # the name says which annotators scored it: a --tables 5 run (one annotator) and a later
        # --tables 4 on the same --out (three) must not share a selection dir
        name = f"select-{k}x-{len(scored)}ann-s{seed}"
        d = A / "data" / name
        cmd = [PY, "-m", "prepare.phase2", "--docs", docs, "--scores", *[score_dir(a) for a in scored], "--select", "all",
               "--tokenizer", tok, "--budget-tokens", total // k, "--epochs", k, "--seed", seed,
               "--tasks", sz.tasks, "--out", d]
        stage(A, name, lambda: run(cmd, L / f"{name}.log", env), timings)
        return d / ("random" if how == "random" else score_dir(how).name)

    def train_arm(kind, recipe, overrides, seed) -> Path:
        """Train one arm (once: arms of different tables with the same data, schedule and seed, like
        Table 4's annotator and Table 5's re-warmup, share the run) and return its export."""
        sched = "-".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "default"
        name = f"{kind}-{'-'.join(map(str, recipe))}-{sched}-s{seed}".replace(" ", "")
        run_dir = A / "runs" / name
        data = data_for(recipe, seed)
        if kind == "p1":
            cmd = [PY, "train.py", "configs/cpu_phase1.py", f"--max_iters={sz.p1_iters}"]
        else:
            cmd = [PY, "train.py", "configs/cpu_phase2.py", f"--init_from={R / 'p1' / 'export'}",
                   f"--max_iters={sz.p2_iters}"] + [f"--{k}={v}" for k, v in sorted(overrides.items())]
        cmd += [f"--data_dir={data}", f"--out_dir={run_dir}", f"--seed={seed}", "--wandb_log=False"]
        stage(A, f"train-{name}", lambda: run(cmd, L / f"train-{name}.log", env), timings)
        return run_dir / "export"

    def loss_of(ckpt: Path) -> dict:
        name = ckpt.parent.name if ckpt.name == "export" else ckpt.name
        res_file = A / "loss" / f"{name}.json"
        stage(A, f"loss-{name}", lambda: run(
            [PY, "-m", "eval.loss", "--ckpt", ckpt, "--tasks", LOSS_TASKS, "--heldout", D / "p1" / "shards",
             "--heldout-tokens", sz.heldout_tokens, "--limit", sz.loss_limit, "--out", res_file],
            L / f"loss-{name}.log", env), timings)
        return json.loads(res_file.read_text())

    results = {}
    for table, arm, recipe, overrides, kind in todo:
        for s in range(1 if kind == "base" else seeds):  # the phase-1 model is one checkpoint
            ckpt = R / "p1" / "export" if kind == "base" else train_arm(kind, recipe, overrides, 1337 + s)
            results.setdefault((table, arm), []).append(loss_of(ckpt))
    # Fig. 2: each annotator's ROC-AUC on benchmark solutions vs random corpus files (annotate.py auc)
    aucs = {}
    for arm, kind in ANNOTATORS.items():
        f = R / ("annotator" if arm == "annotator" else f"annotator-{kind}") / "auc.json"
        if ("t4", arm) in results and f.exists():
            aucs[arm] = json.loads(f.read_text())["roc_auc"]
    return write_ablation_report(out, results, seeds, aucs)


# -----------------------------------------------------------------------------
# the report

def _metric(res: dict, name: str):
    if name == "held-out":
        return res["heldout"].get("all", {}).get("bpb")
    return res["aligned"].get(name, {}).get("bpb")


def verdict(better: list[float], worse: list[float], a: str, b: str) -> str:
    """One honest line: does 'a beats b' (lower bpb) reproduce, by how much, against the seed spread."""
    mb, mw = statistics.mean(better), statistics.mean(worse)
    spread = max(max(better) - min(better), max(worse) - min(worse))
    diff = mw - mb
    if max(len(better), len(worse)) < 2:
        what = ("same direction" if diff > 0 else "the opposite") + " (one seed: no spread to judge it against)"
    elif diff > 0 and diff > spread:
        what = "reproduces"
    elif diff > 0:
        what = "same direction, but within the seed spread"
    elif -diff > spread:
        what = "does not reproduce (the opposite, beyond the seed spread)"
    else:
        what = "does not reproduce (the opposite, within the seed spread)"
    return (f"- paper: *{a}* beats *{b}*. Here: {what}: mean aligned bpb {mb:.4f} vs {mw:.4f} "
            f"(difference {diff:+.4f}, seed spread {spread:.4f}).")


def fig2_lines(results: dict, aucs: dict) -> list[str]:
    """The paper's Fig. 2 claim, checked: does a higher annotator ROC-AUC go with a better arm?
    Counted over every pair of annotators (concordant = the higher AUC has the lower mean aligned bpb)."""
    arms = sorted(aucs, key=aucs.get)
    bpb = {a: statistics.mean(aligned_mean(r) for r in results[("t4", a)]) for a in arms}
    lines = ["## Fig. 2: annotator ROC-AUC against the arm's aligned bits per byte", "",
             "| annotator | ROC-AUC (benchmark solutions vs corpus files) | mean aligned bpb |", "|---|---|---|"]
    lines += [f"| {a} | {aucs[a]:.4f} | {bpb[a]:.4f} |" for a in arms]
    pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:] if aucs[a] != aucs[b]]
    conc = sum(bpb[b] < bpb[a] for a, b in pairs)  # b has the higher AUC
    lines += ["", f"- paper: the annotator's ROC-AUC tracks downstream quality almost monotonically. Here: "
              f"{conc} of {len(pairs)} annotator pairs concordant (higher AUC, lower bpb)"
              + (" (fewer than 2 annotators: nothing to compare)." if not pairs else "."), ""]
    return lines


def write_ablation_report(out: Path, results: dict, seeds: int, aucs: dict | None = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    A = out / "ablations"
    lines = ["# The paper's ablations at toy scale", "",
             "Bits per byte (lower is better) of each benchmark's canonical solutions given the prompt (aligned), "
             "and of phase 1's held-out split. Each cell: mean over seeds [min-max]. "
             f"{seeds} seed(s) per arm. The paper's column is its pass@1, HumanEval (+) / MBPP (+) / EvoEval.", ""]
    subsets = sorted({f"{n} {v['subset']}" for rs in results.values() for r in rs for n, v in r["aligned"].items()
                      if v.get("subset")})
    if subsets:
        lines += ["**Subsets** (a shortened run): " + "; ".join(subsets) + ".", ""]
    tables = sorted({t for t, _ in results})
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.6), squeeze=False)
    for ax, t in zip(axes[0], tables):
        arm_names = [a for tt, a in results if tt == t]
        cols = sorted({n for (tt, _), rs in results.items() if tt == t for r in rs for n in r["aligned"]})
        lines += [f"## {TITLES[t]}", "",
                  "| arm | paper pass@1 | " + " | ".join(f"{c} bpb" for c in cols) + " | held-out bpb |",
                  "|---" * (len(cols) + 3) + "|"]
        for a in arm_names:
            rs = results[(t, a)]
            cells = []
            for c in cols + ["held-out"]:
                v = [x for x in (_metric(r, c) for r in rs) if x is not None]
                cells.append(f"{statistics.mean(v):.4f} [{min(v):.4f}-{max(v):.4f}]" if v else "-")
            lines.append(f"| {a} | {PAPER[t].get(a, '-')} | " + " | ".join(cells) + " |")
        lines += [""]
        for a, b in FINDINGS[t]:
            if (t, a) in results and (t, b) in results:
                lines.append(verdict([aligned_mean(r) for r in results[(t, a)]],
                                     [aligned_mean(r) for r in results[(t, b)]], a, b))
        lines += [""]
        means = [[aligned_mean(r) for r in results[(t, a)]] for a in arm_names]
        ax.bar(range(len(arm_names)), [statistics.mean(m) for m in means],
               yerr=[[statistics.mean(m) - min(m) for m in means], [max(m) - statistics.mean(m) for m in means]],
               capsize=3)
        ax.set_xticks(range(len(arm_names)), [a.replace(", then", ",\nthen").replace(" -> ", "->\n") for a in arm_names],
                      fontsize=7)
        lo = min(min(m) for m in means)
        hi = max(max(m) for m in means)
        ax.set_ylim(lo - (hi - lo) * 0.5 - 1e-3, hi + (hi - lo) * 0.5 + 1e-3)
        ax.set_title(TITLES[t].split(":")[0]); ax.set_ylabel("aligned bits/byte (mean of benchmarks)")
    fig.tight_layout()
    fig.savefig(A / "ablations.png", dpi=110)
    plt.close(fig)
    lines += ["![aligned bits per byte per arm](ablations/ablations.png)", ""]
    if aucs:
        lines += fig2_lines(results, aucs)
    path = out / "ablations.md"
    path.write_text("\n".join(lines))
    json_rows = {f"{t}/{a}": [{"aligned": {k: v["bpb"] for k, v in r["aligned"].items()},
                               "heldout": r["heldout"].get("all", {}).get("bpb")} for r in rs]
                 for (t, a), rs in results.items()}
    json_rows["fig2_roc_auc"] = aucs or {}
    (A / "results.json").write_text(json.dumps(json_rows, indent=1))
    return path
