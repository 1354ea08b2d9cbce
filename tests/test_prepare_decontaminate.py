"""prepare/decontaminate.py: files embedding a HumanEval canonical solution or MBPP test asserts
are removed, with the benchmark item named; nothing else is."""
import gzip
import json
import textwrap

import pytest

from conftest import stdlib_dir
from prepare import decontaminate
from formats import read_docs, write_docs


@pytest.fixture(scope="module")
def matcher(bench_dir):
    return decontaminate.get_matcher(str(bench_dir))


def _jsonl(path):
    with gzip.open(path, "rt") as f:
        return [json.loads(l) for l in f]


def planted(bench_dir):
    he = {r["task_id"]: r for r in _jsonl(bench_dir / "HumanEval.jsonl.gz")}
    mbpp = {r["task_id"]: r for r in _jsonl(bench_dir / "mbpp.jsonl.gz")}
    sol = he["HumanEval/129"]["canonical_solution"]       # minPath: a 30-line solution
    # the solution re-indented inside a class, under another name, amid ordinary code
    a = ("import sys\n\nclass Grid:\n    def walk(self, grid, k):\n" + textwrap.indent(textwrap.dedent(sol), " " * 8)
         + "\n\ndef main():\n    print(Grid().walk([[1, 2], [3, 4]], 3))\n")
    # MBPP task 17's asserts in a pytest file
    asserts = mbpp[17]["test_list"]
    b = ("from mylib import square_perimeter\n\n\ndef test_perimeter():\n"
         + "".join("    " + t + "\n" for t in asserts))
    return {"copied_solution.py": (a, "humaneval", "HumanEval/129"), "test_copied.py": (b, "mbpp", "17")}


def test_planted_files_hit_the_right_item(matcher, bench_dir):
    for name, (text, bench, tid) in planted(bench_dir).items():
        hits = matcher.match(text)
        assert any(h["benchmark"] == bench and h["task_id"] == tid for h in hits), (name, hits)


def test_only_planted_files_removed(tmp_path, matcher, bench_dir):
    docs = []
    for f in sorted(stdlib_dir().glob("*.py")):
        docs.append({"id": f.name, "content": f.read_text(encoding="utf-8", errors="replace"), "language": "Python",
                     "repo": "stdlib", "path": f.name, "source": "test"})
    for name, (text, _, _) in planted(bench_dir).items():
        docs.append({"id": name, "content": text, "language": "Python", "repo": "planted", "path": name, "source": "test"})
    write_docs(tmp_path / "in" / "part-00000.jsonl.gz", docs)
    st = decontaminate.run(tmp_path / "in", tmp_path / "out", tasks=2, workers=1, bench_dir=str(bench_dir))
    assert st["dropped"] == {"contaminated": 2}
    kept = {d["id"] for d in read_docs(tmp_path / "out")}
    assert kept == {d["id"] for d in docs} - {"copied_solution.py", "test_copied.py"}
    report = [json.loads(l) for k in range(2) for l in (tmp_path / "out" / f"contaminated-{k:05d}.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in report) == ["copied_solution.py", "test_copied.py"]
    # the surrounding code alone, or a short generic line from a solution, is not contamination
    assert matcher.match("import sys\n\nclass Grid:\n    def walk(self, grid, k):\n        return k\n") == []
    assert matcher.match("def f(a, b):\n    return a + b\n") == []


def wrapped_and_short(bench_dir):
    """Leaks the plain n-gram matcher missed: a GSM8K question pasted over `#` lines, a HumanEval
    prompt's docstring turned into `//` comments, a short MBPP solution inside a module, and a
    file that is one short HumanEval solution under its signature."""
    gsm = _jsonl(bench_dir / "gsm8k-test.jsonl.gz")[0]["question"]
    he = {r["task_id"]: r for r in _jsonl(bench_dir / "HumanEval.jsonl.gz")}
    mbpp = {r["task_id"]: r for r in _jsonl(bench_dir / "mbpp.jsonl.gz")}
    words = gsm.split()
    a = ("# Word problem used as a fixture\n" + "".join("# " + " ".join(words[i:i + 8]) + "\n" for i in range(0, len(words), 8))
         + "def solve():\n    return 18\n")
    doc = he["HumanEval/0"]["prompt"]
    b = "// Port of a Python helper\n" + "".join("// " + l.strip().replace('"""', "") + "\n" for l in doc.splitlines()) \
        + "function hasCloseElements(numbers, threshold) { return false; }\n"
    c = "import math\n\n\ndef area(r):\n    return math.pi * r * r\n\n\n" + mbpp[89]["code"].replace("\r\n", "\n") + "\n"
    d = "import os\n\n\ndef strlen(string: str) -> int:\n    return len(string)\n\n\nprint(strlen(os.sep))\n"
    return {"gsm8k_comments.py": (a, "gsm8k"), "humaneval_doc_comments.js": (b, "humaneval"),
            "short_mbpp.py": (c, "mbpp"), "short_humaneval.py": (d, "humaneval")}


def test_comment_wrapped_and_short_leaks_removed(matcher, bench_dir):
    for name, (text, bench) in wrapped_and_short(bench_dir).items():
        hits = matcher.match(text)
        assert any(h["benchmark"].startswith(bench) for h in hits), (name, hits)


def test_normalization_keeps_clean_code_clean(matcher):
    """Normalizing comments and quotes away does not make ordinary code match: a stdlib module
    with its comments and docstrings, and short generic functions."""
    for f in ("bisect.py", "heapq.py", "textwrap.py", "fnmatch.py"):
        assert matcher.match((stdlib_dir() / f).read_text(encoding="utf-8")) == [], f
    assert matcher.match("def add(x, y):\n    # add two numbers\n    return x + y\n") == []
