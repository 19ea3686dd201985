#!/usr/bin/env bash
# The GPU acceptance run (see tests/gpu/acceptance.py and tests/gpu/README.md): at most
# 9 minutes on one H100/H200, evidence written to $OUT after every step.
#
#   bash tests/gpu/acceptance.sh             run it; evidence under $OUT (or runs/acceptance)
#   bash tests/gpu/acceptance.sh --dry-run   list the steps, budgets and files; any machine
#
# The wheels of .whl/ (tests/gpu/prepare.sh) are installed into /tmp/site beside the
# machine's own torch, which is left as it is; nothing is fetched from an index. accelbench
# runs from this checkout. The install's output goes to /tmp/acceptance-install.log, which
# acceptance.py records and archives.
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
SITE=/tmp/site
INSTALL_LOG=/tmp/acceptance-install.log

dry=0
for arg in "$@"; do [ "$arg" = "--dry-run" ] && dry=1; done

if [ "$dry" -eq 0 ]; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl >"$INSTALL_LOG" 2>&1; then
      export ACCEPTANCE_INSTALL="installed $(ls .whl/*.whl | wc -l) wheels into $SITE"
    else
      export ACCEPTANCE_INSTALL="FAILED: pip install of .whl/*.whl exited $? (see install.log)"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    export ACCEPTANCE_INSTALL="no wheels in .whl/: using the machine's own packages"
    echo "$ACCEPTANCE_INSTALL" >"$INSTALL_LOG"
  fi
  # torchao 0.18's compiled extensions are built for torch >= 2.11 with CUDA 13; with any
  # other torch only its Python code is used.
  if ! "$PYTHON" -c 'import sys, torch
v = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if v >= (2, 11) and (torch.version.cuda or "").startswith("13") else 1)' 2>/dev/null; then
    export TORCHAO_FORCE_SKIP_LOADING_SO_FILES=1
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$PYTHON" tests/gpu/acceptance.py --install-log "$INSTALL_LOG" "$@"
