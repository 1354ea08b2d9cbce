"""
Pack: documents -> repository-level sequences -> uint16 token shards + manifest.json.

    python -m prepare.pack --in D/decontaminate --tokenizer D/tokenizer.tiktoken --out D/shards --tasks 4

The paper (§ phase-1 data): "partition code files by programming language, group them by
repository, then concatenate them in random order, similar to StarCoder2". One sequence per
repository and language, files in a seeded random order, in StarCoder2's format:
    with metadata (probability 0.5):  <repo_name>REPO<file_sep>PATH1\\nCODE1<file_sep>PATH2\\nCODE2...<|endoftext|>
    without:                          <file_sep>CODE1<file_sep>CODE2...<|endoftext|>
Special tokens are inserted as ids (a file that literally contains "<|endoftext|>" is encoded as
text); the text in between is encoded by tiktoken in a thread pool (the Rust encoder drops the
GIL) straight into numpy buffers, while the main thread assembles and writes the sequences.

Shards: raw little-endian uint16, one set per (split, language) per task:
DIR/train-Python-00000.bin ... (README "Data formats"); DIR/manifest.json lists them with token
counts, tokens per language and source, the document count, the settings, the code version and
the documents dir they came from. Validation: a seeded ~val_fraction of each language's
repositories (at least one when the language has ten or more) goes to split "val".
DIR/sequences-KKKKK.jsonl.gz records, for every packed sequence, its shard, offset, length and
document ids in order (so any token range can be traced back to its files).

Partitioned, so that a task reads only its share and a repository never straddles two tasks:
  1. route  N tasks: task k reads its own input documents and sorts them into B = 16 N buckets by
            a hash of (language, repo), written as gzip members of one file per task
            (DIR/_work/route/route-sK.bin, with an index of each member's bucket, offset and
            bytes); it also keeps, per language, the 10 smallest validation hashes of its
            repositories (what the "at least one val repository" rule needs). Holds: its
            buffered documents (flush_mb) and those hashes.
  2. pack   N tasks: every task reads the N small indexes and deals the buckets to tasks by size,
            largest first to the least loaded (the same plan in every task); task p then reads
            only its buckets' members from each route file, one bucket at a time, and packs.
            Holds: one bucket's documents.
A repository's files are sorted by id before the seeded shuffle, so its sequence, and the token
totals, do not depend on the task count. The route files are deleted once the manifest is written.
"""
import argparse
import hashlib
import json
import os
import subprocess
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

import formats
from formats import manifest_totals, write_docs
from prepare.pipeline import add_task_args, is_done, require_done, run_tasks
from formats import load_tokenizer

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class PackConfig:
    metadata_prob: float = 0.5      # StarCoder2: repo name and file paths in half the sequences
    val_fraction: float = 0.01      # of each language's repositories
    seed: int = 1337
    shard_tokens: int = 1 << 28     # start a new shard file after this many tokens (512 MB)
    batch_chars: int = 8_000_000    # text tokenized per encode_ordinary_batch call
    threads: int = 0                # tiktoken threads (0: cpu count)
    source: str = "phase1"
    buckets_per_task: int = 16      # route buckets per task: the grain of the size balancing
    flush_mb: float = 64.0          # a route task writes its buffered documents at this size
    group: str = "language"         # "language": by language, then repository (the paper's choice);
                                    # "repo": by repository alone (Table 3's other arm: one sequence per
                                    # repository holds all its languages; shards are labelled "all")


def group_language(cfg: PackConfig, d: dict) -> str:
    """The language a document is packed under: its own, or "all" when grouping by repository alone."""
    return d["language"] if cfg.group == "language" else "all"


def stable_u64(*parts) -> int:
    return int.from_bytes(hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")).digest()[:8], "little")


def slug(lang: str) -> str:
    """A language name as a file-name part: C++ -> Cpp, C# -> CSharp, Jupyter Notebook -> Jupyter_Notebook."""
    return lang.replace("++", "pp").replace("#", "Sharp").replace(" ", "_")


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return (sha or "unknown") + ("-dirty" if sha and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


VAL_KEEP = 10       # smallest val hashes kept per language: decides "ten or more repositories"


def val_hash(cfg, lang, repo) -> float:
    return stable_u64(cfg.seed, "val", lang, repo) / 2**64


def val_repos(repos_by_lang: dict, cfg: PackConfig) -> set:
    """(language, repo) pairs held out for validation: a seeded val_fraction of each language's
    repositories, and at least one when it has ten or more (fewer: all of it trains)."""
    val = set()
    for lang, repos in repos_by_lang.items():
        u = sorted((val_hash(cfg, lang, r), r) for r in repos)
        chosen = {r for x, r in u if x < cfg.val_fraction}
        if not chosen and len(u) >= 10:
            chosen = {u[0][1]}
        val |= {(lang, r) for r in chosen}
    return val


def sequence_segments(lang: str, repo: str, docs: list, cfg: PackConfig):
    """The files of one repository in seeded random order, as (with_metadata, text segments)."""
    rng = np.random.default_rng(stable_u64(cfg.seed, "order", lang, repo) % 2**63)
    docs = sorted(docs, key=lambda d: str(d["id"]))          # input order must not matter
    docs = [docs[i] for i in rng.permutation(len(docs))]
    meta = bool(rng.random() < cfg.metadata_prob)
    if meta:
        segs = [repo] + [d.get("path", "") + "\n" + d["content"] for d in docs]
    else:
        segs = [d["content"] for d in docs]
    return meta, segs, docs


def sequence_text(meta: bool, segs: list) -> str:
    """The sequence as text with the special tokens spelled out (what decoding a shard gives)."""
    if meta:
        return "<repo_name>" + segs[0] + "".join("<file_sep>" + s for s in segs[1:]) + "<|endoftext|>"
    return "".join("<file_sep>" + s for s in segs) + "<|endoftext|>"


class ShardWriter:
    """Appends uint16 tokens to DIR/{split}-{lang}-{task}[-j].bin, rolling over at shard_tokens."""

    def __init__(self, out_dir, split, lang, task, cfg):
        self.out_dir, self.split, self.lang, self.task, self.cfg = Path(out_dir), split, lang, task, cfg
        self.shards, self.f, self.n = [], None, 0

    def _open(self):
        j = len(self.shards)
        name = f"{self.split}-{slug(self.lang)}-{self.task:05d}" + (f"-{j:03d}" if j else "") + ".bin"
        self.f = open(self.out_dir / name, "wb")
        self.n = 0
        self.shards.append({"path": name, "split": self.split, "language": self.lang, "source": self.cfg.source,
                            "tokens": 0, "epochs": 1})

    def write(self, arr: np.ndarray) -> tuple[str, int]:
        """Write one whole sequence (never split across files); returns (shard path, offset)."""
        if self.f is None or (self.n and self.n + len(arr) > self.cfg.shard_tokens):
            self.close()
            self._open()
        off = self.n
        arr.astype("<u2", copy=False).tofile(self.f)
        self.n += len(arr)
        self.shards[-1]["tokens"] = self.n
        return self.shards[-1]["path"], off

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


def bucket_of(cfg, lang, repo, n_buckets: int) -> int:
    return stable_u64(cfg.seed, "task", lang, repo) % n_buckets


def route_task(k, n_tasks, in_dir, work, cfg: PackConfig):
    import gzip
    from prepare.pipeline import task_docs
    work = Path(work)
    n_buckets = cfg.buckets_per_task * n_tasks
    buf, buffered, members = {}, 0, []
    smallest = {}                    # lang -> {repo: val hash}, the VAL_KEEP smallest
    out = work / f"route-s{k:05d}.bin"
    stats = {"docs_in": 0, "docs_out": 0, "bytes_in": 0}
    with open(str(out) + ".tmp", "wb") as f:
        def flush():
            for b in sorted(buf):
                data = gzip.compress(b"".join(buf[b]), compresslevel=1, mtime=0)
                members.append([b, f.tell(), len(data), len(buf[b])])
                f.write(data)
            buf.clear()

        for d in task_docs(in_dir, k, n_tasks):
            lang, repo = group_language(cfg, d), d.get("repo") or ""
            line = (json.dumps(d, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
            buf.setdefault(bucket_of(cfg, lang, repo, n_buckets), []).append(line)
            buffered += len(line)
            stats["docs_in"] += 1
            stats["docs_out"] += 1
            stats["bytes_in"] += len(line)
            s = smallest.setdefault(lang, {})
            if repo not in s:
                h = val_hash(cfg, lang, repo)
                if len(s) < VAL_KEEP or h < max(s.values()):
                    s[repo] = h
                    if len(s) > VAL_KEEP:
                        del s[max(s, key=s.get)]
            if buffered > cfg.flush_mb * 1e6:
                flush()
                buffered = 0
        flush()
    index = {"members": members, "val_smallest": {l: sorted(s.items(), key=lambda kv: kv[1]) for l, s in smallest.items()}}
    (work / f"route-s{k:05d}.json.tmp").write_text(json.dumps(index))
    os.replace(work / f"route-s{k:05d}.json.tmp", work / f"route-s{k:05d}.json")
    os.replace(str(out) + ".tmp", out)
    return stats


def plan(work, n_tasks, cfg: PackConfig):
    """(buckets of each pack task, the validation rule's forced repositories), from the route
    indexes alone: buckets dealt by bytes, largest first to the least loaded task."""
    import heapq
    work = Path(work)
    size = np.zeros(cfg.buckets_per_task * n_tasks, dtype=np.int64)
    smallest = {}
    for k in range(n_tasks):
        ix = json.loads((work / f"route-s{k:05d}.json").read_text())
        for b, _, n, _ in ix["members"]:
            size[b] += n
        for lang, lst in ix["val_smallest"].items():
            smallest.setdefault(lang, {}).update(dict(lst))
    heap = [(0, p) for p in range(n_tasks)]
    mine = [[] for _ in range(n_tasks)]
    for b in sorted(np.flatnonzero(size).tolist(), key=lambda b: (-size[b], b)):
        load, p = heapq.heappop(heap)
        mine[p].append(b)
        heapq.heappush(heap, (load + int(size[b]), p))
    forced = set()
    for lang, s in smallest.items():        # val_repos' rule: none below val_fraction, ten or more repos
        u = sorted((h, r) for r, h in s.items())
        if u[0][0] >= cfg.val_fraction and len(u) >= VAL_KEEP:
            forced.add((lang, u[0][1]))
    return [sorted(m) for m in mine], forced


def bucket_docs(work, n_tasks, buckets):
    """{bucket: its documents}, read from every route file's members for those buckets only, one
    bucket at a time."""
    import gzip
    work = Path(work)
    where = {}
    for k in range(n_tasks):
        ix = json.loads((work / f"route-s{k:05d}.json").read_text())
        for b, off, n, _ in ix["members"]:
            where.setdefault(b, []).append((k, off, n))
    want = set(buckets)
    for b in sorted(want & set(where)):
        docs = []
        for k, off, n in where[b]:
            with open(work / f"route-s{k:05d}.bin", "rb") as f:
                f.seek(off)
                data = gzip.decompress(f.read(n))
            docs += [json.loads(line) for line in data.decode("utf-8", "surrogatepass").splitlines() if line]
        yield b, docs


def pack_task(k, n_tasks, in_dir, out_dir, tok_path, cfg: PackConfig):
    enc = load_tokenizer(tok_path)
    if enc.n_vocab > 65536:
        raise SystemExit(f"{tok_path}: {enc.n_vocab} tokens do not fit uint16 shards")
    sp = {t: enc.encode_single_token(t) for t in ("<|endoftext|>", "<repo_name>", "<file_sep>")}
    work = Path(out_dir) / "_work" / "route"
    mine, forced = plan(work, n_tasks, cfg)

    def is_val(lang, repo):
        return val_hash(cfg, lang, repo) < cfg.val_fraction or (lang, repo) in forced
    threads = cfg.threads or os.cpu_count() or 1
    writers, index = {}, []
    stats = {"docs_in": 0, "docs_out": 0, "sequences": 0, "bytes_in": 0, "tokens": 0, "tokens_val": 0,
             "tokens_per_language": {}, "dropped": {}}
    sp_arr = {t: np.array([i], dtype=np.uint16) for t, i in sp.items()}

    def encode(text):
        # runs in a worker thread: tiktoken drops the GIL while it encodes, and encode_to_numpy
        # hands back a buffer instead of a Python list of ints (disallowed_special=(): a file
        # that contains "<|endoftext|>" is plain text)
        return enc.encode_to_numpy(text, disallowed_special=()).astype(np.uint16)

    def sequences():
        # bucket by bucket; in a bucket, repositories of a language together, in a seeded random order
        for b, docs in bucket_docs(work, n_tasks, mine[k]):
            groups = {}
            for d in docs:
                groups.setdefault((group_language(cfg, d), d.get("repo") or ""), []).append(d)
            for lang in sorted({g[0] for g in groups}):
                repos = sorted(r for (l, r) in groups if l == lang)
                rng = np.random.default_rng(stable_u64(cfg.seed, "repos", lang, b) % 2**63)
                for i in rng.permutation(len(repos)):
                    yield (lang, repos[i]) + sequence_segments(lang, repos[i], groups[(lang, repos[i])], cfg)

    def emit(lang, repo, meta, docs, futs):
        parts = []
        segs = [f.result() for f in futs]
        if meta:
            parts += [sp_arr["<repo_name>"], segs[0]]
            segs = segs[1:]
        for seg in segs:
            parts += [sp_arr["<file_sep>"], seg]
        parts.append(sp_arr["<|endoftext|>"])
        arr = np.concatenate(parts)
        split = "val" if is_val(lang, repo) else "train"
        w = writers.get((split, lang))
        if w is None:
            w = writers[(split, lang)] = ShardWriter(out_dir, split, lang, k, cfg)
        path, off = w.write(arr)
        index.append({"shard": path, "offset": off, "tokens": len(arr), "split": split, "language": lang,
                      "repo": repo, "metadata": meta, "ids": [d["id"] for d in docs]})
        stats["docs_in"] += len(docs)
        stats["docs_out"] += len(docs)
        stats["sequences"] += 1
        stats["bytes_in"] += sum(len(d["content"].encode("utf-8", "surrogatepass")) for d in docs)
        if split == "train":
            stats["tokens"] += len(arr)
            stats["tokens_per_language"][lang] = stats["tokens_per_language"].get(lang, 0) + len(arr)
        else:
            stats["tokens_val"] += len(arr)

    # the threads encode ahead while this thread assembles and writes finished sequences, in
    # order; at most ~batch_chars of text is in flight
    pending, in_flight = deque(), 0
    with ThreadPoolExecutor(threads) as ex:
        for lang, repo, meta, segs, docs in sequences():
            futs = [ex.submit(encode, t) for t in segs]
            n = sum(map(len, segs))
            pending.append((lang, repo, meta, docs, futs, n))
            in_flight += n
            while in_flight > cfg.batch_chars:
                *head, n0 = pending.popleft()
                emit(*head)
                in_flight -= n0
        while pending:
            *head, _ = pending.popleft()
            emit(*head)
    shards = []
    for w in writers.values():
        w.close()
        shards += w.shards
    write_docs(Path(out_dir) / f"sequences-{k:05d}.jsonl.gz", index)     # deterministic gzip, atomic
    (Path(out_dir) / f"shards-{k:05d}.json").write_text(json.dumps(shards))
    return stats


def write_manifest(out_dir, in_dir, tok_path, n_tasks, cfg: PackConfig, stats: dict) -> dict:
    out_dir = Path(out_dir)
    enc = load_tokenizer(tok_path)
    shards = []
    for k in range(n_tasks):
        shards += json.loads((out_dir / f"shards-{k:05d}.json").read_text())
    shards.sort(key=lambda s: (s["split"] != "train", s["language"], s["path"]))
    man = {"vocab_size": enc.n_vocab, "eot_id": enc.eot_token, "shards": shards, **manifest_totals(shards),
           "documents": stats["docs_out"], "sequences": stats["sequences"],
           "documents_dir": str(Path(in_dir).resolve()), "settings": dict(asdict(cfg), n_tasks=n_tasks),
           "code_version": code_version()}
    # read back: the caller gets what is on disk (format, tokenizer name), e.g. phase2 adds to it
    man = json.loads(formats.write_manifest(out_dir, man, tokenizer=tok_path).read_text())
    print(f"pack: {man['tokens_train']:,} train + {man['tokens_val']:,} val tokens in {len(shards)} shards; "
          f"per language: " + ", ".join(f"{l} {t:,}" for l, t in man["tokens_per_language"].items()), flush=True)
    return man


def run(in_dir, tok_path, out_dir, tasks: int = 1, task=None, workers=None, cfg: PackConfig = PackConfig()):
    require_done(in_dir, "pack input")
    if not Path(tok_path).is_file():
        raise SystemExit(f"pack: tokenizer not found: {tok_path}")
    if workers is None and tasks > 1 and cfg.threads == 0:
        cfg = PackConfig(**{**asdict(cfg), "threads": 1})    # parallel tasks already use the cores
    settings = dict(asdict(cfg), input=str(Path(in_dir).resolve()), tokenizer=str(Path(tok_path).resolve()))
    settings.pop("threads")
    route = Path(out_dir) / "_work" / "route"
    if not is_done(out_dir, tasks) and run_tasks(
            route, tasks, route_task, args=(str(in_dir), str(route), cfg), task=task, workers=workers,
            name="pack/route", settings=settings, quiet=True) is None:
        print(f"pack: route pending in other tasks; rerun when all {tasks} are done", flush=True)
        return None
    stats = run_tasks(out_dir, tasks, pack_task, args=(str(in_dir), str(out_dir), str(tok_path), cfg), task=task,
                      workers=workers, name="pack", settings=settings)
    if stats is None:
        return None
    man = write_manifest(out_dir, in_dir, tok_path, tasks, cfg, stats)
    for f in route.glob("route-s*.bin"):          # every pack task is done: nobody reads them again
        f.unlink(missing_ok=True)
    return man


def main(argv=None):
    ap = argparse.ArgumentParser(description="Pack documents by language and repository into uint16 token shards.")
    ap.add_argument("--in", dest="inp", required=True, help="input step directory (e.g. D/decontaminate)")
    ap.add_argument("--tokenizer", required=True, help="tiktoken rank file (prepare.tokenizer)")
    ap.add_argument("--out", required=True, help="output shard directory (manifest.json + *.bin)")
    ap.add_argument("--val-fraction", type=float, default=0.01, help="share of each language's repositories held out")
    ap.add_argument("--metadata-prob", type=float, default=0.5, help="probability of repo name + paths in a sequence")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--source", default="phase1", help="the shards' 'source' in the manifest")
    ap.add_argument("--group", choices=("language", "repo"), default="language",
                    help="language: by language, then repository (the paper's); repo: by repository alone (Table 3)")
    add_task_args(ap)
    a = ap.parse_args(argv)
    if a.group == "repo":
        print("pack: grouping by repository alone (Table 3's ablation arm); shards are labelled language 'all'")
    run(a.inp, a.tokenizer, a.out, a.tasks, a.task, a.workers,
        PackConfig(val_fraction=a.val_fraction, metadata_prob=a.metadata_prob, seed=a.seed, source=a.source,
                   group=a.group))


if __name__ == "__main__":
    main()
