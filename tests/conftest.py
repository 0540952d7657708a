"""Shared pytest setup: Keras backend, JAX float64, quick graph building, seeding, the tf_only and
backend_independent markers, and ``--cpu-times`` (``cpu_times_plugin``)."""

import os
import shutil
import tempfile

import pytest

#: The tests run many small programs a few times each, so building them costs more than
#: running them: most XLA optimisations are off on JAX, in this process and (through the
#: environment) in the command-line processes the tests start, and Grappler does not
#: rewrite the graphs on TensorFlow. The same operations run, unfused; numerics stay IEEE.
#: ``PYTEST_OPTIMIZED_GRAPHS=1`` keeps both optimisers on.
FAST_GRAPHS = os.environ.get("PYTEST_OPTIMIZED_GRAPHS") != "1"

#: On JAX, the programs XLA compiled are kept on disk for the whole run (one folder, made
#: by the first pytest process and shared by its xdist workers and every subprocess they
#: start through the environment), so the same tiny model compiled by many CLI runs is
#: compiled once. ``pytest_unconfigure`` removes the folder.
_OWN_CACHE = False

if os.environ.get("KERAS_BACKEND") == "jax":
    if FAST_GRAPHS:
        os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # read when jax is imported
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="tfp_realnvp_tests_xla_")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        _OWN_CACHE = True
    # Float64 tests need x64, which must be on before any JAX array exists, so before
    # Keras is imported (Keras reads KERAS_BACKEND, as this check does).
    import jax

    jax.config.update("jax_enable_x64", True)

import keras  # noqa: E402 (JAX's x64 mode must be set before keras is imported)
from cpu_times_plugin import pytest_addoption, pytest_runtest_protocol  # noqa: E402, F401 (hooks)

import helpers  # noqa: E402 (imports keras: after the x64 switch)

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow" and FAST_GRAPHS:
    import tensorflow as tf

    # Grappler skips graphs of fewer nodes than this: all of the tests'. (Turning its
    # meta-optimizer off instead saves the same time but doubles a process' memory.)
    tf.config.optimizer.set_experimental_options({"min_graph_nodes": 1_000_000})
if BACKEND == "jax" and os.environ.get("KERAS_BACKEND") != "jax":
    # Keras chose JAX from its config file, too late for the switch above.
    raise pytest.UsageError(
        "run the tests with KERAS_BACKEND=jax: float64 needs JAX's x64 mode before keras is imported"
    )


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {BACKEND}"


def pytest_collection_modifyitems(config, items):
    # The long tests first (a stable partition): a test of minutes that a worker started
    # last would leave the other workers idle until it ends.
    items.sort(key=lambda item: "starts_first" not in item.keywords)
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"needs the TensorFlow backend; running on {BACKEND}")
    once = pytest.mark.skip(reason="runs no backend op: checked once, in the TensorFlow suite")
    for item in items:
        if "tf_only" in item.keywords:
            item.add_marker(skip)
        elif "backend_independent" in item.keywords:
            item.add_marker(once)


@pytest.fixture(autouse=True)
def _seed():
    """Seeds Python, NumPy and the backend before every test."""
    keras.utils.set_random_seed(0)
    yield


def pytest_terminal_summary(terminalreporter):
    line = helpers.error_summary()
    if line:
        terminalreporter.write_line(line)


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
