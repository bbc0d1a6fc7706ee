#!/usr/bin/env bash
# Set up a virtual environment in .venv with the CPU build of PyTorch and waveletflow (editable, with its test and documentation tools).
# The pinned CPU torch is installed first so that no multi-GB CUDA build is downloaded.
# Elsewhere, point pip at the CPU wheels with e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
.venv/bin/python -m pip install -q -e ".[test,docs]"
