#!/usr/bin/env bash
# Download the wheels the GPU machine lacks into .whl/ (ignored by git), for
# tests/gpu/acceptance.sh to install there without a package index.
#
#   tests/gpu/prepare.sh        run where pip reaches a package index, before sending the checkout
#
# The GPU machine runs Python 3.12 on x86-64 with its own torch (2.11, CUDA 13), transformers,
# accelerate, huggingface-hub, safetensors, numpy, pyyaml, tqdm, markupsafe and
# typing-extensions; it lacks the packages below. Each is pinned and fetched without its
# dependencies: every requirement they declare is either already there or listed here
# (diffusers' importlib_metadata is only imported on Python < 3.8). torch is never fetched.
#
# The checkout and .whl/ travel together, at most 64 MiB: the script fails when they do not fit.
set -euo pipefail
cd "$(dirname "$0")/../.."

WHEELS=(
  diffusers==0.42.1
  # torchao 0.18.0 rather than 0.17: 0.18's compiled extensions are built for torch 2.11 with
  # CUDA 13, the GPU machine's torch, so its kernels load there; 0.17 supports torch 2.9-2.11
  # at the Python level only with its extensions skipped. Where the torch is older than 2.11
  # or not built for CUDA 13, acceptance.sh sets TORCHAO_FORCE_SKIP_LOADING_SO_FILES=1.
  torchao==0.18.0
  torch-pruning==1.6.1
  optuna==5.0.0
  alembic==1.20.1     # optuna
  sqlalchemy==2.1.9   # optuna, alembic
  colorlog==6.12.0    # optuna
  mako==1.4.3         # alembic
)
LIMIT=$((64 * 1024 * 1024))
PYTHON=${PYTHON:-python3}

# bytes of the files named, NUL-separated, on stdin (files missing from the tree count 0)
sum_bytes() { xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

rm -rf .whl
mkdir -p .whl
for spec in "${WHEELS[@]}"; do
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$spec"
done

echo "wheels in .whl/:"
for whl in .whl/*.whl; do
  printf '  %-72s %10s bytes\n' "$(basename "$whl")" "$(stat -c %s "$whl")"
  unzip -p "$whl" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' \
    | sed 's/^Requires-Dist: /      needs /' || true
done
expected=${#WHEELS[@]}
got=$(find .whl -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$got" -ne "$expected" ]; then
  echo "prepare: expected $expected wheels, found $got" >&2
  exit 1
fi

wheels=$(find .whl -maxdepth 1 -type f -name '*.whl' -print0 | sum_bytes)
tree=$(git ls-files -z --cached --others --exclude-standard | sum_bytes)
total=$((wheels + tree))
echo "wheels: $(mib "$wheels") ($wheels bytes); checkout (tracked and untracked, not ignored):" \
  "$(mib "$tree"); together $(mib "$total") of at most $(mib "$LIMIT")"
if [ "$total" -gt "$LIMIT" ]; then
  echo "prepare: the checkout and .whl/ come to $(mib "$total"), over the $(mib "$LIMIT") that" \
    "can travel; the largest files:" >&2
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c '%s %n' -- 2>/dev/null \
    | sort -rn | awk 'NR <= 5 {printf "  %8.1f MiB  %s\n", $1 / 1048576, $2}' >&2
  exit 1
fi
git rev-parse HEAD >.whl/COMMIT 2>/dev/null || true
echo "prepare: ready; send with carry [\".whl\"] and run: bash tests/gpu/acceptance.sh"
