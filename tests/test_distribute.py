"""``RealNVP.fit`` under ``tf.distribute.MirroredStrategy`` on two logical CPUs.

Logical devices must be configured before TensorFlow initialises its devices, which
the test session has long done, so the training runs in a fresh interpreter that
prints its results as JSON.

What to expect from two replicas, each computing on half of every global batch:

* without batch norm the replicas' summed gradients equal the gradient of the whole
  batch, so training matches one device up to float summation order (checked
  exactly with SGD, whose updates are linear in the gradient);
* with batch norm each replica normalises with the statistics of its own half
  batch, as Keras' ``BatchNormalization`` does without ``synchronized=True``: the
  log-likelihood of a step is that of two half batches, close to but not equal to
  one device's, and the moving averages are the mean over replicas (exact for the
  moving mean, missing the between-halves spread for the moving variance);
* every replica holds the same state of the training-noise generator, yet each must
  dequantize its images with noise of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf_only

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import tfp_realnvp

    rng = np.random.default_rng(0)
    uint8_images = rng.integers(0, 256, (32, 8, 8, 1)).astype(np.uint8)
    float_images = (uint8_images + rng.uniform(0.0, 1.0, uint8_images.shape)).astype(np.float32)


    def run(strategy, *, batch_norm, images, optimizer):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            # A low momentum makes the moving averages follow the last batches; with
            # the epoch-end re-estimation off they hold what the replicas' updates made.
            model = tfp_realnvp.RealNVP(
                (8, 8, 1), num_scales=1, num_filters=8, num_blocks=1, batch_norm=batch_norm,
                conditioner_batch_norm=batch_norm, batch_norm_momentum=0.5, refresh_batches=0, seed=1,
            )
            model.compile(optimizer=optimizer(), jit_compile=False)
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(16)
        history = model.fit(dataset, epochs=2, shuffle=False, verbose=0).history
        evaluation = model.evaluate(dataset, verbose=0, return_dict=True)
        bn = model.flow.batch_norms
        return {
            "replicas": strategy.num_replicas_in_sync,
            "history": {k: [float(v) for v in vs] for k, vs in history.items()},
            "evaluate": {k: float(v) for k, v in evaluation.items()},
            "iterations": int(model.optimizer.iterations.numpy()),
            "weights": [np.asarray(v).tolist() for v in model.trainable_variables],
            "moving_mean": [np.asarray(b.state.moving_mean).tolist() for b in bn],
            "moving_variance": [np.asarray(b.state.moving_variance).tolist() for b in bn],
        }


    configs = {
        "plain": dict(batch_norm=False, images=float_images, optimizer=lambda: keras.optimizers.SGD(0.05)),
        "batch_norm": dict(batch_norm=True, images=uint8_images, optimizer=lambda: None),
    }
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    # Training dequantization noise as each replica draws it, for the same images.
    with mirrored.scope():
        model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_filters=8, num_blocks=1, seed=1)
    batch = tf.constant(uint8_images[:4])
    step = tf.function(lambda: mirrored.run(lambda: model._pixels(batch, training=True) - tf.cast(batch, tf.float32)))
    replica_noise = [[np.asarray(v).tolist() for v in mirrored.experimental_local_results(step())] for _ in range(2)]

    results = {
        name: {
            "one": run(tf.distribute.get_strategy(), **config),
            "two": run(mirrored, **config),
        }
        for name, config in configs.items()
    }
    results["replica_noise"] = replica_noise
    print("RESULTS " + json.dumps(results))
    """
)


def run_script(tmp_path) -> dict:
    """Runs ``SCRIPT`` in a fresh interpreter; returns its results."""
    script = tmp_path / "mirrored.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, f"subprocess failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULTS ") :])


def check_replicas_draw_different_dequantization_noise(results):
    (first_a, first_b), (second_a, _) = (np.asarray(step) for step in results["replica_noise"])
    for noise in (first_a, first_b, second_a):
        assert noise.shape == (4, 8, 8, 1)
        assert noise.min() >= 0.0 and noise.max() < 1.0
        assert 0.4 < noise.mean() < 0.6
    # The replicas' generators share one state; their noise must still differ, and
    # each step draws new noise.
    assert np.mean(first_a == first_b) < 0.01
    assert np.mean(first_a == second_a) < 0.01


def check_two_replicas_really_run(results):
    for name in ("plain", "batch_norm"):
        config = results[name]
        assert config["one"]["replicas"] == 1
        assert config["two"]["replicas"] == 2
        assert config["one"]["iterations"] == config["two"]["iterations"] == 4


def check_without_batch_norm_two_replicas_train_like_one_device(results):
    one, two = results["plain"]["one"], results["plain"]["two"]
    # The logged loss is the global-batch loss, not the sum over replicas.
    np.testing.assert_allclose(two["history"]["loss"], one["history"]["loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(two["history"]["bits_per_dim"], one["history"]["bits_per_dim"], rtol=0, atol=1e-5)
    # Gradients are summed over replicas from losses scaled by 1/replicas: the SGD
    # steps, and so the weights, are those of one device.
    for a, b in zip(two["weights"], one["weights"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(two["evaluate"]["loss"], one["evaluate"]["loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(two["evaluate"]["bits_per_dim"], one["evaluate"]["bits_per_dim"], rtol=0, atol=1e-5)
    # The steps did something.
    assert one["history"]["loss"][1] < one["history"]["loss"][0]


def check_with_batch_norm_two_replicas_stay_close_to_one_device(results):
    one, two = results["batch_norm"]["one"], results["batch_norm"]["two"]
    for key in ("loss", "bits_per_dim"):
        assert np.all(np.isfinite(two["history"][key]))
        # Per-replica batch statistics and per-replica dequantization noise: close,
        # not equal (about 1e-3 bits/dim on this data).
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=0, atol=0.01)
        np.testing.assert_allclose(two["evaluate"][key], one["evaluate"][key], rtol=0, atol=0.01)
    # The logged loss is not summed over replicas.
    gap = np.asarray(two["history"]["loss"]) - np.asarray(two["history"]["bits_per_dim"])
    assert np.all(gap > 0) and np.all(gap < 0.05)
    # The moving averages moved (the first one, on logit pixels, by a lot) and are the
    # mean over replicas: a sum would double them.
    assert abs(one["moving_mean"][0][0]) > 0.02 and one["moving_variance"][0][0] > 1.3
    for a, b in zip(two["moving_mean"], one["moving_mean"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=0.005)
    for a, b in zip(two["moving_variance"], one["moving_variance"]):
        np.testing.assert_allclose(a, b, rtol=0.01, atol=0)


@pytest.mark.slow  # a script that trains under two strategies in a subprocess
def test_fit_under_a_mirrored_strategy(tmp_path):
    """One run of the script (its interpreter and four trainings are the cost), every check."""
    results = run_script(tmp_path)
    check_replicas_draw_different_dequantization_noise(results)
    check_two_replicas_really_run(results)
    check_without_batch_norm_two_replicas_train_like_one_device(results)
    check_with_batch_norm_two_replicas_stay_close_to_one_device(results)
