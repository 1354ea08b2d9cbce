"""annotate.py: the stand-in annotator on real code, windows, resumable scoring, bad inputs."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import annotate as A
from conftest import stdlib_dir
from formats import read_docs, write_docs

WINDOW = 128  # tests use short windows: a CPU encodes few tokens per second


@pytest.fixture(scope="module")
def minilm():
    return A.minilm_dir()


# ---------------------------------------------------------------------------------------------
# windows


def test_long_doc_three_windows_short_doc_itself(minilm):
    ids = list(range(1000, 1000 + 3 * 126 + 50))
    w = A.doc_windows(ids, 126)
    assert len(w) == 3 and all(len(x) == 126 for x in w)
    assert w[0] == ids[:126] and w[2] == ids[-126:] and w[0] != w[1] != w[2]
    mid = w[1][63]
    assert abs(ids.index(mid) - len(ids) // 2) <= 1  # the middle window sits at the middle
    assert A.doc_windows(ids[:100], 126) == [ids[:100]]

    tok = A.WordPiece.from_dir(minilm)
    text = (stdlib_dir() / "textwrap.py").read_text()
    assert len(tok.encode(text)) > 3 * WINDOW
    for t in (text, text * 4):  # whole-text path and the three-slice path for very long texts
        wins = A.text_windows(tok, t, WINDOW)
        assert len(wins) == 3 and len({tuple(x) for x in wins}) == 3
        assert all(len(x) == WINDOW and x[0] == tok.cls_id and x[-1] == tok.sep_id for x in wins)
        assert wins[0][1:-1] == tok.encode(t)[:WINDOW - 2] and wins[2][1:-1] == tok.encode(t)[-(WINDOW - 2):]
    assert len(A.text_windows(tok, text, WINDOW)) == 3
    short = "def f(x):\n    return x + 1\n"
    assert A.text_windows(tok, short, WINDOW) == [[tok.cls_id] + tok.encode(short) + [tok.sep_id]]

    # a doc's score is the mean head probability over exactly those windows
    enc, _ = A.load_encoder(minilm)
    torch.manual_seed(0)
    head = torch.nn.Linear(enc.cfg.hidden_size, 1)
    ann = A.Annotator(enc, tok, head, A.AnnotateConfig(window=WINDOW))
    (s_long, s_short), n = ann.score_texts([text, short])
    assert n == 4
    with torch.no_grad():
        ps = []
        for w in A.text_windows(tok, text, WINDOW) + A.text_windows(tok, short, WINDOW):
            ids_, attn = A.pad_batch([w], tok.pad_id, "cpu")
            ps.append(torch.sigmoid(head(enc.embed(ids_, attn))).item())
    assert len(set(round(p, 6) for p in ps[:3])) == 3  # three different windows
    assert s_long == pytest.approx(sum(ps[:3]) / 3, abs=1e-5) and s_short == pytest.approx(ps[3], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# train on the offline stand-in, auc on the real benchmarks, resumable scoring


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small multi-language corpus of real files: stdlib Python modules and C headers."""
    d = tmp_path_factory.mktemp("corpus") / "docs"
    py = sorted(stdlib_dir().glob("*.py"))[:150]
    c = sorted(Path("/usr/include").glob("*.h"))[:50] if Path("/usr/include").is_dir() else []
    docs = [{"id": f"py/{f.name}", "content": f.read_text(encoding="utf-8", errors="replace"), "language": "Python",
             "repo": "stdlib", "path": f.name, "source": "test"} for f in py]
    docs += [{"id": f"c/{f.name}", "content": f.read_text(encoding="utf-8", errors="replace"), "language": "C",
              "repo": "include", "path": f.name, "source": "test"} for f in c]
    docs = [x for x in docs if x["content"].strip()]
    h = len(docs) // 2
    write_docs(d / "part-00000.jsonl.gz", docs[:h])
    write_docs(d / "part-00001.jsonl.gz", docs[h:])
    for k in range(2):
        (d / f"done-{k:05d}").write_text("")
    return d


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ann")
    A.main(["train", "--docs", str(corpus), "--out", str(out), "--window", str(WINDOW),
            "--max-positives", "60", "--holdout", "0.3"])
    return out


def test_standin_annotator_separates_positives_from_random_files(trained, capsys):
    meta = json.loads((trained / "annotator.json").read_text())
    m = meta["heldout"]
    print(f"\nstand-in annotator, held-out positives vs random corpus files: ROC-AUC {m['roc_auc']:.4f} "
          f"accuracy {m['accuracy']:.4f} F1 {m['f1']:.4f} ({meta['n_positives']} positives, "
          f"{meta['n_negatives']} negatives)")
    assert "stand-in" in meta["positives"] and not meta["finetuned"]
    assert m["roc_auc"] >= 0.85  # the figure at this size is in the README
    assert (trained / "head.safetensors").is_file() and (trained / "train_ids.txt.gz").is_file()
    assert meta["config"]["window"] == WINDOW and meta["config"]["lr"] == 3e-4
    # --max-positives 60: the cap is the count used, the count given is recorded beside it
    assert meta["max_positives"] == 60 and meta["n_positives"] == 60 < meta["n_positives_given"]


def test_every_positive_used_unless_capped_and_then_said(corpus, tmp_path, capsys):
    pos = tmp_path / "pos.jsonl"
    pos.write_text("".join(json.dumps({"code": f"def f{i}(x):\n    return x * {i}"}) + "\n" for i in range(12)))
    args = ["train", "--docs", str(corpus), "--positives", str(pos), "--window", "32", "--min-steps", "10",
            "--holdout", "0.25"]
    A.main(args + ["--out", str(tmp_path / "all")])
    meta = json.loads((tmp_path / "all" / "annotator.json").read_text())
    assert meta["n_positives"] == meta["n_positives_given"] == 12 and meta["max_positives"] is None
    assert "max-positives" not in capsys.readouterr().out
    A.main(args + ["--out", str(tmp_path / "cap"), "--max-positives", "7"])
    assert "--max-positives 7: using 7 of 12 positives given" in capsys.readouterr().out
    meta = json.loads((tmp_path / "cap" / "annotator.json").read_text())
    assert (meta["n_positives"], meta["n_positives_given"], meta["max_positives"]) == (7, 12, 7)
    assert meta["positive_files"][str(pos)] == {"given": 12, "used": 12, "dropped": {}}


def test_auc_on_real_benchmarks(trained, corpus, bench_dir, capsys):
    res = A.auc(trained, corpus, limit=12, n_negatives=20)
    out = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + out.strip().splitlines()[-1])
    assert "ROC-AUC" in out and set(res) == {"humaneval", "mbpp", "all"}
    assert all(0.0 <= v <= 1.0 for v in res.values())


def test_score_resumes_after_kill(trained, tmp_path):
    # three parts: a small first one, then two that take a few seconds each
    texts = [f.read_text(encoding="utf-8", errors="replace")[:3000] for f in sorted(stdlib_dir().glob("*.py"))[:42]]
    docs = [{"id": f"d{i}", "content": t, "language": "Python", "repo": "r", "path": f"{i}.py", "source": "t"}
            for i, t in enumerate(texts)]
    dd, out = tmp_path / "docs", tmp_path / "scores"
    for k, part in enumerate((docs[:2], docs[2:22], docs[22:])):
        write_docs(dd / f"part-{k:05d}.jsonl.gz", part)
        (dd / f"done-{k:05d}").write_text("")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, str(Path(A.__file__)), "score", "--model", str(trained), "--docs", str(dd),
                          "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (out / "done-00000").exists() and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (out / "done-00000").exists()
    finished = sorted(x.name for x in out.glob("done-*"))
    assert len(finished) < 3, "the kill came too late to test resuming"
    keep = [n for k in (x[5:] for x in finished) for n in (f"part-{k}.jsonl.gz", f"stats-{k}.json", f"done-{k}")]
    before = {n: (out / n).stat().st_mtime_ns for n in keep}
    A.main(["score", "--model", str(trained), "--docs", str(dd), "--out", str(out)])
    for n, mtime in before.items():
        assert (out / n).stat().st_mtime_ns == mtime, f"{n} was rewritten"
    assert sorted(x.name for x in out.glob("done-*")) == ["done-00000", "done-00001", "done-00002"]
    ann = A.load_annotator(trained)
    for k in range(3):
        got = list(read_docs(out / f"part-{k:05d}.jsonl.gz"))
        want = list(read_docs(dd / f"part-{k:05d}.jsonl.gz"))
        assert [g["id"] for g in got] == [w["id"] for w in want]
    want_scores, _ = ann.score_texts([d["content"] for d in docs[22:25]])
    got_scores = [g["score"] for g in read_docs(out / "part-00002.jsonl.gz")][:3]
    assert got_scores == pytest.approx(want_scores, abs=1e-5)


def test_score_records_settings_and_refuses_another_annotator_or_window(trained, tmp_path):
    docs = [{"id": f"d{i}", "content": f"def f{i}(x):\n    return x + {i}\n", "language": "Python", "repo": "r",
             "path": f"{i}.py", "source": "t"} for i in range(3)]
    dd, out = tmp_path / "docs", tmp_path / "scores"
    write_docs(dd / "part-00000.jsonl.gz", docs)
    (dd / "done-00000").write_text("")
    A.main(["score", "--model", str(trained), "--docs", str(dd), "--out", str(out)])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["annotator_sha256"] == A.annotator_id(trained) and settings["window"] == WINDOW
    assert settings["encoder"] == "minilm" and "top, middle, bottom" in settings["windows"]
    rows = list(read_docs(out / "part-00000.jsonl.gz"))  # the format prepare/phase2.py reads
    assert [set(r) for r in rows] == [{"id", "score"}] * 3 and [r["id"] for r in rows] == ["d0", "d1", "d2"]

    other = tmp_path / "other"  # same encoder and window, another head
    shutil.copytree(trained, other)
    sd = A.load_safetensors(other / "head.safetensors")
    A.save_safetensors({k: v + 0.1 for k, v in sd.items()}, other / "head.safetensors")
    with pytest.raises(SystemExit, match=r"settings.json: these scores come from another annotator.*annotator_sha256"):
        A.main(["score", "--model", str(other), "--docs", str(dd), "--out", str(out)])
    wider = tmp_path / "wider"  # same head, other windows
    shutil.copytree(trained, wider)
    meta = json.loads((wider / "annotator.json").read_text())
    meta["config"]["window"] = 2 * WINDOW
    (wider / "annotator.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="another annotator or windows"):
        A.main(["score", "--model", str(wider), "--docs", str(dd), "--out", str(out)])
    unknown = tmp_path / "unknown"  # scores from before settings were written
    unknown.mkdir()
    (unknown / "done-00000").write_text("")
    with pytest.raises(SystemExit, match="no settings.json: unknown annotator"):
        A.main(["score", "--model", str(trained), "--docs", str(dd), "--out", str(unknown)])
    A.main(["score", "--model", str(trained), "--docs", str(dd), "--out", str(out)])  # same annotator: resumes


def test_parallel_tokenization_matches_one_process(trained, minilm):
    texts = [f.read_text(encoding="utf-8", errors="replace")[:6000] for f in sorted(stdlib_dir().glob("*.py"))[:24]]
    tok = A.WordPiece.from_dir(minilm)
    serial = [A.text_windows(tok, t, WINDOW) for t in texts]
    assert list(A.tokenized(tok, texts, WINDOW, workers=2, chunk=5)) == serial
    ann = A.load_annotator(trained)
    ann.flush_windows = 7  # several flushes, each fed by the workers
    one, n1 = ann.score_texts(texts)
    ann.workers = 2
    two, n2 = ann.score_texts(texts)
    assert n1 == n2 == sum(len(w) for w in serial) and two == pytest.approx(one, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# bad inputs: one clear error each


def test_bad_inputs_one_clear_error(minilm, corpus, tmp_path):
    bad = tmp_path / "novocab"
    bad.mkdir()
    shutil.copyfile(minilm / "config.json", bad / "config.json")
    os.symlink(minilm / "model.safetensors", bad / "model.safetensors")
    with pytest.raises(SystemExit, match="vocab.txt"):
        A.load_encoder(bad)

    shaped = tmp_path / "shaped"
    shaped.mkdir()
    cfg = json.loads((minilm / "config.json").read_text())
    cfg["intermediate_size"] = 1000
    (shaped / "config.json").write_text(json.dumps(cfg))
    shutil.copyfile(minilm / "vocab.txt", shaped / "vocab.txt")
    os.symlink(minilm / "model.safetensors", shaped / "model.safetensors")
    with pytest.raises(SystemExit, match=r"encoder.layer.0.intermediate.dense.weight.*\[1536, 384\].*\[1000, 384\]"):
        A.load_encoder(shaped)

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SystemExit, match="no positives"):
        A.main(["train", "--docs", str(corpus), "--out", str(tmp_path / "m"), "--positives", str(empty)])
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"problem": "", "solution": " "}) + "\n")
    with pytest.raises(SystemExit, match="no positives"):
        A.main(["train", "--docs", str(corpus), "--out", str(tmp_path / "m"), "--positives", str(blank)])
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(SystemExit, match="no positives"):  # its one record skipped (prepare/positives.py's tests)
        A.main(["train", "--docs", str(corpus), "--out", str(tmp_path / "m"), "--positives", str(odd)])
    with pytest.raises(SystemExit, match="annotator.json"):
        A.main(["score", "--model", str(tmp_path / "nomodel"), "--docs", str(corpus), "--out", str(tmp_path / "s")])


def test_finetune_saves_a_loadable_encoder(minilm, corpus, tmp_path):
    pos = tmp_path / "pos.jsonl"
    pos.write_text("".join(json.dumps({"problem": f"Return {i} plus x.", "solution": f"def f{i}(x):\n    return x + {i}"}) + "\n"
                           for i in range(8)))
    out = tmp_path / "ft"
    A.main(["train", "--docs", str(corpus), "--out", str(out), "--positives", str(pos), "--finetune",
            "--finetune-epochs", "1", "--window", "32", "--batch-size", "8", "--holdout", "0.25"])
    meta = json.loads((out / "annotator.json").read_text())
    assert meta["finetuned"] and (out / "encoder" / "model.safetensors").is_file()
    assert meta["n_positives"] == meta["n_positives_given"] == 8 and meta["max_positives"] is None
    ann = A.load_annotator(out)
    base, _ = A.load_encoder(minilm)
    w0, w1 = base.layers[0].fc_in.weight, ann.encoder.layers[0].fc_in.weight
    assert not torch.equal(w0, w1) and (w0 - w1).abs().max() < 0.01  # moved, by small fine-tuning steps
    (s,), _ = ann.score_texts(["def g(x):\n    return x + 3"])
    assert 0.0 < s < 1.0
