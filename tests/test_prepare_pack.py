"""prepare/pack.py: decoding the uint16 shards gives back the packed documents exactly, in the
StarCoder2 repository format, grouped by language then repository."""
import gzip
import json
from collections import Counter

import numpy as np

from conftest import stdlib_dir
from prepare import pack
from formats import write_docs
from prepare.pack import PackConfig, sequence_text


def make_docs():
    docs = []
    for f in sorted(stdlib_dir().rglob("*.py")):
        rel = f.relative_to(stdlib_dir())
        if len(rel.parts) != 2 or rel.parts[0] not in ("json", "email", "xml", "concurrent", "wsgiref", "urllib"):
            continue
        docs.append({"id": str(rel), "content": f.read_text(encoding="utf-8"), "language": "Python",
                     "repo": "stdlib/" + rel.parts[0], "path": str(rel), "source": "test"})
    # a second language, and a file that literally contains a special token's text
    docs.append({"id": "c/x.c", "content": "int main(void) { return 0; }\n/* <|endoftext|> <file_sep> */\n",
                 "language": "C", "repo": "cproj", "path": "x.c", "source": "test"})
    docs.append({"id": "c/y.h", "content": "#define Y 1\n", "language": "C", "repo": "cproj2", "path": "y.h", "source": "test"})
    return docs


def test_shards_round_trip(tmp_path, tiny_tokenizer_path, tiny_tokenizer):
    docs = make_docs()
    by_id = {d["id"]: d for d in docs}
    write_docs(tmp_path / "docs" / "part-00000.jsonl.gz", docs[::2])
    write_docs(tmp_path / "docs" / "part-00001.jsonl.gz", docs[1::2])
    out = tmp_path / "shards"
    man = pack.run(tmp_path / "docs", tiny_tokenizer_path, out, tasks=2, workers=1, cfg=PackConfig(val_fraction=0.2))
    enc = tiny_tokenizer

    # manifest: README "Data formats"
    assert man["format"] == "snowcoder-shards-v1" and man["dtype"] == "uint16"
    assert man["vocab_size"] == enc.n_vocab == 1024 and man["eot_id"] == enc.eot_token
    assert (out / man["tokenizer"]).read_bytes() == tiny_tokenizer_path.read_bytes()
    assert man["documents"] == len(docs) and man["documents_dir"] == str((tmp_path / "docs").resolve())
    assert set(man["tokens_per_language"]) == {"Python", "C"} and man["code_version"]
    assert {s["split"] for s in man["shards"]} == {"train", "val"}
    for s in man["shards"]:
        assert (out / s["path"]).stat().st_size == 2 * s["tokens"]
    assert sum(man["tokens_per_language"].values()) == sum(s["tokens"] for s in man["shards"] if s["split"] == "train")

    # every sequence decodes to its documents in the StarCoder2 format, each document exactly once
    shards = {s["path"]: np.fromfile(out / s["path"], dtype="<u2") for s in man["shards"]}
    seen = Counter()
    metas = Counter()
    for k in range(2):
        with gzip.open(out / f"sequences-{k:05d}.jsonl.gz", "rt") as f:
            for line in f:
                r = json.loads(line)
                toks = shards[r["shard"]][r["offset"]:r["offset"] + r["tokens"]]
                assert toks[-1] == enc.eot_token and (toks == enc.eot_token).sum() == 1
                text = enc.decode(toks.tolist())
                ds = [by_id[i] for i in r["ids"]]
                assert {d["repo"] for d in ds} == {r["repo"]} and {d["language"] for d in ds} == {r["language"]}
                segs = ([r["repo"]] + [d["path"] + "\n" + d["content"] for d in ds]) if r["metadata"] else [d["content"] for d in ds]
                assert text == sequence_text(r["metadata"], segs)
                seen.update(r["ids"])
                metas[r["metadata"]] += 1
    assert seen == Counter(list(by_id))                  # all documents, once
    assert metas[True] > 0 and metas[False] > 0          # both formats occur (p = 0.5)
    # the shards hold nothing but the indexed sequences
    assert sum(len(a) for a in shards.values()) == sum(
        json.loads(l)["tokens"] for k in range(2) for l in gzip.open(out / f"sequences-{k:05d}.jsonl.gz", "rt"))
    # a C file mentioning "<|endoftext|>" is text, not the special token
    assert sum(int((a == enc.eot_token).sum()) for a in shards.values()) == sum(metas.values())


def _sequences(out, n):
    rows = []
    for k in range(n):
        with gzip.open(out / f"sequences-{k:05d}.jsonl.gz", "rt") as f:
            rows += [json.loads(line) for line in f]
    return sorted((r["language"], r["repo"], r["split"], r["tokens"], tuple(r["ids"])) for r in rows)


def test_array_run_equals_one_task(tmp_path, tiny_tokenizer_path):
    """Three pack tasks run one at a time (--task K, as a Slurm array; the input split another way)
    give the same sequences, splits and token totals as one task; each repository is in one task."""
    docs = make_docs()
    for k in range(3):
        write_docs(tmp_path / "d3" / f"part-{k:05d}.jsonl.gz", docs[k::3])
    write_docs(tmp_path / "d1" / "part-00000.jsonl.gz", docs[::-1])            # another input order too
    cfg = PackConfig(val_fraction=0.2)
    one = pack.run(tmp_path / "d1", tiny_tokenizer_path, tmp_path / "o1", tasks=1, workers=1, cfg=cfg)
    man = None
    for _ in range(3):
        for k in (1, 2, 0):
            man = pack.run(tmp_path / "d3", tiny_tokenizer_path, tmp_path / "o3", tasks=3, task=k, workers=1, cfg=cfg) or man
    assert man is not None
    assert _sequences(tmp_path / "o3", 3) == _sequences(tmp_path / "o1", 1)
    assert man["tokens_train"] == one["tokens_train"] and man["tokens_val"] == one["tokens_val"]
    assert man["tokens_per_language"] == one["tokens_per_language"]
    owner = {}
    for k in range(3):
        with gzip.open(tmp_path / "o3" / f"sequences-{k:05d}.jsonl.gz", "rt") as f:
            for line in f:
                r = json.loads(line)
                assert owner.setdefault((r["language"], r["repo"]), k) == k
    assert not list((tmp_path / "o3" / "_work" / "route").glob("*.bin"))          # cleaned up at the end


def test_group_by_repository_alone(tmp_path, tiny_tokenizer_path):
    """Table 3's other arm: a repository's files of every language share one sequence."""
    docs = [{"id": f"r/{i}", "content": f"x{i} = {i}\n", "language": lang, "repo": "mixedrepo", "path": f"f{i}",
             "source": "test"} for i, lang in enumerate(["Python", "C", "Python", "Go"])]
    docs.append({"id": "o/0", "content": "y = 2\n", "language": "Python", "repo": "other", "path": "y.py", "source": "test"})
    write_docs(tmp_path / "docs" / "part-00000.jsonl.gz", docs)

    def sequences(group):
        out = tmp_path / group
        pack.run(tmp_path / "docs", tiny_tokenizer_path, out, tasks=1, workers=1,
                 cfg=PackConfig(val_fraction=0.0, group=group))
        with gzip.open(out / "sequences-00000.jsonl.gz", "rt") as f:
            return sorted(sorted(json.loads(line)["ids"]) for line in f), json.loads((out / "manifest.json").read_text())

    by_lang, man_lang = sequences("language")
    by_repo, man_repo = sequences("repo")
    assert by_lang == [["o/0"], ["r/0", "r/2"], ["r/1"], ["r/3"]]
    assert by_repo == [["o/0"], ["r/0", "r/1", "r/2", "r/3"]]
    assert set(man_repo["tokens_per_language"]) == {"all"} and set(man_lang["tokens_per_language"]) == {"Python", "C", "Go"}
