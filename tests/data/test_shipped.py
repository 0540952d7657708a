"""Tests for tfp_realnvp.data.shipped: the Fashion-MNIST set inside the package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfp_realnvp import data


def test_shipped_all_is_fashion_mnist_test_split():
    images, labels = data.load_shipped(split="all")
    assert images.shape == (10000, 28, 28, 1)
    assert images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10
    assert len(data.FASHION_MNIST_CLASSES) == 10
    assert images.max() == 255 and images.min() == 0


def test_shipped_file_ships_inside_the_package():
    import importlib.resources

    resource = importlib.resources.files("tfp_realnvp") / "data_files" / data.SHIPPED_FILE
    assert resource.is_file()


def test_shipped_splits_are_disjoint_deterministic_and_cover_everything():
    all_images, _ = data.load_shipped(split="all")
    train, train_labels = data.load_shipped(split="train")
    test, test_labels = data.load_shipped(split="test")
    assert train.shape == (9000, 28, 28, 1) and test.shape == (1000, 28, 28, 1)
    assert train_labels.shape == (9000,) and test_labels.shape == (1000,)
    keys = {img.tobytes() for img in all_images}
    train_keys = {img.tobytes() for img in train}
    test_keys = {img.tobytes() for img in test}
    assert not train_keys & test_keys
    assert train_keys | test_keys == keys
    again, _ = data.load_shipped(split="train")
    np.testing.assert_array_equal(train, again)
    # The result is a copy: changing it does not change later loads.
    train[0] = 7
    assert not np.array_equal(data.load_shipped(split="train")[0][0], train[0])


def test_shipped_train_fraction_and_padding():
    train, _ = data.load_shipped(split="train", train_fraction=0.5)
    assert train.shape[0] == 5000
    padded, _ = data.load_shipped(split="test", pad_to=32)
    plain, _ = data.load_shipped(split="test")
    assert padded.shape == (1000, 32, 32, 1)
    np.testing.assert_array_equal(padded[:, 2:30, 2:30], plain)
    assert padded[:, :2].max() == 0 and padded[:, :, 30:].max() == 0


@pytest.mark.parametrize(
    "kwargs, received",
    [
        (dict(split="validation"), "'validation'"),
        (dict(train_fraction=1.0), "1.0"),
        (dict(train_fraction=0), "0"),
        (dict(pad_to=16), "16x16"),
        (dict(pad_to=(32, -1)), "(32, -1)"),
    ],
)
def test_shipped_bad_options_name_the_value(kwargs, received):
    with pytest.raises(ValueError, match=received.replace("(", r"\(").replace(")", r"\)")):
        data.load_shipped(**kwargs)


def test_debian_fashion_mnist_directory_if_installed():
    directory = Path("/usr/share/datasets/fashion-mnist")
    if not (directory / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    images, labels = data.load_idx_dir(directory, split="test")
    shipped, shipped_labels = data.load_shipped(split="all")
    np.testing.assert_array_equal(images, shipped)
    np.testing.assert_array_equal(labels, shipped_labels)
