"""Tests for tfp_realnvp.data.pipeline: make_dataset batches what Keras fit reads as x."""

from __future__ import annotations

import numpy as np
import pytest

from tfp_realnvp import data

tf_only = pytest.mark.tf_only


@tf_only
def test_make_dataset_batches(stripes, collect):
    import tensorflow as tf

    images = stripes(10)
    dataset = data.make_dataset(images, batch_size=4, shuffle=False)
    assert dataset.element_spec.dtype == tf.uint8
    batches = collect(dataset)
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(batches), images)
    dropped = collect(data.make_dataset(images, batch_size=4, shuffle=False, drop_remainder=True))
    assert [len(b) for b in dropped] == [4, 4]
    repeated = data.make_dataset(images, batch_size=4, repeat=True, seed=1, drop_remainder=True)
    assert repeated.element_spec.shape.as_list() == [4, 6, 5, 1]
    assert len(collect(repeated.take(7))) == 7


@tf_only
def test_make_dataset_shuffle_is_seeded(stripes, collect):
    images = stripes(64)

    def order(seed):
        dataset = data.make_dataset(images, batch_size=16, seed=seed)
        return np.concatenate(collect(dataset))[:, 0, 1, 0]

    first = order(3)
    assert sorted(first.tolist()) == list(range(64))
    np.testing.assert_array_equal(first, order(3))
    assert not np.array_equal(first, order(4))
    assert not np.array_equal(first, np.arange(64))
    # A fresh epoch of the same dataset reshuffles.
    dataset = data.make_dataset(images, batch_size=64, seed=3)
    epoch1, epoch2 = collect(dataset)[0], collect(dataset)[0]
    assert not np.array_equal(epoch1, epoch2)


@tf_only
def test_make_dataset_flips(stripes, collect):
    images = stripes(64)
    mirrored = images[:, :, ::-1]

    def run(flip, seed=0):
        return np.concatenate(collect(data.make_dataset(images, batch_size=16, shuffle=False, flip=flip, seed=seed)))

    out = run(True)
    is_flipped = (out == mirrored).all(axis=(1, 2, 3))
    is_plain = (out == images).all(axis=(1, 2, 3))
    assert (is_flipped | is_plain).all()
    assert 10 < is_flipped.sum() < 54
    np.testing.assert_array_equal(out, run(True))
    assert not np.array_equal(out, run(True, seed=1))
    np.testing.assert_array_equal(run(False), images)


@tf_only
def test_make_dataset_from_get_dataset_and_errors(stripes):
    import tensorflow as tf

    single = data.get_dataset("shipped", split="test", pad_to=32)
    assert single.element_spec == tf.TensorSpec([32, 32, 1], tf.uint8)
    batches = data.make_dataset(single, batch_size=256, shuffle=True, seed=0, flip=True)
    first = next(iter(batches))
    assert first.shape == (256, 32, 32, 1) and first.dtype == tf.uint8
    with pytest.raises(ValueError, match="300.5"):
        data.make_dataset(np.full((2, 4, 4, 1), 300.5), batch_size=2)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"batch_size.*{bad!r}"):
            data.make_dataset(stripes(2), batch_size=bad)
    with pytest.raises(ValueError, match="shuffle_buffer.*0"):
        data.make_dataset(stripes(2), batch_size=2, shuffle_buffer=0)
    with pytest.raises(ValueError, match="element_spec"):
        data.make_dataset(tf.data.Dataset.from_tensor_slices(np.zeros((2, 3), np.float32)), batch_size=2)


@tf_only
def test_make_dataset_feeds_keras_fit(stripes):
    import keras

    class Tiny(keras.Model):
        """Reads uint8 batches as x with no labels; its loss comes from add_loss."""

        def __init__(self):
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            y = self.dense(self.flatten(keras.ops.cast(x, "float32") / 255.0))
            self.add_loss(keras.ops.mean(y**2))
            return y

    images = stripes(8)
    model = Tiny()
    model.compile(optimizer="sgd")
    history = model.fit(data.make_dataset(images, batch_size=4, seed=0), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_tf_functions_point_to_load_images_without_tensorflow(stripes, tmp_path, tagged_folder):
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed")
    tagged_folder(tmp_path, 2)
    with pytest.raises(ImportError, match="load_images"):
        data.make_dataset(stripes(2), batch_size=2)
    with pytest.raises(ImportError, match="load_images"):
        data.get_dataset("shipped")
    with pytest.raises(ImportError, match="load_images"):
        data.stream_image_folder(tmp_path, batch_size=2)
    with pytest.raises(ImportError, match="load_images"):
        data.write_tfrecord_shards(stripes(2), tmp_path / "shards")
