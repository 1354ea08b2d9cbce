"""Shared test set-up. Environment first: Triton must see TRITON_INTERPRET before any
@triton.jit function is defined, and nothing may reach the network or wandb."""
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "tiktoken"))
ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SNOWCODER_BENCHMARKS", str((ROOT.parent / "shared" / "benchmarks").resolve()))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

BENCH_DIR = Path(os.environ["SNOWCODER_BENCHMARKS"])


def stdlib_dir() -> Path:
    """The running Python's standard library: real code present on every machine."""
    import sysconfig
    return Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    if not BENCH_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {BENCH_DIR}")
    return BENCH_DIR


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory) -> Path:
    """A small byte-level BPE (vocab 1024) trained by prepare.tokenizer on real stdlib code,
    saved as a tiktoken rank file. Shared by every test that needs token ids."""
    from formats import save_tokenizer
    from prepare.tokenizer import train_bpe
    files = sorted(stdlib_dir().glob("*.py"))[:40]
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    ranks = train_bpe(texts, vocab_size=1024)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.tiktoken"
    save_tokenizer(ranks, path)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path):
    from formats import load_tokenizer
    return load_tokenizer(tiny_tokenizer_path)
