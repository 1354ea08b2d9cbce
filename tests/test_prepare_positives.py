"""prepare/positives.py: the positives-file layouts (hqcode / Magicoder / StarCoder2-Instruct)."""
import gzip
import json
import sys

import pytest

from conftest import stdlib_dir
from prepare.positives import read_positive_file, standin_positives


def test_positive_file_layouts(tmp_path):
    f = tmp_path / "pos.jsonl.gz"
    recs = [{"problem": "Sum two numbers.", "solution": "def add(a, b):\n    return a + b"},        # Magicoder
            {"instruction": "Reverse a list.", "response": "def rev(x):\n    return x[::-1]"},       # StarCoder2-Instruct
            {"code": "int main() { return 0; }", "language": "C"}]                                    # hqcode
    with gzip.open(f, "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in recs))
    got = list(read_positive_file(f))
    assert [t for t, _ in got] == ["Sum two numbers.\n\ndef add(a, b):\n    return a + b",
                                   "Reverse a list.\n\ndef rev(x):\n    return x[::-1]", "int main() { return 0; }"]


def test_bad_records_counted_under_a_reason_and_the_rest_used(tmp_path, capsys):
    good = {"problem": "Add one.", "solution": "def inc(x):\n    return x + 1"}
    lines = [json.dumps(good).encode(),
             b'"just a string"',                                                  # a JSON string line
             b"null",                                                             # a null line
             json.dumps({"problem": "p", "solution": None}).encode(),             # would train on "None"
             json.dumps({"instruction": "Reverse."}).encode(),                    # response missing
             json.dumps({"foo": 1}).encode(),                                     # no known layout
             '{"code": "# caf\u00e9 menu"}'.encode("latin-1"),                    # Latin-1, not UTF-8
             b'{"code": "x = 1"',                                                 # not JSON
             b"",                                                                 # blank: not a record
             json.dumps({"code": "print('ok')"}).encode()]
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    stats = {}
    got = list(read_positive_file(f, stats))
    assert [t for t, _ in got] == ["Add one.\n\ndef inc(x):\n    return x + 1", "print('ok')"]
    assert [g for _, g in got] == ["mixed.jsonl:1", "mixed.jsonl:10"]
    assert stats["given"] == 9 and stats["used"] == 2
    assert stats["dropped"] == {"not a JSON object": 2, "field solution is null, not text": 1,
                                "field response is missing, not text": 1, "none of the fields problem/instruction/content/code/text": 1,
                                "invalid UTF-8": 1, "not JSON": 1}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 7 and all(line.startswith(f"positives: {f}:") for line in err)
    assert f"{f}:2: not a JSON object (str)" in err[0] and f"{f}:3: not a JSON object (NoneType)" in err[1]
    assert f"{f}:4: field solution is null" in err[2] and f"{f}:7: invalid UTF-8" in err[5]


def test_json_array_and_missing_pyarrow_are_one_clear_error(tmp_path, monkeypatch):
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([{"code": "x = 1"}, {"code": "y = 2"}], indent=1))
    with pytest.raises(SystemExit, match=r"arr.json:1: a JSON array, not JSON Lines"):
        list(read_positive_file(arr))
    with pytest.raises(SystemExit, match="not found"):
        list(read_positive_file(tmp_path / "nope.jsonl"))
    pq = tmp_path / "sc2.parquet"
    pq.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as on a machine without pyarrow
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SystemExit, match=r"sc2.parquet needs pyarrow.*pip install pyarrow"):
        list(read_positive_file(pq))


def test_standin_positives_from_real_code():
    src = (stdlib_dir() / "textwrap.py").read_text()
    docs = [{"id": "t", "content": src, "language": "Python"}, {"id": "c", "content": src, "language": "C"}]
    pos = standin_positives(docs)
    assert pos and all(g == "t" for _, g in pos)  # Python only
    for text, _ in pos:
        code = text.split("```python\n")[1].split("```")[0] if text.startswith("Write a Python") else text
        compile(code, "<positive>", "exec")  # each positive is valid code on its own
    assert standin_positives(docs, limit=1) == pos[:1]


def test_standin_kinds_are_different_positive_sets():
    """Table 4's annotators: code files only (hq), instructions only (ins), the adopted mix (hqins)."""
    docs = [{"id": f"m{i}", "content": (stdlib_dir() / f).read_text(), "language": "Python"}
            for i, f in enumerate(["textwrap.py", "shlex.py", "fnmatch.py", "colorsys.py", "heapq.py", "bisect.py",
                                                  "statistics.py", "fractions.py", "difflib.py", "calendar.py"])]
    sets = {k: standin_positives(docs, kind=k) for k in ("hq", "ins", "hqins")}
    is_ins = lambda t: t.startswith("Write a Python function")  # noqa: E731
    assert sets["hq"] and not any(is_ins(t) for t, _ in sets["hq"])
    assert sets["ins"] and all(is_ins(t) for t, _ in sets["ins"])
    n_ins = sum(is_ins(t) for t, _ in sets["hqins"])
    assert 0 < n_ins < len(sets["hqins"])  # the mix has both
    # the same functions underneath: every hq code file appears in the mix, as code or as an instruction
    assert len(sets["hqins"]) == len(sets["hq"])
    with pytest.raises(SystemExit, match="unknown stand-in kind 'edu'"):
        standin_positives(docs, kind="edu")
