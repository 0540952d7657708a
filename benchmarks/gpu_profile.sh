#!/usr/bin/env bash
# Per-part profile of the train step (benchmarks/step_profile.py) of tfp_realnvp.RealNVP and
# of the plain-Keras baseline, on the Keras JAX backend of a GPU machine without TensorFlow.
#
# Installs the carried wheels (benchmarks/gpu_env.sh), then profiles, most important first:
#   1. float32, batch 64
#   2. mixed_bfloat16, batch 256
#   3. float32, batch 256
#   4. mixed_bfloat16, batch 64
# Every run times both implementations (alternating repeats) and records a profiler trace of
# each; CUDA graphs are off (--no-command-buffers) so that every kernel is seen. A run that
# no longer fits in GPU_PROFILE_BUDGET_S is skipped. Writes <run>.json (and the compiled
# HLO of each step under hlo/) to $OUT and prints each run's table.
#
# Settings (environment):
#   OUT                     results folder (default ./gpu_profile)
#   PYTHON                  interpreter (default python3)
#   GPU_PROFILE_CONFIG      step_profile.py --config (default cifar10; tiny to try it on a CPU)
#   GPU_PROFILE_BUDGET_S    total seconds for all runs (default 330)
#   GPU_PROFILE_RUNS        how many of the runs above to attempt (default 4)
#   GPU_PROFILE_MIN_RUN_S   do not start a run with less time left (default 100: building and
#                           compiling both models takes about 2 minutes on an H200)
#   GPU_PROFILE_KEEP_CUDA_GRAPHS  1: leave XLA's command buffers on
#   GPU_CHECK_SKIP_INSTALL  1: use the installed keras/tfp instead of installing .whl/*.whl
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CONFIG=${GPU_PROFILE_CONFIG:-cifar10}
OUT=${OUT:-./gpu_profile}
BUDGET_S=${GPU_PROFILE_BUDGET_S:-330}
RUNS=${GPU_PROFILE_RUNS:-4}
MIN_RUN_S=${GPU_PROFILE_MIN_RUN_S:-100}
mkdir -p "$OUT"
start=$SECONDS

source benchmarks/gpu_env.sh

extra=(--no-command-buffers)
[[ "${GPU_PROFILE_KEEP_CUDA_GRAPHS:-0}" == 1 ]] && extra=()
failures=0
count=0
for spec in float32:64 mixed_bfloat16:256 float32:256 mixed_bfloat16:64; do
  count=$((count + 1))
  (( count > RUNS )) && break
  precision=${spec%%:*}
  batch=${spec##*:}
  name="${CONFIG}_${precision}_b${batch}"
  left=$((BUDGET_S - (SECONDS - start)))
  if (( left < MIN_RUN_S )); then
    echo "== $name: skipped, ${left} s of the ${BUDGET_S} s budget left"
    failures=$((failures + 1))
    continue
  fi
  echo "== $name (timeout ${left} s)"
  t0=$SECONDS
  rc=0
  timeout --signal=TERM --kill-after=10 "$left" \
    "$PYTHON" -m benchmarks.step_profile --config "$CONFIG" --precision "$precision" \
      --batch-size "$batch" --warmup 3 --repeats 6 --steps 10 --profile-steps 3 "${extra[@]}" \
      --hlo-dir "$OUT/hlo" --output "$OUT/$name.json" || rc=$?
  if (( rc != 0 )); then
    echo "== $name: exit status $rc$( (( rc == 124 || rc == 137 )) && echo ' (timed out)')"
    failures=$((failures + 1))
  fi
  echo "== $name took $((SECONDS - t0)) s"
done
echo "== total $((SECONDS - start)) s"
exit $(( failures > 0 ? 1 : 0 ))
