#!/usr/bin/env bash
# Set up and run the main job: validate and show the shipped variants.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
slagen spec validate specs/*.toml
slagen variants
