"""Tests for tfp_realnvp.data.sources: load_images and get_dataset pick the loader by source."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfp_realnvp import data

tf_only = pytest.mark.tf_only


def test_the_data_package_is_an_attribute_of_the_top_level_package():
    """``import tfp_realnvp`` alone gives ``tfp_realnvp.data`` (a fresh interpreter)."""
    code = "import tfp_realnvp; assert tfp_realnvp.data.load_images is tfp_realnvp.data.sources.load_images"
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data" in __import__("tfp_realnvp").__all__


def test_load_images_defaults_to_shipped_train():
    images = data.load_images()
    np.testing.assert_array_equal(images, data.load_shipped(split="train")[0])
    assert data.load_images(split="test", image_size=14).shape == (1000, 14, 14, 1)


def test_single_idx_file_is_split_by_fraction(tmp_path, stripes, write_idx):
    path = write_idx(tmp_path / "images-idx3-ubyte.gz", stripes(10)[..., 0])
    train = data.load_images(path, split="train", train_fraction=0.7)
    test = data.load_images(path, split="test", train_fraction=0.7)
    assert train.shape == (7, 6, 5, 1) and test.shape == (3, 6, 5, 1)
    assert not set(train[:, 0, 1, 0]) & set(test[:, 0, 1, 0])
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="notes.txt"):
        data.load_images(other)


def test_npz_without_split_keys_is_split_by_fraction(tmp_path, stripes):
    path = tmp_path / "many.npz"
    np.savez(path, images=stripes(10), labels=np.arange(10))
    train = data.load_images(path, split="train", train_fraction=0.8)
    test = data.load_images(path, split="test", train_fraction=0.8)
    assert len(train) == 8 and len(test) == 2
    assert not set(train[:, 0, 1, 0]) & set(test[:, 0, 1, 0])


def test_npz_with_keras_style_split_keys(tmp_path, stripes):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=stripes(4)[..., 0], y_train=np.zeros(4), x_test=stripes(2)[..., 0])
    assert data.load_images(path, split="train").shape == (4, 6, 5, 1)
    assert data.load_images(path, split="test").shape == (2, 6, 5, 1)
    assert data.load_images(path, split="all", key="x_test").shape == (2, 6, 5, 1)


def test_image_folder_is_split_by_fraction(tmp_path, tagged_folder):
    tags = tagged_folder(tmp_path, 10)[:, 0, 0, 0]
    train = data.load_images(tmp_path, split="train", train_fraction=0.6)[:, 0, 0, 0]
    test = data.load_images(tmp_path, split="test", train_fraction=0.6)[:, 0, 0, 0]
    assert len(train) == 6 and len(test) == 4
    assert sorted([*train, *test]) == sorted(tags)


def test_unknown_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown image source 'cifar100'.*cifar10"):
        data.load_images("cifar100")
    with pytest.raises(ValueError, match=r"'celeb_a' is a tfds dataset.*get_dataset"):
        data.load_images("celeb_a")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.load_images(str(tmp_path / "missing.npz"))


@tf_only
def test_get_dataset_local_sources(tmp_path, stripes, collect):
    import tensorflow as tf

    np.savez(tmp_path / "x.npz", images=stripes(10))
    dataset = data.get_dataset(tmp_path / "x.npz", split="all")
    assert dataset.element_spec == tf.TensorSpec([6, 5, 1], tf.uint8)
    np.testing.assert_array_equal(np.stack(collect(dataset)), stripes(10))
    padded = data.get_dataset(tmp_path / "x.npz", split="all", pad_to=8)
    assert padded.element_spec.shape == [8, 8, 1]
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.get_dataset(str(tmp_path / "missing.npz"))
