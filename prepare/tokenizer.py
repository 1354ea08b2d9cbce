"""
A byte-level BPE tokenizer, trained here and encoded with tiktoken.

    ranks = train_bpe(texts, vocab_size=64000)      # dict[bytes, int]: the 256 bytes, then merges
    save_tokenizer(ranks, "tokenizer.tiktoken")     # tiktoken's rank file: "base64(token) rank"
    enc = load_tokenizer("tokenizer.tiktoken")      # tiktoken.Encoding, specials after the merges
    ids = enc.encode_ordinary_batch(texts)

    python -m prepare.tokenizer --input DIR_OR_DOCS ... --out tokenizer.tiktoken --vocab-size 64000

The paper does not publish its tokenizer (a 64000-entry vocabulary matching no public code
tokenizer), so this is our own byte-level BPE (DESIGN.md §1). Training is the textbook
algorithm written for speed in plain Python:
  1. pre-tokenize every text with SPLIT_PATTERN and count the pieces (a word-frequency table:
     code repeats its identifiers and indentation so much that a few hundred thousand unique
     pieces stand for tens of MB);
  2. count adjacent symbol pairs over the unique pieces, weighted by frequency, and remember
     which pieces hold each pair;
  3. repeatedly merge the most frequent pair, updating the counts of only the pieces that held
     it (incremental: cost per merge ~ the pieces touched, not the corpus size).
Byte-level: the base alphabet is the 256 byte values, so every byte string encodes and decodes
back exactly, whatever the merges are.

Splitting: Python's `re` has no \\p{L}, and a pattern split differently at training and at
encoding time would train merges that tiktoken never gets to apply. We use the `regex` module
(installed with tiktoken, which depends on it) whose syntax for this pattern (\\p{..} classes,
possessive quantifiers, lookahead) is the same as the Rust fancy-regex that tiktoken runs, and
tests/test_prepare_tokenizer.py checks that both produce the same pieces on real code (tiktoken
merges never cross a piece boundary, so the token boundaries must nest inside our pieces).
"""
import argparse
import heapq
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

import regex

from formats import SPECIAL_TOKENS, SPLIT_PATTERN, load_tokenizer, save_tokenizer  # the format's owner


# SPLIT_PATTERN (formats.py says why it looks the way it does) is what tiktoken encodes with too
_SPLIT = regex.compile(SPLIT_PATTERN)


# -----------------------------------------------------------------------------
# step 1: the word-frequency table

def count_pieces(texts: Iterable[str]) -> Counter:
    """piece (bytes) -> how often it occurs, over all texts."""
    counts = Counter()
    for text in texts:
        counts.update(_SPLIT.findall(text))
    # strings -> utf-8 bytes (lone surrogates from undecodable input become '?', like tiktoken would refuse them)
    out = Counter()
    for piece, n in counts.items():
        out[piece.encode("utf-8", "replace")] += n
    return out


def _count_chunk(texts):
    return count_pieces(texts)


def count_pieces_parallel(texts: Iterable[str], workers: int = 1, chunk_chars: int = 4 << 20) -> Counter:
    """count_pieces over a process pool: texts are cut into ~4 MB chunks, one chunk per job."""
    if workers <= 1:
        return count_pieces(texts)
    from multiprocessing import get_context

    def chunks():
        buf, size = [], 0
        for t in texts:
            buf.append(t)
            size += len(t)
            if size >= chunk_chars:
                yield buf
                buf, size = [], 0
        if buf:
            yield buf

    total = Counter()
    with get_context("fork" if sys.platform != "win32" else "spawn").Pool(workers) as pool:
        for c in pool.imap_unordered(_count_chunk, chunks()):
            total.update(c)
    return total


# -----------------------------------------------------------------------------
# steps 2-3: merges

def train_bpe(texts: Iterable[str], vocab_size: int, workers: int = 1, min_frequency: int = 2,
              verbose: bool = False) -> dict:
    """Train a byte-level BPE. Returns mergeable ranks {token bytes: rank}: ranks 0..255 are the
    single bytes, then one rank per merge in the order learned. `vocab_size` counts the special
    tokens, which load_tokenizer appends after the merges. Stops early (fewer merges) when no
    pair occurs `min_frequency` times any more."""
    n_merges = vocab_size - 256 - len(SPECIAL_TOKENS)
    if n_merges < 0:
        raise ValueError(f"vocab_size={vocab_size} is smaller than 256 bytes + {len(SPECIAL_TOKENS)} special tokens")
    t0 = time.time()
    table = count_pieces_parallel(texts, workers) if workers > 1 else count_pieces(texts)
    if verbose:
        print(f"tokenizer: {len(table):,} unique pieces counted in {time.time() - t0:.1f}s", flush=True)

    # words[i]: the symbols (token ids) of unique piece i; freqs[i]: its count. Single-symbol
    # pieces hold no pair and never change, so they are left out.
    words, freqs = [], []
    for piece, n in table.items():
        if len(piece) > 1:
            words.append(list(piece))
            freqs.append(n)
    del table

    vocab = [bytes([b]) for b in range(256)]        # token id -> bytes; id == rank
    ranks = {tok: i for i, tok in enumerate(vocab)}

    # pair -> weighted count; pair -> indices of words that (may) hold it. The index sets are
    # only ever added to: a word that lost a pair is skipped when its merge comes (cheap).
    pair_count = {}
    pair_where = {}
    for i, w in enumerate(words):
        f = freqs[i]
        for p in zip(w, w[1:]):
            pair_count[p] = pair_count.get(p, 0) + f
            s = pair_where.get(p)
            if s is None:
                pair_where[p] = {i}
            else:
                s.add(i)
    # max-heap by count (negated); ties broken by the smaller pair so training is deterministic.
    # Entries go stale as counts change; a popped entry is used only if its count is current.
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)

    merges_done = 0
    while merges_done < n_merges and heap:
        negc, pair = heapq.heappop(heap)
        c = pair_count.get(pair, 0)
        if c != -negc:
            if c > 0:
                heapq.heappush(heap, (-c, pair))
            continue
        if c < min_frequency:
            break
        a, b = pair
        merged = vocab[a] + vocab[b]
        new_id = ranks.get(merged)
        if new_id is None:                           # a new token
            new_id = len(vocab)
            vocab.append(merged)
            ranks[merged] = new_id
            merges_done += 1
        # else: the same bytes were already made from another pair ("a"+"bc" vs "ab"+"c"); reuse
        # its id, so the ranks stay unique and tiktoken's byte-level merging agrees with ours.

        # update only the pairs next to each occurrence: (x, a) -> (x, AB) and (b, y) -> (AB, y)
        changed = {}
        for i in pair_where.pop(pair):
            w = words[i]
            n = len(w)
            try:                                      # first occurrence (C-speed search for a)
                j = w.index(a)
                while j + 1 < n and w[j + 1] != b:
                    j = w.index(a, j + 1)
            except ValueError:
                continue                              # stale index entry: the pair is gone
            if j + 1 >= n:
                continue
            f = freqs[i]
            nw = w[:j]
            while j < n:
                if j + 1 < n and w[j] == a and w[j + 1] == b:     # left to right, non-overlapping
                    if j > 0:
                        p = (w[j - 1], a)
                        changed[p] = changed.get(p, 0) - f
                        p = (nw[-1], new_id)                      # nw[-1] is AB if the last occurrence touched this one
                        changed[p] = changed.get(p, 0) + f
                        s = pair_where.get(p)
                        if s is None:
                            pair_where[p] = {i}
                        else:
                            s.add(i)
                    # the right side, unless another occurrence starts there (its left side does it)
                    if j + 2 < n and not (w[j + 2] == a and j + 3 < n and w[j + 3] == b):
                        y = w[j + 2]
                        p = (b, y)
                        changed[p] = changed.get(p, 0) - f
                        p = (new_id, y)
                        changed[p] = changed.get(p, 0) + f
                        s = pair_where.get(p)
                        if s is None:
                            pair_where[p] = {i}
                        else:
                            s.add(i)
                    nw.append(new_id)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            words[i] = nw
        for p, d in changed.items():
            if d == 0:
                continue
            nc = pair_count.get(p, 0) + d
            if nc > 0:
                pair_count[p] = nc
                if d > 0:        # a lower count is left to the lazy check when its entry pops
                    heapq.heappush(heap, (-nc, p))
            else:
                pair_count.pop(p, None)
        pair_count.pop(pair, None)
        if verbose and merges_done % 5000 == 0 and merges_done:
            print(f"tokenizer: {merges_done:,}/{n_merges:,} merges, {time.time() - t0:.1f}s", flush=True)
    if verbose:
        print(f"tokenizer: {merges_done:,} merges in {time.time() - t0:.1f}s", flush=True)
    return ranks


# -----------------------------------------------------------------------------
# files

# -----------------------------------------------------------------------------
# CLI

def iter_texts(paths, max_bytes: int | None = None):
    """Texts from document step dirs / part files (formats.read_docs) or from source trees."""
    from formats import read_docs, is_docs_path
    from prepare.languages import language_of
    seen = 0
    for p in paths:
        p = Path(p)
        if is_docs_path(p):
            it = (d["content"] for d in read_docs(p))
        else:
            files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and language_of(f))
            it = (f.read_text(encoding="utf-8", errors="replace") for f in files)
        for t in it:
            yield t
            seen += len(t)
            if max_bytes is not None and seen >= max_bytes:
                return


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train the byte-level BPE tokenizer on code; writes a tiktoken rank file.")
    ap.add_argument("--input", nargs="+", required=True, help="document step dirs / part-*.jsonl.gz files, or source directories")
    ap.add_argument("--out", required=True, help="output rank file, e.g. DIR/tokenizer.tiktoken")
    ap.add_argument("--vocab-size", type=int, default=64000, help="entries including the special tokens (paper: 64000)")
    ap.add_argument("--max-mb", type=float, default=None, help="train on at most this many MB of text")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for counting pieces")
    args = ap.parse_args(argv)
    max_bytes = int(args.max_mb * 1e6) if args.max_mb else None
    texts = iter_texts(args.input, max_bytes)
    ranks = train_bpe(texts, args.vocab_size, workers=args.workers, verbose=True)
    save_tokenizer(ranks, args.out)
    enc = load_tokenizer(args.out)
    print(f"tokenizer: wrote {args.out} ({enc.n_vocab} entries incl. {len(SPECIAL_TOKENS)} special)")


if __name__ == "__main__":
    main()
