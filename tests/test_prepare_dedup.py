"""prepare/dedup.py: MinHash-LSH finds lightly edited copies, checked pair by pair against exact
Jaccard similarity of the same shingle sets (the independent reference)."""
import functools
import itertools
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import stdlib_dir
from prepare import dedup
from prepare.docs import read_docs, write_docs
from prepare.dedup import DedupConfig, cluster_texts, minhash_signatures, near_duplicate_pairs, shingles


def light_edit(text: str, rng: random.Random) -> str:
    """Edits a file the way forks do: a renamed identifier, a few lines dropped or commented."""
    lines = text.split("\n")
    words = sorted(set(re.findall(r"\b[a-z_]{6,}\b", text)))
    if words:
        w = rng.choice(words)
        lines = [re.sub(rf"\b{w}\b", w + "_v2", l) if rng.random() < 0.5 else l for l in lines]
    for _ in range(max(1, len(lines) // 60)):
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[i]
        else:
            lines.insert(i, "# edited: " + str(rng.random()))
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def corpus():
    rng = random.Random(0)
    files = [f for f in sorted(stdlib_dir().glob("*.py")) if 3000 < f.stat().st_size < 40000][:100]
    texts = [f.read_text(encoding="utf-8") for f in files]
    origin = list(range(len(texts)))
    for i in rng.sample(range(len(files)), 30):           # near copies
        texts.append(light_edit(texts[i], rng))
        origin.append(i)
    for i in rng.sample(range(len(files)), 5):            # exact copies
        texts.append(texts[i])
        origin.append(i)
    return texts, origin, len(files)


def pair_scores(texts, cfg=DedupConfig()):
    """Precision and recall of the near-duplicate pairs MinHash-LSH finds, against the pairs whose
    exact Jaccard (same shingle sets, Python sets) is >= the threshold. Pairs within +-0.05 of
    the threshold (the estimator's noise, std ~0.03) may fall either way and are not scored."""
    sets = [set(shingles(t).tolist()) for t in texts]
    # exact Jaccard of every pair sharing a shingle, through an inverted index shingle -> files
    owners = {}
    for i, s in enumerate(sets):
        for x in s:
            owners.setdefault(x, []).append(i)
    inter = Counter()
    for docs in owners.values():
        if len(docs) > 1:
            inter.update(itertools.combinations(docs, 2))
    jac = {(i, j): c / (len(sets[i]) + len(sets[j]) - c) for (i, j), c in inter.items()}
    sigs = minhash_signatures([np.array(sorted(s), dtype=np.uint64) for s in sets], cfg.num_perm, cfg.seed)
    pairs, est = near_duplicate_pairs(sigs, cfg.threshold, cfg.bands)
    found = {tuple(p) for p in pairs.tolist()}
    truth = {p for p, J in jac.items() if J >= cfg.threshold}
    gray = {p for p, J in jac.items() if abs(J - cfg.threshold) < 0.05}
    tp = len((found & truth) - gray)
    precision = tp / max(1, len(found - gray))
    recall = tp / max(1, len(truth - gray))
    errs = [abs(e - jac.get(tuple(p), 0.0)) for p, e in zip(pairs.tolist(), est)]
    return precision, recall, truth, found, gray, errs


def test_near_dedup_pairs_vs_exact_jaccard():
    texts, _, _ = corpus()
    precision, recall, truth, found, gray, errs = pair_scores(texts)
    print(f"\nnear dedup on {len(texts)} files (planted edits): {len(truth)} true pairs (J >= 0.7), {len(found)} found, "
          f"{len(gray)} within +-0.05 of the threshold; precision {precision:.3f} recall {recall:.3f}")
    assert len(truth) >= 35                            # the 35 planted copies, at least
    assert precision >= 0.95 and recall >= 0.95
    assert np.mean(errs) < 0.03                        # the estimate tracks the exact value


def other_stdlib():
    """Another Python installation's standard library of the same minor version (e.g. the
    system's /usr/lib/python3.11 next to a pyenv 3.11): different patch releases, near-duplicates."""
    import sysconfig
    mine = Path(sysconfig.get_paths()["stdlib"]).resolve()
    for cand in (Path("/usr/lib") / mine.name, Path("/usr/local/lib") / mine.name):
        if cand.is_dir() and cand.resolve() != mine:
            return cand
    return None


@pytest.mark.skipif(other_stdlib() is None, reason="no second Python installation of the same version")
def test_two_python_versions():
    """Two patch releases of the stdlib: the files that changed between them are real near-duplicates."""
    other = other_stdlib()
    texts = []
    for f in sorted(stdlib_dir().glob("*.py")):
        g = other / f.name
        if g.exists() and f.read_bytes() != g.read_bytes():
            texts += [f.read_text(encoding="utf-8", errors="replace"), g.read_text(encoding="utf-8", errors="replace")]
    if len(texts) < 20:
        pytest.skip("the two installations barely differ")
    precision, recall, truth, found, gray, _ = pair_scores(texts)
    print(f"\nnear dedup, {stdlib_dir()} vs {other}: {len(texts) // 2} changed files, {len(truth)} true pairs, "
          f"{len(found)} found, {len(gray)} in the gray zone; precision {precision:.3f} recall {recall:.3f}")
    assert len(truth) >= 10
    assert precision >= 0.95 and recall >= 0.95


def test_cluster_texts_keeps_the_original():
    texts, origin, n0 = corpus()
    labels, reason = cluster_texts(texts)
    assert (reason[:n0] == 0).sum() >= n0 - 3             # originals stay (a few stdlib files are near-twins)
    for k in range(n0, len(texts)):
        assert labels[k] == labels[origin[k]], k          # each copy joins its original's cluster
        assert reason[k] == (1 if texts[k] == texts[origin[k]] else 2)


def test_staged_step_matches_in_memory(tmp_path):
    """The task-split step (signatures per task, one clustering, rewrite per task) drops the same
    number of documents as clustering everything in memory."""
    texts, _, _ = corpus()
    docs = [{"id": f"d{i}", "content": t, "language": "Python", "repo": "r", "path": f"{i}.py", "source": "t"}
            for i, t in enumerate(texts)]
    for k in range(3):
        write_docs(tmp_path / "in" / f"part-{k:05d}.jsonl.gz", docs[k::3])
    st = dedup.run(tmp_path / "in", tmp_path / "out", tasks=3, workers=1)
    _, reason = cluster_texts([d["content"] for k in range(3) for d in docs[k::3]])
    assert st["dropped"] == {"exact_duplicate": int((reason == 1).sum()), "near_duplicate": int((reason == 2).sum())}
    kept = {d["id"] for d in read_docs(tmp_path / "out")}
    assert len(kept) == st["docs_out"] == int((reason == 0).sum())


def test_minhash_estimate_unbiased_across_similarities():
    """Signature agreement estimates exact Jaccard within the sampling noise, from near-identical
    to unrelated, on files with 5-60% of their lines replaced."""
    rng = random.Random(1)
    base = [f.read_text(encoding="utf-8") for f in sorted(stdlib_dir().glob("*.py")) if 8000 < f.stat().st_size < 40000][:25]
    exact, est = [], []
    for t in base:
        lines = t.split("\n")
        for frac in (0.05, 0.2, 0.4, 0.6):
            edited = "\n".join(l if rng.random() > frac else "# x " + str(rng.random()) for l in lines)
            a, b = set(shingles(t).tolist()), set(shingles(edited).tolist())
            s = minhash_signatures([np.array(sorted(a), np.uint64), np.array(sorted(b), np.uint64)])
            exact.append(len(a & b) / len(a | b))
            est.append((s[0] == s[1]).mean())
    exact, est = np.array(exact), np.array(est)
    noise = np.sqrt(exact * (1 - exact) / 256).mean()          # binomial std of a 256-sample estimate
    assert exact.min() < 0.3 and exact.max() > 0.8
    assert abs((est - exact).mean()) < 0.01                    # no bias
    assert np.abs(est - exact).mean() < 1.2 * noise            # error no bigger than sampling noise
