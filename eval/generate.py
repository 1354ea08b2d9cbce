"""
Generation: greedy completions for every problem, from a local checkpoint (model.py) or from any
OpenAI-compatible /v1/completions endpoint. Resumable: samples are appended to a JSONL file one
batch at a time, and a rerun skips what is already there.

Sample line (the evalplus layout plus our fields):
    {"task_id": "HumanEval/0", "sample": 0, "completion": "...", "solution": "...", "raw": "..."}
`raw` is the text as generated, `completion` is cut at the first stop string, `solution` is the
sanitized whole program that execution runs.
"""
import os

from tqdm import tqdm

from formats import AppendLog, read_jsonl
from eval.tasks import build_prompt, stop_strings
from eval.sanitize import sample_program


# ---------------------------------------------------------------------------- backends
class LocalModel:
    """A checkpoint directory (HF Llama layout + tokenizer.tiktoken) run with model.py."""

    def __init__(self, ckpt, device=None, backend=None):
        from sample import load_checkpoint  # the one loader: weights, tokenizer, which tokens end generation
        self.ck = load_checkpoint(ckpt, device=device, backend=backend)
        self.name = str(ckpt)

    def complete(self, prompts: list[str], stop: list[str], max_new_tokens: int) -> list[str]:
        ids = [self.ck.encode(p) for p in prompts]
        room = max(1, self.ck.block_size - max_new_tokens)
        ids = [x[-room:] if len(x) > room else x for x in ids]  # keep the end: it is what gets continued
        outs = self.ck.generate(ids, max_new_tokens, temperature=0.0, stop=stop)
        return [self.ck.decode(o) for o in outs]


class ApiModel:
    """Any OpenAI-compatible completions endpoint (vLLM, SGLang, sample.py --serve, ...), through client.py."""

    def __init__(self, api_base: str, model: str, api_key: str = None, timeout: float = 600.0, retries: int = 5):
        from client import Client
        base = api_base.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        self.client = Client(base, api_key or os.environ.get("OPENAI_API_KEY", ""), timeout, max_retries=retries)
        self.model = model
        self.name = f"{model} @ {api_base}"

    def complete(self, prompts: list[str], stop: list[str], max_new_tokens: int) -> list[str]:
        from client import APIError
        try:  # OpenAI allows 4 stop strings; we cut at all of them locally anyway
            resp = self.client.completions(model=self.model, prompt=prompts, max_tokens=max_new_tokens,
                                           temperature=0.0, top_p=1.0, stop=stop[:4]).data
        except APIError as e:
            raise SystemExit(f"{e}; rerun to resume") from None
        choices = sorted(resp["choices"], key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise SystemExit(f"{self.client.base}/completions: asked for {len(prompts)} completions, got {len(choices)}")
        return [c["text"] for c in choices]


# ---------------------------------------------------------------------------- the loop
def generate_samples(problems: list[dict], out_path, model, n_samples: int = 1, batch_size: int = 8,
                     max_new_tokens: int = 512, reuse: dict = None, desc: str = "generating") -> list[dict]:
    """Complete every (problem, sample index) not yet in out_path, appending as we go. `reuse` maps
    (prompt, sample) -> raw text already generated for an identical prompt (e.g. HumanEval and
    HumanEval+ share 163 of 164 prompts). Returns all rows of out_path."""
    with AppendLog(out_path) as log:  # locked; a torn last line from a killed run is cut first
        done = {(r["task_id"], r["sample"]) for r in log.rows}
        todo = [(p, s) for p in problems for s in range(n_samples) if (p["task_id"], s) not in done]
        reuse = reuse if reuse is not None else {}

        def row(p, s, raw):
            completion, program = sample_program(p, raw)
            return dict(task_id=p["task_id"], sample=s, completion=completion, solution=program, raw=raw)

        ready = [(p, s) for p, s in todo if (build_prompt(p), s) in reuse]
        if ready:
            log.append([row(p, s, reuse[(build_prompt(p), s)]) for p, s in ready])
        todo = [(p, s) for p, s in todo if (build_prompt(p), s) not in reuse]
        # longest prompts first: similar lengths share a batch (less padding) and memory peaks early
        todo.sort(key=lambda ps: -len(build_prompt(ps[0])))
        bar = tqdm(total=len(todo), desc=desc, leave=False)
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            stops = sorted({s for p, _ in batch for s in stop_strings(p)})
            raws = model.complete([build_prompt(p) for p, _ in batch], stops, max_new_tokens)
            rows = []
            for (p, s), raw in zip(batch, raws):
                reuse[(build_prompt(p), s)] = raw
                rows.append(row(p, s, raw))
            log.append(rows)
            bar.update(len(batch))
        bar.close()
    return read_jsonl(out_path)
