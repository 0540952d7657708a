"""Out-of-distribution scores: the per-scale split of log p(x), every method's scores
(finite, batch-independent, separating a synthetic set), the batch typicality test,
the detection metrics, saving of the statistics, the ``ood`` command and the
``ood_score`` signature."""

from __future__ import annotations

import json
import os
import pathlib
import time

import keras
import numpy as np
import pytest

import tfp_realnvp
from helpers import (
    randomize,
    to_numpy,
)
from tfp_realnvp.bijectors.scale_terms import scale_terms
from tfp_realnvp.model.ood_metrics import aupr, auroc, detection_metrics, fpr_at_tpr
from tfp_realnvp.model.ood_sets import SYNTHETIC_OOD_SETS, synthetic_ood_images

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "release_0_1_0"
SHAPE = (8, 8, 1)


def blobs(count: int, seed: int) -> np.ndarray:
    """Dark 8x8 images with one bright 3x3 square each, in the upper half (so the set has
    a right way up): an easy in-distribution set."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 24, (count, *SHAPE))
    for image, (row, col) in zip(images, rng.integers(0, (2, 6), (count, 2))):
        image[row : row + 3, col : col + 3] = rng.integers(200, 256)
    return images.astype(np.uint8)


def _train():
    keras.utils.set_random_seed(0)
    # Without the re-estimation of the batch-norm averages after each epoch, which would
    # trace one more program: the scores are those of whatever averages the model holds.
    model = tfp_realnvp.RealNVP(SHAPE, num_scales=2, num_filters=4, num_blocks=1, seed=0, refresh_batches=0)
    # The package's Adam: Keras' updates bit for bit, in fewer graph ops to trace.
    model.compile(optimizer=tfp_realnvp.Adam(3e-3))
    model.fit(blobs(384, 1), batch_size=64, epochs=3, verbose=0)
    # In batches of 64, the size the tests score most often (on JAX every batch size
    # compiles anew); the statistics do not depend on it.
    summary = model.fit_ood(blobs(256, 2), batch_size=64)
    return model, summary


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The model trained on blobs, with its ``fit_ood`` statistics, and their summary.

    Trained once per test session: when the tests run in several processes (xdist),
    the first to need it trains and saves it, the others load its ``.keras`` file (which
    carries the statistics) instead of training their own.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path, summary_path, failed = (shared / f"ood_trained.{end}" for end in ("keras", "json", "failed"))
    try:
        os.close(os.open(shared / "ood_trained.lock", os.O_CREAT | os.O_EXCL))
    except FileExistsError:  # another process trains it: wait for its files
        deadline = time.monotonic() + 1800
        while not summary_path.exists():
            assert not failed.exists(), "training the shared model failed in another test process"
            assert time.monotonic() < deadline, "no shared model after 30 minutes"
            time.sleep(0.2)
        return keras.saving.load_model(path), json.loads(summary_path.read_text())
    try:
        model, summary = _train()
        model.save(path)
        summary_path.with_suffix(".partial").write_text(json.dumps(summary, default=float))
        os.replace(summary_path.with_suffix(".partial"), summary_path)
    except BaseException:
        failed.touch()
        raise
    return model, summary


@pytest.mark.slow  # a two-scale model's graphs
def test_the_scale_terms_add_up_to_log_prob_and_the_latent_is_encode():
    model = tfp_realnvp.RealNVP(SHAPE, num_scales=3, num_filters=4, num_blocks=1)
    randomize(model.flow.trainable_variables, seed=3, stddev=0.05)
    x = np.random.default_rng(4).uniform(0, 256, (5, *SHAPE)).astype(np.float32)
    terms = scale_terms(model.flow, keras.ops.convert_to_tensor(x))
    z = to_numpy(terms.latent)
    index = to_numpy(terms.scale_index)
    # Scale 0 factors out half of the 64 positions, scales 1 and 2 a quarter each.
    assert [int(np.sum(index == scale)) for scale in range(3)] == [32, 16, 16]
    base = (-0.5 * z**2 - 0.5 * np.log(2 * np.pi)).reshape(len(x), -1).sum(axis=1)
    total = to_numpy(terms.preprocess_log_det) + sum(to_numpy(d) for d in terms.log_dets) + base
    np.testing.assert_allclose(total, model.log_prob(x), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(z, model.encode(x), atol=1e-4)
    features = model.ood_features(x)
    np.testing.assert_allclose(features[:, 0], model.bits_per_dim(x), rtol=1e-5)
    assert features.shape == (5, len(model.ood_statistic_names())) == (5, 8)


def test_every_method_is_finite_batch_independent_and_flags_noise(trained):
    model, summary = trained
    assert summary["num_images"] == 256 and np.isfinite(summary["mean_bits_per_dim"])
    inside = blobs(64, 5)
    noise = synthetic_ood_images("noise", inside, seed=1)
    for method in tfp_realnvp.OOD_METHODS:
        # The orientation score is about the set's way up: its synthetic set is the
        # upside-down blobs (noise has no way up).
        if method in ("orientation", "orientation_odds", "pixel_orientation_odds"):
            noise = synthetic_ood_images("vflip", inside, seed=1)
        scores_in = model.ood_scores(inside, method=method)
        scores_out = model.ood_scores(noise, method=method)
        assert scores_in.shape == (64,) and scores_in.dtype == np.float32
        assert np.all(np.isfinite(scores_in)) and np.all(np.isfinite(scores_out))
        # The same images, alone or among others, in other batch sizes: the same scores.
        # (Batches of 4 and 1 only, each compiled once on JAX.)
        mixed = np.concatenate([noise[:5], inside[:3]])
        np.testing.assert_allclose(
            model.ood_scores(mixed, method=method, batch_size=4)[5:], scores_in[:3], rtol=1e-5, atol=1e-4
        )
        np.testing.assert_allclose(model.ood_scores(inside[:1], method=method), scores_in[:1], rtol=1e-5, atol=1e-4)
        assert auroc(scores_in, scores_out) > 0.9, method


def test_orientation_is_the_posterior_of_the_upright_image_among_its_flips(trained):
    # The trained model (no second model to build and trace): upright blobs get small
    # scores, upside-down ones scores of several nats, so both ends are checked.
    model, _ = trained
    # 32 images: a batch size the other tests compile too (JAX).
    x = np.concatenate([blobs(16, 9), blobs(16, 19)[:, ::-1]])
    log_p = [np.asarray(model.log_prob(t), np.float64) for t in (x, x[:, ::-1], x[:, ::-1, ::-1])]
    posterior = np.exp(log_p[0]) / (np.exp(log_p[0]) + np.exp(log_p[1]) + np.exp(log_p[2]))
    scores = model.ood_scores(x, method="orientation")
    np.testing.assert_allclose(scores, -np.log(posterior), rtol=1e-3, atol=2e-3)
    assert np.max(scores) > 1.0
    # A symmetric image is as likely upside down: the score is log 3, its floor being 0.
    symmetric = np.repeat(np.linspace(0, 255, 32).astype(np.uint8), 64).reshape(32, *SHAPE)
    np.testing.assert_allclose(model.ood_scores(symmetric, method="orientation"), [np.log(3.0)] * 32, atol=1e-3)
    # An image far likelier upright keeps a small positive score (ranked, not rounded to 0).
    from tfp_realnvp.model.ood_features import orientation_score

    bits = keras.ops.convert_to_tensor(np.array([3.0, 3.0], np.float32))
    turned = [bits + np.float32(0.5), bits + np.float32(0.25)]  # D ln 2 x 0.25 = 11 nats less likely
    expected = np.log1p(np.exp(-64 * np.log(2) * np.array([0.5, 0.25])).sum())
    np.testing.assert_allclose(to_numpy(orientation_score(bits, turned, 64)), [expected] * 2, rtol=1e-3)
    assert 0 < expected < 1e-4


def test_dose_orientation_adds_the_tails_of_its_two_tests(trained):
    model, _ = trained
    # 32 images: a batch size the batch typicality test compiles too (JAX).
    x = np.concatenate([blobs(20, 14), synthetic_ood_images("vflip", blobs(12, 15), seed=0)])
    table = model.ood_score_table(x, methods=("dose_orientation", "dose_complexity", "orientation_odds"))
    statistics = model.ood_statistics
    fit = statistics.complexity
    squared = 2.0 * (table["dose_complexity"].astype(np.float64) - fit.log_normalizer)
    np.testing.assert_allclose(squared, mahalanobis_squared(fit, x, model), rtol=1e-4, atol=1e-3)
    # Each test's tail against the fitted images' own values, computed here from its
    # definition: the smoothed empirical tail up to the top 5%, an exponential beyond.
    expected = independent_tail(statistics.train_complexity_distance, squared)
    expected += independent_tail(statistics.train_orientation_odds, table["orientation_odds"])
    np.testing.assert_allclose(table["dose_orientation"], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        statistics.train_complexity_distance, mahalanobis_squared(fit, blobs(256, 2), model), rtol=1e-4, atol=1e-3
    )
    # Statistics saved by earlier versions, without the training distances or without the
    # orientation fit: a clear error, and the rest works.
    model._set_ood_statistics(statistics._replace(train_complexity_distance=None))
    try:
        with pytest.raises(ValueError, match="fit_ood"):
            model.ood_scores(x, method="dose_orientation")
        model._set_ood_statistics(statistics._replace(orientation=None, train_orientation_odds=None))
        for method in ("dose_orientation", "orientation_odds"):
            with pytest.raises(ValueError, match="fit_ood"):
                model.ood_scores(x, method=method)
        assert np.all(np.isfinite(model.ood_scores(x, method="dose_complexity")))
        assert np.all(np.isfinite(model.ood_scores(x, method="orientation")))
    finally:
        model._set_ood_statistics(statistics)


def test_fisher_adds_the_tails_of_the_pixel_tests_to_the_two_flow_tests(trained):
    model, _ = trained
    x = np.concatenate([blobs(20, 14), synthetic_ood_images("vflip", blobs(12, 15), seed=0)])
    names = ("fisher", "dose_orientation", "pixel_orientation_odds", "coarse_density")
    table = model.ood_score_table(x, methods=names)
    pixels = model.ood_statistics.pixels
    # 8x8 images: the coarse image is the image itself, the orientation inputs its pixels.
    rows = x.reshape(len(x), -1).astype(np.float64) / 255
    np.testing.assert_allclose(
        table["pixel_orientation_odds"],
        rows @ pixels.orientation.weights + pixels.orientation.bias,
        rtol=1e-4,
        atol=1e-4,
    )
    fitted = blobs(256, 2).reshape(256, -1).astype(np.float64) / 255
    covariance = np.cov(fitted, rowvar=False)
    covariance += 1e-4 * np.mean(np.diag(covariance)) * np.eye(64)
    centred = rows - fitted.mean(axis=0)
    density = 0.5 * np.einsum("nf,nf->n", centred, np.linalg.solve(covariance, centred.T).T)
    density += 0.5 * np.linalg.slogdet(2 * np.pi * covariance)[1]
    np.testing.assert_allclose(table["coarse_density"], density, rtol=1e-4, atol=1e-3)
    expected = table["dose_orientation"] + independent_tail(pixels.train_orientation, table["pixel_orientation_odds"])
    expected += independent_tail(pixels.train_coarse, table["coarse_density"])
    np.testing.assert_allclose(table["fisher"], expected, rtol=1e-4, atol=1e-4)
    statistics = model.ood_statistics
    model._set_ood_statistics(statistics._replace(pixels=None))  # saved before the pixel tests
    try:
        for method in ("fisher", "pixel_orientation_odds", "coarse_density"):
            with pytest.raises(ValueError, match="fit_ood"):
                model.ood_scores(x, method=method)
        np.testing.assert_array_equal(model.ood_scores(x, method="dose_orientation"), table["dose_orientation"])
    finally:
        model._set_ood_statistics(statistics)


def test_the_graph_scores_equal_the_numpy_ones_and_fisher_graph_adds_four_tails(trained):
    from tfp_realnvp.model.ood import GRAPH_METHODS, PIXEL_METHODS

    model, _ = trained
    x = np.concatenate([blobs(20, 14), synthetic_ood_images("vflip", blobs(12, 15), seed=0)])
    table = model.ood_score_table(x, methods=GRAPH_METHODS)
    tensors = model.ood_score_tensor(keras.ops.convert_to_tensor(x))
    assert list(tensors) == ["ood_score", *GRAPH_METHODS]
    np.testing.assert_array_equal(to_numpy(tensors["ood_score"]), to_numpy(tensors["fisher_graph"]))
    for method in GRAPH_METHODS:
        # orientation: D ln 2 (44 nats per bit/dim here) times float32 bits/dim
        np.testing.assert_allclose(to_numpy(tensors[method]), table[method], rtol=1e-3, atol=2e-3, err_msg=method)
    statistics = model.ood_statistics
    train = statistics.train_bits_per_dim.astype(np.float64)
    typicality = np.abs(train - train.mean()) / max(train.std(), 1e-6)
    expected = independent_tail(typicality, table["typicality"])
    expected += independent_tail(statistics.train_orientation_odds, table["orientation_odds"])
    expected += independent_tail(statistics.pixels.train_orientation, table["pixel_orientation_odds"])
    expected += independent_tail(statistics.pixels.train_coarse, table["coarse_density"])
    np.testing.assert_allclose(table["fisher_graph"], expected, rtol=1e-4, atol=1e-3)
    # Statistics saved before the pixel tests: the graph serves what they allow, dose first.
    model._set_ood_statistics(statistics._replace(pixels=None))
    try:
        served = list(model.ood_score_tensor(keras.ops.convert_to_tensor(x[:4])))
        assert served == ["ood_score", *(m for m in GRAPH_METHODS if m not in PIXEL_METHODS)]
        assert served[1] == "dose"
        model._set_ood_statistics(statistics._replace(pixels=None, orientation=None, train_orientation_odds=None))
        served = list(model.ood_score_tensor(keras.ops.convert_to_tensor(x[:4])))
        assert served == ["ood_score", "dose", "bits_per_dim", "typicality", "last_scale", "orientation"]
    finally:
        model._set_ood_statistics(statistics)


def test_orientation_odds_is_the_fitted_logistic_regression_on_the_turned_statistics(trained):
    model, _ = trained
    # 64 images: the batch size fit_ood and the other tests compiled (JAX).
    x = np.concatenate([blobs(32, 16), blobs(32, 17)[:, ::-1]])
    features = [model.ood_features(np.ascontiguousarray(t)) for t in (x, x[:, ::-1], x[:, ::-1, ::-1])]
    rows = np.concatenate([features[0] - features[1], features[0] - features[2]], axis=1)
    fit = model.ood_statistics.orientation
    assert fit.weights.shape == (2 * len(model.ood_statistic_names()),)
    expected = rows.astype(np.float64) @ fit.weights + fit.bias
    odds = model.ood_scores(x, method="orientation_odds")
    np.testing.assert_allclose(odds, expected, rtol=1e-4, atol=1e-3)
    # Fitted on upright blobs against flipped ones: the flipped ones get the higher odds.
    assert np.median(odds[32:]) > np.median(odds[:32])
    np.testing.assert_allclose(model.ood_statistics.train_orientation_odds.shape, [256])


def test_the_logistic_fit_solves_its_penalised_likelihood():
    from tfp_realnvp.model.ood_features import LogisticFit

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(4000, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -1.0]
    truth = np.array([1.5, -0.2, 8.0])
    log_odds = (rows - [0.0, 5.0, -1.0]) @ truth + 0.3
    targets = (rng.uniform(size=4000) < 1 / (1 + np.exp(-log_odds))).astype(float)
    fit = LogisticFit.fit(rows, targets, l2=0.0)
    # The maximum-likelihood weights recover the generating ones within sampling error...
    np.testing.assert_allclose(fit.weights, truth, rtol=0.15)
    np.testing.assert_allclose(fit.log_odds(rows[:1]), [log_odds[0]], atol=0.5)
    # ...and the fit is a stationary point: the gradient of the log-likelihood vanishes.
    probability = 1 / (1 + np.exp(-(rows @ fit.weights + fit.bias)))
    np.testing.assert_allclose((rows - rows.mean(0)).T @ (probability - targets) / len(rows), 0.0, atol=1e-8)
    np.testing.assert_allclose(np.mean(probability - targets), 0.0, atol=1e-10)
    # A penalty shrinks the weights.
    assert np.linalg.norm(LogisticFit.fit(rows, targets, l2=1.0).weights * rows.std(0)) < np.linalg.norm(
        fit.weights * rows.std(0)
    )
    with pytest.raises(ValueError, match="both 0 and 1"):
        LogisticFit.fit(rows, np.zeros(4000))
    with pytest.raises(ValueError, match="shapes"):
        LogisticFit.fit(rows, targets[:10])


def test_statistics_of_earlier_versions_load_and_their_former_keys_are_not_weights():
    from tfp_realnvp.model.ood_statistics import read_statistics

    store = {
        "ood_train_bits_per_dim": np.ones(3, np.float32),
        "ood_mean": np.zeros(2),
        "ood_precision": np.eye(2),
        "ood_log_normalizer": np.array([1.0]),
        "ood_complexity_mean": np.zeros(4),
        "ood_complexity_precision": np.eye(4),
        "ood_complexity_log_normalizer": np.array([2.0]),
        "ood_train_orientation": np.ones(3, np.float32),  # written by the version before orientation_odds
        "0": np.zeros(5),
    }
    statistics, rest = read_statistics(store)
    assert statistics.orientation is None and statistics.train_orientation_odds is None
    assert statistics.train_complexity_distance is None
    assert statistics.complexity.log_normalizer == 2.0
    assert list(rest) == ["0"]


def mahalanobis_squared(fit, images, model):
    from tfp_realnvp.model.ood import complexity_rows

    # In batches of 32 (one compiled size on JAX); the values do not depend on it.
    centred = complexity_rows(images, model.bits_per_dim(images, batch_size=32).astype(np.float64)) - fit.mean
    return np.einsum("nf,fg,ng->n", centred, fit.precision, centred)


def independent_tail(reference, values):
    """-log P(R >= v): the empirical tail (kernel 0.05 sd) to the top 5%, exponential above."""
    reference = np.sort(np.asarray(reference, np.float64))
    values = np.asarray(values, np.float64)
    width = 0.05 * reference.std()

    def empirical(v):
        kernel = np.exp(-np.logaddexp(0.0, -(reference[None, :] - np.reshape(v, (-1, 1))) / width))  # sigmoid
        return -np.log((kernel.sum(axis=1) + 1) / (len(reference) + 1))

    count = max(int(round(0.05 * len(reference))), 2)
    threshold = reference[-count - 1]
    excess = np.mean(reference[-count:] - threshold)
    return np.where(values > threshold, empirical(threshold) + (values - threshold) / excess, empirical(values))


@pytest.mark.slow  # fits the default on many images
def test_the_tail_probabilities():
    from tfp_realnvp.model.ood_features import calibrated_log_tail, empirical_log_tail

    rng = np.random.default_rng(0)
    # For values drawn like the reference the tail is -log of a uniform p-value: Exp(1),
    # however skewed the reference (here a log-normal), 1% of it above -log 0.01.
    reference, fresh = np.exp(rng.normal(size=(2, 20000)))
    tails = calibrated_log_tail(reference, fresh)
    assert abs(np.mean(tails) - 1.0) < 0.03
    assert abs(np.mean(tails > -np.log(0.01)) - 0.01) < 0.003
    # Beyond the sample the exponential tail goes on: an exponential reference of scale
    # 2 gives -log P(R >= v) = v / 2 at values the sample never reached.
    exponential = rng.exponential(2.0, size=20000)
    np.testing.assert_allclose(calibrated_log_tail(exponential, [30.0, 60.0]), [15.0, 30.0], rtol=0.05)
    # Increasing and continuous across the threshold (the top 5%).
    grid = np.linspace(0.0, 40.0, 4001)
    curve = calibrated_log_tail(exponential, grid)
    assert np.all(np.diff(curve) > 0) and np.max(np.diff(curve)) < 0.05
    with pytest.raises(ValueError, match="received 2"):
        calibrated_log_tail([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="received 1.5"):
        calibrated_log_tail(reference, [1.0], tail_fraction=1.5)
    # A narrow kernel: the counts of the sample at or above each value (4.5 between two).
    tails = empirical_log_tail(np.arange(9.0), [-1.0, 4.5, 7.5, 9.5], bandwidth=1e-3)
    np.testing.assert_allclose(tails, -np.log([1.0, 0.5, 0.2, 0.1]))
    # Continuous: values 1e-4 apart get tails as close, even where the sample piles up.
    piled = np.concatenate([np.zeros(500), np.linspace(0, 5, 500)])
    assert np.max(np.abs(np.diff(empirical_log_tail(piled, [1e-5, 1.1e-4])))) < 2e-3


def test_the_default_is_the_first_method_and_bad_arguments_name_what_was_received(trained):
    model, _ = trained
    images = blobs(4, 6)
    np.testing.assert_array_equal(model.ood_scores(images), model.ood_scores(images, method="fisher"))
    assert tfp_realnvp.OOD_METHODS[0] == "fisher"
    with pytest.raises(ValueError, match="'likelihood'"):
        model.ood_scores(images, method="likelihood")
    with pytest.raises(ValueError, match="'gzip'"):
        model.ood_scores(images, method="complexity", compressor="gzip")
    # A model without statistics (this one's, taken away: no second model to build).
    statistics = model.ood_statistics
    model._set_ood_statistics(None)
    try:
        with pytest.raises(ValueError, match="fit_ood"):
            model.ood_scores(images, method="typicality")
        assert np.all(np.isfinite(model.ood_scores(images, method="last_scale")))
        with pytest.raises(ValueError, match="received shape"):
            model.fit_ood(images[:1])
        assert model.ood_statistics is None
    finally:
        model._set_ood_statistics(statistics)


def test_the_batch_typicality_test_accepts_in_distribution_batches_and_rejects_noise(trained):
    model, _ = trained
    inside = model.ood_test(blobs(32, 7), alpha=0.01)
    assert not inside["out_of_distribution"] and inside["p_value"] > 0.01
    outside = model.ood_test(synthetic_ood_images("noise", blobs(32, 7)), alpha=0.01)
    assert outside["out_of_distribution"] and outside["statistic"] > outside["threshold"]
    assert outside["p_value"] < 0.01
    with pytest.raises(ValueError, match="alpha"):
        model.ood_test(blobs(4, 7), alpha=1.5)


def test_the_detection_metrics_on_known_cases():
    assert auroc([0, 1, 2], [3, 4]) == 1.0 and auroc([3, 4], [0, 1, 2]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    assert auroc([0, 2], [1, 3]) == 0.75
    assert aupr([0, 1], [2, 3]) == 1.0
    assert aupr([2, 3], [0, 1]) == pytest.approx(0.5 * (1 / 3 + 2 / 4))
    assert fpr_at_tpr([0, 1, 2, 3], [2.5, 5], 0.95) == 0.25
    assert set(detection_metrics([0.0], [1.0])) == {"auroc", "aupr", "fpr_at_95_tpr"}
    with pytest.raises(ValueError, match="finite"):
        auroc([np.nan], [1.0])


def test_the_synthetic_sets():
    images = blobs(3, 8)
    for name in SYNTHETIC_OOD_SETS:
        made = synthetic_ood_images(name, images)
        assert made.shape == images.shape and made.dtype == np.uint8
    np.testing.assert_array_equal(synthetic_ood_images("vflip", images), images[:, ::-1])
    np.testing.assert_array_equal(synthetic_ood_images("inverted", images), 255 - images)
    np.testing.assert_array_equal(synthetic_ood_images("rot90", images)[:, :, 0], images[:, 0, ::-1])
    with pytest.raises(ValueError, match=r"\[3, 8, 4, 1\]"):
        synthetic_ood_images("rot90", images[:, :, :4])
    assert np.all(synthetic_ood_images("constant", images).std(axis=(1, 2, 3)) == 0)
    with pytest.raises(ValueError, match="'blur'"):
        synthetic_ood_images("blur", images)


@pytest.mark.slow  # a training run and two reloads
def test_keras_files_and_training_checkpoints_carry_the_statistics(trained, tmp_path):
    from tfp_realnvp.training.checkpoints import CheckpointManager

    model, _ = trained
    images = blobs(6, 9)
    expected = model.ood_scores(images)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.ood_scores(images), expected, rtol=1e-5)
    np.testing.assert_allclose(loaded.ood_statistics.train_bits_per_dim, model.ood_statistics.train_bits_per_dim)
    manager = CheckpointManager(tmp_path / "checkpoints")
    checkpoint = manager.save(model)
    other = tfp_realnvp.RealNVP(SHAPE, num_scales=2, num_filters=4, num_blocks=1, seed=0)
    other.compile(optimizer=keras.optimizers.Adam(3e-3))
    other.optimizer.build(other.trainable_variables)
    manager.restore(other, checkpoint)
    np.testing.assert_allclose(other.ood_scores(images), expected, rtol=1e-5)


def test_files_saved_without_statistics_still_load():
    model = keras.saving.load_model(FIXTURES / "model.keras", compile=False)
    assert model.ood_statistics is None
    images = np.load(FIXTURES / "tiny.npz")["x_test"]
    model.fit_ood(np.load(FIXTURES / "tiny.npz")["x_train"])
    assert np.all(np.isfinite(model.ood_scores(images)))


def test_the_ood_command_reports_every_method_and_writes_histograms(trained, tmp_path):
    from tfp_realnvp.cli import main

    model, _ = trained
    np.savez(tmp_path / "blobs.npz", images=blobs(200, 10))
    np.savez(tmp_path / "other.npz", images=synthetic_ood_images("inverted", blobs(40, 11)))
    model.save(tmp_path / "model.keras")
    out = tmp_path / "report"
    status = main(
        ["ood", "--model", str(tmp_path / "model.keras"), "--data", str(tmp_path / "blobs.npz")]
        + ["--ood", "noise", "--ood", str(tmp_path / "other.npz"), "--output-dir", str(out)]
    )
    assert status == 0
    report = json.loads((out / "ood.json").read_text())
    assert set(report["ood"]) == {"noise", "other"}
    assert report["methods"] == list(tfp_realnvp.OOD_METHODS)
    for result in report["ood"].values():
        for method in tfp_realnvp.OOD_METHODS:
            assert 0.0 <= result["methods"][method]["auroc"] <= 1.0
            assert (out / f"hist_{'other' if 'other' in result['source'] else 'noise'}_{method}.png").stat().st_size
    assert report["ood"]["noise"]["methods"]["bits_per_dim"]["auroc"] > 0.9


@pytest.mark.tf_only
@pytest.mark.slow  # a full export
def test_the_saved_model_serves_ood_scores(trained, tmp_path):
    import tensorflow as tf

    model, _ = trained
    images = blobs(5, 12)
    path = tfp_realnvp.export_saved_model(model, tmp_path / "export", version=1)
    served = tf.saved_model.load(str(path))
    outputs = served.signatures["ood_score"](images=tf.constant(images))
    graph_fisher = model.ood_scores(images, method="fisher_graph")
    np.testing.assert_allclose(outputs["ood_score"].numpy(), graph_fisher, rtol=1e-3, atol=2e-3)
    for method in ("dose", "pixel_orientation_odds", "coarse_density"):
        np.testing.assert_allclose(
            outputs[method].numpy(), model.ood_scores(images, method=method), rtol=1e-4, atol=1e-4
        )
    for method in ("bits_per_dim", "typicality", "last_scale"):
        np.testing.assert_allclose(outputs[method].numpy(), model.ood_scores(images, method=method), rtol=1e-4)
    # D ln 2 (about 44 nats per bit/dim here) times float32 bits/dim: 1e-3 nats apart.
    orientation = model.ood_scores(images, method="orientation")
    np.testing.assert_allclose(outputs["orientation"].numpy(), orientation, rtol=1e-3, atol=2e-3)
    odds = model.ood_scores(images, method="orientation_odds")
    np.testing.assert_allclose(outputs["orientation_odds"].numpy(), odds, rtol=1e-3, atol=2e-3)


@pytest.fixture(scope="module")
def conditional():
    keras.utils.set_random_seed(1)
    model = tfp_realnvp.RealNVP(SHAPE, num_scales=2, num_filters=4, num_blocks=1, num_classes=3)
    randomize(model.flow.trainable_variables + model.prior.trainable_weights, seed=5, stddev=0.05)
    images, labels = blobs(96, 13), np.arange(96) % 3
    model.fit_ood(images, labels)
    return model, images[:6], labels[:6]


@pytest.mark.slow  # a second model
def test_a_conditional_model_scores_with_its_class_base(conditional):
    model, images, labels = conditional
    features = model.ood_features(images, labels)
    np.testing.assert_allclose(features[:, 0], model.bits_per_dim(images, labels), rtol=1e-5)
    for method in tfp_realnvp.OOD_METHODS:
        assert np.all(np.isfinite(model.ood_scores(images, labels, method=method)))


@pytest.mark.tf_only
@pytest.mark.slow  # a full conditional export
def test_a_conditional_models_ood_signature_takes_labels(conditional):
    """The ``ood_score`` signature as the export traces it (saving and loading a conditional
    model's signatures is checked in test_conditional_export, this signature's above)."""
    import tensorflow as tf

    from tfp_realnvp.export.signatures import DEFAULT_MAX_SAMPLES, OOD_SIGNATURE_NAME, _Signatures

    model, images, labels = conditional
    function, specs = _Signatures(model, DEFAULT_MAX_SAMPLES).functions()[OOD_SIGNATURE_NAME]
    signature = tf.function(function, input_signature=specs, autograph=False).get_concrete_function()
    outputs = signature(images=tf.constant(images), labels=tf.constant(labels, tf.int32))
    np.testing.assert_allclose(
        outputs["ood_score"].numpy(), model.ood_scores(images, labels, method="dose"), rtol=1e-4, atol=1e-4
    )
    orientation = model.ood_scores(images, labels, method="orientation")
    np.testing.assert_allclose(outputs["orientation"].numpy(), orientation, rtol=1e-3, atol=2e-3)


@pytest.mark.slow  # a variational model
def test_a_variationally_dequantized_model_reports_its_bound():
    model = tfp_realnvp.RealNVP(
        SHAPE, num_scales=2, num_filters=4, num_blocks=1, dequantization="variational", dequantization_filters=4
    )
    randomize(model.trainable_variables, seed=6, stddev=0.05)
    images = blobs(4, 14)
    np.testing.assert_allclose(model.ood_features(images)[:, 0], model.bits_per_dim(images), rtol=1e-5)
