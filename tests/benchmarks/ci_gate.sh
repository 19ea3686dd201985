#!/usr/bin/env bash
# The regression gate CI runs on the embedded model, in a form that holds on a noisy shared CPU.
#
#   tests/benchmarks/ci_gate.sh          check this tree against the committed baseline
#   tests/benchmarks/ci_gate.sh refresh  re-record the baseline (after new weights, or an
#                                        intended change of speed or quality); commit the file
#                                        (and the history seed it rewrites)
#   tests/benchmarks/ci_gate.sh seed-history [N]
#                                        record N (10) real A/A check runs of this tree as
#                                        the history seed, instead of the bootstrap one;
#                                        commit tests/benchmarks/history/
#
# One run measures the reference (the unchanged model) and the candidate stacks in alternation
# (`accelbench run --schedule interleaved`), so each stack's speedup over the reference is a
# ratio measured round by round under the same load: it holds on any machine, busy or not.
# `accelbench gate` then judges the run against the committed file. That speedup is compared
# with the committed one (a drop counts only beyond 30% and with the two intervals apart; refresh
# on a quiet machine, since the committed interval bounds how small a loss is caught), and
# quality, deterministic for fixed seeds, with the committed values (PSNR, SSIM and adherence
# against the reference images). A baseline recorded with other weights is refused (exit 2)
# rather than compared.
#
# Then the same run is gated against history (`accelbench gate --history`): the committed
# seed tests/benchmarks/history/seed-*.jsonl (10 bootstrap replicates, 8 rounds each, of the
# committed baseline's run: tests/benchmarks/scripts/history_seed.py; or real A/A runs that
# `seed-history` recorded) is loaded into a temporary SQLite store, and each stack's speedup
# is judged against that series' recent segment: a regression lies outside what the segment
# predicts and is more than 30% slower. Speedups are ratios, so the seed's points count on any machine (--any-machine).
# A team store (ACCELBENCH_GATE_HISTORY, any SQLAlchemy URL) is used instead of the seed when
# set. Exit status: 0 pass, 1 regression (either gate), 2 cannot compare.
set -euo pipefail
cd "$(dirname "$0")/../.."

BASELINE=tests/benchmarks/baseline/digits-unet.json
HISTORY_SEED=tests/benchmarks/history
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
    hstatus=0
    store=${ACCELBENCH_GATE_HISTORY:-}
    if [ -z "$store" ]; then
      tmp=$(mktemp -d)
      trap 'rm -rf "$tmp"' EXIT
      store="sqlite:///$tmp/h.sqlite"
      accelbench history add "$HISTORY_SEED"/seed-*.jsonl --store "$store" >/dev/null
    fi
    accelbench gate "$OUT" --history "$store" --any-machine --metric speedup \
      --max-slowdown 30% --json "$OUT/history-verdict.json" || hstatus=$?
    if [ "$status" -eq 1 ] || [ "$hstatus" -eq 1 ]; then
      exit 1
    fi
    if [ "$status" -ne 0 ]; then
      exit "$status"
    fi
    exit "$hstatus"
    ;;
  refresh)
    # More rounds than a check: the committed interval bounds how small a loss CI can catch.
    accelbench "${MEASURE[@]}" --iterations 20
    accelbench gate "$OUT" --save-baseline "$BASELINE"
    python tests/benchmarks/scripts/history_seed.py bootstrap "$BASELINE" "$HISTORY_SEED"
    ;;
  seed-history)
    # Real A/A runs at the check's size, on a quiet machine: the seed's scatter is then the
    # run-to-run noise itself. Each is kept slim (what the store reads).
    rm -f "$HISTORY_SEED"/seed-*.jsonl
    for i in $(seq -w 1 "${2:-10}"); do
      rm -rf "$OUT"
      accelbench "${MEASURE[@]}" --iterations 8 >/dev/null
      python tests/benchmarks/scripts/history_seed.py slim "$OUT" "$HISTORY_SEED/seed-$i.jsonl"
    done
    echo "history seed: ${2:-10} runs in $HISTORY_SEED"
    ;;
  *)
    echo "usage: $0 [check|refresh|seed-history [N]]" >&2
    exit 2
    ;;
esac
