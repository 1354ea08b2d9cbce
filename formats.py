"""
Every file format that crosses a phase boundary, and nothing else (README "Data formats").

    documents     gzipped JSONL parts, one object per line: read_docs / write_docs
    manifest      the token-shard manifest.json: write_manifest / read_manifest (validated)
    tokenizer     a tiktoken rank file + our special tokens: save_tokenizer / load_tokenizer
    safetensors   model weights: save_safetensors / load_safetensors
    JSONL logs    append-only files a run resumes from: AppendLog (locked, torn-line repair), read_jsonl
    benchmarks    where benchmark data is looked for: benchmark_dirs / cache_dir

The ground floor: every other file imports this one, and it imports nothing of the project
(torch and tiktoken only inside the functions that need them). Writes are atomic: a temp file in
the same directory, then os.replace, so a killed writer never leaves a half file under the real name.
"""
import base64
import fcntl
import gzip
import json
import os
import shutil
import struct
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

PROJECT_ROOT = Path(__file__).resolve().parent


@contextmanager
def _atomic(path, mode="wb"):
    """A temp file beside `path`: it replaces `path` when the block ends, and is removed if the
    block raises, so `path` is always the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path, obj, indent=1, sort_keys=False) -> Path:
    """A JSON file written atomically (readers see the old file or the new one, never half)."""
    with _atomic(path, "w") as f:
        f.write(json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n")
    return Path(path)


# -----------------------------------------------------------------------------
# documents: {"id", "content", "language", "repo", "path", "source", ...}; steps may add fields

FIELDS = ("id", "content", "language", "repo", "path", "source")


def part_name(task: int) -> str:
    return f"part-{task:05d}.jsonl.gz"


def doc_files(path) -> list[Path]:
    """The part files of a step dir (sorted), or [path] for a single file."""
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob("part-*.jsonl.gz"))
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"no documents at {path} (expected a step dir with part-*.jsonl.gz or a .jsonl.gz file)")


def is_docs_path(path) -> bool:
    """True for a step dir holding part-*.jsonl.gz files or a .jsonl(.gz) file."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob("part-*.jsonl.gz"))
    return path.name.endswith((".jsonl.gz", ".jsonl"))


def read_docs(path) -> Iterator[dict]:
    """Every document of a step dir (all part files, in order) or of one .jsonl(.gz) file. Our own
    outputs are written atomically, so a bad line here is corruption: one clear error."""
    for f in doc_files(path):
        opener = gzip.open if f.name.endswith(".gz") else open
        with opener(f, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{f}:{lineno}: corrupt document line ({e.msg})") from None


def write_docs(path, docs: Iterable[dict]) -> int:
    """Write documents to a gzipped JSONL file atomically. Returns the number written.
    mtime=0 and no file name in the gzip header: the same documents give byte-identical files."""
    n = 0
    with _atomic(path) as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=3, mtime=0) as gz:
        for d in docs:
            gz.write((json.dumps(d, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass"))
            n += 1
    return n


# -----------------------------------------------------------------------------
# the token-shard manifest: raw little-endian uint16 files described by DIR/manifest.json

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "snowcoder-shards-v1"


class ManifestError(ValueError):
    """A manifest that cannot be trained on; the message is one line naming the file."""


def _check_manifest(man: dict, where) -> None:
    if not isinstance(man, dict):
        raise ManifestError(f"{where}: not a JSON object")
    if man.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT or man.get("dtype", "uint16") != "uint16":
        raise ManifestError(f"{where}: format={man.get('format')!r} dtype={man.get('dtype')!r}, "
                            f"expected {MANIFEST_FORMAT}/uint16")
    shards = man.get("shards")
    if not isinstance(shards, list):
        raise ManifestError(f"{where}: 'shards' must be a list")
    for i, s in enumerate(shards):
        missing = [k for k in ("path", "tokens") if k not in s]
        if missing:
            raise ManifestError(f"{where}: shard {i} lacks {', '.join(missing)}")
        if s.get("split", "train") not in ("train", "val"):
            raise ManifestError(f"{where}: shard {s['path']}: split {s.get('split')!r} is not 'train' or 'val'")
        if int(s.get("epochs", 1)) < 1:
            raise ManifestError(f"{where}: shard {s['path']}: epochs must be >= 1")


def manifest_totals(shards: list) -> dict:
    """The token counts a manifest states, computed from its shards: train tokens per language
    (largest first) and per source, train and val totals."""
    tpl, tps = {}, {}
    for s in shards:
        if s["split"] == "train":
            tpl[s["language"]] = tpl.get(s["language"], 0) + int(s["tokens"])
            tps[s["source"]] = tps.get(s["source"], 0) + int(s["tokens"])
    return {"tokens_per_language": dict(sorted(tpl.items(), key=lambda kv: -kv[1])), "tokens_per_source": tps,
            "tokens_train": sum(tpl.values()),
            "tokens_val": sum(int(s["tokens"]) for s in shards if s["split"] == "val")}


def write_manifest(out_dir, manifest: dict, tokenizer=None) -> Path:
    """Validate and write OUT_DIR/manifest.json atomically (shard paths relative to OUT_DIR).
    tokenizer: a rank file copied to OUT_DIR/tokenizer.tiktoken and named in the manifest, so a
    shard dir is self-contained. Totals the manifest states must agree with its shards."""
    out_dir = Path(out_dir)
    man = {"format": MANIFEST_FORMAT, "dtype": "uint16", **manifest}
    path = out_dir / MANIFEST_NAME
    _check_manifest(man, path)
    for i, sh in enumerate(man["shards"]):  # what the totals are taken over; readers may do without
        missing = [k for k in ("split", "language", "source") if k not in sh]
        if missing:
            raise ManifestError(f"{path}: shard {i} lacks {', '.join(missing)}")
    for k, v in manifest_totals(man["shards"]).items():
        if k in man and man[k] != v:
            raise ManifestError(f"{path}: {k}={man[k]!r} disagrees with the shards ({v!r})")
    if tokenizer is not None:
        dest = out_dir / TOKENIZER_FILE
        if Path(tokenizer).resolve() != dest.resolve():
            with open(tokenizer, "rb") as src, _atomic(dest) as f:
                shutil.copyfileobj(src, f)
        man["tokenizer"] = TOKENIZER_FILE
    return write_json(path, man)


def read_manifest(data_dir) -> dict:
    """A validated manifest (a dir holding manifest.json, or the file itself). Shard paths and the
    tokenizer are made absolute, every shard's size is checked against its token count, and
    man["path"] is the manifest file. Raises ManifestError (one line) on any problem."""
    p = Path(data_dir)
    path = p if p.suffix == ".json" else p / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no manifest at {path} (run prepare/ first)")
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    _check_manifest(man, path)
    base = path.resolve().parent
    for s in man["shards"]:
        s["path"] = str(base / s["path"])
        if not os.path.isfile(s["path"]):
            raise ManifestError(f"{path}: shard {s['path']} not found")
        size = os.path.getsize(s["path"])
        if size != 2 * int(s["tokens"]):
            raise ManifestError(f"{s['path']}: {size} bytes, but {path} says {s['tokens']} uint16 tokens")
    tok = man.get("tokenizer")
    man["tokenizer"] = str(base / tok) if tok else None
    man["path"] = str(path)
    return man


# -----------------------------------------------------------------------------
# tokenizer: tiktoken's rank file ("base64(token) rank" per line); special tokens take the ids
# right after the merges, in this order; n_vocab counts them

TOKENIZER_FILE = "tokenizer.tiktoken"
SPECIAL_TOKENS = ["<|endoftext|>", "<repo_name>", "<file_sep>", "<|pad|>"]
# Code-aware pre-tokenization (GPT-4's cl100k pattern adapted to source code):
#  - no English contractions ('s 're ...): in code a quote is a string delimiter, not a suffix;
#  - one optional non-letter joins the word after it, so ".append", "_name", "(self", " def"
#    are single pieces;
#  - numbers in groups of at most 3 digits (like cl100k), so the vocabulary is not spent on
#    thousands of literals;
#  - runs of punctuation stay together with their trailing newlines ("):\n", "}\n\n");
#  - whitespace runs before a word keep all but their last space, so indentation becomes its
#    own token ("        " then " return"), which code is full of.
SPLIT_PATTERN = (
    r"""[^\r\n\p{L}\p{N}]?+\p{L}+"""
    r"""|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]"""
    r"""|\s+(?!\S)"""
    r"""|\s+"""
)


def save_tokenizer(ranks: dict, path) -> None:
    """Write the rank file of {token bytes: rank}, by rank, atomically."""
    with _atomic(path, "w") as f:
        for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(tok).decode("ascii") + " " + str(r) + "\n")


def load_ranks(path) -> dict:
    ranks = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                tok, r = line.split()
                ranks[base64.b64decode(tok)] = int(r)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: not a tiktoken rank line: {line[:80]!r}") from None
    return ranks


def load_tokenizer(path):
    """The tiktoken.Encoding of a rank file (or of DIR/tokenizer.tiktoken for a directory, e.g.
    an export or a shard dir)."""
    import tiktoken
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    ranks = load_ranks(path)
    if not ranks:
        raise ValueError(f"{path}: empty tokenizer file")
    n = max(ranks.values()) + 1
    special = {t: n + i for i, t in enumerate(SPECIAL_TOKENS)}
    return tiktoken.Encoding(name=f"snowcoder-{n + len(special)}", pat_str=SPLIT_PATTERN,
                             mergeable_ranks=ranks, special_tokens=special)


# -----------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, a JSON header
# {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then raw
# little-endian bytes (offsets relative to the end of the header)

def _st_dtypes():
    import torch
    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
            "U8": torch.uint8, "BOOL": torch.bool}


def save_safetensors(tensors: dict, path, metadata=None) -> None:
    import torch
    names = {v: k for k, v in _st_dtypes().items()}
    header, offset, blobs = {"__metadata__": {"format": "pt", **(metadata or {})}}, 0, []
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype not in names:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {t.dtype}")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        blobs.append(t)
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # pad so the data starts 8-byte aligned
    with _atomic(path) as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for t in blobs:
            f.write(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def load_safetensors(path) -> dict:
    """name -> CPU tensor. Reads tensor by tensor (no second copy of the whole file in memory)."""
    import torch
    dtypes = _st_dtypes()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path}: not a safetensors file (bad header)") from None
        header.pop("__metadata__", None)
        out = {}
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if info["dtype"] not in dtypes:
                raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            if 8 + n + end > size:
                raise ValueError(f"{path}: tensor {name!r} runs past the end of the file (truncated?)")
            buf = bytearray(end - begin)
            f.seek(8 + n + begin)
            f.readinto(buf)
            t = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
            out[name] = t.view(dtypes[info["dtype"]]).reshape(info["shape"])
    return out


# -----------------------------------------------------------------------------
# JSONL files, and the append-only logs a run resumes from (samples, verdicts, synthesis, train log)

def _whole_row(line: bytes):
    """A line's row if it is one complete JSON object, else None."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) else None


def iter_jsonl(path) -> Iterator[dict]:
    """Rows of a JSONL file (.gz too). A last line without its newline is either a whole row (a file
    written elsewhere without the final newline: kept) or a writer killed mid-line: skipped with a
    note on stderr (AppendLog repairs it under its lock). Any other bad line: one "file:line: problem"."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for i, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                row = _whole_row(line) if line.strip() else None
                if row is not None:
                    yield row
                elif line.strip():
                    print(f"{path}:{i}: skipping a torn last line ({len(line)} bytes)", file=sys.stderr)
                return
            if not line.strip():
                continue
            try:
                yield json.loads(line.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e})") from None


def read_jsonl(path) -> list[dict]:
    """iter_jsonl as a list; a missing file is no rows."""
    return list(iter_jsonl(path)) if Path(path).exists() else []


class AppendLog:
    """An append-only JSONL file owned by one process at a time.

        with AppendLog(path) as log:    # exclusive lock on PATH.lock first, then the torn-line repair
            done = {r["id"] for r in log.rows}
            log.append([{"id": ...}])     # written, flushed and fsynced before it returns

    The lock comes before the repair: a second process on the same file gets a clear error instead
    of cutting the line a live writer is in the middle of."""

    def __init__(self, path, rows: bool = True):
        self.path = Path(path)
        self.read_rows = rows  # False: rows stays empty; a log too big to hold is read with iter_jsonl
        self.rows: list[dict] = []
        self._lock = self._f = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path.with_name(self.path.name + ".lock"), "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"{self.path} is in use by another process (lock {self._lock.name}); "
                               "wait for it to finish or use another output") from None
        if self.path.exists():
            with open(self.path, "r+b") as f:  # a writer killed mid-line: cut the torn line
                size = end = f.seek(0, 2)
                while end > 0:  # back to the last newline, a block at a time (the log may be huge)
                    f.seek(max(0, end - 65536))
                    j = f.read(end - f.tell()).rfind(b"\n")
                    if j >= 0:
                        end = max(0, end - 65536) + j + 1
                        break
                    end = max(0, end - 65536)
                if end != size:
                    f.seek(end)
                    if _whole_row(f.read(size - end)) is not None:
                        f.write(b"\n")  # a whole row that only lacks its newline: kept
                    else:
                        f.truncate(end)
                        print(f"{self.path}: cut a torn last line ({size - end} bytes)", file=sys.stderr)
            if self.read_rows:
                self.rows = read_jsonl(self.path)
        self._f = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, rows: Iterable[dict]) -> None:
        for r in rows:
            self._f.write(json.dumps(r, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def __exit__(self, *exc):
        self._f.close()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()
        return False


# -----------------------------------------------------------------------------
# benchmark data: one rule for where it is looked for

def cache_dir() -> Path:
    """Where downloaded benchmark files are kept ($SNOWCODER_CACHE/benchmarks, default ~/.cache/snowcoder)."""
    return Path(os.environ.get("SNOWCODER_CACHE", Path.home() / ".cache" / "snowcoder")) / "benchmarks"


def benchmark_dirs(path=None) -> list[Path]:
    """Places to look for benchmark files, in order: the path given, $SNOWCODER_BENCHMARKS,
    ../shared/benchmarks beside the project, the download cache. Only existing ones after `path`."""
    out = [Path(path)] if path is not None else []
    if os.environ.get("SNOWCODER_BENCHMARKS"):
        out.append(Path(os.environ["SNOWCODER_BENCHMARKS"]))
    out.append(PROJECT_ROOT.parent / "shared" / "benchmarks")
    out.append(cache_dir())
    return out[:1] + [d for d in out[1:] if d.exists()] if path is not None else [d for d in out if d.exists()]
