"""
Scores: the unbiased pass@k estimator (Chen et al. 2021) and the per-benchmark summary.

pass@k for one task with n samples of which c pass is 1 - C(n-c, k) / C(n, k): the chance that
k samples drawn without replacement include a passing one. Averaged over tasks. Computed as a
running product so that n in the hundreds does not overflow.

The headline is always over the stated task set: a task that was not run (skipped because this
Python lacks a module it imports, or with no sample at all) counts as a failure, so BigCodeBench's
pass@1 is over 1,140 tasks however many could run here. A run over fewer tasks than the whole
benchmark (--limit, --bcb-subset) is labelled "subset: N of M tasks", never as the full set.
"""
import json
from collections import Counter, defaultdict

NAMES = {"humaneval": "HumanEval", "humaneval+": "HumanEval+", "mbpp": "MBPP", "mbpp+": "MBPP+",
         "bigcodebench": "BigCodeBench", "bigcodebench-hard": "BigCodeBench-Hard", "evoeval": "EvoEval",
         **{f"evoeval/{c}": f"EvoEval {c}" for c in ("difficult", "creative", "subtle", "combine", "tool_use")}}


def pass_at_k(n: int, c: int, k: int) -> float:
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    p = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        p *= 1.0 - k / i
    return 1.0 - p


def label(task: str, n_tasks: int, full: int = None, subset: str = None) -> str:
    """'BigCodeBench (1,140 tasks)' for the whole benchmark, 'BigCodeBench (subset: 441 of 1,140
    tasks, stdlib-only)' for anything less."""
    name = NAMES.get(task, task)
    if full is None or (n_tasks == full and not subset):
        return f"{name} ({n_tasks:,} tasks)"
    return f"{name} (subset: {n_tasks:,} of {full:,} tasks" + (f", {subset})" if subset else ")")


def summarize(verdicts: list[dict], ks=(1, 10, 100), task_sets: dict = None) -> dict:
    """{task: row} from verdict records. task_sets, {task: dict(ids=[...], full=M, subset=desc)},
    states which tasks the figure is over (default: those the verdicts name); a task of the set
    that was skipped (missing modules) or has no verdict counts as a failure in pass@k.
    row: pass@k, tasks (the stated set), scored, samples, skipped (+ ids, reasons, tasks per
    missing module), missing
    (+ ids), passed_tasks, statuses, label, full, subset, and scored_pass@k (over the tasks that
    ran: a diagnostic, never the headline)."""
    by = defaultdict(lambda: defaultdict(list))
    for v in verdicts:
        by[v["task"]][v["task_id"]].append(v)
    task_sets = task_sets or {}
    out = {}
    for task in sorted(set(by) | set(task_sets)):
        tasks = by.get(task, {})
        spec = task_sets.get(task, {})
        ids = list(spec["ids"]) if "ids" in spec else list(tasks)
        ids_set = set(ids)
        extra = sorted(t for t in tasks if t not in ids_set)  # verdicts for tasks outside the stated set: ignored
        if extra:
            print(f"summarize: {task}: {len(extra)} verdicts for tasks outside the stated set ignored (e.g. {extra[0]})")
        scored = {t: tasks[t] for t in ids if t in tasks and not any(v["status"] == "skipped" for v in tasks[t])}
        skipped = sorted(t for t in ids if t in tasks and t not in scored)
        missing = sorted(t for t in ids if t not in tasks)
        reasons = Counter(next(v.get("reason", "skipped") for v in tasks[t] if v["status"] == "skipped") for t in skipped)
        modules = Counter(m.strip() for r in reasons.elements() if r.startswith("missing modules:")
                          for m in r.split(":", 1)[1].split(","))  # tasks per missing module
        ns = [len(vs) for vs in scored.values()]
        cs = [sum(bool(v["passed"]) for v in vs) for vs in scored.values()]
        full, subset = spec.get("full"), spec.get("subset")
        row = dict(label=label(task, len(ids), full, subset), tasks=len(ids), full=full if full is not None else len(ids),
                   subset=subset, scored=len(scored), samples=sum(ns), passed_tasks=sum(c > 0 for c in cs),
                   skipped=len(skipped), skipped_ids=skipped, skip_reasons=dict(reasons.most_common()),
                   skip_modules=dict(modules.most_common()),
                   missing=len(missing), missing_ids=missing)
        for k in ks:
            if ns and min(ns) >= k:
                hits = sum(pass_at_k(n, c, k) for n, c in zip(ns, cs))
                row[f"pass@{k}"] = hits / len(ids)  # skipped and missing tasks: 0 each
                row[f"scored_pass@{k}"] = hits / len(ns)
        statuses = Counter(v["status"] for vs in scored.values() for v in vs)
        row["statuses"] = dict(sorted(statuses.items()))
        out[task] = row
    return out


def markdown_table(summary: dict, title: str = "") -> str:
    ks = sorted({int(k[5:]) for row in summary.values() for k in row if k.startswith("pass@")})
    head = "| task | tasks | scored | samples | " + " | ".join(f"pass@{k}" for k in ks) + " | skipped | statuses |"
    lines = ([f"## {title}", ""] if title else []) + [head, "|" + "---|" * (head.count("|") - 1)]
    notes = []
    for task, row in summary.items():
        cells = [f"{100 * row[f'pass@{k}']:.1f}" if f"pass@{k}" in row else "-" for k in ks]
        st = ", ".join(f"{k} {v}" for k, v in sorted(row["statuses"].items()))
        lines.append(f"| {task} | {row['tasks']} | {row['scored']} | {row['samples']} | " + " | ".join(cells)
                     + f" | {row['skipped']} | {st} |")
        note = f"- {task}: {row['label']}"
        if row["skipped"] or row["missing"]:
            other = {r: n for r, n in row["skip_reasons"].items() if not r.startswith("missing modules:")}
            why = ([f"{row['skipped'] - sum(other.values())} skipped for missing modules (tasks per module: "
                    + ", ".join(f"{m} {n}" for m, n in row["skip_modules"].items()) + ")"] if row["skip_modules"] else [])
            why += [f"{n} {r}" for r, n in other.items()] + ([f"{row['missing']} without a sample"] if row["missing"] else [])
            note += (f"; pass@k is over all {row['tasks']:,} tasks, the {row['skipped'] + row['missing']:,} not run "
                     f"counted as failures: " + "; ".join(why))
            if "scored_pass@1" in row:
                note += f" (pass@1 over the {row['scored']:,} that ran: {100 * row['scored_pass@1']:.1f})"
        notes.append(note)
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def write_results(out_dir, summary: dict, meta: dict):
    from pathlib import Path
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(dict(meta=meta, summary=summary), indent=2))
    (out / "summary.md").write_text(markdown_table(summary, meta.get("title", "")))
