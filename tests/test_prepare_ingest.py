"""prepare/ingest.py: directories, The Stack-style JSONL, and bad input (a corrupt JSONL line, an
unreadable file, a truncated archive, an empty input): one clear message each, the rest processed."""
import gzip
import json

import pytest

from conftest import stdlib_dir
from prepare import ingest
from formats import read_docs


def test_directories_languages_and_repos(tmp_path):
    root = tmp_path / "code"
    (root / "alpha" / "pkg").mkdir(parents=True)
    (root / "beta").mkdir()
    (root / "alpha" / "pkg" / "a.py").write_text("import os\nprint(os.sep)\n")
    (root / "alpha" / "b.rs").write_text("fn main() { println!(\"hi\"); }\n")
    (root / "beta" / "c.hpp").write_text("#pragma once\nstruct S { int x; };\n")
    (root / "beta" / "nb.ipynb").write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["# Title\n", "text"]},
        {"cell_type": "code", "source": ["x = 1\n", "print(x)"]}]}))
    (root / "top.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "notes.md").write_text("# not code\n")
    st = ingest.run([root], tmp_path / "out", tasks=2, workers=1)
    docs = {d["path"]: d for d in read_docs(tmp_path / "out")}
    assert {p: (d["language"], d["repo"]) for p, d in docs.items()} == {
        "alpha/pkg/a.py": ("Python", "code/alpha"), "alpha/b.rs": ("Rust", "code/alpha"),
        "beta/c.hpp": ("C++", "code/beta"), "beta/nb.ipynb": ("Jupyter Notebook", "code/beta"),
        "top.sh": ("Shell", "code")}
    assert docs["beta/nb.ipynb"]["content"] == "# # Title\n# text\n\nx = 1\nprint(x)\n"
    assert st["dropped"] == {"other_language": 1}
    assert len({d["id"] for d in docs.values()}) == 5
    # repo level 2: one directory deeper
    ingest.run([root], tmp_path / "out2", cfg=ingest.IngestConfig(repo_level=2))
    assert {d["path"]: d["repo"] for d in read_docs(tmp_path / "out2")}["alpha/pkg/a.py"] == "code/alpha/pkg"


def test_bad_input_one_message_rest_processed(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.py").write_text((stdlib_dir() / "bisect.py").read_text())
    (src / "gone.py").symlink_to(tmp_path / "does-not-exist.py")          # unreadable
    recs = [{"content": f"def f{i}():\n    return {i}\n", "lang": "python", "max_stars_repo_name": "u/r",
             "max_stars_repo_path": f"f{i}.py"} for i in range(6)]
    lines = [json.dumps(r) for r in recs]
    lines.insert(3, '{"content": "def broken(:')                            # corrupt line 4
    lines.insert(5, '{"content": 1, "lang": ')                              # another one: counted only
    with gzip.open(src / "stack.jsonl.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    full = gzip.compress(("\n".join(json.dumps(r) for r in recs) + "\n").encode())
    (src / "cut.jsonl.gz").write_bytes(full[: len(full) - 30])               # truncated archive
    st = ingest.run([src], tmp_path / "out", tasks=1)
    err = capsys.readouterr().err
    warn = [l for l in err.splitlines() if l.startswith("ingest:")]
    assert any("stack.jsonl.gz:4: corrupt JSONL line" in l for l in warn)
    assert sum("stack.jsonl.gz" in l for l in warn) == 1                    # one message per file
    assert any("gone.py" in l and "unreadable" in l for l in warn)
    assert any("cut.jsonl.gz" in l and "read error" in l for l in warn)
    docs = list(read_docs(tmp_path / "out"))
    from_stack = [d for d in docs if d["source"] == "stack"]
    assert len(from_stack) == 6 and {d["repo"] for d in from_stack} == {"u/r"}
    assert {d["language"] for d in from_stack} == {"Python"}
    assert any(d["path"] == "ok.py" for d in docs)
    assert st["dropped"]["corrupt_line"] == 2 and st["dropped"]["unreadable"] == 2
    assert st["docs_in"] == st["docs_out"] + sum(st["dropped"].values())


def test_empty_input(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no input files found"):
        ingest.run([tmp_path / "empty"], tmp_path / "out")


def test_zst_without_zstandard(tmp_path):
    try:
        import zstandard  # noqa: F401
        pytest.skip("zstandard is installed")
    except ImportError:
        pass
    (tmp_path / "x.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(SystemExit, match="zstandard"):
        ingest.run([tmp_path / "x.jsonl.zst"], tmp_path / "out")


def _records(n):
    return [{"content": f"def f{i}():\n    return {i}\n", "lang": "python", "max_stars_repo_name": f"u/r{i % 5}",
             "max_stars_repo_path": f"f{i}.py"} for i in range(n)]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_bad_bytes_cost_one_record(tmp_path, capsys, suffix):
    """One invalid UTF-8 byte and one lone surrogate ("\\ud800") each drop their own record under
    their own reason; the other 98 of 100 records are kept, and the filter step runs on the result."""
    lines = [json.dumps(r).encode() for r in _records(100)]
    lines[5] = lines[5].replace(b"return 5", b"return \xff5")                 # invalid UTF-8
    lines[50] = lines[50].replace(b"return 50", b"return \\ud800")            # lone surrogate
    raw = b"\n".join(lines) + b"\n"
    f = tmp_path / ("stack" + suffix)
    f.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    st = ingest.run([f], tmp_path / "out", tasks=1)
    assert st["docs_out"] == 98
    assert st["dropped"] == {"invalid_utf8": 1, "lone_surrogate": 1}
    err = capsys.readouterr().err
    assert f"stack{suffix}:6: not UTF-8" in err
    from prepare import filter as filt
    fs = filt.run(tmp_path / "out", tmp_path / "filtered", tasks=1)
    assert fs["docs_in"] == 98


def test_filter_drops_a_lone_surrogate():
    from prepare.filter import check
    assert check({"content": "def f():\n    return '\ud800 and more text here'\n", "language": "Python"}) == "lone_surrogate"


def test_stack_v2_ids_only_is_one_clear_error(tmp_path):
    f = tmp_path / "v2.jsonl"
    f.write_text(json.dumps({"blob_id": "0123abcd", "language": "Python", "repo_name": "u/r", "path": "a.py"}) + "\n")
    with pytest.raises(SystemExit, match=r"v2.jsonl:1: record has 'blob_id' but no 'content'.*softwareheritage"):
        ingest.run([f], tmp_path / "out")
    g = tmp_path / "v2c.jsonl"
    g.write_text(json.dumps({"blob_id": "0123abcd", "content": "int x = 1;\n", "language": "C", "repo_name": "u/r"}) + "\n")
    ingest.run([g], tmp_path / "out2")
    assert [d["id"] for d in read_docs(tmp_path / "out2")] == ["v2c:0123abcd"]


def test_large_file_split_by_size(tmp_path):
    """A big plain .jsonl is cut into byte ranges spread over the tasks: every record read exactly
    once, the big file's work shared, the same documents as one task reading it whole."""
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps(r) + "\n" for r in _records(400)))
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(dict(r, max_stars_repo_path=f"s{i}.py")) for i, r in enumerate(_records(3))
                             for r in [r]) .replace("}{", "}\n{") + "\n")
    cfg = ingest.IngestConfig(unit_mb=big.stat().st_size / 5e6)             # 5-6 ranges
    st = ingest.run([big, small], tmp_path / "out", tasks=3, workers=1, cfg=cfg)
    one = ingest.run([big, small], tmp_path / "one", tasks=1, cfg=ingest.IngestConfig())
    assert st["docs_out"] == one["docs_out"] == 403
    per_task = [json.loads((tmp_path / "out" / f"stats-{k:05d}.json").read_text())["docs_out"] for k in range(3)]
    assert max(per_task) < 250                                               # the big file is shared
    contents = sorted(d["content"] for d in read_docs(tmp_path / "out"))
    assert contents == sorted(d["content"] for d in read_docs(tmp_path / "one"))
