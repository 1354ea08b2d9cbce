"""
The one client for OpenAI-compatible servers (vLLM, SGLang, a hosted endpoint, `sample.py --serve`),
used by synthesize.py and eval/generate.py. Standard library only (http.client).

    c = Client("http://127.0.0.1:8000/v1", api_key=None, timeout=1800, max_retries=6)
    reply = c.completions(model="m", prompt="def f(", max_tokens=64)   # POST /v1/completions
    reply = c.chat(model="m", messages=[{"role": "user", "content": "hi"}])
    reply.data["choices"][0], reply.attempts, reply.errors
    c.models()                      # GET /v1/models -> the "data" list
    c.context_length("m")           # max_model_len when the server tells it (vLLM, sample.py), else None

Retries: a 408/409/429, any 5xx, a timeout, a refused/reset/dropped connection, a cut or non-JSON
200 body and a 200 without usable choices are retried up to `max_retries` times, attempt k waiting
backoff_base * 2**k * U(0.5, 1) seconds (jitter, so that many clients do not retry in step), at
least the server's Retry-After, at most backoff_max. Any other 4xx is not retried: it raises
APIError with one line naming the URL, the status and the server's own message. After the last
retry APIError carries every attempt's error.

Concurrency is the caller's: the client is thread-safe and keeps one keep-alive connection per
thread, so N worker threads give N requests in flight. `timeout` bounds each socket operation; a
non-streaming server sends nothing until the answer is complete, so it bounds queueing plus
generation of one request.
"""
import http.client
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

RETRY_STATUS = {408, 409, 429}  # plus every 5xx


class APIError(Exception):
    """A request that failed for good: a non-retryable status, or retries used up."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 retryable: bool = False, retry_after: float | None = None, attempts: int = 1,
                 errors: list | None = None):
        super().__init__(message)
        self.status, self.code, self.retryable, self.retry_after = status, code, retryable, retry_after
        self.attempts, self.errors = attempts, errors or [message]


@dataclass
class Reply:
    data: dict                                  # the server's JSON answer
    attempts: int = 1
    errors: list = field(default_factory=list)  # one line per failed attempt before this one


def is_context_error(e: APIError) -> bool:
    """A 400 because the prompt is too long (sample.py's code; vLLM's and OpenAI's wording)."""
    msg = str(e).lower()
    return e.status == 400 and (e.code == "context_length_exceeded" or "context length" in msg
                                or "maximum context" in msg)


def _check_choices(data: dict, text_of) -> dict:
    """A 200 whose choices hold no text is as useless as a dropped connection: retry it."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise ValueError("the answer has no choices")
    for c in choices:
        if not isinstance(c, dict) or not isinstance(text_of(c), str):
            raise ValueError("a choice has no text")
    return data


def _chat_text(c: dict):
    m = c.get("message")
    return m.get("content") if isinstance(m, dict) else None


class Client:
    def __init__(self, api_base: str, api_key: str | None = None, timeout: float = 600.0,
                 max_retries: int = 6, backoff_base: float = 1.0, backoff_max: float = 60.0,
                 seed: int | None = None):
        u = urlsplit(api_base.rstrip("/"))
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"the API base must be http(s)://host[:port]/path, got {api_base!r}")
        self.base = api_base.rstrip("/")
        self.https, self.host, self.port, self.prefix = u.scheme == "https", u.hostname, u.port, u.path
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.rng = random.Random(seed)
        self.local = threading.local()

    # -- one attempt --------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            c = cls(self.host, self.port, timeout=self.timeout)
            c.connect()
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle wait on keep-alive
            self.local.conn = c
        return c

    def close(self):
        """Close this thread's connection (the next request opens a fresh one)."""
        c = getattr(self.local, "conn", None)
        if c is not None:
            c.close()
            self.local.conn = None

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One attempt, no retry. Raises APIError for an HTTP error status, OSError or
        http.client.HTTPException for transport failures, ConnectionError for a non-JSON 200."""
        data = None if body is None else json.dumps(body).encode()
        try:
            c = self._conn()
            c.request(method, self.prefix + path, body=data, headers=self.headers)
            r = c.getresponse()
            raw = r.read()
        except BaseException:
            self.close()  # the connection is in an unknown state: start a fresh one next time
            raise
        if r.getheader("Connection", "").lower() == "close":
            self.close()
        if r.status != 200:
            msg, code = raw[:300].decode("utf-8", "replace").strip(), None
            try:
                err = json.loads(raw).get("error")
                if isinstance(err, dict):
                    msg, code = str(err.get("message")), err.get("code")
                elif err:
                    msg = str(err)
            except (ValueError, AttributeError):
                pass
            try:
                ra = float(r.getheader("Retry-After"))
            except (TypeError, ValueError):
                ra = None
            retryable = r.status >= 500 or r.status in RETRY_STATUS
            raise APIError(f"{method} {self.base}{path}: HTTP {r.status}: {msg}", r.status, code, retryable, ra)
        try:
            return json.loads(raw)
        except ValueError as e:  # a cut or garbled 200 body: transient, like a dropped connection
            raise ConnectionError(f"a 200 answer that is not JSON ({e})") from None

    # -- with retries -------------------------------------------------------------------------
    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number attempt+1: exponential, jittered, capped."""
        jitter = (rng or self.rng).uniform(0.5, 1.0)
        return min(self.backoff_max, max(self.backoff_base * 2 ** attempt * jitter, retry_after or 0.0))

    def call(self, method: str, path: str, body: dict | None = None, check=None,
             rng: random.Random | None = None) -> Reply:
        """request() with retries (see the module docstring); check(data) may raise ValueError
        for a malformed answer, which is retried too. Returns a Reply or raises APIError."""
        errors: list[str] = []
        for attempt in range(self.max_retries + 1):
            hint = None
            try:
                data = self.request(method, path, body)
                return Reply(check(data) if check else data, attempt + 1, errors)
            except APIError as e:
                if not e.retryable:
                    e.attempts, e.errors = attempt + 1, errors + [str(e)]
                    raise
                err, hint = str(e), e.retry_after
            except (OSError, http.client.HTTPException) as e:  # timeouts, resets, refusals, cut bodies
                err = f"{method} {self.base}{path}: {type(e).__name__}: {e}"
            except (ValueError, KeyError, TypeError) as e:
                err = f"{method} {self.base}{path}: malformed answer: {e}"
            errors.append(err[:300])
            if attempt < self.max_retries:
                time.sleep(self.delay(attempt, hint, rng))
        raise APIError(f"{errors[-1]} (gave up after {len(errors)} attempts)", retryable=True,
                       attempts=len(errors), errors=errors)

    def completions(self, rng: random.Random | None = None, **body) -> Reply:
        """POST /completions with these fields (model, prompt, max_tokens, ...)."""
        return self.call("POST", "/completions", body, lambda d: _check_choices(d, lambda c: c.get("text")), rng)

    def chat(self, rng: random.Random | None = None, **body) -> Reply:
        """POST /chat/completions with these fields (model, messages, max_tokens, ...)."""
        return self.call("POST", "/chat/completions", body, lambda d: _check_choices(d, _chat_text), rng)

    def models(self) -> list[dict]:
        data = self.call("GET", "/models").data
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise APIError(f"GET {self.base}/models: not a model list: {str(data)[:200]}")
        return data["data"]

    def context_length(self, model: str) -> int | None:
        """The model's context length if the server says it (vLLM and sample.py: max_model_len)."""
        try:
            for m in self.models():
                if m.get("id") == model and m.get("max_model_len"):
                    return int(m["max_model_len"])
        except (APIError, ValueError, TypeError, AttributeError):
            return None
        finally:
            self.close()
        return None
