"""client.py against a scripted OpenAI-compatible server on loopback: retries on 429/5xx/hangs/
drops/resets/cut bodies, no retry and a clear error on 4xx, backoff bounds, one connection per
thread, the official `openai` client as an independent check of what goes on the wire, and
eval/generate.py's ApiModel on top of it."""
import json
import random
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from client import APIError, Client, is_context_error


def completion(prompts, chat=False):
    if chat:
        return {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "hello"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    prompts = prompts if isinstance(prompts, list) else [prompts]
    # choices out of order on purpose: clients must sort by index
    return {"id": "x", "object": "text_completion", "created": 0, "model": "m",
            "choices": [{"index": i, "text": f"<{p}>", "finish_reason": "stop", "logprobs": None}
                        for i, p in reversed(list(enumerate(prompts)))],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def send_json(h: BaseHTTPRequestHandler, status: int, obj, extra=()):
    data = json.dumps(obj).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for k, v in extra:
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


def misbehave(h: BaseHTTPRequestHandler, fault: str, resp: dict, stop: threading.Event, hang_s: float):
    """Answer with `fault` instead of `resp`: an error status, silence past the client's timeout,
    a close without a word, a TCP reset, a 200 whose body stops half way; "ok" answers resp."""
    if fault == "500":
        return send_json(h, 500, {"error": {"message": "boom"}})
    if fault == "429":
        return send_json(h, 429, {"error": {"message": "slow down"}}, [("Retry-After", "0")])
    if fault == "400":
        return send_json(h, 400, {"error": {"message": "temperature must be >= 0", "code": "invalid"}})
    if fault == "ctx":
        return send_json(h, 400, {"error": {"message": "prompt exceeds the context length",
                                            "code": "context_length_exceeded"}})
    if fault in ("hang", "drop", "reset"):
        if fault == "hang":
            stop.wait(hang_s)
        if fault == "reset":  # RST instead of FIN
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        return
    if fault == "cut":
        data = json.dumps(resp).encode()
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[: len(data) // 2])
        h.close_connection = True
        return
    send_json(h, 200, resp)


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1: GET answers a model list, POST calls
    on_post(handler, body). Use as a context manager; .base is the /v1 URL."""

    def __init__(self, on_post, models=({"id": "m", "object": "model", "max_model_len": 4096},)):
        self.stop = threading.Event()

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                send_json(self, 200, {"object": "list", "data": list(models)})

            def do_POST(self):
                on_post(self, json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        class S(ThreadingHTTPServer):
            daemon_threads = True

        self.httpd = S(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Scripted(LoopbackServer):
    """Answers each POST with the next fault of `script` (see misbehave; "nochoices": a 200 with
    an empty choice list), then successes. Records bodies, headers, client ports and paths."""

    def __init__(self, script=(), hang_s=1.0):
        self.script = list(script)
        self.bodies, self.headers, self.ports, self.paths = [], [], [], []
        self.lock = threading.Lock()
        super().__init__(self.on_post)
        self.hang_s = hang_s

    def on_post(self, h, body):
        with self.lock:
            self.bodies.append(body)
            self.headers.append({k.lower(): v for k, v in h.headers.items()})
            self.ports.append(h.client_address[1])
            self.paths.append(h.path)
            fault = self.script.pop(0) if self.script else "ok"
        resp = completion(body.get("prompt"), h.path.endswith("/chat/completions"))
        if fault == "nochoices":
            fault, resp = "ok", {"id": "x", "choices": []}
        misbehave(h, fault, resp, self.stop, self.hang_s)


def fast_client(base, **kw):
    return Client(base, kw.pop("api_key", None), kw.pop("timeout", 0.3), kw.pop("max_retries", 6),
                  backoff_base=0.01, backoff_max=0.02, seed=0)


def test_every_transient_fault_is_retried():
    faults = ["500", "429", "hang", "drop", "reset", "cut", "nochoices"]
    with Scripted(faults, hang_s=0.8) as srv:
        c = fast_client(srv.base, max_retries=len(faults))
        r = c.completions(model="m", prompt="a", max_tokens=4)
    assert r.data["choices"][0]["text"] == "<a>"
    assert r.attempts == len(faults) + 1 and len(r.errors) == len(faults)
    assert "HTTP 500: boom" in r.errors[0] and "HTTP 429: slow down" in r.errors[1]
    assert "timed out" in r.errors[2].lower()
    assert "no choices" in r.errors[6]
    assert len(srv.bodies) == len(faults) + 1  # one request per attempt, nothing lost or doubled


def test_client_errors_are_not_retried_and_say_why():
    with Scripted(["400"]) as srv:
        c = fast_client(srv.base)
        with pytest.raises(APIError) as ei:
            c.chat(model="m", messages=[{"role": "user", "content": "x"}], temperature=-1)
    e = ei.value
    assert e.status == 400 and e.attempts == 1 and not e.retryable and len(srv.bodies) == 1
    assert str(e) == f"POST {srv.base}/chat/completions: HTTP 400: temperature must be >= 0"
    with Scripted(["ctx"]) as srv:
        with pytest.raises(APIError) as ei:
            fast_client(srv.base).completions(model="m", prompt="long")
    assert is_context_error(ei.value)
    assert not is_context_error(e)


def test_gives_up_after_max_retries():
    with Scripted(["500"] * 10) as srv:
        with pytest.raises(APIError) as ei:
            fast_client(srv.base, max_retries=3).completions(model="m", prompt="a")
    assert ei.value.attempts == 4 == len(ei.value.errors) == len(srv.bodies)
    assert "gave up after 4 attempts" in str(ei.value)
    with pytest.raises(APIError) as ei:  # nothing listens: connection refused, retried, then a clear error
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        fast_client(f"http://127.0.0.1:{port}/v1", max_retries=2).completions(model="m", prompt="a")
    assert ei.value.attempts == 3 and "ConnectionRefusedError" in str(ei.value)
    with pytest.raises(ValueError, match="http"):
        Client("localhost:8000/v1")


def test_backoff_is_exponential_jittered_and_capped():
    c = Client("http://127.0.0.1:1/v1", backoff_base=1.0, backoff_max=10.0, seed=1)
    rng = random.Random(0)
    for k in range(6):
        d = [c.delay(k, rng=rng) for _ in range(200)]
        lo, hi = min(0.5 * 2 ** k, 10.0), min(2 ** k, 10.0)
        assert lo <= min(d) and max(d) <= hi
        if hi < 10.0:
            assert max(d) - min(d) > 0.3 * (hi - lo)  # spread: clients do not retry in step
    assert c.delay(0, retry_after=7.0) == 7.0  # Retry-After is honoured ...
    assert c.delay(0, retry_after=100.0) == 10.0  # ... up to the cap
    # the waits really happen: 3 retries at base 0.05 sleep at least 0.025 + 0.05 + 0.1 s
    with Scripted(["500"] * 3) as srv:
        c = Client(srv.base, backoff_base=0.05, backoff_max=1.0, max_retries=3)
        t0 = time.perf_counter()
        assert c.completions(model="m", prompt="a").attempts == 4
        assert time.perf_counter() - t0 >= 0.175


def test_one_keepalive_connection_per_thread():
    with Scripted() as srv:
        c = fast_client(srv.base, api_key="sk-abc", timeout=5)
        with ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda i: c.completions(model="m", prompt=str(i)).data["choices"][0]["text"], range(40)))
        assert c.context_length("m") == 4096 and c.context_length("other") is None
    assert sorted(outs) == sorted(f"<{i}>" for i in range(40))
    assert len(srv.bodies) == 40 and len(set(srv.ports)) <= 4  # connections reused, never more than threads
    assert {h["authorization"] for h in srv.headers} == {"Bearer sk-abc"}


def test_requests_match_the_official_openai_client():
    """The same calls through `openai` (an independent implementation) and through client.py put
    the same path, JSON body and key on the wire, and both read the same answer."""
    openai = pytest.importorskip("openai")
    with Scripted() as srv:
        oc = openai.OpenAI(base_url=srv.base, api_key="sk-x", max_retries=0)
        ours = Client(srv.base, "sk-x")
        kw = dict(model="m", prompt=["p1", "p2"], max_tokens=5, temperature=0.0, top_p=1.0, stop=["\n"])
        a = oc.completions.create(**kw)
        b = ours.completions(**kw)
        ckw = dict(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0.7)
        ac = oc.chat.completions.create(**ckw)
        bc = ours.chat(**ckw)
    assert srv.paths == ["/v1/completions"] * 2 + ["/v1/chat/completions"] * 2
    assert srv.bodies[0] == srv.bodies[1] and srv.bodies[2] == srv.bodies[3]
    assert all(h["authorization"] == "Bearer sk-x" for h in srv.headers)
    assert [c.text for c in sorted(a.choices, key=lambda c: c.index)] == \
        [c["text"] for c in sorted(b.data["choices"], key=lambda c: c["index"])] == ["<p1>", "<p2>"]
    assert ac.choices[0].message.content == bc.data["choices"][0]["message"]["content"] == "hello"


def test_eval_api_model_uses_the_client():
    from eval.generate import ApiModel
    with Scripted(["500", "drop"]) as srv:
        m = ApiModel(srv.base[:-len("/v1")], "m", retries=3)  # a base without /v1 works too
        m.client.backoff_base = m.client.backoff_max = 0.01
        assert m.complete(["a", "b", "c"], ["\n"], 8) == ["<a>", "<b>", "<c>"]  # sorted by index
        assert srv.bodies[-1]["prompt"] == ["a", "b", "c"] and srv.bodies[-1]["temperature"] == 0.0
    with Scripted(["400"]) as srv:
        with pytest.raises(SystemExit, match="HTTP 400: temperature must be >= 0; rerun to resume"):
            ApiModel(srv.base, "m").complete(["a"], [], 8)
