"""Every kernel and every autotune config compiles for an H100 (sm_90a) here, without a GPU, with
the ptxas shipped with triton (kernels/compile_check.py): no compiler error, zero bytes of
register spills, and the attention matmuls are wgmma (Hopper's tensor-core path), none left on
the older mma.sync. One subprocess compiles everything once (two in parallel); the tests read it."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton.backends.nvidia")
from kernels.compile_check import specs  # noqa: E402

NAMES = [s[0] for s in specs()]
# Open (issue 15), as measured: at head dim 128 the backward's dk, dv, s, dp and dq share do not
# fit 255 registers per thread with any tile tried (the 64 x 64 tiles spill about 1.1 KB).
# strict: the day one of these compiles clean, its marker must go.
KNOWN_SPILLS = {n for n in NAMES if n.startswith("attention._attn_bwd D=128")}


@pytest.fixture(scope="module")
def compiled(root, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path_factory.mktemp("triton-cache")), TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, "-m", "kernels.compile_check", "--json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1200)
    if "ptxas" in proc.stderr and "No such file" in proc.stderr:
        pytest.skip("triton's bundled ptxas is missing")
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return {r["name"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="spills at D=128"))
                                  if n in KNOWN_SPILLS else n for n in NAMES])
def test_compiles_for_h100_without_register_spills(compiled, name):
    r = compiled[name]
    assert r["error"] is None, r["error"]
    assert r["ptxas_log_seen"], "no ptxas -v report parsed"
    assert r["spill_bytes"] == 0, f"{r['spill_bytes']} bytes of spills at {r['regs']} registers"


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("attention.")])
def test_attention_matmuls_are_wgmma(compiled, name):
    r = compiled[name]
    assert r["error"] is None, r["error"]
    assert r["wgmma"] > 0 and r["mma_sync"] == 0, f"wgmma {r['wgmma']}, mma.sync {r['mma_sync']}"
