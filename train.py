"""
Pretrain the SnowCoder transformer: one script for all three phases of the recipe.

    python train.py configs/tiny.py --data_dir=DIR        # one process (CPU, or one GPU)
    torchrun --nproc_per_node=8 train.py configs/phase1.py  # FSDP2 over 8 GPUs
    python train.py configs/phase2.py --lr=3e-4 --max_iters=100   # --key=value overrides

A config is a Python file of plain assignments to the keys of TrainConfig (below). Overrides
are --key=value, checked against the key's type; an unknown key is an error.

What happens, in order:
  - the resolved config is printed and written to out_dir/config.json
  - if out_dir holds a checkpoint (ckpt-NNNNNN/), training resumes from the newest one: model,
    optimizer, step and data position. Otherwise the model is initialised fresh, or from the
    Hugging Face export named by init_from (phases 2 and 3: weights only, a fresh optimizer and
    a fresh learning-rate schedule).
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
    """Stop with one clear line. Every rank detects the same problems, so only rank 0 talks."""
    if int(os.environ.get("RANK", "0")) == 0:
        raise SystemExit(f"train.py: {msg}")
    raise SystemExit(1)


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
    cfg = TrainConfig()
    for key, value in ns.items():
        if key.startswith("_") or isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue  # configs may import math or define helpers
        setattr(cfg, key, _typed(key, value, path))
    for arg in overrides:
        m = re.fullmatch(r"--([A-Za-z_]\w*)=(.*)", arg, re.S)
        if not m:
            fail(f"bad argument {arg!r}: overrides are --key=value")
        key, raw = m.groups()
        setattr(cfg, key, _typed(key, _parse_override(key, raw), f"--{key}"))
    problems = []
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

# -----------------------------------------------------------------------------
# data


def read_manifest(data_dir):
    """The shard manifest (README "Data formats"), with shard paths made absolute."""
    path = data_dir if data_dir.endswith(".json") else os.path.join(data_dir, "manifest.json")
    if not os.path.isfile(path):
        fail(f"data_dir: no manifest at {path} (data_dir={data_dir!r}; run prepare/ first)")
    try:
        with open(path) as f:
            man = json.load(f)
    except json.JSONDecodeError as e:
        fail(f"{path}: not valid JSON ({e})")
    if man.get("format") != "snowcoder-shards-v1" or man.get("dtype", "uint16") != "uint16":
        fail(f"{path}: format={man.get('format')!r} dtype={man.get('dtype')!r}, expected snowcoder-shards-v1/uint16")
    base = os.path.dirname(os.path.abspath(path))
    for s in man.get("shards", []):
        s["path"] = os.path.join(base, s["path"])
        if not os.path.isfile(s["path"]):
            fail(f"{path}: shard {s['path']} not found")
        size = os.path.getsize(s["path"])
        if size != 2 * int(s["tokens"]):
            fail(f"{s['path']}: {size} bytes, but the manifest says {s['tokens']} uint16 tokens")
    tok = man.get("tokenizer")
    man["tokenizer"] = os.path.join(base, tok) if tok else None
    man["path"] = path
    return man


class TokenStream:
    """One split of a manifest as an endless, seeded stream of (block_size+1)-token windows.

    Windows do not overlap (stride block_size; the extra token is the last target). A pass over
    the data holds each window of a shard floor(epochs * n_windows) times (whole copies first,
    then the leading part of the shard for a fractional epoch) and is shuffled with
    np.random.default_rng([seed, pass]); pass p + 1 reshuffles. Stream index i is therefore a
    pure function of (seed, i): resuming needs only the count of samples consumed."""

    def __init__(self, man, split, block_size, seed, shuffle=True):
        self.T, self.seed, self.shuffle = block_size, seed, shuffle
        self.shards, counts, self.n_windows = [], [], []
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
            shutil.copy(tokenizer_path, os.path.join(tmp, "tokenizer.tiktoken"))
        if os.path.exists(dest):
            shutil.rmtree(dest + ".old", ignore_errors=True)
            os.rename(dest, dest + ".old")
        os.rename(tmp, dest)
        shutil.rmtree(dest + ".old", ignore_errors=True)
    dist.barrier()

# -----------------------------------------------------------------------------
# training


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Pretrain SnowCoder (any phase). CONFIG is a Python file of assignments; "
                    "--key=value overrides any key.",
        epilog="keys (default):\n" + "\n".join(f"  --{f.name}={getattr(TrainConfig(), f.name)!r}"
                                                for f in fields(TrainConfig)),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="config file, e.g. configs/phase1.py")
    args, overrides = ap.parse_known_args(argv)
    cfg = load_config(args.config, overrides)
    man = read_manifest(cfg.data_dir)  # before any heavy lifting: bad paths fail fast
    if cfg.init_from and not os.path.isfile(os.path.join(cfg.init_from, "config.json")):
        fail(f"init_from={cfg.init_from!r}: no config.json there (expected a train.py export dir)")
    if man["tokenizer"] and not os.path.isfile(man["tokenizer"]):
        fail(f"{man['path']}: tokenizer {man['tokenizer']} not found")
    prev_tok = os.path.join(cfg.init_from, "tokenizer.tiktoken")
    if cfg.init_from and man["tokenizer"] and os.path.isfile(prev_tok):
        with open(prev_tok, "rb") as a, open(man["tokenizer"], "rb") as b:
            if a.read() != b.read():
                fail(f"init_from={cfg.init_from!r} was trained with another tokenizer than {man['tokenizer']}")

    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard, MixedPrecisionPolicy
    from tqdm import tqdm
    from model import ModelConfig, Transformer

    # -- processes and devices. Without torchrun this is a world of one (same code path).
    rank, world, local_rank = (int(os.environ.get(k, d)) for k, d in
                               (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if "RANK" in os.environ:
        dist.init_process_group(backend, device_id=device if use_cuda else None)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    master = rank == 0
    say = (lambda *a: tqdm.write(" ".join(str(x) for x in a))) if master else (lambda *a: None)

    # -- where do we start from: a checkpoint in out_dir, an export (init_from), or scratch
    os.makedirs(cfg.out_dir, exist_ok=True)
    log_path = os.path.join(cfg.out_dir, "log.jsonl")
    ckpt, stale = find_checkpoint(cfg.out_dir)
    meta = None
    if ckpt is not None:
        with open(os.path.join(ckpt, "meta.json")) as f:
            try:
                meta = json.load(f)
            except json.JSONDecodeError:
                fail(f"checkpoint {ckpt} is corrupt (meta.json is not valid JSON); delete it to resume from the one before")
        model_cfg = ModelConfig(**{**meta["model_config"], "backend": cfg.backend})
        torch.manual_seed(cfg.seed)
        model = Transformer(model_cfg)  # weights come from the checkpoint below
    else:
        leftovers = stale + [p for p in (log_path, os.path.join(cfg.out_dir, "export"))
                             if os.path.exists(p) and (not p.endswith(".jsonl") or os.path.getsize(p) > 0)]
        if leftovers:
            fail(f"out_dir {cfg.out_dir} holds an earlier run ({', '.join(os.path.basename(p) for p in leftovers)}) "
                 "but no complete checkpoint to resume from; delete it or choose another out_dir")
        if cfg.init_from:
            model = Transformer.from_pretrained(cfg.init_from, backend=cfg.backend)
            model_cfg = model.config
            if master and cfg.model_args:
                print(f"note: model_args={cfg.model_args} ignored: the architecture comes from {cfg.init_from}")
        else:
            args_ = {"vocab_size": int(man["vocab_size"]), **cfg.model_args, "backend": cfg.backend}
            try:
                model_cfg = ModelConfig.from_preset(cfg.model, **args_)
            except (ValueError, TypeError) as e:
                fail(f"model={cfg.model!r} model_args={cfg.model_args!r}: {e}")
            torch.manual_seed(cfg.seed)
            model = Transformer(model_cfg)
    if model_cfg.vocab_size < int(man["vocab_size"]):
        fail(f"model vocab_size={model_cfg.vocab_size} < data vocab_size={man['vocab_size']} ({man['path']})")
    T = model_cfg.block_size
    train_data = TokenStream(man, "train", T, cfg.seed)
    val_data = TokenStream(man, "val", T, cfg.seed, shuffle=False)
    if train_data.size == 0:
        fail(f"{man['path']}: no train shard holds block_size+1={T + 1} tokens")
    global_batch = cfg.micro_batch * cfg.grad_accum * world  # sequences per step
    tokens_per_step = global_batch * T

    resolved = {**asdict(cfg), "world_size": world, "device": str(device), "model_config": asdict(model_cfg),
                "tokens_per_step": tokens_per_step, "manifest": man["path"]}
    if master:
        print(json.dumps(resolved, indent=1, default=str))
        with open(os.path.join(cfg.out_dir, "config.json"), "w") as f:
            json.dump(resolved, f, indent=1, default=str)
        print(f"model: {model.num_params() / 1e6:.2f}M params, block {T}; {global_batch} seqs x {T} = "
              f"{tokens_per_step:,} tokens/step on {world} process(es); {train_data.size:,} train windows/pass "
              f"({cfg.max_iters * global_batch / train_data.size:.2f} passes), {val_data.size:,} val windows")

    # -- parallelize: activation checkpointing, then compile, then FSDP2 (torchtitan's order)
    model.to(device)
    for i, block in enumerate(model.layers):
        if cfg.activation_checkpointing:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
            block = checkpoint_wrapper(block, preserve_rng_state=False)
        if cfg.compile:
            block = torch.compile(block)
        model.layers[i] = block
    bf16 = use_cuda and cfg.dtype == "bfloat16"
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for block in model.layers:
        fully_shard(block, mp_policy=mp)  # each block's params all-gathered just in time, then freed
    fully_shard(model, mp_policy=mp)      # the root: embedding (tied with the head) and final norm

    decay = [p for p in model.parameters() if p.dim() >= 2]   # matrices and the embedding
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # norm gains
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.lr, betas=cfg.betas, fused=use_cuda)

    step, samples_seen = 0, 0
    if ckpt is not None:
        for p in stale:
            say(f"ignoring half-written checkpoint {p}")
        load_checkpoint(model, optimizer, ckpt)
        step, samples_seen = meta["step"], meta["samples_seen"]
        say(f"resumed from {ckpt}: step {step}, {samples_seen:,} samples consumed")
        if master and os.path.exists(log_path):  # drop log lines of steps after the checkpoint
            with open(log_path) as f:
                keep = [line for line in f if line.strip() and json.loads(line)["iter"] < step]
            with open(log_path, "w") as f:
                f.writelines(keep)
    elif cfg.init_from:
        say(f"initialised from {cfg.init_from} (fresh optimizer and schedule)")
    if master:
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)

    run = None
    if master and cfg.wandb_log and os.environ.get("WANDB_MODE") != "disabled":
        try:
            import wandb
            run = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, config=resolved, dir=cfg.out_dir,
                             mode=os.environ.get("WANDB_MODE", "offline"), resume="allow")
        except Exception as e:  # logging must never take the run down
            say(f"wandb disabled: {e}")

    # val set: eval_iters global batches of windows spread evenly over the val shards; the same
    # windows at every evaluation and for any world size at the same global batch
    n_val = cfg.eval_iters * global_batch
    val_windows = (np.arange(n_val, dtype=np.int64) * val_data.size) // n_val if val_data.size >= n_val \
        else np.arange(n_val, dtype=np.int64) % max(1, val_data.size)

    def evaluate():
        """Mean val loss over the val windows, each rank its own micro-batches of them."""
        if val_data.size == 0:
            return None
        model.eval()
        total = torch.zeros((), device=device)
        with torch.no_grad():
            for k in range(cfg.eval_iters * cfg.grad_accum):
                first = (k * world + rank) * cfg.micro_batch
                x, y = val_data.read(val_windows[first:first + cfg.micro_batch])
                total += model(x.to(device), y.to(device))[1].float()
        dist.all_reduce(total)
        model.train()
        return total.item() / (cfg.eval_iters * cfg.grad_accum * world)

    def checkpoint():
        meta = {"step": step, "samples_seen": samples_seen, "tokens": samples_seen * T, "world_size": world,
                "model_config": {k: v for k, v in asdict(model_cfg).items() if k != "backend"}, "config": resolved}
        save_checkpoint(model, optimizer, cfg.out_dir, step, meta, cfg.keep_last, rank)
        if cfg.export_every_ckpt and step < cfg.max_iters:
            export(model, meta["model_config"], cfg.out_dir, man["tokenizer"], man.get("eot_id"), rank)

    if val_data.size == 0:
        say(f"no val shards in {man['path']}: val loss is not computed")
    end = min(cfg.max_iters, cfg.halt_iter) if cfg.halt_iter else cfg.max_iters
    pbar = tqdm(total=cfg.max_iters, initial=step, disable=not master, dynamic_ncols=True, desc="train", mininterval=1.0)
    model.train()
    t_last = time.time()
    while step < end:
        lr = get_lr(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            # this rank's disjoint slice of the global batch: same samples whatever the world size
            x, y = train_data.get(samples_seen + (micro * world + rank) * cfg.micro_batch, cfg.micro_batch)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # (B, T) each
            # reduce-scatter gradients only on the last micro-step; before that FSDP2 accumulates them
            # unsharded, in the reduce dtype (fp32): one reduction per step at the cost of full-size grads
            model.set_requires_gradient_sync(micro == cfg.grad_accum - 1)
            _, loss = model(x, y)
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach().float()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dist.all_reduce(loss_sum)  # SUM (gloo has no AVG); every micro-batch has the same token count
        loss_val = loss_sum.item() / (cfg.grad_accum * world)
        step += 1
        samples_seen += global_batch
        now = time.time()
        dt, t_last = now - t_last, now
        entry = {"iter": step - 1, "loss": loss_val, "lr": lr, "grad_norm": grad_norm.item(),
                 "tokens": samples_seen * T, "tokens_per_s": tokens_per_step / dt,
                 "tokens_per_s_per_device": tokens_per_step / dt / world,
                 "mfu": model.estimate_mfu(tokens_per_step / world, dt), "dt": dt}
        if step % cfg.eval_interval == 0 or step == cfg.max_iters:
            entry["val_loss"] = evaluate()
        if master:
            with open(log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")
            if run is not None:
                run.log(entry, step=step - 1)
            pbar.update(1)
            pbar.set_postfix_str(f"loss {loss_val:.3f} lr {lr:.2e} gnorm {entry['grad_norm']:.2f} "
                                 f"{entry['tokens_per_s_per_device'] / 1e3:.1f}k tok/s/dev mfu {100 * entry['mfu']:.1f}%")
            if (step - 1) % cfg.log_interval == 0 or "val_loss" in entry:
                val = f" val {entry['val_loss']:.4f}" if entry.get("val_loss") is not None else ""
                say(f"iter {step - 1}: loss {loss_val:.4f}{val} lr {lr:.3e} gnorm {entry['grad_norm']:.3f} "
                    f"{entry['tokens_per_s_per_device']:,.0f} tok/s/dev mfu {100 * entry['mfu']:.2f}% ({1000 * dt:.0f} ms)")
        if step % cfg.ckpt_interval == 0 or step == end:
            checkpoint()
        if "val_loss" in entry or step % cfg.ckpt_interval == 0:
            t_last = time.time()  # eval and checkpoint time is not step time
    pbar.close()

    if step >= cfg.max_iters:
        export(model, {k: v for k, v in asdict(model_cfg).items() if k != "backend"}, cfg.out_dir,
               man["tokenizer"], man.get("eot_id"), rank)
        say(f"done: {step} steps, {samples_seen * T:,} tokens; weights in {os.path.join(cfg.out_dir, 'export')}")
    else:
        say(f"halted after step {step} (halt_iter={cfg.halt_iter}); rerun the same command to resume")
    if run is not None:
        run.finish()
    dist.destroy_process_group()


if __name__ == "__main__":
    code = 0
    try:
        main()
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            code = 1
        else:
            code = e.code or 0
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a gloo FSDP process can abort in interpreter teardown after all work is done
