# Sourced by the GPU scripts (gpu_check.sh, gpu_profile.sh, gpu_bounds.sh): installs the
# carried wheels (.whl/, see benchmarks/README.md) into /tmp/site, selects the Keras JAX backend and prints the
# GPU and the JAX devices. Expects PYTHON and start (= $SECONDS at the script's start).
#   GPU_CHECK_SKIP_INSTALL   1: use the installed keras/tfp instead of installing .whl/*.whl

echo "== setup"
if [[ "${GPU_CHECK_SKIP_INSTALL:-0}" != 1 ]]; then
  shopt -s nullglob
  wheels=(.whl/*.whl)
  shopt -u nullglob
  if (( ${#wheels[@]} == 0 )); then
    echo "no wheels in .whl/: download them (benchmarks/README.md, GPU) and carry .whl" >&2
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
