"""train.py: real runs of configs/tiny.py (2-process torchrun on gloo, and 1 process) on token
shards of real stdlib code, plus the schedule and loader pinned against the paper's numbers."""
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import stdlib_dir

import train

ROOT = Path(__file__).resolve().parent.parent
TINY = ["configs/tiny.py", "--wandb_log=False"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(args, nproc=1, check=True):
    """train.py in a fresh process (torchrun when nproc > 1) -> CompletedProcess."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={free_port()}", "train.py", *args]
    else:
        cmd = [sys.executable, "train.py", *args]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"train.py failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def read_log(out_dir):
    from formats import read_jsonl
    return read_jsonl(Path(out_dir) / "log.jsonl")


def write_shards(out, enc, files_by_split, epochs=None):
    """README "Data formats": raw uint16 shards + manifest.json, documents joined by <|endoftext|>."""
    out.mkdir(parents=True, exist_ok=True)
    eot = enc.encode_single_token("<|endoftext|>")
    shards = []
    for i, (split, files) in enumerate(files_by_split):
        ids = []
        for f in files:
            ids += enc.encode_ordinary(f.read_text(encoding="utf-8", errors="replace")) + [eot]
        name = f"{split}-Python-{i:05d}.bin"
        np.array(ids, dtype=np.uint16).tofile(out / name)
        shards.append({"path": name, "split": split, "language": "Python", "source": "stdlib",
                       "tokens": len(ids), "epochs": (epochs or {}).get(i, 1)})
    man = {"format": "snowcoder-shards-v1", "dtype": "uint16", "vocab_size": enc.n_vocab, "eot_id": eot,
           "tokenizer": "tokenizer.tiktoken", "shards": shards,
           "tokens_per_language": {"Python": sum(s["tokens"] for s in shards if s["split"] == "train")},
           "documents": sum(len(f) for _, f in files_by_split), "settings": {}, "code_version": "test"}
    (out / "manifest.json").write_text(json.dumps(man, indent=1))
    return man


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_tokenizer, tiny_tokenizer_path):
    """~300k train tokens of stdlib modules the tokenizer did not see, and a val shard."""
    files = sorted(stdlib_dir().glob("*.py"))
    out = tmp_path_factory.mktemp("shards")
    shutil.copy(tiny_tokenizer_path, out / "tokenizer.tiktoken")
    write_shards(out, tiny_tokenizer, [("train", files[40:70]), ("val", files[70:74])])
    return out


@pytest.fixture(scope="module")
def two_proc_run(corpus, tmp_path_factory):
    """The reference: an uninterrupted 2-process run of configs/tiny.py (40 steps)."""
    out = tmp_path_factory.mktemp("run2") / "out"
    run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={out}"], nproc=2)
    return out

# -----------------------------------------------------------------------------
# schedules and configs: the paper's numbers


def test_phase_configs_encode_the_paper():
    p1, p2, p3 = (train.load_config(f"{ROOT}/configs/phase{i}.py") for i in (1, 2, 3))
    for c in (p1, p2, p3):
        assert c.micro_batch * c.grad_accum * 8 == 512  # sequences per step on 8 GPUs
        assert c.model == "snowcoder-1.3b" and c.dtype == "bfloat16"
        assert c.betas == (0.9, 0.95) and c.weight_decay == 0.1 and c.grad_clip == 1.0
    tokens_per_step = 512 * 8192
    # token budgets 500B, 50B, 5B
    assert p1.max_iters == 119_209 and abs(p1.max_iters * tokens_per_step - 500e9) < tokens_per_step
    assert p2.max_iters == 11_921 and abs(p2.max_iters * tokens_per_step - 50e9) < tokens_per_step
    assert p3.max_iters == 1_192 and abs(p3.max_iters * tokens_per_step - 5e9) < tokens_per_step
    # phases chain through the exports
    assert p1.init_from == "" and p2.init_from == p1.out_dir + "/export" and p3.init_from == p2.out_dir + "/export"


def test_schedule_values_phase1():
    c = train.load_config(f"{ROOT}/configs/phase1.py")
    assert c.lr_schedule == "cosine" and c.warmup_iters == 600
    assert train.get_lr(0, c) < 1e-6                                # warmup starts near 0
    assert train.get_lr(299, c) == pytest.approx(5.3e-4 * 300 / 601)  # linear in between
    assert train.get_lr(600, c) == pytest.approx(5.3e-4, rel=1e-12)  # warmup end: the peak
    mid = (600 + c.max_iters) / 2
    assert train.get_lr(math.floor(mid), c) == pytest.approx((5.3e-4 + 5.3e-5) / 2, rel=1e-4)  # cosine midpoint
    assert train.get_lr(c.max_iters, c) == pytest.approx(5.3e-5, rel=1e-12)  # end: min_lr
    assert train.get_lr(c.max_iters - 1, c) == pytest.approx(5.3e-5, rel=1e-6)
    lrs = [train.get_lr(i, c) for i in range(600, c.max_iters, 997)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay


@pytest.mark.parametrize("phase", [2, 3])
def test_schedule_values_phases_2_3(phase):
    c = train.load_config(f"{ROOT}/configs/phase{phase}.py")
    assert c.lr_schedule == "linear" and c.warmup_iters == 1000 and c.min_lr == 0.0
    assert train.get_lr(0, c) < 1e-6                                    # re-warm from 0
    assert train.get_lr(1000, c) == pytest.approx(5.3e-4, rel=1e-12)     # ... to 5.3e-4 over 1000 steps
    mid = (1000 + c.max_iters) // 2
    expect = 5.3e-4 * (1 - (mid - 1000) / (c.max_iters - 1000))
    assert train.get_lr(mid, c) == pytest.approx(expect, rel=1e-12)
    assert expect == pytest.approx(5.3e-4 / 2, rel=1e-2)                # linear midpoint
    assert train.get_lr(c.max_iters, c) == 0.0                           # ... to 0


def test_config_errors_are_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match="unknown config key 'lrr'.*did you mean 'lr'"):
        train.load_config(f"{ROOT}/configs/tiny.py", ["--lrr=1"])
    with pytest.raises(SystemExit, match="max_iters must be int"):
        train.load_config(f"{ROOT}/configs/tiny.py", ["--max_iters=1.5"])
    with pytest.raises(SystemExit, match="lr_schedule='step'"):
        train.load_config(f"{ROOT}/configs/tiny.py", ["--lr_schedule=step"])
    bad = tmp_path / "bad.py"
    bad.write_text("micro_bach = 4\n")
    with pytest.raises(SystemExit, match=r"bad.py: unknown config key 'micro_bach'"):
        train.load_config(str(bad))
    c = train.load_config(f"{ROOT}/configs/tiny.py", ["--lr=1e-3", "--betas=(0.8, 0.9)", "--compile=true",
                                                     "--out_dir=123", "--model_args={'block_size': 32}"])
    assert (c.lr, c.betas, c.compile, c.out_dir, c.model_args) == (1e-3, (0.8, 0.9), True, "123", {"block_size": 32})

def test_configs_hold_only_overrides():
    defaults = train.TrainConfig()
    for path in sorted((ROOT / "configs").glob("*.py")):
        ns = {}
        exec(compile(path.read_text(), str(path), "exec"), ns)
        for key, value in ns.items():
            if not key.startswith("_"):
                assert value != getattr(defaults, key), f"{path.name}: {key} = {value!r} is the default"
    with pytest.raises(SystemExit, match="model set together with init_from"):
        train.load_config(f"{ROOT}/configs/phase2.py", ["--model=tiny"])
    with pytest.raises(SystemExit, match="model_args set together with init_from"):
        train.load_config(f"{ROOT}/configs/tiny.py", ["--init_from=runs/x/export"])

# -----------------------------------------------------------------------------
# the data loader


def test_loader_mixture_determinism_and_rank_slices(corpus, tmp_path):
    man = json.loads((corpus / "manifest.json").read_text())
    # two sources: the train shard with epochs 1 and a copy of it with epochs 3
    src = next(s for s in man["shards"] if s["split"] == "train")
    shutil.copy(corpus / src["path"], tmp_path / "a.bin")
    shutil.copy(corpus / src["path"], tmp_path / "b.bin")
    man["shards"] = [{**src, "path": "a.bin", "epochs": 1}, {**src, "path": "b.bin", "epochs": 3},
                     {**src, "path": "a.bin", "split": "val"}]
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    m = train.load_manifest(str(tmp_path))
    T = 32
    data = train.TokenStream(m, "train", T, seed=7, vocab_size=1024)
    n = (src["tokens"] - 1) // T
    assert data.size == 4 * n
    # one pass: every window of b exactly 3 times, of a once (window -> its first token ids)
    perm = data._order(0)
    assert sorted(perm.tolist()) == list(range(4 * n))
    from_b = (perm >= n).sum()
    assert from_b == 3 * n
    # windows are the real tokens, targets shifted by one
    tokens = np.fromfile(tmp_path / "a.bin", dtype=np.uint16).astype(np.int64)
    x, y = data.get(0, 5)
    for j in range(5):
        w = int(perm[j]) % n
        assert torch.equal(x[j], torch.from_numpy(tokens[w * T:(w + 1) * T]))
        assert torch.equal(y[j], torch.from_numpy(tokens[w * T + 1:(w + 1) * T + 1]))
    # deterministic from the seed; another seed, another order
    again = train.TokenStream(m, "train", T, seed=7, vocab_size=1024)
    assert torch.equal(again.get(100, 16)[0], data.get(100, 16)[0])
    assert not torch.equal(train.TokenStream(m, "train", T, seed=8, vocab_size=1024).get(100, 16)[0], data.get(100, 16)[0])
    # ranks read disjoint slices whose union is the 1-process batch (global batch 8, micro 2)
    B, world, accum = 2, 2, 2
    one = torch.cat([data.get(40 + k * B, B)[0] for k in range(world * accum)])
    parts = [data.get(40 + (micro * world + r) * B, B)[0] for r in range(world) for micro in range(accum)]
    assert sorted(map(tuple, torch.cat(parts).tolist())) == sorted(map(tuple, one.tolist()))
    # crossing a pass boundary reshuffles instead of failing
    x, _ = data.get(data.size - 2, 4)
    assert x.shape == (4, T)
    assert not np.array_equal(data._order(1), perm)
    assert train.TokenStream(m, "val", T, seed=7, vocab_size=1024).size == n  # val ignores epochs


def test_token_ids_checked_against_the_vocabulary(corpus):
    man = train.load_manifest(str(corpus))
    data = train.TokenStream(man, "train", 64, seed=0, vocab_size=200)  # the tiny tokenizer has 1024 ids
    with pytest.raises(SystemExit, match=r"train.py: .*train-Python-00000.bin: token \d+ has id \d+, not below the model's vocab_size=200"):
        data.get(0, 4)


def test_manifest_errors(tmp_path, corpus):
    with pytest.raises(SystemExit, match=r"train.py: data_dir=.*nope.*manifest"):
        train.load_manifest(str(tmp_path / "nope"))
    shutil.copytree(corpus, tmp_path / "c")
    bin_ = next((tmp_path / "c").glob("train-*.bin"))
    with open(bin_, "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(SystemExit, match=f"train.py: data_dir=.*{bin_.name}"):
        train.load_manifest(str(tmp_path / "c"))

# -----------------------------------------------------------------------------
# real runs


def test_two_process_run_learns_and_exports(two_proc_run):
    log = read_log(two_proc_run)
    assert [e["iter"] for e in log] == list(range(40))
    first, last = log[0]["loss"], np.mean([e["loss"] for e in log[-5:]])
    assert first == pytest.approx(math.log(1024), abs=0.1)  # uniform over the tiny vocab at init
    assert last < first - 0.8, (first, last)
    vals = [e["val_loss"] for e in log if "val_loss" in e]
    assert len(vals) == 2 and vals[-1] < first - 0.8
    for key in ("lr", "grad_norm", "tokens", "tokens_per_s", "mfu"):
        assert key in log[-1]
    assert log[-1]["tokens"] == 40 * 8 * 64  # steps x (4 seqs x 2 ranks) x 64 tokens
    saved = json.loads((two_proc_run / "config.json").read_text())
    assert saved["world_size"] == 2 and saved["max_iters"] == 40
    # the last K=2 checkpoints (every 20 steps), each with its config, and the export
    assert sorted(p.name for p in two_proc_run.glob("ckpt-*")) == ["ckpt-000020", "ckpt-000040"]
    assert json.loads((two_proc_run / "ckpt-000040" / "meta.json").read_text())["config"]["seed"] == 1337
    assert (two_proc_run / "export" / "model.safetensors").is_file()
    assert (two_proc_run / "export" / "tokenizer.tiktoken").is_file()


def test_export_reproduces_val_loss(two_proc_run, corpus):
    """The consolidated export computes the same val loss that training logged."""
    from model import Transformer
    model = Transformer.from_pretrained(str(two_proc_run / "export"))
    man = train.load_manifest(str(corpus))
    val = train.TokenStream(man, "val", 64, seed=0, vocab_size=1024)
    n_val = 2 * 8  # eval_iters x global batch
    x, y = val.read((np.arange(n_val) * val.size) // n_val)
    with torch.no_grad():
        losses = [model(x[i:i + 4], y[i:i + 4])[1].item() for i in range(0, n_val, 4)]
    assert np.mean(losses) == pytest.approx(read_log(two_proc_run)[-1]["val_loss"], abs=1e-4)


def test_resume_continues_exactly(two_proc_run, corpus, tmp_path):
    """Halt after 13 steps, leave a half-written checkpoint behind, resume: the same losses (and
    data order) as the uninterrupted run."""
    out = tmp_path / "out"
    run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={out}", "--halt_iter=13"], nproc=2)
    assert [e["iter"] for e in read_log(out)] == list(range(13))
    assert not (out / "export").exists()
    # another schedule on resume: refused, naming the key; nothing touched
    p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={out}", "--max_iters=50"], nproc=2, check=False)
    assert p.returncode != 0 and "train.py: resuming" in p.stderr and "max_iters 40 -> 50" in p.stderr
    assert "allow_schedule_change" in p.stderr and len(read_log(out)) == 13
    changed = tmp_path / "changed"  # ... unless asked for (on a copy: 1 process, so the batch changes too)
    shutil.copytree(out, changed)
    p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={changed}", "--max_iters=50", "--halt_iter=14",
                   "--allow_schedule_change=True"])
    assert "max_iters 40 -> 50" in p.stdout and "global_batch 8 -> 4" in p.stdout
    assert [e["iter"] for e in read_log(changed)] == list(range(14))
    with open(out / "log.jsonl", "a") as f:  # killed while writing a log line: a torn last line
        f.write('{"iter": 13, "loss": 4.')
    half = out / "ckpt-000017.tmp"  # as if killed while writing a later checkpoint
    half.mkdir()
    (half / "__0_0.distcp").write_bytes(b"partial")
    p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={out}"], nproc=2)
    assert "ignoring half-written checkpoint" in p.stdout and "resumed from" in p.stdout
    assert not half.exists()
    ref, got = read_log(two_proc_run), read_log(out)
    assert [e["iter"] for e in got] == list(range(40))
    assert [e["loss"] for e in got] == pytest.approx([e["loss"] for e in ref], abs=1e-6)
    assert [e.get("val_loss") for e in got] == pytest.approx([e.get("val_loss") for e in ref], abs=1e-6)


def test_one_process_matches_two(two_proc_run, corpus, tmp_path):
    """Same global batch (1 x 4 x 2 micro-steps vs 2 ranks x 4): the same losses. This run also
    recomputes every block in backward (activation checkpointing), which must not change them."""
    out = tmp_path / "out"
    run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={out}", "--grad_accum=2", "--max_iters=40",
               "--halt_iter=20", "--activation_checkpointing=True"])
    ref, got = read_log(two_proc_run)[:20], read_log(out)
    assert [e["loss"] for e in got] == pytest.approx([e["loss"] for e in ref], abs=1e-4)
    assert got[19]["val_loss"] == pytest.approx(ref[19]["val_loss"], abs=1e-4)


def test_phase_chaining_fresh_schedule(two_proc_run, corpus, tmp_path):
    """Phase 2 starts from phase 1's weights (low loss at step 0) with a fresh optimizer and a
    re-warm from ~0, then decays linearly to 0."""
    out = tmp_path / "p2"
    # a phase-2 config names no architecture: it comes from init_from (model = ... there is an error)
    p2 = tmp_path / "tiny_p2.py"
    p2.write_text("".join(line for line in (ROOT / "configs/tiny.py").read_text().splitlines(keepends=True)
                          if not line.startswith(("model =", "model_args ="))))
    run_train([str(p2), "--wandb_log=False", f"--data_dir={corpus}", f"--out_dir={out}", f"--init_from={two_proc_run / 'export'}",
               "--lr_schedule=linear", "--min_lr=0.0", "--warmup_iters=4", "--max_iters=10", "--lr=1e-3",
               "--eval_interval=10"])
    log = read_log(out)
    p1 = read_log(two_proc_run)
    assert log[0]["lr"] == pytest.approx(1e-3 / 5) and log[4]["lr"] == pytest.approx(1e-3)
    assert log[-1]["lr"] == pytest.approx(1e-3 * (1 - 5 / 6))
    assert log[0]["tokens"] == 4 * 64  # the step and token counters start over
    assert log[0]["loss"] < p1[0]["loss"] - 0.7  # phase 1's weights, not a fresh init
    assert abs(log[0]["loss"] - np.mean([e["loss"] for e in p1[-5:]])) < 0.3
    assert (out / "export" / "tokenizer.tiktoken").is_file()


def test_bad_input_one_clear_error(two_proc_run, corpus, tmp_path):
    p = run_train([*TINY, f"--data_dir={corpus}", "--lrr=1"], check=False)
    assert p.returncode != 0 and "train.py: --lrr: unknown config key 'lrr'" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_train([*TINY, f"--data_dir={tmp_path / 'missing'}", f"--out_dir={tmp_path / 'o'}"], check=False)
    assert p.returncode != 0 and "train.py: data_dir=" in p.stderr and "Traceback" not in p.stderr

    # a corrupt checkpoint: an error naming it, never a silent fresh start
    bad = tmp_path / "corrupt"
    shutil.copytree(two_proc_run, bad)
    shard = bad / "ckpt-000040" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={bad}", "--max_iters=50", "--allow_schedule_change=True"],
                  check=False)
    assert p.returncode != 0 and "checkpoint" in p.stderr and "ckpt-000040 is corrupt" in p.stderr
    assert len(read_log(bad)) == 40  # nothing was overwritten

    # a checkpoint dir without its meta.json (not written by train.py's rename): error
    (bad / "ckpt-000040" / "meta.json").unlink()
    p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={bad}"], check=False)
    assert p.returncode != 0 and "ckpt-000040 is incomplete" in p.stderr

    # only a half-written checkpoint next to an earlier run's log: refuse to start over it
    half = tmp_path / "half"
    (half / "ckpt-000010.tmp").mkdir(parents=True)
    shutil.copy(two_proc_run / "log.jsonl", half / "log.jsonl")
    p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={half}"], check=False)
    assert p.returncode != 0 and "no complete checkpoint" in p.stderr
    assert len(read_log(half)) == 40


def test_manifest_vocab_larger_than_the_model(corpus, tmp_path):
    p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={tmp_path / 'o'}",
                   "--model_args={'block_size': 64, 'vocab_size': 512}"], check=False)
    assert p.returncode != 0 and "vocab_size=1024 exceeds the model's vocab_size=512" in p.stderr
    assert "Traceback" not in p.stderr


def test_out_dir_lock(corpus, tmp_path):
    """Two runs on one out_dir: the second stops with a clear line (here the first is this
    process, holding the log as a running train.py does)."""
    from formats import AppendLog
    out = tmp_path / "o"
    out.mkdir()
    with AppendLog(out / "log.jsonl"):
        p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={out}"], check=False)
    assert p.returncode != 0 and f"train.py: out_dir {out}" in p.stderr and "Traceback" not in p.stderr
    assert not list(out.glob("ckpt-*")) and not (out / "config.json").exists()


@pytest.mark.parametrize("bad", ["--lrr=1", "--data_dir=/nonexistent/shards"])
def test_torchrun_failure_reaches_the_terminal(corpus, tmp_path, bad):
    """Under a real 2-process torchrun, every rank fails the same way: the one line gets out
    (rank 0 speaks first) and the run exits non-zero."""
    p = run_train([*TINY, f"--data_dir={corpus}", f"--out_dir={tmp_path / 'o'}", bad], nproc=2, check=False)
    assert p.returncode != 0
    want = "train.py: --lrr: unknown config key 'lrr'" if bad == "--lrr=1" else "train.py: data_dir='/nonexistent/shards'"
    assert want in p.stderr, p.stderr[-2000:]
