"""formats.py: round trips, atomic deterministic writes, manifest validation in one line, the
append-only log's torn-line repair under a lock a second real process cannot take."""
import gzip
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import formats as F


def test_docs_round_trip_deterministic(tmp_path):
    docs = [{"id": f"d{i}", "content": "é\n" * i, "language": "Python", "repo": "r", "path": "a.py", "source": "t"}
            for i in range(5)]
    a, b = tmp_path / "x" / F.part_name(0), tmp_path / "y" / F.part_name(0)
    assert F.write_docs(a, docs) == 5 and F.write_docs(b, docs) == 5
    assert a.read_bytes() == b.read_bytes()  # byte-identical reruns
    assert list(F.read_docs(a.parent)) == docs and F.is_docs_path(a.parent)
    assert not list(a.parent.glob("*.tmp*"))
    with gzip.open(a, "ab") as f:
        f.write(b"{broken\n")
    with pytest.raises(ValueError, match=r"part-00000.jsonl.gz:6: corrupt"):
        list(F.read_docs(a))


def test_manifest_write_read_and_errors(tmp_path):
    arr = np.arange(10, dtype=np.uint16)
    arr.tofile(tmp_path / "train-Python-00000.bin")
    (tmp_path / F.TOKENIZER_FILE).write_text("")
    (tmp_path / "rank-file").write_text("AA== 0\n")
    shard = {"path": "train-Python-00000.bin", "split": "train", "language": "Python", "source": "phase1", "tokens": 10}
    val = dict(shard, path="val-Python-00000.bin", split="val", tokens=0)
    (tmp_path / val["path"]).write_bytes(b"")
    F.write_manifest(tmp_path, {"shards": [shard, val], "vocab_size": 300, **F.manifest_totals([shard, val])},
                     tokenizer=tmp_path / "rank-file")
    assert (tmp_path / F.TOKENIZER_FILE).read_text() == "AA== 0\n"  # copied beside the shards
    man = F.read_manifest(tmp_path)
    assert man["format"] == F.MANIFEST_FORMAT and man["shards"][0]["path"] == str(tmp_path / "train-Python-00000.bin")
    assert man["tokenizer"] == str(tmp_path / F.TOKENIZER_FILE) and man["path"].endswith("manifest.json")
    assert (man["tokens_train"], man["tokens_val"], man["tokens_per_source"]) == (10, 0, {"phase1": 10})
    with pytest.raises(F.ManifestError, match="tokens_train=11 disagrees with the shards"):
        F.write_manifest(tmp_path, {"shards": [shard], "tokens_train": 11})
    with pytest.raises(F.ManifestError, match="shard 0 lacks language, source"):
        F.write_manifest(tmp_path, {"shards": [{"path": "x.bin", "tokens": 1, "split": "train"}]})
    bad = json.loads((tmp_path / "manifest.json").read_text())
    bad["shards"][0]["tokens"] = 11
    (tmp_path / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(F.ManifestError, match="20 bytes, but .* says 11 uint16 tokens"):
        F.read_manifest(tmp_path)
    with pytest.raises(F.ManifestError, match="split 'dev'"):
        F.write_manifest(tmp_path, {"shards": [dict(shard, split="dev")]})
    with pytest.raises(F.ManifestError, match="no manifest at"):
        F.read_manifest(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(F.ManifestError, match="not valid JSON"):
        F.read_manifest(tmp_path)


def test_tokenizer_round_trip(tmp_path):
    ranks = {bytes([i]): i for i in range(256)}
    ranks[b"de"] = 256
    ranks[b"def"] = 257
    F.save_tokenizer(ranks, tmp_path / F.TOKENIZER_FILE)
    enc = F.load_tokenizer(tmp_path)  # a directory means DIR/tokenizer.tiktoken
    assert enc.n_vocab == 258 + len(F.SPECIAL_TOKENS)
    assert enc.encode("def") == [257]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [258]
    assert F.load_ranks(tmp_path / F.TOKENIZER_FILE) == ranks


def test_safetensors_round_trip(tmp_path):
    ts = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.randn(2).bfloat16(),
          "empty": torch.zeros(0)}
    F.save_safetensors(ts, tmp_path / "m.safetensors", metadata={"k": "v"})
    back = F.load_safetensors(tmp_path / "m.safetensors")
    assert set(back) == set(ts) and all(torch.equal(back[k], ts[k]) for k in ts)
    raw = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(raw[:-4])
    with pytest.raises(ValueError, match="runs past the end"):
        F.load_safetensors(tmp_path / "t.safetensors")


def test_append_log_repairs_torn_line_and_locks(tmp_path):
    p = tmp_path / "samples.jsonl"
    with F.AppendLog(p) as log:
        log.append([{"i": 0}, {"i": 1}])
    with open(p, "a") as f:
        f.write('{"i": 2, "tor')  # a writer killed mid-line
    assert F.read_jsonl(p) == [{"i": 0}, {"i": 1}]  # readers skip it, and leave the file alone
    assert p.read_text().endswith('"tor')
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time; sys.path.insert(0, {str(F.PROJECT_ROOT)!r})
        import formats
        with formats.AppendLog({str(p)!r}) as log:
            print(len(log.rows), flush=True); time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "2"  # the holder repaired it under its lock
        with pytest.raises(RuntimeError, match="in use by another process"):
            with F.AppendLog(p):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert p.read_text() == '{"i": 0}\n{"i": 1}\n'
    with F.AppendLog(p) as log:  # the lock died with its process
        assert [r["i"] for r in log.rows] == [0, 1]
    p.write_text('{"i": 0}\nnot json\n')
    with pytest.raises(ValueError, match=r"samples.jsonl:2: not a JSON line"):
        F.read_jsonl(p)


def test_benchmark_dirs_order(tmp_path, monkeypatch):
    env, cache = tmp_path / "env", tmp_path / "cache"
    env.mkdir()
    (cache / "benchmarks").mkdir(parents=True)
    monkeypatch.setenv("SNOWCODER_BENCHMARKS", str(env))
    monkeypatch.setenv("SNOWCODER_CACHE", str(cache))
    dirs = F.benchmark_dirs(tmp_path / "given")
    assert dirs[0] == tmp_path / "given" and dirs[1] == env and dirs[-1] == cache / "benchmarks"
    shared = F.PROJECT_ROOT.parent / "shared" / "benchmarks"
    assert (shared in dirs) == shared.exists()
    monkeypatch.delenv("SNOWCODER_BENCHMARKS")
    assert env not in F.benchmark_dirs()


def test_append_log_repair_scans_back_over_blocks(tmp_path):
    p = tmp_path / "big.jsonl"
    rows = [{"i": i, "pad": "x" * 1000} for i in range(100)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"torn": "' + "y" * 200_000)  # tail > one block
    with F.AppendLog(p, rows=False) as log:
        assert log.rows == []  # rows=False: nothing held, the file is read with iter_jsonl
        log.append([{"i": 100}])
    assert [r["i"] for r in F.iter_jsonl(p)] == list(range(101))
    p.write_text('{"no newline at all"')
    with F.AppendLog(p) as log:
        assert log.rows == [] and p.read_bytes() == b""


def test_jsonl_whole_last_row_without_newline_is_kept(tmp_path):
    p = tmp_path / "upstream.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}')  # written elsewhere, no final newline: not torn
    assert F.read_jsonl(p) == [{"a": 1}, {"a": 2}]
    with F.AppendLog(p) as log:
        assert log.rows == [{"a": 1}, {"a": 2}]
        log.append([{"a": 3}])
    assert p.read_text() == '{"a": 1}\n{"a": 2}\n{"a": 3}\n'


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / F.part_name(0)
    F.write_docs(p, [{"id": "old"}])
    before = p.read_bytes()

    def docs():
        yield {"id": "new"}
        raise KeyboardInterrupt  # the writer dies mid-file
    with pytest.raises(KeyboardInterrupt):
        F.write_docs(p, docs())
    assert p.read_bytes() == before and [d["id"] for d in F.read_docs(p)] == ["old"]
    with pytest.raises(TypeError):
        F.write_json(tmp_path / "s.json", {"x": object()})
    assert sorted(f.name for f in tmp_path.iterdir()) == [p.name]  # no temp file left behind
