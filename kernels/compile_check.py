"""
Compile every kernel and every autotune config for an H100 (sm_90a) on this machine, no GPU
needed, with the ptxas that triton ships, and report registers, spills and whether the matmuls
became wgmma (Hopper's tensor-core instruction) or fell back to the older mma.sync.

    python -m kernels.compile_check            # a table; exit status 1 if any config spills
    python -m kernels.compile_check --json     # one JSON list (what tests/test_kernels_compile.py reads)

A config that spills registers on the GPU it targets is slow for sure, and the autotuner would
only find out on the GPU; this check is how the config lists in kernels/attention.py were pruned.
Must run without TRITON_INTERPRET=1 (the interpreter keeps one config and compiles nothing).
"""
import argparse
import contextlib
import inspect
import io
import json
import re
import sys
from concurrent.futures import ProcessPoolExecutor

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

H100 = GPUTarget("cuda", 90, 32)  # capability 90 compiles for sm_90a (wgmma needs the "a")

# Triton's runtime compiles one specialization per launch: an int argument equal to 1 becomes a
# constant and one divisible by 16 (like every 16-byte aligned pointer) carries a divisibility
# hint, which lets loads vectorize and frees registers. Compiled without those hints a kernel is
# code no launch runs (the attention backward then "spills" where the real launch does not), so
# attention is compiled as two real launches specialize it. Strides are always multiples of 16
# (q, k, v, do are views of (B, T, H, D) or (B, H, T, D) buffers with D >= 16).
ATTN_LAUNCHES = {
    "mha": dict(H=16, T=8192, GROUP=1),  # the 1.3B model in training: 16 query and 16 kv heads
    "gqa": dict(H=4, T=1000, GROUP=2),   # grouped-query attention at a length no block divides
}


def specs(head_dims=(64, 128)):
    """(name, module, kernel attribute, pointer/scalar types, constexprs, num_warps, num_stages) for
    every kernel x config x head dim, bf16 inputs as in training."""
    from kernels import attention as A, cross_entropy as CE, rmsnorm as R
    out = []
    fwd_types = {**dict.fromkeys("QKVO", "*bf16"), "LSE": "*fp32", "sm_scale": "fp32"}
    bwd_types = {**dict.fromkeys(("Q", "K", "V", "DO", "DK", "DV"), "*bf16"), "DQ": "*fp32", "LSE": "*fp32",
                 "DELTA": "*fp32", "sm_scale": "fp32"}
    for launch, ints in ATTN_LAUNCHES.items():
        for D in head_dims:
            for kernel, tiles, types in (("_attn_fwd", A.FWD_TILES, fwd_types),
                                         ("_attn_bwd", A.BWD_TILES[D], bwd_types)):
                for bm, bn, w, s in tiles:
                    out.append((f"attention.{kernel} {launch} D={D} BLOCK_M={bm} BLOCK_N={bn} warps={w} stages={s}",
                                "kernels.attention", kernel, types, {"HEAD_DIM": D, "BLOCK_M": bm, "BLOCK_N": bn},
                                w, s, ints))
    block_n, warps = R._launch_params(2048, 2)  # the 1.3B model's width in bf16
    norm_types = {**dict.fromkeys(("X", "R", "Y", "H", "DY", "DH", "DX", "W"), "*bf16"), "RSTD": "*fp32",
                  "DW_PARTIAL": "*fp32", "eps": "fp32"}
    for kernel, flag in (("_rmsnorm_fwd", "HAS_RESIDUAL"), ("_rmsnorm_bwd", "HAS_DH")):
        out.append((f"rmsnorm.{kernel} N=2048 warps={warps}", "kernels.rmsnorm", kernel, norm_types,
                    {flag: True, "BLOCK_N": block_n}, warps, 3))
    ce_types = {"LOGITS": "*bf16", "TARGETS": "*i64", "LOSS": "*fp32"}
    out.append(("cross_entropy._ce_rows V=64000 BLOCK_V=4096 warps=8", "kernels.cross_entropy", "_ce_rows", ce_types,
                {"WRITE_GRAD": True, "BLOCK_V": 4096}, 8, 3))
    # RoPE on the 1.3B model's q (16 heads, seq 8192); INVERSE=True is the backward
    from kernels import rope as RP, swiglu as SW
    for D in head_dims:
        bt, bh, bhalf, w = RP.launch_params(8192, 16, D)
        for inverse in (False, True):
            out.append((f"rope._rope D={D} INVERSE={inverse} BLOCK_T={bt} BLOCK_H={bh} warps={w}", "kernels.rope",
                        "_rope", dict.fromkeys(("X", "COS", "SIN", "Y"), "*bf16"),
                        {"INVERSE": inverse, "BLOCK_T": bt, "BLOCK_H": bh, "BLOCK_HALF": bhalf}, w, 3))
    for kernel in ("_swiglu_fwd", "_swiglu_bwd"):
        out.append((f"swiglu.{kernel} BLOCK={SW.BLOCK} warps={SW.NUM_WARPS}", "kernels.swiglu", kernel,
                    dict.fromkeys(("A", "B", "Y", "DY", "DA", "DB"), "*bf16"), {"BLOCK": SW.BLOCK}, SW.NUM_WARPS, 3))
    return out


def int_specialization(value):
    """How Triton's runtime specializes an int argument (tests check it against triton's own):
    "constexpr" (1 is compiled in), "D" (divisible by 16, hinted) or "" (nothing known)."""
    return "constexpr" if value == 1 else "D" if value % 16 == 0 else ""


def compile_one(spec):
    """Compile one spec; returns {name, regs, spill_bytes, wgmma, mma_sync, error}. A spec may end
    with a launch's int values ({name: value}): then it is specialized as the runtime would
    (ATTN_LAUNCHES), every other int (the strides) and every pointer taken as multiples of 16."""
    import importlib
    from triton import knobs
    name, module, attr, types, consts, num_warps, num_stages, *launch = spec
    kernel = getattr(importlib.import_module(module), attr)
    jit = kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel  # the JITFunction
    consts = {**consts, "INTERPRETED": False}
    params = list(inspect.signature(jit.fn).parameters)
    attrs = {}
    if launch:
        ints = launch[0]
        consts.update({n: 1 for n, value in ints.items() if int_specialization(value) == "constexpr"})
        for i, n in enumerate(params):
            if n not in consts and types.get(n, "i32").startswith(("*", "i32")) \
                    and int_specialization(ints.get(n, 16)) == "D":  # pointers, strides: 16
                attrs[(i,)] = [["tt.divisibility", 16]]
    sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in params}
    log = io.StringIO()
    knobs.nvidia.dump_ptxas_log = True  # ptxas -v's report, printed to stdout
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(ASTSource(fn=jit, signature=sig, constexprs=consts, attrs=attrs), target=H100,
                                      options=dict(num_warps=num_warps, num_stages=num_stages))
    except Exception as e:  # a config the compiler rejects is a finding, not a crash of the check
        return dict(name=name, error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    text = log.getvalue()
    spills = sum(int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", text))
    regs = [int(n) for n in re.findall(r"Used (\d+) registers", text)]
    ptx = compiled.asm["ptx"]
    return dict(name=name, regs=max(regs) if regs else None, spill_bytes=spills, error=None,
                wgmma=ptx.count("wgmma.mma_async"), mma_sync=ptx.count("mma.sync"), ptxas_log_seen=bool(regs))


def check_all(head_dims=(64, 128), workers=2, only=""):
    from kernels import INTERPRET
    if INTERPRET:
        raise RuntimeError("kernels.compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    todo = [s for s in specs(head_dims) if only in s[0]]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(compile_one, todo))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    ap.add_argument("--workers", type=int, default=2, help="parallel compiles")
    ap.add_argument("--only", default="", help="compile only the configs whose name contains this")
    args = ap.parse_args()
    results = check_all(workers=args.workers, only=args.only)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{'kernel / config (sm_90a, bf16)':>72s} {'regs':>5s} {'spill B':>8s} {'wgmma':>6s} {'mma.sync':>8s}")
        for r in results:
            if r["error"]:
                print(f"{r['name']:>72s} ERROR {r['error']}")
            else:
                print(f"{r['name']:>72s} {str(r['regs']):>5s} {r['spill_bytes']:8d} {r['wgmma']:6d} {r['mma_sync']:8d}")
    sys.exit(1 if any(r["error"] or r["spill_bytes"] for r in results) else 0)


if __name__ == "__main__":
    main()
