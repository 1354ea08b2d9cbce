"""
Sample from a trained SnowCoder checkpoint, or serve it over an OpenAI-compatible HTTP API.

The checkpoint is a Hugging Face Llama directory written by Transformer.save_pretrained
(config.json, model.safetensors) plus the tokenizer.tiktoken it was trained with; train.py
exports one at out_dir/export/.

    python sample.py --ckpt R/p2/export --prompt "def fibonacci(n):" --num-samples 2
    python sample.py --ckpt R/p2/export --prompt FILE:prompt.py --temperature 0.8 --top-p 0.95
    python sample.py --ckpt R/p2/export --serve --port 8000        # --port 0: pick a free one

This file owns THE loader of an exported checkpoint for inference (load_checkpoint: weights,
tokenizer and the token rules below); eval/generate.py and the server both use it.

Token rules (one place, used by every inference path):
  - Prompt text is encoded as ORDINARY text: "<|endoftext|>" written in a prompt is seven
    characters, not the special token. That is how prepare/pack.py tokenized every training
    document (a C file mentioning "<|endoftext|>" is text), so a prompt cut from a real file means
    what it meant in training. Special tokens go in as token ids (a token-id prompt).
  - An empty prompt is [<|endoftext|>]: in the training stream every document follows one.
  - Generation ends at ANY special token (<|endoftext|>, <repo_name>, <file_sep>, <|pad|>), which
    is not part of the output. In the training layouts a file's code is always followed by
    <file_sep> (the next file of the repo) or <|endoftext|> (the end of the document), so either
    means "this file is finished"; <repo_name> only opens a document and <|pad|> is never a target.
    (Before, eval/generate.py and the server stopped at <|endoftext|> only and eval cut at the
    literal string, so a <file_sep> leaked "<file_sep>path..." markup into completions.)

The server speaks the OpenAI API the way vLLM's OpenAI-compatible server does, with the standard
library only (http.server):
    GET  /v1/models, /v1/models/{id}, /health
    POST /v1/completions        prompt: str | [str] | [int] | [[int]]; max_tokens (0 with echo),
                                temperature, top_p, n, stop, seed, stream (+ stream_options.include_usage),
                                logprobs: k (tokens, token_logprobs, top_logprobs, text_offset), echo
    POST /v1/chat/completions   messages [{role: system|developer|user|assistant, content}], logprobs: bool,
                                top_logprobs: k, and the same sampling knobs
Streaming is server-sent events: `data: {chunk}` lines and a final `data: [DONE]`. Logprobs are the
model's raw log-softmax (before temperature / top_p, as vLLM reports them); top_logprobs holds the
top k and the chosen token. With echo the prompt's own logprobs come first, the first prompt
token's being null (nothing predicts it): `max_tokens=0, echo=true, logprobs=k` is a
loglikelihood query, as lm-eval-harness's local-completions sends it. Seeds: choice j of a
request with `seed` s samples with its own generator seeded s + j. Chat messages are rendered to
one prompt by CHAT_TEMPLATE (our models are base models; the template only has to be consistent).
Errors are JSON {"error": {"message", "type", "param", "code"}}: 400 (bad JSON, wrong types, NaN,
a prompt longer than the context), 404 (unknown path or model), 411/413 (body length), 503
(shutting down). A prompt that fits but leaves less room than max_tokens gets max_tokens cut to the
room left (finish_reason "length"), which suits small-context CPU models.

Continuous batching: request threads parse and validate, then hand one row per choice to ONE engine
thread that owns the model and a fixed pool of KV-cache slots. Every engine step admits waiting rows
into free slots (their prompt is prefilled in the same step), then decodes one token for every
running row at once, each with its own temperature, top_p and generator; a finished or cancelled
row (the client went away) frees its slot at once for the next one. `--batching static` is the
baseline in bench_server.py: a new batch is admitted only when the whole previous batch has ended,
and a row that ends early keeps its slot and is computed until then, as in a padded batch.

KV layout: per layer, k and v buffers (slots, n_kv_head, capacity, head_dim). Keys are cached after
RoPE, so attention does not care in which column a key sits, only whether the row's mask selects
it. All running rows write their step's key at one shared column (the clock), which is what
model.Block's cache interface (one write offset for the batch) supports; a new row's prompt is
written just left of the clock. When the clock reaches the capacity, every row's keys are packed to
the right of column 0 again (compact(), also when the clock has run far past the longest running
row, since every row attends over all columns left of it), so capacity = context + a margin bounds
the memory.
Memory: the weights, plus the KV cache allocated once at start: 2 x n_layer x slots x n_kv_head x
capacity x head_dim values (--max-batch sets the slots); a request holds only its own rows.
"""
import argparse
import codecs
import json
import math
import queue
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# One visible chat template: how /v1/chat/completions turns messages into a prompt for a base model.
# A role header per message, and an open assistant header at the end for the model to continue.
CHAT_TEMPLATE = {
    "system": "### System\n{content}\n\n",
    "developer": "### System\n{content}\n\n",  # OpenAI's newer name for the system role
    "user": "### User\n{content}\n\n",
    "assistant": "### Assistant\n{content}\n\n",
    "generation_prompt": "### Assistant\n",
}
# A base model happily writes the next user turn itself; chat requests always stop there.
CHAT_STOP = ["\n### User"]
MAX_LOGPROBS = 20  # top-k logprobs per token, vLLM's default max_logprobs


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def render_chat(messages: list[dict]) -> str:
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise RequestError(400, f"messages[{i}] needs a role of system, developer, user or assistant",
                               "messages")
        content = m.get("content")
        if isinstance(content, list):  # the OpenAI "content parts" form: keep the text parts
            if not all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in content):
                raise RequestError(400, f"messages[{i}].content parts must be objects with a text", "messages")
            content = "".join(p.get("text", "") for p in content)
        if not isinstance(content, str):
            raise RequestError(400, f"messages[{i}].content must be a string", "messages")
        parts.append(CHAT_TEMPLATE[m["role"]].format(content=content))
    return "".join(parts) + CHAT_TEMPLATE["generation_prompt"]


# -----------------------------------------------------------------------------
# the one checkpoint loader

@dataclass
class Checkpoint:
    model: object          # model.Transformer, eval mode
    enc: object            # tiktoken.Encoding with our special tokens
    name: str              # the model id the server answers to
    block_size: int        # positions served (prompt + completion)
    eot_id: int
    stop_ids: frozenset    # every special token: see "Token rules" in the module docstring

    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text) or [self.eot_id]

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)

    def generate(self, prompts: list[list[int]], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 stop: list[str] | None = None, seed: int | None = None) -> list[list[int]]:
        """New token ids per prompt (stop tokens excluded; a stop string's tokens kept, the caller
        cuts the text), through the same engine as the server, in this thread."""
        if not prompts:
            return []
        rows = []
        for i, p in enumerate(prompts):
            if not p or len(p) >= self.block_size:
                raise ValueError(f"generate: prompt {i} has {len(p)} tokens; need 1..{self.block_size - 1}")
            rows.append(Row(prompt=list(p), max_tokens=min(max_tokens, self.block_size - len(p)),
                            temperature=temperature, top_p=top_p, stop=list(stop or []),
                            seed=None if seed is None else seed + i))
        engine = Engine(self, slots=min(len(rows), 32), max_len=max(len(r.prompt) + r.max_tokens for r in rows))
        engine.submit(rows)
        while any(r.finish is None for r in rows):
            engine.step()
        failed = [r for r in rows if r.finish == "error"]
        if failed:
            raise RuntimeError(f"generate: {len(failed)} of {len(rows)} rows failed: {failed[0].error}")
        return [r.out for r in rows]


def load_checkpoint(ckpt, device: str | None = None, backend: str | None = None, dtype=None,
                    context: int | None = None, name: str | None = None) -> Checkpoint:
    """An exported checkpoint dir (HF Llama layout + tokenizer.tiktoken), ready for inference.
    dtype: default bfloat16 on CUDA, float32 on CPU. context: serve this many positions instead of
    the trained block_size (RoPE has no learned position table, so a longer context runs; quality
    drops past the trained length, but a model trained on short windows can still take a whole
    synthesis prompt)."""
    import torch
    from formats import TOKENIZER_FILE, load_tokenizer
    from model import Transformer
    ckpt = Path(ckpt)
    if not (ckpt / "config.json").is_file():
        raise SystemExit(f"{ckpt}: no config.json (expected a save_pretrained export directory)")
    if not (ckpt / TOKENIZER_FILE).is_file():
        raise SystemExit(f"{ckpt / TOKENIZER_FILE}: not found (the export must carry its tokenizer)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    enc = load_tokenizer(ckpt / TOKENIZER_FILE)
    model = Transformer.from_pretrained(str(ckpt), backend=backend, dtype=dtype, device=device).eval()
    if enc.n_vocab > model.config.vocab_size:
        raise SystemExit(f"{ckpt}: the tokenizer has {enc.n_vocab} ids but the model only {model.config.vocab_size}")
    if context:
        model.config.block_size = context
    if name is None:  # R/p2/export -> "p2"; a plain dir -> its own name
        r = ckpt.resolve()
        name = r.parent.name if r.name == "export" else r.name
    stop_ids = frozenset(enc.encode_single_token(s) for s in enc.special_tokens_set)
    return Checkpoint(model=model, enc=enc, name=name, block_size=model.config.block_size,
                      eot_id=enc.eot_token, stop_ids=stop_ids)


# -----------------------------------------------------------------------------
# the engine: continuous batching over a pool of KV-cache slots

@dataclass
class Row:
    """One sequence being generated: one choice of one request."""
    prompt: list[int]
    max_tokens: int               # new tokens at most (0: prefill only, for prompt logprobs)
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: int | None = None   # top-k logprobs per generated token (None: none)
    prompt_logprobs: int | None = None  # the same for the prompt (echo)
    events: queue.Queue | None = None   # where the engine reports progress (the request thread reads)
    stream: bool = False          # also report text deltas as they are generated
    ignore_eos: bool = False      # vLLM's extra: special tokens do not end the row (benchmarks)
    index: int = 0                # the choice index in its request
    # engine state
    out: list[int] = field(default_factory=list)
    out_logprobs: list = field(default_factory=list)     # per new token: (logprob, {id: logprob})
    prompt_lps: list = field(default_factory=list)       # per prompt token: None or (logprob, {id: logprob})
    text: str = ""                # the decoded completion (cut at a stop string when one is found)
    sent: int = 0                 # chars of text already reported
    sent_lps: int = 0             # entries of out_logprobs already reported
    finish: str | None = None     # "stop" | "length" | "cancelled" | "error"
    error: str | None = None      # what went wrong, for finish == "error"
    cancelled: bool = False       # set by the request thread; the engine frees the slot
    slot: int = -1
    pos: int = 0                  # tokens in the cache (the RoPE position of the next one)
    last: int = -1                # the sampled token not yet fed to the model
    gen: object = None            # torch.Generator for a seeded sampling row
    utf8: object = None           # incremental UTF-8 decoder: a token may end mid-character


class Engine:
    """Owns the model and the KV cache; step() is one iteration of the batching loop. Call it from
    one thread only (serve() runs it in the engine thread; Checkpoint.generate in the caller's)."""

    def __init__(self, ck: Checkpoint, slots: int = 8, max_len: int | None = None, static: bool = False):
        import torch
        self.ck, self.static = ck, static
        m = ck.model
        cfg = m.config
        self.device, self.dtype = m.embed_tokens.weight.device, m.embed_tokens.weight.dtype
        self.max_len = min(max_len or ck.block_size, ck.block_size)
        # room left of column max_len before a compaction: a quarter of the context
        self.cap = self.max_len + max(16, self.max_len // 4)
        self.slack = max(16, self.max_len // 8)  # compact when the clock is this far past the longest row
        self.S = slots
        self.caches = [(torch.zeros(slots, cfg.n_kv_head, self.cap, cfg.head_dim, device=self.device, dtype=self.dtype),
                        torch.zeros(slots, cfg.n_kv_head, self.cap, cfg.head_dim, device=self.device, dtype=self.dtype))
                       for _ in m.layers]
        self.valid = torch.zeros(slots, self.cap, dtype=torch.bool, device=self.device)  # which keys a row sees
        self.clock = 0
        self.rows: list[Row | None] = [None] * slots
        self.waiting: deque[Row] = deque()
        self.lock = threading.Condition()
        self.gen = torch.Generator(device=self.device)
        self.gen.seed()
        self.stats = {"requests": 0, "steps": 0, "prefills": 0, "tokens": 0, "compactions": 0, "cancelled": 0}

    # -- the request side (any thread)
    def submit(self, rows: list[Row]):
        import torch
        for r in rows:
            if r.seed is not None and r.temperature > 0:
                r.gen = torch.Generator(device=self.device)
                r.gen.manual_seed(r.seed)
            r.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with self.lock:
            self.waiting.extend(rows)
            self.lock.notify()

    def busy(self) -> bool:
        return bool(self.waiting) or any(r is not None for r in self.rows)

    def fail_all(self, message: str):
        """Finish every row (server shutdown): waiting ones and running ones."""
        with self.lock:
            rows = list(self.waiting) + [r for r in self.rows if r is not None]
            self.waiting.clear()
        for r in rows:
            self._finish(r, "error", message)
        self.rows = [None] * self.S

    # -- the engine side (one thread)
    def step(self):
        """Admit waiting rows into free slots (prefilling them), then decode one token for all."""
        ended = [s for s, r in enumerate(self.rows) if r is not None and (r.cancelled or r.finish is not None)]
        if not self.static or len(ended) == sum(r is not None for r in self.rows):
            for s in ended:  # static batching frees its slots only once the whole batch has ended
                if self.rows[s].finish is None:
                    self._finish(self.rows[s], "cancelled")
                self._release(s)
        running = [r for r in self.rows if r is not None]
        admit = []
        with self.lock:
            free = [s for s, r in enumerate(self.rows) if r is None]
            if not (self.static and running):  # static batching: a new batch only when the last one ended
                while self.waiting and free:
                    r = self.waiting.popleft()
                    if r.cancelled:
                        self._finish(r, "cancelled")
                        continue
                    r.slot = free.pop(0)
                    self.rows[r.slot] = r
                    admit.append(r)
        for r in admit:
            try:
                self._prefill(r)
            except Exception as e:  # one bad row fails its request, never the engine
                self._report_crash(e, [r])
        if any(r is not None for r in self.rows):
            try:
                self._decode()
            except Exception as e:
                self._report_crash(e, [r for r in self.rows if r is not None])

    def _report_crash(self, e, rows):
        print(f"sample.py: engine step failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        for r in rows:
            if r.slot >= 0 and self.rows[r.slot] is r:
                self._release(r.slot)
            self._finish(r, "error", f"generation failed: {type(e).__name__}: {e}")

    def _free(self, s, reason):
        """A row has ended: report it, and give its slot to the next row. Static batching keeps the
        slot (and keeps computing the row, as a padded batch does) until the whole batch has ended."""
        r = self.rows[s]
        if reason is not None and r.finish is None:
            self._finish(r, reason)
        if not self.static:
            self._release(s)

    def _release(self, s):
        self.rows[s] = None
        self.valid[s] = False

    def _finish(self, r: Row, reason: str, message: str | None = None):
        if r.finish is not None:
            return
        if reason in ("stop", "length"):
            if r.utf8 is not None:  # a dangling partial character (none after a stop-string cut)
                r.text += r.utf8.decode(b"", final=True)
            if r.stream:
                self._report(r, final=True)
        r.finish, r.error = reason, message
        if reason == "cancelled":
            self.stats["cancelled"] += 1
        if r.events is not None:
            r.events.put(("error", r.index, message) if reason == "error" else ("finish", r.index, reason))

    def _forward(self, tokens, positions, slot_lo, slot_hi, start, mask):
        """Run the blocks on tokens (B, T) for slots [slot_lo, slot_hi), writing their keys at
        columns [start, start+T) of those slots. Returns the final hidden states (B, T, d)."""
        from model import rope_cos_sin
        m, cfg = self.ck.model, self.ck.model.config
        cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta)
        x = m.embed_tokens(tokens)
        for block, (k_buf, v_buf) in zip(m.layers, self.caches):
            # basic slicing keeps views: the block's cache writes land in the shared buffers
            x = block(x, cos, sin, cache=(k_buf[slot_lo:slot_hi], v_buf[slot_lo:slot_hi], start), attn_mask=mask)
        return m.norm(x)

    def _prefill(self, r: Row):
        import torch
        T = len(r.prompt)
        if self.clock < T:
            self.clock = T  # the other rows' keys stay where they are; the gap is masked out
        if self.clock > self.cap:
            self.compact()
        s, start = r.slot, self.clock - T
        col = torch.arange(self.clock, device=self.device)
        qpos = torch.arange(T, device=self.device)
        mask = (col[None, :] >= start) & (col[None, :] <= start + qpos[:, None])     # (T, clock) causal
        tokens = torch.tensor([r.prompt], dtype=torch.long, device=self.device)
        with torch.no_grad():
            h = self._forward(tokens, qpos, s, s + 1, start, mask[None, None])
            if r.prompt_logprobs is not None:
                lp = torch.log_softmax(self.ck.model.lm_head(h[0]).float(), dim=-1)     # (T, vocab)
                r.prompt_lps = [None] + self._pick(lp[:-1], torch.tensor(r.prompt[1:], device=self.device),
                                                   r.prompt_logprobs)
                logits = lp[-1:]
            else:
                logits = self.ck.model.lm_head(h[0, -1:]).float()                        # (1, vocab)
        self.valid[s, start:self.clock] = True
        r.pos = T
        self.stats["prefills"] += 1
        if r.max_tokens == 0:
            self._free(s, "length")
            return
        self._sample([r], logits)

    def _decode(self):
        import torch
        live = [s for s, r in enumerate(self.rows) if r is not None]
        # every row attends over all columns left of the clock: when the longest row has ended the
        # clock runs far ahead of what any row needs, and packing the keys costs about one step
        if self.clock >= self.cap or self.clock > max(self.rows[s].pos for s in live) + self.slack:
            self.compact()
        lo, hi = live[0], live[-1] + 1
        rows = self.rows[lo:hi]
        c = self.clock
        tokens = torch.tensor([[max(r.last, 0) if r is not None else 0] for r in rows], dtype=torch.long, device=self.device)
        positions = torch.tensor([[r.pos if r is not None else 0] for r in rows], device=self.device)
        mask = self.valid[lo:hi, :c + 1].clone()
        mask[:, c] = True  # each row sees its own new key (an empty slot in the range sees only that)
        with torch.no_grad():
            h = self._forward(tokens, positions, lo, hi, c, mask[:, None, None, :])
            logits = self.ck.model.lm_head(h[:, -1]).float()                               # (B, vocab)
        self.clock = c + 1
        keep = [i for i, r in enumerate(rows) if r is not None and r.finish is None and not r.cancelled]
        if keep:
            self.valid[torch.tensor(keep, device=self.device) + lo, c] = True
        for i in keep:
            rows[i].pos += 1
        self.stats["steps"] += 1
        self._sample([rows[i] for i in keep], logits[keep])

    def compact(self):
        """Pack every running row's keys into columns [C - n_row, C), C = the longest row, and
        move the clock back to C. Runs when the clock reaches the capacity or runs too far ahead."""
        live = [s for s, r in enumerate(self.rows) if r is not None and self.valid[s].any()]
        n = {s: int(self.valid[s].sum()) for s in live}
        C = max(n.values(), default=0)
        for s in live:
            cols = self.valid[s].nonzero().squeeze(1)
            for k_buf, v_buf in self.caches:
                k_buf[s, :, C - n[s]:C] = k_buf[s, :, cols]  # advanced indexing copies first: overlap is safe
                v_buf[s, :, C - n[s]:C] = v_buf[s, :, cols]
            self.valid[s] = False
            self.valid[s, C - n[s]:C] = True
        self.clock = C
        self.stats["compactions"] += 1

    def _pick(self, lp, chosen, k):
        """lp (N, vocab) log-probs, chosen (N,) ids -> per row (logprob of chosen, {id: lp} of top-k + chosen)."""
        import torch
        mine = lp.gather(1, chosen[:, None]).squeeze(1).tolist()
        ids = chosen.tolist()
        if k:
            tv, ti = torch.topk(lp, k, dim=-1)
            tv, ti = tv.tolist(), ti.tolist()
        out = []
        for i in range(len(ids)):
            top = dict(zip(ti[i], tv[i])) if k else {}
            top[ids[i]] = mine[i]
            out.append((mine[i], top))
        return out

    def _sample(self, rows: list[Row], logits):
        """logits (B, vocab) for rows -> one new token each, with each row's own settings."""
        import torch
        temps = torch.tensor([r.temperature for r in rows], device=logits.device)
        nxt = logits.argmax(-1)
        hot = temps > 0
        if hot.any():
            h = hot.nonzero().squeeze(1)
            probs = torch.softmax(logits[h] / temps[h, None], dim=-1)
            top_p = torch.tensor([rows[i].top_p for i in h.tolist()], device=logits.device)
            if (top_p < 1).any():
                sp, si = probs.sort(-1, descending=True)
                # keep the smallest prefix whose mass reaches top_p (the top token always stays)
                sp = sp.masked_fill(sp.cumsum(-1) - sp >= top_p[:, None], 0.0)
                probs = torch.zeros_like(probs).scatter_(-1, si, sp)
            shared = [j for j, i in enumerate(h.tolist()) if rows[i].gen is None]
            if shared:  # unseeded rows draw from the engine's generator together
                nxt[h[shared]] = torch.multinomial(probs[shared], 1, generator=self.gen).squeeze(1)
            for j, i in enumerate(h.tolist()):
                if rows[i].gen is not None:  # a seeded row draws from its own: neighbours do not matter
                    nxt[i] = torch.multinomial(probs[j], 1, generator=rows[i].gen)[0]
        k = max((r.logprobs for r in rows if r.logprobs is not None), default=None)
        picked = self._pick(torch.log_softmax(logits, -1), nxt, k) if k is not None else None
        for i, (r, tok) in enumerate(zip(rows, nxt.tolist())):
            self._advance(r, tok, picked[i] if picked is not None and r.logprobs is not None else None)

    def _advance(self, r: Row, tok: int, lp):
        if r.cancelled:
            self._free(r.slot, "cancelled")
            return
        if tok in self.ck.stop_ids and not r.ignore_eos:
            self._free(r.slot, "stop")
            return
        r.out.append(tok)
        r.last = tok
        self.stats["tokens"] += 1
        if lp is not None:
            if r.logprobs < len(lp[1]) - 1:  # the batch's k may exceed this row's: trim to its own top-k
                top = dict(sorted(lp[1].items(), key=lambda kv: -kv[1])[:r.logprobs])
                top[tok] = lp[0]
                lp = (lp[0], top)
            r.out_logprobs.append(lp)
        before = len(r.text)
        r.text += r.utf8.decode(self.ck.enc.decode_single_token_bytes(tok))
        # the incremental stop check: only the new text and the len(stop)-1 chars before it
        cut = min((i for i in (r.text.find(s, max(0, before - len(s) + 1)) for s in r.stop) if i >= 0), default=-1)
        if cut >= 0:
            r.text, r.utf8 = r.text[:cut], None
            self._free(r.slot, "stop")
        elif len(r.out) >= r.max_tokens:
            self._free(r.slot, "length")
        elif r.stream:
            self._report(r)

    def _report(self, r: Row, final: bool = False):
        """Stream the text that can no longer turn out to be part of a stop string, and new logprobs."""
        hold = 0 if final else max((len(s) - 1 for s in r.stop), default=0)
        upto = max(r.sent, len(r.text) - hold)
        if upto > r.sent or len(r.out_logprobs) > r.sent_lps:
            r.events.put(("delta", r.index, r.text[r.sent:upto], r.out_logprobs[r.sent_lps:]))
            r.sent, r.sent_lps = upto, len(r.out_logprobs)


def run_engine(engine: Engine, stopping: threading.Event):
    """The engine thread: step while there is work, sleep on the condition otherwise."""
    while not stopping.is_set():
        with engine.lock:
            if not engine.busy():
                engine.lock.wait(0.05)
                continue
        engine.step()


# -----------------------------------------------------------------------------
# requests: validation, rows, responses

@dataclass
class ServeConfig:
    max_batch: int = 16           # KV-cache slots: rows decoded together
    static: bool = False          # static batching (the benchmark's baseline)
    max_body_bytes: int = 1 << 20
    max_prompts: int = 64         # prompts x n in one request
    max_stop: int = 8             # OpenAI allows 4; be a little lenient


def _number(body: dict, key: str, default, kind, lo=None, hi=None):
    v = body.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or (kind is int and not float(v).is_integer()):
        raise RequestError(400, f"'{key}' must be {'an integer' if kind is int else 'a finite number'}, got {v!r}", key)
    v = kind(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise RequestError(400, f"'{key}' must be in [{lo}, {hi}], got {v}", key)
    return v


def _flag(body: dict, key: str) -> bool:
    v = body.get(key)
    if v is not None and not isinstance(v, bool):
        raise RequestError(400, f"'{key}' must be a boolean, got {v!r}", key)
    return bool(v)


def _token_ids(x) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)


@dataclass
class Request:
    chat: bool
    prompts: list[list[int]]
    texts: list[str]              # the prompts as text (echo)
    rows: list[Row]
    stream: bool
    include_usage: bool
    echo: bool
    logprobs: int | None
    as_ids: bool                  # vLLM's return_tokens_as_token_ids: tokens as "token_id:N"


def parse_request(ck: Checkpoint, cfg: ServeConfig, body, chat: bool) -> Request:
    """Validate one request body into rows for the engine; every problem is a RequestError (4xx)."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model", ck.name)
    if not isinstance(model, str):
        raise RequestError(400, "'model' must be a string", "model")
    if model != ck.name:
        raise RequestError(404, f"the model '{model}' does not exist; this server has '{ck.name}'",
                           "model", "model_not_found")
    for key in ("presence_penalty", "frequency_penalty"):  # not implemented: refuse rather than ignore
        if body.get(key) not in (None, 0, 0.0):
            raise RequestError(400, f"'{key}' is not supported by this server", key)
    for key in ("logit_bias", "suffix", "tools", "functions"):
        if body.get(key):
            raise RequestError(400, f"'{key}' is not supported by this server", key)
    if body.get("best_of") not in (None, body.get("n", 1)):
        raise RequestError(400, "'best_of' other than n is not supported by this server", "best_of")
    stream = _flag(body, "stream")
    opts = body.get("stream_options")
    if opts is not None and (not isinstance(opts, dict) or not stream):
        raise RequestError(400, "'stream_options' must be an object, and only with stream=true", "stream_options")
    include_usage = _flag(opts or {}, "include_usage")
    as_ids = _flag(body, "return_tokens_as_token_ids")
    ignore_eos = _flag(body, "ignore_eos")
    if chat:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise RequestError(400, "'messages' must be a non-empty list", "messages")
        if _flag(body, "echo"):
            raise RequestError(400, "'echo' is not supported for chat completions", "echo")
        texts = [render_chat(msgs)]
        prompts = [ck.encode(texts[0])]
        echo = False
        logprobs = _number(body, "top_logprobs", 0, int, 0, MAX_LOGPROBS) if _flag(body, "logprobs") else None
        if body.get("top_logprobs") is not None and logprobs is None:
            raise RequestError(400, "'top_logprobs' needs logprobs=true", "top_logprobs")
    else:
        p = body.get("prompt")
        if isinstance(p, str):
            texts, prompts = [p], [ck.encode(p)]
        elif isinstance(p, list) and p and all(isinstance(x, str) for x in p):
            texts, prompts = list(p), [ck.encode(x) for x in p]
        elif _token_ids(p):
            prompts = [list(p)]
        elif isinstance(p, list) and p and all(_token_ids(x) for x in p):
            prompts = [list(x) for x in p]
        else:
            raise RequestError(400, "'prompt' must be a string, a list of strings, a list of token ids, "
                               "or a list of lists of token ids (none empty)", "prompt")
        for k, ids in enumerate(prompts):
            if any(t < 0 or t >= ck.vocab_size for t in ids):
                raise RequestError(400, f"prompt {k}: token ids must be in [0, {ck.vocab_size})", "prompt")
        if not isinstance(p, str) and not all(isinstance(x, str) for x in p):
            texts = [ck.decode(ids) for ids in prompts]
        echo = _flag(body, "echo")
        logprobs = None if body.get("logprobs") is None else _number(body, "logprobs", 0, int, 0, MAX_LOGPROBS)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    if chat:  # vLLM's chat default: whatever room the context leaves
        max_tokens = _number(body, key, max(1, ck.block_size - len(prompts[0])), int, 1, None)
    else:     # the OpenAI default for completions; 0 only as a loglikelihood query (echo)
        max_tokens = _number(body, key, 16, int, 0 if echo else 1, None)
    temperature = _number(body, "temperature", 1.0, float, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, float, 0.0, 1.0)
    if top_p == 0.0:
        top_p = 1e-9  # "almost greedy": keep only the top token
    n = _number(body, "n", 1, int, 1, cfg.max_prompts)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(400, "'seed' must be an integer", "seed")
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > cfg.max_stop:
        raise RequestError(400, f"'stop' must be a non-empty string or a list of at most {cfg.max_stop}", "stop")
    if chat:
        stop = stop + [s for s in CHAT_STOP if s not in stop]
    if len(prompts) * n > cfg.max_prompts:
        raise RequestError(400, f"{len(prompts)} prompts x n={n} is more than {cfg.max_prompts} completions", "n")
    for k, ids in enumerate(prompts):
        if len(ids) > ck.block_size or (len(ids) == ck.block_size and max_tokens > 0):
            raise RequestError(400, f"This model's maximum context length is {ck.block_size} tokens; prompt {k} "
                               f"has {len(ids)} tokens, leaving no room to generate.", "prompt",
                               "context_length_exceeded")
    events = queue.Queue()
    rows = [Row(prompt=ids, max_tokens=min(max_tokens, ck.block_size - len(ids)), temperature=temperature,
                top_p=top_p, stop=stop, seed=None if seed is None else seed + j, logprobs=logprobs,
                prompt_logprobs=logprobs if echo and logprobs is not None else None, events=events,
                stream=stream, ignore_eos=ignore_eos, index=k * n + j)
            for k, ids in enumerate(prompts) for j in range(n)]
    return Request(chat=chat, prompts=prompts, texts=texts, rows=rows, stream=stream,
                   include_usage=include_usage, echo=echo, logprobs=logprobs, as_ids=as_ids)


def token_str(ck: Checkpoint, tok: int, as_ids: bool) -> str:
    if as_ids:
        return f"token_id:{tok}"
    return ck.enc.decode_single_token_bytes(tok).decode("utf-8", errors="replace")


def completion_logprobs(ck, toks: list[int], lps: list, as_ids: bool, offset: int) -> dict:
    """The completions format. text_offset: where each token's text starts, counting the token
    strings' lengths from `offset` (as vLLM does; a token that ends mid-character is one U+FFFD)."""
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for tok, lp in zip(toks, lps):
        s = token_str(ck, tok, as_ids)
        out["tokens"].append(s)
        out["token_logprobs"].append(None if lp is None else lp[0])
        out["top_logprobs"].append(None if lp is None else
                                   {token_str(ck, t, as_ids): v for t, v in sorted(lp[1].items(), key=lambda kv: -kv[1])})
        out["text_offset"].append(offset)
        offset += len(s)
    return out


def chat_logprobs(ck, toks: list[int], lps: list, k: int, as_ids: bool) -> dict:
    def entry(t, v):
        return {"token": token_str(ck, t, as_ids), "logprob": v, "bytes": list(ck.enc.decode_single_token_bytes(t))}
    return {"content": [{**entry(t, lp[0]),
                         "top_logprobs": [entry(a, v) for a, v in sorted(lp[1].items(), key=lambda kv: -kv[1])[:k]]}
                        for t, lp in zip(toks, lps)]}


def prompt_part(ck, req: Request, r: Row) -> tuple[str, dict | None]:
    """echo: the prompt's text and, with logprobs, its completions-format logprobs."""
    k = r.index // (len(req.rows) // len(req.prompts))
    text = req.texts[k]
    if req.logprobs is None:
        return text, None
    return text, completion_logprobs(ck, req.prompts[k], r.prompt_lps, req.as_ids, 0)


def choice(ck, req: Request, r: Row) -> dict:
    """One finished row as a (non-streaming) response choice."""
    toks, lps = r.out, r.out_logprobs
    if req.chat:
        return {"index": r.index, "message": {"role": "assistant", "content": r.text},
                "logprobs": None if req.logprobs is None else chat_logprobs(ck, toks, lps, req.logprobs, req.as_ids),
                "finish_reason": r.finish}
    text, logprobs = r.text, None
    if req.echo:
        ptext, plp = prompt_part(ck, req, r)
        text = ptext + text
        if plp is not None:
            more = completion_logprobs(ck, toks, lps, req.as_ids, len(ptext))
            logprobs = {key: plp[key] + more[key] for key in plp}
    elif req.logprobs is not None:
        logprobs = completion_logprobs(ck, toks, lps, req.as_ids, 0)
    return {"index": r.index, "text": text, "logprobs": logprobs, "finish_reason": r.finish}


def usage(req: Request) -> dict:
    p = sum(len(x) for x in req.prompts)
    c = sum(len(r.out) for r in req.rows)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


# -----------------------------------------------------------------------------
# HTTP

def client_gone(conn: socket.socket) -> bool:
    """True when the peer closed the connection (readable, and a peek reads nothing)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def make_server(ck: Checkpoint, host: str = "127.0.0.1", port: int = 0, cfg: ServeConfig | None = None):
    """The HTTP server and its engine thread (started). httpd.engine, httpd.stop_engine()."""
    cfg = cfg or ServeConfig()
    engine = Engine(ck, slots=cfg.max_batch, static=cfg.static)
    stopping = threading.Event()
    worker = threading.Thread(target=run_engine, args=(engine, stopping), name="engine", daemon=True)
    worker.start()
    created = int(time.time())
    card = {"id": ck.name, "object": "model", "created": created, "owned_by": "snowcoder",
            "max_model_len": ck.block_size}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection per thread
        timeout = 300                  # an idle keep-alive connection frees its thread after this

        def setup(self):
            super().setup()
            # headers and body go out in separate writes: without NODELAY, Nagle holds the second
            # one for the client's delayed ACK (tens of ms per request on a keep-alive connection)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, fmt, *args):  # quiet: one line per error only (see _send)
            pass

        def _send(self, status: int, obj: dict):
            data = json.dumps(obj).encode()
            if status >= 400:
                print(f"sample.py: {self.command} {self.path} -> {status}: {obj['error']['message']}",
                      file=sys.stderr, flush=True)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, e: RequestError):
            self._send(e.status, error_body(e))

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path == "/v1/models":
                self._send(200, {"object": "list", "data": [card]})
            elif path == "/v1/models/" + ck.name:
                self._send(200, card)
            elif path in ("/health", "/v1/health"):
                self._send(200, {"status": "ok", **engine.stats})
            else:
                self._error(RequestError(404, f"no route GET {self.path}", code="not_found"))

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            self.streaming = False
            try:
                if path not in ("/v1/completions", "/v1/chat/completions"):
                    self.close_connection = True  # the body stays unread
                    raise RequestError(404, f"no route POST {self.path}", code="not_found")
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    self.close_connection = True
                    raise RequestError(411, "chunked bodies are not supported; send Content-Length")
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self.close_connection = True
                    raise RequestError(411, "a Content-Length header is required")
                if length > cfg.max_body_bytes or length < 0:
                    self.close_connection = True
                    raise RequestError(413, f"the body is {length} bytes; the limit is {cfg.max_body_bytes}")
                body = parse_json(self.rfile.read(length))
                if stopping.is_set():
                    raise RequestError(503, "the server is shutting down", code="shutting_down")
                req = parse_request(ck, cfg, body, chat=path.endswith("chat/completions"))
                engine.submit(req.rows)
                engine.stats["requests"] += 1
                try:
                    if req.stream:
                        self._stream(req)
                    else:
                        self._wait(req)
                        self._send(200, {"id": ("chatcmpl-" if req.chat else "cmpl-") + uuid.uuid4().hex[:24],
                                         "object": "chat.completion" if req.chat else "text_completion",
                                         "created": int(time.time()), "model": ck.name,
                                         "choices": [choice(ck, req, r) for r in req.rows], "usage": usage(req)})
                finally:
                    for r in req.rows:  # a client that went away (or any failure): free its slots
                        if r.finish is None:
                            r.cancelled = True
            except RequestError as e:
                self._error(e)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away; nothing to answer
            except Exception as e:  # never let one request take the server down
                print(f"sample.py: internal error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                self.close_connection = True
                if self.streaming:
                    return  # the stream's 200 is out: closing the connection is the only answer left
                self._error(RequestError(500, f"internal error: {type(e).__name__}: {e}", code="internal_error"))

        def _events(self, req: Request):
            """Engine events for this request until every row has finished; gives up (cancelling
            the rows) when the client disconnects."""
            left = len(req.rows)
            while left:
                try:
                    ev = req.rows[0].events.get(timeout=0.2)
                except queue.Empty:
                    if client_gone(self.connection):
                        raise ConnectionResetError("the client disconnected")
                    if not worker.is_alive():
                        raise RequestError(503, "the server is shutting down", code="shutting_down")
                    continue
                if ev[0] == "error":
                    raise RequestError(500, ev[2], code="internal_error")
                if ev[0] == "finish":
                    left -= 1
                yield ev

        def _wait(self, req: Request):
            for _ in self._events(req):
                pass

        def _stream(self, req: Request):
            rid = ("chatcmpl-" if req.chat else "cmpl-") + uuid.uuid4().hex[:24]
            obj = "chat.completion.chunk" if req.chat else "text_completion"
            created = int(time.time())
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.streaming = True

            def send(data: bytes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

            def chunk(choices, **extra):
                c = {"id": rid, "object": obj, "created": created, "model": ck.name, "choices": choices}
                if req.include_usage:
                    c["usage"] = None
                c.update(extra)
                send(b"data: " + json.dumps(c).encode() + b"\n\n")

            sent_toks = [0] * len(req.rows)  # tokens whose logprobs went out, per row
            offset = [0] * len(req.rows)     # completions text_offset continues across chunks
            for r in req.rows:
                if req.chat:
                    chunk([{"index": r.index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                            "finish_reason": None}])
                elif req.echo:
                    text, lp = prompt_part(ck, req, r)
                    chunk([{"index": r.index, "text": text, "logprobs": lp, "finish_reason": None}])
                    offset[r.index] = len(text)
            try:
                for ev in self._events(req):
                    i = ev[1]
                    if ev[0] == "finish":
                        fin = {"delta": {}} if req.chat else {"text": ""}
                        chunk([{"index": i, **fin, "logprobs": None, "finish_reason": ev[2]}])
                        continue
                    text, lps = ev[2], ev[3]
                    toks = req.rows[i].out[sent_toks[i]:sent_toks[i] + len(lps)]
                    sent_toks[i] += len(lps)
                    lp = None
                    if req.chat:
                        if req.logprobs is not None:
                            lp = chat_logprobs(ck, toks, lps, req.logprobs, req.as_ids)
                        chunk([{"index": i, "delta": {"content": text}, "logprobs": lp, "finish_reason": None}])
                    else:
                        if req.logprobs is not None:
                            lp = completion_logprobs(ck, toks, lps, req.as_ids, offset[i])
                            offset[i] += sum(len(t) for t in lp["tokens"])
                        chunk([{"index": i, "text": text, "logprobs": lp, "finish_reason": None}])
            except RequestError as e:  # the stream has begun: the error goes in-band, as vLLM does
                send(b"data: " + json.dumps(error_body(e)).encode() + b"\n\n")
            else:
                if req.include_usage:
                    chunk([], usage=usage(req))
            send(b"data: [DONE]\n\n")
            send(b"")  # the last chunk of a chunked body

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    httpd = Server((host, port), Handler)
    httpd.engine = engine

    def stop_engine():
        stopping.set()
        worker.join(timeout=30)
        engine.fail_all("the server is shutting down")
    httpd.stop_engine = stop_engine
    return httpd


def error_body(e: RequestError) -> dict:
    typ = {400: "invalid_request_error", 404: "not_found_error", 411: "invalid_request_error",
           413: "invalid_request_error", 503: "server_error"}.get(e.status, "server_error")
    return {"error": {"message": e.message, "type": typ, "param": e.param, "code": e.code}}


def parse_json(raw: bytes):
    def no_constant(name):  # NaN / Infinity are not JSON (Python's json accepts them by default)
        raise ValueError(f"{name} is not a valid JSON value")
    try:
        return json.loads(raw, parse_constant=no_constant)
    except RecursionError:
        raise RequestError(400, "the body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None


def serve(ck: Checkpoint, host: str, port: int, cfg: ServeConfig):
    httpd = make_server(ck, host, port, cfg)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # serve_forever in a thread: shutdown() must be called from another thread than the one serving
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    h, p = httpd.server_address[:2]
    print(f"sample.py: serving '{ck.name}' (context {ck.block_size}, {cfg.max_batch} slots, "
          f"{'static' if cfg.static else 'continuous'} batching) on http://{h}:{p}/v1", flush=True)
    while not stop.wait(0.2):
        pass
    print("sample.py: shutting down", flush=True)
    httpd.shutdown()
    httpd.stop_engine()
    httpd.server_close()
    st = httpd.engine.stats
    print(f"sample.py: served {st['requests']} requests, {st['tokens']} tokens in {st['steps']} decode steps "
          f"({st['cancelled']} rows cancelled)", flush=True)


def spawn_server(ckpt, *extra: str, timeout: float = 120.0):
    """`sample.py --serve --port 0 *extra` as a subprocess, for tests and benchmarks; returns
    (proc, port) once it listens. Its output is read on (a full pipe would block the server) into
    proc.lines by the thread proc.reader."""
    import re
    import subprocess
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--ckpt", str(ckpt), "--serve",
                             "--port", "0", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parent)
    proc.lines = []
    t0 = time.time()
    while time.time() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            break
        proc.lines.append(line)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if m:
            proc.reader = threading.Thread(target=lambda: proc.lines.extend(proc.stdout), daemon=True)
            proc.reader.start()
            return proc, int(m.group(1))
    proc.kill()
    raise RuntimeError("sample.py --serve did not start: " + "".join(proc.lines)[-2000:])


# -----------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="export dir: config.json, model.safetensors, tokenizer.tiktoken")
    ap.add_argument("--prompt", default="\n", help="prompt text, or FILE:path to read it from a file")
    ap.add_argument("--num-samples", type=int, default=1, help="samples to draw")
    ap.add_argument("--max-new-tokens", type=int, default=200, help="tokens per sample")
    ap.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    ap.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass")
    ap.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    ap.add_argument("--seed", type=int, default=1337, help="sampling seed (sample k uses seed + k)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--backend", default=None, choices=[None, "auto", "triton", "torch"],
                    help="attention/norm kernels (default: the checkpoint's / auto)")
    ap.add_argument("--serve", action="store_true", help="serve an OpenAI-compatible API instead of sampling")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    ap.add_argument("--model-name", default=None, help="model id for the API (default: from the ckpt path)")
    ap.add_argument("--context", type=int, default=None,
                    help="positions to serve (default: the checkpoint's block_size; RoPE runs past it)")
    ap.add_argument("--max-batch", type=int, default=16, help="KV-cache slots: rows decoded together")
    ap.add_argument("--batching", default="continuous", choices=["continuous", "static"],
                    help="static: admit a new batch only when the previous one has finished (a baseline)")
    ap.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413")
    args = ap.parse_args(argv)

    ck = load_checkpoint(args.ckpt, args.device, args.backend, context=args.context, name=args.model_name)
    if args.serve:
        serve(ck, args.host, args.port, ServeConfig(max_batch=args.max_batch, static=args.batching == "static",
                                                    max_body_bytes=args.max_body_bytes))
        return
    prompt = args.prompt
    if prompt.startswith("FILE:"):
        prompt = Path(prompt[5:]).read_text(encoding="utf-8")
    ids = ck.encode(prompt)
    if len(ids) >= ck.block_size:
        raise SystemExit(f"sample.py: the prompt has {len(ids)} tokens; the context is {ck.block_size}")
    for k in range(args.num_samples):
        out = ck.generate([ids], args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                          stop=args.stop, seed=args.seed + k)[0]
        text = ck.decode(out)
        for s in args.stop or []:
            text = text.split(s)[0]
        print(prompt + text)
        print("---------------")


if __name__ == "__main__":
    main()
