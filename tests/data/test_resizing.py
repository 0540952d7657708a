"""Tests for tfp_realnvp.data.resizing: crops, resizes, padding and the paper's presets."""

from __future__ import annotations

import numpy as np
import pytest

from tfp_realnvp import data

tf_only = pytest.mark.tf_only


def test_resize_crops_to_aspect_ratio():
    image = np.zeros((1, 20, 40, 1), np.uint8)
    image[:, :, 10:30] = 255  # the centered square is white, the sides black
    out = data.resize_images(image, 10)
    assert out.shape == (1, 10, 10, 1)
    assert out.min() == 255


def test_resize_keeps_images_of_the_target_size_and_handles_any_channels():
    images = np.arange(2 * 4 * 4 * 2, dtype=np.uint8).reshape(2, 4, 4, 2)
    assert data.resize_images(images, 4) is images
    out = data.resize_images(images, (2, 2))
    assert out.shape == (2, 2, 2, 2) and out.dtype == np.uint8


def test_pad_images_centers_and_names_bad_sizes():
    images = np.full((3, 5, 4, 1), 9, np.uint8)
    padded = data.pad_images(images, (8, 7))
    assert padded.shape == (3, 8, 7, 1)
    np.testing.assert_array_equal(padded[:, 1:6, 1:5], images)  # odd pixel bottom/right
    assert padded.sum() == images.sum()
    with pytest.raises(ValueError, match=r"at least the image size 5x4; received 4x8"):
        data.pad_images(images, (4, 8))


@tf_only
def test_celeba_preprocess_crops_center_148_then_resizes_to_64():
    image = np.zeros((218, 178, 3), np.uint8)
    top, left = (218 - 148) // 2, (178 - 148) // 2
    image[top : top + 148, left : left + 148] = (10, 120, 250)  # the crop; the rest is black
    out = data.celeba_preprocess(image)
    assert out.shape == (64, 64, 3) and out.dtype.name == "uint8"
    np.testing.assert_array_equal(out.numpy().reshape(-1, 3).min(0), [10, 120, 250])
    np.testing.assert_array_equal(out.numpy().reshape(-1, 3).max(0), [10, 120, 250])
    assert data.celeba_preprocess(image, image_size=32).shape == (32, 32, 3)


@tf_only
def test_lsun_preprocess_short_side_96_then_crop_64():
    import tensorflow as tf

    image = np.zeros((120, 200, 3), np.uint8)
    image[:, 100:] = 255  # right half white: the center crop keeps both halves
    out = data.lsun_preprocess(image).numpy()
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # Resized to 96x160, the center 64x64 covers columns 48..111: half black, half white.
    assert out[:, :30].max() == 0 and out[:, 34:].min() == 255
    crop = data.lsun_preprocess(image, random_crop=True, seed=tf.constant([1, 2]))
    assert crop.shape == (64, 64, 3)
    np.testing.assert_array_equal(crop, data.lsun_preprocess(image, random_crop=True, seed=tf.constant([1, 2])))
    assert data.lsun_preprocess(np.zeros((17, 47, 3), np.uint8)).shape == (64, 64, 3)
    with pytest.raises(ValueError, match=r"square.*\(32, 64\)"):
        data.lsun_preprocess(image, image_size=(32, 64))


def test_presets_are_named():
    assert sorted(data.PRESETS) == ["celeba", "lsun"]
    assert "148" in data.PRESETS["celeba"] and "96" in data.PRESETS["lsun"]
