"""
The task runner every data step uses (datatrove's idea, in ~150 lines).

A step splits its work into N tasks. Task K writes DIR/part-KKKKK.jsonl.gz (or whatever the step
makes), then DIR/stats-KKKKK.json, then the completion marker DIR/done-KKKKK, in that order, so a
task that died midway has no marker and is redone by the next run, while finished ones are skipped.

    run_tasks(step_dir, n_tasks, fn, args=(...))     # fn(k, n_tasks, *args) -> stats dict

Which tasks run:
  --task K                  only task K (run the array yourself: one process per task),
  $SLURM_ARRAY_TASK_ID      the same, set by `sbatch --array=0-(N-1)`,
  neither                   every unfinished task, locally, in a process pool of --workers.

A stats dict holds counts ("docs_in", "docs_out", "bytes_in", "bytes_out", ...) and "dropped":
{reason: count}; the runner adds timing, sums all tasks into DIR/stats.json once every task is
done, and prints a one-line human summary. annotate.py and synthesize.py reuse it.
"""
import json
import os
import sys
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from formats import doc_files, read_docs, write_json


def add_task_args(ap, tasks_default: int = 1):
    """The scale-out flags every step CLI shares."""
    ap.add_argument("--tasks", type=int, default=tasks_default, help="split the step into this many tasks")
    ap.add_argument("--task", type=int, default=None,
                    help="run only task K of --tasks (default: $SLURM_ARRAY_TASK_ID if set, else all tasks)")
    ap.add_argument("--workers", type=int, default=None, help="local processes (default: min(tasks, cpu count))")
    return ap


def selected_tasks(n_tasks: int, task: int | None = None) -> list[int]:
    if task is None and os.environ.get("SLURM_ARRAY_TASK_ID") is not None:
        task = int(os.environ["SLURM_ARRAY_TASK_ID"])
    if task is None:
        return list(range(n_tasks))
    if not 0 <= task < n_tasks:
        raise SystemExit(f"--task {task} is out of range for --tasks {n_tasks}")
    return [task]


def done_marker(step_dir, k: int) -> Path:
    return Path(step_dir) / f"done-{k:05d}"


def is_done(step_dir, n_tasks: int) -> bool:
    return all(done_marker(step_dir, k).exists() for k in range(n_tasks))


def check_settings(step_dir, settings: dict):
    """Refuse to mix finished tasks made with other settings into this run."""
    step_dir = Path(step_dir)
    step_dir.mkdir(parents=True, exist_ok=True)
    f = step_dir / "settings.json"
    settings = json.loads(json.dumps(settings, default=str))
    if f.exists():
        old = json.loads(f.read_text())
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise SystemExit(f"{step_dir}: earlier tasks ran with other settings ({', '.join(diff)}); "
                             f"delete the directory or rerun with the same settings")
    else:
        write_json(f, settings, sort_keys=True)


def _run_one(fn, step_dir, k, n_tasks, args):
    t0 = time.time()
    for stale in Path(step_dir).glob(f"*-{k:05d}*.tmp*"):   # left by an earlier, killed attempt
        stale.unlink(missing_ok=True)
    stats = fn(k, n_tasks, *args) or {}
    stats = dict(stats, task=k, n_tasks=n_tasks, seconds=round(time.time() - t0, 3))
    sf = Path(step_dir) / f"stats-{k:05d}.json"
    sf.write_text(json.dumps(stats, indent=1, sort_keys=True))
    done_marker(step_dir, k).write_text("")           # last: the task is complete
    return k


class TaskFailed(Exception):
    pass


def _pool_entry(payload):
    fn, step_dir, k, n_tasks, args = payload
    try:
        return _run_one(fn, step_dir, k, n_tasks, args)
    except SystemExit as e:          # a clean one-line failure: pass the message to the parent
        raise TaskFailed(str(e)) from None


def run_tasks(step_dir, n_tasks: int, fn, args=(), task: int | None = None, workers: int | None = None,
              name: str | None = None, settings: dict | None = None, quiet: bool = False) -> dict | None:
    """Run the unfinished tasks of a step. Returns the merged stats once all N tasks are done
    (also written to step_dir/stats.json), else None (other tasks still pending elsewhere)."""
    step_dir = Path(step_dir)
    name = name or step_dir.name
    if n_tasks < 1:
        raise SystemExit(f"{name}: --tasks must be >= 1")
    step_dir.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        check_settings(step_dir, dict(settings, n_tasks=n_tasks))
    todo = [k for k in selected_tasks(n_tasks, task) if not done_marker(step_dir, k).exists()]
    skipped = len(selected_tasks(n_tasks, task)) - len(todo)
    if skipped and not quiet:
        print(f"{name}: {skipped} task(s) already done, skipped", flush=True)
    workers = min(len(todo), workers or os.cpu_count() or 1)
    if todo:
        bar = tqdm(total=len(todo), desc=f"{name} tasks", unit="task", disable=quiet or len(todo) == 1, file=sys.stderr)
        if workers <= 1:
            for k in todo:
                _run_one(fn, step_dir, k, n_tasks, args)
                bar.update()
        else:
            with get_context("fork").Pool(workers) as pool:
                try:
                    for _ in pool.imap_unordered(_pool_entry, [(fn, step_dir, k, n_tasks, args) for k in todo]):
                        bar.update()
                except TaskFailed as e:
                    raise SystemExit(str(e)) from None
        bar.close()
    if not is_done(step_dir, n_tasks):
        left = sum(not done_marker(step_dir, k).exists() for k in range(n_tasks))
        if not quiet:
            print(f"{name}: {n_tasks - left}/{n_tasks} tasks done; run the others (or rerun without --task)", flush=True)
        return None
    merged = merge_stats(step_dir, n_tasks)
    if not quiet:
        print(summary_line(name, merged), flush=True)
    return merged


def merge_stats(step_dir, n_tasks: int) -> dict:
    """Sum the per-task stats files into step_dir/stats.json."""
    total, nested, extra = Counter(), {"dropped": Counter()}, {}
    for k in range(n_tasks):
        s = json.loads((Path(step_dir) / f"stats-{k:05d}.json").read_text())
        for key, v in s.items():
            if key in ("task", "n_tasks"):
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total[key] += v
            elif isinstance(v, dict):            # {reason or language: count}: summed key by key
                nested.setdefault(key, Counter()).update(v)
            else:
                extra.setdefault(key, v)
    merged = dict(extra, **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in total.items()},
                  **{k: dict(sorted(c.items(), key=lambda kv: -kv[1])) for k, c in nested.items()}, n_tasks=n_tasks)
    write_json(Path(step_dir) / "stats.json", merged, sort_keys=True)
    return merged


def summary_line(name: str, s: dict) -> str:
    line = f"{name}: {s.get('docs_in', 0):,} -> {s.get('docs_out', 0):,} docs"
    if "bytes_in" in s and "bytes_out" in s:
        line += f" ({s['bytes_in'] / 1e6:.1f} MB -> {s['bytes_out'] / 1e6:.1f} MB)"
    if "tokens" in s:
        line += f", {s['tokens']:,} tokens"
    if s.get("dropped"):
        line += "; dropped: " + ", ".join(f"{r} {n:,}" for r, n in s["dropped"].items())
    line += f"; {s.get('seconds', 0):.1f} task-seconds"
    return line


def task_docs(in_dir, k: int, n_tasks: int):
    """The input documents of task k: whole part files round-robin when there are at least as
    many parts as tasks (each task reads only its own files), else every k-th document."""
    parts = doc_files(in_dir)
    if len(parts) >= n_tasks:
        for f in parts[k::n_tasks]:
            yield from read_docs(f)
    else:
        for i, d in enumerate(d for f in parts for d in read_docs(f)):
            if i % n_tasks == k:
                yield d


def filtered(docs, stats: dict, rule):
    """The documents `rule(i, doc)` keeps (it returns None) or drops (it returns the reason). The
    counting is owned here, so a filtering step writes only its rule: docs and bytes in and out,
    and each drop under its reason in stats["dropped"]."""
    for key in ("docs_in", "docs_out", "bytes_in", "bytes_out"):
        stats.setdefault(key, 0)
    dropped = stats.setdefault("dropped", {})
    for i, d in enumerate(docs):
        n = len(d["content"].encode("utf-8", "surrogatepass"))
        stats["docs_in"] += 1
        stats["bytes_in"] += n
        reason = rule(i, d)
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        stats["docs_out"] += 1
        stats["bytes_out"] += n
        yield d


def require_done(in_dir, what: str = "input"):
    """A step reading another step's output insists that step finished (all its tasks)."""
    in_dir = Path(in_dir)
    if not in_dir.exists():
        raise SystemExit(f"{what} not found: {in_dir}")
    markers = sorted(in_dir.glob("done-*"))
    settings = in_dir / "settings.json"
    if settings.exists():
        n = json.loads(settings.read_text()).get("n_tasks")
        if n is not None and len(markers) < n:
            raise SystemExit(f"{what} {in_dir} is incomplete: {len(markers)}/{n} tasks done; finish that step first")
    if not any(in_dir.glob("part-*.jsonl.gz")):
        raise SystemExit(f"{what} {in_dir} holds no part-*.jsonl.gz documents")
