"""prepare/tokenizer.py: our BPE trainer + tiktoken encoding, on the machine's real code."""
from pathlib import Path

import regex

from conftest import stdlib_dir
from formats import SPECIAL_TOKENS, SPLIT_PATTERN, load_tokenizer, save_tokenizer
from prepare.tokenizer import train_bpe


def _stdlib_files():
    return sorted(f for f in stdlib_dir().rglob("*.py") if "site-packages" not in f.parts)


def test_roundtrip_every_stdlib_file(tiny_tokenizer):
    enc = tiny_tokenizer
    texts, raw_only = [], []
    for f in _stdlib_files():
        data = f.read_bytes()
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            raw_only.append(data)           # a few test files in legacy encodings
    assert len(texts) > 500
    ids = enc.encode_ordinary_batch(texts)
    assert enc.decode_batch(ids) == texts
    # byte level: even undecodable files go through the byte alphabet and come back exactly
    for data in raw_only:
        assert enc.decode_bytes(enc._encode_bytes(data)) == data
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"\nround trip: {len(texts)} stdlib files, {n_bytes / 1e6:.1f} MB, "
          f"{n_bytes / sum(map(len, ids)):.2f} bytes/token (vocab {enc.n_vocab})")


def test_specials_and_ranks(tiny_tokenizer_path, tiny_tokenizer):
    enc = tiny_tokenizer
    assert enc.n_vocab == 1024
    n = 1024 - len(SPECIAL_TOKENS)
    for i, t in enumerate(SPECIAL_TOKENS):       # specials right after the merges, in this order
        assert enc.encode_single_token(t) == n + i
    assert enc.eot_token == n
    # the rank file is dense: the 256 bytes then the merges
    lines = Path(tiny_tokenizer_path).read_text().split("\n")
    assert [int(l.split()[1]) for l in lines if l] == list(range(n))
    assert [enc.decode_single_token_bytes(b) for b in range(256)] == [bytes([b]) for b in range(256)]
    text = "<repo_name>snow<file_sep>a.py\nprint(1)<|endoftext|>"
    ids = enc.encode(text, allowed_special="all")
    assert ids[0] == n + 1 and ids[-1] == n and enc.decode(ids) == text


def test_bytes_per_token_held_out(tiny_tokenizer):
    """Held-out code: files the fixture did not train on (it used the first 40 top-level files)."""
    held = sorted(stdlib_dir().glob("*.py"))[40:120]
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in held]
    ids = tiny_tokenizer.encode_ordinary_batch(texts)
    bpt = sum(len(t.encode("utf-8")) for t in texts) / sum(map(len, ids))
    print(f"\nheld-out stdlib code: {bpt:.2f} bytes/token at vocab 1024")
    assert bpt > 2.2                             # raw bytes would be 1.0; a 1024 BPE on code gets ~2.5


def test_tiktoken_splits_like_trainer(tiny_tokenizer):
    """tiktoken (Rust regex) and the trainer (Python `regex`) must cut text into the same pieces:
    every boundary of our pieces is a token boundary of tiktoken's encoding. Includes non-ASCII
    letters, digits and mixed whitespace, where regex engines differ most."""
    enc = tiny_tokenizer
    texts = [f.read_text(encoding="utf-8") for f in sorted(stdlib_dir().glob("*.py"))[:150]]
    texts.append("def größe(ñ, λx=１２３4567):\r\n\t\t return 'çà'  # 日本語 коммент\u00a0\u2003end\n\n\n  x")
    for text in texts:
        cuts, pos = set(), 0
        for piece in regex.findall(SPLIT_PATTERN, text):
            pos += len(piece.encode("utf-8"))
            cuts.add(pos)
        tok_cuts, pos = set(), 0
        for t in enc.decode_tokens_bytes(enc.encode_ordinary(text)):
            pos += len(t)
            tok_cuts.add(pos)
        assert cuts <= tok_cuts


def test_train_small_exact_merges(tmp_path):
    """Merge order on a toy corpus matches a brute-force recount BPE (the independent reference)."""
    texts = ["aaab aab ab abab baba " * 3, "hello hello help helm\n" * 2]
    ranks = train_bpe(texts, vocab_size=256 + len(SPECIAL_TOKENS) + 8, min_frequency=1)
    ours = [t for t, r in sorted(ranks.items(), key=lambda kv: kv[1]) if r >= 256]

    # reference: recount all pairs from scratch after every merge
    from collections import Counter
    words = Counter(p.encode() for t in texts for p in regex.findall(SPLIT_PATTERN, t))
    seqs = {w: [bytes([c]) for c in w] for w in words}
    ref = []
    while len(ref) < 8:
        pc = Counter()
        for w, s in seqs.items():
            for p in zip(s, s[1:]):
                pc[p] += words[w]
        if not pc:
            break
        best = max(pc.values())
        # ties: our trainer takes the smallest (id_a, id_b); ids of merged tokens are their ranks
        cand = [p for p, c in pc.items() if c == best]
        idx = {t: i for i, t in enumerate([bytes([b]) for b in range(256)] + ref)}
        pair = min(cand, key=lambda p: (idx[p[0]], idx[p[1]]))
        m = pair[0] + pair[1]
        if m not in ref:
            ref.append(m)
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == pair:
                    out.append(m)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    assert ours == ref
    save_tokenizer(ranks, tmp_path / "t.tiktoken")
    enc = load_tokenizer(tmp_path / "t.tiktoken")
    assert enc.decode(enc.encode_ordinary(texts[0])) == texts[0]


def test_too_small_vocab():
    import pytest
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(["x"], vocab_size=100)
