#!/usr/bin/env bash
# Throughput of tfp_realnvp.RealNVP (and, on request, of the same network in plain Keras)
# on the Keras JAX backend of a GPU machine that has JAX but no TensorFlow.
#
# Installs the carried wheels (.whl/, see benchmarks/README.md), prints the GPU and
# the JAX devices, then runs benchmarks/throughput.py, most important run first:
#   1. float32:        train step at batch 64 and 256, log_prob at batch 256
#   2. mixed_bfloat16: train step at batch 256, then 64
# Each run has its own timeout, and every run must end within GPU_CHECK_BUDGET_S of the
# start (a run that no longer fits is skipped). Results are JSON files in $OUT; a run cut
# short leaves what it had measured (<name>.<implementation>.partial.json). A summary
# table ends the output.
#
# Settings (environment):
#   OUT                      results folder (default ./gpu_results)
#   PYTHON                   interpreter (default python3)
#   GPU_CHECK_CONFIG         throughput.py --config (default cifar10; tiny to try this script on a CPU)
#   GPU_CHECK_SKIP_INSTALL   1: use the installed keras/tfp instead of installing .whl/*.whl
#   GPU_CHECK_BUDGET_S       total seconds for all runs (default 285)
#   GPU_CHECK_RUN_TIMEOUT_S  cap on the first run's seconds (default 170)
#   GPU_CHECK_REPEATS, GPU_CHECK_WARMUP, GPU_CHECK_STEPS   timing (default 5, 3, 10)
#   GPU_CHECK_FULL           1: also time sample (run 1)
#   GPU_CHECK_BASELINE       1: also time the plain-Keras baseline, in the same process with
#                            alternating repeats (--schedule interleaved), so the ratio is
#                            paired; peak memory is then the process' (an upper bound for
#                            either model). Each model compiles its own programs (~40-55 s
#                            each), so allow GPU_CHECK_BUDGET_S=560 GPU_CHECK_RUN_TIMEOUT_S=300.
#                            Default 0: the package alone, its own peak memory, within 5 minutes
#                            (benchmarks/gpu_profile.sh pairs the two train steps).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CONFIG=${GPU_CHECK_CONFIG:-cifar10}
OUT=${OUT:-./gpu_results}
BUDGET_S=${GPU_CHECK_BUDGET_S:-285}
RUN_TIMEOUT_S=${GPU_CHECK_RUN_TIMEOUT_S:-170}
REPEATS=${GPU_CHECK_REPEATS:-5}
WARMUP=${GPU_CHECK_WARMUP:-3}
STEPS=${GPU_CHECK_STEPS:-10}
if [[ "${GPU_CHECK_BASELINE:-0}" == 1 ]]; then
  implementations=(--schedule interleaved)
else
  implementations=(--skip-baseline)
fi
MIN_RUN_S=20
mkdir -p "$OUT"
start=$SECONDS

source benchmarks/gpu_env.sh

failures=0
run() {  # run NAME PER_RUN_CAP ARGS...: one throughput.py invocation within the budget
  local name=$1 cap=$2
  shift 2
  local left=$((BUDGET_S - (SECONDS - start)))
  local limit=$(( cap < left ? cap : left ))
  if (( limit < MIN_RUN_S )); then
    echo "== $name: skipped, ${left} s of the ${BUDGET_S} s budget left"
    failures=$((failures + 1))
    return 0
  fi
  echo "== $name (timeout ${limit} s)"
  local t0=$SECONDS rc=0
  timeout --signal=TERM --kill-after=10 "$limit" \
    "$PYTHON" -m benchmarks.throughput --config "$CONFIG" \
      --repeats "$REPEATS" --warmup "$WARMUP" --steps "$STEPS" \
      --output "$OUT/$name.json" "$@" || rc=$?
  if (( rc != 0 )); then
    echo "== $name: exit status $rc$( (( rc == 124 || rc == 137 )) && echo ' (timed out)')"
    failures=$((failures + 1))
  fi
  echo "== $name took $((SECONDS - t0)) s"
}

measure=train,log_prob
[[ "${GPU_CHECK_FULL:-0}" == 1 ]] && measure=train,log_prob,sample
run "${CONFIG}_float32" "$RUN_TIMEOUT_S" --precision float32 --batch-sizes 64,256 \
  --inference-batch-size 256 --measure "$measure" "${implementations[@]}"
run "${CONFIG}_mixed_bfloat16" "$BUDGET_S" --precision mixed_bfloat16 --batch-sizes 256,64 \
  --measure train "${implementations[@]}"

echo "== summary (total $((SECONDS - start)) s)"
"$PYTHON" -m benchmarks.summarize "$OUT"/*.json || failures=$((failures + 1))
exit $(( failures > 0 ? 1 : 0 ))
