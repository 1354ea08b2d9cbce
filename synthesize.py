"""
Phase-3 synthetic data: OSS-Instruct adapted for pretraining (DESIGN.md §1).

An instruction-tuned LLM behind any OpenAI-compatible server (vLLM, SGLang, a hosted endpoint,
or our own `sample.py --serve`) reads a whole top-scoring phase-2 document (the seed) and writes
ONE new, self-contained, problem-solving code file in the seed's language. The prompt is
PROMPT_TEMPLATE below, the one place to read or change it.

    python synthesize.py --seeds D/p2/selected --api-base http://127.0.0.1:8000/v1 --model p2 \
        --out D/p3/synthetic.jsonl [--limit N] [--concurrency 128] [--chat | --completions]
    python synthesize.py --out D/p3/synthetic.jsonl --post-only --tasks 8   # the filtering only
    python synthesize.py --bench --ckpt R/p2/export                  # client overhead benchmark

Seeds: documents of a step dir with a "score" (prepare/phase2 writes D/p2/selected), best first
per language, Python given --python-share of them (~50%), the other languages keeping their share
of the seed pool; each seed is truncated at a line end to --seed-max-chars (and --seed-max-tokens
with --tokenizer), and further to fit the server's context when /v1/models tells it.

Output: --out is an append-only JSONL, one record per seed and generation setting, keyed by
"<seed id>:<fingerprint>" (the fingerprint hashes the model, the template and every setting that
changes the text). A run takes an exclusive lock on it before anything else (a second run stops
with a clear error), then cuts a torn last line left by a killed run, then skips the keys already
there: a killed run (even kill -9) resumes with no duplicate and no gap. A seed whose request
still fails after client.py's retries is recorded with status "failed" (--retry-failed asks again).
Generation is one process; its requests in flight are --concurrency threads (client.py).

Post-processing (after every run, or --post-only; --tasks N [--task K] as in prepare/pipeline.py):
extract the code block, compile-check Python (others: a bracket-balance or `bash -n` check),
length limits, decontamination against the benchmarks (prepare/decontaminate.py), then exact and
MinHash-LSH near dedup across all tasks (prepare/dedup.py's signatures and LSH, staged below).
Accepted files go to <out without .jsonl>/part-KKKKK.jsonl.gz in the documents format, with
rejected-KKKKK.jsonl.gz (each record with its "reason"), stats-KKKKK.json per task, stats.json
(all tasks: counts, "dropped" per reason), generation.json (the last run's counts) beside them.
With a Slurm array, run `--post-only --tasks N` (task from $SLURM_ARRAY_TASK_ID) three times, each
after the previous array finished: extract, then pairs, then clusters + write.

A 70B teacher behind vLLM (Llama-3.1-70B-Instruct, tensor parallel on one 8-GPU node): vLLM
batches continuously up to its --max-num-seqs (256 by default), so --concurrency 128-256 keeps it
full; more only queues inside the server. Answers are not streamed, so --timeout has to cover the
wait in that queue plus a whole --max-tokens answer: the default 1800 s leaves room for both.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import warnings
import zlib
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from tqdm import tqdm

from client import APIError, Client, is_context_error
from formats import AppendLog, write_json

# -----------------------------------------------------------------------------
# the prompt: our own, in the spirit of OSS-Instruct (seed -> new problem + documented, tested
# solution), asking for a whole file because this is pretraining data, not instruction pairs.

PROMPT_TEMPLATE = """Below is a {language} file from an open-source project. Taking inspiration from it, \
write ONE new, self-contained {language} file that solves a realistic programming problem of your own design.
- Complete and correct, runnable on its own, standard library only.
- Open with a comment or docstring stating the problem; document every function and class.
- End with tests or usage examples that check the solution.
- Do not copy or mention the seed file.
Answer with only the file, in one ```{fence} code block.

Seed file ({path}):
```{fence}
{seed}
```
"""
# In completions mode (a base model) the prompt goes on to open the answer's code block, so the
# continuation is code and the stop string closes it.
COMPLETION_SUFFIX = "\nNew self-contained {language} file:\n```{fence}\n"
COMPLETION_STOP = ["\n```"]

FENCE = {"Python": "python", "Java": "java", "C++": "cpp", "C": "c", "JavaScript": "javascript",
         "PHP": "php", "C#": "csharp", "Go": "go", "TypeScript": "typescript", "SQL": "sql",
         "Ruby": "ruby", "Rust": "rust", "Jupyter Notebook": "python", "Scala": "scala",
         "Kotlin": "kotlin", "Shell": "bash", "Dart": "dart", "Swift": "swift"}
EXTENSION = {"Python": ".py", "Java": ".java", "C++": ".cpp", "C": ".c", "JavaScript": ".js", "PHP": ".php",
             "C#": ".cs", "Go": ".go", "TypeScript": ".ts", "SQL": ".sql", "Ruby": ".rb", "Rust": ".rs",
             "Jupyter Notebook": ".py", "Scala": ".scala", "Kotlin": ".kt", "Shell": ".sh", "Dart": ".dart",
             "Swift": ".swift"}


@dataclass
class SynthConfig:
    # seeds
    python_share: float = 0.5       # share of seeds that are Python (the paper raises Python to ~50%)
    seed_max_chars: int = 12000     # whole documents, cut at a line end
    seed_max_tokens: int = 0        # with --tokenizer: also cut to this many tokens (0: off)
    chars_per_token: float = 2.5    # to fit seeds into a server's context when it tells its length
    # generation
    model: str = ""
    chat: bool = True               # /v1/chat/completions (instruct models) or /v1/completions (base)
    max_tokens: int = 4096          # above nearly every whole file: a cut-off answer is rejected
    temperature: float = 0.7
    top_p: float = 0.95
    sampling_seed: int | None = None  # sent as each request's `seed` (+ a hash of the seed id): a rerun
                                      # samples the same answers from a server that honours it (vLLM does)
    # client
    concurrency: int = 128          # requests in flight: a vLLM server batches up to --max-num-seqs (256)
    timeout: float = 1800.0         # seconds per request: the server's queue + a whole unstreamed answer
    max_retries: int = 6            # after the first attempt
    backoff_base: float = 1.0       # seconds; attempt k waits ~base * 2**k (with jitter, capped)
    backoff_max: float = 60.0
    # post-processing
    min_chars: int = 200
    max_chars: int = 40000
    min_lines: int = 5
    max_line_length: int = 1000
    near_dedup_threshold: float = 0.7
    keep_truncated: bool = False    # completions cut by max_tokens: keep whole lines, then the checks
                                    # decide (for toy models that never close the block; off for real runs)

    def fingerprint(self) -> str:
        """Everything that changes what the model is asked or how it answers (not the client knobs)."""
        keys = {"template": PROMPT_TEMPLATE, "suffix": COMPLETION_SUFFIX if not self.chat else "",
                "model": self.model, "chat": self.chat, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "top_p": self.top_p,
                "seed_max_chars": self.seed_max_chars, "seed_max_tokens": self.seed_max_tokens}
        if self.sampling_seed is not None:  # absent when unset: older runs keep their fingerprint
            keys["sampling_seed"] = self.sampling_seed
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


# -----------------------------------------------------------------------------
# seeds

def pick_seeds(path, limit: int | None, python_share: float) -> dict[str, tuple[int, str]]:
    """Which documents seed the run: {id: (rank, language)}, the top-scored ones, Python given `python_share`
    of the picks, the other languages their share of the pool. One pass keeping only (score, id,
    language) per document, so millions of candidates fit in memory."""
    from formats import read_docs
    meta, seen = [], set()
    for d in read_docs(path):
        if d["id"] in seen:
            continue
        seen.add(d["id"])
        meta.append((-float(d.get("score", 0.0) or 0.0), d["id"], d.get("language") or "unknown"))
    del seen
    if not meta:
        raise SystemExit(f"synthesize.py: no seed documents in {path}")
    n = min(limit or len(meta), len(meta))
    py = sorted(m for m in meta if m[2] == "Python")
    other: dict[str, list] = {}
    for m in meta:
        if m[2] != "Python":
            other.setdefault(m[2], []).append(m)
    n_other_avail = sum(len(v) for v in other.values())
    n_py = min(len(py), round(n * python_share))
    n_oth = min(n_other_avail, n - n_py)
    n_py = min(len(py), n - n_oth)  # if other languages run short, Python fills the rest
    # the non-Python picks keep each language's share of the pool (largest remainder), best first
    quota = {lang: n_oth * len(v) / max(1, n_other_avail) for lang, v in other.items()}
    take = {lang: int(q) for lang, q in quota.items()}
    for lang in sorted(quota, key=lambda k: (-(quota[k] - take[k]), k))[:n_oth - sum(take.values())]:
        take[lang] += 1
    picked = py[:n_py] + [m for lang, v in other.items() for m in sorted(v)[:take[lang]]]
    picked.sort()  # best score first, then id
    return {m[1]: (i, m[2]) for i, m in enumerate(picked)}


def iter_seeds(path, picked: dict):
    """The picked documents, streamed in file order (one document in memory at a time)."""
    from formats import read_docs
    seen = set()
    for d in read_docs(path):
        if d["id"] in picked and d["id"] not in seen:
            seen.add(d["id"])
            yield d


def select_seeds(path, limit: int | None, python_share: float) -> list[dict]:
    """The picked documents as a list, best first (holds them all: for small runs and --bench)."""
    picked = pick_seeds(path, limit, python_share)
    return sorted(iter_seeds(path, picked), key=lambda d: picked[d["id"]][0])


def truncate_seed(text: str, max_chars: int, max_tokens: int = 0, enc=None) -> str:
    """Cut a document to a budget at a line end (whole lines read better than a cut mid-token)."""
    cut = False
    if max_tokens and enc is not None:
        ids = enc.encode(text, disallowed_special=())
        if len(ids) > max_tokens:
            text, cut = enc.decode(ids[:max_tokens]), True
    if len(text) > max_chars:
        text, cut = text[:max_chars], True
    if cut:
        j = text.rfind("\n")
        if j >= len(text) // 2:  # unless one huge line would cost half the budget
            text = text[:j + 1]
    return text


def build_request(seed: dict, seed_text: str, cfg: SynthConfig) -> dict:
    """The request body: chat messages (cfg.chat) or a completions prompt that opens the code block."""
    lang = seed.get("language") or "Python"
    fence = FENCE.get(lang, "")
    prompt = PROMPT_TEMPLATE.format(language=lang, fence=fence, path=seed.get("path") or "unknown",
                                    seed=seed_text.rstrip("\n"))
    body = {"model": cfg.model, "max_tokens": cfg.max_tokens, "temperature": cfg.temperature,
            "top_p": cfg.top_p}
    if cfg.sampling_seed is not None:
        body["seed"] = (cfg.sampling_seed + zlib.crc32(str(seed.get("id", "")).encode())) % 2**31
    if cfg.chat:
        body["messages"] = [{"role": "user", "content": prompt}]
        return body
    body["prompt"] = prompt + COMPLETION_SUFFIX.format(language=lang, fence=fence)
    body["stop"] = COMPLETION_STOP
    return body


def make_client(api_base: str, api_key: str | None, cfg: SynthConfig) -> Client:
    try:
        return Client(api_base, api_key, cfg.timeout, cfg.max_retries, cfg.backoff_base, cfg.backoff_max)
    except ValueError as e:
        raise SystemExit(f"synthesize.py: --api-base: {e}") from None


def generate_one(client: Client, seed: dict, cfg: SynthConfig, fingerprint: str, seed_cap: int,
                 enc=None, rng: random.Random | None = None) -> dict:
    """Ask for one synthetic file from one seed (client.py retries). Never raises: returns the
    record. A 400 for context length halves the seed and asks again."""
    t0 = time.time()
    text = truncate_seed(seed["content"], min(cfg.seed_max_chars, seed_cap), cfg.seed_max_tokens, enc)
    rec = {"key": f"{seed['id']}:{fingerprint}", "seed_id": seed["id"], "fingerprint": fingerprint,
           "language": seed.get("language") or "Python", "seed_path": seed.get("path", ""),
           "seed_score": seed.get("score"), "model": cfg.model, "chat": cfg.chat}
    errors: list[str] = []
    attempts = 0
    while True:
        body = build_request(seed, text, cfg)
        try:
            reply = client.chat(rng, **body) if cfg.chat else client.completions(rng, **body)
        except APIError as e:
            attempts += e.attempts
            errors += [x[:300] for x in e.errors]
            if is_context_error(e) and len(text) > 200:
                text = truncate_seed(text, len(text) // 2)  # the seed did not fit: halve it and ask again
                continue
            err = str(e)
        except Exception as e:  # anything else fails this seed (recorded), never the whole run
            attempts += 1
            err = f"unexpected {type(e).__name__}: {e}"
            errors.append(err[:300])
        else:
            choice = reply.data["choices"][0]
            text_out = choice["message"]["content"] if cfg.chat else choice["text"]
            # a lone surrogate (a JSON escape of half a character) cannot be written as UTF-8
            rec.update(status="ok", text=text_out.encode("utf-8", "replace").decode("utf-8"),
                       finish_reason=choice.get("finish_reason"), usage=reply.data.get("usage") or {},
                       seed_chars=len(text), attempts=attempts + reply.attempts, errors=errors + reply.errors,
                       seconds=round(time.time() - t0, 3))
            return rec
        rec.update(status="failed", error=err[:500], attempts=attempts, errors=errors, seed_chars=len(text),
                   seconds=round(time.time() - t0, 3))
        return rec


# -----------------------------------------------------------------------------
# the append-only output and resuming

def iter_records(path: Path, errors: Counter | None = None, quiet: bool = False):
    """(line number, record) for every complete record of the output file, one at a time, never
    changing the file. A line that is not a JSON object with a "key" gets one line on stderr
    naming the file and line (unless quiet) and is counted in errors["bad_line"]; a torn last
    line (no final newline: a writer killed mid-write, or one still writing) is not read."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                break
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                if not isinstance(r, dict) or not isinstance(r.get("key"), str):
                    raise ValueError("not a JSON object with a string \"key\"")
            except ValueError as e:
                if not quiet:
                    print(f"synthesize.py: {path}:{lineno}: skipping a bad record ({str(e)[:80]})", file=sys.stderr)
                if errors is not None:
                    errors["bad_line"] += 1
                continue
            yield lineno, r


def load_records(path: Path) -> list[dict]:
    return [r for _, r in iter_records(path)]


def open_output(out: Path):
    """formats.AppendLog on the output: its lock first, then the torn-line repair (rows=False: the
    records are read with iter_records, one at a time). A second run gets one clear line."""
    log = AppendLog(out, rows=False)
    try:
        return log.__enter__()
    except RuntimeError as e:
        raise SystemExit(f"synthesize.py: {e}") from None


def fit_seed_chars(ctx: int, cfg: SynthConfig) -> int:
    """Seed budget in chars so that template + seed + max_tokens fit a context of `ctx` tokens
    (estimated at cfg.chars_per_token; a 400 for context length still halves the seed and retries)."""
    frame = len(PROMPT_TEMPLATE) + len(COMPLETION_SUFFIX) + 60
    return max(200, min(cfg.seed_max_chars, int((ctx - cfg.max_tokens) * cfg.chars_per_token) - frame))


def run_generation(seeds, out: Path, client: Client, cfg: SynthConfig, enc=None, retry_failed: bool = False,
                   progress: bool = True, seed: int = 0, n_seeds: int | None = None) -> dict:
    """Generate a record for every seed (an iterable of documents; n_seeds: how many, when it is
    not a list) not yet in `out`. Holds: the keys already in `out` and the requests in flight.
    Returns counts of this run."""
    fp = cfg.fingerprint()
    log = open_output(out)  # the lock first, then the repair, then the keys already there
    done = {r["key"]: r.get("status") for _, r in iter_records(out)}  # keys only: no texts
    skip = ("ok",) if retry_failed else ("ok", "failed")
    stats = {"seeds": len(seeds) if n_seeds is None else n_seeds, "already_done": 0, "ok": 0, "failed": 0,
             "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
    seed_cap = cfg.seed_max_chars
    ctx = client.context_length(cfg.model)
    if ctx:
        seed_cap = fit_seed_chars(ctx, cfg)
    t0 = time.time()
    bar = tqdm(total=stats["seeds"], desc="synthesize", unit="seed", disable=not progress)

    def todo_seeds():
        for s in seeds:
            if done.get(f"{s['id']}:{fp}") in skip:
                stats["already_done"] += 1
                bar.update(1)
            else:
                yield s
    rngs = random.Random(seed)
    ex = ThreadPoolExecutor(max_workers=cfg.concurrency)
    try:
        it, pending = todo_seeds(), set()
        while True:
            # a bounded window of requests in flight: memory stays flat for millions of seeds
            while len(pending) < 2 * cfg.concurrency:
                s = next(it, None)
                if s is None:
                    break
                pending.add(ex.submit(generate_one, client, s, cfg, fp, seed_cap, enc,
                                      random.Random(rngs.random())))
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                r = f.result()
                log.append([r])  # flushed and fsynced: on disk, whole, before the next one
                stats[r["status"]] += 1
                stats["retries"] += r["attempts"] - 1
                stats["prompt_tokens"] += (r.get("usage") or {}).get("prompt_tokens", 0)
                stats["completion_tokens"] += (r.get("usage") or {}).get("completion_tokens", 0)
                bar.update(1)
                bar.set_postfix(ok=stats["ok"], failed=stats["failed"], retries=stats["retries"])
    except KeyboardInterrupt:
        # every finished record is already on disk (fsynced one by one): leave at once rather than
        # wait up to --timeout for the requests in flight; a rerun picks up from here
        bar.close()
        print(f"\nsynthesize.py: interrupted after {stats['ok'] + stats['failed']} new records; "
              f"rerun the same command to resume", file=sys.stderr, flush=True)
        os._exit(130)
    finally:
        bar.close()
        log.__exit__(None, None, None)
    ex.shutdown()
    stats["seconds"] = round(time.time() - t0, 3)
    return stats


# -----------------------------------------------------------------------------
# post-processing: from raw answers to accepted code files

_FENCE_RE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)


def extract_code(rec: dict, keep_truncated: bool = False) -> tuple[str | None, str | None]:
    """(code, None) or (None, reason). Completions-mode answers are already inside the block."""
    text = rec.get("text") or ""
    if not rec.get("chat", True):
        if rec.get("finish_reason") == "length":
            if keep_truncated and "\n" in text:
                return text[:text.rindex("\n") + 1], None  # drop the cut-off last line
            return None, "truncated"  # the block never closed: the file is cut off
        return text, None
    blocks = [m.group(2) for m in _FENCE_RE.finditer(text)]
    if blocks:
        return max(blocks, key=len), None
    if "```" in text:
        return None, "truncated" if rec.get("finish_reason") == "length" else "no_code_block"
    return None, "no_code_block"


_BRACE_LANGS = {"Java", "C++", "C", "JavaScript", "PHP", "C#", "Go", "TypeScript", "Rust", "Scala",
                "Kotlin", "Dart", "Swift"}


def brackets_balanced(code: str, language: str) -> bool:
    """Best-effort syntax check for C-like languages: (), [], {} balance outside comments and
    string literals. Rust and Swift lifetimes/characters make ' unreliable, so ' is a quote only
    when it closes within a few characters."""
    pairs, stack, i, n = {")": "(", "]": "[", "}": "{"}, [], 0, len(code)
    hash_comment = language == "PHP"
    while i < n:
        c = code[i]
        if code.startswith("//", i) or (hash_comment and c == "#"):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "\"`":
            j = i + 1
            while j < n and code[j] != c:
                j += 2 if code[j] == "\\" else 1
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']{0,6}|[^'\\\n]{1,2})'", code[i:i + 12])
            i += len(m.group(0)) if m else 1
        else:
            if c in "([{":
                stack.append(c)
            elif c in pairs:
                if not stack or stack.pop() != pairs[c]:
                    return False
            i += 1
    return not stack


def syntax_ok(code: str, language: str) -> bool:
    if language == "Python":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compile(code, "<synthetic>", "exec", dont_inherit=True)
            return True
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            return False
    if language in _BRACE_LANGS:
        return brackets_balanced(code, language)
    if language == "Shell":
        try:
            return subprocess.run(["bash", "-n"], input=code.encode(), capture_output=True,
                                  timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return True  # no bash here: nothing to check with
    return True  # SQL, Jupyter Notebook (magics): no cheap checker


def _load_matcher():
    """prepare/decontaminate.py's benchmark matcher, or None (with a warning) when it is missing."""
    try:
        from prepare import decontaminate
    except ImportError as e:
        print(f"synthesize.py: decontamination skipped ({e})", file=sys.stderr)
        return None
    return decontaminate.build_matcher()


def _contamination(matcher, text: str):
    from prepare import decontaminate
    return decontaminate.match(matcher, text)


# The post-processing step, split into tasks like the data steps (prepare/pipeline.py: markers,
# resume, --tasks/--task, stats with reasons), under <docs dir>/_work/:
#   extract   N tasks: task k takes the records whose key hashes to k (the last record of a key
#             counts: --retry-failed appends a second one), extracts the code, runs the per-file
#             checks and the benchmark matcher, and writes every record it took, with its reason
#             or its code (rec-k.jsonl.gz), plus (line, content hash) and the MinHash signature of
#             each candidate (meta-k.npy, sig-k.npy). Holds: the keys of its share (to find each
#             key's last record), the signatures of its candidates, the benchmark matcher.
#   pairs     N tasks: LSH band b goes to task b % N; the task reads that band's rows of every
#             task's signatures (memory maps), finds the candidate pairs among the first copy of
#             each content, and keeps those whose signatures agree on >= threshold of the values.
#             Holds: every candidate's (line, hash) (16 bytes each), one band's rows, its pairs.
#   clusters  1 task: components of all pairs; in each the candidate first in the raw file is
#             kept. Holds: every candidate's (line, hash, label) and the pairs.
#   write     N tasks: task k streams rec-k into part-k (accepted documents) and rejected-k
#             (records with "reason"), and writes its stats. Holds: one record at a time.
# The result does not depend on N (tests/test_synthesize.py checks it).

DEDUP_REASON = {1: "exact_duplicate", 2: "near_duplicate"}


def task_of(key: str, n_tasks: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % n_tasks


def _save_npy(path: Path, arr):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


META = np.dtype([("line", "<i8"), ("hash", "<u8")])


def check_record(r: dict, cfg: SynthConfig, matcher) -> tuple[str | None, str | None, dict]:
    """(code, None, {}) for a candidate, or (None, reason, extra) for a rejected record."""
    if r.get("status") != "ok":
        return None, "failed", {}
    code, why = extract_code(r, cfg.keep_truncated)
    if code is None:
        return None, why, {}
    code = code.strip("\n") + "\n"
    lines = code.split("\n")
    if len(code) < cfg.min_chars or len(lines) < cfg.min_lines:
        return None, "too_short", {}
    if len(code) > cfg.max_chars:
        return None, "too_long", {}
    if max(len(x) for x in lines) > cfg.max_line_length:
        return None, "long_line", {}
    if not syntax_ok(code, r.get("language") or "Python"):
        return None, "syntax_error", {}
    hit = _contamination(matcher, code) if matcher is not None else None
    if hit:
        return None, "contaminated", {"benchmark_hits": hit}
    return code, None, {}


def extract_task(k, n_tasks, out, work, cfg, decontaminate):
    from prepare.dedup import DedupConfig, content_hash, minhash_signatures, shingles
    from formats import write_docs
    out, work, dc = Path(out), Path(work), DedupConfig()
    last, bad = {}, Counter()
    for line, r in iter_records(out, bad, quiet=k != 0):  # task 0 names the bad lines, once
        if task_of(r["key"], n_tasks) == k:
            last[r["key"]] = line
    matcher = _load_matcher() if decontaminate else None
    stats = {"records": len(last), "ok": 0, "failed": 0, "candidates": 0, "bad_lines": bad["bad_line"] if k == 0 else 0}
    meta, sigs = [], []

    def took():
        for line, r in iter_records(out, quiet=True):
            if last.get(r["key"]) != line:
                continue
            stats["ok" if r.get("status") == "ok" else "failed"] += 1
            code, reason, extra = check_record(r, cfg, matcher)
            if code is not None:
                meta.append((line, content_hash(code)))
                sigs.append(minhash_signatures([shingles(code, dc.ngram)], dc.num_perm, dc.seed)[0])
                stats["candidates"] += 1
            yield {**r, "line": line, "code": code, "reason": reason, **extra}

    write_docs(work / f"rec-{k:05d}.jsonl.gz", took())
    _save_npy(work / f"sig-{k:05d}.npy", np.array(sigs, dtype=np.uint32).reshape(len(sigs), dc.num_perm))
    _save_npy(work / f"meta-{k:05d}.npy", np.array(meta, dtype=META))
    return stats


def _candidates(work: Path, n_tasks: int):
    """Every candidate's (line, hash) in raw-file order, where it lives (task, row), and the
    positions (in that order) of the first copy of each content."""
    metas = [np.load(work / f"meta-{k:05d}.npy") for k in range(n_tasks)]
    task = np.concatenate([np.full(len(m), k, np.int64) for k, m in enumerate(metas)])
    row = np.concatenate([np.arange(len(m), dtype=np.int64) for m in metas])
    m = np.concatenate(metas)
    order = np.argsort(m["line"], kind="stable")
    m, task, row = m[order], task[order], row[order]
    _, first = np.unique(m["hash"], return_index=True)  # the first occurrence of each hash
    return m, task, row, np.sort(first)


def pairs_task(t, n_tasks, work, pairs_dir, threshold, near):
    from prepare.dedup import DedupConfig, candidate_pairs
    work, dc = Path(work), DedupConfig()
    _, task, row, uniq = _candidates(work, n_tasks)
    sigs = [np.load(work / f"sig-{k:05d}.npy", mmap_mode="r") for k in range(n_tasks)]
    rows_per_band = dc.num_perm // dc.bands

    def gather(pos, cols):  # signature values of candidates at positions `pos`
        outp = np.empty((len(pos), cols.stop - cols.start), np.uint32)
        for k in range(n_tasks):
            sel = task[pos] == k
            if sel.any():
                outp[sel] = sigs[k][row[pos[sel]], cols]
        return outp

    found = [np.zeros((0, 2), np.int64)]
    for b in range(t, dc.bands if near else 0, n_tasks):
        band = gather(uniq, slice(b * rows_per_band, (b + 1) * rows_per_band))
        found.append(candidate_pairs(band, 1, dc.max_bucket_pairs))  # indices into uniq
    cand = np.unique(np.concatenate(found), axis=0)
    keep = np.zeros(len(cand), bool)
    for s in range(0, len(cand), 4096):  # verify: signature agreement estimates the Jaccard
        c = cand[s:s + 4096]
        full = slice(0, dc.num_perm)
        keep[s:s + 4096] = (gather(uniq[c[:, 0]], full) == gather(uniq[c[:, 1]], full)).mean(1) >= threshold
    _save_npy(Path(pairs_dir) / f"pairs-{t:05d}.npy", cand[keep])
    return {"candidate_pairs": len(cand), "near_pairs": int(keep.sum())}


def clusters_task(_k, _n, extract_dir, pairs_dir, n_tasks):
    from prepare.dedup import connected_components
    m, task, row, uniq = _candidates(Path(extract_dir), n_tasks)
    pairs = np.concatenate([np.load(Path(pairs_dir) / f"pairs-{t:05d}.npy") for t in range(n_tasks)])
    n = len(m)
    reason = np.zeros(n, np.int8)
    # exact: each copy points to the first one of its content (uniq holds those, in order)
    _, inv = np.unique(m["hash"], return_inverse=True)
    _, first = np.unique(inv, return_index=True)
    leader = first[inv].astype(np.int64)
    reason[leader != np.arange(n)] = 1
    # near: components among the first copies; a copy follows its first copy's keeper
    comp = uniq[connected_components(len(uniq), pairs)]
    reason[uniq[comp != uniq]] = 2
    leader[uniq] = comp
    leader = leader[leader]
    for k in range(n_tasks):
        sel = np.flatnonzero(task == k)
        drop = np.zeros(len(sel), dtype=[("reason", "i1"), ("leader_line", "<i8")])
        drop["reason"][row[sel]] = reason[sel]
        drop["leader_line"][row[sel]] = m["line"][leader[sel]]
        _save_npy(Path(pairs_dir).parent / f"drop-{k:05d}.npy", drop)
    return {"candidates": n, "exact_duplicate": int((reason == 1).sum()), "near_duplicate": int((reason == 2).sum())}


def write_task(k, n_tasks, work, out_dir):
    from formats import part_name, read_docs, write_docs
    work, out_dir = Path(work), Path(out_dir)
    drop = np.load(work / f"drop-{k:05d}.npy")
    ex = json.loads((work / "extract" / f"stats-{k:05d}.json").read_text())
    stats = {key: ex[key] for key in ("records", "ok", "failed", "bad_lines")}
    stats.update(docs_in=ex["ok"], docs_out=0, accepted_chars=0, dropped={}, accepted_per_language={})
    recs = work / "extract" / f"rec-{k:05d}.jsonl.gz"

    def verdicts():  # (record, reason or None, extra), candidates numbered in rec-k order
        i = 0
        for r in read_docs(recs):
            reason, extra = r.pop("reason"), {}
            if r["code"] is not None:
                d = drop[i]
                i += 1
                if d["reason"]:
                    reason, extra = DEDUP_REASON[int(d["reason"])], {"duplicate_of_line": int(d["leader_line"])}
            yield r, reason, extra

    def accepted():
        for r, reason, _ in verdicts():
            if reason is None:
                lang = r.get("language") or "Python"
                did = "syn-" + hashlib.sha1(r["key"].encode()).hexdigest()[:16]
                stats["docs_out"] += 1
                stats["accepted_chars"] += len(r["code"])
                stats["accepted_per_language"][lang] = stats["accepted_per_language"].get(lang, 0) + 1
                yield {"id": did, "content": r["code"], "language": lang, "repo": "synthetic",
                       "path": f"synthetic/{did}{EXTENSION.get(lang, '.txt')}", "source": "synthetic",
                       "seed_id": r["seed_id"], "model": r.get("model", ""), "fingerprint": r.get("fingerprint", "")}

    def rejected():
        for r, reason, extra in verdicts():
            if reason is not None:
                if reason != "failed":
                    stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1
                r.pop("code")
                yield {**r, "reason": reason, **extra}

    write_docs(out_dir / part_name(k), accepted())
    write_docs(out_dir / f"rejected-{k:05d}.jsonl.gz", rejected())
    stats["accepted"] = stats["docs_out"]
    return stats


def docs_dir_for(out: Path) -> Path:
    """Where the accepted documents of an output JSONL go: D/p3/synthetic.jsonl -> D/p3/synthetic/."""
    return out.with_suffix("") if out.suffix == ".jsonl" else out.with_name(out.name + ".docs")


def clear_postprocessed(d: Path):
    """Remove what an earlier post-processing wrote (the raw file grew, or settings changed)."""
    shutil.rmtree(d / "_work", ignore_errors=True)
    for pat in ("part-*.jsonl.gz", "rejected-*.jsonl.gz", "stats*.json", "done-*", "settings.json", "generation.json"):
        for f in d.glob(pat):
            f.unlink()


def write_postprocessed(out: Path, cfg: SynthConfig, decontaminate: bool = True, near_dedup: bool = True,
                        gen_stats: dict | None = None, tasks: int = 1, task: int | None = None,
                        workers: int | None = None, progress: bool = True) -> dict | None:
    """Run the post-processing tasks (all unfinished ones, or only `task`). Returns the merged
    stats once every stage is done, else None (other tasks still to run)."""
    from prepare.pipeline import is_done, run_tasks, selected_tasks
    d = docs_dir_for(out)
    work = d / "_work"
    settings = {k: v for k, v in asdict(cfg).items() if k in POST_SETTINGS}
    settings.update(input=str(out.resolve()), input_bytes=out.stat().st_size, decontaminate=decontaminate,
                    near_dedup=near_dedup, n_tasks=tasks)
    local = task is None and len(selected_tasks(tasks)) == tasks
    if local and (d / "settings.json").exists() and json.loads((d / "settings.json").read_text()) != settings:
        print(f"synthesize.py: {out} or the settings changed since {d} was written: redoing the post-processing",
              flush=True)
        clear_postprocessed(d)
    ext, prs = str(work / "extract"), str(work / "pairs")
    for name, fn, args in (("extract", extract_task, (str(out), ext, cfg, decontaminate)),
                           ("pairs", pairs_task, (ext, prs, cfg.near_dedup_threshold, near_dedup))):
        if run_tasks(work / name, tasks, fn, args, task=task, workers=workers, name=f"synthesize/{name}",
                     settings=settings, quiet=True) is None:
            print(f"synthesize.py: post-processing stage {name} pending in other tasks; rerun when they are done")
            return None
    if not is_done(work / "clusters", 1):  # one task; in an array, whichever task gets here first
        run_tasks(work / "clusters", 1, clusters_task, (ext, prs, tasks), task=0, workers=1,
                  name="synthesize/clusters", settings=settings, quiet=True)
    if gen_stats:
        write_json(d / "generation.json", gen_stats)
    return run_tasks(d, tasks, write_task, (str(work), str(d)), task=task, workers=workers, name="synthesize",
                     settings=settings, quiet=not progress)


# the settings that change what post-processing accepts
POST_SETTINGS = ("min_chars", "max_chars", "min_lines", "max_line_length", "near_dedup_threshold", "keep_truncated")


# -----------------------------------------------------------------------------
# benchmark: this client's throughput vs the server's own, measured in the same run

def _raw_post(host: str, port: int, path: str, body: dict) -> dict:
    """The minimal client: one connection, one POST, no retries, no bookkeeping."""
    c = http.client.HTTPConnection(host, port, timeout=600)
    try:
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def bench(args, cfg: SynthConfig):
    import statistics
    import tempfile
    proc = None
    try:
        if args.api_base is None:
            if not args.ckpt:
                raise SystemExit("synthesize.py --bench needs --api-base URL or --ckpt DIR (to start sample.py --serve)")
            proc, args.api_base = start_server(args.ckpt)
        client = make_client(args.api_base, None, cfg)
        if not cfg.model:
            cfg.model = client.models()[0]["id"]
        if args.seeds:
            seeds = select_seeds(args.seeds, args.limit or 32, cfg.python_share)
        else:  # real code from this machine, as a stand-in for phase-2 documents
            import sysconfig
            files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:args.limit or 32]
            seeds = [{"id": f"stdlib/{f.name}", "content": f.read_text(errors="replace"), "language": "Python",
                      "path": f.name} for f in files]
        # greedy and a fixed budget, so both clients ask for exactly the same work
        cfg.temperature, cfg.top_p = 0.0, 1.0
        cfg.chars_per_token = 1.5  # a safe estimate: the direct client has no context-length retry
        ctx = client.context_length(cfg.model)
        cap = fit_seed_chars(ctx, cfg) if ctx else cfg.seed_max_chars
        u = urlsplit(args.api_base)
        path = "/chat/completions" if cfg.chat else "/completions"
        reqs = [build_request(s, truncate_seed(s["content"], cap), cfg) for s in seeds]
        print(f"bench: {len(seeds)} requests, max_tokens={cfg.max_tokens}, concurrency={cfg.concurrency}, "
              f"model={cfg.model} at {args.api_base}")

        def raw_run():
            # the server's own throughput: the same requests posted directly, `concurrency` at a time
            t0, c0, toks = time.perf_counter(), time.process_time(), 0
            with ThreadPoolExecutor(cfg.concurrency) as ex:
                for r in ex.map(lambda b: _raw_post(u.hostname, u.port, u.path + path, b), reqs):
                    if "usage" not in r:
                        raise SystemExit(f"synthesize.py --bench: the server answered {r}")
                    toks += r["usage"]["completion_tokens"]
            return time.perf_counter() - t0, time.process_time() - c0, toks

        def synth_run():
            with tempfile.TemporaryDirectory() as tmp:
                t0, c0 = time.perf_counter(), time.process_time()
                st = run_generation(seeds, Path(tmp) / "bench.jsonl", client, cfg, progress=False)
                assert st["ok"] == len(seeds), st
                return time.perf_counter() - t0, time.process_time() - c0, st["completion_tokens"]

        raw_run()  # warm-up: first requests pay for lazy initialisation in the server
        res = {"raw": [], "synthesize": []}
        for _ in range(args.bench_rounds):  # interleaved, so drifting machine load hits both alike
            res["raw"].append(raw_run())
            res["synthesize"].append(synth_run())
        # best of the rounds: on a shared machine the noise only ever adds time
        summary = {}
        for k, v in res.items():
            dt, cpu, toks = min(v)
            summary[k] = {"seconds": dt, "req_per_s": len(reqs) / dt, "tok_per_s": toks / dt,
                          "client_cpu_ms_per_req": 1000 * statistics.median(x[1] for x in v) / len(reqs)}
            print(f"  {k:11s} {len(reqs) / dt:7.2f} req/s  {toks / dt:8.1f} tok/s  "
                  f"client CPU {summary[k]['client_cpu_ms_per_req']:.2f} ms/req  (best of {len(v)}: "
                  + ", ".join(f"{x[0]:.2f}s" for x in v) + ")")
        overhead = summary["synthesize"]["seconds"] / summary["raw"]["seconds"] - 1
        print(f"bench: synthesize.py takes {100 * overhead:+.1f}% time vs the direct client "
              f"(target < 5%): {'OK' if overhead < 0.05 else 'OVER'}")
        summary["overhead"] = overhead
        return summary
    finally:
        if proc is not None:
            stop_server(proc)


HWM_SHIM = """import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print([x for x in open("/proc/self/status") if x.startswith("VmHWM")][0], flush=True)
"""


def bench_memory(sizes=(2000, 8000), tasks: int = 4):
    """Peak RSS of each post-processing task process at two input sizes (same --tasks): a task
    holds its share, so its peak should grow far less than the input. Input: real stdlib files
    as answers, each also repeated with a small edit (near duplicates) and once verbatim."""
    import sysconfig
    import tempfile
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    codes = [f.read_text(errors="replace") for f in files if 500 < f.stat().st_size < 20000]
    print(f"bench-memory: {len(codes)} stdlib files as answers, --tasks {tasks}, one process per task")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "synthetic.jsonl"
            with open(out, "w") as f:
                for i in range(n):
                    code = codes[i % len(codes)] + (f"\n\nVARIANT = {i // len(codes)}\n" if i >= len(codes) else "")
                    f.write(json.dumps({"key": f"s{i}:fp", "seed_id": f"s{i}", "status": "ok", "chat": False,
                                        "finish_reason": "stop", "text": code, "language": "Python"}) + "\n")
            peaks, t0 = {}, time.time()
            for stage in ("extract", "pairs", "clusters+write"):
                for k in range(tasks):
                    # the task's own high-water mark (VmHWM restarts at exec, ru_maxrss does not)
                    run = subprocess.run([sys.executable, "-c", HWM_SHIM, __file__, "--out", str(out), "--post-only",
                                          "--no-progress", "--no-decontaminate", "--tasks", str(tasks), "--task", str(k)],
                                         capture_output=True, text=True)
                    if run.returncode:
                        raise SystemExit(f"bench-memory: task {k} of {stage} failed: {run.stderr[-500:]}")
                    hwm = int(re.findall(r"VmHWM:\s+(\d+) kB", run.stdout)[-1]) / 1024
                    peaks[stage] = max(peaks.get(stage, 0), hwm)
            st = json.loads((out.with_suffix("") / "stats.json").read_text())
            print(f"  {n:6d} records ({out.stat().st_size / 1e6:6.1f} MB raw, {st['accepted']} accepted, "
                  f"dropped {st['dropped']}): peak RSS per task " +
                  ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items()) + f"; {time.time() - t0:.0f} s")


def start_server(ckpt: str, timeout: float = 120.0):
    """Start `sample.py --serve --port 0` and return (process, api_base) once it listens."""
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "sample.py"), "--ckpt", str(ckpt),
           "--serve", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    t0 = time.time()
    while time.time() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"on (http://[\d.]+:\d+/v1)", line)
        if m:
            return proc, m.group(1)
    stop_server(proc)
    raise SystemExit(f"synthesize.py: the server for {ckpt} did not start")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -----------------------------------------------------------------------------

def main(argv=None):
    from prepare.pipeline import add_task_args
    d = SynthConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", help="documents with a 'score' (a step dir such as D/p2/selected, or a part file)")
    ap.add_argument("--out", help="append-only JSONL of raw answers (accepted files go to <out without .jsonl>/)")
    ap.add_argument("--api-base", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--model", default="", help="model id sent to the server (default: its first /v1/models entry)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--chat", dest="chat", action="store_true", default=True, help="/v1/chat/completions (default)")
    mode.add_argument("--completions", dest="chat", action="store_false",
                      help="/v1/completions: the prompt opens the answer's code block (for base models)")
    ap.add_argument("--limit", type=int, default=None, help="number of seeds (default: all)")
    ap.add_argument("--python-share", type=float, default=d.python_share, help="share of seeds that are Python (0.5)")
    ap.add_argument("--seed-max-chars", type=int, default=d.seed_max_chars, help="seed documents cut to this (at a line end)")
    ap.add_argument("--seed-max-tokens", type=int, default=d.seed_max_tokens, help="needs --tokenizer")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.tiktoken for --seed-max-tokens")
    ap.add_argument("--max-tokens", type=int, default=d.max_tokens, help="answer length limit (--bench: 64)")
    ap.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature (0: greedy)")
    ap.add_argument("--top-p", type=float, default=d.top_p, help="nucleus sampling mass")
    ap.add_argument("--sampling-seed", type=int, default=None,
                    help="reproducible sampling: request seed = this + crc32(seed id) (default: unseeded)")
    ap.add_argument("--concurrency", type=int, default=d.concurrency, help="requests in flight")
    ap.add_argument("--timeout", type=float, default=d.timeout, help="seconds per request")
    ap.add_argument("--max-retries", type=int, default=d.max_retries, help="retries on 429/5xx/timeouts/resets")
    ap.add_argument("--backoff-base", type=float, default=d.backoff_base, help="first retry waits ~this (s), doubling")
    ap.add_argument("--backoff-max", type=float, default=d.backoff_max, help="longest wait between retries (s)")
    ap.add_argument("--retry-failed", action="store_true", help="ask again for seeds recorded as failed")
    ap.add_argument("--post-only", action="store_true", help="no requests: redo the post-processing of --out")
    ap.add_argument("--no-decontaminate", action="store_true", help="skip the benchmark matcher")
    ap.add_argument("--no-near-dedup", action="store_true", help="exact dedup only")
    ap.add_argument("--keep-truncated", action="store_true",
                    help="completions cut by --max-tokens: keep their whole lines if they pass the checks (toy runs)")
    ap.add_argument("--min-chars", type=int, default=d.min_chars, help="shorter accepted files are dropped")
    ap.add_argument("--max-chars", type=int, default=d.max_chars, help="longer accepted files are dropped")
    ap.add_argument("--bench", action="store_true", help="measure this client's overhead against a server")
    ap.add_argument("--ckpt", default=None, help="--bench: start sample.py --serve on this checkpoint")
    ap.add_argument("--bench-rounds", type=int, default=5, help="--bench: interleaved rounds (best one counts)")
    ap.add_argument("--bench-memory", action="store_true", help="peak RSS of post-processing tasks at two sizes")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    add_task_args(ap)
    args = ap.parse_args(argv)

    cfg = SynthConfig(python_share=args.python_share, seed_max_chars=args.seed_max_chars,
                      seed_max_tokens=args.seed_max_tokens, model=args.model, chat=args.chat,
                      max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                      sampling_seed=args.sampling_seed,
                      concurrency=args.concurrency, timeout=args.timeout, max_retries=args.max_retries,
                      backoff_base=args.backoff_base, backoff_max=args.backoff_max,
                      min_chars=args.min_chars, max_chars=args.max_chars, keep_truncated=args.keep_truncated)
    if args.bench_memory:
        bench_memory()
        return
    if args.bench:
        if args.max_tokens == d.max_tokens:
            cfg.max_tokens = 64
        bench(args, cfg)
        return
    if not args.out:
        ap.error("--out is required")
    out = Path(args.out)
    gen_stats = None
    if args.task is not None and not args.post_only:
        ap.error("--task runs one post-processing task: use it with --post-only (generation is one process)")
    if not args.post_only:
        if not args.seeds or not args.api_base:
            ap.error("--seeds and --api-base are required (or --post-only)")
        if args.seed_max_tokens and not args.tokenizer:
            ap.error("--seed-max-tokens needs --tokenizer")
        api_key = os.environ.get("SNOWCODER_API_KEY") or os.environ.get("OPENAI_API_KEY")
        client = make_client(args.api_base, api_key, cfg)
        if not cfg.model:
            try:
                cfg.model = client.models()[0]["id"]
            except Exception as e:
                raise SystemExit(f"synthesize.py: no --model given and {args.api_base}/models failed: {e}")
            finally:
                client.close()
        enc = None
        if args.tokenizer:
            from formats import load_tokenizer
            enc = load_tokenizer(args.tokenizer)
        picked = pick_seeds(args.seeds, args.limit, cfg.python_share)
        n_py = sum(lang == "Python" for _, lang in picked.values())
        print(f"synthesize.py: {len(picked)} seeds ({n_py / len(picked):.0%} Python), model {cfg.model}, "
              f"fingerprint {cfg.fingerprint()}, -> {out}", flush=True)
        gen_stats = run_generation(iter_seeds(args.seeds, picked), out, client, cfg, enc, args.retry_failed,
                                   not args.no_progress, n_seeds=len(picked))
        print(f"synthesize.py: generation {json.dumps(gen_stats)}", flush=True)
    if not out.exists():
        raise SystemExit(f"synthesize.py: {out} not found")
    stats = write_postprocessed(out, cfg, not args.no_decontaminate, not args.no_near_dedup, gen_stats,
                                args.tasks, args.task, args.workers, not args.no_progress)
    if stats is not None:
        print(f"synthesize.py: accepted files in {docs_dir_for(out)}/part-*.jsonl.gz, stats in stats.json")


if __name__ == "__main__":
    main()
