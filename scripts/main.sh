#!/usr/bin/env bash
# Set up and run the main job: build the shipped variants into generated/ from the shipped tuning
# results (tuning_db/), then import the package and check every function against the reference, and
# compile every kernel it ships for sm_90 (H100/H200) ahead of time: what the CPU interpreter cannot see.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  export TRITON_INTERPRET=1  # no GPU: the kernels run on the CPU through Triton's interpreter
fi
slagen build --tuning-dir tuning_db --gpu all --no-tune --out generated
slagen check generated/slagen_kernels
slagen aot generated/slagen_kernels --arch 90
