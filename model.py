"""
The Arctic-SnowCoder-1.3B transformer (arXiv 2409.02326, Table 1), in one readable file.

A Llama-2-style decoder: token embedding -> 24 x [RMSNorm -> causal self-attention with RoPE
(GQA when n_kv_head < n_head) -> residual, RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm ->
output head tied to the embedding. No biases anywhere.

Two backends compute the same function:
  "torch"  - plain PyTorch (F.scaled_dot_product_attention + an fp32 RMSNorm). The reference.
  "triton" - our fused kernels in kernels/ (FlashAttention-style attention, RMSNorm fused with
             the residual add, RoPE, the SwiGLU gate). Runs on CUDA, and on CPU tensors under
             TRITON_INTERPRET=1.
  "auto"   - triton when the input lives on a CUDA device, torch otherwise.
The training forward, model(idx, targets, loss_only=True), returns the loss alone: the output
head and the cross-entropy run together a chunk of tokens at a time (kernels/cross_entropy.py,
Triton or PyTorch per the backend), so the (tokens, vocab) logits never exist. RoPE and SwiGLU
compute in the activations' dtype (as transformers does): no fp32 copies of q, k or the MLP
(the Triton kernels load bf16, do the math in fp32 registers and round once on store).

Checkpoints for inference use the Hugging Face Llama layout (config.json + model.safetensors,
read and written by formats.py), so the same files load in transformers/vLLM as
LlamaForCausalLM and published Llama-style checkpoints load here (plain RoPE only: a scaled
rope_scaling / rope_parameters is refused).
"""
import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from formats import load_safetensors, save_safetensors

# -----------------------------------------------------------------------------
# config


@dataclass
class ModelConfig:
    n_layer: int = 24
    n_embd: int = 2048
    n_head: int = 16
    n_kv_head: int = 16           # < n_head means grouped-query attention
    intermediate_size: int = 5632  # SwiGLU hidden size
    vocab_size: int = 64000
    block_size: int = 8192        # training context length
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    backend: str = "auto"         # "auto" (triton on CUDA, torch elsewhere) | "triton" | "torch"

    def __post_init__(self):
        problems = []
        for name in ("n_layer", "n_embd", "n_head", "n_kv_head", "intermediate_size", "vocab_size", "block_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                problems.append(f"{name}={getattr(self, name)!r} must be a positive int")
        if not problems:
            if self.n_embd % self.n_head:
                problems.append(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
            elif (self.n_embd // self.n_head) % 2:
                problems.append(f"head dim n_embd/n_head={self.n_embd // self.n_head} must be even for RoPE")
            if self.n_head % self.n_kv_head:
                problems.append(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if self.backend not in ("auto", "triton", "torch"):
            problems.append(f"backend={self.backend!r} must be 'auto', 'triton' or 'torch'")
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            problems.append("rope_theta and norm_eps must be positive")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ModelConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS = {
    "snowcoder-1.3b": {},  # the defaults above: the paper's model, 1.364B parameters
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=176,
                 vocab_size=1024, block_size=256),  # tests
    "cpu": dict(n_layer=4, n_embd=256, n_head=4, n_kv_head=4, intermediate_size=704,
                vocab_size=4096, block_size=512),   # the one-CPU speedrun (head dim 64)
}

# -----------------------------------------------------------------------------
# building blocks


def use_triton(backend: str, x: torch.Tensor) -> bool:
    if backend == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 (set before importing "
                         "kernels); use backend='torch' or 'auto' on a CPU")
    return backend == "triton" or (backend == "auto" and x.is_cuda)


def rms_norm_torch(x, weight, eps):
    # statistics in fp32 whatever the input dtype; the scale is applied in fp32 then cast back
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps, backend):
        super().__init__()
        self.eps, self.backend = eps, backend
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, residual=None):
        """RMSNorm(x) or, with a residual, (RMSNorm(x + residual), x + residual): the add is
        fused into the kernel on the triton path (saves one full read+write of the stream)."""
        if use_triton(self.backend, x):
            from kernels.rmsnorm import rms_norm
            return rms_norm(x, self.weight, self.eps, residual=residual)
        if residual is None:
            return rms_norm_torch(x, self.weight, self.eps)
        h = x + residual
        return rms_norm_torch(h, self.weight, self.eps), h


def rope_cos_sin(positions, head_dim, theta, dtype=torch.float32):
    """positions (T,) or (B, T) ints -> cos, sin of shape (..., T, head_dim/2) in `dtype`.
    The angles are computed in fp32 (position * frequency needs the mantissa at long contexts),
    then cast once per forward to the activations' dtype, so q and k are never upcast.
    Computed on the fly (cheap next to the matmuls) so there is no buffer to keep in sync with
    meta-device init, FSDP or per-row positions when decoding left-padded batches."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    freqs = positions.float()[..., None] * inv_freq  # (..., T, head_dim/2)
    return freqs.cos().to(dtype), freqs.sin().to(dtype)


def apply_rope(x, cos, sin):
    """x (B, H, T, D), cos/sin (T, D/2) or per-row (B, T, D/2), in x's dtype. Rotates pairs
    (i, i + D/2): the Hugging Face Llama ("rotate_half") convention, so HF checkpoints load
    without permuting the q/k projection rows. Computed in x's dtype, as transformers does."""
    # under autocast q/k are bf16 while the tables follow the fp32 embedding: cast the small
    # tables, or the products would promote all of q and k to fp32
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if cos.dim() == 3:  # per-row positions (B, T, D/2) -> broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    x1, x2 = x.chunk(2, dim=-1)                                  # (B, H, T, D/2) views, no copy
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def linear_cross_entropy(h, weight, targets, backend):
    """mean cross-entropy of softmax(h @ weight.T) against targets (-1 = ignored); h (N, d),
    weight (vocab, d), targets (N,). The (N, vocab) logits never exist: kernels/cross_entropy.py
    runs the head and the loss a chunk of tokens at a time, the per-row step in Triton on the
    triton path and in PyTorch otherwise (the same algorithm, the same gradients)."""
    from kernels import cross_entropy
    if use_triton(backend, h):
        return cross_entropy.fused_linear_cross_entropy(h, weight, targets, ignore_index=-1)
    # the PyTorch row step makes a few fp32 temporaries per chunk: smaller chunks (16M logits)
    # keep them in a CPU's caches and the peak low
    chunk = max(1, (1 << 24) // weight.shape[0])
    return cross_entropy.linear_cross_entropy_chunked(h, weight, targets, ignore_index=-1, chunk=chunk)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.backend = config.backend
        d, kv = config.n_embd, config.n_kv_head * config.head_dim
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin, cache=None, attn_mask=None):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)     # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        if use_triton(self.backend, x):  # one pass each over q and k, fp32 only in registers
            from kernels.rope import rope
            q, k = rope(q, cos, sin), rope(k, cos, sin)
        else:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            # decoding: write this step's keys/values at [start, start+T) and attend to the
            # whole prefix; attn_mask (B, 1, T, start+T) hides left padding and the future.
            k_buf, v_buf, start = cache
            k_buf[:, :, start:start + T] = k
            v_buf[:, :, start:start + T] = v
            k, v = k_buf[:, :, :start + T], v_buf[:, :, :start + T]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                               enable_gqa=self.n_kv_head != self.n_head)
        elif use_triton(self.backend, x):
            from kernels.attention import flash_attention
            y = flash_attention(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               enable_gqa=self.n_kv_head != self.n_head)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, nh*hd)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)
        self.backend = config.backend

    def forward(self, x):
        a, b = self.gate_proj(x), self.up_proj(x)  # (B, T, intermediate_size) each
        if use_triton(self.backend, x):
            # fused silu(a) * b: saves a and b only (eager also keeps silu(a)), recomputes in backward
            from kernels.swiglu import swiglu
            return self.down_proj(swiglu(a, b))
        return self.down_proj(F.silu(a) * b)  # SwiGLU


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps, config.backend)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps, config.backend)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, cache=None, attn_mask=None):
        a = self.attn(self.attn_norm(x), cos, sin, cache, attn_mask)
        h_normed, h = self.mlp_norm(a, residual=x)  # h = x + a, normed in the same pass
        return h + self.mlp(h_normed)

# -----------------------------------------------------------------------------
# the model


def hf_rope_theta(hf, path):
    """RoPE base of an HF config: transformers 5's rope_parameters {"rope_type", "rope_theta"},
    or the older top-level rope_theta with rope_scaling. Only plain RoPE is implemented here, so
    a scaled variant (llama3, yarn, linear, dynamic, ...) is an error naming the key rather than
    a model that silently computes other positions."""
    theta = hf.get("rope_theta", 10000.0)
    for key in ("rope_parameters", "rope_scaling"):
        params = hf.get(key)
        if params is None:
            continue
        if not isinstance(params, dict):
            raise ValueError(f"{path}: {key}={params!r} is not a dict")
        kind = params.get("rope_type", params.get("type", "default"))
        if kind != "default":
            raise ValueError(f"{path}: {key}.rope_type={kind!r} is not supported (only 'default', plain RoPE)")
        other = sorted(set(params) - {"rope_type", "type", "rope_theta"})
        if other:
            raise ValueError(f"{path}: {key}.{other[0]}={params[other[0]]!r} is not supported (plain RoPE only)")
        theta = params.get("rope_theta", theta)
    if not isinstance(theta, (int, float)) or isinstance(theta, bool):
        raise ValueError(f"{path}: rope_theta={theta!r} is not a number")
    return float(theta)


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.norm = RMSNorm(config.n_embd, config.norm_eps, config.backend)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """One scheme (GPT-2's, as in nanoGPT): every matrix and the embedding ~ N(0, 0.02);
        the two projections that write into the residual stream (o_proj, down_proj) get
        0.02/sqrt(2*n_layer), so the stream's variance stays ~constant with depth (each block
        adds two such terms); norm gains start at 1. Public so that a model built on the meta
        device can be initialised after to_empty() (the FSDP idiom)."""
        if self.config.tie_embeddings:  # to_empty() makes new tensors per module: tie them again
            self.lm_head.weight = self.embed_tokens.weight
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                p.normal_(0.0, std / math.sqrt(2 * self.config.n_layer))
            else:
                p.normal_(0.0, std)

    def num_params(self, non_embedding=False):
        """Parameters counted once (a tied head is the embedding). non_embedding drops the input
        embedding table (the paper's 1.233B); an untied output head still counts (it is compute)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.embed_tokens.weight.numel()
        return n

    def estimate_mfu(self, tokens_per_iter, dt, seq_len=None):
        """Model FLOPs utilisation vs an H100 SXM's bf16 dense peak (989 TFLOPS). FLOPs per token:
        6N for the matmuls forward+backward, plus 12*L*d*T for attention scores and values
        (no discount for causality, the common convention)."""
        cfg = self.config
        T = seq_len or cfg.block_size
        flops_per_token = 6 * self.num_params() + 12 * cfg.n_layer * cfg.n_embd * T
        return flops_per_token * tokens_per_iter / dt / 989e12

    def forward(self, idx, targets=None, loss_only=False):
        """idx (B, T) token ids -> (logits (B, T, vocab), loss), loss the mean next-token
        cross-entropy over positions whose target is not -1 (None when targets is None).
        loss_only=True (training, evaluation) returns the loss alone and never builds the
        (B, T, vocab) logits: the head and the cross-entropy run fused, chunk by chunk."""
        B, T = idx.shape
        x = self.embed_tokens(idx)  # (B, T, d)
        cos, sin = rope_cos_sin(torch.arange(T, device=idx.device), self.config.head_dim, self.config.rope_theta,
                                dtype=x.dtype)
        for block in self.layers:
            x = block(x, cos, sin)
        h = self.norm(x)  # (B, T, d)
        if loss_only:
            if targets is None:
                raise ValueError("forward: loss_only=True needs targets")
            return linear_cross_entropy(h.view(B * T, -1), self.lm_head.weight, targets.reshape(-1),
                                        self.config.backend)
        logits = self.lm_head(h)  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    # -------------------------------------------------------------------------
    # generation with a KV cache

    @torch.no_grad()
    def generate(self, prompts, max_new_tokens, temperature=0.0, top_p=1.0, stop=None, decode=None,
                 eos_id=None, seed=None):
        """prompts: list of token-id lists (any lengths). Returns the NEW tokens of each prompt.
        A row stops when it produces eos_id (not included) or when decode(new_tokens) contains one
        of the stop strings (the tokens are kept; the caller cuts the text). temperature 0 is
        greedy; otherwise softmax(logits/temperature) restricted to the top_p nucleus.

        Prompts are left-padded to a common length P; each row keeps its own RoPE positions
        (0 at its first real token) and a key mask hides its padding, so every row computes
        exactly what it would alone. Keys/values live in a preallocated cache (B, n_kv, P+new, hd)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate: every prompt needs at least one token")
        if stop and decode is None:
            raise ValueError("generate: stop strings need a decode callable")
        cfg, device = self.config, self.embed_tokens.weight.device
        dtype = self.embed_tokens.weight.dtype
        B, P = len(prompts), max(len(p) for p in prompts)
        if P > cfg.block_size:
            raise ValueError(f"generate: prompt of {P} tokens exceeds block_size={cfg.block_size}")
        max_new_tokens = min(max_new_tokens, cfg.block_size - P)  # never decode past the context
        if max_new_tokens <= 0:
            return [[] for _ in prompts]
        gen = torch.Generator(device=device)
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()  # a fresh generator is otherwise the same default seed on every call
        L = P + max_new_tokens
        pad = torch.tensor([P - len(p) for p in prompts], device=device)           # (B,)
        idx = torch.zeros(B, P, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            idx[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
        slot = torch.arange(L, device=device)
        key_ok = slot[None, :] >= pad[:, None]                                      # (B, L) real tokens
        positions = (slot[None, :] - pad[:, None]).clamp(min=0)                     # (B, L) per-row RoPE
        caches = [(torch.zeros(B, cfg.n_kv_head, L, cfg.head_dim, device=device, dtype=dtype),
                   torch.zeros(B, cfg.n_kv_head, L, cfg.head_dim, device=device, dtype=dtype))
                  for _ in self.layers]

        def step(tokens, start):  # tokens (B, T) at slots [start, start+T) -> logits of the last (B, vocab)
            T = tokens.size(1)
            q_slot = slot[start:start + T]
            mask = key_ok[:, None, None, :start + T] & (slot[:start + T][None, :] <= q_slot[:, None])[None, None]
            # a padding query row would see no key at all (NaN softmax): let it see itself
            mask = mask | (slot[:start + T][None, :] == q_slot[:, None])[None, None]
            cos, sin = rope_cos_sin(positions[:, start:start + T], cfg.head_dim, cfg.rope_theta, dtype=dtype)
            x = self.embed_tokens(tokens)
            for block, (k_buf, v_buf) in zip(self.layers, caches):
                x = block(x, cos, sin, cache=(k_buf, v_buf, start), attn_mask=mask)
            return self.lm_head(self.norm(x[:, -1])).float()

        out = [[] for _ in prompts]
        done = [False] * B
        logits = step(idx, 0)
        for t in range(max_new_tokens):
            if temperature == 0.0:
                nxt = logits.argmax(-1)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                if top_p < 1.0:
                    sp, si = probs.sort(-1, descending=True)
                    # keep the smallest prefix whose mass reaches top_p (the top token always stays)
                    drop = sp.cumsum(-1) - sp >= top_p
                    sp = sp.masked_fill(drop, 0.0)
                    probs = torch.zeros_like(probs).scatter_(-1, si, sp)
                nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
            for i, tok in enumerate(nxt.tolist()):
                if done[i]:
                    continue
                if eos_id is not None and tok == eos_id:
                    done[i] = True
                    continue
                out[i].append(tok)
                if stop and any(s in decode(out[i]) for s in stop):
                    done[i] = True
            if all(done) or t == max_new_tokens - 1:
                break
            logits = step(nxt[:, None], P + t)
        return out

    # -------------------------------------------------------------------------
    # Hugging Face Llama layout: config.json + model.safetensors

    def hf_state_dict(self):
        """Our parameters under Hugging Face LlamaForCausalLM names (tied head omitted)."""
        sd = {"model.embed_tokens.weight": self.embed_tokens.weight, "model.norm.weight": self.norm.weight}
        if not self.config.tie_embeddings:
            sd["lm_head.weight"] = self.lm_head.weight
        for i, b in enumerate(self.layers):
            p = f"model.layers.{i}."
            sd[p + "input_layernorm.weight"] = b.attn_norm.weight
            sd[p + "post_attention_layernorm.weight"] = b.mlp_norm.weight
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                sd[p + f"self_attn.{n}.weight"] = getattr(b.attn, n).weight
            for n in ("gate_proj", "up_proj", "down_proj"):
                sd[p + f"mlp.{n}.weight"] = getattr(b.mlp, n).weight
        return sd

    def save_pretrained(self, out_dir, dtype=None, **config_extra):
        """Write config.json (LlamaForCausalLM) and model.safetensors. dtype: save in this dtype
        (default: the parameters' own). config_extra: more config.json keys (e.g. eos_token_id)."""
        cfg = self.config
        os.makedirs(out_dir, exist_ok=True)
        tensors = {k: (v.detach().to(dtype) if dtype else v.detach()) for k, v in self.hf_state_dict().items()}
        first = next(iter(tensors.values()))
        hf = {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": cfg.n_embd, "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.head_dim,
            "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.block_size,
            "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta, "rope_scaling": None,
            "tie_word_embeddings": cfg.tie_embeddings, "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
            "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
            "torch_dtype": str(first.dtype).removeprefix("torch."),
        }
        hf.update(config_extra)
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(hf, f, indent=2)
        save_safetensors(tensors, os.path.join(out_dir, "model.safetensors"))

    @classmethod
    def from_pretrained(cls, ckpt_dir, backend=None, dtype=None, device="cpu"):
        """Load an HF Llama-layout directory (model.safetensors, or shards listed in
        model.safetensors.index.json). dtype: parameter dtype (default fp32)."""
        path = os.path.join(ckpt_dir, "config.json")
        if not os.path.isfile(path):
            raise ValueError(f"{path}: not found (expected a Hugging Face Llama checkpoint directory)")
        with open(path) as f:
            hf = json.load(f)
        if hf.get("model_type", "llama") != "llama":
            raise ValueError(f"{path}: model_type={hf.get('model_type')!r}, only 'llama' is supported")
        for key, ok in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
            if hf.get(key, ok) != ok:
                raise ValueError(f"{path}: {key}={hf[key]!r} is not supported (need {ok!r})")
        rope_theta = hf_rope_theta(hf, path)
        try:
            n_head = hf["num_attention_heads"]
            config = ModelConfig(
                n_layer=hf["num_hidden_layers"], n_embd=hf["hidden_size"], n_head=n_head,
                n_kv_head=hf.get("num_key_value_heads", n_head), intermediate_size=hf["intermediate_size"],
                vocab_size=hf["vocab_size"], block_size=hf.get("max_position_embeddings", 2048),
                rope_theta=rope_theta, norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
                tie_embeddings=bool(hf.get("tie_word_embeddings", False)), backend=backend or "auto")
        except KeyError as e:
            raise ValueError(f"{path}: missing key {e.args[0]!r}") from None
        except ValueError as e:  # inconsistent sizes: say which file
            raise ValueError(f"{path}: {e}") from None
        if hf.get("head_dim") not in (None, config.head_dim):
            raise ValueError(f"{path}: head_dim={hf['head_dim']} != hidden_size/num_attention_heads={config.head_dim}")
        with torch.device("meta"):
            model = cls(config)
        model.to_empty(device=device)
        if config.tie_embeddings:  # to_empty() unties shared parameters
            model.lm_head.weight = model.embed_tokens.weight
        if dtype is not None:
            model.to(dtype)
        tensors = load_hf_tensors(ckpt_dir)
        expected = model.hf_state_dict()
        if config.tie_embeddings and "lm_head.weight" in tensors:
            # some tied checkpoints also store the head; accept it only if it is the embedding
            head = tensors.pop("lm_head.weight")
            emb = tensors.get("model.embed_tokens.weight")
            if emb is None or head.shape != emb.shape or not torch.equal(head, emb):
                raise ValueError(f"{ckpt_dir}: tensor 'lm_head.weight' present but tie_word_embeddings=true "
                                 "and it differs from model.embed_tokens.weight")
        for name in list(tensors):
            if name.endswith("rotary_emb.inv_freq"):  # old HF exports store this buffer; we recompute it
                tensors.pop(name)
        missing = [n for n in expected if n not in tensors]
        extra = [n for n in tensors if n not in expected]
        if missing:
            raise ValueError(f"{ckpt_dir}: missing tensor {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if extra:
            raise ValueError(f"{ckpt_dir}: unexpected tensor {extra[0]!r}" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        with torch.no_grad():
            for name, p in expected.items():
                t = tensors[name]
                if tuple(t.shape) != tuple(p.shape):
                    raise ValueError(f"{ckpt_dir}: tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
                p.copy_(t)
        return model

def load_hf_tensors(ckpt_dir):
    """All tensors of a checkpoint dir: model.safetensors, or the shards of its index."""
    index = os.path.join(ckpt_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(load_safetensors(os.path.join(ckpt_dir, shard)))
        return tensors
    single = os.path.join(ckpt_dir, "model.safetensors")
    if not os.path.isfile(single):
        raise ValueError(f"{ckpt_dir}: no model.safetensors or model.safetensors.index.json")
    return load_safetensors(single)


if __name__ == "__main__":
    for name in PRESETS:
        with torch.device("meta"):
            m = Transformer(ModelConfig.from_preset(name))
        print(f"{name:16s} {m.num_params() / 1e6:9.2f}M params ({m.num_params(non_embedding=True) / 1e6:.2f}M non-embedding)")
