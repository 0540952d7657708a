"""benchmarks/bits_per_dim.py trains for its budget and reports against the baseline."""

import importlib
import json

import numpy as np
import pytest


# A training run of the benchmark, the only test of benchmarks/bits_per_dim.py: with the
# slow tests (make test-slow).
@pytest.mark.slow
def test_bits_per_dim_benchmark_writes_measured_json(tmp_path):
    module = importlib.import_module("benchmarks.bits_per_dim")
    out = tmp_path / "bpd.json"
    argv = [
        "--config",
        "tiny",
        "--data",
        "shipped",
        "--minutes",
        "0.02",
        "--max-epochs",
        "1",
        "--max-train",
        "256",
        "--max-test",
        "64",
        "--verbose",
        "0",
        "--output",
        str(out),
    ]
    assert module.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["train_images"] == 256 and report["test_images"] == 64
    assert report["steps"] >= 1
    assert np.isfinite(report["test_bits_per_dim"]) and report["test_bits_per_dim"] > 0
    assert 3.0 < report["independent_pixel_test_bits_per_dim"] < 8.0
    assert report["versions"]["backend"] in ("tensorflow", "jax")
