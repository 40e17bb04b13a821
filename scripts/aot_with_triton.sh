#!/usr/bin/env bash
# Compile kernels ahead of time with another Triton release than .venv's, e.g. the one a GPU machine has:
#   bash scripts/aot_with_triton.sh 3.6.0 generated/slagen_kernels --arch 90
# Makes .venv-triton-<version>/ (once) holding only that triton; everything else comes from .venv (a
# .pth file appended after the side venv's own site-packages, so its triton wins).
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:?usage: scripts/aot_with_triton.sh TRITON_VERSION TARGET... [slagen aot options]}"
shift
bash scripts/setup.sh >/dev/null
side=".venv-triton-$version"
if [ ! -x "$side/bin/python" ]; then
  python3 -m venv "$side"
  "$side/bin/pip" install -q "triton==$version" 2>&1 | grep -v '^WARNING: Location' || true
fi
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
side_site=$("$side/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
printf '%s\n%s\n' "$site" "$PWD" > "$side_site/zz_slagen_main_venv.pth"
"$side/bin/python" -c "import triton; assert triton.__version__ == '$version', triton.__version__"
unset TRITON_INTERPRET
"$side/bin/python" -m slagen.cli aot "$@"
