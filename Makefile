# Two environments: .venv (TensorFlow, the primary backend) and .venv-jax (Keras on JAX
# with the TFP nightly JAX substrate). Both are created on first use.
PYTHON ?= python3
VENV := .venv
VENV_JAX := .venv-jax
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::DeprecationWarning
PIP_FLAGS := -q --disable-pip-version-check
DEMO_DIR ?= demo_output
# Three workers on two cores: many tests wait for a command-line subprocess, and the third
# worker uses the core that waiting leaves idle.
PYTEST_FLAGS ?= -q -m "not slow" --durations=10 -n 3 --dist worksteal

.PHONY: demo test test-tf test-jax test-slow test-cpu-times lint format venv venv-jax clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/pip install $(PIP_FLAGS) -c constraints.txt -e ".[tensorflow,test,lint,onnx]"
	touch $@

$(VENV_JAX)/.installed: pyproject.toml constraints-jax.txt
	$(PYTHON) -m venv $(VENV_JAX)
	$(VENV_JAX)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_JAX)/bin/pip install $(PIP_FLAGS) -c constraints-jax.txt -e ".[jax,test]" "jax[cpu]" dm-tree
	touch $@

venv: $(VENV)/.installed
venv-jax: $(VENV_JAX)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/python -m tfp_realnvp demo --output-dir $(DEMO_DIR)

# The JAX environment installs (mostly downloads and unpacking) while the TensorFlow suite
# runs; then the JAX suite runs alone, so the two suites never share the cores.
test:
	$(MAKE) --no-print-directory -j2 test-tf venv-jax
	$(MAKE) --no-print-directory test-jax

# ruff, configured in pyproject.toml: lint rules and the formatter's check.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-tf: $(VENV)/.installed
	KERAS_BACKEND=tensorflow $(VENV)/bin/python -m pytest $(PYTEST_FLAGS)

# Four workers on JAX: with three, the suite used 885 CPU s in 579 s on two cores (76 %).
test-jax: $(VENV_JAX)/.installed
	KERAS_BACKEND=jax $(VENV_JAX)/bin/python -m pytest $(PYTEST_FLAGS) -n 4 -m "not slow and not tf_only"

# The tests marked slow (longer runs, heavier variants of fast checks), on both backends.
test-slow: $(VENV)/.installed $(VENV_JAX)/.installed
	KERAS_BACKEND=tensorflow $(VENV)/bin/python -m pytest -q -m slow --durations=10 -n 3 --dist worksteal
	KERAS_BACKEND=jax $(VENV_JAX)/bin/python -m pytest -q -m "slow and not tf_only" --durations=10 -n 3 --dist worksteal

# What each fast test costs in CPU seconds (its pytest process and the subprocesses it
# waits for), TensorFlow suite: the costliest files and tests (tests/cpu_times_plugin.py).
test-cpu-times: $(VENV)/.installed
	rm -f test_cpu_times.jsonl
	KERAS_BACKEND=tensorflow $(VENV)/bin/python -m pytest $(PYTEST_FLAGS) --cpu-times test_cpu_times.jsonl
	$(VENV)/bin/python scripts/cpu_times.py test_cpu_times.jsonl --top 30

clean:
	rm -rf $(VENV) $(VENV_JAX) $(DEMO_DIR) .pytest_cache test_cpu_times.jsonl
