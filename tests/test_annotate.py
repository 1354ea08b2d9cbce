"""annotate.py: the BERT encoder and WordPiece against independent references on the packaged
all-MiniLM-L6-v2, the stand-in annotator on real code, windows, resumable scoring, bad inputs."""
import gzip
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

import annotate as A
from conftest import stdlib_dir
from prepare.docs import read_docs, write_docs

WINDOW = 128  # tests use short windows: MiniLM runs ~2.5k tokens/s on 2 cores


@pytest.fixture(scope="module")
def minilm():
    return A.minilm_dir()


# ---------------------------------------------------------------------------------------------
# the encoder against BERT computed here from its published definition (Devlin et al. 2019,
# "Attention is all you need" layers, post-LN, exact GELU), in float64, weights read independently


def _read_safetensors_np(path):
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    dt = {"F32": np.float32, "I64": np.int64}
    out = {}
    for k, v in header.items():
        if k != "__metadata__":
            a, b = v["data_offsets"]
            out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def _reference_bert(W, cfg, ids, mask):
    """Hidden states (B, T, C) in float64."""
    w = {k: torch.from_numpy(v.astype(np.float64)) for k, v in W.items() if v.dtype == np.float32}
    eps, nh = cfg["layer_norm_eps"], cfg["num_attention_heads"]

    def ln(x, name):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(x, name):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    B, T = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][torch.arange(T)] \
        + w["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)]
    x = ln(x, "embeddings.LayerNorm")
    C = x.shape[-1]
    hd = C // nh
    neg = (1.0 - mask.double())[:, None, None, :] * -1e9  # padding keys get no attention
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        heads = lambda t: t.view(B, T, nh, hd).transpose(1, 2)  # noqa: E731
        q, k, v = (heads(lin(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + neg, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
        x = ln(lin(h, p + "output.dense") + x, p + "output.LayerNorm")
    return x


def test_encoder_matches_reference_bert(minilm):
    W = _read_safetensors_np(minilm / "model.safetensors")
    cfg = json.loads((minilm / "config.json").read_text())
    enc, tok = A.load_encoder(minilm)
    texts = ["def add(a, b):\n    \"\"\"Return the sum.\"\"\"\n    return a + b\n",
             "for (int i = 0; i < n; ++i) { total += x[i]; }  // C loop with an accumulator, a bit longer"]
    ids, attn = A.pad_batch([[tok.cls_id] + tok.encode(t) + [tok.sep_id] for t in texts], tok.pad_id, "cpu")
    assert attn.sum(1).tolist()[0] < ids.shape[1]  # one row is padded
    with torch.no_grad():
        ours, pooled = enc(ids, attn), enc.embed(ids, attn)
    ref = _reference_bert(W, cfg, ids, attn)
    m = attn.bool()
    assert ours.dtype == torch.float32
    assert (ours.double() - ref)[m].abs().max().item() <= 1e-5
    ref_pooled = (ref * attn[..., None]).sum(1) / attn.sum(1, keepdim=True)
    assert (pooled.double() - ref_pooled).abs().max().item() <= 1e-5


def test_encoder_loads_bert_prefix_and_pytorch_bin(minilm, tmp_path):
    enc, tok = A.load_encoder(minilm)
    sd = {"bert." + k: torch.from_numpy(v.copy()) for k, v in _read_safetensors_np(minilm / "model.safetensors").items()}
    sd["cls.predictions.bias"] = torch.zeros(3)  # a pretraining head's extra tensors are ignored
    for f in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(minilm / f, tmp_path / f)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    enc2, _ = A.load_encoder(tmp_path)
    ids, attn = A.pad_batch([[tok.cls_id] + tok.encode("x = 1") + [tok.sep_id]], tok.pad_id, "cpu")
    with torch.no_grad():
        assert torch.equal(enc(ids, attn), enc2(ids, attn))


# ---------------------------------------------------------------------------------------------
# WordPiece against the reference algorithm, written here char by char (BERT's BasicTokenizer
# + WordpieceTokenizer as published): no fast paths, no caches


def _ref_tokenize(text, vocab, lower=True, strip_accents=None):
    def is_ws(c):
        return c in (" ", "\t", "\n", "\r") or unicodedata.category(c) == "Zs"

    def is_ctrl(c):
        return c not in ("\t", "\n", "\r") and unicodedata.category(c)[0] == "C"

    def is_punct(c):
        o = ord(c)
        return (33 <= o <= 47) or (58 <= o <= 64) or (91 <= o <= 96) or (123 <= o <= 126) \
            or unicodedata.category(c)[0] == "P"

    def is_cjk(o):
        return any(a <= o <= b for a, b in [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                                            (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)])

    cleaned = ""
    for c in text:
        if ord(c) == 0 or ord(c) == 0xFFFD or is_ctrl(c):
            continue
        cleaned += " " if is_ws(c) else (f" {c} " if is_cjk(ord(c)) else c)
    words = []
    for tok in cleaned.split():
        if lower:
            tok = tok.lower()
        if (strip_accents is None and lower) or strip_accents:
            tok = "".join(c for c in unicodedata.normalize("NFD", tok) if unicodedata.category(c) != "Mn")
        piece = ""
        for c in tok:
            if is_punct(c):
                if piece:
                    words.append(piece)
                words.append(c)
                piece = ""
            else:
                piece += c
        if piece:
            words.append(piece)
    out = []
    for word in words:
        if len(word) > 100:
            out.append("[UNK]")
            continue
        sub, start = [], 0
        while start < len(word):
            end = len(word)
            cur = None
            while start < end:
                s = word[start:end] if start == 0 else "##" + word[start:end]
                if s in vocab:
                    cur = s
                    break
                end -= 1
            if cur is None:
                sub = ["[UNK]"]
                break
            sub.append(cur)
            start = end
        out += sub
    return out


TRICKY = [
    "def naïve_café(ñ, Ωmega=1):\n    return 'Ångström' + \"日本語テキスト\"  # コメント 한국어\n",
    "Éléphant ÇA résumé ÀÉÎÕÜ façade Straße ΟΔΟΣ ΟΔΟΣ. İstanbul ǅemal",
    "x" * 150 + " " + "a" * 100 + " " + "b" * 101 + " " + "snake_case_" * 12,
    "emoji 🙂 snowman ☃ fraktur 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math ∑∫≤≥ arrows →⇒ box ─│ ¿¡«»",
    "ctrl\x07bell\x00nul tab\tvt\x0bff\x0cline\u2028sep\u00a0nbsp\u3000ideo\ufffdrepl\u200bzw\x85nel",
    "combining: e\u0301 a\u0308 \u0301alone Ⅻ ½ ﬁ ｆｕｌｌ",
    "printf(\"%d\\n\", arr[i]); std::vector<int> v{1,2,3}; $x->y ?? @decorator #include <stdio.h>",
]


def test_wordpiece_matches_reference(minilm):
    tok = A.WordPiece.from_dir(minilm)
    vocab = set(tok.vocab)
    files = [f for f in sorted(stdlib_dir().glob("*.py"))[:80]]
    real = [f.read_text(encoding="utf-8", errors="replace")[:6000] for f in files]
    non_ascii = [t for t in real if not t.isascii()]
    for text in TRICKY + real[:10] + non_ascii[:5]:
        assert tok.tokenize(text) == _ref_tokenize(text, vocab), text[:80]
    # cased / accent-keeping configurations follow the same reference
    for lower, strip in ((False, True), (True, False), (False, None)):
        t2 = A.WordPiece(minilm / "vocab.txt", lower=lower, strip_accents=strip)
        for text in TRICKY:
            assert t2.tokenize(text) == _ref_tokenize(text, vocab, lower, strip)
    # known answers
    assert tok.tokenize("Héllo, WORLD!") == ["hello", ",", "world", "!"]
    assert tok.tokenize("b" * 101) == ["[UNK]"] and tok.tokenize("a" * 100) != ["[UNK]"]
    assert tok.tokenize("x🙂y") == ["[UNK]"]  # an unknown char makes its whole word unknown
    assert tok.tokenize("中文") == ["中", "文"]
    pieces = tok.tokenize("snowcoder")
    assert len(pieces) > 1 and pieces[0] == "snow" and all(p.startswith("##") for p in pieces[1:])
    # the packaged fast tokenizer's vocabulary is the same table
    tj = json.loads((minilm / "tokenizer.json").read_text())
    assert tj["model"]["vocab"] == tok.vocab and tj["normalizer"]["lowercase"] is True


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
    assert m["roc_auc"] >= 0.85  # 0.89 at this size with module helpers inlined (0.84 without); see annotate.py
    assert (trained / "head.safetensors").is_file() and (trained / "train_ids.txt.gz").is_file()
    assert meta["config"]["window"] == WINDOW and meta["config"]["lr"] == 3e-4


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
    with pytest.raises(SystemExit, match="none of the fields"):
        A.main(["train", "--docs", str(corpus), "--out", str(tmp_path / "m"), "--positives", str(odd)])
    with pytest.raises(SystemExit, match="annotator.json"):
        A.main(["score", "--model", str(tmp_path / "nomodel"), "--docs", str(corpus), "--out", str(tmp_path / "s")])


def test_positive_file_layouts(tmp_path):
    f = tmp_path / "pos.jsonl.gz"
    recs = [{"problem": "Sum two numbers.", "solution": "def add(a, b):\n    return a + b"},        # Magicoder
            {"instruction": "Reverse a list.", "response": "def rev(x):\n    return x[::-1]"},       # StarCoder2-Instruct
            {"code": "int main() { return 0; }", "language": "C"}]                                    # hqcode
    with gzip.open(f, "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in recs))
    got = A.read_positive_file(f)
    assert [t for t, _ in got] == ["Sum two numbers.\n\ndef add(a, b):\n    return a + b",
                                   "Reverse a list.\n\ndef rev(x):\n    return x[::-1]", "int main() { return 0; }"]


def test_finetune_saves_a_loadable_encoder(minilm, corpus, tmp_path):
    pos = tmp_path / "pos.jsonl"
    pos.write_text("".join(json.dumps({"problem": f"Return {i} plus x.", "solution": f"def f{i}(x):\n    return x + {i}"}) + "\n"
                           for i in range(8)))
    out = tmp_path / "ft"
    A.main(["train", "--docs", str(corpus), "--out", str(out), "--positives", str(pos), "--finetune",
            "--finetune-epochs", "1", "--window", "32", "--batch-size", "8", "--holdout", "0.25"])
    meta = json.loads((out / "annotator.json").read_text())
    assert meta["finetuned"] and (out / "encoder" / "model.safetensors").is_file()
    ann = A.load_annotator(out)
    base, _ = A.load_encoder(minilm)
    w0, w1 = base.layers[0].fc_in.weight, ann.encoder.layers[0].fc_in.weight
    assert not torch.equal(w0, w1) and (w0 - w1).abs().max() < 0.01  # moved, by small fine-tuning steps
    (s,), _ = ann.score_texts(["def g(x):\n    return x + 3"])
    assert 0.0 < s < 1.0
