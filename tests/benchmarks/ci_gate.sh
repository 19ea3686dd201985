#!/usr/bin/env bash
# The regression gate CI runs on the embedded model, in a form that holds on a noisy shared CPU.
#
#   tests/benchmarks/ci_gate.sh          check this tree against the committed baseline
#   tests/benchmarks/ci_gate.sh refresh  re-record the baseline (after new weights, or an
#                                        intended change of speed or quality); commit the file
#
# One run measures the reference (the unchanged model) and the candidate stacks in alternation
# (`accelbench run --schedule interleaved`), so each stack's speedup over the reference is a
# ratio measured round by round under the same load: it holds on any machine, busy or not.
# `accelbench gate` then judges the run against the committed file. That speedup is compared
# with the committed one (a drop counts only beyond 30% and with the two intervals apart; refresh
# on a quiet machine, since the committed interval bounds how small a loss is caught), and
# quality, deterministic for fixed seeds, with the committed values (PSNR, SSIM and adherence
# against the reference images). A baseline recorded with other weights is refused (exit 2)
# rather than compared. Exit status: 0 pass, 1 regression, 2 cannot compare.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASELINE=tests/benchmarks/baseline/digits-unet.json
OUT=${ACCELBENCH_GATE_OUT:-runs/ci-gate}
MEASURE=(
  run --model digits-unet --schedule interleaved
  -s steps:n=10 -s "scheduler:name=dpm-solver+steps:n=10"
  --batch-size 2 --warmup 2 --min-seconds 0 --quality-images 16 --threads 1
  --no-flops --no-report --out "$OUT" --quiet
)

rm -rf "$OUT"
case "${1:-check}" in
  check)
    status=0
    accelbench "${MEASURE[@]}" --iterations 8 >/dev/null
    accelbench gate "$OUT" --baseline "$BASELINE" --latency speedup --max-slowdown 30% \
      -Q psnr:-1 -Q ssim:-0.02 -Q adherence:-0.15 --json "$OUT/verdict.json" || status=$?
    if [ "$status" -eq 2 ]; then
      echo "gate: the baseline cannot be compared; if the weights changed on purpose, run" \
           "'$0 refresh' and commit $BASELINE" >&2
    fi
    exit "$status"
    ;;
  refresh)
    # More rounds than a check: the committed interval bounds how small a loss CI can catch.
    accelbench "${MEASURE[@]}" --iterations 20
    accelbench gate "$OUT" --save-baseline "$BASELINE"
    ;;
  *)
    echo "usage: $0 [check|refresh]" >&2
    exit 2
    ;;
esac
