"""prepare/phase3.py: the synthetic + phase-2 mix meets its budget and its Python share, with shards
in the README format that decode back to the documents they came from."""
import gzip
import json

import numpy as np
import pytest

from conftest import stdlib_dir
from formats import write_docs
from prepare import phase3

JS = "// a tiny event emitter\nclass Emitter {\n  constructor() { this.h = {}; }\n  on(e, f) { (this.h[e] ||= []).push(f); }\n" \
     "  emit(e, ...a) { (this.h[e] || []).forEach(f => f(...a)); }\n}\nmodule.exports = Emitter;\n"
C = "#include <string.h>\n/* reverse a string in place */\nvoid rev(char *s) {\n  size_t n = strlen(s);\n" \
    "  for (size_t i = 0; i < n / 2; i++) { char t = s[i]; s[i] = s[n - 1 - i]; s[n - 1 - i] = t; }\n}\n"


def doc(i, content, lang, repo, source, score=None):
    d = {"id": f"{source}-{i:04d}", "content": content, "language": lang, "repo": repo,
         "path": f"f{i}.{ {'Python': 'py', 'C': 'c', 'JavaScript': 'js'}[lang]}", "source": source}
    if score is not None:
        d["score"] = score
    return d


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("p3in")
    files = sorted(stdlib_dir().glob("*.py"))
    py = [f.read_text(encoding="utf-8", errors="replace")[:3000] for f in files[:60]]
    # synthetic: 12 Python files and 4 C files, as synthesize.py writes them next to its JSONL
    syn = [doc(i, py[i], "Python", "synthetic", "synthetic") for i in range(12)]
    syn += [doc(12 + i, C + f"/* v{i} */\n", "C", "synthetic", "synthetic") for i in range(4)]
    write_docs(root / "p3" / "synthetic" / "part-00000.jsonl.gz", syn)
    (root / "p3" / "synthetic.jsonl").write_text(json.dumps({"key": "x:1", "status": "ok"}) + "\n")
    # phase 2: Python in 8 repositories, JavaScript and C, with scores
    p2 = [doc(i, py[12 + i], "Python", f"repo{i % 8}", "phase2", score=1 - i / 100) for i in range(48)]
    p2 += [doc(100 + i, JS + f"// v{i}\n", "JavaScript", f"js{i}", "phase2", score=0.5) for i in range(30)]
    p2 += [doc(200 + i, C + f"/* w{i} */\n", "C", f"c{i}", "phase2", score=0.4) for i in range(10)]
    write_docs(root / "p2" / "selected" / "part-00000.jsonl.gz", p2[::2])
    write_docs(root / "p2" / "selected" / "part-00001.jsonl.gz", p2[1::2])
    return root, syn, p2


def load(out):
    man = json.loads((out / "manifest.json").read_text())
    with gzip.open(out / "sequences-00000.jsonl.gz", "rt") as f:
        seqs = [json.loads(line) for line in f]
    return man, seqs


@pytest.mark.parametrize("budget", [20_000, 200_000])
def test_mix_meets_budget_and_python_share(inputs, tmp_path, tiny_tokenizer_path, tiny_tokenizer, budget):
    root, syn, p2 = inputs
    out = tmp_path / "p3"
    phase3.main(["--synthetic", str(root / "p3" / "synthetic.jsonl"), "--phase2", str(root / "p2"),
                 "--tokenizer", str(tiny_tokenizer_path), "--budget-tokens", str(budget), "--out", str(out)])
    man, seqs = load(out)
    assert man["format"] == "snowcoder-shards-v1" and man["eot_id"] == tiny_tokenizer.eot_token
    train = [s for s in man["shards"] if s["split"] == "train"]
    assert man["tokens_train"] == sum(s["tokens"] for s in train)
    assert budget - 2 <= man["tokens_train"] <= budget                      # the budget, to the token
    py = man["tokens_per_language"]["Python"]
    assert abs(py / man["tokens_train"] - 0.5) < 0.001                       # Python at 50%
    assert set(man["tokens_per_source"]) == {"synthetic", "phase2"}
    assert man["tokens_val"] > 0 and any(s["split"] == "val" for s in man["shards"])

    # shards: file sizes match, every sequence ends with EOT and decodes to its documents' text
    eot = tiny_tokenizer.eot_token
    arrays = {}
    for s in man["shards"]:
        a = np.fromfile(out / s["path"], dtype="<u2")
        assert len(a) == s["tokens"]
        arrays[s["path"]] = a
    by_id = {d["id"]: d for d in syn + p2}
    for r in seqs:
        a = arrays[r["shard"]][r["offset"]: r["offset"] + r["tokens"]]
        assert a[-1] == eot and (a[:-1] != eot).all()
        text = tiny_tokenizer.decode(a.tolist())
        if not r["cut"]:
            for i in r["ids"]:
                assert by_id[i]["content"] in text
    assert sum(r["tokens"] for r in seqs if r["split"] == "train") == man["tokens_train"]

    # the synthetic files come first: every synthetic train file is used when it fits (the C ones
    # are small, so always); phase 2 fills the rest
    syn_train = {i for r in seqs if r["source"] == "synthetic" and r["split"] == "train" for i in r["ids"]}
    syn_val = {i for r in seqs if r["source"] == "synthetic" and r["split"] == "val" for i in r["ids"]}
    assert not syn_train & syn_val
    c_ids = {d["id"] for d in syn if d["language"] == "C"}
    assert c_ids - syn_val <= syn_train
    if budget == 200_000:
        # synthetic Python is small next to 100k: all of it, and phase 2 repeated to reach the share
        assert {d["id"] for d in syn if d["language"] == "Python"} - syn_val <= syn_train
        assert man["fill"]["phase2/Python"]["passes"] > 1
        assert max(r["pass"] for r in seqs if r["source"] == "phase2") >= 1
    else:
        # 10k of Python: the synthetic files alone exceed it, so phase 2 adds no Python
        assert "phase2/Python" not in man["fill"]
        assert man["tokens_per_source"]["synthetic"] >= py
    # the non-Python part keeps phase 2's mix: more JavaScript than C from phase 2
    p2_tok = {}
    for s in train:
        if s["source"] == "phase2":
            p2_tok[s["language"]] = p2_tok.get(s["language"], 0) + s["tokens"]
    assert p2_tok["JavaScript"] > p2_tok["C"] > 0


def test_missing_synthetic_docs_is_one_clear_error(inputs, tmp_path, tiny_tokenizer_path):
    root, _, _ = inputs
    raw = tmp_path / "other.jsonl"
    raw.write_text(json.dumps({"key": "x:1"}) + "\n")
    with pytest.raises(SystemExit, match="post-only"):
        phase3.main(["--synthetic", str(raw), "--phase2", str(root / "p2"), "--tokenizer", str(tiny_tokenizer_path),
                     "--budget-tokens", "1000", "--out", str(tmp_path / "o")])


def run_p3(root, tok, out, budget, *extra):
    return phase3.main(["--synthetic", str(root / "p3" / "synthetic.jsonl"), "--phase2", str(root / "p2"),
                        "--tokenizer", str(tok), "--budget-tokens", str(budget), "--out", str(out), *extra])


def train_by_repo(out):
    """{(source, language, repo): the tokens of its pass-0 sequence} and the val sequences, from
    every task's sequence index and the shards."""
    rows = [json.loads(line) for f in sorted(out.glob("sequences-*.jsonl.gz")) for line in gzip.open(f, "rt")]
    seqs, val = {}, {}
    for r in rows:
        a = np.fromfile(out / r["shard"], dtype="<u2")[r["offset"]: r["offset"] + r["tokens"]].tolist()
        if r["split"] == "val":
            val[(r["source"], r["language"], r["repo"])] = a
        elif r["pass"] == 0:
            seqs[(r["source"], r["language"], r["repo"], r["cut"])] = a
    return seqs, val


def test_two_task_array_equals_one_task_run(inputs, tmp_path, tiny_tokenizer_path, tiny_tokenizer):
    """--tasks 2 run as an array (--task 0, --task 1, rerun until every stage is done) gives the one-task run's
    token totals, the same val sequences, and every repository packed to the same tokens (a cut one
    to a prefix of them); a rerun of the finished array changes no byte."""
    root, _, _ = inputs
    one = run_p3(root, tiny_tokenizer_path, tmp_path / "one", 200_000)
    out = tmp_path / "two"
    man, rounds = None, 0
    while man is None:           # route, count and write: each stage needs every task before the next
        rounds += 1
        assert rounds <= 3, "the array did not finish in three rounds"
        assert run_p3(root, tiny_tokenizer_path, out, 200_000, "--tasks", "2", "--task", "0") is None
        man = run_p3(root, tiny_tokenizer_path, out, 200_000, "--tasks", "2", "--task", "1")
    assert rounds == 2          # task 1 finishes route and goes on to count, task 0 count and on to write
    for k in ("tokens_train", "tokens_val", "tokens_per_language", "tokens_per_source", "documents"):
        assert man[k] == one[k], k
    assert {s["path"].rsplit("-", 1)[-1] for s in man["shards"]} == {"00000.bin", "00001.bin"}   # both tasks wrote
    assert abs(man["python_share"] - 0.5) < 0.001
    s1, v1 = train_by_repo(tmp_path / "one")
    s2, v2 = train_by_repo(out)
    assert v1 == v2 and v1
    rows = [json.loads(line) for f in sorted(out.glob("sequences-*.jsonl.gz")) for line in gzip.open(f, "rt")]
    assert man["documents"] == len({i for r in rows for i in r["ids"]}) and man["sequences"] == len(rows)
    full1 = {k[:3]: a for k, a in s1.items() if not k[3]}
    for (src, lang, repo, cut), a in s2.items():
        ref = full1.get((src, lang, repo)) or s1[(src, lang, repo, True)]
        if cut:
            assert a[-1] == tiny_tokenizer.eot_token and a[:-1] == ref[:len(a) - 1]
        else:
            assert a == ref
    # a rerun of the finished array: every task skipped, the same shards and manifest totals
    before = {p: p.read_bytes() for p in out.rglob("*.bin") if "_work" not in p.parts}
    again = run_p3(root, tiny_tokenizer_path, out, 200_000, "--tasks", "2")
    assert {p: p.read_bytes() for p in out.rglob("*.bin") if "_work" not in p.parts} == before
    assert again["tokens_per_language"] == man["tokens_per_language"]
    # other settings on the same dir are refused, not mixed in
    with pytest.raises(SystemExit, match="other settings"):
        run_p3(root, tiny_tokenizer_path, out, 100_000, "--tasks", "2")
