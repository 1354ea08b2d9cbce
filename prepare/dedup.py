"""
Dedup: exact (content hash) and near (MinHash + LSH, verified by exact Jaccard), in stages that
each split across the array's tasks, as datatrove does it.

    python -m prepare.dedup --in D/filter --out D/dedup --tasks 4

Near-duplicates:
  shingles   the set of word 5-grams of a file, each hashed to 64 bits (crc32 per word, combined
             polynomially) then folded to 32-bit keys, kept sorted and unique;
  MinHash    256 hash functions h_i(x) = a_i*x + b_i mod 2^32 (a_i odd: permutations of the
             32-bit keys); P[sig_i(A) == sig_i(B)] ~= Jaccard(A, B);
  LSH        42 bands of 6 rows: files sharing any band are candidates, with probability
             1-(1-J^6)^42 (0.995 at J=0.7, 0.48 at J=0.5, 0.03 at J=0.3), so almost every true
             pair is a candidate;
  verify     a candidate whose signatures agree on fewer than threshold - 0.1 of the values is
             rejected cheaply (3.5 standard deviations below a J=0.7 pair), every other one
             is kept only if the exact Jaccard of the two key sets is >= threshold (0.7):
             precision is that of exact Jaccard, not of the estimate;
  cluster    connected components of the exact and near pairs (union-find by min-label
             propagation; memory proportional to the pairs); in each component the document with
             the smallest key (a hash of its id) is kept, so the result does not depend on how
             the corpus is split into tasks. A dropped document is an exact_duplicate when its
             content equals its keeper's, else a near_duplicate.

Stages under DIR/_work, each a step of prepare/pipeline.py (markers, resume, --task):
  1. signatures  N tasks: task k reads its own documents, writes its signatures, its shingle keys,
                 its (key, content hash) table, and its band rows cut into N files by bucket hash
                 (bands-sK-dJ.bin: the rows destination task J will read). Holds: one chunk of
                 documents and the (key, hash, offset) table of its share (24 bytes a document).
  2. buckets     N tasks: task j reads only the band rows destined to it, sorts them, and emits
                 exact pairs and candidate pairs, the candidates cut into N files by pair hash.
                 Holds: its 1/N of the band rows.
  3. verify      N tasks: task v reads only the candidates destined to it, drops repeats, reads
                 the two signatures and key sets of each pair from the owners' files (memory
                 maps, only the rows it needs) and keeps the verified pairs. Holds: its candidates.
  4. clusters    1 task: components over all duplicate pairs (not documents); writes one drop
                 list per input task (drop-KKKKK.npz, written to a temp file and renamed, never
                 rewritten). Holds: the pairs.
  5. write       N tasks: task k rewrites its documents without its dropped ones -> DIR/part-*.
Every file is written once, by one task, to a temp name then renamed: no task reads a file another
is still writing. With a Slurm array run the command until it prints the summary (each run does
the stages whose inputs are complete; the cluster stage is task 0's).

The functions (shingles, shingle_keys, minhash_signatures, near_duplicate_pairs,
connected_components, cluster_texts) work on any list of texts; synthesize.py reuses them.
"""
import argparse
import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

from formats import part_name, write_docs
from prepare.pipeline import add_task_args, filtered, is_done, require_done, run_tasks, selected_tasks, task_docs


@dataclass
class DedupConfig:
    ngram: int = 5             # word n-gram shingles (StarCoder: 5)
    num_perm: int = 256        # MinHash functions
    bands: int = 42            # LSH bands (rows per band = num_perm // bands = 6; 252 values used)
    threshold: float = 0.7     # exact Jaccard of a near-duplicate pair
    margin: float = 0.1        # candidates estimated below threshold - margin skip the exact check
    max_bucket_pairs: int = 64  # LSH buckets bigger than this link members to the bucket's first only
    seed: int = 1234
    exact: bool = True
    near: bool = True
    chunk_docs: int = 2048     # documents a signature task holds at a time


_WORD = re.compile(r"\w+")
_MASK32 = np.uint64(0xFFFFFFFF)
_POLY = np.uint64(0x100000001B3)        # odd multiplier for combining word hashes


class _WordHash(dict):
    """word -> crc32, computed once per distinct word (a C-level dict lookup per word instead of
    encoding and hashing it again: code repeats its identifiers endlessly)."""
    def __missing__(self, w):
        if len(self) > 2_000_000:
            self.clear()
        v = self[w] = zlib.crc32(w.encode("utf-8", "surrogatepass"))
        return v


_word_hash = _WordHash()


def shingles(text: str, n: int = 5) -> np.ndarray:
    """The distinct word n-grams of `text` as uint64 hashes. Texts shorter than n words give one
    shingle for the whole word sequence; texts with no words one for the raw text."""
    words = _WORD.findall(text)
    if not words:
        return np.array([zlib.crc32(text.encode("utf-8", "surrogatepass"))], dtype=np.uint64)
    h = np.fromiter(map(_word_hash.__getitem__, words), dtype=np.uint64, count=len(words))
    m = max(1, len(h) - n + 1)
    s = np.zeros(m, dtype=np.uint64)
    for j in range(min(n, len(h))):          # s[i] = sum_j h[i+j] * POLY^(n-1-j)  (mod 2^64)
        s = s * _POLY + h[j:j + m]
    return np.unique(s)


def fold32(x: np.ndarray) -> np.ndarray:
    """uint64 hashes -> uint32 keys (high half xor low half)."""
    x = np.asarray(x, dtype=np.uint64)
    return ((x ^ (x >> np.uint64(32))) & _MASK32).astype(np.uint32)


def shingle_keys(text: str, n: int = 5) -> np.ndarray:
    """The sorted distinct 32-bit keys of a text's shingles: what MinHash hashes and what the
    exact Jaccard check compares (two 5-grams share a key by chance with probability 2^-32)."""
    return np.unique(fold32(shingles(text, n)))


def perm_params(num_perm: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)   # odd
    b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32)
    return a, b


def minhash_signatures(shingle_sets: list, num_perm: int = 256, seed: int = 1234, chunk_rows: int = 8192) -> np.ndarray:
    """(N, num_perm) uint32 MinHash signatures of N key arrays (uint32 keys, or uint64 shingles
    folded to keys), in batches: the keys of many documents are hashed by all functions at once
    and reduced per document with reduceat. h_i(x) = a_i * x + b_i mod 2^32 (a_i odd: each is a
    permutation of the 32-bit keys) on keys that are already well-mixed hashes; 32-bit lanes
    halve the memory traffic of 64-bit ones."""
    a, b = perm_params(num_perm, seed)
    sets = [s if s.dtype == np.uint32 else fold32(s) for s in shingle_sets]
    sigs = np.empty((len(sets), num_perm), dtype=np.uint32)
    i = 0
    while i < len(sets):
        j, rows = i, 0
        while j < len(sets) and (rows == 0 or rows + len(sets[j]) <= chunk_rows):
            rows += len(sets[j])
            j += 1
        x = np.concatenate(sets[i:j])
        hv = np.multiply(x[:, None], a[None, :])                         # (rows, P) uint32, wraps mod 2^32
        hv += b
        starts = np.cumsum([0] + [len(s) for s in sets[i:j - 1]])
        sigs[i:j] = np.minimum.reduceat(hv, starts, axis=0)
        i = j
    return sigs


def band_hashes(sigs: np.ndarray, bands: int) -> np.ndarray:
    """(N, bands) uint64: each band's rows combined into one hash that also encodes the band
    number (equal hash <=> same band, equal rows; up to 2^-64 collisions)."""
    n, p = sigs.shape
    r = p // bands
    x = sigs[:, :bands * r].reshape(n, bands, r).astype(np.uint64)
    h = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15), (n, bands)).copy()
    for j in range(r):
        h = h * _POLY + x[:, :, j] + np.uint64(j + 1)
    return h


def bucket_pairs(bucket: np.ndarray, member: np.ndarray, max_bucket_pairs: int) -> np.ndarray:
    """(M, 2) pairs of `member` values sharing a `bucket` value (rows sorted by bucket, members of
    a bucket in preference order): all pairs in buckets up to max_bucket_pairs members, a star
    around the first member in bigger ones (their members are near-identical anyway)."""
    n = len(bucket)
    if n < 2:
        return np.zeros((0, 2), dtype=member.dtype)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, n])
    found = []
    for size in np.unique(sizes[sizes > 1]):             # one vectorized pass per bucket size
        s = starts[sizes == size]
        if size <= max_bucket_pairs:
            ii, jj = np.triu_indices(size, 1)
        else:
            ii, jj = np.zeros(size - 1, dtype=np.int64), np.arange(1, size)
        found.append(np.stack([member[(s[:, None] + ii[None]).ravel()], member[(s[:, None] + jj[None]).ravel()]], 1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=member.dtype)


def candidate_pairs(sigs: np.ndarray, bands: int, max_bucket_pairs: int = 64) -> np.ndarray:
    """(M, 2) int64 distinct pairs i < j that share at least one LSH band."""
    n = len(sigs)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    bh = band_hashes(sigs, bands).ravel()
    idx = np.repeat(np.arange(n, dtype=np.int64), bands)
    order = np.lexsort((idx, bh))
    p = bucket_pairs(bh[order], idx[order], max_bucket_pairs)
    p = np.sort(p, axis=1)
    key = np.unique(p[:, 0] * n + p[:, 1])
    return np.stack([key // n, key % n], 1)


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard of two sorted arrays of distinct keys."""
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / max(1, len(a) + len(b) - inter)


def verify(pairs: np.ndarray, sig_a: np.ndarray, sig_b: np.ndarray, keys_of, cfg: "DedupConfig"):
    """Which candidate pairs are near-duplicates: signature agreement >= threshold - margin, then
    exact Jaccard of the key sets (keys_of(row, side) -> sorted keys) >= threshold.
    Returns (kept mask, exact Jaccard, 0 where not computed)."""
    est = (sig_a == sig_b).mean(1)
    jac = np.zeros(len(pairs), dtype=np.float32)
    for r in np.flatnonzero(est >= cfg.threshold - cfg.margin):
        jac[r] = exact_jaccard(keys_of(r, 0), keys_of(r, 1))
    return jac >= cfg.threshold, jac


def near_duplicate_pairs(keys: list, cfg: "DedupConfig" = None, sigs: np.ndarray = None) -> tuple[np.ndarray, np.ndarray]:
    """Near-duplicate pairs (i < j) of a list of key arrays (shingle_keys): LSH candidates
    verified by exact Jaccard. Returns (pairs (M, 2), exact Jaccard (M,))."""
    cfg = cfg or DedupConfig()
    if sigs is None:
        sigs = minhash_signatures(keys, cfg.num_perm, cfg.seed)
    cand = candidate_pairs(sigs, cfg.bands, cfg.max_bucket_pairs)
    ok, jac = verify(cand, sigs[cand[:, 0]], sigs[cand[:, 1]], lambda r, s: keys[cand[r, s]], cfg)
    return cand[ok], jac[ok]


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """(n,) int64 component label = the smallest member index (union-find done as min-label
    propagation with pointer jumping, all in numpy: memory ~ n + pairs)."""
    labels = np.arange(n, dtype=np.int64)
    if len(pairs) == 0:
        return labels
    i, j = pairs[:, 0], pairs[:, 1]
    while True:
        m = np.minimum(labels[i], labels[j])
        new = labels.copy()
        np.minimum.at(new, i, m)
        np.minimum.at(new, j, m)
        new = new[new]                      # pointer jumping: follow labels to their roots
        while True:
            nn = new[new]
            if np.array_equal(nn, new):
                break
            new = nn
        if np.array_equal(new, labels):
            return labels
        labels = new


def content_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()[:8], "little")


def doc_key(doc_id: str) -> int:
    """A document's place in "which copy is kept" order: a hash of its id, so the choice does not
    depend on input order or task count (ties, at 2^-64, fall back to the input position)."""
    return int.from_bytes(hashlib.blake2b(str(doc_id).encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def exact_pairs(hashes: np.ndarray, member: np.ndarray) -> np.ndarray:
    """(M, 2) pairs (first, other) of members with equal content hash (rows in preference order)."""
    order = np.argsort(hashes, kind="stable")
    return bucket_pairs(hashes[order], member[order], max_bucket_pairs=1)   # a star: the first and each copy


def resolve(n: int, pairs: np.ndarray, hashes: np.ndarray):
    """Components of the duplicate pairs over nodes 0..n-1 numbered in preference order ->
    (labels: the kept node of each node's component, reason: 0 kept, 1 exact, 2 near duplicate)."""
    labels = connected_components(n, pairs)
    reason = np.zeros(n, dtype=np.int8)
    dup = labels != np.arange(n)
    reason[dup] = np.where(hashes[dup] == hashes[labels[dup]], 1, 2)
    return labels, reason


def cluster_texts(texts: list, cfg: "DedupConfig" = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact + near duplicate clusters of any list of texts, the first text of a cluster (input
    order) kept. Returns (labels, reason): labels[i] is the index of the text kept for i's cluster
    (labels[i] == i: i is kept), reason[i] is 0 kept, 1 exact duplicate, 2 near duplicate."""
    cfg = cfg or DedupConfig()
    n = len(texts)
    hashes = np.array([content_hash(t) for t in texts], dtype=np.uint64)
    idx = np.arange(n, dtype=np.int64)
    found = [exact_pairs(hashes, idx)] if cfg.exact else []
    if cfg.near and n:
        first = np.ones(n, bool)
        first[np.unique(exact_pairs(hashes, idx)[:, 1])] = False      # one copy per content
        uniq = idx[first]
        keys = [shingle_keys(texts[i], cfg.ngram) for i in uniq]
        p, _ = near_duplicate_pairs(keys, cfg)
        found.append(uniq[p])
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    return resolve(n, pairs, hashes)


# -----------------------------------------------------------------------------
# the staged step

# a document's side of a pair: where it lives (task, index) and what decides its fate
SIDE = [("key", "<u8"), ("hash", "<u8"), ("task", "<u4"), ("idx", "<u4")]
BAND_ROW = np.dtype([("bucket", "<u8")] + SIDE)
PAIR_ROW = np.dtype([(f"{n}_{s}", t) for s in "ab" for n, t in SIDE])
DOC_ROW = np.dtype([("key", "<u8"), ("hash", "<u8")])


def _dest(x: np.ndarray, n: int) -> np.ndarray:
    """The task a bucket or pair hash belongs to (its high bits: the low ones sort it)."""
    return ((x.astype(np.uint64) >> np.uint64(33)) % np.uint64(n)).astype(np.int64)


def _route(files: dict, rows: np.ndarray, dest: np.ndarray):
    for j in np.unique(dest):
        rows[dest == j].tofile(files[int(j)])


def _finish(paths: list):
    for p in paths:
        os.replace(str(p) + ".tmp", p)


def _clean(work: Path, k: int):
    for stale in work.glob(f"*-s{k:05d}-*.tmp"):
        stale.unlink(missing_ok=True)


def signature_task(k, n_tasks, in_dir, work, cfg):
    work = Path(work)
    sdir = work / "signatures"
    _clean(sdir, k)
    names = [sdir / f"bands-s{k:05d}-d{j:05d}.bin" for j in range(n_tasks)]
    names += [sdir / f"exact-s{k:05d}-d{j:05d}.bin" for j in range(n_tasks)]
    names += [sdir / f"sig-s{k:05d}-.bin", sdir / f"keys-s{k:05d}-.bin"]
    fh = {p: open(str(p) + ".tmp", "wb") for p in names}
    bands = {j: fh[names[j]] for j in range(n_tasks)}
    exact = {j: fh[names[n_tasks + j]] for j in range(n_tasks)}
    table, offsets, n_keys = [], [0], 0

    def flush(chunk):
        nonlocal n_keys
        i0 = len(table)
        keys = [shingle_keys(d["content"], cfg.ngram) for d in chunk]
        sigs = minhash_signatures(keys, cfg.num_perm, cfg.seed)
        sigs.tofile(fh[names[-2]])
        for x in keys:
            x.tofile(fh[names[-1]])
            n_keys += len(x)
            offsets.append(n_keys)
        rows = np.zeros(len(chunk), dtype=BAND_ROW)
        rows["key"] = [doc_key(d["id"]) for d in chunk]
        rows["hash"] = [content_hash(d["content"]) for d in chunk]
        rows["task"], rows["idx"] = k, np.arange(i0, i0 + len(chunk))
        table.extend(zip(rows["key"].tolist(), rows["hash"].tolist()))
        if cfg.exact:
            rows["bucket"] = rows["hash"]
            _route(exact, rows, _dest(rows["hash"], n_tasks))
        if cfg.near:
            bh = band_hashes(sigs, cfg.bands)                      # (n, bands)
            br = np.repeat(rows, cfg.bands)
            br["bucket"] = bh.ravel()
            _route(bands, br, _dest(br["bucket"], n_tasks))

    chunk = []
    for d in task_docs(in_dir, k, n_tasks):
        chunk.append(d)
        if len(chunk) >= cfg.chunk_docs:
            flush(chunk)
            chunk = []
    if chunk:
        flush(chunk)
    for f in fh.values():
        f.close()
    np.save(sdir / f"docs-s{k:05d}-.npy.tmp.npy", np.array(table, dtype=DOC_ROW))
    np.save(sdir / f"koff-s{k:05d}-.npy.tmp.npy", np.array(offsets, dtype=np.int64))
    for p in ("docs", "koff"):
        os.replace(sdir / f"{p}-s{k:05d}-.npy.tmp.npy", sdir / f"{p}-s{k:05d}-.npy")
    _finish(names)
    return {"docs_in": len(table), "docs_out": len(table), "shingle_keys": n_keys}


def _read_rows(files, dtype) -> np.ndarray:
    parts = [np.fromfile(f, dtype=dtype) for f in files]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _pair_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of side arrays a, b as pairs, each ordered so side a is preferred (smaller key)."""
    swap = (b["key"] < a["key"]) | ((b["key"] == a["key"]) & ((b["task"] < a["task"]) |
                                                             ((b["task"] == a["task"]) & (b["idx"] < a["idx"]))))
    out = np.zeros(len(a), dtype=PAIR_ROW)
    for n, _ in SIDE:
        out[f"{n}_a"] = np.where(swap, b[n], a[n])
        out[f"{n}_b"] = np.where(swap, a[n], b[n])
    return out


def _side(rows, s):
    out = np.zeros(len(rows), dtype=SIDE)
    for n, _ in SIDE:
        out[n] = rows[f"{n}_{s}"]
    return out


def bucket_task(j, n_tasks, work, cfg):
    work = Path(work)
    sdir, bdir = work / "signatures", work / "buckets"
    _clean(bdir, j)
    stats = {"band_rows": 0, "exact_pairs": 0, "candidates": 0}
    # exact: equal content hash; the smallest key of each group is paired with every other copy
    ex = _read_rows(sorted(sdir.glob(f"exact-s*-d{j:05d}.bin")), BAND_ROW)
    ex = ex[np.lexsort((ex["idx"], ex["task"], ex["key"], ex["hash"]))]
    member = np.arange(len(ex))
    ep = bucket_pairs(ex["hash"], member, 1)
    pairs = _pair_rows(ex[ep[:, 0]], ex[ep[:, 1]])
    out = bdir / f"exact-s{j:05d}-.bin"
    pairs.tofile(str(out) + ".tmp")
    stats["exact_pairs"] = len(pairs)
    # near: one row per (bucket, content) -- copies of one content are settled above -- then pairs
    br = _read_rows(sorted(sdir.glob(f"bands-s*-d{j:05d}.bin")), BAND_ROW)
    stats["band_rows"] = len(br)
    br = br[np.lexsort((br["idx"], br["task"], br["key"], br["hash"], br["bucket"]))]
    if len(br):
        first = np.r_[True, (br["bucket"][1:] != br["bucket"][:-1]) | (br["hash"][1:] != br["hash"][:-1])]
        br = br[first]
        br = br[np.lexsort((br["idx"], br["task"], br["key"], br["bucket"]))]
    cp = bucket_pairs(br["bucket"], np.arange(len(br)), cfg.max_bucket_pairs)
    cand = _pair_rows(br[cp[:, 0]], br[cp[:, 1]])
    stats["candidates"] = len(cand)
    # the same pair turns up in several bands, so in several bucket tasks: route by pair identity
    pid = (cand["task_a"].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + cand["idx_a"].astype(np.uint64)
           ) * np.uint64(0xC2B2AE3D27D4EB4F) + cand["task_b"].astype(np.uint64) * np.uint64(0x165667B19E3779F9) \
        + cand["idx_b"].astype(np.uint64)
    names = [bdir / f"cand-s{j:05d}-d{v:05d}.bin" for v in range(n_tasks)]
    files = {v: open(str(p) + ".tmp", "wb") for v, p in enumerate(names)}
    with np.errstate(over="ignore"):
        _route(files, cand, _dest(pid * np.uint64(0x9E3779B97F4A7C15), n_tasks))
    for f in files.values():
        f.close()
    _finish(names + [out])
    return stats


class _Owner:
    """Memory maps of one signature task's files: a pair's rows are read, never the whole file."""

    def __init__(self, sdir: Path, k: int, num_perm: int):
        off = np.load(sdir / f"koff-s{k:05d}-.npy", mmap_mode="r")
        self.off = off
        n = len(off) - 1
        self.sigs = np.memmap(sdir / f"sig-s{k:05d}-.bin", dtype=np.uint32, mode="r", shape=(n, num_perm)) if n else \
            np.zeros((0, num_perm), np.uint32)
        self.keys = np.memmap(sdir / f"keys-s{k:05d}-.bin", dtype=np.uint32, mode="r") if off[-1] else np.zeros(0, np.uint32)

    def key_set(self, i: int) -> np.ndarray:
        return np.asarray(self.keys[self.off[i]:self.off[i + 1]])


def verify_task(v, n_tasks, work, cfg):
    work = Path(work)
    sdir, bdir, vdir = work / "signatures", work / "buckets", work / "verify"
    _clean(vdir, v)
    cand = _read_rows(sorted(bdir.glob(f"cand-s*-d{v:05d}.bin")), PAIR_ROW)
    cand = np.unique(cand)                                   # one row per pair (all fields agree)
    owners = {}

    def owner(k):
        if k not in owners:
            owners[k] = _Owner(sdir, int(k), cfg.num_perm)
        return owners[k]

    sig_a = np.zeros((len(cand), cfg.num_perm), np.uint32)
    sig_b = np.zeros_like(sig_a)
    for side, sig in (("a", sig_a), ("b", sig_b)):
        t, i = cand[f"task_{side}"], cand[f"idx_{side}"]
        for k in np.unique(t):
            m = t == k
            sig[m] = owner(k).sigs[i[m]]
    ok, jac = verify(cand, sig_a, sig_b,
                     lambda r, s: owner(cand[r][f"task_{'ab'[s]}"]).key_set(int(cand[r][f"idx_{'ab'[s]}"])), cfg)
    out = vdir / f"pairs-s{v:05d}-.bin"
    cand[ok].tofile(str(out) + ".tmp")
    _finish([out])
    est = (sig_a == sig_b).mean(1)
    return {"candidates": len(cand), "exact_checks": int((est >= cfg.threshold - cfg.margin).sum()),
            "near_pairs": int(ok.sum())}


def cluster_task(_k, _n, work, n_tasks, cfg):
    work = Path(work)
    bdir, vdir, cdir = work / "buckets", work / "verify", work / "clusters"
    pairs = np.concatenate([_read_rows(sorted(bdir.glob("exact-s*-.bin")), PAIR_ROW),
                            _read_rows(sorted(vdir.glob("pairs-s*-.bin")), PAIR_ROW)])
    # the documents in any pair, numbered in preference order (key, then place)
    sides = np.concatenate([_side(pairs, "a"), _side(pairs, "b")])
    ident = np.zeros(len(sides), dtype=[("key", "<u8"), ("task", "<u4"), ("idx", "<u4")])
    for n in ident.dtype.names:
        ident[n] = sides[n]
    nodes, inv = np.unique(ident, return_inverse=True)
    hashes = np.zeros(len(nodes), np.uint64)
    hashes[inv] = sides["hash"]
    inv = inv.reshape(2, -1).T
    labels, reason = resolve(len(nodes), inv, hashes)
    sizes = np.bincount(labels, minlength=len(nodes))
    for k in range(n_tasks):
        m = (nodes["task"] == k) & (reason > 0)
        tmp = cdir / f"drop-{k:05d}.tmp.npz"
        np.savez(tmp, idx=nodes["idx"][m].astype(np.int64), reason=reason[m])
        os.replace(tmp, cdir / f"drop-{k:05d}.npz")
    return {"duplicate_pairs": len(pairs), "docs_in_pairs": len(nodes),
            "clusters_with_duplicates": int((sizes > 1).sum()), "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "dropped": {"exact_duplicate": int((reason == 1).sum()), "near_duplicate": int((reason == 2).sum())}}


REASONS = {1: "exact_duplicate", 2: "near_duplicate"}


def write_task(k, n_tasks, in_dir, out_dir, work):
    z = np.load(Path(work) / "clusters" / f"drop-{k:05d}.npz")
    drop = dict(zip(z["idx"].tolist(), z["reason"].tolist()))
    stats = {}
    write_docs(Path(out_dir) / part_name(k), filtered(task_docs(in_dir, k, n_tasks), stats,
                                                   lambda i, d: REASONS[drop[i]] if i in drop else None))
    return stats


def run(in_dir, out_dir, tasks: int = 1, task=None, workers=None, cfg: DedupConfig = DedupConfig()):
    require_done(in_dir, "dedup input")
    out_dir = Path(out_dir)
    work = out_dir / "_work"
    settings = dict(asdict(cfg), input=str(Path(in_dir).resolve()))
    common = dict(task=task, workers=workers, settings=settings, quiet=True)
    for stage, fn, args in (("signatures", signature_task, (str(in_dir), str(work), cfg)),
                            ("buckets", bucket_task, (str(work), cfg)),
                            ("verify", verify_task, (str(work), cfg))):
        if run_tasks(work / stage, tasks, fn, args=args, name=f"dedup/{stage}", **common) is None:
            print(f"dedup: {stage} pending in other tasks; rerun when all {tasks} are done", flush=True)
            return None
    if not is_done(work / "clusters", 1):
        if 0 not in selected_tasks(tasks, task):
            print("dedup: clustering is task 0's; rerun when it is done", flush=True)
            return None
        run_tasks(work / "clusters", 1, cluster_task, args=(str(work), tasks, cfg), task=0, workers=1,
                  name="dedup/clusters", settings=settings, quiet=True)
    cs = json.loads((work / "clusters" / "stats-00000.json").read_text())
    print(f"dedup: {cs['duplicate_pairs']:,} duplicate pairs, {cs['clusters_with_duplicates']:,} clusters "
          f"(largest {cs['largest_cluster']})", flush=True)
    return run_tasks(out_dir, tasks, write_task, args=(str(in_dir), str(out_dir), str(work)), task=task,
                     workers=workers, name="dedup", settings=settings)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Exact and MinHash-LSH near dedup of a document step.")
    ap.add_argument("--in", dest="inp", required=True, help="input step directory (e.g. D/filter)")
    ap.add_argument("--out", required=True, help="output step directory (e.g. D/dedup)")
    ap.add_argument("--threshold", type=float, default=0.7, help="exact Jaccard of near duplicates")
    ap.add_argument("--num-perm", type=int, default=256)
    ap.add_argument("--bands", type=int, default=42)
    add_task_args(ap)
    a = ap.parse_args(argv)
    run(a.inp, a.out, a.tasks, a.task, a.workers, DedupConfig(threshold=a.threshold, num_perm=a.num_perm, bands=a.bands))


if __name__ == "__main__":
    main()
