"""sample.py: nanoGPT-style sampling and the OpenAI-compatible server, run for real on loopback:
`sample.py --serve` as a subprocess with a tiny random model, answers compared with model.generate."""
import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from model import ModelConfig, Transformer
import sample

ROOT_DIR = sample.Path(sample.__file__).resolve().parent


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_tokenizer_path):
    d = tmp_path_factory.mktemp("ckpt") / "export"
    torch.manual_seed(0)
    Transformer(ModelConfig.from_preset("tiny")).save_pretrained(d)
    shutil.copy(tiny_tokenizer_path, d / "tokenizer.tiktoken")
    return d


def start_server(ckpt, *extra):
    """sample.py --serve --port 0 in a subprocess; returns (proc, port) once it listens."""
    proc = subprocess.Popen([sys.executable, str(ROOT_DIR / "sample.py"), "--ckpt", str(ckpt), "--serve",
                             "--port", "0", "--model-name", "tiny", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT_DIR)
    t0 = time.time()
    while time.time() - t0 < 60:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise RuntimeError("sample.py --serve did not start: " + (proc.stdout.read() or ""))


@pytest.fixture(scope="module")
def server(ckpt):
    proc, port = start_server(ckpt)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def reference(ckpt):
    """The same checkpoint in this process: what the server must answer, greedy."""
    model = Transformer.from_pretrained(str(ckpt)).eval()
    from prepare.tokenizer import load_tokenizer
    enc = load_tokenizer(ckpt / "tokenizer.tiktoken")

    def greedy(prompt, n: int) -> tuple[list[int], list[int]]:
        ids = prompt if isinstance(prompt, list) else enc.encode(prompt, allowed_special="all")
        return ids, model.generate([ids], n, temperature=0.0, eos_id=enc.eot_token)[0]
    return model, enc, greedy


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


def test_cli_sample_is_greedy_generate(ckpt, reference, capsys):
    _, enc, greedy = reference
    sample.main(["--ckpt", str(ckpt), "--prompt", PROMPTS[0], "--max-new-tokens", "12", "--temperature", "0",
                 "--num-samples", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    _, new = greedy(PROMPTS[0], 12)
    expected = PROMPTS[0] + enc.decode(new)
    assert out.count(expected + "\n---------------\n") == 2


def test_context_override_runs_past_the_trained_length(ckpt, reference):
    model, enc, _ = reference
    block = ModelConfig.from_preset("tiny").block_size
    eng = sample.load_engine(str(ckpt), context=2 * block, name="t")
    assert eng.block_size == 2 * block and eng.name == "t"
    prompt = (enc.encode("x = 1\n") * block)[:block + 10]  # longer than the trained context
    new = eng.generate([prompt], 8, temperature=0.0)[0]
    assert len(new) == 8 and all(0 <= t < enc.n_vocab for t in new)


def test_models_endpoint(server, ckpt):
    _, port = server
    status, body = get(port, "/v1/models")
    assert status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny"]
    assert body["data"][0]["max_model_len"] == ModelConfig.from_preset("tiny").block_size


def test_concurrent_clients_get_their_own_greedy_answers(server, reference):
    """Six clients at once (so the worker batches them, with different prompt lengths): each answer
    is what model.generate gives for that prompt alone, with the right usage counts."""
    _, port = server
    _, enc, greedy = reference
    block = ModelConfig.from_preset("tiny").block_size
    # plus a prompt 6 tokens short of the context: its answer is cut to 6 tokens, and batching it
    # must not cut its neighbours' answers too
    long = (enc.encode("y = x + 1\n") * block)[:block - 6]  # a prompt may be token ids
    prompts = PROMPTS + [long]
    results = [None] * len(prompts)

    def client(i):
        results[i] = post(port, "/v1/completions", {"model": "tiny", "prompt": prompts[i], "max_tokens": 16,
                                                   "temperature": 0})
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for p, (status, body) in zip(prompts, results):
        assert status == 200, body
        limit = min(16, block - len(p)) if isinstance(p, list) else 16
        ids, new = greedy(p, limit)
        ch = body["choices"][0]
        assert ch["text"] == enc.decode(new)
        assert ch["finish_reason"] == ("length" if len(new) == limit else "stop")
        assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(new),
                                 "total_tokens": len(ids) + len(new)}
    # a list of prompts and n: choices in prompt-major order, greedy copies identical
    status, body = post(port, "/v1/completions", {"prompt": PROMPTS[:2], "n": 2, "max_tokens": 8,
                                                  "temperature": 0})
    assert status == 200
    texts = [c["text"] for c in body["choices"]]
    assert texts == [enc.decode(greedy(PROMPTS[0], 8)[1])] * 2 + [enc.decode(greedy(PROMPTS[1], 8)[1])] * 2
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]


def test_stop_strings_are_honoured(server, reference):
    _, port = server
    _, enc, greedy = reference
    full = enc.decode(greedy(PROMPTS[3], 24)[1])
    stop = full[5:7]  # a piece of what the model will say
    assert len(stop) == 2
    status, body = post(port, "/v1/completions", {"prompt": PROMPTS[3], "max_tokens": 24, "temperature": 0,
                                                  "stop": [stop, "\x00never"]})
    assert status == 200
    ch = body["choices"][0]
    assert ch["text"] == full[:full.find(stop)] and ch["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] < 24  # generation itself stopped early


def test_chat_renders_template(server, reference):
    _, port = server
    _, enc, greedy = reference
    msgs = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Sort a list."}]
    status, body = post(port, "/v1/chat/completions", {"model": "tiny", "messages": msgs, "max_tokens": 10,
                                                       "temperature": 0})
    assert status == 200 and body["object"] == "chat.completion"
    text = enc.decode(greedy(sample.render_chat(msgs), 10)[1])
    cut = min((text.find(s) for s in sample.CHAT_STOP if s in text), default=len(text))
    assert body["choices"][0]["message"] == {"role": "assistant", "content": text[:cut]}


def test_errors_are_json_4xx_and_server_keeps_serving(server):
    proc, port = server
    cases = [
        (dict(raw=b'{"prompt": "x", '), 400, None),                                   # malformed JSON
        (dict(body={"model": "gpt-4", "prompt": "x"}), 404, "model_not_found"),     # unknown model
        (dict(body={"prompt": "def f():\n" * 400}), 400, "context_length_exceeded"),  # longer than context
        (dict(body={"prompt": "x", "temperature": "hot"}), 400, None),              # bad field
        (dict(body={"prompt": "x", "max_tokens": 0}), 400, None),
        (dict(body={"prompt": ""}), 400, None),
        (dict(body={"messages": []}, path="/v1/chat/completions"), 400, None),
        (dict(body={"prompt": "x"}, path="/v1/nowhere"), 404, None),
        (dict(raw=b"{}", headers={"Content-Length": str(10 ** 8)}), 413, None),     # body too large
    ]
    for kw, status, code in cases:
        s, body = post(port, kw.pop("path", "/v1/completions"), **kw)
        assert s == status, (kw, body)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        if code:
            assert body["error"]["code"] == code
        s, body = post(port, "/v1/completions", {"prompt": "x = 1", "max_tokens": 2, "temperature": 0})
        assert s == 200 and len(body["choices"]) == 1  # still serving
    assert get(port, "/v1/nothing")[0] == 404
    assert proc.poll() is None


def test_sigterm_shuts_down_cleanly(server):
    proc, port = server
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "shutting down" in out
