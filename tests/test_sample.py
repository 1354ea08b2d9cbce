"""sample.py: the checkpoint loader, the continuous-batching engine and the OpenAI-compatible
server, run for real: `sample.py --serve` as a subprocess on loopback with a tiny random model,
spoken to by the official `openai` client and by raw HTTP. The reference for every answer is an
independent one: a full forward pass of model.Transformer with no KV cache, token by token."""
import http.client
import json
import shutil
import signal
import socket
import threading
import time

import pytest
import torch

from model import ModelConfig, Transformer
import sample

BLOCK = ModelConfig.from_preset("tiny").block_size


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_tokenizer_path):
    d = tmp_path_factory.mktemp("ckpt") / "export"
    torch.manual_seed(0)
    Transformer(ModelConfig.from_preset("tiny")).save_pretrained(d)
    shutil.copy(tiny_tokenizer_path, d / "tokenizer.tiktoken")
    return d


@pytest.fixture(scope="module")
def ref(ckpt):
    """The same checkpoint in this process, and the no-cache reference computations."""
    ck = sample.load_checkpoint(ckpt, device="cpu", name="tiny")

    class Ref:
        enc = ck.enc
        stop_ids = {ck.enc.encode_single_token(s) for s in ck.enc.special_tokens_set}

        @staticmethod
        def ids(prompt):
            return prompt if isinstance(prompt, list) else (ck.enc.encode_ordinary(prompt) or [ck.eot_id])

        @staticmethod
        @torch.no_grad()
        def logprobs(ids):  # (T, vocab): row t is the distribution of token t+1
            return torch.log_softmax(ck.model(torch.tensor([ids]))[0][0].float(), dim=-1)

        @classmethod
        def greedy(cls, prompt, n):
            ids, out = list(cls.ids(prompt)), []
            for _ in range(n):
                t = int(cls.logprobs(ids + out)[-1].argmax())
                if t in cls.stop_ids:
                    break
                out.append(t)
            return out
    Ref.ck = ck
    return Ref


@pytest.fixture(scope="module")
def server(ckpt):
    proc, port = sample.spawn_server(ckpt, "--model-name", "tiny", "--device", "cpu", "--max-batch", "4")
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server[1]}/v1", api_key="none", max_retries=0, timeout=60)


def post(port, path, body=None, raw=None, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else json.dumps(body).encode()
        c.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


PROMPTS = ["def add(a, b):\n    return", "import os\n", "class Stack:\n    def __init__(self):\n        self.items = ",
           "# parse a config file\nimport json\n\ndef load(path):\n", "for i in range(10):\n    print(i",
           "x = [1, 2, 3]\n"]


# -----------------------------------------------------------------------------
# the loader and the engine, in process

def test_token_rules(ref, ckpt):
    ck = ref.ck
    assert ck.encode("a <|endoftext|> b") == ck.enc.encode_ordinary("a <|endoftext|> b")  # text, not the token
    assert ck.eot_id not in ck.encode("a <|endoftext|> b")
    assert ck.encode("") == [ck.eot_id]
    assert ck.stop_ids == {ck.enc.encode_single_token(s) for s in
                           ("<|endoftext|>", "<repo_name>", "<file_sep>", "<|pad|>")}
    # a model that wants to say <file_sep> first: generation ends there, the token is not output
    other = sample.load_checkpoint(ckpt, device="cpu")
    fsep = other.enc.encode_single_token("<file_sep>")
    head = torch.nn.Linear(other.model.config.n_embd, other.model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(other.model.lm_head.weight)
        head.bias.zero_()
        head.bias[fsep] = 1e4
    assert other.generate([other.encode(PROMPTS[0])], 8) != [[]]
    other.model.lm_head = head
    assert other.generate([other.encode(PROMPTS[0])], 8) == [[]]


def test_engine_matches_full_forward_with_slot_reuse_and_compaction(ref):
    """7 rows through 2 KV-cache slots and a small capacity: rows join as others leave, the cache
    is compacted, and every greedy answer is the no-cache reference's."""
    ck = ref.ck
    prompts = [ref.ids(p) for p in PROMPTS] + [ref.ids("y = 2\n" * 5)]
    eng = sample.Engine(ck, slots=2, max_len=32)
    rows = [sample.Row(prompt=p, max_tokens=min(4 + 3 * i, 32 - len(p))) for i, p in enumerate(prompts)]
    eng.submit(rows)
    while eng.busy():
        eng.step()
    assert eng.stats["compactions"] >= 1 and eng.stats["prefills"] == len(rows)
    for r in rows:
        assert r.out == ref.greedy(r.prompt, r.max_tokens)
        assert r.finish == ("length" if len(r.out) == r.max_tokens else "stop")
        assert r.text == ref.enc.decode(r.out)


def test_seeded_rows_do_not_depend_on_their_neighbours(ref):
    ck = ref.ck
    p = ref.ids(PROMPTS[0])
    alone = ck.generate([p], 12, temperature=1.0, seed=7)[0]
    eng = sample.Engine(ck, slots=4, max_len=64)
    rows = [sample.Row(prompt=p, max_tokens=12, temperature=1.0, seed=7),
            sample.Row(prompt=ref.ids(PROMPTS[1]), max_tokens=20, temperature=0.7, top_p=0.5),
            sample.Row(prompt=ref.ids(PROMPTS[2]), max_tokens=5)]
    eng.submit(rows)
    while eng.busy():
        eng.step()
    assert rows[0].out == alone and len(alone) > 0
    assert rows[2].out == ref.greedy(rows[2].prompt, 5)
    assert ck.generate([p], 12, temperature=1.0, seed=8)[0] != alone


def test_cli_sample_is_greedy(ckpt, ref, capsys):
    sample.main(["--ckpt", str(ckpt), "--prompt", PROMPTS[0], "--max-new-tokens", "12", "--temperature", "0",
                 "--num-samples", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    expected = PROMPTS[0] + ref.enc.decode(ref.greedy(PROMPTS[0], 12))
    assert out.count(expected + "\n---------------\n") == 2


def test_context_override_runs_past_the_trained_length(ckpt, ref):
    ck = sample.load_checkpoint(str(ckpt), device="cpu", context=2 * BLOCK, name="t")
    assert ck.block_size == 2 * BLOCK and ck.name == "t"
    prompt = (ref.enc.encode("x = 1\n") * BLOCK)[:BLOCK + 10]  # longer than the trained context
    new = ck.generate([prompt], 8)[0]
    assert new == ref.greedy(prompt, 8) and len(new) == 8


def test_static_batching_waits_and_continuous_does_not(ckpt):
    """A short request sent while a long one runs: continuous batching answers it at once; static
    batching only after the long one has finished. In-process servers, real HTTP; a 2048-position
    context so the long one surely outlasts the short one, even on a loaded machine."""
    ck = sample.load_checkpoint(ckpt, device="cpu", context=2048, name="tiny")
    order = {}
    for static in (False, True):
        httpd = sample.make_server(ck, cfg=sample.ServeConfig(max_batch=4, static=static))
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        port, done = httpd.server_address[1], []
        try:
            long = threading.Thread(target=lambda: done.append(("long", post(port, "/v1/completions", {
                "prompt": [1, 2, 3], "max_tokens": 1500, "temperature": 0, "ignore_eos": True})[0])))
            long.start()
            t0 = time.time()
            while httpd.engine.stats["tokens"] < 3 and time.time() - t0 < 30:
                time.sleep(0.005)
            done.append(("short", post(port, "/v1/completions", {"prompt": "x", "max_tokens": 2})[0]))
            long.join(timeout=60)
        finally:
            httpd.shutdown()
            httpd.stop_engine()
            httpd.server_close()
        assert [s for _, s in done] == [200, 200]
        order[static] = [name for name, _ in done]
    assert order == {False: ["short", "long"], True: ["long", "short"]}


# -----------------------------------------------------------------------------
# the server, with the official openai client

def test_models_endpoint(server, client):
    _, port = server
    status, body = get(port, "/v1/models")
    assert status == 200 and body["object"] == "list" and body["data"][0]["max_model_len"] == BLOCK
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_completions_greedy_n_and_usage(client, ref):
    r = client.completions.create(model="tiny", prompt=PROMPTS[:2], max_tokens=10, temperature=0, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    want = [ref.enc.decode(ref.greedy(p, 10)) for p in PROMPTS[:2]]
    assert [c.text for c in r.choices] == [want[0], want[0], want[1], want[1]]
    n_prompt = sum(len(ref.ids(p)) for p in PROMPTS[:2])
    n_out = 2 * sum(len(ref.greedy(p, 10)) for p in PROMPTS[:2])
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (n_prompt, n_out, n_prompt + n_out)


def test_concurrent_clients_get_their_own_greedy_answers(server, ref):
    """Clients at once, with different prompt lengths and limits, some as token ids, one 6 tokens
    short of the context (its answer is cut to 6 tokens; its neighbours' are not)."""
    _, port = server
    long = (ref.enc.encode("y = x + 1\n") * BLOCK)[:BLOCK - 6]
    prompts = PROMPTS + [long, ref.ids(PROMPTS[0])]
    results = [None] * len(prompts)

    def call(i):
        results[i] = post(port, "/v1/completions", {"model": "tiny", "prompt": prompts[i],
                                                   "max_tokens": 8 + 3 * i, "temperature": 0})
    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, (p, (status, body)) in enumerate(zip(prompts, results)):
        assert status == 200, body
        limit = min(8 + 3 * i, BLOCK - len(ref.ids(p)))
        new = ref.greedy(p, limit)
        ch = body["choices"][0]
        assert ch["text"] == ref.enc.decode(new)
        assert ch["finish_reason"] == ("length" if len(new) == limit else "stop")


def test_streaming_completions_and_chat(client, ref):
    full = client.completions.create(model="tiny", prompt=PROMPTS[3], max_tokens=20, temperature=0)
    chunks = list(client.completions.create(model="tiny", prompt=PROMPTS[3], max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == full.choices[0].text == ref.enc.decode(ref.greedy(PROMPTS[3], 20))
    assert len([c for c in chunks if c.choices]) > 2  # it really came in pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == full.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens

    msgs = [{"role": "developer", "content": "You write Python."}, {"role": "user", "content": "Sort a list."}]
    whole = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, temperature=0)
    prompt = sample.render_chat(msgs)
    assert prompt.startswith("### System\nYou write Python.")
    want = ref.enc.decode(ref.greedy(prompt, 12))
    cut = min((want.find(s) for s in sample.CHAT_STOP if s in want), default=len(want))
    assert whole.choices[0].message.content == want[:cut] and whole.object == "chat.completion"
    parts = list(client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, temperature=0,
                                                stream=True))
    assert parts[0].choices[0].delta.role == "assistant"
    assert "".join(p.choices[0].delta.content or "" for p in parts) == want[:cut]
    assert parts[-1].choices[0].finish_reason in ("stop", "length")


def test_stop_strings_streamed_and_not(client, ref):
    full = ref.enc.decode(ref.greedy(PROMPTS[3], 24))
    stop = full[5:8]
    want = full[:full.find(stop)]
    for stream in (False, True):
        r = client.completions.create(model="tiny", prompt=PROMPTS[3], max_tokens=24, temperature=0,
                                      stop=[stop, "\x00never"], stream=stream)
        chs = list(r) if stream else [r]
        assert "".join(c.choices[0].text for c in chs) == want  # no piece of the stop string leaks out
        assert chs[-1].choices[0].finish_reason == "stop"
    assert r is not None and client.completions.create(model="tiny", prompt=PROMPTS[3], max_tokens=24, temperature=0,
                                                       stop=stop).usage.completion_tokens < 24


def test_seed_reproducible_and_choices_differ(client):
    kw = dict(model="tiny", prompt=PROMPTS[1], max_tokens=12, temperature=1.0, n=3, seed=11)
    a = [c.text for c in client.completions.create(**kw).choices]
    b = [c.text for c in client.completions.create(**kw).choices]
    assert a == b and len(set(a)) > 1


def test_logprobs_are_the_models_log_softmax(client, ref):
    k = 3
    r = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=8, temperature=0, logprobs=k)
    lp = r.choices[0].logprobs
    ids = ref.ids(PROMPTS[0])
    new = ref.greedy(PROMPTS[0], 8)
    full = ref.logprobs(ids + new)
    assert len(lp.tokens) == len(new) == len(lp.token_logprobs) == len(lp.top_logprobs)
    offset = 0
    for i, t in enumerate(new):
        row = full[len(ids) - 1 + i]
        assert lp.token_logprobs[i] == pytest.approx(float(row[t]), abs=1e-4)
        assert lp.tokens[i] == ref.enc.decode_single_token_bytes(t).decode("utf-8", errors="replace")
        top = sorted(lp.top_logprobs[i].values(), reverse=True)
        assert top[:k] == pytest.approx(row.topk(k).values.tolist(), abs=1e-4)  # greedy: the chosen one is top
        assert lp.text_offset[i] == offset
        offset += len(lp.tokens[i])
    # the same through streaming, and the chat format
    chunks = list(client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=8, temperature=0,
                                            logprobs=k, stream=True))
    streamed = [x for c in chunks for x in (c.choices[0].logprobs.token_logprobs if c.choices[0].logprobs else [])]
    assert streamed == pytest.approx(lp.token_logprobs, abs=1e-6)
    msgs = [{"role": "user", "content": "hi"}]
    ch = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=5, temperature=0, logprobs=True,
                                        top_logprobs=2)
    content = ch.choices[0].logprobs.content
    cids = ref.ids(sample.render_chat(msgs))
    cnew = ref.greedy(cids, 5)
    cfull = ref.logprobs(cids + cnew)
    assert len(content) == len(cnew) and all(len(c.top_logprobs) == 2 for c in content)
    for i, c in enumerate(content):
        assert c.logprob == pytest.approx(float(cfull[len(cids) - 1 + i][cnew[i]]), abs=1e-4)
        assert bytes(c.bytes) == ref.enc.decode_single_token_bytes(cnew[i])


def test_loglikelihood_echo_max_tokens_0(client, ref):
    """lm-eval-harness's local-completions query: token-id prompts (a list of lists), echo,
    logprobs, max_tokens=0. Each prompt logprob must be the model's own log-softmax on those
    tokens; the first is null."""
    batch = [ref.enc.encode_ordinary(p) for p in PROMPTS[:3]] + [[ref.ck.eot_id] * 2 + [5, 6, 7]]
    r = client.completions.create(model="tiny", prompt=batch, max_tokens=0, echo=True, logprobs=1, temperature=0)
    assert len(r.choices) == len(batch)
    for ids, ch in zip(batch, r.choices):
        lp = ch.logprobs
        assert ch.text == ref.enc.decode(ids) and ch.finish_reason == "length"
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None and len(lp.token_logprobs) == len(ids)
        full = ref.logprobs(ids)
        want = [float(full[i - 1][ids[i]]) for i in range(1, len(ids))]
        assert lp.token_logprobs[1:] == pytest.approx(want, abs=1e-4)
        for i in range(1, len(ids)):  # is_greedy, as the harness computes it, is answerable
            assert max(lp.top_logprobs[i].values()) == pytest.approx(float(full[i - 1].max()), abs=1e-4)
    assert r.usage.completion_tokens == 0
    # echo with generation: the prompt part, then the completion, offsets continuous
    e = client.completions.create(model="tiny", prompt=PROMPTS[1], max_tokens=4, echo=True, logprobs=0,
                                  temperature=0).choices[0]
    new = ref.greedy(PROMPTS[1], 4)
    assert e.text == PROMPTS[1] + ref.enc.decode(new)
    assert len(e.logprobs.tokens) == len(ref.ids(PROMPTS[1])) + len(new)
    assert e.logprobs.text_offset[len(ref.ids(PROMPTS[1]))] == len(PROMPTS[1])


def test_errors_are_openai_4xx_and_server_keeps_serving(server, client):
    openai = pytest.importorskip("openai")
    proc, port = server
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x")
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="def f():\n" * 400)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="x", max_tokens=0)  # 0 only with echo
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "wizard", "content": "x"}])
    cases = [
        (dict(raw=b'{"prompt": "x", '), 400),                                  # malformed JSON
        (dict(raw=b'{"prompt": "x", "temperature": NaN}'), 400),               # NaN is not JSON
        (dict(raw=b'{"prompt": ' + b"[" * 50000 + b"]" * 50000 + b"}"), 400),  # nested too deeply
        (dict(body={"prompt": "x", "temperature": "hot"}), 400),              # wrong types
        (dict(body={"prompt": "x", "n": 1.5}), 400),
        (dict(body={"prompt": "x", "stream": "yes"}), 400),
        (dict(body={"prompt": "x", "logprobs": 99}), 400),
        (dict(body={"prompt": "x", "stop": [1]}), 400),
        (dict(body={"prompt": [[1, 2], []]}), 400),
        (dict(body={"prompt": [10 ** 6]}), 400),
        (dict(body={"prompt": "x", "presence_penalty": 1.0}), 400),         # unsupported: refused, not ignored
        (dict(body=["not", "an", "object"]), 400),
        (dict(body={"messages": []}, path="/v1/chat/completions"), 400),
        (dict(body={"prompt": "x"}, path="/v1/nowhere"), 404),
        (dict(raw=b"{}", headers={"Content-Length": str(10 ** 8)}), 413),     # body too large
    ]
    for kw, status in cases:
        s, body = post(port, kw.pop("path", "/v1/completions"), **kw)
        assert s == status, (kw, body)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert set(body["error"]) == {"message", "type", "param", "code"}
    assert client.completions.create(model="tiny", prompt="x = 1", max_tokens=2, temperature=0).choices
    assert get(port, "/v1/nothing")[0] == 404
    assert proc.poll() is None


def test_disconnect_cancels_generation(ckpt):
    """A client that goes away mid-generation (streaming or not) frees its row: the engine counts it
    cancelled and stops generating it long before max_tokens. (A 4096-position context, so the
    generation surely outlasts the disconnect.)"""
    ck = sample.load_checkpoint(ckpt, device="cpu", context=4096, name="tiny")
    httpd = sample.make_server(ck, cfg=sample.ServeConfig(max_batch=2))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port, st = httpd.server_address[1], httpd.engine.stats
    try:
        for k, stream in enumerate((True, False)):
            s = socket.create_connection(("127.0.0.1", port))
            body = json.dumps({"prompt": [1, 2, 3], "max_tokens": 4000, "temperature": 0, "ignore_eos": True,
                               "stream": stream}).encode()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            t0, base = time.time(), st["tokens"]
            while st["tokens"] < base + 5 and time.time() - t0 < 20:  # it is generating
                time.sleep(0.005)
            s.close()
            while st["cancelled"] < k + 1 and time.time() - t0 < 20:
                time.sleep(0.01)
            while httpd.engine.busy() and time.time() - t0 < 20:
                time.sleep(0.01)
            assert st["cancelled"] == k + 1 and not httpd.engine.busy()
            assert st["tokens"] - base < 4000
        assert post(port, "/v1/completions", {"prompt": "x", "max_tokens": 2})[0] == 200  # slots are free again
    finally:
        httpd.shutdown()
        httpd.stop_engine()
        httpd.server_close()


def test_sigterm_shuts_down_cleanly(server):
    proc, port = server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    proc.reader.join(timeout=10)  # it has read the last lines
    assert any("shutting down" in line for line in proc.lines)
