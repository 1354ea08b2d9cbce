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
Each input file or source file is one unit of work; units are dealt to tasks round-robin.
Dropped, each counted under its reason: other_language, binary, not_utf8, unreadable, too_large,
empty, corrupt_line (a JSONL line that does not parse: one warning naming file:line).
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

from prepare.docs import part_name, write_docs
from prepare.languages import language_of, normalize_language
from prepare.pipeline import add_task_args, is_done, run_tasks


@dataclass
class IngestConfig:
    repo_level: int = 1              # directory depth below an input root that names a repository
    max_file_bytes: int = 10_000_000  # files larger than this are not even read (filter caps at 1 MB)
    max_mb: float | None = None       # machine mode (no inputs): read at most this many MB of code


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


def list_units(inputs: list[Path]) -> list[tuple]:
    """Every unit of work, in a stable order: ("file", root, path) or ("data", path)."""
    units = []
    roots = [Path(p) for p in inputs]
    root_set = {r.resolve() for r in roots if r.is_dir()}
    for r in roots:
        if r.is_file():
            units.append(("data", str(r)) if is_data_file(r) else ("file", str(r.parent), str(r)))
        elif r.is_dir():
            for dirpath, dirnames, filenames in os.walk(r):
                # don't descend into another input root (it is listed on its own) or junk dirs
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS
                                     and (Path(dirpath) / d).resolve() not in root_set)
                for fn in sorted(filenames):
                    p = Path(dirpath) / fn
                    units.append(("data", str(p)) if is_data_file(p) else ("file", str(r), str(p)))
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


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="strict")
    if path.name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise SystemExit(f"{path}: reading .zst needs the 'zstandard' package (pip install zstandard)")
        raw = open(path, "rb")
        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
    return open(path, "rt", encoding="utf-8")


def record_to_doc(rec: dict, where: str, source: str, stats: dict):
    """A The Stack-style record -> a document (or None, counted)."""
    drop = stats["dropped"]
    content = rec.get("content", rec.get("text"))
    if not isinstance(content, str):
        drop["no_content"] = drop.get("no_content", 0) + 1
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
    doc_id = rec.get("id") or rec.get("hexsha") or where
    return {"id": f"{source}:{doc_id}", "content": content, "language": lang, "repo": str(repo),
            "path": str(path), "source": source}


def read_data_file(path: Path, stats: dict):
    """Documents of one JSONL/Parquet file. A corrupt line is reported once (file:line) and
    skipped; the rest of the file is read."""
    source = path.name.split(".")[0]
    if path.name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise SystemExit(f"{path}: reading Parquet needs the 'pyarrow' package (pip install pyarrow)")
        try:
            pf = pq.ParquetFile(path)
            i = 0
            for batch in pf.iter_batches(batch_size=1024):
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
    lineno = 0
    try:
        with _open_text(path) as fh:
            while True:
                try:
                    line = fh.readline()
                except UnicodeDecodeError:
                    lineno += 1
                    stats["dropped"]["corrupt_line"] = stats["dropped"].get("corrupt_line", 0) + 1
                    print(f"ingest: {path}:{lineno}: not UTF-8; the rest of this file is skipped", file=sys.stderr)
                    return
                if not line:
                    break
                lineno += 1
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    stats["dropped"]["corrupt_line"] = stats["dropped"].get("corrupt_line", 0) + 1
                    if not warned:
                        print(f"ingest: {path}:{lineno}: corrupt JSONL line skipped ({str(e)[:80]}); "
                              f"further bad lines in this file are only counted", file=sys.stderr)
                        warned = True
                    continue
                doc = record_to_doc(rec, f"{path.name}:{lineno}", source, stats)
                if doc:
                    yield doc
    except (OSError, EOFError) as e:          # unreadable, or a truncated .gz: keep what was read
        stats["dropped"]["unreadable"] = stats["dropped"].get("unreadable", 0) + 1
        print(f"ingest: {path}: read error after line {lineno}, rest skipped ({e})", file=sys.stderr)


# -----------------------------------------------------------------------------
# the step

def ingest_task(k: int, n_tasks: int, units: list, cfg: IngestConfig, out_dir: str) -> dict:
    stats = {"docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0, "dropped": {}}
    mine = units[k::n_tasks]

    def docs():
        for u in mine:
            if u[0] == "file":
                d = read_source_file(Path(u[1]), Path(u[2]), cfg, stats)
                ds = [d] if d else []
            else:
                ds = read_data_file(Path(u[1]), stats)
            for d in ds:
                stats["docs_out"] += 1
                stats["bytes_out"] += len(d["content"].encode("utf-8", "surrogatepass"))
                yield d

    write_docs(Path(out_dir) / part_name(k), docs())
    # every input (a source file, a JSONL/Parquet record, a corrupt line) is kept or dropped once
    stats["docs_in"] = stats["docs_out"] + sum(stats["dropped"].values())
    return stats


def run(inputs, out_dir, tasks: int = 1, task=None, workers=None, cfg: IngestConfig = IngestConfig()):
    out_dir = Path(out_dir)
    if is_done(out_dir, tasks):
        units = [None]                     # finished earlier: no need to list the inputs again
    elif inputs:
        units = list_units([Path(p) for p in inputs])
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
