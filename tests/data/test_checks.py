"""Tests for tfp_realnvp.data.checks: pixel arrays and the shared argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from tfp_realnvp import data
from tfp_realnvp.data import checks


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.full((2, 4, 4, 1), 300.5, np.float32), r"float32.*\[2, 4, 4, 1\].*max 300.5"),
        (np.full((2, 4, 4, 1), 300, np.int32), r"\[0, 256\).*int32.*max 300"),
        (np.full((2, 4, 4, 1), -1, np.int64), r"int64.*min -1"),
        (np.array([[[[np.nan, 1.0]]]]), r"NaN.*float64.*\[1, 1, 1, 2\].*1 NaN"),
        (np.full((1, 2, 2, 1), 1.5), r"integer pixel.*float64.*1.5"),
        (np.zeros((4, 4), np.uint8), r"rank 4.*uint8.*\[4, 4\]"),
        (np.zeros((1, 2, 4, 4, 1), np.uint8), r"rank 4.*\[1, 2, 4, 4, 1\]"),
        (np.zeros((0, 4, 4, 1), np.uint8), r"\[0, 4, 4, 1\]"),
        (np.zeros((1, 4, 4, 1), bool), r"dtype bool"),
        (np.array([[["a"]]]), r"dtype <U1"),
    ],
)
def test_check_images_errors_name_what_was_received(array, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.check_images(array, name="batch")


def test_check_images_accepts_pixels():
    out = data.check_images(np.zeros((2, 3, 3)))
    assert out.shape == (2, 3, 3, 1) and out.dtype == np.uint8
    values = np.array([0.0, 17.0, 255.0]).reshape(1, 1, 3, 1)
    np.testing.assert_array_equal(data.check_images(values)[0, 0, :, 0], [0, 17, 255])
    same = np.zeros((1, 2, 2, 3), np.uint8)
    assert data.check_images(same) is same


def test_check_images_on_backend_tensor():
    import keras

    tensor = keras.ops.convert_to_tensor(np.full((1, 2, 2, 1), 3.0, np.float32))
    np.testing.assert_array_equal(data.check_images(tensor), 3)
    with pytest.raises(ValueError, match="300"):
        data.check_images(keras.ops.convert_to_tensor(np.full((1, 2, 2, 1), 300.0)))


@pytest.mark.parametrize(
    "size, expected",
    [(None, None), (8, (8, 8)), ((4, 6), (4, 6)), ([4, 6], (4, 6)), (np.int64(3), (3, 3)), ((8.0, 6), (8, 6))],
)
def test_sizes_are_normalised(size, expected):
    assert checks.check_size(size, name="image_size") == expected


@pytest.mark.parametrize("size", [0, -2, (3,), (3, 4, 5), (3.5, 4), "8", True, (8, 0)])
def test_bad_sizes_name_the_value(size):
    with pytest.raises(
        ValueError, match=r"image_size.*" + repr(size).replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        checks.check_size(size, name="image_size")


def test_shards_and_counts():
    assert checks.check_shard(3, 2) == (3, 2)
    assert checks.check_shard(np.int32(2), np.int64(0)) == (2, 0)
    assert checks.check_shard(2.0, 1.0) == (2, 1)  # integral floats, as a JSON config gives them
    for count, index, pattern in [
        (0, 0, r"^num_shards must be an integer >= 1; received 0\.$"),
        (2, 2, r"^shard_index must be an integer >= 0 and <= 1; received 2\.$"),
        (2, -1, r"^shard_index .*received -1\.$"),
        (True, 0, r"^num_shards .*received True\.$"),
        (2, 0.5, r"^shard_index .*received 0\.5\.$"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            checks.check_shard(count, index)


@pytest.mark.parametrize("channels, expected", [(1, 1), (3, 3), (np.int64(3), 3), (3.0, 3)])
def test_channels(channels, expected):
    assert checks.check_channels(channels) == expected


@pytest.mark.parametrize("channels", [2, 4, True, 1.5, "3", None])
def test_bad_channels_name_the_value(channels):
    with pytest.raises(ValueError, match=r"channels must be 1 \(grayscale\) or 3 \(RGB\); received " + repr(channels)):
        checks.check_channels(channels)


def test_split_indices_are_fixed_disjoint_and_sorted():
    train = checks.split_indices(20, "train", 0.75)
    test = checks.split_indices(20, "test", 0.75)
    assert len(train) == 15 and len(test) == 5
    assert sorted({*train, *test}) == list(range(20))
    assert list(train) == sorted(train) and list(test) == sorted(test)
    assert list(train) != list(range(15))  # a permutation, not the first 15
    np.random.seed(123)  # NumPy's global state plays no part
    np.testing.assert_array_equal(checks.split_indices(20, "train", 0.75), train)
    np.testing.assert_array_equal(checks.split_indices(20, "all", 0.75), np.arange(20))
    with pytest.raises(ValueError, match=r"split 'test' is empty: 3 image"):
        checks.split_indices(3, "test", 0.9)
