"""
Evaluate a checkpoint, an API model, a samples file, or the canonical solutions.

    python -m eval.run --ckpt runs/p3/export --tasks humaneval,humaneval+,mbpp,mbpp+ --out runs/eval3
    python -m eval.run --api-base http://127.0.0.1:8000/v1 --model NAME --tasks humaneval+ --out runs/eval
    python -m eval.run --samples samples.jsonl --tasks humaneval,humaneval+ --out runs/eval
    python -m eval.run --ground-truth --tasks humaneval+,mbpp+,bigcodebench --out runs/gt

Two steps, each resumable after a kill (rerun the same command): generation appends to
OUT/samples-TASK.jsonl, execution appends to OUT/verdicts-TASK.jsonl. Then OUT/results.json and
OUT/summary.md hold pass@k per task (greedy: pass@1), with per-task verdicts in the JSONL files
(first failing input or traceback). `--stage generate` stops after generation (run execution
elsewhere), `--stage execute` only scores what is there.

pass@k is over the stated task set: the whole benchmark (BigCodeBench 1,140, -hard 148), where a
task that could not run here (a module missing: skipped, with its reason) or has no sample counts
as a failure; `--limit` and `--bcb-subset` cut an explicit subset, labelled "subset: N of M tasks".
"""
import argparse
import dataclasses
import sys
import time
from pathlib import Path

from eval import data as bdata
from eval.execute import TASKS, Job, Limits, make_problems, run_jobs, is_stdlib_only, missing_modules
from eval.generate import generate_samples
from eval.jail import mode as jail_mode
from formats import AppendLog, read_jsonl
from eval.metrics import summarize, write_results, markdown_table
from eval.tasks import build_prompt, describe, evoeval
from eval.sanitize import ground_truth_program


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="checkpoint dir (HF Llama layout + tokenizer.tiktoken) to generate with")
    src.add_argument("--api-base", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    src.add_argument("--samples", help="JSONL of samples: task_id plus solution (whole program) or completion")
    src.add_argument("--ground-truth", action="store_true", help="score the canonical solutions")
    ap.add_argument("--model", help="model name for --api-base")
    ap.add_argument("--tasks", default="humaneval,humaneval+,mbpp,mbpp+", help=f"comma list of {', '.join(TASKS)}")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--limit", type=int, default=None, help="only the first N tasks of each benchmark")
    ap.add_argument("--bcb-subset", choices=["all", "stdlib", "installed"], default="all",
                    help="BigCodeBench tasks: all (the default; those needing modules this Python lacks are "
                         "skipped, not generated for, and count as failures in pass@k over the whole set); "
                         "stdlib: only those importing nothing outside the stdlib; installed: only those whose "
                         "modules this Python has. A subset's figures are labelled 'subset: N of M tasks'")
    ap.add_argument("--data", default=None, help="benchmark file or dir (default $SNOWCODER_BENCHMARKS, else download)")
    ap.add_argument("--n-samples", type=int, default=1, help="samples per task (greedy: 1)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    ap.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: all cores)")
    ap.add_argument("--stage", choices=["all", "generate", "execute"], default="all")
    ap.add_argument("--ks", default="1,10,100", help="pass@k values to report (those <= samples per task)")
    ap.add_argument("--memory-mb", type=int, default=Limits.memory_mb, help="address-space limit per sample")
    ap.add_argument("--bcb-timeout", type=float, default=Limits.bcb_timeout,
                    help="BigCodeBench: seconds for a whole test suite, as its BIGCODEBENCH_TIMEOUT_PER_TASK "
                         "(the suite gets max(this, canonical time) + 1 s, times the load factor)")
    a = ap.parse_args(argv)
    if a.api_base and not a.model:
        ap.error("--api-base needs --model")
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        ap.error(f"unknown task(s) {bad}; known: {TASKS}")
    a.tasks = tasks
    return a


def select_problems(task, args):
    """The problems to run and the task set the figures are over: dict(ids, full=size of the whole
    benchmark, subset=how it was cut or None)."""
    probs = make_problems(task, args.data)
    full, cuts, all_ids = len(probs), [], [p["task_id"] for p in probs]
    if task.startswith("bigcodebench") and args.bcb_subset != "all":
        keep = is_stdlib_only if args.bcb_subset == "stdlib" else (lambda p: not missing_modules(p))
        probs = [p for p in probs if keep(p)]
        cuts.append("stdlib-only" if args.bcb_subset == "stdlib" else "modules installed here")
    if args.limit and args.limit < len(probs):
        probs = probs[:args.limit]
        cuts.append(f"first {args.limit}")
    return probs, dict(ids=[p["task_id"] for p in probs], full=full, subset=", ".join(cuts) or None, all_ids=all_ids)


def samples_for(task, problems, args, out, model, reuse):
    """Sample rows (task_id, sample, solution) for `task`, generating what is missing."""
    path = out / f"samples-{task}.jsonl"
    if args.ground_truth:
        # the canonical solution goes through exactly the path of a model's completion
        return [dict(task_id=p["task_id"], sample=0, solution=ground_truth_program(p), canonical=True) for p in problems]
    if args.samples:
        rows, seen = read_jsonl(args.samples), {}
        by_id = {p["task_id"]: p for p in problems}
        outr = []
        for r in rows:
            if "task_id" not in r or ("solution" not in r and "completion" not in r):
                raise SystemExit(f"{args.samples}: every line needs task_id and solution or completion")
            p = by_id.get(r["task_id"])
            if p is None:
                continue
            s = r.get("sample", seen.get(r["task_id"], 0))
            seen[r["task_id"]] = s + 1
            # as EvalPlus: a solution runs as written, a completion after the task's full prompt; no sanitizing here
            code = r["solution"] if "solution" in r else p["prompt"] + r["completion"]
            outr.append(dict(task_id=r["task_id"], sample=s, solution=code))
        return outr
    if args.stage == "execute":
        return read_jsonl(path)
    problems = [p for p in problems if p["kind"] != "unittest" or not missing_modules(p)]  # skipped anyway
    return generate_samples(problems, path, model, n_samples=args.n_samples, batch_size=args.batch_size,
                            max_new_tokens=args.max_new_tokens, reuse=reuse, desc=f"generating {task}")


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    limits = Limits(memory_mb=args.memory_mb, bcb_timeout=args.bcb_timeout)
    model = None
    if args.stage != "execute" and not (args.samples or args.ground_truth):
        if args.ckpt:
            from eval.generate import LocalModel
            model = LocalModel(args.ckpt, device=args.device)
        else:
            from eval.generate import ApiModel
            model = ApiModel(args.api_base, args.model)
    # identical prompts (HumanEval/HumanEval+, MBPP/MBPP+) are generated once: seed from files on disk
    reuse = {}
    problems, task_sets = {}, {}
    for t in args.tasks:
        problems[t], task_sets[t] = select_problems(t, args)
    if model is not None:
        for t in args.tasks:
            by_id = {p["task_id"]: p for p in problems[t]}
            for r in read_jsonl(out / f"samples-{t}.jsonl"):
                if r["task_id"] in by_id and "raw" in r:
                    reuse[(build_prompt(by_id[r["task_id"]]), r["sample"])] = r["raw"]
    all_verdicts, t0 = [], time.time()
    for task in args.tasks:
        probs = problems[task]
        rows = samples_for(task, probs, args, out, model, reuse)
        if args.stage == "generate":
            print(f"{task}: {len(rows)} samples in {out / f'samples-{task}.jsonl'}")
            continue
        vpath = out / f"verdicts-{task}.jsonl"
        if args.ground_truth:
            vpath = out / f"verdicts-{task}-ground-truth.jsonl"
        ids = {p["task_id"] for p in probs}
        with AppendLog(vpath) as vlog:  # locked; a torn verdict line of a killed run is cut first
            done = {(v["task_id"], v["sample"]) for v in vlog.rows}
            by_id = {p["task_id"]: p for p in probs}
            jobs = [Job(by_id[r["task_id"]], r["solution"], r["sample"]) for r in rows
                    if r["task_id"] in by_id and (r["task_id"], r["sample"]) not in done]
            # tasks this Python cannot run (BigCodeBench modules missing): one "skipped" verdict each, counted
            have = {r["task_id"] for r in rows} | {t for t, _ in done}
            jobs += [Job(p, "", 0) for p in probs if p["kind"] == "unittest" and p["task_id"] not in have
                     and missing_modules(p)]
            if jobs:
                run_jobs(jobs, limits, args.workers, on_result=lambda v: vlog.append([v]), desc=f"executing {task}",
                         time_unittests=not args.ground_truth)
        verdicts = [v for v in read_jsonl(vpath) if v["task_id"] in ids]
        all_verdicts += verdicts
    if args.stage == "generate":
        return
    ks = [int(k) for k in args.ks.split(",")]
    summary = summarize(all_verdicts, ks, task_sets)
    if "evoeval" in args.tasks:  # EvoEval's per-category rows beside its headline, over the same stated set
        cat = lambda tid: "evoeval/" + tid.split("/")[0][len("EvoEval_"):]  # noqa: E731
        spec = task_sets.get("evoeval", {})
        cat_sets = {}
        for tid in spec.get("all_ids", []):
            cs = cat_sets.setdefault(cat(tid), dict(ids=[], full=0, subset=spec.get("subset")))
            cs["full"] += 1
        for tid in spec.get("ids", []):
            cat_sets[cat(tid)]["ids"].append(tid)
        summary.update(summarize(evoeval.category_verdicts(all_verdicts), ks, cat_sets))
    meta = dict(title=("ground truth" if args.ground_truth else args.ckpt or args.model or args.samples),
                source=dict(ckpt=args.ckpt, api_base=args.api_base, model=args.model, samples=args.samples,
                            ground_truth=args.ground_truth),
                tasks=args.tasks, limit=args.limit, bcb_subset=args.bcb_subset, n_samples=args.n_samples,
                limits=dataclasses.asdict(limits),
                max_new_tokens=args.max_new_tokens, seconds=round(time.time() - t0, 1),
                notes={"mbpp": bdata.MBPP_PLUS_PRERELEASE if any(
                    p.get("version") == bdata.MBPP_PLUS_PRERELEASE for t in args.tasks if t.startswith("mbpp")
                    for p in problems[t]) else "", **{t: describe(t) for t in args.tasks if not t.startswith("mbpp")}})
    # the OS-level sandbox the samples ran in ("bwrap"), or "none: <why>": never silent (eval/jail.py)
    meta["sandbox"] = jail_mode()
    write_results(out, summary, meta)
    with open(out / "summary.md", "a") as f:
        f.write(f"\nsandbox: {meta['sandbox']}\n")
    print(markdown_table(summary, meta["title"]))
    if meta["sandbox"] != "bwrap":
        print(f"WARNING: eval sandbox {meta['sandbox']}; these verdicts came from samples that could read this "
              "machine's files and environment", file=sys.stderr)
    print(f"wrote {out / 'results.json'} and {out / 'summary.md'}")
    return summary


if __name__ == "__main__":
    main()
