"""The synthetic out-of-distribution sets, in particular the rendered letters."""

from __future__ import annotations

import numpy as np
import pytest

from tfp_realnvp.model.ood_sets import SYNTHETIC_OOD_SETS, synthetic_ood_images

pytestmark = pytest.mark.backend_independent


def test_letters_are_seeded_uint8_glyphs_of_the_given_shape():
    like = np.zeros((40, 28, 28, 3), np.uint8)
    letters = synthetic_ood_images("letters", like, seed=3)
    assert letters.shape == like.shape and letters.dtype == np.uint8
    np.testing.assert_array_equal(letters, synthetic_ood_images("letters", like, seed=3))
    assert not np.array_equal(letters, synthetic_ood_images("letters", like, seed=4))
    # Every channel alike, light strokes on a dark ground, one glyph per image.
    np.testing.assert_array_equal(letters[..., 0], letters[..., 2])
    ink = (letters[..., 0] > 127).mean(axis=(1, 2))
    assert np.all(ink > 0.01) and np.all(ink < 0.5)
    assert np.all(letters[:, 0, 0, 0] == 0)
    # Sizes, strokes and rotations vary: no two images are the same.
    flat = letters[..., 0].reshape(len(letters), -1)
    assert len(np.unique(flat, axis=0)) == len(letters)


def test_letters_need_only_the_shape_of_the_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 16, 12, 1), dtype=np.uint8)
    letters = synthetic_ood_images("letters", images)
    np.testing.assert_array_equal(letters, synthetic_ood_images("letters", np.zeros_like(images)))
    assert letters.shape == (5, 16, 12, 1)


def test_every_set_is_listed_and_another_name_is_refused():
    images = np.full((3, 8, 8, 1), 100, np.uint8)
    for name in SYNTHETIC_OOD_SETS:
        made = synthetic_ood_images(name, images)
        assert made.shape == images.shape and made.dtype == np.uint8
    with pytest.raises(ValueError, match=r"letters.*received 'glyphs'"):
        synthetic_ood_images("glyphs", images)
    with pytest.raises(ValueError, match=r"received shape \[8, 8, 1\]"):
        synthetic_ood_images("letters", images[0])
