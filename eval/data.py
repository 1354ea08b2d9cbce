"""
Benchmark loaders: HumanEval, HumanEval+, MBPP, MBPP+, BigCodeBench (full and Hard), GSM8K.

    from eval.data import load_benchmark
    tasks = load_benchmark("humaneval+")            # list of dicts, one per task, upstream fields

Where the data comes from, first match wins:
  1. the `path` argument: a file, or a directory holding the file under its usual name;
  2. the directory in $SNOWCODER_BENCHMARKS (tests and CI point it at ../shared/benchmarks);
  3. ../shared/benchmarks beside the project, when it exists (this workplace's staged copy);
  4. a download cache ($SNOWCODER_CACHE or ~/.cache/snowcoder/benchmarks), filled from the official
     source the first time (never at test time: tests always have 1 or 2).

Records keep the upstream fields unchanged, so other parts (decontamination) see the real text.
What load_benchmark adds or selects:
  - "mbpp": the original 974 MBPP problems with a "split" field (prompt 1-10, test 11-510,
    validation 511-600, train 601-974). Evaluation ("mbpp" task in eval.run) uses the MBPP+ tasks.
  - "mbpp+": the EvalPlus file. The only one staged here is the 2023-11-16 pre-release (399 tasks),
    NOT the official v0.2.0; we drop the 21 ids the v0.2.0 release dropped, leaving 378, and mark
    every record with "version" so results say "MBPP+ (pre-release inputs)". An official v0.2.0 file
    (already 378 tasks) is accepted as-is.
  - "bigcodebench-hard": the 148 Hard ids taken out of the full v0.1.0_hf file.
"""
import gzip
import hashlib
import json
import urllib.request
from pathlib import Path

from formats import benchmark_dirs, cache_dir

# name -> (candidate file names in a directory, first one is the cache name), download urls
# (tried in order), sha256 of the decompressed jsonl when we know it (None: do not check)
SOURCES = {
    "humaneval": dict(
        files=["HumanEval.jsonl.gz", "HumanEval.jsonl"],
        urls=["https://github.com/openai/human-eval/raw/6d43fb980f9fee3c892a914eda09951f772ad10d/data/HumanEval.jsonl.gz"],
        sha256="1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2"),
    "humaneval+": dict(
        files=["HumanEvalPlus-v0.1.10.jsonl.gz", "HumanEvalPlus.jsonl.gz", "HumanEvalPlus-v0.1.10.jsonl"],
        urls=["https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus-v0.1.10.jsonl.gz",
              "https://github.com/evalplus/humanevalplus_release/raw/200defce9e3429d28ca215b6dd061c0f7f31c18b/HumanEvalPlus.jsonl.gz"],
        sha256="42526ec0e7d5f3ee0b06d6ced98f8c8bae3d76519151bfb3d36f79010645bd7f"),
    "humaneval+-mini": dict(
        files=["HumanEvalPlus-Mini-v0.1.10.jsonl.gz", "HumanEvalPlus-Mini.jsonl.gz"],
        urls=["https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus-Mini-v0.1.10.jsonl.gz",
              "https://github.com/evalplus/humanevalplus_release/raw/200defce9e3429d28ca215b6dd061c0f7f31c18b/HumanEvalPlus-Mini.jsonl.gz"],
        sha256="78fbba8865b20c5a979cda6e02fd72538e1762e65980af7d1a6e93c3e87e93af"),
    "mbpp": dict(
        files=["mbpp.jsonl.gz", "mbpp.jsonl"],
        urls=["https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl"],
        sha256=None),  # two upstream revisions circulate (see ../shared/benchmarks/README.md)
    "mbpp-sanitized": dict(
        files=["sanitized-mbpp.jsonl.gz", "sanitized-mbpp.jsonl", "sanitized-mbpp.json"],
        urls=["https://raw.githubusercontent.com/google-research/google-research/master/mbpp/sanitized-mbpp.json"],
        sha256=None),
    "mbpp+": dict(
        files=["MbppPlus-prerelease-20231116.jsonl.gz", "MbppPlus-v0.2.0.jsonl.gz", "MbppPlus.jsonl.gz", "MbppPlus.jsonl"],
        # the official release asset first (378 tasks, used as-is), then the pre-release in the repo
        urls=["https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus-v0.2.0.jsonl.gz",
              "https://raw.githubusercontent.com/evalplus/evalplus/767efcc368e0ef16568bba4ee2f1b005e849e8a6/MbppPlus.jsonl"],
        sha256=None),
    "bigcodebench": dict(
        files=["BigCodeBench-v0.1.0_hf.jsonl.gz", "BigCodeBench.jsonl.gz"],
        urls=["https://github.com/bigcode-project/bigcodebench-annotation/raw/d8a1b7b418b5c73b32e6d9731e062f549818c8d9/hf_data/BigCodeBench.jsonl.gz"],
        sha256="33baf4f414eb34507f1a8fd55ef9bcd79c1f9b4c3e8e2544f023edac1b20afec"),
    "gsm8k": dict(
        files=["gsm8k-test.jsonl.gz", "test.jsonl"],
        urls=["https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/test.jsonl"],
        sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
}
SOURCES["bigcodebench-hard"] = dict(SOURCES["bigcodebench"], files=["BigCodeBench-Hard-v0.1.0_hf.jsonl.gz"] + SOURCES["bigcodebench"]["files"])
NAMES = sorted(SOURCES)

# The 21 task ids that MBPP+ v0.2.0 removed from the pre-release set (399 -> 378).
MBPP_PLUS_DROPPED = {83, 115, 117, 143, 164, 229, 249, 295, 396, 400, 407, 431, 438, 442, 461, 574, 582, 595, 640, 746, 783}
MBPP_PLUS_PRERELEASE = "MBPP+ pre-release 2023-11-16, 21 ids dropped (not the official v0.2.0)"

# BigCodeBench-Hard v0.1.0 ids (the official list lives only on the HF Hub; see the benchmarks README)
BCB_HARD_IDS = [13, 15, 17, 19, 34, 37, 82, 89, 92, 93, 99, 100, 101, 108, 120, 123, 124, 129, 139, 147, 161, 162, 177,
                184, 187, 199, 208, 211, 214, 227, 239, 241, 267, 273, 274, 287, 302, 308, 310, 313, 324, 326, 341, 346,
                360, 367, 368, 374, 399, 401, 409, 417, 418, 424, 443, 445, 454, 458, 461, 477, 486, 492, 501, 502, 503,
                509, 511, 513, 526, 528, 530, 532, 553, 560, 567, 574, 579, 582, 583, 587, 590, 592, 593, 594, 618, 636,
                637, 654, 655, 657, 678, 720, 723, 752, 760, 763, 765, 771, 777, 785, 800, 826, 845, 854, 857, 865, 870,
                879, 897, 906, 914, 915, 916, 917, 928, 942, 945, 952, 955, 963, 964, 969, 971, 985, 988, 990, 998, 999,
                1003, 1004, 1006, 1008, 1012, 1013, 1015, 1019, 1020, 1022, 1039, 1040, 1042, 1053, 1057, 1077, 1085,
                1124, 1129, 1137]


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


def benchmark_file(name: str, path=None) -> Path:
    """The file load_benchmark(name, path) reads (downloading it into the cache if needed)."""
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
    return _download(name)


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
    if name == "mbpp":
        for r in rows:
            t = int(r["task_id"])
            r["split"] = "prompt" if t <= 10 else "test" if t <= 510 else "validation" if t <= 600 else "train"
    elif name == "mbpp+":
        if len(rows) == 399:  # the pre-release: apply the v0.2.0 selection, say so on every record
            rows = [r for r in rows if int(r["task_id"].split("/")[1]) not in MBPP_PLUS_DROPPED]
            for r in rows:
                r["version"] = MBPP_PLUS_PRERELEASE
        else:
            for r in rows:
                r.setdefault("version", "MBPP+ " + f.name)
    elif name == "bigcodebench-hard" and len(rows) != len(BCB_HARD_IDS):
        keep = {f"BigCodeBench/{i}" for i in BCB_HARD_IDS}
        rows = [r for r in rows if r["task_id"] in keep]
    return rows


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Print task counts of the benchmarks (downloading missing ones).")
    ap.add_argument("names", nargs="*", default=NAMES, help=f"benchmarks (default all: {', '.join(NAMES)})")
    ap.add_argument("--path", default=None, help="file or directory to read from")
    a = ap.parse_args()
    for n in a.names:
        rows = load_benchmark(n, a.path)
        print(f"{n:18s} {len(rows):5d} tasks  {benchmark_file(n, a.path)}")
