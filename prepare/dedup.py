"""
Dedup: exact (content hash) and near (MinHash + LSH), in stages that scale across tasks.

    python -m prepare.dedup --in D/filter --out D/dedup --tasks 4

Near-duplicates, the textbook way, vectorized with numpy:
  shingles   the set of word 5-grams of a file, each hashed to 64 bits (crc32 per word, combined
             polynomially: no Python-level hashing per n-gram);
  MinHash    256 hash functions h_i(x) = a_i*x + b_i mod 2^32 (a_i odd: permutations of the
             32-bit keys); a file's signature is the min of each over its shingles, so
             P[sig_i(A) == sig_i(B)] ~= Jaccard(A, B);
  LSH        the 256 values cut into 32 bands of 8 rows; files sharing any band are candidates,
             which happens with probability 1-(1-J^8)^32 (0.85 at J=0.7, 0.12 at J=0.5);
  verify     a candidate pair is kept if its signatures agree on >= threshold (0.7) of the 256
             values (an unbiased Jaccard estimate, std ~0.03), removing most LSH false positives;
  cluster    connected components of the kept pairs; the first file (input order) of each
             component is kept, the others are dropped as near_duplicate.
Stages (each resumable on its own, see prepare/pipeline.py):
  1. signatures  N tasks: content hash + MinHash signature per document -> _work/signatures/
  2. clusters    1 task: exact groups by hash, LSH buckets, verification, components -> which
                 documents each task drops -> _work/clusters/
  3. write       N tasks: each task rewrites its documents without the dropped ones -> DIR/part-*
With a Slurm array, run the command twice (the second with --dependency=afterok on the first):
the first pass makes the signatures, the second clusters once and writes.

The functions (shingles, minhash_signatures, near_duplicate_pairs, connected_components,
cluster_texts) work on any list of texts; synthesize.py reuses them.
"""
import argparse
import hashlib
import json
import re
import zlib
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

from prepare.docs import part_name, write_docs
from prepare.pipeline import add_task_args, is_done, require_done, run_tasks, task_docs


@dataclass
class DedupConfig:
    ngram: int = 5             # word n-gram shingles (StarCoder: 5)
    num_perm: int = 256        # MinHash functions
    bands: int = 32            # LSH bands (rows per band = num_perm / bands = 8)
    threshold: float = 0.7     # estimated Jaccard for a near-duplicate pair
    max_bucket_pairs: int = 64  # LSH buckets bigger than this link members to the bucket's first only
    seed: int = 1234
    exact: bool = True
    near: bool = True


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


def perm_params(num_perm: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**31, size=num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)   # odd
    b = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32)
    return a, b


def minhash_signatures(shingle_sets: list, num_perm: int = 256, seed: int = 1234, chunk_rows: int = 8192) -> np.ndarray:
    """(N, num_perm) uint32 MinHash signatures of N shingle arrays, in batches: the shingles of
    many documents are hashed by all functions at once and reduced per document with reduceat.
    Hash functions: h_i(x) = a_i * x + b_i mod 2^32 (a_i odd, so each is a permutation of the
    32-bit keys) on keys that are already well-mixed hashes; 32-bit lanes halve the memory
    traffic of 64-bit ones (2.5x faster here), and tests/test_prepare_dedup.py checks the
    estimates against exact Jaccard."""
    a, b = perm_params(num_perm, seed)
    sigs = np.empty((len(shingle_sets), num_perm), dtype=np.uint32)
    i = 0
    while i < len(shingle_sets):
        j, rows = i, 0
        while j < len(shingle_sets) and (rows == 0 or rows + len(shingle_sets[j]) <= chunk_rows):
            rows += len(shingle_sets[j])
            j += 1
        x = np.concatenate(shingle_sets[i:j])
        x = ((x ^ (x >> np.uint64(32))) & _MASK32).astype(np.uint32)      # fold to 32-bit keys
        hv = np.multiply(x[:, None], a[None, :])                         # (rows, P) uint32, wraps mod 2^32
        hv += b
        starts = np.cumsum([0] + [len(s) for s in shingle_sets[i:j - 1]])
        sigs[i:j] = np.minimum.reduceat(hv, starts, axis=0)
        i = j
    return sigs


def band_hashes(sigs: np.ndarray, bands: int) -> np.ndarray:
    """(N, bands) uint64: each band's rows combined into one hash (equal band <=> equal hash,
    up to 2^-64 collisions)."""
    n, p = sigs.shape
    r = p // bands
    x = sigs[:, :bands * r].reshape(n, bands, r).astype(np.uint64)
    h = np.zeros((n, bands), dtype=np.uint64)
    for j in range(r):
        h = h * _POLY + x[:, :, j] + np.uint64(j + 1)
    return h


def candidate_pairs(sigs: np.ndarray, bands: int, max_bucket_pairs: int = 64) -> np.ndarray:
    """(M, 2) int64 distinct pairs i < j that share at least one LSH band."""
    bh = band_hashes(sigs, bands)
    n = len(sigs)
    found = []
    for b in range(bands):
        order = np.argsort(bh[:, b], kind="stable")
        hs = bh[order, b]
        same = np.flatnonzero(hs[1:] == hs[:-1])
        if len(same) == 0:
            continue
        # bucket boundaries: runs of equal hashes in sorted order
        starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
        sizes = np.diff(np.r_[starts, n])
        for s, size in zip(starts[sizes > 1], sizes[sizes > 1]):
            members = np.sort(order[s:s + size])
            if size <= max_bucket_pairs:
                ii, jj = np.triu_indices(size, 1)
                found.append(np.stack([members[ii], members[jj]], 1))
            else:                                   # a huge bucket: a star around its first member
                found.append(np.stack([np.full(size - 1, members[0]), members[1:]], 1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    key = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([key // n, key % n], 1)


def near_duplicate_pairs(sigs: np.ndarray, threshold: float = 0.7, bands: int = 32,
                         max_bucket_pairs: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """LSH candidates verified by signature agreement. Returns (pairs (M,2), estimated Jaccard (M,))."""
    cand = candidate_pairs(sigs, bands, max_bucket_pairs)
    est = np.empty(len(cand), dtype=np.float32)
    for s in range(0, len(cand), 65536):
        c = cand[s:s + 65536]
        est[s:s + 65536] = (sigs[c[:, 0]] == sigs[c[:, 1]]).mean(1)
    keep = est >= threshold
    return cand[keep], est[keep]


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """(n,) int64 component label = the smallest member index (min-label propagation with
    pointer jumping, all in numpy)."""
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


def cluster_texts(texts: list, cfg: "DedupConfig" = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact + near duplicate clusters of any list of texts. Returns (labels, reason) where
    labels[i] is the index of the text kept for i's cluster (labels[i] == i: i is kept) and
    reason[i] is 0 kept, 1 exact duplicate, 2 near duplicate."""
    cfg = cfg or DedupConfig()
    hashes = np.array([content_hash(t) for t in texts], dtype=np.uint64)
    sigs = minhash_signatures([shingles(t, cfg.ngram) for t in texts], cfg.num_perm, cfg.seed)
    return cluster_signatures(hashes, sigs, cfg)


def cluster_signatures(hashes: np.ndarray, sigs: np.ndarray, cfg: "DedupConfig"):
    n = len(hashes)
    labels = np.arange(n, dtype=np.int64)
    reason = np.zeros(n, dtype=np.int8)
    if cfg.exact and n:
        order = np.argsort(hashes, kind="stable")              # stable: the first in input order leads
        hs = hashes[order]
        first = np.r_[True, hs[1:] != hs[:-1]]
        lead = order[np.maximum.accumulate(np.where(first, np.arange(n), 0))]
        labels[order] = lead
        reason[labels != np.arange(n)] = 1
    if cfg.near and n:
        uniq = np.flatnonzero(reason == 0)                      # exact duplicates are already settled
        pairs, _ = near_duplicate_pairs(sigs[uniq], cfg.threshold, cfg.bands, cfg.max_bucket_pairs)
        comp = uniq[connected_components(len(uniq), pairs)]
        dup = comp != uniq
        labels[uniq] = comp
        reason[uniq[dup]] = 2
        # an exact duplicate follows its leader into the leader's near cluster
        ex = np.flatnonzero(reason == 1)
        labels[ex] = labels[labels[ex]]
    return labels, reason


# -----------------------------------------------------------------------------
# the staged step

def signature_task(k, n_tasks, in_dir, work, cfg):
    texts = [d["content"] for d in task_docs(in_dir, k, n_tasks)]
    hashes = np.array([content_hash(t) for t in texts], dtype=np.uint64)
    sigs = minhash_signatures([shingles(t, cfg.ngram) for t in texts], cfg.num_perm, cfg.seed)
    np.savez(Path(work) / f"sig-{k:05d}.npz", hashes=hashes, sigs=sigs)
    return {"docs_in": len(texts), "docs_out": len(texts)}


def cluster_task(_k, _n, work, n_tasks, cfg):
    parts = [np.load(Path(work) / f"sig-{k:05d}.npz") for k in range(n_tasks)]
    counts = [len(p["hashes"]) for p in parts]
    hashes = np.concatenate([p["hashes"] for p in parts]) if parts else np.zeros(0, np.uint64)
    sigs = np.concatenate([p["sigs"] for p in parts]) if parts else np.zeros((0, cfg.num_perm), np.uint32)
    labels, reason = cluster_signatures(hashes, sigs, cfg)
    offs = np.cumsum([0] + counts)
    for k in range(n_tasks):
        np.save(Path(work) / f"drop-{k:05d}.npy", reason[offs[k]:offs[k + 1]])
    sizes = np.bincount(labels, minlength=len(labels))
    return {"docs_in": len(labels), "docs_out": int((reason == 0).sum()),
            "clusters_with_duplicates": int((sizes > 1).sum()), "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "dropped": {"exact_duplicate": int((reason == 1).sum()), "near_duplicate": int((reason == 2).sum())}}


REASONS = {1: "exact_duplicate", 2: "near_duplicate"}


def write_task(k, n_tasks, in_dir, out_dir, work):
    drop = np.load(Path(work) / f"drop-{k:05d}.npy")
    stats = {"docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0, "dropped": {}}

    def kept():
        for i, d in enumerate(task_docs(in_dir, k, n_tasks)):
            n = len(d["content"].encode("utf-8", "surrogatepass"))
            stats["docs_in"] += 1
            stats["bytes_in"] += n
            if drop[i]:
                r = REASONS[int(drop[i])]
                stats["dropped"][r] = stats["dropped"].get(r, 0) + 1
                continue
            stats["docs_out"] += 1
            stats["bytes_out"] += n
            yield d

    write_docs(Path(out_dir) / part_name(k), kept())
    return stats


def run(in_dir, out_dir, tasks: int = 1, task=None, workers=None, cfg: DedupConfig = DedupConfig()):
    require_done(in_dir, "dedup input")
    out_dir = Path(out_dir)
    work = out_dir / "_work"
    settings = dict(asdict(cfg), input=str(Path(in_dir).resolve()))
    if run_tasks(work / "signatures", tasks, signature_task, args=(str(in_dir), str(work), cfg), task=task,
                 workers=workers, name="dedup/signatures", settings=settings, quiet=True) is None:
        print(f"dedup: signatures pending in other tasks; rerun when all {tasks} are done")
        return None
    if not is_done(work / "clusters", 1):
        run_tasks(work / "clusters", 1, cluster_task, args=(str(work), tasks, cfg), task=0, workers=1,
                  name="dedup/clusters", settings=settings, quiet=True)
    cs = json.loads((work / "clusters" / "stats-00000.json").read_text())
    print(f"dedup: {cs['clusters_with_duplicates']:,} duplicate clusters (largest {cs['largest_cluster']})", flush=True)
    return run_tasks(out_dir, tasks, write_task, args=(str(in_dir), str(out_dir), str(work)), task=task,
                     workers=workers, name="dedup", settings=settings)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Exact and MinHash-LSH near dedup of a document step.")
    ap.add_argument("--in", dest="inp", required=True, help="input step directory (e.g. D/filter)")
    ap.add_argument("--out", required=True, help="output step directory (e.g. D/dedup)")
    ap.add_argument("--threshold", type=float, default=0.7, help="Jaccard for near duplicates")
    ap.add_argument("--num-perm", type=int, default=256)
    ap.add_argument("--bands", type=int, default=32)
    add_task_args(ap)
    a = ap.parse_args(argv)
    run(a.inp, a.out, a.tasks, a.task, a.workers, DedupConfig(threshold=a.threshold, num_perm=a.num_perm, bands=a.bands))


if __name__ == "__main__":
    main()
