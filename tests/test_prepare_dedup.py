"""prepare/dedup.py: near-duplicate pairs checked against exact Jaccard of word 5-gram sets computed
here with Python sets of word tuples (the independent reference), and the task-split step checked
against a one-task run."""
import functools
import itertools
import random
import re
from collections import Counter

import numpy as np

from conftest import stdlib_dir
from prepare import dedup
from formats import read_docs, write_docs
from prepare.dedup import DedupConfig, cluster_texts, minhash_signatures, near_duplicate_pairs, shingle_keys, shingles


def edit(text: str, rng: random.Random, frac: float) -> str:
    """Edits a file the way forks do: a renamed identifier, then a share `frac` of lines replaced
    or dropped (frac spans the threshold: from near-copies to unrelated)."""
    lines = text.split("\n")
    words = sorted(set(re.findall(r"\b[a-z_]{6,}\b", text)))
    if words:
        w = rng.choice(words)
        lines = [re.sub(rf"\b{w}\b", w + "_v2", l) if rng.random() < 0.2 else l for l in lines]
    out = []
    for l in lines:
        r = rng.random()
        if r < frac / 2:
            continue
        out.append("# edited " + str(rng.random()) if r < frac else l)
    return "\n".join(out)


@functools.lru_cache(maxsize=1)
def corpus():
    rng = random.Random(0)
    files = [f for f in sorted(stdlib_dir().glob("*.py")) if 3000 < f.stat().st_size < 30000][:90]
    texts = [f.read_text(encoding="utf-8") for f in files]
    origin = list(range(len(texts)))
    for i in rng.sample(range(len(files)), 80):            # edited copies, 2-20% of lines touched: J from ~0.95 down past 0.7
        texts.append(edit(texts[i], rng, rng.uniform(0.02, 0.2)))
        origin.append(i)
    for i in rng.sample(range(len(files)), 6):             # exact copies
        texts.append(texts[i])
        origin.append(i)
    return texts, origin, len(files)


def true_pairs(texts, threshold=0.7, also=()):
    """Pairs (i < j) of distinct texts whose word 5-gram sets have Jaccard >= threshold, from
    Python sets of word tuples. Candidates: pairs sharing 5-grams held by fewer than 200 texts
    (every 5-gram, at test size) whose shared count alone gives >= threshold - 0.2, plus `also`;
    each candidate's Jaccard is then computed from the two full sets."""
    sets = []
    for t in texts:
        w = re.findall(r"\w+", t)
        sets.append({tuple(w[i:i + 5]) for i in range(max(1, len(w) - 4))})
    owners = {}
    for i, s in enumerate(sets):
        for x in s:
            owners.setdefault(x, []).append(i)
    inter = Counter()
    for docs in owners.values():
        if 1 < len(docs) < 200:
            inter.update(itertools.combinations(docs, 2))
    cand = set(also) | {(i, j) for (i, j), c in inter.items()
                        if c / (len(sets[i]) + len(sets[j]) - c) >= threshold - 0.2}
    return {(i, j) for i, j in cand if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold}


def test_near_pairs_precision_recall_vs_exact_jaccard():
    texts, _, _ = corpus()
    uniq = sorted({t: i for i, t in reversed(list(enumerate(texts)))}.values())
    ut = [texts[i] for i in uniq]
    truth = true_pairs(ut)
    pairs, jac = near_duplicate_pairs([shingle_keys(t) for t in ut])
    found = {tuple(p) for p in pairs.tolist()}
    tp = len(found & truth)
    precision, recall = tp / max(1, len(found)), tp / max(1, len(truth))
    print(f"\nnear dedup on {len(ut)} distinct files: {len(truth)} true pairs (exact J >= 0.7), {len(found)} found; "
          f"precision {precision:.3f} recall {recall:.3f}")
    assert len(truth) >= 25
    assert precision >= 0.97 and recall >= 0.97
    assert jac.min() >= 0.7


def test_cluster_texts_keeps_the_original():
    texts, origin, n0 = corpus()
    labels, reason = cluster_texts(texts)
    truth = true_pairs(texts)
    assert (reason[:n0] == 0).sum() >= n0 - 3             # originals stay (a few stdlib files are near-twins)
    for k in range(n0, len(texts)):
        if texts[k] == texts[origin[k]]:
            assert labels[k] == labels[origin[k]] and reason[k] == 1, k
        elif (origin[k], k) in truth:                     # a true near copy joins its original's cluster
            assert labels[k] == labels[origin[k]] and reason[k] == 2, k


def _docs():
    texts, _, _ = corpus()
    return [{"id": f"d{i}", "content": t, "language": "Python", "repo": f"r{i % 7}", "path": f"{i}.py", "source": "t"}
            for i, t in enumerate(texts)]


def test_array_run_equals_one_task(tmp_path):
    """Three tasks, each run alone as a Slurm array task would (--task K, rerun until done), keep
    exactly the documents a one-task run keeps; the count matches clustering in memory."""
    docs = _docs()
    for k in range(3):
        write_docs(tmp_path / "in" / f"part-{k:05d}.jsonl.gz", docs[k::3])
    write_docs(tmp_path / "in1" / "part-00000.jsonl.gz", docs)
    one = dedup.run(tmp_path / "in1", tmp_path / "out1", tasks=1, workers=1)
    st = None
    for _ in range(6):                                       # stages finish one array pass at a time
        for k in (2, 1, 0):
            st = dedup.run(tmp_path / "in", tmp_path / "out3", tasks=3, task=k, workers=1)
        if st is not None:
            break
    assert st is not None
    kept3 = {d["id"] for d in read_docs(tmp_path / "out3")}
    kept1 = {d["id"] for d in read_docs(tmp_path / "out1")}
    assert kept3 == kept1 and st["dropped"] == one["dropped"]
    _, reason = cluster_texts([d["content"] for d in docs])
    assert len(kept1) == int((reason == 0).sum())
    # an exact copy counts as near when its cluster's keeper is an edited copy
    assert one["dropped"]["exact_duplicate"] >= 3 and sum(one["dropped"].values()) >= 6 + 20
    # nothing half-written is left behind
    assert not list((tmp_path / "out3").rglob("*.tmp"))


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
