"""ResNetConditioner: shapes, zero output at initialisation, config, weight scales."""

import re

import keras
import numpy as np
import pytest

from helpers import assert_close, randomize, tensor, to_numpy
from tfp_realnvp import ResNetConditioner, WeightNormConv2D


@pytest.mark.parametrize("out_channels, num_blocks", [(1, 0), (3, 1), (2, 2)])
def test_output_shape(out_channels, num_blocks):
    net = ResNetConditioner(out_channels, num_filters=4, num_blocks=num_blocks, dtype="float64")
    x = tensor(np.random.default_rng(0).normal(size=(2, 4, 6, 5)))
    y = net(x)
    assert tuple(y.shape) == (2, 4, 6, 2 * out_channels)
    assert net.compute_output_shape((None, 4, 6, 5)) == (None, 4, 6, 2 * out_channels)
    assert len(net.weight_scales()) == 2 + 2 * num_blocks


def test_zero_output_at_initialisation():
    net = ResNetConditioner(3, num_filters=8, num_blocks=2, dtype="float64")
    y = to_numpy(net(tensor(np.random.default_rng(1).normal(size=(2, 4, 4, 2)))))
    np.testing.assert_array_equal(y, np.zeros((2, 4, 4, 6)))


def test_nonzero_output_with_random_weights():
    net = ResNetConditioner(3, num_filters=4, num_blocks=1, dtype="float64")
    net.build((None, 4, 4, 2))
    randomize(net.weights, seed=2)
    y = to_numpy(net(tensor(np.random.default_rng(1).normal(size=(2, 4, 4, 2)))))
    assert np.all(np.isfinite(y)) and np.min(np.abs(y)) > 0


def test_every_convolution_is_weight_normalized():
    net = ResNetConditioner(2, num_filters=4, num_blocks=2)
    net.build((None, 4, 4, 3))
    convs = [net.conv_in, net.conv_out, *net.block_conv1, *net.block_conv2]
    assert all(isinstance(c, WeightNormConv2D) for c in convs)
    assert net.conv_out.zero_init and not net.conv_in.zero_init
    assert [id(g) for g in net.weight_scales()] == [id(c.g) for c in convs]
    assert len(net.trainable_weights) == 3 * len(convs)


def test_config_round_trip():
    net = ResNetConditioner(3, num_filters=6, num_blocks=2, name="cond", dtype="float64")
    config = net.get_config()
    assert (config["out_channels"], config["num_filters"], config["num_blocks"]) == (3, 6, 2)
    clone = ResNetConditioner.from_config(config)
    assert clone.get_config() == config
    # Same weights, same outputs.
    x = tensor(np.random.default_rng(3).normal(size=(1, 4, 4, 2)))
    net.build((None, 4, 4, 2))
    clone.build((None, 4, 4, 2))
    randomize(net.weights, seed=4)
    for target, source in zip(clone.weights, net.weights):
        target.assign(source)
    assert_close(clone(x), net(x), atol=0.0)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    assert isinstance(restored, ResNetConditioner) and restored.get_config() == config


@pytest.mark.parametrize(
    "key, bad, bound",
    [
        ("out_channels", 0, "an integer >= 1"),
        ("num_filters", 0, "an integer >= 1"),
        ("num_blocks", -1, "an integer >= 0"),
        ("num_filters", 2.5, "an integer >= 1"),
        ("num_blocks", True, "an integer >= 0"),
        ("batch_norm_momentum", 1.0, "a finite number < 1.0"),
    ],
)
def test_bad_arguments(key, bad, bound):
    kwargs = {"out_channels": 2, "num_filters": 4, "num_blocks": 1, key: bad}
    out_channels = kwargs.pop("out_channels")
    with pytest.raises(ValueError, match=re.escape(f"{key} must be {bound}; received {bad!r}.")):
        ResNetConditioner(out_channels, **kwargs)
