"""The pixel tests of the out-of-distribution scores (``tfp_realnvp.model.ood_pixels``):
their inputs, their out-of-fold training scores, and how the model's files carry them."""

from __future__ import annotations

import numpy as np

from tfp_realnvp.model.ood_features import LogisticFit
from tfp_realnvp.model.ood_metrics import auroc
from tfp_realnvp.model.ood_pixels import coarse_rows, fit_pixel_tests, orientation_pixels, pixel_scores
from tfp_realnvp.model.ood_statistics import OodStatistics, read_statistics, write_statistics


def shapes(count: int, seed: int, size: int = 28) -> np.ndarray:
    """Dark images with a bright bar in their upper third: a set with a way up."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 30, (count, size, size, 1))
    for image, col in zip(images, rng.integers(0, size // 2, count)):
        image[2 : size // 3, col : col + size // 2] = rng.integers(180, 256)
    return images.astype(np.uint8)


def test_the_coarse_image_is_about_seven_pixels_a_side_and_holds_block_means():
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype(np.uint8)
    rows = coarse_rows(images)
    assert rows.shape == (3, 49)
    block = images[1, 4:8, 8:12, 0].astype(np.float64).mean() / 255
    np.testing.assert_allclose(rows[1].reshape(7, 7)[1, 2], block)
    # 32x32 colour: blocks of 4 (8x8x3); 30x30: blocks of 4, the last two rows and columns left out.
    assert coarse_rows(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 192)
    assert coarse_rows(np.zeros((2, 30, 30, 1), np.uint8)).shape == (2, 49)


def test_the_orientation_inputs_are_the_pixels_up_to_1024_values():
    images = np.random.default_rng(1).integers(0, 256, (2, 28, 28, 1)).astype(np.uint8)
    np.testing.assert_allclose(orientation_pixels(images), images.reshape(2, -1) / 255)
    colour = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    pooled = orientation_pixels(colour)
    assert pooled.shape == (2, 16 * 16 * 3)
    np.testing.assert_allclose(pooled.reshape(2, 16, 16, 3)[0, 3, 5], colour[0, 6:8, 10:12].mean(axis=(0, 1)) / 255)


def test_fitted_tests_separate_flipped_and_noise_images_and_score_training_images_out_of_fold():
    train = shapes(200, 0)
    tests = fit_pixel_tests(train, seed=3)
    inside, flipped = shapes(100, 1), np.ascontiguousarray(shapes(100, 2)[:, ::-1])
    noise = np.random.default_rng(4).integers(0, 256, (100, 28, 28, 1)).astype(np.uint8)
    orientation_in, coarse_in = pixel_scores(tests, inside)
    assert orientation_in.dtype == np.float32 and coarse_in.shape == (100,)
    assert auroc(orientation_in, pixel_scores(tests, flipped)[0]) > 0.95
    assert auroc(coarse_in, pixel_scores(tests, noise)[1]) > 0.95
    # Each training image is scored by the fit to the other fold.
    fold = np.random.default_rng(3).permutation(200) % 2
    other = train[fold == 1]
    rows = np.concatenate([orientation_pixels(other), orientation_pixels(np.ascontiguousarray(other[:, ::-1]))])
    held_out = LogisticFit.fit(rows, np.r_[np.zeros(len(other)), np.ones(len(other))], l2=1e-2)
    np.testing.assert_allclose(
        tests.train_orientation[fold == 0],
        held_out.log_odds(orientation_pixels(train[fold == 0])),
        rtol=1e-5,
        atol=1e-5,
    )
    in_sample = pixel_scores(tests, train)
    assert not np.allclose(tests.train_orientation, in_sample[0], atol=1e-3)
    assert not np.allclose(tests.train_coarse, in_sample[1], atol=1e-3)
    # Too few images for two folds: scored in sample.
    few = fit_pixel_tests(train[:3])
    np.testing.assert_allclose(few.train_coarse, pixel_scores(few, train[:3])[1])


def test_the_models_files_carry_the_pixel_tests():
    from tfp_realnvp.model.ood_features import GaussianFit

    train = shapes(40, 5, size=8)
    tests = fit_pixel_tests(train)
    gaussian = GaussianFit.fit(np.random.default_rng(6).normal(size=(10, 2)))
    statistics = OodStatistics(np.ones(40, np.float32), gaussian, gaussian, pixels=tests)
    store = {}
    write_statistics(store, statistics)
    read, rest = read_statistics({**store, "0": np.zeros(3)})
    assert list(rest) == ["0"]
    images = shapes(5, 7, size=8)
    for a, b in zip(pixel_scores(read.pixels, images), pixel_scores(tests, images)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_array_equal(read.pixels.train_coarse, tests.train_coarse)
    np.testing.assert_array_equal(read.pixels.train_orientation, tests.train_orientation)
    without = {key: value for key, value in store.items() if "coarse" not in key and "pixel" not in key}
    assert read_statistics(without)[0].pixels is None


def test_the_methods_that_statistics_of_earlier_versions_lack_and_the_command_refits_them(monkeypatch):
    import argparse

    from tfp_realnvp.cli import ood as ood_command
    from tfp_realnvp.model.ood import OOD_METHODS, outdated_methods
    from tfp_realnvp.model.ood_features import GaussianFit

    gaussian = GaussianFit.fit(np.random.default_rng(8).normal(size=(10, 2)))
    old = OodStatistics(np.ones(4, np.float32), gaussian, gaussian)  # before orientation_odds
    assert outdated_methods(None, OOD_METHODS) == []
    assert outdated_methods(old, OOD_METHODS) == [
        "fisher",
        "fisher_graph",
        "dose_orientation",
        "orientation_odds",
        "pixel_orientation_odds",
        "coarse_density",
    ]
    assert outdated_methods(old, ("dose", "typicality", "complexity")) == []

    class Model:
        ood_statistics = old
        fitted = []

        def fit_ood(self, images, **kwargs):
            self.fitted.append(len(images))
            return {"num_images": len(images)}

    monkeypatch.setattr(ood_command, "load_split", lambda source, split: shapes(6, 9, size=8))
    args = argparse.Namespace(fit_images=10, batch_size=4, save_model=None)
    lines = []
    model = Model()
    assert ood_command._statistics(model, None, args, ("dose",), lines.append) is None  # has what it needs
    assert ood_command._statistics(model, None, args, ("fisher", "dose"), lines.append) == {"num_images": 6}
    assert model.fitted == [6] and "without the tests of fisher" in lines[-1]


def test_the_calibrated_tail_of_backend_tensors_equals_the_numpy_one():
    import keras

    from tfp_realnvp.model.ood_features import calibrated_log_tail

    rng = np.random.default_rng(10)
    reference = rng.gamma(2.0, size=3000)  # three chunks of the reference in the graph
    values = np.r_[rng.gamma(2.0, size=50), [-1.0, 0.0, 30.0]].astype(np.float32)
    expected = calibrated_log_tail(reference, values)
    tensor = calibrated_log_tail(reference, keras.ops.convert_to_tensor(values))
    assert keras.ops.is_tensor(tensor)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), expected, rtol=1e-4, atol=1e-4)
    # A NumPy scalar is NumPy: a float64 array back.
    assert isinstance(calibrated_log_tail(reference, np.float64(2.0)), np.ndarray)
