"""eval/loss.py: bits per byte equals a hand computation on a tiny model, the sliding window gives
every target at least half a context, and held-out bpb leaves special tokens out of both sums."""
import math

import numpy as np
import pytest
import torch

from eval import loss as L
from model import ModelConfig, Transformer


@pytest.fixture(scope="module")
def tiny_model(tiny_tokenizer):
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("tiny", vocab_size=tiny_tokenizer.n_vocab, backend="torch")
    return Transformer(cfg).eval()


def _full_logprobs(model, ids):
    """ln p(ids[t] | ids[:t]) for t >= 1 from one forward over the whole sequence."""
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids[:-1])[None])
    lp = torch.log_softmax(logits[0].double(), -1)
    return [lp[t - 1, ids[t]].item() for t in range(1, len(ids))]


def test_aligned_bpb_equals_hand_computation(tiny_model, tiny_tokenizer):
    enc = tiny_tokenizer
    pairs = [("t/0", "def add(a, b):\n", "    return a + b\n"),
             ("t/1", "import os\n\ndef home():\n", "    return os.environ.get('HOME', '') + 'é'\n")]
    res = L.aligned_bpb(L.local_scorer(tiny_model, 256, batch_tokens=64), enc, pairs)  # 2 rows a batch
    bits = nbytes = 0.0
    for _, ctx, cont in pairs:
        c, s = enc.encode(ctx), enc.encode(cont)
        lp = _full_logprobs(tiny_model, c + s)
        bits += -sum(lp[len(c) - 1:]) / math.log(2)
        nbytes += len(cont.encode("utf-8"))
    assert res["bytes"] == nbytes and res["n_tasks"] == 2
    assert res["bpb"] == pytest.approx(bits / nbytes, rel=1e-6)
    assert 0 < res["bpb"] < 40  # a random model: around log2(vocab) bits per token, a few bytes per token


def test_sliding_window_context(tiny_model, tiny_tokenizer):
    """Longer than the window: the first T targets equal the full-prefix values exactly, and every
    later one equals the model's prediction from some context of length T//2 .. T."""
    T = 16
    ids = tiny_tokenizer.encode("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n" * 3)
    assert len(ids) > 2 * T
    got = L.local_scorer(tiny_model, T)([(ids, 1)])[0]
    assert len(got) == len(ids) - 1
    # batched with shorter sequences (right-padded rows) gives the same values
    again = L.local_scorer(tiny_model, T, batch_tokens=10 ** 6)([(ids[:7], 3), (ids, 1), (ids[:20], 1)])
    np.testing.assert_allclose(again[1], got, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again[0], _full_logprobs(tiny_model, ids[:7])[2:], rtol=1e-5, atol=1e-6)
    full = _full_logprobs(tiny_model, ids[:T + 1])
    np.testing.assert_allclose(got[:T], full, rtol=1e-5, atol=1e-6)
    for t in range(T + 1, len(ids)):
        cands = []
        for c in range(T // 2, T + 1):
            with torch.no_grad():
                lg, _ = tiny_model(torch.tensor(ids[t - c:t])[None])
            cands.append(torch.log_softmax(lg[0, -1].double(), -1)[ids[t]].item())
        assert min(abs(v - got[t - 1]) for v in cands) < 1e-5, t


def test_heldout_bpb_skips_special_tokens(tiny_model, tiny_tokenizer, tmp_path):
    enc = tiny_tokenizer
    eot = enc.eot_token
    text = ["x = 1\n", "def f():\n    pass\n", "print('hi')\n"]
    toks = []
    for t in text:
        toks += enc.encode(t) + [eot]
    arr = np.array(toks, dtype=np.uint16)
    shard = tmp_path / "val-Python-00000.bin"
    arr.tofile(shard)
    man = {"shards": [{"path": str(shard), "split": "val", "language": "Python", "tokens": len(arr)},
                      {"path": str(shard), "split": "train", "language": "Python", "tokens": len(arr)}]}
    score = L.local_scorer(tiny_model, 256)
    res = L.heldout_bpb(score, enc, man, max_tokens=10 ** 6)
    lp = _full_logprobs(tiny_model, toks)
    bits = -sum(v for v, tgt in zip(lp, toks[1:]) if tgt != eot) / math.log(2)
    nbytes = len("".join(text).encode()) - len(enc.decode_single_token_bytes(toks[0]))  # the first token is no target
    assert res["Python"]["bytes"] == nbytes
    assert res["Python"]["bpb"] == pytest.approx(bits / nbytes, rel=1e-6)
    assert res["all"]["bpb"] == pytest.approx(res["Python"]["bpb"])
    assert res["Python"]["capped"] is False
    capped = L.heldout_bpb(score, enc, man, max_tokens=5)
    assert capped["Python"]["capped"] is True and capped["Python"]["tokens_available"] == len(arr)


def test_solution_pairs_humaneval(bench_dir):
    pairs = L.solution_pairs("humaneval+")
    assert len(pairs) == 164
    tid, ctx, cont = pairs[0]
    assert tid == "HumanEval/0" and "def has_close_elements" in ctx and "return" in cont
    mb = L.solution_pairs("mbpp+")
    assert len(mb) == 378 and all(c.strip() for _, _, c in mb)


def test_server_prompt_logprobs_give_the_same_bpb(tiny_model, tiny_tokenizer, tiny_tokenizer_path, tmp_path):
    """The metric through `sample.py --serve` (token-id prompt, echo, logprobs, max_tokens=0) equals the
    local computation: the path a larger model behind an OpenAI-compatible server takes."""
    import shutil
    import sample
    ckpt = tmp_path / "ckpt"
    tiny_model.save_pretrained(str(ckpt))
    shutil.copyfile(tiny_tokenizer_path, ckpt / "tokenizer.tiktoken")
    pairs = [("t/0", "def add(a, b):\n", "    return a + b\n"), ("t/1", "x = [", "1, 2, 3]\n")]
    local = L.aligned_bpb(L.local_scorer(tiny_model, 256), tiny_tokenizer, pairs)
    proc, port = sample.spawn_server(ckpt, "--model-name", "tiny", "--device", "cpu")
    try:
        remote = L.aligned_bpb(L.server_scorer(f"http://127.0.0.1:{port}/v1", "tiny"), tiny_tokenizer, pairs)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert remote["bytes"] == local["bytes"]
    assert remote["bpb"] == pytest.approx(local["bpb"], rel=1e-4)
