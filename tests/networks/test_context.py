"""ContextEmbedding: shape, per-class rows for one-hot contexts, config, argument errors."""

import re

import keras
import numpy as np
import pytest

from helpers import to_numpy
from tfp_realnvp.networks.context import ContextEmbedding


def test_one_hot_context_picks_a_row_at_every_pixel():
    layer = ContextEmbedding(5, dtype="float64")
    context = np.eye(3)[[2, 0]]
    e = to_numpy(layer(context, height=4, width=6))
    assert e.shape == (2, 4, 6, 5)
    kernel, bias = to_numpy(layer.kernel), to_numpy(layer.bias)
    np.testing.assert_allclose(e[0, 1, 3], kernel[2] + bias, atol=1e-12)
    np.testing.assert_allclose(e[1], np.broadcast_to(kernel[0] + bias, (4, 6, 5)), atol=1e-12)


def test_config_round_trip():
    layer = ContextEmbedding(7, name="embed")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, ContextEmbedding) and (restored.channels, restored.name) == (7, "embed")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_bad_channels(bad):
    with pytest.raises(ValueError, match=re.escape(f"channels must be an integer >= 1; received {bad!r}.")):
        ContextEmbedding(bad)
