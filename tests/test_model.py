"""model.py: sizes, the triton path vs the torch path, KV-cache generation vs full recomputation,
and Hugging Face Llama checkpoints checked against an independent Llama written here."""
import json
import math
import struct

import pytest
import torch
import torch.nn.functional as F

from kernels import INTERPRET
from formats import load_safetensors
from model import ModelConfig, PRESETS, Transformer, apply_rope, rope_cos_sin

DEVICE = "cpu" if INTERPRET else "cuda"  # the triton path: interpreter on CPU, else a GPU


def small_model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = ModelConfig.from_preset("tiny", backend="torch", **overrides)
    model = Transformer(cfg)
    # larger random weights than the init so that greedy decoding produces varied tokens
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.15)
    return model


# -----------------------------------------------------------------------------
# config and sizes


def test_default_config_is_the_paper_model():
    cfg = ModelConfig()
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim) == (24, 2048, 16, 16, 128)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.block_size) == (5632, 64000, 8192)
    with torch.device("meta"):
        model = Transformer(cfg)
    assert abs(model.num_params() - 1.364e9) / 1.364e9 < 0.005
    assert abs(model.num_params(non_embedding=True) - 1.233e9) / 1.233e9 < 0.005
    assert isinstance(model.layers, torch.nn.ModuleList) and len(model.layers) == 24
    assert not any(n.endswith("bias") for n, _ in model.named_parameters())
    assert model.lm_head.weight is model.embed_tokens.weight


def test_meta_init_then_to_empty_keeps_the_tie():
    with torch.device("meta"):
        model = Transformer(ModelConfig.from_preset("tiny"))
    model.to_empty(device="cpu")
    model.init_weights()
    assert model.lm_head.weight is model.embed_tokens.weight
    assert model.layers[0].mlp_norm.weight.eq(1).all()
    std = model.layers[1].mlp.down_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(2 * 2)) < 0.002  # the scaled residual-projection init


def test_presets_build():
    assert {"snowcoder-1.3b", "tiny", "cpu"} <= set(PRESETS)
    tiny = ModelConfig.from_preset("tiny")
    assert (tiny.n_layer, tiny.n_embd, tiny.n_head, tiny.n_kv_head, tiny.vocab_size, tiny.block_size) == (2, 64, 4, 2, 1024, 256)
    cpu = ModelConfig.from_preset("cpu", n_layer=2)
    assert cpu.head_dim == 64 and cpu.n_layer == 2


@pytest.mark.parametrize("overrides, word", [
    (dict(n_embd=100, n_head=16), "n_embd"),
    (dict(n_head=16, n_kv_head=5), "n_kv_head"),
    (dict(n_embd=48, n_head=16), "even"),
    (dict(n_layer=0), "n_layer"),
    (dict(backend="cuda"), "backend"),
])
def test_inconsistent_config_is_one_clear_error(overrides, word):
    with pytest.raises(ValueError, match=word):
        ModelConfig(**overrides)
    with pytest.raises(ValueError, match="unknown model preset"):
        ModelConfig.from_preset("gpt5")


def test_estimate_mfu_formula():
    with torch.device("meta"):
        model = Transformer(ModelConfig())
    flops_per_token = 6 * model.num_params() + 12 * 24 * 2048 * 8192
    # a step that does exactly the H100's peak in one second is 100% MFU
    assert math.isclose(model.estimate_mfu(989e12 / flops_per_token, 1.0), 1.0)


# -----------------------------------------------------------------------------
# forward


def test_forward_loss_and_ignore_index():
    model = Transformer(ModelConfig.from_preset("tiny", backend="torch"))
    idx, targets = torch.randint(0, 1024, (2, 33)), torch.randint(0, 1024, (2, 33))
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 33, 1024)
    assert abs(loss.item() - math.log(1024)) < 0.1  # the init predicts ~uniformly
    masked_targets = targets.clone()
    masked_targets[:, :10] = -1
    _, masked = model(idx, masked_targets)
    expect = F.cross_entropy(logits[:, 10:].reshape(-1, 1024), targets[:, 10:].reshape(-1))
    assert torch.allclose(masked, expect, atol=1e-6)
    assert model(idx)[1] is None


def test_loss_only_equals_the_plain_loss_and_grads():
    """The training forward (loss_only: head + cross-entropy chunked, no full logits) computes the
    plain path's loss and gradients; also with chunks smaller than the batch and ignored targets."""
    torch.manual_seed(0)
    plain = Transformer(ModelConfig.from_preset("tiny", backend="torch"))
    fused = Transformer(ModelConfig.from_preset("tiny", backend="torch"))
    fused.load_state_dict(plain.state_dict())
    idx, targets = torch.randint(0, 1024, (2, 33)), torch.randint(0, 1024, (2, 33))
    targets[1, :7] = -1
    _, loss_ref = plain(idx, targets)
    loss = fused(idx, targets, loss_only=True)
    assert loss.dim() == 0 and torch.allclose(loss, loss_ref, atol=1e-6)
    (2 * loss_ref).backward()
    (2 * loss).backward()
    for (name, a), b in zip(plain.named_parameters(), fused.parameters()):
        assert torch.allclose(b.grad, a.grad, atol=1e-6, rtol=1e-4), name


def test_rope_keeps_the_dtype():
    """RoPE in bf16 stays bf16 (no fp32 copy of q and k) and matches the fp32 rotation within
    bf16 rounding."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 50, 64)
    cos, sin = rope_cos_sin(torch.arange(50), 64, 10000.0)
    ref = apply_rope(x, cos, sin)
    cos16, sin16 = rope_cos_sin(torch.arange(50), 64, 10000.0, dtype=torch.bfloat16)
    got = apply_rope(x.bfloat16(), cos16, sin16)
    assert cos16.dtype == got.dtype == torch.bfloat16
    assert apply_rope(x.bfloat16(), cos, sin).dtype == torch.bfloat16  # fp32 tables (autocast) do not promote q
    assert (got.float() - ref).abs().max() < 4e-2 * ref.abs().max()
    # the rotation itself: pairs (i, i + D/2) rotated by position * theta^(-2i/D)
    angle = 7 * 10000.0 ** (-torch.arange(0, 64, 2).float() / 64)
    x1, x2 = x[0, 0, 7, :32], x[0, 0, 7, 32:]
    expect = torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()])
    assert torch.allclose(ref[0, 0, 7], expect, atol=1e-5)


def test_triton_path_matches_torch_path():
    # head dim 64, GQA, T not a multiple of the kernel block
    torch.manual_seed(0)
    cfg = dict(n_embd=128, n_head=2, n_kv_head=1, intermediate_size=256)
    ref = Transformer(ModelConfig.from_preset("tiny", backend="torch", **cfg)).to(DEVICE)
    tri = Transformer(ModelConfig.from_preset("tiny", backend="triton", **cfg)).to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 1024, (2, 37), device=DEVICE)
    targets = torch.randint(0, 1024, (2, 37), device=DEVICE)
    targets[0, :5] = -1
    (l_ref, loss_ref), (l_tri, loss_tri) = ref(idx, targets), tri(idx, targets)
    loss_ref.backward()
    loss_tri.backward()
    tol = 1 if INTERPRET else 1000  # fp32 matmuls are TF32 inside the kernel on a GPU
    assert torch.allclose(l_tri, l_ref, atol=1e-5 * tol)
    assert abs(loss_tri.item() - loss_ref.item()) < 1e-5 * tol
    for (name, a), b in zip(ref.named_parameters(), tri.parameters()):
        assert torch.allclose(b.grad, a.grad, atol=1e-6 * tol, rtol=1e-4), name
    # the training forward: fused linear + cross-entropy (no logits), the same loss and gradients
    tri.zero_grad()
    loss_fused = tri(idx, targets, loss_only=True)
    loss_fused.backward()
    assert abs(loss_fused.item() - loss_ref.item()) < 1e-5 * tol
    for (name, a), b in zip(ref.named_parameters(), tri.parameters()):
        assert torch.allclose(b.grad, a.grad, atol=1e-6 * tol, rtol=1e-4), name


def test_triton_path_bf16_error_like_torch():
    # the whole model in bf16: each gradient's error vs the fp32 model within 2x of the torch path's
    torch.manual_seed(0)
    cfg = dict(n_embd=128, n_head=2, n_kv_head=1, intermediate_size=256)
    exact = Transformer(ModelConfig.from_preset("tiny", backend="torch", **cfg)).to(DEVICE)
    models = {b: Transformer(ModelConfig.from_preset("tiny", backend=b, **cfg)).to(DEVICE) for b in ("torch", "triton")}
    idx = torch.randint(0, 1024, (2, 70), device=DEVICE)
    exact(idx, idx)[1].backward()
    for m in models.values():
        m.load_state_dict(exact.state_dict())
        m.bfloat16()
        m(idx, idx)[1].backward()
    for (name, e), t, g in zip(exact.named_parameters(), models["torch"].parameters(), models["triton"].parameters()):
        err_torch = (t.grad.float() - e.grad).abs().max().item()
        err_triton = (g.grad.float() - e.grad).abs().max().item()
        assert err_triton <= 2 * err_torch + 1e-6, (name, err_triton, err_torch)


# -----------------------------------------------------------------------------
# generation


def greedy_by_recompute(model, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        logits, _ = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_generate_kv_cache_equals_full_recompute():
    model = small_model()
    prompts = [[5], [17, 3, 99, 512, 7], [i * 37 % 1024 for i in range(12)]]
    out = model.generate(prompts, max_new_tokens=10)
    assert [len(o) for o in out] == [10, 10, 10]
    for prompt, got in zip(prompts, out):
        assert got == greedy_by_recompute(model, prompt, 10)
    assert len({tuple(o) for o in out}) == 3 and len(set(out[1])) > 2  # a real sequence, not a constant


def test_generate_triton_path_equals_torch_path():
    # decoding through the kernels: per-row RoPE positions (left padding) at offsets past 0 each step
    ref = small_model()
    tri = Transformer(ModelConfig.from_preset("tiny", backend="triton")).to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    prompts = [[5, 9], [17, 3, 99, 512, 7, 64]]
    assert tri.generate(prompts, max_new_tokens=5) == ref.generate(prompts, max_new_tokens=5)


def test_generate_eos_stop_and_sampling():
    model = small_model(seed=1)
    prompts = [[1, 2, 3], [40, 41]]
    greedy = model.generate(prompts, max_new_tokens=8)
    # eos: the row ends before the first eos token, the other row is unaffected unless it meets it too
    eos = greedy[0][3]
    out = model.generate(prompts, max_new_tokens=8, eos_id=eos)
    for g, o in zip(greedy, out):
        assert o == (g[:g.index(eos)] if eos in g else g)
    # stop strings: each token decodes to one distinct character; the stopping token is kept
    decode = lambda ids: "".join(chr(0x100 + t) for t in ids)
    stop = chr(0x100 + greedy[1][2])
    out = model.generate(prompts, max_new_tokens=8, stop=[stop], decode=decode)
    assert out[1] == greedy[1][:greedy[1].index(greedy[1][2]) + 1]
    # sampling: reproducible with a seed; a tiny nucleus keeps only the top token (= greedy)
    a = model.generate(prompts, max_new_tokens=8, temperature=1.0, seed=3)
    b = model.generate(prompts, max_new_tokens=8, temperature=1.0, seed=3)
    assert a == b
    assert model.generate(prompts, max_new_tokens=8, temperature=0.7, top_p=1e-6, seed=0) == greedy
    with pytest.raises(ValueError, match="at least one token"):
        model.generate([[1], []], max_new_tokens=2)


# -----------------------------------------------------------------------------
# Hugging Face layout


def test_save_from_pretrained_round_trip(tmp_path):
    for tie in (True, False):
        model = small_model(tie_embeddings=tie)
        model.save_pretrained(tmp_path / str(tie), eos_token_id=3)
        cfg = json.loads((tmp_path / str(tie) / "config.json").read_text())
        assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["tie_word_embeddings"] is tie
        assert cfg["num_key_value_heads"] == 2 and cfg["eos_token_id"] == 3
        names = load_safetensors(tmp_path / str(tie) / "model.safetensors")
        assert ("lm_head.weight" in names) is not tie
        loaded = Transformer.from_pretrained(tmp_path / str(tie), backend="torch")
        assert loaded.config == model.config
        for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), n
        idx = torch.randint(0, 1024, (1, 20))
        assert torch.equal(model(idx)[0], loaded(idx)[0])
        if tie:
            assert loaded.lm_head.weight is loaded.embed_tokens.weight


def write_safetensors_by_hand(path, tensors):
    """The published format, independently of model.py: u64 header size, JSON header, raw bytes."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": {torch.float32: "F32", torch.bfloat16: "BF16"}[t.dtype],
                        "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def hf_llama_checkpoint(tmp_path, cfg, dtype=torch.float32, drop=None, add=None, reshape=None, tie=False):
    """A random HF-layout Llama checkpoint in two shards with an index, as transformers writes it."""
    g = torch.Generator().manual_seed(0)
    d, f, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    hd = d // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (V, d), "model.norm.weight": (d,)}
    if not tie:
        shapes["lm_head.weight"] = (V, d)
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                       p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
                       p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
                       p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
                       p + "mlp.down_proj.weight": (d, f)})
    sd = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            sd[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            sd[name] = torch.randn(shape, generator=g) / math.sqrt(shape[1])
    sd = {k: v.to(dtype) for k, v in sd.items()}
    if drop:
        del sd[drop]
    if add:
        sd[add] = torch.zeros(3)
    if reshape:
        sd[reshape] = sd[reshape][:-1]
    names = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        write_safetensors_by_hand(tmp_path / shard, {k: sd[k] for k in keys})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: s for s, ks in shards.items() for k in ks}}))
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "max_position_embeddings": 128, "tie_word_embeddings": tie, **cfg}))
    return sd


def independent_llama(sd, cfg, idx):
    """Llama as published (HF modeling_llama): RMSNorm = w * x / rms(x); RoPE with
    rotate_half (dims i and i + d/2 paired), repeat_kv for GQA, causal softmax, SwiGLU."""
    d, H, Hkv, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    hd, T = d // H, idx.shape[1]
    sd = {k: v.float() for k, v in sd.items()}

    def norm(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rotate_half(x):
        return torch.cat((-x[..., hd // 2:], x[..., : hd // 2]), dim=-1)

    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
    angles = torch.outer(torch.arange(T).float(), inv_freq)
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    x = sd["model.embed_tokens.weight"][idx]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, sd[p + "input_layernorm.weight"])
        q = (h @ sd[p + "self_attn.q_proj.weight"].T).view(1, T, H, hd).transpose(1, 2)
        k = (h @ sd[p + "self_attn.k_proj.weight"].T).view(1, T, Hkv, hd).transpose(1, 2)
        v = (h @ sd[p + "self_attn.v_proj.weight"].T).view(1, T, Hkv, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(1, T, d) @ sd[p + "self_attn.o_proj.weight"].T
        h = norm(x, sd[p + "post_attention_layernorm.weight"])
        gate, up = h @ sd[p + "mlp.gate_proj.weight"].T, h @ sd[p + "mlp.up_proj.weight"].T
        x = x + (F.silu(gate) * up) @ sd[p + "mlp.down_proj.weight"].T
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return norm(x, sd["model.norm.weight"]) @ head.T


HF_CFG = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=300, rms_norm_eps=1e-6, rope_theta=500.0)


@pytest.mark.parametrize("tie", [False, True])
def test_hf_checkpoint_matches_independent_llama(tmp_path, tie):
    sd = hf_llama_checkpoint(tmp_path, HF_CFG, tie=tie)
    model = Transformer.from_pretrained(tmp_path, backend="torch")
    assert model.config.tie_embeddings is tie and model.config.n_kv_head == 2
    idx = torch.randint(0, 300, (1, 29))
    logits, _ = model(idx)
    expect = independent_llama(sd, HF_CFG, idx)
    assert torch.allclose(logits, expect, atol=1e-4), (logits - expect).abs().max()
    # bf16 checkpoints load too (into fp32 parameters, exactly)
    sd16 = hf_llama_checkpoint(tmp_path, HF_CFG, dtype=torch.bfloat16, tie=tie)
    model16 = Transformer.from_pretrained(tmp_path, backend="torch")
    assert torch.equal(model16.layers[1].mlp.down_proj.weight, sd16["model.layers.1.mlp.down_proj.weight"].float())


@pytest.mark.parametrize("kind, name", [
    ("drop", "model.layers.1.self_attn.k_proj.weight"),
    ("add", "model.layers.0.self_attn.q_norm.weight"),
    ("reshape", "model.layers.0.mlp.up_proj.weight"),
])
def test_bad_checkpoint_names_the_tensor(tmp_path, kind, name):
    hf_llama_checkpoint(tmp_path, HF_CFG, **{kind: name})
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        Transformer.from_pretrained(tmp_path)


def test_rope_parameters_of_transformers_5(tmp_path):
    """transformers 5 writes rope_theta inside rope_parameters: it must be read, not defaulted."""
    cfg = {k: v for k, v in HF_CFG.items() if k != "rope_theta"}
    sd = hf_llama_checkpoint(tmp_path, {**cfg, "rope_parameters": {"rope_type": "default", "rope_theta": 500.0}})
    model = Transformer.from_pretrained(tmp_path, backend="torch")
    assert model.config.rope_theta == 500.0
    idx = torch.randint(0, 300, (1, 29))
    assert torch.allclose(model(idx)[0], independent_llama(sd, HF_CFG, idx), atol=1e-4)


@pytest.mark.parametrize("extra, word", [
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, r"rope_scaling\.rope_type='llama3'"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, r"rope_scaling\.rope_type='linear'"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, r"rope_parameters\.rope_type='yarn'"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}},
     r"rope_parameters\.partial_rotary_factor"),
])
def test_scaled_rope_is_refused(tmp_path, extra, word):
    hf_llama_checkpoint(tmp_path, {**HF_CFG, **extra})
    with pytest.raises(ValueError, match=word):
        Transformer.from_pretrained(tmp_path)


def test_bad_checkpoint_config(tmp_path):
    hf_llama_checkpoint(tmp_path, {**HF_CFG, "num_attention_heads": 5})
    with pytest.raises(ValueError, match="n_embd=64 is not divisible by n_head=5"):
        Transformer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="config.json"):
        Transformer.from_pretrained(tmp_path / "nowhere")
