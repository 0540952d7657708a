#!/usr/bin/env bash
# Throughput of tfp_realnvp.RealNVP against the same network in plain Keras, on the Keras
# JAX backend of a GPU machine that has JAX but no TensorFlow.
#
# Installs the carried wheels (.whl/, see ../shared/gpu/fetch-wheels), prints the GPU and
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
MIN_RUN_S=20
mkdir -p "$OUT"
start=$SECONDS

echo "== setup"
if [[ "${GPU_CHECK_SKIP_INSTALL:-0}" != 1 ]]; then
  shopt -s nullglob
  wheels=(.whl/*.whl)
  shopt -u nullglob
  if (( ${#wheels[@]} == 0 )); then
    echo "no wheels in .whl/: run ../shared/gpu/fetch-wheels first and carry .whl" >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${wheels[@]}"
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=jax
# A rerun on the same machine reuses compiled programs (first_call_s then drops).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jax_compilation_cache}
echo "setup took $((SECONDS - start)) s"

echo "== devices"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
else
  echo "nvidia-smi: not found"
fi
"$PYTHON" -c 'import jax, keras; print("jax", jax.__version__, jax.devices()); print("keras", keras.__version__, keras.backend.backend())' \
  || echo "could not list the JAX devices with $PYTHON"

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
    "$PYTHON" benchmarks/throughput.py --config "$CONFIG" \
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
  --inference-batch-size 256 --measure "$measure"
run "${CONFIG}_mixed_bfloat16" "$BUDGET_S" --precision mixed_bfloat16 --batch-sizes 256,64 \
  --measure train

echo "== summary (total $((SECONDS - start)) s)"
"$PYTHON" benchmarks/summarize.py "$OUT"/*.json || failures=$((failures + 1))
exit $(( failures > 0 ? 1 : 0 ))
