"""prepare/ingest.py: directories, The Stack-style JSONL, and bad input (a corrupt JSONL line, an
unreadable file, a truncated archive, an empty input): one clear message each, the rest processed."""
import gzip
import json

import pytest

from conftest import stdlib_dir
from prepare import ingest
from prepare.docs import read_docs


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
