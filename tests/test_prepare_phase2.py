"""prepare/phase2.py: top-k selection per language under a token budget, on real stdlib code and
C headers, with scores given (the annotator itself is tested in test_annotate.py)."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import stdlib_dir
from formats import read_docs, write_docs
from prepare.phase2 import main as phase2_main
from formats import load_tokenizer


def _score(doc_id):
    return int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:4], "little") / 2**32


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two parts of real files in two languages (about 3:1 in tokens), and aligned scores."""
    d = tmp_path_factory.mktemp("p2")
    py = sorted(stdlib_dir().glob("*.py"))[:60]
    headers = sorted(Path("/usr/include").glob("*.h"))[:60] if Path("/usr/include").is_dir() else []
    if len(headers) < 10:  # no C headers on this machine: stdlib's json modules stand in as a second language
        headers = sorted((stdlib_dir() / "json").glob("*.py")) + sorted((stdlib_dir() / "email").glob("*.py"))
    docs = [{"id": f"py/{f.name}", "content": f.read_text(encoding="utf-8", errors="replace"), "language": "Python",
             "repo": f"stdlib{i % 7}", "path": f.name, "source": "test"} for i, f in enumerate(py)]
    docs += [{"id": f"c/{f.name}", "content": f.read_text(encoding="utf-8", errors="replace"), "language": "C",
              "repo": f"include{i % 5}", "path": f.name, "source": "test"} for i, f in enumerate(headers)]
    docs = [x for x in docs if x["content"].strip()]
    docs.sort(key=lambda x: _score(x["id"] + "order"))  # languages interleaved across the parts
    h = len(docs) // 2
    for k, part in enumerate((docs[:h], docs[h:])):
        write_docs(d / "docs" / f"part-{k:05d}.jsonl.gz", part)
        write_docs(d / "scores" / f"part-{k:05d}.jsonl.gz", [{"id": x["id"], "score": _score(x["id"])} for x in part])
        (d / "docs" / f"done-{k:05d}").write_text("")
    return d, docs


def _run(d, tok, out, budget, scores="scores"):
    phase2_main(["--docs", str(d / "docs"), "--scores", str(d / scores), "--tokenizer", str(tok),
                 "--budget-tokens", str(budget), "--out", str(out), "--val-fraction", "0"])
    return json.loads((out / "selection.json").read_text())


def test_selection_budget_mix_and_outputs(corpus, tiny_tokenizer_path, tmp_path):
    d, docs = corpus
    enc = load_tokenizer(tiny_tokenizer_path)
    ntok = {x["id"]: len(enc.encode_ordinary(x["content"])) for x in docs}
    total = sum(ntok.values())
    budget = int(total * 0.35)
    stats = _run(d, tiny_tokenizer_path, tmp_path / "p2", budget)
    out = tmp_path / "p2"

    # the budget is met within one document: half the largest document, overall
    biggest = max(ntok.values())
    assert abs(stats["selected_tokens"] - budget) <= biggest / 2 + 1
    selected = list(read_docs(out / "selected"))
    assert sum(ntok[x["id"]] for x in selected) == stats["selected_tokens"]
    # phase 1's language mix kept within 1 percentage point, each language within one document
    for lang, v in stats["languages"].items():
        share = sum(n for i, n in ntok.items() if i.startswith("py/" if lang == "Python" else "c/")) / total
        assert abs(v["share"] - share) < 1e-9
        assert abs(v["selected_share"] - share) <= 0.01, (lang, v["selected_share"], share)
        assert abs(v["selected_tokens"] - share * budget) <= biggest
    # per language, everything kept scores at least as high as everything dropped
    kept = {x["id"] for x in selected}
    for lang in ("Python", "C"):
        ids = [x["id"] for x in docs if x["language"] == lang]
        lo = min(_score(i) for i in ids if i in kept)
        hi = max((_score(i) for i in ids if i not in kept), default=-1)
        assert lo >= hi
    # selected docs: with their score, fields kept
    assert all(abs(x["score"] - _score(x["id"])) < 1e-6 and x["content"] for x in selected)
    # shards + manifest in the README format, train shards repeated 4x
    man = json.loads((out / "manifest.json").read_text())
    assert man["format"] == "snowcoder-shards-v1" and man["dtype"] == "uint16"
    assert man["eot_id"] == enc.eot_token and man["vocab_size"] == enc.n_vocab
    train = [s for s in man["shards"] if s["split"] == "train"]
    assert train and all(s["epochs"] == 4 and s["source"] == "phase2" for s in train)
    n_shard_tokens = 0
    for s in train:
        arr = np.memmap(out / s["path"], dtype=np.uint16, mode="r")
        assert len(arr) == s["tokens"] and arr[-1] == enc.eot_token
        n_shard_tokens += len(arr)
    assert n_shard_tokens >= stats["selected_tokens"]  # content plus separators and metadata
    assert man["phase2"]["epochs"] == 4 and man["phase2"]["selected_docs"] == len(selected)
    png = (out / "hist.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_selection_is_deterministic(corpus, tiny_tokenizer_path, tmp_path):
    d, docs = corpus
    a = _run(d, tiny_tokenizer_path, tmp_path / "a", 20000)
    b = _run(d, tiny_tokenizer_path, tmp_path / "b", 20000)
    assert a == b
    assert (tmp_path / "a/selected/part-00000.jsonl.gz").read_bytes() == (tmp_path / "b/selected/part-00000.jsonl.gz").read_bytes()
    ma, mb = (json.loads((tmp_path / x / "manifest.json").read_text()) for x in "ab")
    assert [(s["path"], s["tokens"]) for s in ma["shards"]] == [(s["path"], s["tokens"]) for s in mb["shards"]]
    for s in ma["shards"]:
        assert (tmp_path / "a" / s["path"]).read_bytes() == (tmp_path / "b" / s["path"]).read_bytes()


def test_misaligned_scores_are_one_clear_error(corpus, tiny_tokenizer_path, tmp_path):
    d, docs = corpus
    bad = tmp_path / "bad"
    part = list(read_docs(d / "scores" / "part-00000.jsonl.gz"))
    write_docs(bad / "part-00000.jsonl.gz", part[1:] + part[:1])  # same ids, wrong order
    write_docs(bad / "part-00001.jsonl.gz", list(read_docs(d / "scores" / "part-00001.jsonl.gz")))
    with pytest.raises(SystemExit, match="does not match document"):
        phase2_main(["--docs", str(d / "docs"), "--scores", str(bad), "--tokenizer", str(tiny_tokenizer_path),
                     "--budget-tokens", "1000", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="missing"):
        phase2_main(["--docs", str(d / "docs"), "--scores", str(tmp_path / "nowhere"), "--tokenizer",
                     str(tiny_tokenizer_path), "--budget-tokens", "1000", "--out", str(tmp_path / "o2")])


def reference_selection(docs, ntok, score, budget):
    """The selection rule written out plainly, everything in memory: per language (name order) best
    first, ties by id, stop where the running total is closest to share x budget + carry."""
    total = sum(ntok.values())
    chosen, carry = set(), 0.0
    for lang in sorted({d["language"] for d in docs}):
        ds = sorted((d for d in docs if d["language"] == lang), key=lambda d: (-score(d["id"]), d["id"]))
        target = budget * sum(ntok[d["id"]] for d in ds) / total + carry
        taken = 0
        for d in ds:
            n = ntok[d["id"]]
            if taken >= target or (taken + n > target and taken + n - target > target - taken):
                break
            taken += n
            chosen.add(d["id"])
        carry = target - taken
    return chosen


@pytest.mark.parametrize("bins", [10, 10_000])
def test_streaming_array_equals_reference(corpus, tiny_tokenizer_path, tmp_path, bins):
    """Two tasks run one at a time (--task K) select exactly the documents of the in-memory
    reference rule, with coarse bins (many documents at the cut's bin) and fine ones."""
    from prepare.phase2 import Phase2Config, run
    d, docs = corpus
    enc = load_tokenizer(tiny_tokenizer_path)
    ntok = {x["id"]: len(enc.encode_ordinary(x["content"])) for x in docs}
    budget = int(sum(ntok.values()) * 0.3)
    cfg = Phase2Config(budget_tokens=budget, val_fraction=0.0, bins=bins)
    st = None
    for _ in range(6):
        for k in (1, 0):
            st = run(d / "docs", [d / "scores"], tiny_tokenizer_path, tmp_path / "o", cfg, tasks=2, task=k, workers=1) or st
    assert st is not None
    got = {x["id"] for x in read_docs(tmp_path / "o" / "selected")}
    assert got == reference_selection(docs, ntok, _score, budget)
    assert st["selected_tokens"] == sum(ntok[i] for i in got)


def test_random_and_annotator_arms_match_tokens_and_mix(corpus, tiny_tokenizer_path, tmp_path):
    """--select all with two annotators: every arm holds the first annotator's tokens per language
    (each within one document), with other documents; the random arm is seeded."""
    from prepare.phase2 import Phase2Config, run
    d, docs = corpus
    other = tmp_path / "scores2"                      # a second annotator: the reverse ranking
    for k in range(2):
        part = list(read_docs(d / "scores" / f"part-{k:05d}.jsonl.gz"))
        write_docs(other / f"part-{k:05d}.jsonl.gz", [{"id": x["id"], "score": 1 - x["score"]} for x in part])
    enc = load_tokenizer(tiny_tokenizer_path)
    ntok = {x["id"]: len(enc.encode_ordinary(x["content"])) for x in docs}
    biggest = {l: max(ntok[x["id"]] for x in docs if x["language"] == l) for l in ("Python", "C")}
    cfg = Phase2Config(budget_tokens=int(sum(ntok.values()) * 0.3), val_fraction=0.0)
    arms = run(d / "docs", [d / "scores", other], tiny_tokenizer_path, tmp_path / "arms", cfg, select="all")
    assert set(arms) == {"scores", "scores2", "random"}
    summary = json.loads((tmp_path / "arms" / "arms.json").read_text())
    sel = {a: {x["id"] for x in read_docs(tmp_path / "arms" / a / "selected")} for a in arms}
    ref = arms["scores"]["languages"]
    for a in arms:
        for lang in ("Python", "C"):
            mine = sum(ntok[i] for i in sel[a] if i.startswith("py/" if lang == "Python" else "c/"))
            assert mine == arms[a]["languages"][lang]["selected_tokens"] == summary[a]["tokens_per_language"][lang]
            assert abs(mine - ref[lang]["selected_tokens"]) <= biggest[lang], (a, lang)
        man = json.loads((tmp_path / "arms" / a / "manifest.json").read_text())
        assert man["phase2"]["arm"] == a and man["phase2"]["selected_tokens"] == arms[a]["selected_tokens"]
        assert all(s["epochs"] == 4 for s in man["shards"] if s["split"] == "train")
    assert sel["random"] != sel["scores"] and sel["scores2"] != sel["scores"]
    # seeded: the same random arm again, and alone (--select random) it is the same documents
    alone = run(d / "docs", [d / "scores"], tiny_tokenizer_path, tmp_path / "rnd", cfg, select="random")
    assert {x["id"] for x in read_docs(tmp_path / "rnd" / "selected")} == sel["random"]
    assert alone["selected_tokens"] == arms["random"]["selected_tokens"]
