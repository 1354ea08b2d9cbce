"""
Benchmark files: finding, downloading, caching and reading them. What each benchmark's files are,
and what its loader selects, lives in its own file under eval/tasks/ (the DATA dicts).

    from eval.data import load_benchmark
    tasks = load_benchmark("humaneval+")            # list of dicts, one per task, upstream fields

Where the data comes from, first match wins:
  1. the `path` argument: a file, or a directory holding the file under its usual name;
  2. the directory in $SNOWCODER_BENCHMARKS (tests and CI point it at ../shared/benchmarks);
  3. ../shared/benchmarks beside the project, when it exists (this workplace's staged copy);
  4. a download cache ($SNOWCODER_CACHE or ~/.cache/snowcoder/benchmarks), filled from the official
     source the first time (never at test time: tests always have 1 or 2).

Records keep the upstream fields unchanged, so other parts (decontamination) see the real text;
a benchmark's `select` (eval/tasks) may pick records or add a field (MBPP's split, MBPP+'s version,
the BigCodeBench-Hard ids).
"""
import gzip
import hashlib
import json
import urllib.request
from pathlib import Path

from eval.tasks import SOURCES
from eval.tasks.mbpp import MBPP_PLUS_DROPPED, MBPP_PLUS_PRERELEASE  # noqa: F401 - used by eval.run and tests
from formats import benchmark_dirs, cache_dir

NAMES = sorted(SOURCES)


def _find_in_dir(d: Path, name: str):
    for f in SOURCES[name]["files"]:
        if (d / f).is_file():
            return d / f
    return None


def _download(name: str) -> Path:
    src = SOURCES[name]
    dest = cache_dir() / src["files"][0]
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in src["urls"]:
        try:
            print(f"downloading {name} from {url}")
            with urllib.request.urlopen(url, timeout=60) as r:
                raw = r.read()
        except Exception as e:  # try the next mirror
            errors.append(f"{url}: {e}")
            continue
        text = _decode(raw, url)
        if src["sha256"] and hashlib.sha256(text.encode()).hexdigest() != src["sha256"]:
            errors.append(f"{url}: sha256 mismatch")
            continue
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(text.encode(), mtime=0))
        tmp.replace(dest)  # atomic: a killed download leaves no half file under the real name
        return dest
    raise SystemExit(f"could not download benchmark {name!r} ({'; '.join(errors)}); "
                     f"pass a local file/dir or set SNOWCODER_BENCHMARKS")


def _decode(raw: bytes, where) -> str:
    """Raw file bytes (gz or not, JSONL or a JSON array) -> JSONL text."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    if text.lstrip().startswith("["):  # sanitized-mbpp.json is a JSON array
        text = "".join(json.dumps(r) + "\n" for r in json.loads(text))
    return text


def locate(name: str, path=None):
    """The file load_benchmark(name, path) would read, or None when it would have to download it."""
    if name not in SOURCES:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(NAMES)}")
    # formats.benchmark_dirs: the given path, $SNOWCODER_BENCHMARKS, ../shared/benchmarks, the cache
    for p in benchmark_dirs(path):
        if p.is_file():
            return p
        if p.is_dir() and (f := _find_in_dir(p, name)) is not None:
            return f
        if path is not None and p == Path(path):
            raise SystemExit(f"benchmark {name!r}: {p} is neither a file nor a directory holding one of {SOURCES[name]['files']}")
    return None


def benchmark_file(name: str, path=None) -> Path:
    """The file load_benchmark(name, path) reads (downloading it into the cache if needed)."""
    return locate(name, path) or _download(name)


def read_jsonl_text(path) -> str:
    return _decode(Path(path).read_bytes(), path)


def dataset_hash(name: str, path=None) -> str:
    """md5 of the decompressed file (the "hash" EvalPlus reports); keys the expected-output cache."""
    return hashlib.md5(read_jsonl_text(benchmark_file(name, path)).encode()).hexdigest()


def load_benchmark(name: str, path=None) -> list[dict]:
    """All tasks of benchmark `name` (see NAMES) as a list of dicts with the upstream fields."""
    f = benchmark_file(name, path)
    rows = []
    for i, line in enumerate(read_jsonl_text(f).splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SystemExit(f"{f}: line {i + 1} is not JSON ({e})")
    select = SOURCES[name].get("select")
    return select(rows, f) if select else rows


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Print task counts of the benchmarks (downloading missing ones).")
    ap.add_argument("names", nargs="*", default=NAMES, help=f"benchmarks (default all: {', '.join(NAMES)})")
    ap.add_argument("--path", default=None, help="file or directory to read from")
    a = ap.parse_args()
    for n in a.names:
        rows = load_benchmark(n, a.path)
        print(f"{n:18s} {len(rows):5d} tasks  {benchmark_file(n, a.path)}")
