"""Shared pytest setup: Keras backend, JAX float64, seeding, tf_only marker."""

import os

if os.environ.get("KERAS_BACKEND") == "jax":
    # Must happen before any JAX array exists, so before Keras is imported.
    import jax

    jax.config.update("jax_enable_x64", True)

import keras  # noqa: E402
import pytest  # noqa: E402

import helpers  # noqa: E402

BACKEND = keras.backend.backend()

if BACKEND == "jax":
    import jax  # noqa: E402

    jax.config.update("jax_enable_x64", True)


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {BACKEND}"


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"needs the TensorFlow backend; running on {BACKEND}")
    for item in items:
        if "tf_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    """Seeds Python, NumPy and the backend before every test."""
    keras.utils.set_random_seed(0)
    yield


def pytest_terminal_summary(terminalreporter):
    line = helpers.error_summary()
    if line:
        terminalreporter.write_line(line)
