"""
Decontaminate: drop every document that contains a piece of an evaluation benchmark.

    python -m prepare.decontaminate --in D/dedup --out D/decontaminate [--benchmarks DIR] --tasks 4

    m = BenchmarkMatcher()                  # every benchmark in $SNOWCODER_BENCHMARKS / ../shared/benchmarks
    m.match(text)  -> [{"benchmark": "humaneval", "task_id": "HumanEval/0", "field": "canonical_solution"}]

What is matched: the code and text of every benchmark item (prompts, canonical solutions, tests,
MBPP's test asserts one by one and together, BigCodeBench's prompts, GSM8K's questions and
answers), and each HumanEval-style prompt followed by its solution. Both sides are normalized the
same way before tokenizing: comment markers at the start of a line (# // /* * -- ; %) and a
closing */ are removed, quote characters (' " `) are removed (so docstring delimiters and quote
style do not matter), and the text becomes a token sequence (words and single punctuation marks:
whitespace and layout ignored). A question pasted as # comments, a docstring turned into //
comments or a re-indented solution still match.
A document is contaminated when, with any item, it
  - shares a run of `ngram` (24) consecutive tokens, or
  - contains a whole short field of `min_tokens`..ngram-1 tokens (an MBPP assert is ~15 tokens), or
  - contains a whole short solution field (canonical_solution, code, answer) of `short_solution`
    (8) or more tokens, which needs only 2 identifier tokens (arithmetic-heavy answers are mostly
    numbers and operators), or
  - is, as a whole, a field or prompt + solution (exact normalized match, any length >= 3
    tokens). A prompt's signature without its docstring followed by the solution is a solution
    field too, so `def strlen(string: str) -> int: return len(string)` is found in any file.
Boilerplate that many items share ("def check(candidate):", BigCodeBench's import blocks and
unittest scaffolding) would match ordinary code, so a run found in more than `max_items` distinct
items is not used. The false-positive rate on a clean corpus (site-packages) is measured by
`python -m prepare.bench --decontam` and reported in the README.

Hashing: a token is crc32'd; the run of L tokens starting at i hashes to sum_t h[i+t] R^t mod 2^64,
computed for every i at once from prefix sums (R odd, so R^-i exists mod 2^64): O(1) numpy passes
per run length, whatever L is.
"""
import argparse
import json
import os
import re
import zlib
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

from formats import benchmark_dirs, iter_jsonl, part_name, write_docs
from prepare.pipeline import add_task_args, done_marker, filtered, require_done, run_tasks, selected_tasks, task_docs



@dataclass
class DecontamConfig:
    ngram: int = 24          # tokens in a shared run that counts as contamination
    min_tokens: int = 10     # shorter benchmark fields are not matched at all
    max_items: int = 8       # runs found in more distinct items than this are boilerplate
    short_solution: int = 8  # solution fields from this many tokens on are matched whole
    min_exact: int = 3       # a whole document equal to a field this long (or longer) counts


# fields that hold code or problem text, by benchmark file; anything else (inputs, metadata) is skipped
TEXT_FIELDS = ("prompt", "canonical_solution", "test", "code", "test_list", "challenge_test_list",
               "complete_prompt", "instruct_prompt", "code_prompt", "assertion", "question", "answer", "text")

_TOK = re.compile(r"\w+|[^\w\s]")
_COMMENT = re.compile(r"(?m)^[ \t]*(?:#+|//+|/\*+|\*+/?|--+|;+|%+)|\*+/[ \t]*$")
_QUOTES = str.maketrans("", "", "'\"`")
SOLUTION_FIELDS = ("canonical_solution", "code", "answer")
_DOCSTRING = re.compile(r'"""(?:.|\n)*?"""|\'\'\'(?:.|\n)*?\'\'\'')


def normalize(text: str) -> str:
    """What both sides are matched on: leading comment markers and closing */ removed, quotes
    removed (whitespace is dropped by the tokenizer)."""
    return _COMMENT.sub(" ", text).translate(_QUOTES)
_R = 0x9E3779B97F4A7C15                 # odd: invertible mod 2^64
_R_INV = pow(_R, -1, 2**64)
_pw = np.ones(1, dtype=np.uint64)
_ipw = np.ones(1, dtype=np.uint64)


def _powers(n: int):
    """R^t and R^-t for t < n (mod 2^64), grown on demand."""
    global _pw, _ipw
    if len(_pw) < n:
        m = max(n, 2 * len(_pw))
        _pw = np.cumprod(np.r_[np.uint64(1), np.full(m - 1, _R, dtype=np.uint64)], dtype=np.uint64)
        _ipw = np.cumprod(np.r_[np.uint64(1), np.full(m - 1, _R_INV, dtype=np.uint64)], dtype=np.uint64)
    return _pw[:n], _ipw[:n]


_WORDY = re.compile(r"[^\W\d_]")


class _TokenCache(dict):
    """token -> crc32 + 1, computed once per distinct token (code repeats its tokens endlessly,
    and a C-level dict lookup is much cheaper than encoding and hashing again)."""
    def __missing__(self, t):
        if len(self) > 2_000_000:
            self.clear()
        v = self[t] = zlib.crc32(t.encode("utf-8", "surrogatepass")) + 1
        return v


class _WordyCache(dict):
    def __missing__(self, t):
        if len(self) > 2_000_000:
            self.clear()
        v = self[t] = len(t) > 1 and _WORDY.search(t) is not None
        return v


_hash_of = _TokenCache()
_wordy_of = _WordyCache()


def token_hashes(text: str, wordy: bool = False):
    """crc32 (+1) of each token of the normalized text; with wordy=True also a bool array: token has
    a letter and >= 2 characters (identifiers and keywords, not numbers, single letters or punctuation)."""
    toks = _TOK.findall(normalize(text))
    h = np.fromiter(map(_hash_of.__getitem__, toks), dtype=np.uint64, count=len(toks))
    if not wordy:
        return h
    w = np.fromiter(map(_wordy_of.__getitem__, toks), dtype=bool, count=len(toks))
    return h, w


def run_hashes(h: np.ndarray, lengths) -> dict:
    """{L: hashes of every run of L consecutive tokens} for each L <= len(h)."""
    n = len(h)
    pw, ipw = _powers(n + 1)
    with np.errstate(over="ignore"):
        c = np.concatenate([np.zeros(1, np.uint64), np.cumsum(h * pw[:n], dtype=np.uint64)])
        return {L: (c[L:] - c[:-L]) * ipw[:n - L + 1] for L in lengths if L <= n}


# -----------------------------------------------------------------------------
# benchmark items

def default_bench_dir() -> Path:
    """The first place formats.benchmark_dirs names that exists ($SNOWCODER_BENCHMARKS, ../shared/benchmarks)."""
    dirs = benchmark_dirs()
    if not dirs:
        raise SystemExit("decontaminate: no benchmark directory found (set --benchmarks or $SNOWCODER_BENCHMARKS)")
    return dirs[0]


def benchmark_records(bench_dir=None) -> list[tuple[str, dict]]:
    """(benchmark name, record) for every benchmark file in bench_dir: through eval.data's loader
    when it exists (the names evaluation uses), every other *.jsonl(.gz) file read directly."""
    bench_dir = Path(bench_dir or default_bench_dir())
    if not bench_dir.is_dir():
        raise SystemExit(f"decontaminate: benchmark directory not found: {bench_dir} "
                         f"(set --benchmarks or $SNOWCODER_BENCHMARKS)")
    out, used = [], set()
    try:
        from eval import data as evdata
    except ImportError:
        evdata = None
    if evdata is not None:
        for name in getattr(evdata, "NAMES", []):
            files = [bench_dir / f for f in evdata.SOURCES[name]["files"] if (bench_dir / f).is_file()]
            if not files:
                continue                                  # never download from here
            try:
                recs = evdata.load_benchmark(name, path=bench_dir)
            except Exception as e:                        # noqa: BLE001 - fall back to reading the file
                print(f"decontaminate: eval.data could not load {name} ({e}); reading {files[0].name} directly")
                continue
            used.add(files[0].name)
            out += [(name, r) for r in recs]
    for f in sorted(bench_dir.iterdir()):
        if f.name in used or not f.name.endswith((".jsonl", ".jsonl.gz")):
            continue
        out += [(f.name.split(".jsonl")[0], r) for r in iter_jsonl(f)]
    if not out:
        raise SystemExit(f"decontaminate: no benchmark files (*.jsonl.gz) in {bench_dir}")
    return out


def item_texts(rec: dict):
    """(field, text) pairs of one benchmark record; lists of asserts give each assert and all
    together; a prompt with a canonical solution also gives the two together."""
    if isinstance(rec.get("prompt"), str) and isinstance(rec.get("canonical_solution"), str):
        yield "canonical_solution", rec["prompt"] + rec["canonical_solution"]
        # the signature without its docstring, then the body: a short solution copied bare
        bare = _DOCSTRING.sub("", rec["prompt"])
        if bare != rec["prompt"]:
            yield "canonical_solution", bare + rec["canonical_solution"]
    for f in TEXT_FIELDS:
        v = rec.get(f)
        if isinstance(v, str) and v.strip():
            yield f, v
        elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            yield f, "\n".join(v)
            if len(v) > 1:
                for x in v:
                    yield f, x


def informative(wordy: np.ndarray, L: int, least: int = 4) -> np.ndarray:
    """Which runs of L tokens hold at least max(least, L // 4) identifier/keyword tokens. Runs of
    numbers, single letters or punctuation ("0 , 1 , 2 , ...", "'A', 'B', ...") occur in any
    code base and say nothing about a benchmark item."""
    c = np.concatenate([[0], np.cumsum(wordy)])
    return (c[L:] - c[:-L]) >= max(least, L // 4)


def full_hash(h: np.ndarray) -> int:
    """One hash of a whole token sequence (its length mixed in)."""
    return int(run_hashes(h, [len(h)])[len(h)][0]) ^ (len(h) * 0x9E3779B97F4A7C15 % 2**64) if len(h) else 0


class BenchmarkMatcher:
    """Long-n-gram / whole-short-field matcher over every benchmark item (see module doc)."""

    def __init__(self, bench_dir=None, cfg: DecontamConfig = DecontamConfig()):
        self.cfg = cfg
        self.items = []                  # item index -> (benchmark, task_id, field)
        item_of = {}
        grams = {}                       # L -> list of (hash array, item index)
        seen_text = {}
        cache = {}                       # text -> [(L, informative run hashes)]: Hard repeats the full set
        self.exact = {}                  # hash of a whole normalized field -> item index
        for bench, rec in benchmark_records(bench_dir):
            tid = str(rec.get("task_id", rec.get("question", "")[:40]))
            for field, text in item_texts(rec):
                key = (bench, tid, field)
                if key not in item_of:
                    item_of[key] = len(self.items)
                    self.items.append(key)
                idx = item_of[key]
                if (text, idx) in seen_text:
                    continue
                seen_text[(text, idx)] = True
                ck = (text, field in SOLUTION_FIELDS)
                if ck not in cache:
                    h, w = token_hashes(text, wordy=True)
                    runs = []
                    if len(h) >= cfg.min_exact:
                        self.exact.setdefault(full_hash(h), idx)
                    if len(h) >= (cfg.short_solution if ck[1] else cfg.min_tokens):
                        L = min(cfg.ngram, len(h))
                        # a short solution, whole, needs fewer identifiers: `return (N - 1)`
                        least = 2 if ck[1] and L < cfg.ngram else 4
                        runs.append((L, run_hashes(h, [L])[L][informative(w, L, least)]))
                    cache[ck] = runs
                for L, g in cache[ck]:
                    if len(g):
                        grams.setdefault(L, []).append((g, np.full(len(g), idx, dtype=np.int32)))
        # the same task under several files (HumanEval / HumanEval+ / Mini) is one "distinct item"
        # for the boilerplate rule: count distinct task texts by (family, task id)
        fam_id = {}
        family = np.array([fam_id.setdefault((b.split("+")[0].split("-")[0].lower(), t), len(fam_id))
                           for b, t, _ in self.items], dtype=np.int64)
        self.index = {}                  # L -> (sorted hashes, item index)
        self.dropped_boilerplate = 0
        for L, lst in grams.items():
            g = np.concatenate([x[0] for x in lst])
            it = np.concatenate([x[1] for x in lst])
            order = np.lexsort((it, g))
            g, it = g[order], it[order]
            # distinct families per hash
            fam = family[it]
            first = np.r_[True, g[1:] != g[:-1]]
            starts = np.flatnonzero(first)
            gid = np.cumsum(first) - 1
            pair = np.unique(gid * np.int64(len(fam_id)) + fam)           # distinct (run, family)
            nfam = np.bincount(pair // len(fam_id), minlength=len(starts))
            ok = nfam <= cfg.max_items
            self.dropped_boilerplate += int((~ok).sum())
            self.index[L] = (g[starts][ok], it[starts][ok])
        self.lengths = sorted(self.index)
        # a 2^26-bit membership bitmap per run length (8 MB at most): most document runs are
        # rejected by one bitmap lookup instead of a binary search through a million keys
        self.bitmap = {}
        for L, (keys, _) in self.index.items():
            bits = np.zeros(1 << 23, dtype=np.uint8)
            b = (keys >> np.uint64(38)).astype(np.int64)
            np.bitwise_or.at(bits, b >> 3, (1 << (b & 7)).astype(np.uint8))
            self.bitmap[L] = bits

    def match(self, text: str, limit: int = 5) -> list[dict]:
        """Benchmark items sharing a run with `text` (at most `limit`, fewest first)."""
        h = token_hashes(text)
        hits = []
        if len(h) >= self.cfg.min_exact and full_hash(h) in self.exact:
            hits.append(self.exact[full_hash(h)])
        for L, runs in run_hashes(h, self.lengths).items():
            keys, items = self.index[L]
            b = (runs >> np.uint64(38)).astype(np.int64)
            runs = runs[(self.bitmap[L][b >> 3] >> (b & 7)) & 1 == 1]
            if len(runs) == 0:
                continue
            pos = np.searchsorted(keys, runs)
            pos[pos == len(keys)] = 0
            found = keys[pos] == runs if len(keys) else np.zeros(len(runs), bool)
            if found.any():
                hits.extend(int(i) for i in np.unique(items[pos[found]]))
        out = []
        for i in sorted(set(hits))[:limit]:
            b, t, f = self.items[i]
            out.append({"benchmark": b, "task_id": t, "field": f})
        return out


_MATCHERS = {}


def get_matcher(bench_dir=None, cfg: DecontamConfig = DecontamConfig()) -> BenchmarkMatcher:
    """One matcher per process (built in the parent before the pool forks, then shared)."""
    key = (str(bench_dir or default_bench_dir()), tuple(asdict(cfg).values()))
    if key not in _MATCHERS:
        _MATCHERS[key] = BenchmarkMatcher(bench_dir, cfg)
    return _MATCHERS[key]


def build_matcher(bench_dir=None, cfg: DecontamConfig = DecontamConfig()) -> BenchmarkMatcher:
    """The matcher for other scripts (synthesize.py): same as get_matcher."""
    return get_matcher(bench_dir, cfg)


def match(matcher: BenchmarkMatcher, text: str) -> list[dict]:
    """Benchmark items found in `text` ([] when clean)."""
    return matcher.match(text)


# -----------------------------------------------------------------------------
# the step

def decontam_task(k, n_tasks, in_dir, out_dir, bench_dir, cfg):
    m = get_matcher(bench_dir, cfg)
    stats = {"hits_per_benchmark": {}}
    report = []

    def contaminated(i, d):
        hits = m.match(d["content"])
        if not hits:
            return None
        for b in {h["benchmark"] for h in hits}:
            stats["hits_per_benchmark"][b] = stats["hits_per_benchmark"].get(b, 0) + 1
        report.append({"id": d["id"], "path": d.get("path"), "repo": d.get("repo"), "hits": hits})
        return "contaminated"

    write_docs(Path(out_dir) / part_name(k), filtered(task_docs(in_dir, k, n_tasks), stats, contaminated))
    tmp = Path(out_dir) / f"contaminated-{k:05d}.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in report))
    os.replace(tmp, Path(out_dir) / f"contaminated-{k:05d}.jsonl")
    return stats


def run(in_dir, out_dir, tasks: int = 1, task=None, workers=None, bench_dir=None, cfg: DecontamConfig = DecontamConfig()):
    require_done(in_dir, "decontaminate input")
    bench_dir = str(Path(bench_dir or default_bench_dir()))
    pending = [k for k in selected_tasks(tasks, task) if not done_marker(out_dir, k).exists()]
    if pending:
        m = get_matcher(bench_dir, cfg)                  # build once, before the pool forks
        print(f"decontaminate: {len(m.items):,} benchmark fields indexed from {bench_dir} "
              f"({m.dropped_boilerplate:,} boilerplate runs ignored)", flush=True)
    stats = run_tasks(out_dir, tasks, decontam_task, args=(str(in_dir), str(out_dir), bench_dir, cfg), task=task,
                      workers=workers, name="decontaminate",
                      settings=dict(asdict(cfg), input=str(Path(in_dir).resolve()), benchmarks=bench_dir))
    if stats is not None:
        for k in range(tasks):
            for line in (Path(out_dir) / f"contaminated-{k:05d}.jsonl").read_text().splitlines()[:20]:
                r = json.loads(line)
                h = r["hits"][0]
                print(f"  contaminated: {r['path'] or r['id']}  <- {h['benchmark']} {h['task_id']} ({h['field']})")
    return stats


def main(argv=None):
    ap = argparse.ArgumentParser(description="Drop documents that contain benchmark prompts, solutions or tests.")
    ap.add_argument("--in", dest="inp", required=True, help="input step directory (e.g. D/dedup)")
    ap.add_argument("--out", required=True, help="output step directory (e.g. D/decontaminate)")
    ap.add_argument("--benchmarks", default=None, help="benchmark dir (default: $SNOWCODER_BENCHMARKS or ../shared/benchmarks)")
    ap.add_argument("--ngram", type=int, default=24, help="shared token run that counts as contamination")
    add_task_args(ap)
    a = ap.parse_args(argv)
    run(a.inp, a.out, a.tasks, a.task, a.workers, a.benchmarks, DecontamConfig(ngram=a.ngram))


if __name__ == "__main__":
    main()
