"""
Sample from a trained SnowCoder checkpoint, or serve it over an OpenAI-compatible HTTP API.

The checkpoint is a Hugging Face Llama directory written by Transformer.save_pretrained
(config.json, model.safetensors) plus the tokenizer.tiktoken it was trained with; train.py
exports one at out_dir/export/.

    python sample.py --ckpt R/p2/export --prompt "def fibonacci(n):" --num-samples 2
    python sample.py --ckpt R/p2/export --prompt FILE:prompt.py --temperature 0.8 --top-p 0.95
    python sample.py --ckpt R/p2/export --serve --port 8000        # --port 0: pick a free one

The server speaks the subset of the OpenAI API that synthesize.py and eval/ use, with the
standard library only (http.server):
    GET  /v1/models
    POST /v1/completions        {"model", "prompt": str | [str] | [int], "max_tokens", "temperature",
                                 "top_p", "stop": str | [str], "n", "seed"}
    POST /v1/chat/completions   {"model", "messages": [{"role", "content"}], ...same knobs}
Chat messages are rendered to one prompt by CHAT_TEMPLATE (our models are base models; the template
only has to be consistent). Errors are JSON {"error": {"message", "type", "code"}} with 400 (bad JSON
or fields, prompt longer than the context), 404 (unknown path or model), 411/413 (body length), 503
(shutting down). A prompt that fits but leaves less room than max_tokens gets max_tokens cut to the
room left (finish_reason "length"), which suits small-context CPU models.

Concurrency: each connection has its own thread, but the model runs in ONE worker thread that takes
every request queued at that moment (up to --max-batch rows) and runs them as one batched
model.generate call per distinct setting (max_tokens, temperature, top_p, stop, seed).
"""
import argparse
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

# One visible chat template: how /v1/chat/completions turns messages into a prompt for a base model.
# A role header per message, and an open assistant header at the end for the model to continue.
CHAT_TEMPLATE = {
    "system": "### System\n{content}\n\n",
    "user": "### User\n{content}\n\n",
    "assistant": "### Assistant\n{content}\n\n",
    "generation_prompt": "### Assistant\n",
}
# A base model happily writes the next user turn itself; chat requests always stop there.
CHAT_STOP = ["\n### User"]


def render_chat(messages: list[dict]) -> str:
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise RequestError(400, f"messages[{i}] needs a role of system, user or assistant", "messages")
        content = m.get("content")
        if isinstance(content, list):  # the OpenAI "content parts" form: keep the text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise RequestError(400, f"messages[{i}].content must be a string", "messages")
        parts.append(CHAT_TEMPLATE[m["role"]].format(content=content))
    return "".join(parts) + CHAT_TEMPLATE["generation_prompt"]


# -----------------------------------------------------------------------------
# the model behind the server: anything with these five members can be served

@dataclass
class Engine:
    name: str                                  # the model id clients must send
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    generate: Callable[..., list[list[int]]]   # model.generate's signature (see model.py)
    block_size: int                            # context length, prompt + completion
    eos_id: int | None = None
    vocab_size: int | None = None              # to reject out-of-range token-id prompts


def load_engine(ckpt: str, device: str = "cpu", backend: str | None = None, name: str | None = None,
                context: int | None = None) -> Engine:
    """Load an exported checkpoint dir (HF Llama layout + tokenizer.tiktoken) for generation.
    context: serve this many positions instead of the trained block_size. RoPE has no learned
    position table, so a longer context runs; quality drops past the trained length, but a model
    trained on 256-token windows can then still take a whole synthesis prompt."""
    from model import Transformer
    from prepare.tokenizer import load_tokenizer
    ckpt = Path(ckpt)
    tok_path = ckpt / "tokenizer.tiktoken"
    if not (ckpt / "config.json").is_file():
        raise SystemExit(f"sample.py: {ckpt} has no config.json (expected a save_pretrained directory)")
    if not tok_path.is_file():
        raise SystemExit(f"sample.py: {tok_path} not found (the export must carry its tokenizer)")
    enc = load_tokenizer(tok_path)
    model = Transformer.from_pretrained(str(ckpt), backend=backend, device=device)
    model.eval()
    if context:
        model.config.block_size = context
    eos_id = enc.eot_token if getattr(enc, "eot_token", None) is not None else None

    def encode(text: str) -> list[int]:
        # special tokens in a prompt (<file_sep>, ...) are meant: the training data had them
        return enc.encode(text, allowed_special="all")

    def decode(ids: list[int]) -> str:
        return enc.decode(ids)

    if name is None:  # R/p2/export -> "p2"; a plain dir -> its own name
        name = ckpt.resolve().parent.name if ckpt.resolve().name == "export" else ckpt.resolve().name
    return Engine(name=name, encode=encode, decode=decode, generate=model.generate,
                  block_size=model.config.block_size, eos_id=eos_id, vocab_size=enc.n_vocab)


# -----------------------------------------------------------------------------
# requests, the batching worker

class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass
class ServeConfig:
    max_batch: int = 8            # rows (prompts x n) per model.generate call
    batch_wait_ms: float = 2.0    # after the first request, wait this long for others to join the batch
    max_body_bytes: int = 1 << 20
    max_prompts: int = 64         # prompts x n in one request
    default_max_tokens: int = 256
    max_stop: int = 8             # OpenAI allows 4; be a little lenient


@dataclass
class Job:
    prompts: list[list[int]]      # one row per choice: every prompt repeated n times
    max_tokens: list[int]         # per row, after clamping to the context
    max_tokens_req: int           # as asked (batching key)
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    done: threading.Event = field(default_factory=threading.Event)
    result: list[list[int]] | None = None
    error: Exception | None = None


class Batcher:
    """One worker thread owns the model; request threads put Jobs on a queue and wait."""

    def __init__(self, engine: Engine, cfg: ServeConfig):
        self.engine, self.cfg = engine, cfg
        self.q: queue.Queue[Job] = queue.Queue()
        self.stopping = threading.Event()
        self.stats = {"requests": 0, "batches": 0, "rows": 0, "tokens": 0}
        self.thread = threading.Thread(target=self._loop, name="generate-worker", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> list[list[int]]:
        if self.stopping.is_set():
            raise RequestError(503, "the server is shutting down", code="shutting_down")
        self.q.put(job)
        while not job.done.wait(0.5):
            if not self.thread.is_alive():
                raise RequestError(503, "the server is shutting down", code="shutting_down")
        if job.error is not None:
            raise job.error
        return job.result

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)
        while True:  # fail whatever is still queued, so no client waits forever
            try:
                job = self.q.get_nowait()
            except queue.Empty:
                break
            job.error = RequestError(503, "the server is shutting down", code="shutting_down")
            job.done.set()

    def _loop(self):
        while not self.stopping.is_set():
            try:
                first = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            jobs, rows = [first], len(first.prompts)
            deadline = time.monotonic() + self.cfg.batch_wait_ms / 1000
            while rows < self.cfg.max_batch:
                try:
                    j = self.q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                jobs.append(j)
                rows += len(j.prompts)
            try:
                self._run(jobs)
            except Exception as e:  # the worker must outlive any one batch
                print(f"sample.py: batch failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                for j in jobs:
                    if not j.done.is_set():
                        j.error = RequestError(500, f"internal error: {type(e).__name__}: {e}", code="internal_error")
                        j.done.set()

    def _run(self, jobs: list[Job]):
        # model.generate takes one setting per call: group the jobs by setting.
        # A seeded sampling job runs alone, so its result does not depend on its neighbours.
        groups: dict[tuple, list[Job]] = {}
        for j in jobs:
            key = (j.max_tokens_req, j.temperature, j.top_p, tuple(j.stop), j.seed,
                   id(j) if (j.seed is not None and j.temperature > 0) else None)
            groups.setdefault(key, []).append(j)
        for group in groups.values():
            for j in group:
                j.result = [None] * len(j.prompts)
            # generate decodes a batch up to (longest prompt + max_new_tokens), never past the context:
            # a long prompt would cut its neighbours' answers short. So rows go shortest first into
            # batches whose longest prompt + largest limit fits the context.
            rows = sorted(((j, r) for j in group for r in range(len(j.prompts))),
                          key=lambda jr: len(jr[0].prompts[jr[1]]))
            batch, P, M = [], 0, 0
            for j, r in rows:
                p, m = len(j.prompts[r]), j.max_tokens[r]
                if batch and max(P, p) + max(M, m) > self.engine.block_size:
                    self._generate(batch, M)
                    batch, P, M = [], 0, 0
                batch.append((j, r))
                P, M = max(P, p), max(M, m)
            if batch:
                self._generate(batch, M)
            for j in group:
                j.done.set()

    def _generate(self, batch: list[tuple[Job, int]], max_new: int):
        j0 = batch[0][0]
        try:
            new = self.engine.generate([j.prompts[r] for j, r in batch], max_new, temperature=j0.temperature,
                                       top_p=j0.top_p, stop=j0.stop or None,
                                       decode=self.engine.decode if j0.stop else None,
                                       eos_id=self.engine.eos_id, seed=j0.seed)
        except Exception as e:  # a failed batch fails its requests, never the server
            print(f"sample.py: generate failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            for j, _ in batch:
                j.error = RequestError(500, f"generation failed: {type(e).__name__}: {e}", code="internal_error")
            return
        for (j, r), toks in zip(batch, new):
            j.result[r] = list(toks[:j.max_tokens[r]])  # a row may have asked for fewer than the batch
        self.stats["batches"] += 1
        self.stats["rows"] += len(batch)
        self.stats["tokens"] += sum(min(len(t), j.max_tokens[r]) for (j, r), t in zip(batch, new))


def _number(body: dict, key: str, default, kind, lo=None, hi=None):
    v = body.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise RequestError(400, f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {v!r}", key)
    v = kind(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise RequestError(400, f"'{key}' must be in [{lo}, {hi}], got {v}", key)
    return v


def handle_completion(engine: Engine, batcher: Batcher, cfg: ServeConfig, body: dict, chat: bool) -> dict:
    """Validate one request body, run it through the batcher, and build the OpenAI response."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model", engine.name)
    if model != engine.name:
        raise RequestError(404, f"the model '{model}' does not exist; this server has '{engine.name}'",
                           "model", "model_not_found")
    if body.get("stream"):
        raise RequestError(400, "stream=true is not supported by this server", "stream")
    if chat:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise RequestError(400, "'messages' must be a non-empty list", "messages")
        texts = [render_chat(msgs)]
    else:
        p = body.get("prompt")
        if isinstance(p, str):
            texts = [p]
        elif isinstance(p, list) and p and all(isinstance(x, str) for x in p):
            texts = list(p)
        elif isinstance(p, list) and p and all(isinstance(x, int) and not isinstance(x, bool) for x in p):
            texts = [list(p)]  # already token ids
        else:
            raise RequestError(400, "'prompt' must be a string, a list of strings, or a list of token ids",
                               "prompt")
    max_tokens = _number(body, "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens",
                         cfg.default_max_tokens, int, 1, None)
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
    if len(texts) * n > cfg.max_prompts:
        raise RequestError(400, f"{len(texts)} prompts x n={n} is more than {cfg.max_prompts} completions", "n")

    ids = [t if isinstance(t, list) else engine.encode(t) for t in texts]
    for k, t in enumerate(ids):
        if len(t) == 0:
            raise RequestError(400, "the prompt is empty", "prompt")
        if len(t) >= engine.block_size:
            raise RequestError(400, f"This model's maximum context length is {engine.block_size} tokens; "
                               f"prompt {k} has {len(t)} tokens, leaving no room to generate.",
                               "prompt", "context_length_exceeded")
        if any(x < 0 or (engine.vocab_size and x >= engine.vocab_size) for x in t):
            raise RequestError(400, f"token ids must be in [0, {engine.vocab_size})", "prompt")
    rows = [t for t in ids for _ in range(n)]
    limits = [min(max_tokens, engine.block_size - len(t)) for t in rows]
    job = Job(prompts=rows, max_tokens=limits, max_tokens_req=max_tokens, temperature=temperature, top_p=top_p,
              stop=stop, seed=seed)
    new = batcher.submit(job)

    choices, completion_tokens = [], 0
    for i, (toks, limit) in enumerate(zip(new, limits)):
        text = engine.decode(toks)
        cut = min((text.find(s) for s in stop if s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        else:
            finish = "length" if len(toks) >= limit else "stop"  # stopped early: end of text
        completion_tokens += len(toks)
        if chat:
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "finish_reason": finish})
        else:
            choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": finish})
    prompt_tokens = sum(len(t) for t in ids)
    batcher.stats["requests"] += 1
    return {"id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24],
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": engine.name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


# -----------------------------------------------------------------------------
# HTTP

def make_server(engine: Engine, host: str = "127.0.0.1", port: int = 0,
                cfg: ServeConfig | None = None) -> tuple[ThreadingHTTPServer, Batcher]:
    cfg = cfg or ServeConfig()
    batcher = Batcher(engine, cfg)
    created = int(time.time())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection per thread
        timeout = 300                  # an idle keep-alive connection frees its thread after this

        def setup(self):
            super().setup()
            # headers and body go out in two writes: without NODELAY, Nagle holds the second one
            # for the client's delayed ACK (~40 ms per request on a keep-alive connection)
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
            typ = {400: "invalid_request_error", 404: "not_found_error", 411: "invalid_request_error",
                   413: "invalid_request_error", 503: "server_error"}.get(e.status, "server_error")
            self._send(e.status, {"error": {"message": e.message, "type": typ, "param": e.param,
                                            "code": e.code}})

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path == "/v1/models":
                self._send(200, {"object": "list", "data": [{
                    "id": engine.name, "object": "model", "created": created, "owned_by": "snowcoder",
                    "max_model_len": engine.block_size}]})
            elif path == "/v1/models/" + engine.name:
                self._send(200, {"id": engine.name, "object": "model", "created": created,
                                 "owned_by": "snowcoder", "max_model_len": engine.block_size})
            elif path in ("/health", "/v1/health"):
                self._send(200, {"status": "ok", **batcher.stats})
            else:
                self._error(RequestError(404, f"no route GET {self.path}", code="not_found"))

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
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
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise RequestError(400, f"the body is not valid JSON: {e}")
                out = handle_completion(engine, batcher, cfg, body, chat=path.endswith("chat/completions"))
                self._send(200, out)
            except RequestError as e:
                self._error(e)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away; nothing to answer
            except Exception as e:  # never let one request take the server down
                self.close_connection = True
                self._error(RequestError(500, f"internal error: {type(e).__name__}: {e}", code="internal_error"))

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    httpd = Server((host, port), Handler)
    return httpd, batcher


def serve(engine: Engine, host: str, port: int, cfg: ServeConfig):
    httpd, batcher = make_server(engine, host, port, cfg)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # serve_forever in a thread: shutdown() must be called from another thread than the one serving
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    h, p = httpd.server_address[:2]
    print(f"sample.py: serving '{engine.name}' (context {engine.block_size}) on http://{h}:{p}/v1", flush=True)
    while not stop.wait(0.2):
        pass
    print("sample.py: shutting down", flush=True)
    httpd.shutdown()
    batcher.stop()
    httpd.server_close()
    print(f"sample.py: served {batcher.stats['requests']} requests in {batcher.stats['batches']} batches, "
          f"{batcher.stats['tokens']} tokens", flush=True)


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
    ap.add_argument("--device", default="cuda" if _has_cuda() else "cpu", help="cpu or cuda")
    ap.add_argument("--backend", default=None, choices=[None, "auto", "triton", "torch"],
                    help="attention/norm kernels (default: the checkpoint's / auto)")
    ap.add_argument("--serve", action="store_true", help="serve an OpenAI-compatible API instead of sampling")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    ap.add_argument("--model-name", default=None, help="model id for the API (default: from the ckpt path)")
    ap.add_argument("--context", type=int, default=None,
                    help="positions to serve (default: the checkpoint's block_size; RoPE runs past it)")
    ap.add_argument("--max-batch", type=int, default=8, help="rows per batched generate call (1 = queue)")
    ap.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413")
    args = ap.parse_args(argv)

    engine = load_engine(args.ckpt, args.device, args.backend, args.model_name, args.context)
    if args.serve:
        serve(engine, args.host, args.port, ServeConfig(max_batch=args.max_batch,
                                                        max_body_bytes=args.max_body_bytes))
        return
    prompt = args.prompt
    if prompt.startswith("FILE:"):
        prompt = Path(prompt[5:]).read_text(encoding="utf-8")
    ids = engine.encode(prompt)
    if len(ids) >= engine.block_size:
        raise SystemExit(f"sample.py: the prompt has {len(ids)} tokens; the context is {engine.block_size}")
    max_new = min(args.max_new_tokens, engine.block_size - len(ids))
    for k in range(args.num_samples):
        out = engine.generate([ids], max_new, temperature=args.temperature, top_p=args.top_p,
                              stop=args.stop, decode=engine.decode if args.stop else None,
                              eos_id=engine.eos_id, seed=args.seed + k)[0]
        text = engine.decode(out)
        for s in args.stop or []:
            text = text.split(s)[0]
        print(prompt + text)
        print("---------------")


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
