#!/usr/bin/env bash
# Uniform against variational dequantization at equal GPU time (JAX backend, wheels
# carried in .whl/): the demo's architecture trained for GPU_BOUNDS_SECONDS each, one
# after the other, then benchmarks/bounds.py on both models (K = 1, 4, 16, 64, 256).
#
# Results in $OUT: <data>_<dequantization>/ (each run's files and report.json),
# train_<dequantization>.log, bounds.json and a summary at the end of the output.
#
# Settings (environment):
#   OUT                      results folder (default ./gpu_bounds)
#   PYTHON                   interpreter (default python3)
#   GPU_BOUNDS_DATA          --data of both runs (default shipped; an IDX directory of
#                            Fashion-MNIST for the full set)
#   GPU_BOUNDS_SECONDS       --time-budget of each training run (default 90)
#   GPU_BOUNDS_IMAGES        test images of the bound table (default 1000)
#   GPU_CHECK_SKIP_INSTALL   1: use the installed keras/tfp instead of installing .whl/*.whl
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-./gpu_bounds}
DATA=${GPU_BOUNDS_DATA:-shipped}
SECONDS_EACH=${GPU_BOUNDS_SECONDS:-90}
IMAGES=${GPU_BOUNDS_IMAGES:-1000}
mkdir -p "$OUT"
start=$SECONDS

source benchmarks/gpu_env.sh

name=$(basename "$DATA")
for dequantization in uniform variational; do
  run_dir="$OUT/${name}_${dequantization}"
  echo "== train $dequantization on $DATA for ${SECONDS_EACH} s"
  t0=$SECONDS
  timeout --signal=TERM --kill-after=10 $((SECONDS_EACH + 150)) \
    "$PYTHON" -m tfp_realnvp train --data "$DATA" --num-scales 2 --num-filters 16 --num-blocks 1 \
      --batch-size 64 --learning-rate 3e-3 --time-budget "$SECONDS_EACH" --epochs 10000 \
      --dequantization "$dequantization" --output-dir "$run_dir" >"$OUT/train_${dequantization}.log" 2>&1 \
    || echo "== train $dequantization: exit status $?"
  tail -n 4 "$OUT/train_${dequantization}.log"
  echo "== train $dequantization took $((SECONDS - t0)) s"
done

echo "== bounds"
"$PYTHON" -m benchmarks.bounds --model "uniform=$OUT/${name}_uniform/model.keras" \
  --model "variational=$OUT/${name}_variational/model.keras" --data "$DATA" \
  --max-images "$IMAGES" --output "$OUT/bounds.json"
echo "== all took $((SECONDS - start)) s"
