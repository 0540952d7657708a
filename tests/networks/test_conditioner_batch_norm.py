"""ConditionerBatchNorm and the batch-normalized ResNet conditioner: the training flag
selects batch statistics or moving averages, sub-layers are attributes that
checkpoints find, configs round-trip."""

import re

import keras
import numpy as np
import pytest

from helpers import BACKEND, assert_close, randomize, tensor, to_numpy, variable_values
from tfp_realnvp import ResNetConditioner
from tfp_realnvp.networks import ConditionerBatchNorm

EPS = 1e-4
STATS_TOL = 1e-5 if BACKEND == "jax" else 1e-10


def built_norm(momentum=0.9):
    norm = ConditionerBatchNorm(momentum=momentum, dtype="float64")
    norm.build((None, 4, 4, 3))
    return norm


def batch(seed, n=8):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4, 4, 3)) * np.array([2.0, 0.5, 1.0]) + np.array([1.0, -3.0, 0.0])


def test_training_uses_batch_statistics_and_warm_starts_the_averages():
    norm = built_norm()
    randomize(norm.trainable_weights, seed=0)
    x = batch(1)
    y = to_numpy(norm(tensor(x), training=True))
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    gamma, beta = to_numpy(norm.gamma), to_numpy(norm.beta)
    assert_close(y, gamma * (x - mean) / np.sqrt(var + EPS) + beta, atol=STATS_TOL)
    # The first batch sets the averages.
    assert_close(norm.moving_mean, mean, atol=STATS_TOL)
    assert_close(norm.moving_variance, var, atol=STATS_TOL, rtol=STATS_TOL)
    assert float(to_numpy(norm.num_updates)) == 1.0
    x2 = batch(2)
    norm(tensor(x2), training=True)
    assert_close(norm.moving_mean, (mean + x2.mean(axis=(0, 1, 2))) / 2, atol=STATS_TOL)


def test_inference_uses_the_moving_averages():
    norm = built_norm()
    randomize(norm.weights, seed=3)
    x = batch(4)
    before = variable_values(norm.weights)
    y = norm(tensor(x))
    expected = to_numpy(norm.gamma) * (x - to_numpy(norm.moving_mean)) / np.sqrt(
        to_numpy(norm.moving_variance) + EPS
    ) + to_numpy(norm.beta)
    assert_close(y, expected, atol=1e-10)
    assert all(np.array_equal(a, b) for a, b in zip(variable_values(norm.weights), before))


def test_config_round_trip():
    norm = ConditionerBatchNorm(momentum=0.8, epsilon=1e-3, name="cbn")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(norm))
    assert isinstance(restored, ConditionerBatchNorm)
    assert (restored.momentum, restored.epsilon, restored.name) == (0.8, 1e-3, "cbn")


@pytest.mark.parametrize(
    "key, bad, bound",
    [
        ("momentum", 1.0, "< 1.0"),
        ("momentum", -0.1, ">= 0.0"),
        ("epsilon", 0.0, "> 0.0"),
        ("epsilon", float("nan"), "> 0.0"),
    ],
)
def test_bad_arguments(key, bad, bound):
    with pytest.raises(ValueError, match=re.escape(f"{key} must be a finite number {bound}; received {bad!r}.")):
        ConditionerBatchNorm(**{key: bad})


def resnet(num_blocks=2):
    net = ResNetConditioner(2, num_filters=4, num_blocks=num_blocks, batch_norm=True, dtype="float64")
    net.build((None, 4, 4, 3))
    randomize(net.weights, seed=5)
    return net


def test_resnet_with_batch_norm_follows_the_training_flag():
    net = resnet()
    norms = ["norm_in", "block0_norm1", "block0_norm2", "block1_norm1", "block1_norm2"]
    assert all(isinstance(getattr(net, name), ConditionerBatchNorm) for name in norms)
    assert len(net.non_trainable_weights) == 3 * len(norms)
    assert net.get_config()["batch_norm"] is True
    x = tensor(batch(6))
    before = variable_values(net.non_trainable_weights)
    inference = to_numpy(net(x))
    assert all(np.array_equal(a, b) for a, b in zip(variable_values(net.non_trainable_weights), before))
    training = to_numpy(net(x, training=True))
    assert all(not np.array_equal(a, b) for a, b in zip(variable_values(net.non_trainable_weights), before))
    assert np.max(np.abs(training - inference)) > 1e-3


@pytest.mark.tf_only
def test_checkpoint_holds_every_sub_layer(tmp_path):
    import tensorflow as tf

    net = resnet(num_blocks=3)
    path = tf.train.Checkpoint(net=net).write(str(tmp_path / "net"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(net.weights)
    for i in range(3):
        for part in (f"block{i}_conv1", f"block{i}_conv2", f"block{i}_norm1", f"block{i}_norm2"):
            assert any(f"/{part}/" in name for name in saved), part
    clone = resnet(num_blocks=3)
    randomize(clone.weights, seed=6)
    tf.train.Checkpoint(net=clone).read(path).assert_consumed()
    x = tensor(batch(7))
    assert_close(clone(x), net(x), atol=0.0)
