"""
Reading and writing documents: gzipped JSONL parts (README "Data formats").

    for doc in read_docs("D/p1/filter"):          # every part-*.jsonl.gz of a step dir, in order
        ...
    write_docs("D/p1/filter/part-00000.jsonl.gz", docs)

A document is {"id", "content", "language", "repo", "path", "source", ...}.
"""
import gzip
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

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
    """Every document of a step dir (all part files, in order) or of one .jsonl(.gz) file."""
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
    """Write documents to a gzipped JSONL file atomically (a temp file renamed at the end, so a
    killed writer never leaves a half part behind). Returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    n = 0
    # mtime=0 and no file name in the header: the same documents give byte-identical files
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=3, mtime=0) as gz:
        for d in docs:
            gz.write((json.dumps(d, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass"))
            n += 1
    os.replace(tmp, path)
    return n
