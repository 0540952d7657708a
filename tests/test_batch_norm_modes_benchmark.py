"""benchmarks/batch_norm_modes.py: its shadow averages follow the package's rule, and a
tiny run writes a complete report in which the re-estimation beats the old default."""

import io
import json
import math

import keras
import numpy as np
import pytest

from benchmarks import batch_norm_modes
from benchmarks.batch_norm_experiment import SHADOW_CANDIDATES, THRESHOLD
from benchmarks.batch_norm_training import NO_WARM_START, ShadowAverages
from tfp_realnvp.bijectors.batch_norm import BatchNormalization
from tfp_realnvp.internal.moving_stats import update_moving_moments


@pytest.mark.parametrize("momentum,warm_start", [(0.99, False), (0.99, True), (0.9, True)])
def test_shadow_averages_follow_the_package_rule(momentum, warm_start):
    rng = np.random.default_rng(0)
    shadow = ShadowAverages([3], momentum=momentum, warm_start=warm_start)
    mean = keras.Variable(np.zeros(3, np.float32))
    var = keras.Variable(np.ones(3, np.float32))
    count = keras.Variable(np.float32(0.0 if warm_start else NO_WARM_START))
    for _ in range(25):
        m = rng.normal(size=3).astype(np.float32)
        v = rng.uniform(0.5, 2.0, size=3).astype(np.float32)
        update_moving_moments(
            moving_mean=mean, moving_variance=var, num_updates=count, mean=m, variance=v, momentum=momentum, what="test"
        )
        shadow.update([(m, v)])
    np.testing.assert_allclose(shadow.stats[0][0], keras.ops.convert_to_numpy(mean), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(shadow.stats[0][1], keras.ops.convert_to_numpy(var), rtol=1e-6, atol=1e-7)
    assert float(shadow.k) == float(keras.ops.convert_to_numpy(count))


def test_momentum_zero_leaves_the_batch_statistics():
    """The benchmark reads each step's batch statistics from averages with momentum 0."""
    bn = BatchNormalization(event_shape=(4, 4, 2), momentum=0.0)
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(5, 4, 4, 2)).astype(np.float32)
    for _ in range(2):  # the second call must not mix in the first
        bn.inverse(x, training=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.state.moving_mean), x.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.state.moving_variance), x.var(axis=(0, 1, 2)), rtol=1e-5)


@pytest.mark.tf_only
@pytest.mark.slow  # trains six models
def test_tiny_run_writes_report_and_plot(tmp_path):
    """One command trains two runs: "shared" (the candidates' shadow averages) and
    "default" (the model as fit leaves it)."""
    out, png = tmp_path / "bn.json", tmp_path / "bn.png"
    steps, every = 4, 2
    argv = [
        "--steps",
        str(steps),
        "--eval-every",
        str(every),
        "--steps-per-epoch",
        "2",
        "--data",
        "shipped",
        "--max-train",
        "256",
        "--max-test",
        "64",
        "--reestimate-batches",
        "2",
        "--reestimate-batch-size",
        "32",
        "--num-scales",
        "1",
        "--num-filters",
        "4",
        "--runs",
        "shared,default",
        "--verbose",
        "0",
        "--output",
        str(out),
        "--plot",
        str(png),
    ]
    assert batch_norm_modes.main(argv) == 0
    report = json.loads(out.read_text())

    settings = report["settings"]
    assert settings["steps"] == steps and settings["train_images"] == 256 and settings["test_images"] == 64
    assert report["machine"]["cores"] >= 1 and report["versions"]["backend"] == "tensorflow"
    assert report["wall_seconds"] > 0
    assert set(report["runs"]) == {"shared", "default"}
    shared = report["runs"]["shared"]
    assert shared["steps_trained"] == steps
    assert shared["num_updates_after_training"] == [float(steps)]  # one update per batch norm per step
    assert shared["eval_steps"] == list(range(every, steps + 1, every))
    assert shared["epoch_end_reestimations"] == steps // 2
    candidates = [c for c in report["candidates"] if c["run"] == "shared"]
    assert [c["name"] for c in candidates] == [c["name"] for c in SHADOW_CANDIDATES]
    for c in candidates:
        curve = c["inference_bits_per_dim"]
        assert len(curve) == len(c["gap"]) == len(shared["eval_steps"])
        assert all(math.isfinite(v) and v > 0 for v in curve)
        assert c["final_gap"] == pytest.approx(c["final_inference_bits_per_dim"] - c["final_reference_bits_per_dim"])
        assert c["within_threshold_at_end"] == (abs(c["final_gap"]) <= THRESHOLD)
    by_name = {c["name"]: c for c in candidates}
    old = by_name["momentum_0.99_no_warm_start"]
    reference = shared["reference_bits_per_dim"][-1]
    # Averages that still hold most of their 0/1 start are far off; re-estimated ones are not.
    assert reference < old["final_inference_bits_per_dim"] - 0.1
    # Warm-started averages come from the same batches as the reference, a few steps apart.
    assert abs(by_name["momentum_0.9_warm_start"]["final_gap"]) < abs(old["final_gap"])
    # Re-estimated statistics and each test batch's own statistics describe the same weights.
    assert abs(shared["batch_mode_bits_per_dim"][-1] - reference) < 0.05

    # The default run measures the model as fit leaves it.
    run = report["runs"]["default"]
    assert run["model"]["conditioner_batch_norm"] is True
    # fit re-estimated the averages at the end: the counters hold its batches, not the steps.
    assert run["num_updates_after_training"] == [8.0]
    (candidate,) = [c for c in report["candidates"] if c["run"] == "default"]
    assert candidate["name"] == "defaults" and len(candidate["inference_bits_per_dim"]) == 2
    assert abs(candidate["final_gap"]) < 0.5

    from PIL import Image

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(data)).size == (1500, 720)
