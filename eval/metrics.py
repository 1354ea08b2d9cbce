"""
Scores: the unbiased pass@k estimator (Chen et al. 2021) and the per-benchmark summary.

pass@k for one task with n samples of which c pass is 1 - C(n-c, k) / C(n, k): the chance that
k samples drawn without replacement include a passing one. Averaged over tasks. Computed as a
running product so that n in the hundreds does not overflow.
"""
import json
from collections import defaultdict


def pass_at_k(n: int, c: int, k: int) -> float:
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    p = 1.0
    for i in range(n - c + 1, n + 1):  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        p *= 1.0 - k / i
    return 1.0 - p


def summarize(verdicts: list[dict], ks=(1, 10, 100)) -> dict:
    """{task: {"pass@k": ..., "tasks": N, "samples": S, "skipped": [...], "n_per_task": ...}} from
    verdict records. Skipped tasks (missing modules) are counted, not scored."""
    by = defaultdict(lambda: defaultdict(list))
    for v in verdicts:
        by[v["task"]][v["task_id"]].append(v)
    out = {}
    for task, tasks in sorted(by.items()):
        scored = {t: vs for t, vs in tasks.items() if not any(v["status"] == "skipped" for v in vs)}
        skipped = sorted(t for t in tasks if t not in scored)
        ns = [len(vs) for vs in scored.values()]
        cs = [sum(bool(v["passed"]) for v in vs) for vs in scored.values()]
        row = dict(tasks=len(scored), samples=sum(ns), skipped=len(skipped), skipped_ids=skipped,
                   passed_tasks=sum(c > 0 for c in cs))
        for k in ks:
            if ns and min(ns) >= k:
                row[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in zip(ns, cs)) / len(ns)
        statuses = defaultdict(int)
        for vs in scored.values():
            for v in vs:
                statuses[v["status"]] += 1
        row["statuses"] = dict(statuses)
        out[task] = row
    return out


def markdown_table(summary: dict, title: str = "") -> str:
    ks = sorted({int(k[5:]) for row in summary.values() for k in row if k.startswith("pass@")})
    head = "| task | tasks | samples | " + " | ".join(f"pass@{k}" for k in ks) + " | skipped | statuses |"
    lines = ([f"## {title}", ""] if title else []) + [head, "|" + "---|" * (head.count("|") - 1)]
    for task, row in summary.items():
        cells = [f"{100 * row[f'pass@{k}']:.1f}" if f"pass@{k}" in row else "-" for k in ks]
        st = ", ".join(f"{k} {v}" for k, v in sorted(row["statuses"].items()))
        lines.append(f"| {task} | {row['tasks']} | {row['samples']} | " + " | ".join(cells) + f" | {row['skipped']} | {st} |")
    return "\n".join(lines) + "\n"


def write_results(out_dir, summary: dict, meta: dict):
    from pathlib import Path
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(dict(meta=meta, summary=summary), indent=2))
    (out / "summary.md").write_text(markdown_table(summary, meta.get("title", "")))
