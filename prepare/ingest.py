"""
Ingest: raw code -> documents (README "Data formats"), keeping the paper's 18 languages.

    python -m prepare.ingest --input ~/src /data/the-stack/*.parquet --out D/ingest --tasks 4
    python -m prepare.ingest --out D/ingest --max-mb 30        # no --input: this machine's own code

Inputs, any mix of:
  - directories of source files: the language comes from the extension (prepare/languages.py),
    the repository is the directory `--repo-level` levels below the input root
    ("root/pkg/sub/x.py" with level 1 -> repo "root/pkg"); files directly in the root belong to
    repo "root";
  - JSONL files (.jsonl, .jsonl.gz, .jsonl.zst) and Parquet files with The Stack's fields:
    content, language or lang, max_stars_repo_name or repo_name or repository_name, max_stars_repo_path or path.
Units of work: a source file, a Parquet row group, a byte range of a plain .jsonl file (cut at
`unit_mb`, each range starting at the first line that begins in it), or a whole compressed .jsonl.gz
/ .zst file (not seekable). Units go to tasks by size, largest first to the least loaded task, so
one large input file does not make one slow task.
Dropped, each counted under its reason: other_language, binary, not_utf8 (a source file),
invalid_utf8 (a JSONL line that is not UTF-8), lone_surrogate (a record whose text holds an
unpaired UTF-16 surrogate, "\ud800" in JSON), unreadable, too_large, empty, no_content,
corrupt_line (a JSONL line that does not parse). Each bad record costs only itself: one warning
per file names file:line, the rest of the file is read.

The Stack v2 publishes ids, not contents: its files carry `blob_id` (the Software Heritage id of
the file) and no `content`. Such a record stops ingest with one message saying so; the contents
come from Software Heritage's S3 bucket (s3://softwareheritage/content/BLOB_ID, gzip-compressed)
and must be added as a `content` field first. When present, `blob_id` is the document's id.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import sys
import sysconfig
from dataclasses import dataclass, asdict
from pathlib import Path

from formats import part_name, write_docs
from prepare.languages import language_of, normalize_language
from prepare.pipeline import add_task_args, is_done, run_tasks


@dataclass
class IngestConfig:
    repo_level: int = 1              # directory depth below an input root that names a repository
    max_file_bytes: int = 10_000_000  # files larger than this are not even read (filter caps at 1 MB)
    max_mb: float | None = None       # machine mode (no inputs): read at most this many MB of code
    unit_mb: float = 256.0            # plain .jsonl files are cut into byte ranges of this size


DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet")
SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", "node_modules", ".venv", ".tox"}


def is_data_file(p: Path) -> bool:
    return p.name.endswith(DATA_SUFFIXES)


# -----------------------------------------------------------------------------
# the work units

def machine_roots() -> list[Path]:
    """Code on this machine, no download: the Python installation (stdlib + site-packages), the
    system's Pythons, C/C++ headers, and other languages' usual homes when present."""
    cands = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
             *sorted(str(p) for p in Path("/usr/lib").glob("python3*")),
             "/usr/include", "/usr/local/include", "/usr/share/javascript", "/usr/lib/node_modules",
             "/usr/share/java", "/usr/lib/go/src", "/usr/lib/ruby", "/usr/share/ruby", "/usr/share/bash-completion",
             "/etc/profile.d"]
    roots, seen = [], set()
    for c in cands:
        p = Path(c)
        if p.is_dir():
            rp = p.resolve()
            # nested roots (site-packages inside stdlib) are read once, as their own root
            if rp not in seen:
                seen.add(rp)
                roots.append(p)
    return roots


def data_units(path: Path, unit_bytes: int) -> list[tuple]:
    """A data file's units: ("data", path, part, n_parts) where part is a Parquet row group or a
    byte range of a plain .jsonl file (n_parts 1: the whole file)."""
    if path.name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
            n = pq.ParquetFile(path).metadata.num_row_groups
        except Exception:                          # noqa: BLE001 - read (and reported) as one unit
            n = 1
        return [("data", str(path), i, max(1, n)) for i in range(max(1, n))]
    if path.name.endswith(".jsonl"):
        try:
            n = max(1, -(-path.stat().st_size // unit_bytes))
        except OSError:
            n = 1
        return [("data", str(path), i, n) for i in range(n)]
    return [("data", str(path), 0, 1)]


def unit_size(u: tuple) -> int:
    try:
        size = os.path.getsize(u[2] if u[0] == "file" else u[1])
    except OSError:
        return 0
    return size if u[0] == "file" else size // u[3]


def assign_units(units: list, n_tasks: int) -> list[list]:
    """Units per task, balanced by bytes: largest first, each to the least loaded task (ties: the
    lower task); each task's units keep the listing order."""
    import heapq
    heap = [(0, k) for k in range(n_tasks)]
    mine = [[] for _ in range(n_tasks)]
    for i in sorted(range(len(units)), key=lambda i: (-unit_size(units[i]), i)):
        load, k = heapq.heappop(heap)
        mine[k].append(i)
        heapq.heappush(heap, (load + unit_size(units[i]), k))
    return [[units[i] for i in sorted(m)] for m in mine]


def list_units(inputs: list[Path], unit_bytes: int = 256_000_000) -> list[tuple]:
    """Every unit of work, in a stable order: ("file", root, path) or ("data", path, part, n_parts)."""
    units = []
    roots = [Path(p) for p in inputs]
    root_set = {r.resolve() for r in roots if r.is_dir()}
    for r in roots:
        if r.is_file():
            units += data_units(r, unit_bytes) if is_data_file(r) else [("file", str(r.parent), str(r))]
        elif r.is_dir():
            for dirpath, dirnames, filenames in os.walk(r):
                # don't descend into another input root (it is listed on its own) or junk dirs
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS
                                     and (Path(dirpath) / d).resolve() not in root_set)
                for fn in sorted(filenames):
                    p = Path(dirpath) / fn
                    units += data_units(p, unit_bytes) if is_data_file(p) else [("file", str(r), str(p))]
        else:
            print(f"ingest: warning: input not found, skipped: {r}", file=sys.stderr)
    return units


def machine_units(max_mb: float | None) -> list[tuple]:
    """Machine mode: source files of the 18 languages under machine_roots(), capped at max_mb by
    taking files round-robin across languages (so Shell or Java still show up next to the much
    larger Python and C), shuffled with a fixed seed within each language."""
    by_lang = {}
    for u in list_units(machine_roots()):
        if u[0] != "file":
            continue
        lang = language_of(u[2])
        if lang is None:
            continue
        try:
            size = os.path.getsize(u[2])
        except OSError:
            size = 0
        by_lang.setdefault(lang, []).append((u, size))
    if max_mb is None:
        return [u for lang in sorted(by_lang) for u, _ in by_lang[lang]]
    budget, picked = max_mb * 1e6, []
    # a seeded shuffle within each language, so a small sample spans many repositories
    for lang in by_lang:
        random.Random(f"machine-{lang}").shuffle(by_lang[lang])
    queues = {lang: iter(v) for lang, v in sorted(by_lang.items())}
    while queues and budget > 1000:
        for lang in list(queues):
            nxt = next(queues[lang], None)
            if nxt is None:
                del queues[lang]
                continue
            if nxt[1] <= budget:               # a file that would overshoot the cap is passed over
                picked.append(nxt[0])
                budget -= nxt[1]
    return picked


# -----------------------------------------------------------------------------
# reading

def repo_of(root: Path, path: Path, level: int) -> str:
    rel = path.relative_to(root).parts[:-1]
    return "/".join((root.name, *rel[:level])) if rel and level > 0 else root.name


def notebook_to_script(text: str) -> str:
    """A .ipynb as code: code cells verbatim, markdown cells as comments (The Stack's
    jupyter-scripts style, language-agnostic '#' comments)."""
    nb = json.loads(text)
    out = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        if cell.get("cell_type") == "code":
            out.append(src.rstrip("\n"))
        elif cell.get("cell_type") == "markdown":
            out.append("\n".join("# " + line if line else "#" for line in src.rstrip("\n").split("\n")))
    return "\n\n".join(x for x in out if x) + "\n"


def read_source_file(root: Path, path: Path, cfg: IngestConfig, stats: dict):
    """One source file -> a document, or None with the drop reason counted."""
    drop = stats["dropped"]
    lang = language_of(path)
    if lang is None:
        drop["other_language"] = drop.get("other_language", 0) + 1
        return None
    try:
        size = path.stat().st_size
        if size > cfg.max_file_bytes:
            drop["too_large"] = drop.get("too_large", 0) + 1
            return None
        data = path.read_bytes()
    except OSError as e:
        drop["unreadable"] = drop.get("unreadable", 0) + 1
        print(f"ingest: unreadable file skipped: {path} ({e.strerror or e})", file=sys.stderr)
        return None
    stats["bytes_in"] += len(data)
    if b"\0" in data[:8192]:
        drop["binary"] = drop.get("binary", 0) + 1
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        drop["not_utf8"] = drop.get("not_utf8", 0) + 1
        return None
    if lang == "Jupyter Notebook":
        try:
            text = notebook_to_script(text)
        except (ValueError, AttributeError, TypeError):
            drop["bad_notebook"] = drop.get("bad_notebook", 0) + 1
            return None
    if not text.strip():
        drop["empty"] = drop.get("empty", 0) + 1
        return None
    rel = str(path.relative_to(root))
    tag = f"{root.name}-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:6]}"
    return {"id": f"{tag}:{rel}", "content": text, "language": lang,
            "repo": repo_of(root, path, cfg.repo_level), "path": rel, "source": root.name}


def _open_bytes(path: Path):
    """A JSONL file as a binary stream: lines are decoded one by one, so one bad byte costs one line."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise SystemExit(f"{path}: reading .zst needs the 'zstandard' package (pip install zstandard)")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")))
    return open(path, "rb")


def _range_lines(fh, part: int, n_parts: int):
    """(where, line) of the lines of byte range `part` of `n_parts` of a plain file: those whose first
    byte lies in the range (a line crossing the end belongs to this range, not the next)."""
    size = os.fstat(fh.fileno()).st_size
    start, end = size * part // n_parts, size * (part + 1) // n_parts
    pos = start
    if start:
        fh.seek(start - 1)
        pos = start - 1 + len(fh.readline())       # skip to the first line starting at or after start
    while pos < end:
        line = fh.readline()
        if not line:
            break
        yield f"@{pos}", line
        pos += len(line)


def record_to_doc(rec: dict, where: str, source: str, stats: dict):
    """A The Stack-style record -> a document (or None, counted)."""
    drop = stats["dropped"]
    content = rec.get("content", rec.get("text"))
    if not isinstance(content, str):
        if rec.get("blob_id") is not None:
            raise SystemExit(
                f"ingest: {where}: record has 'blob_id' but no 'content': this looks like The Stack v2, whose "
                f"files carry ids only. Fetch each file from Software Heritage's S3 bucket "
                f"(s3://softwareheritage/content/<blob_id>, gzip-compressed; see the README) and add it as "
                f"'content', then ingest again")
        drop["no_content"] = drop.get("no_content", 0) + 1
        return None
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:                 # an unpaired surrogate ("\ud800" in the JSON)
        drop["lone_surrogate"] = drop.get("lone_surrogate", 0) + 1
        if not stats.get("_warned_surrogate"):
            print(f"ingest: {where}: record holds a lone surrogate, dropped (further ones only counted)", file=sys.stderr)
            stats["_warned_surrogate"] = True
        return None
    stats["bytes_in"] += len(content.encode("utf-8", "surrogatepass"))
    path = rec.get("max_stars_repo_path") or rec.get("path") or rec.get("file_path") or ""
    lang = normalize_language(rec.get("language") or rec.get("lang")) or (language_of(path) if path else None)
    if lang is None:
        drop["other_language"] = drop.get("other_language", 0) + 1
        return None
    if "\0" in content[:8192]:
        drop["binary"] = drop.get("binary", 0) + 1
        return None
    if not content.strip():
        drop["empty"] = drop.get("empty", 0) + 1
        return None
    repo = (rec.get("max_stars_repo_name") or rec.get("repo_name") or rec.get("repository_name")
            or rec.get("repo") or source)
    doc_id = rec.get("blob_id") or rec.get("id") or rec.get("hexsha") or where
    doc = {"id": f"{source}:{doc_id}", "content": content, "language": lang, "repo": str(repo),
           "path": str(path), "source": source}
    try:
        (doc["id"] + doc["repo"] + doc["path"]).encode("utf-8")
    except UnicodeEncodeError:
        drop["lone_surrogate"] = drop.get("lone_surrogate", 0) + 1
        return None
    return doc


def read_data_file(path: Path, stats: dict, part: int = 0, n_parts: int = 1):
    """Documents of one unit of a JSONL/Parquet file (a row group, a byte range, or all of it). A
    corrupt or non-UTF-8 line costs that line (one warning per file naming file:line, the others
    only counted); the rest of the file is read."""
    source = path.name.split(".")[0]
    if path.name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise SystemExit(f"{path}: reading Parquet needs the 'pyarrow' package (pip install pyarrow)")
        try:
            pf = pq.ParquetFile(path)
            groups = [part] if pf.metadata.num_row_groups > 1 or n_parts > 1 else None
            i = sum(pf.metadata.row_group(g).num_rows for g in range(part)) if groups else 0
            for batch in pf.iter_batches(batch_size=1024, row_groups=groups):
                for rec in batch.to_pylist():
                    i += 1
                    doc = record_to_doc(rec, f"{path.name}:{i}", source, stats)
                    if doc:
                        yield doc
        except OSError as e:
            stats["dropped"]["unreadable"] = stats["dropped"].get("unreadable", 0) + 1
            print(f"ingest: unreadable file skipped: {path} ({e})", file=sys.stderr)
        return
    warned = False
    where = "0"

    def bad(reason, msg):
        nonlocal warned
        stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1
        if not warned:
            print(f"ingest: {path}:{where}: {msg}; further bad lines in this file are only counted", file=sys.stderr)
            warned = True

    try:
        with _open_bytes(path) as fh:
            lines = _range_lines(fh, part, n_parts) if n_parts > 1 else ((str(i), l) for i, l in enumerate(fh, 1))
            for where, raw in lines:
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    bad("invalid_utf8", f"not UTF-8 (byte {e.start}), line skipped")
                    continue
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    bad("corrupt_line", f"corrupt JSONL line skipped ({str(e)[:80]})")
                    continue
                doc = record_to_doc(rec, f"{path.name}:{where}", source, stats)
                if doc:
                    yield doc
    except (OSError, EOFError) as e:          # unreadable, or a truncated .gz: keep what was read
        stats["dropped"]["unreadable"] = stats["dropped"].get("unreadable", 0) + 1
        print(f"ingest: {path}: read error after line {where}, rest skipped ({e})", file=sys.stderr)


# -----------------------------------------------------------------------------
# the step

def ingest_task(k: int, n_tasks: int, units: list, cfg: IngestConfig, out_dir: str) -> dict:
    stats = {"docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0, "dropped": {}}
    mine = assign_units(units, n_tasks)[k]

    def docs():
        for u in mine:
            if u[0] == "file":
                d = read_source_file(Path(u[1]), Path(u[2]), cfg, stats)
                ds = [d] if d else []
            else:
                ds = read_data_file(Path(u[1]), stats, u[2], u[3])
            for d in ds:
                stats["docs_out"] += 1
                stats["bytes_out"] += len(d["content"].encode("utf-8", "surrogatepass"))
                yield d

    write_docs(Path(out_dir) / part_name(k), docs())
    # every input (a source file, a JSONL/Parquet record, a corrupt line) is kept or dropped once
    stats["docs_in"] = stats["docs_out"] + sum(stats["dropped"].values())
    stats.pop("_warned_surrogate", None)
    return stats


def run(inputs, out_dir, tasks: int = 1, task=None, workers=None, cfg: IngestConfig = IngestConfig()):
    out_dir = Path(out_dir)
    if is_done(out_dir, tasks):
        units = [None]                     # finished earlier: no need to list the inputs again
    elif inputs:
        units = list_units([Path(p) for p in inputs], int(cfg.unit_mb * 1e6))
    else:
        units = machine_units(cfg.max_mb)
    if not units:
        raise SystemExit(f"ingest: no input files found in {', '.join(map(str, inputs)) or 'this machine'}")
    settings = dict(asdict(cfg), inputs=[str(Path(p).resolve()) for p in inputs] or "machine")
    return run_tasks(out_dir, tasks, ingest_task, args=(units, cfg, str(out_dir)), task=task, workers=workers,
                     name="ingest", settings=settings)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Ingest source trees / The Stack-style JSONL or Parquet into documents.")
    ap.add_argument("--input", nargs="*", default=[], help="directories, .jsonl(.gz/.zst) or .parquet files (default: this machine's code)")
    ap.add_argument("--out", required=True, help="output step directory")
    ap.add_argument("--repo-level", type=int, default=1, help="directory depth below an input root naming the repository")
    ap.add_argument("--max-mb", type=float, default=None, help="machine mode: read at most this many MB of code")
    add_task_args(ap)
    a = ap.parse_args(argv)
    stats = run(a.input, a.out, a.tasks, a.task, a.workers, IngestConfig(repo_level=a.repo_level, max_mb=a.max_mb))
    if stats is not None and stats["docs_out"] == 0:
        raise SystemExit(f"ingest: no documents kept out of {stats['docs_in']} inputs (dropped: {stats['dropped']})")


if __name__ == "__main__":
    main()
