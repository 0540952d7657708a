"""Tests for tfp_realnvp.data.tfds: tfds names, their preprocessing, and mock datasets."""

from __future__ import annotations

import pytest

from tfp_realnvp import data

tf_only = pytest.mark.tf_only


@pytest.mark.parametrize(
    "name, key",
    [
        ("mnist", "mnist"),
        ("cifar10:3.0.2", "cifar10"),
        ("celeb_a", "celeb_a"),
        ("lsun/bedroom", "lsun/<category>"),
        ("imagenet_resized/64x64", "imagenet_resized/64x64"),
        ("lsun/", None),
        ("lsun", None),
        ("cifar100", None),
        ("some/folder", None),
        (42, None),
    ],
)
def test_tfds_key_and_is_tfds_name(name, key):
    assert data.tfds_key(name) == key
    assert data.is_tfds_name(name) is (key is not None)


def test_lsun_categories_share_one_key():
    assert data.tfds_key("lsun/church_outdoor") == "lsun/<category>"
    assert data.tfds_key("nope") is None


@tf_only
def test_unknown_tfds_name_lists_known_names():
    with pytest.raises(ValueError, match=r"'imagenet'.*celeb_a.*cifar10.*lsun"):
        data.load_tfds("imagenet", split="train")
    with pytest.raises(ValueError, match=r"unknown image source 'cifar100'.*cifar10"):
        data.get_dataset("cifar100")
    with pytest.raises(ValueError, match=r"split.*''"):
        data.load_tfds("mnist", split="")


@tf_only
@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("mnist", {}, [28, 28, 1]),
        ("mnist", dict(pad_to=32), [32, 32, 1]),
        ("cifar10", dict(image_size=16), [16, 16, 3]),
        ("celeb_a", {}, [64, 64, 3]),
        ("lsun/bedroom", {}, [64, 64, 3]),
        ("imagenet_resized/32x32", {}, [32, 32, 3]),
    ],
)
def test_tfds_end_to_end_with_mock_data(name, kwargs, shape, collect):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=3):
        dataset = data.get_dataset(name, split="train", **kwargs)
        assert dataset.element_spec == tf.TensorSpec(shape, tf.uint8)
        images = collect(dataset)
        batches = collect(data.make_dataset(dataset, batch_size=2, shuffle=False))
    assert len(images) == 3
    assert all(image.shape == tuple(shape) for image in images)
    assert [len(b) for b in batches] == [2, 1]
