"""bert.py: the encoder against BERT computed in float64 from its published definition, HF
checkpoint layouts, and WordPiece against a reference tokenizer written in this test."""
import json
import shutil
import math
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

import bert as B
from conftest import stdlib_dir


@pytest.fixture(scope="module")
def minilm():
    return B.minilm_dir()


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
    enc, tok = B.load_encoder(minilm)
    texts = ["def add(a, b):\n    \"\"\"Return the sum.\"\"\"\n    return a + b\n",
             "for (int i = 0; i < n; ++i) { total += x[i]; }  // C loop with an accumulator, a bit longer"]
    ids, attn = B.pad_batch([[tok.cls_id] + tok.encode(t) + [tok.sep_id] for t in texts], tok.pad_id, "cpu")
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
    enc, tok = B.load_encoder(minilm)
    sd = {"bert." + k: torch.from_numpy(v.copy()) for k, v in _read_safetensors_np(minilm / "model.safetensors").items()}
    sd["cls.predictions.bias"] = torch.zeros(3)  # a pretraining head's extra tensors are ignored
    for f in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(minilm / f, tmp_path / f)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    enc2, _ = B.load_encoder(tmp_path)
    ids, attn = B.pad_batch([[tok.cls_id] + tok.encode("x = 1") + [tok.sep_id]], tok.pad_id, "cpu")
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
    tok = B.WordPiece.from_dir(minilm)
    vocab = set(tok.vocab)
    files = [f for f in sorted(stdlib_dir().glob("*.py"))[:80]]
    real = [f.read_text(encoding="utf-8", errors="replace")[:6000] for f in files]
    non_ascii = [t for t in real if not t.isascii()]
    for text in TRICKY + real[:10] + non_ascii[:5]:
        assert tok.tokenize(text) == _ref_tokenize(text, vocab), text[:80]
    # cased / accent-keeping configurations follow the same reference
    for lower, strip in ((False, True), (True, False), (False, None)):
        t2 = B.WordPiece(minilm / "vocab.txt", lower=lower, strip_accents=strip)
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
