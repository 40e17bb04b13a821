#!/usr/bin/env bash
# Create .venv (once) and install slagen with its test extras. torch is pinned to the CPU build that
# lies on disk so that no multi-GB CUDA wheel is pulled on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
fi
pip install -q -e '.[test,postgres]' 2>&1 | grep -v '^WARNING: Location' || true
python -c "import slagen, torch, triton; print('slagen', slagen.__version__, 'torch', torch.__version__, 'triton', triton.__version__)"
