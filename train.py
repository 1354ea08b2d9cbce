"""
Pretrain the SnowCoder transformer: one script for all three phases of the recipe.

    python train.py configs/tiny.py --data_dir=DIR        # one process (CPU, or one GPU)
    torchrun --nproc_per_node=8 train.py configs/phase1.py  # FSDP2 over 8 GPUs
    python train.py configs/phase2.py --lr=3e-4 --max_iters=100   # --key=value overrides

A config is a Python file of plain assignments to the keys of TrainConfig (below). Overrides
are --key=value, checked against the key's type; an unknown key is an error.

What happens, in order:
  - rank 0 opens out_dir/log.jsonl and holds an exclusive lock on it for the whole run: a second
    run on the same out_dir stops with an error. A torn last line (a killed run) is cut.
  - the resolved config is printed and written to out_dir/config.json
  - if out_dir holds a checkpoint (ckpt-NNNNNN/), training resumes from the newest one: model,
    optimizer, step and data position, refusing other schedule settings (SCHEDULE_KEYS) unless
    --allow_schedule_change=True. Otherwise the model is initialised fresh, or from the
    Hugging Face export named by init_from (phases 2 and 3: weights and architecture, a fresh
    optimizer and a fresh learning-rate schedule).
  - the model is built plain, then parallelize() applies activation checkpointing, compile and
    FSDP2 in that order (torchtitan's idiom), each a function of its own.
  - every step: micro_batch x grad_accum sequences per process, AdamW, grad clipping, lr from
    the schedule; one JSON line per step in out_dir/log.jsonl; val loss every eval_interval.
  - every ckpt_interval steps and at the end: a sharded torch.distributed.checkpoint (DCP),
    written to a temp dir and renamed, so a half-written one is never picked up.
  - at the end: consolidated weights in out_dir/export/ (model.save_pretrained) plus the
    tokenizer.tiktoken named by the data manifest: what eval/, annotate.py and sample.py load.

Data: the token shards of README "Data formats" (manifest.json + raw uint16 files). Each shard
is cut into windows of block_size+1 tokens; one pass over the data holds every window of a
shard `epochs` times (phase 2 repeats its data 4x this way; phase 3 mixes sources by epochs),
shuffled by the seed. Sample i of the stream is a pure function of (seed, i), so the loader's
whole state is the number of samples consumed, and it does not depend on the number of
processes: rank r reads its own disjoint slice of every global batch.

Failures are one line "train.py: ..." on stderr, from whichever rank meets them first, and every
rank exits non-zero (exit_with_message at the bottom).
"""
import argparse
import ast
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
import types
from dataclasses import dataclass, field, fields, asdict

import numpy as np
import torch

from formats import TOKENIZER_FILE, write_json

# -----------------------------------------------------------------------------
# config


@dataclass
class TrainConfig:
    # I/O
    data_dir: str = "data/p1/shards"   # a directory with manifest.json (or the manifest file itself)
    out_dir: str = "runs/phase1"       # checkpoints, log.jsonl, config.json, export/
    init_from: str = ""                # an HF export dir (phases 2, 3): its weights, fresh optimizer + schedule
    # model: a preset of model.PRESETS plus ModelConfig overrides; vocab_size defaults to the data's
    model: str = "snowcoder-1.3b"
    model_args: dict = field(default_factory=dict)  # e.g. {"block_size": 2048, "n_layer": 12}
    backend: str = "auto"              # "auto" (triton on CUDA) | "triton" | "torch"
    # batch: sequences per step = micro_batch * grad_accum * world_size, each block_size tokens
    micro_batch: int = 2
    grad_accum: int = 32
    max_iters: int = 119_209           # optimizer steps; the schedule decays over exactly these
    halt_iter: int = 0                 # stop (checkpointed) after this step as if preempted; 0 = never
    # AdamW and the learning-rate schedule
    lr: float = 5.3e-4                 # peak, reached at the end of warmup
    min_lr: float = 5.3e-5             # reached at max_iters
    lr_schedule: str = "cosine"        # "cosine" | "linear" (both after a linear warmup from 0)
    warmup_iters: int = 600
    betas: tuple = (0.9, 0.95)
    weight_decay: float = 0.1          # matrices and the embedding only; norm gains are not decayed
    grad_clip: float = 1.0             # global grad-norm clip; 0 = off
    # system
    device: str = "auto"               # "auto" (cuda when present) | "cuda" | "cpu"
    dtype: str = "bfloat16"            # compute dtype on CUDA ("bfloat16" | "float32"); CPU is fp32
    compile: bool = False              # torch.compile each block
    activation_checkpointing: bool = False  # recompute each block in backward (less memory)
    seed: int = 1337                   # model init and data order
    allow_schedule_change: bool = False  # resume although max_iters, lr, batch... differ from the checkpoint's
    # evaluation, checkpoints, logging
    eval_interval: int = 500           # steps between val-loss evaluations (and at the end)
    eval_iters: int = 5                # val batches (of the global batch size) per evaluation
    ckpt_interval: int = 500
    keep_last: int = 3                 # checkpoints kept in out_dir
    export_every_ckpt: bool = False    # also refresh out_dir/export/ at every checkpoint
    log_interval: int = 10             # steps between printed lines (log.jsonl gets every step)
    wandb_log: bool = True             # offline unless WANDB_MODE says otherwise; off if WANDB_MODE=disabled
    wandb_project: str = "snowcoder"
    wandb_run_name: str = "phase1"


def fail(msg):
    """Stop with one clear line (printed by the __main__ block below, on any rank)."""
    raise SystemExit(f"train.py: {msg}")


def _typed(key, value, where):
    """value, converted to the type of key's default, or a clear error."""
    defaults = TrainConfig()
    if key not in {f.name for f in fields(TrainConfig)}:
        import difflib
        near = difflib.get_close_matches(key, [f.name for f in fields(TrainConfig)], n=1)
        fail(f"{where}: unknown config key {key!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
             + "; see python train.py --help")
    want = type(getattr(defaults, key))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is tuple and isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        fail(f"{where}: {key} must be {want.__name__} (like {getattr(defaults, key)!r}), got {value!r}")
    return value


def _parse_override(key, raw):
    defaults = TrainConfig()
    want = type(getattr(defaults, key)) if hasattr(defaults, key) else None
    if want is str:
        return raw  # paths stay strings whatever they look like
    if want is bool and raw.lower() in ("true", "false", "1", "0", "yes", "no"):
        return raw.lower() in ("true", "1", "yes")
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw  # let the type check report it


def load_config(path, overrides=()):
    """TrainConfig from a config file of plain assignments plus --key=value overrides."""
    if not os.path.isfile(path):
        fail(f"config file {path} not found")
    ns = {}
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), ns)
    cfg, given = TrainConfig(), set()
    for key, value in ns.items():
        if key.startswith("_") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue  # configs may import math or define helpers
        setattr(cfg, key, _typed(key, value, path))
        given.add(key)
    for arg in overrides:
        m = re.fullmatch(r"--([A-Za-z_]\w*)=(.*)", arg, re.S)
        if not m:
            fail(f"bad argument {arg!r}: overrides are --key=value")
        key, raw = m.groups()
        setattr(cfg, key, _typed(key, _parse_override(key, raw), f"--{key}"))
        given.add(key)
    problems = []
    if cfg.init_from and given & {"model", "model_args"}:
        problems.append(f"{'/'.join(sorted(given & {'model', 'model_args'}))} set together with init_from: the "
                        f"architecture comes from {cfg.init_from}/config.json, remove the key")
    if cfg.lr_schedule not in ("cosine", "linear"):
        problems.append(f"lr_schedule={cfg.lr_schedule!r} must be 'cosine' or 'linear'")
    if cfg.dtype not in ("bfloat16", "float32"):
        problems.append(f"dtype={cfg.dtype!r} must be 'bfloat16' or 'float32'")
    if cfg.device not in ("auto", "cuda", "cpu"):
        problems.append(f"device={cfg.device!r} must be 'auto', 'cuda' or 'cpu'")
    for key in ("micro_batch", "grad_accum", "max_iters", "eval_interval", "eval_iters", "ckpt_interval",
                "keep_last", "log_interval"):
        if getattr(cfg, key) < 1:
            problems.append(f"{key}={getattr(cfg, key)} must be >= 1")
    if cfg.warmup_iters < 0 or cfg.halt_iter < 0 or cfg.lr < 0 or cfg.min_lr < 0:
        problems.append("warmup_iters, halt_iter, lr and min_lr must be >= 0")
    if len(cfg.betas) != 2:
        problems.append(f"betas={cfg.betas!r} must be a pair")
    if problems:
        fail("bad config: " + "; ".join(problems))
    return cfg


def get_lr(it, cfg):
    """Learning rate of step `it` (0-based): linear warmup to cfg.lr at it == warmup_iters, then
    cosine or linear decay to cfg.min_lr at it == max_iters. Phase 1: warmup 600, cosine
    5.3e-4 -> 5.3e-5. Phases 2, 3: re-warm 0 -> 5.3e-4 over 1000, linear to 0."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)  # starts near 0, never exactly (no wasted step)
    if it >= cfg.max_iters:
        return cfg.min_lr
    progress = (it - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)  # 0 -> 1
    if cfg.lr_schedule == "cosine":
        coeff = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        coeff = 1.0 - progress
    return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)

# what a resume must share with the run it continues (else the lr curve or the data order changes
# mid-run); --allow_schedule_change=True accepts a change on purpose
SCHEDULE_KEYS = ("max_iters", "lr", "min_lr", "lr_schedule", "warmup_iters", "betas", "weight_decay", "seed",
                 "global_batch")


# -----------------------------------------------------------------------------
# data


def load_manifest(data_dir):
    """The shard manifest (formats.read_manifest: validated, paths absolute) or one clear line."""
    from formats import ManifestError, read_manifest
    try:
        return read_manifest(data_dir)
    except ManifestError as e:
        fail(f"data_dir={data_dir!r}: {e}")


class TokenStream:
    """One split of a manifest as an endless, seeded stream of (block_size+1)-token windows.

    Windows do not overlap (stride block_size; the extra token is the last target). A pass over
    the data holds each window of a shard floor(epochs * n_windows) times (whole copies first,
    then the leading part of the shard for a fractional epoch) and is shuffled with
    np.random.default_rng([seed, pass]); pass p + 1 reshuffles. Stream index i is therefore a
    pure function of (seed, i): resuming needs only the count of samples consumed.
    Token ids are checked against vocab_size batch by batch (a max over the batch: free next to
    a step, where a scan of every shard at start-up would read the whole corpus)."""

    def __init__(self, man, split, block_size, seed, vocab_size, shuffle=True):
        self.T, self.seed, self.shuffle, self.vocab_size = block_size, seed, shuffle, vocab_size
        self.shards, counts, self.n_windows, self.paths = [], [], [], []
        for s in man["shards"]:
            if s.get("split", "train") != split:
                continue
            n = (int(s["tokens"]) - 1) // block_size
            copies = float(s.get("epochs", 1)) if split == "train" else 1.0
            count = int(copies * n)
            if count <= 0:
                # too short for one window: say so rather than lose it silently
                print(f"train.py: note: {split} shard {s['path']} has {s['tokens']} tokens, fewer than one "
                      f"{block_size + 1}-token window; skipped", file=sys.stderr)
                continue
            self.shards.append(np.memmap(s["path"], dtype=np.uint16, mode="r"))
            self.paths.append(s["path"])
            self.n_windows.append(n)
            counts.append(count)
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])  # (n_shards + 1,)
        self.size = int(self.starts[-1])  # windows in one pass
        self._pass, self._perm = None, None

    def _order(self, p):
        if self._pass != p:
            rng = np.random.default_rng([self.seed, p])
            # int32 halves the memory of the 50M-entry permutation of a full-size pass
            self._perm = rng.permutation(np.arange(self.size, dtype=np.int32 if self.size < 2**31 else np.int64))
            self._pass = p
        return self._perm

    def get(self, first, n):
        """Samples first .. first+n-1 of the stream -> x, y: (n, block_size) int64 tensors."""
        g = np.arange(first, first + n, dtype=np.int64)
        if self.shuffle:
            idx = np.concatenate([self._order(p)[g[g // self.size == p] % self.size]
                                  for p in np.unique(g // self.size)]).astype(np.int64)
        else:
            idx = g % self.size
        return self.read(idx)

    def read(self, idx):
        """Windows idx (indices into one unshuffled pass) -> x, y: (n, block_size) int64 tensors."""
        n = len(idx)
        shard = np.searchsorted(self.starts, idx, side="right") - 1  # (n,)
        buf = np.empty((n, self.T + 1), dtype=np.int64)
        for j, (s, k) in enumerate(zip(shard, idx - self.starts[shard])):
            w = int(k) % self.n_windows[s]
            buf[j] = self.shards[s][w * self.T: (w + 1) * self.T + 1]
            if buf[j].max() >= self.vocab_size:
                at = w * self.T + int(np.argmax(buf[j] >= self.vocab_size))
                fail(f"{self.paths[s]}: token {at} has id {self.shards[s][at]}, not below the model's "
                     f"vocab_size={self.vocab_size} (shards and tokenizer of another run?)")
        buf = torch.from_numpy(buf)
        return buf[:, :-1], buf[:, 1:]

# -----------------------------------------------------------------------------
# checkpoints


CKPT_RE = re.compile(r"ckpt-(\d{6,})$")


def find_checkpoint(out_dir):
    """(newest complete checkpoint dir or None, half-written temp dirs). A complete checkpoint is
    one whose temp dir was renamed; it must hold meta.json and DCP's .metadata, else the run
    stops with an error rather than silently training from an older or fresh state."""
    if not os.path.isdir(out_dir):
        return None, []
    names = sorted(os.listdir(out_dir))
    done = sorted((int(m.group(1)), n) for n in names if (m := CKPT_RE.match(n)))
    tmp = [os.path.join(out_dir, n) for n in names if n.startswith("ckpt-") and n.endswith(".tmp")]
    if not done:
        return None, tmp
    path = os.path.join(out_dir, done[-1][1])
    for need in ("meta.json", ".metadata"):
        if not os.path.isfile(os.path.join(path, need)):
            fail(f"checkpoint {path} is incomplete (no {need}); delete it to resume from the one before")
    return path, tmp


def save_checkpoint(model, optimizer, out_dir, step, meta, keep_last, rank):
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    final = os.path.join(out_dir, f"ckpt-{step:06d}")
    tmp = final + ".tmp"
    if rank == 0 and os.path.exists(tmp):
        shutil.rmtree(tmp)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)  # sharded: each rank writes its own part
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=tmp)
    dist.barrier()  # every rank's files are on disk
    if rank == 0:
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1)
        if os.path.exists(final):  # re-saving the same step (e.g. halted exactly here before)
            shutil.rmtree(final)
        os.rename(tmp, final)  # the commit point
        done = sorted(n for n in os.listdir(out_dir) if CKPT_RE.match(n))
        for old in done[:-keep_last]:
            shutil.rmtree(os.path.join(out_dir, old), ignore_errors=True)
    dist.barrier()


def load_checkpoint(model, optimizer, path):
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    try:
        dcp.load(state, checkpoint_id=path)
    except (Exception, dcp.CheckpointException) as e:  # DCP gathers every rank's failure: all ranks land here
        first = str(e).strip().splitlines()
        fail(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {first[-1][:200] if first else ''}); "
             "delete it to resume from the one before, or use a new out_dir")
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def export(model, model_cfg, out_dir, tokenizer_path, eot_id, rank):
    """Consolidated weights -> out_dir/export/ (HF Llama layout + tokenizer.tiktoken), swapped in
    atomically. All ranks gather the full state dict; rank 0 writes it."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, StateDictOptions
    from model import ModelConfig, Transformer
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        with torch.device("meta"):
            plain = Transformer(ModelConfig(**model_cfg))
        plain.to_empty(device="cpu")
        if plain.config.tie_embeddings:
            plain.lm_head.weight = plain.embed_tokens.weight
        missing, unexpected = plain.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not (plain.config.tie_embeddings and k == "lm_head.weight")]
        if missing or unexpected:
            raise RuntimeError(f"export: state dict mismatch, missing {missing[:3]}, unexpected {unexpected[:3]}")
        dest, tmp = os.path.join(out_dir, "export"), os.path.join(out_dir, "export.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        plain.save_pretrained(tmp, eos_token_id=eot_id)
        if tokenizer_path:
            shutil.copy(tokenizer_path, os.path.join(tmp, TOKENIZER_FILE))
        if os.path.exists(dest):
            shutil.rmtree(dest + ".old", ignore_errors=True)
            os.rename(dest, dest + ".old")
        os.rename(tmp, dest)
        shutil.rmtree(dest + ".old", ignore_errors=True)
    dist.barrier()

# -----------------------------------------------------------------------------
# the model and its parallelisation (torchtitan's idiom: build a plain model, then apply each
# technique to it in order: activation checkpointing, compile, FSDP2)


def build_model(cfg, man, meta):
    """A plain Transformer, on the CPU: the checkpoint's architecture when resuming (its weights
    come later, from DCP), an export's weights for init_from, else a fresh init of the preset."""
    from model import ModelConfig, Transformer
    torch.manual_seed(cfg.seed)
    if meta is not None:
        return Transformer(ModelConfig(**{**meta["model_config"], "backend": cfg.backend}))
    if cfg.init_from:
        try:
            return Transformer.from_pretrained(cfg.init_from, backend=cfg.backend)
        except ValueError as e:
            fail(f"init_from={cfg.init_from!r}: {e}")
    try:
        model_cfg = ModelConfig.from_preset(cfg.model, **{"vocab_size": int(man["vocab_size"]), **cfg.model_args,
                                                          "backend": cfg.backend})
    except (ValueError, TypeError) as e:
        fail(f"model={cfg.model!r} model_args={cfg.model_args!r}: {e}")
    return Transformer(model_cfg)


def apply_activation_checkpointing(model):
    """Recompute each block in backward: only the block inputs stay alive between passes."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    for i, block in enumerate(model.layers):
        model.layers[i] = checkpoint_wrapper(block, preserve_rng_state=False)  # no dropout: no RNG to replay


def apply_compile(model):
    """torch.compile each block separately: one small graph, compiled once, reused 24 times."""
    for i, block in enumerate(model.layers):
        model.layers[i] = torch.compile(block)


def apply_fsdp(model, bf16):
    """FSDP2: each block's parameters are all-gathered just before its forward/backward and freed
    after; the root unit holds the embedding (tied with the head) and the final norm. bf16
    compute on fp32 master weights, gradients reduced in fp32."""
    from torch.distributed.fsdp import fully_shard, MixedPrecisionPolicy
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for block in model.layers:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)


def parallelize(model, cfg, device, bf16):
    """The plain model, moved to device and made ready to train (wrapping order matters: the
    checkpoint wrapper goes inside compile, and FSDP shards the compiled blocks)."""
    model.to(device)
    if cfg.activation_checkpointing:
        apply_activation_checkpointing(model)
    if cfg.compile:
        apply_compile(model)
    apply_fsdp(model, bf16)
    return model


def build_optimizer(model, cfg, fused):
    decay = [p for p in model.parameters() if p.dim() >= 2]   # matrices and the embedding
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # norm gains
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=cfg.betas, fused=fused)

# -----------------------------------------------------------------------------
# run set-up: inputs, processes, out_dir


def check_inputs(cfg, man):
    """What can be checked before any process group or model exists: fail fast, on every rank."""
    if cfg.init_from and not os.path.isfile(os.path.join(cfg.init_from, "config.json")):
        fail(f"init_from={cfg.init_from!r}: no config.json there (expected a train.py export dir)")
    if man["tokenizer"] and not os.path.isfile(man["tokenizer"]):
        fail(f"{man['path']}: tokenizer {man['tokenizer']} not found")
    prev_tok = os.path.join(cfg.init_from, TOKENIZER_FILE)
    if cfg.init_from and man["tokenizer"] and os.path.isfile(prev_tok):
        with open(prev_tok, "rb") as a, open(man["tokenizer"], "rb") as b:
            if a.read() != b.read():
                fail(f"init_from={cfg.init_from!r} was trained with another tokenizer than {man['tokenizer']}")


def init_distributed(cfg):
    """(rank, world, device). Without torchrun this is a world of one (the same code path)."""
    import torch.distributed as dist
    rank, world, local_rank = (int(os.environ.get(k, d)) for k, d in
                               (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if "RANK" in os.environ:
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    else:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    return rank, world, device


def open_log(out_dir):
    """Rank 0's out_dir/log.jsonl, opened for the whole run. Opening takes an exclusive lock (a
    second run on the same out_dir stops here with a clear error) and cuts a torn last line
    (a run killed mid-write)."""
    from formats import AppendLog
    log = AppendLog(os.path.join(out_dir, "log.jsonl"))
    try:
        log.__enter__()
    except (OSError, ValueError, RuntimeError) as e:
        fail(f"out_dir {out_dir}: {e}")
    return log


def drop_rows_after(log, path, step):
    """Cut the (locked) log back to the checkpoint: this run redoes the steps >= step. Cut in
    place, not replaced, so the lock on the file stays the lock on out_dir."""
    n_keep = sum(1 for row in log.rows if row["iter"] < step)
    if n_keep < len(log.rows):
        with open(path, "rb+") as f:
            lines = f.read().splitlines(keepends=True)
            f.truncate(sum(len(line) for line in lines[:n_keep]))
        log.rows = log.rows[:n_keep]


def check_fresh_start(out_dir, stale, log_rows):
    """Without a complete checkpoint, out_dir must not hold an earlier run's traces."""
    leftovers = [os.path.basename(p) for p in stale]
    leftovers += ["log.jsonl"] * bool(log_rows) + ["export"] * os.path.exists(os.path.join(out_dir, "export"))
    if leftovers:
        fail(f"out_dir {out_dir} holds an earlier run ({', '.join(leftovers)}) but no complete checkpoint to "
             "resume from; delete it or choose another out_dir")


def check_resume(meta, resolved, ckpt, allow):
    """A resume continues the checkpoint's run: the same schedule, batch and data order."""
    old = meta["config"]
    before = {k: old.get(k) for k in SCHEDULE_KEYS}
    if before["global_batch"] is None:  # checkpoints written before global_batch was recorded
        before["global_batch"] = old["micro_batch"] * old["grad_accum"] * old["world_size"]
    now = {k: resolved[k] for k in SCHEDULE_KEYS}
    before["betas"] = tuple(before["betas"] or ())
    changed = [f"{k} {before[k]!r} -> {now[k]!r}" for k in SCHEDULE_KEYS if before[k] != now[k]]
    if changed and not allow:
        fail(f"resuming {ckpt} with another schedule ({'; '.join(changed)}); use the checkpoint's settings, "
             "or pass --allow_schedule_change=True to continue with the new ones")
    return changed

# -----------------------------------------------------------------------------
# training


def evaluate(model, val_data, val_windows, cfg, rank, world, device):
    """Mean val loss over the fixed val windows, each rank its own micro-batches of them."""
    import torch.distributed as dist
    model.eval()
    total = torch.zeros((), device=device)
    with torch.no_grad():
        for k in range(cfg.eval_iters * cfg.grad_accum):
            first = (k * world + rank) * cfg.micro_batch
            x, y = val_data.read(val_windows[first:first + cfg.micro_batch])
            total += model(x.to(device), y.to(device), loss_only=True).float()
    dist.all_reduce(total)
    model.train()
    return total.item() / (cfg.eval_iters * cfg.grad_accum * world)


def train_step(model, optimizer, train_data, samples_seen, cfg, rank, world, device):
    """One optimizer step over this rank's micro-batches -> (mean loss over all ranks, grad norm)."""
    import torch.distributed as dist
    loss_sum = torch.zeros((), device=device)
    for micro in range(cfg.grad_accum):
        # this rank's disjoint slice of the global batch: the same samples whatever the world size
        x, y = train_data.get(samples_seen + (micro * world + rank) * cfg.micro_batch, cfg.micro_batch)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # (B, T) each
        # reduce-scatter gradients only on the last micro-step; before that FSDP2 accumulates them
        # unsharded, in the reduce dtype (fp32): one reduction per step at the cost of full-size grads
        model.set_requires_gradient_sync(micro == cfg.grad_accum - 1)
        loss = model(x, y, loss_only=True)  # the loss alone: no (B, T, vocab) logits kept alive
        (loss / cfg.grad_accum).backward()
        loss_sum += loss.detach().float()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    if hasattr(grad_norm, "full_tensor"):
        grad_norm = grad_norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    dist.all_reduce(loss_sum)  # SUM (gloo has no AVG); every micro-batch has the same token count
    return loss_sum.item() / (cfg.grad_accum * world), grad_norm.item()


def main(argv=None):
    cfg = parse_args(argv)
    man = load_manifest(cfg.data_dir)  # before any heavy lifting: bad paths fail fast
    check_inputs(cfg, man)
    rank, world, device = init_distributed(cfg)
    master = rank == 0
    import torch.distributed as dist
    from tqdm import tqdm
    say = (lambda *a: tqdm.write(" ".join(str(x) for x in a))) if master else (lambda *a: None)

    # -- where do we start from: a checkpoint in out_dir, an export (init_from), or scratch
    os.makedirs(cfg.out_dir, exist_ok=True)
    log = open_log(cfg.out_dir) if master else None  # the out_dir lock, held until exit
    ckpt, stale = find_checkpoint(cfg.out_dir)
    meta = read_meta(ckpt) if ckpt else None
    if meta is None and master:
        check_fresh_start(cfg.out_dir, stale, log.rows)
    model = build_model(cfg, man, meta)
    model_cfg = model.config
    if model_cfg.vocab_size < int(man["vocab_size"]):
        fail(f"{man['path']}: vocab_size={man['vocab_size']} exceeds the model's vocab_size={model_cfg.vocab_size} "
             "(token ids would index past the embedding)")
    T = model_cfg.block_size
    train_data = TokenStream(man, "train", T, cfg.seed, model_cfg.vocab_size)
    val_data = TokenStream(man, "val", T, cfg.seed, model_cfg.vocab_size, shuffle=False)
    if train_data.size == 0:
        fail(f"{man['path']}: no train shard holds block_size+1={T + 1} tokens")
    global_batch = cfg.micro_batch * cfg.grad_accum * world  # sequences per step
    tokens_per_step = global_batch * T
    resolved = {**asdict(cfg), "world_size": world, "device": str(device), "model_config": asdict(model_cfg),
                "global_batch": global_batch, "tokens_per_step": tokens_per_step, "manifest": man["path"]}
    if meta is not None:
        for change in check_resume(meta, resolved, ckpt, cfg.allow_schedule_change):
            say(f"note: schedule changed on resume (allow_schedule_change): {change}")
    if master:
        print(json.dumps(resolved, indent=1, default=str))
        write_json(os.path.join(cfg.out_dir, "config.json"), resolved)
        print(f"model: {model.num_params() / 1e6:.2f}M params, block {T}; {global_batch} seqs x {T} = "
              f"{tokens_per_step:,} tokens/step on {world} process(es); {train_data.size:,} train windows/pass "
              f"({cfg.max_iters * global_batch / train_data.size:.2f} passes), {val_data.size:,} val windows")

    use_cuda = device.type == "cuda"
    model = parallelize(model, cfg, device, bf16=use_cuda and cfg.dtype == "bfloat16")
    optimizer = build_optimizer(model, cfg, fused=use_cuda)
    step, samples_seen = resume(model, optimizer, ckpt, meta, stale, log, cfg, say)
    run = start_wandb(cfg, resolved) if master else None

    val_windows = val_window_ids(cfg.eval_iters * global_batch, val_data.size)
    if val_data.size == 0:
        say(f"no val shards in {man['path']}: val loss is not computed")
    export_cfg = {k: v for k, v in asdict(model_cfg).items() if k != "backend"}

    def checkpoint():
        meta = {"step": step, "samples_seen": samples_seen, "tokens": samples_seen * T, "world_size": world,
                "model_config": export_cfg, "config": resolved}
        save_checkpoint(model, optimizer, cfg.out_dir, step, meta, cfg.keep_last, rank)
        if cfg.export_every_ckpt and step < cfg.max_iters:
            export(model, export_cfg, cfg.out_dir, man["tokenizer"], man.get("eot_id"), rank)

    end = min(cfg.max_iters, cfg.halt_iter) if cfg.halt_iter else cfg.max_iters
    pbar = tqdm(total=cfg.max_iters, initial=step, disable=not master, dynamic_ncols=True, desc="train", mininterval=1.0)
    model.train()
    t_last = time.time()
    while step < end:
        lr = get_lr(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, grad_norm = train_step(model, optimizer, train_data, samples_seen, cfg, rank, world, device)
        step += 1
        samples_seen += global_batch
        now = time.time()
        dt, t_last = now - t_last, now
        entry = {"iter": step - 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                 "tokens": samples_seen * T, "tokens_per_s": tokens_per_step / dt,
                 "tokens_per_s_per_device": tokens_per_step / dt / world,
                 "mfu": model.estimate_mfu(tokens_per_step / world, dt), "dt": dt}
        if (step % cfg.eval_interval == 0 or step == cfg.max_iters) and val_data.size > 0:
            entry["val_loss"] = evaluate(model, val_data, val_windows, cfg, rank, world, device)
        if master:
            log.append([entry])
            if run is not None:
                run.log(entry, step=step - 1)
            report(entry, step, cfg, pbar, say)
        if step % cfg.ckpt_interval == 0 or step == end:
            checkpoint()
        if "val_loss" in entry or step % cfg.ckpt_interval == 0:
            t_last = time.time()  # eval and checkpoint time is not step time
    pbar.close()

    if step >= cfg.max_iters:
        export(model, export_cfg, cfg.out_dir, man["tokenizer"], man.get("eot_id"), rank)
        say(f"done: {step} steps, {samples_seen * T:,} tokens; weights in {os.path.join(cfg.out_dir, 'export')}")
    else:
        say(f"halted after step {step} (halt_iter={cfg.halt_iter}); rerun the same command to resume")
    if run is not None:
        run.finish()
    dist.destroy_process_group()


def resume(model, optimizer, ckpt, meta, stale, log, cfg, say):
    """Load the checkpoint (if any) into the parallelised model and optimizer, cut rank 0's log
    back to it, clear half-written checkpoints -> (step, samples consumed)."""
    step, samples_seen = 0, 0
    if ckpt is not None:
        for p in stale:
            say(f"ignoring half-written checkpoint {p}")
        load_checkpoint(model, optimizer, ckpt)
        step, samples_seen = meta["step"], meta["samples_seen"]
        say(f"resumed from {ckpt}: step {step}, {samples_seen:,} samples consumed")
        if log is not None:
            drop_rows_after(log, os.path.join(cfg.out_dir, "log.jsonl"), step)
    elif cfg.init_from:
        say(f"initialised from {cfg.init_from} (fresh optimizer and schedule)")
    if log is not None:  # rank 0
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
    return step, samples_seen


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Pretrain SnowCoder (any phase). CONFIG is a Python file of assignments; "
                    "--key=value overrides any key.",
        epilog="keys (default):\n" + "\n".join(f"  --{f.name}={getattr(TrainConfig(), f.name)!r}"
                                                for f in fields(TrainConfig)),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="config file, e.g. configs/phase1.py")
    args, overrides = ap.parse_known_args(argv)
    return load_config(args.config, overrides)


def val_window_ids(n_val, size):
    """eval_iters global batches of val windows spread evenly over the val shards: the same
    windows at every evaluation and for any world size at the same global batch."""
    if size >= n_val:
        return (np.arange(n_val, dtype=np.int64) * size) // n_val
    return np.arange(n_val, dtype=np.int64) % max(1, size)


def read_meta(ckpt):
    try:
        with open(os.path.join(ckpt, "meta.json")) as f:
            return json.load(f)
    except json.JSONDecodeError:
        fail(f"checkpoint {ckpt} is corrupt (meta.json is not valid JSON); delete it to resume from the one before")


def start_wandb(cfg, resolved):
    """A wandb run (offline unless WANDB_MODE says otherwise), or None: logging never stops training."""
    if not cfg.wandb_log or os.environ.get("WANDB_MODE") == "disabled":
        return None
    try:
        import wandb
        return wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=resolved, dir=cfg.out_dir,
                          mode=os.environ.get("WANDB_MODE", "offline"), resume="allow")
    except Exception as e:
        print(f"wandb disabled: {e}")
        return None


def report(entry, step, cfg, pbar, say):
    """The progress bar every step, a printed line every log_interval steps and at evaluations."""
    pbar.update(1)
    pbar.set_postfix_str(f"loss {entry['loss']:.3f} lr {entry['lr']:.2e} gnorm {entry['grad_norm']:.2f} "
                         f"{entry['tokens_per_s_per_device'] / 1e3:.1f}k tok/s/dev mfu {100 * entry['mfu']:.1f}%")
    if (step - 1) % cfg.log_interval == 0 or "val_loss" in entry:
        val = f" val {entry['val_loss']:.4f}" if "val_loss" in entry else ""
        say(f"iter {step - 1}: loss {entry['loss']:.4f}{val} lr {entry['lr']:.3e} gnorm {entry['grad_norm']:.3f} "
            f"{entry['tokens_per_s_per_device']:,.0f} tok/s/dev mfu {100 * entry['mfu']:.2f}% ({1000 * entry['dt']:.0f} ms)")


def exit_with_message(code, msg):
    """Print a failing rank's message, then exit. Ranks often detect the same problem together:
    rank 0 speaks at once, the others only after a pause, by which time torchrun has usually
    stopped them because rank 0 exited. A rank that fails alone still prints (torchrun stops
    the others only once it has exited), so the first failure always reaches the terminal."""
    if msg is not None:
        rank = int(os.environ.get("RANK", "0"))
        if rank != 0:
            time.sleep(2.0)
            msg = f"[rank {rank}] {msg}"
        print(msg, file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a gloo FSDP process can abort in interpreter teardown after all work is done


if __name__ == "__main__":
    try:
        main()
        exit_with_message(0, None)
    except SystemExit as e:
        if isinstance(e.code, str):
            exit_with_message(1, e.code)
        exit_with_message(e.code or 0, None)
    except BaseException:
        exit_with_message(1, traceback.format_exc())
