"""Every kernel and every autotune config compiles for an H100 (sm_90a) here, without a GPU, with
the ptxas shipped with triton (kernels/compile_check.py): no compiler error, zero bytes of
register spills, and the attention matmuls are wgmma (Hopper's tensor-core path), none left on
the older mma.sync: forward and backward, head dims 64 and 128, each in the two launches
kernels/compile_check.py specializes (MHA at T 8192 as the 1.3B model trains, GQA at a ragged T).
One subprocess compiles everything once (two in parallel); the tests read it."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton.backends.nvidia")
from kernels.compile_check import specs  # noqa: E402

NAMES = [s[0] for s in specs()]


@pytest.fixture(scope="module")
def compiled(root, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path_factory.mktemp("triton-cache")), TRITON_DEFAULT_FP_FUSION="1")
    proc = subprocess.run([sys.executable, "-m", "kernels.compile_check", "--json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=2400)
    if "ptxas" in proc.stderr and "No such file" in proc.stderr:
        pytest.skip("triton's bundled ptxas is missing")
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return {r["name"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("name", NAMES)
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


@pytest.mark.parametrize("value", [1, 2, 15, 16, 1000, 8192, 2**31 - 1])
def test_launch_specialization_is_tritons_own(value):
    # compile_check compiles attention as the runtime specializes a launch; if triton's rule for
    # int arguments changed, the check would measure code no launch runs
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.nvidia.compiler import CUDABackend
    from kernels.compile_check import int_specialization
    kind, hint = native_specialize_impl(CUDABackend, value, False, True, True)
    assert int_specialization(value) == ("constexpr" if kind == "constexpr" else hint)


@pytest.mark.parametrize("D, tiles", [(64, "64"), (32, "64"), (128, "128"), (256, "128")])
def test_backward_autotunes_over_its_head_dims_checked_tiles(D, tiles):
    # the autotuner sees the union of the per-head-dim lists; its prune must leave exactly the
    # list compiled (and checked spill-free) above for that head dim
    import triton
    from kernels.attention import BWD_TILES, _bwd_tiles_for_head_dim
    union = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
             for bm, bn, w, s in dict.fromkeys(BWD_TILES[64] + BWD_TILES[128])]
    kept = _bwd_tiles_for_head_dim(union, {}, HEAD_DIM=D)
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in kept] == BWD_TILES[int(tiles)]
    assert all(any(f"_attn_bwd {launch} D={tiles} BLOCK_M={bm} BLOCK_N={bn} warps={w} stages={s}" in n for n in NAMES)
               for bm, bn, w, s in BWD_TILES[int(tiles)] for launch in ("mha", "gqa"))
