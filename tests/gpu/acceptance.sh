#!/usr/bin/env bash
# The GPU acceptance run (see tests/gpu/acceptance.py): at most 8 minutes on one H100/H200.
#
#   tests/gpu/acceptance.sh             run it; figures and report under $OUT (or runs/acceptance)
#   tests/gpu/acceptance.sh --dry-run   list the steps; works on any machine
#
# On a machine whose Python lacks diffusers, torchao or torch-pruning, put their wheels in
# .whl/ (pip download --no-deps ...): they are installed beside the machine's own torch into
# /tmp/site, nothing is fetched from an index. accelbench itself runs from this checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" != "--dry-run" ] && compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 tests/gpu/acceptance.py "$@"
