"""Inference-mode numbers right after ``fit`` describe the trained flow.

A user who calls ``fit`` and then ``bits_per_dim``, ``evaluate`` or passes
``validation_data`` gets batch norm on its moving averages. These tests train briefly
on the shipped Fashion-MNIST images and check that those numbers agree with what the
same final weights give with fresh batch statistics, with no extra call.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tfp_realnvp
from helpers import to_numpy
from tfp_realnvp.data import load_images
from tfp_realnvp.model.dequantization import dequantization_noise
from tfp_realnvp.training.steps import recalibrate_batch_norm

STEPS = 120
BATCH = 32

# Trains for 120 steps: with the slow tests (the fast suite checks the inference-mode
# numbers of fit and evaluate in test_model).
pytestmark = pytest.mark.slow


def shipped_images():
    train = load_images("shipped", split="train")[:2048]
    test = load_images("shipped", split="test")[:256]
    return train, test


def fit_briefly(shipped):
    train, test = shipped
    keras.utils.set_random_seed(3)
    model = tfp_realnvp.RealNVP((28, 28, 1), num_scales=2, num_filters=8, num_blocks=1, seed=3)
    model.compile(learning_rate=3e-3)
    epochs = STEPS * BATCH // len(train)
    history = model.fit(
        train,
        batch_size=BATCH,
        epochs=epochs,
        shuffle=True,
        validation_data=(test,),
        validation_batch_size=64,
        verbose=0,
    )
    return {"model": model, "history": history.history}


def batch_statistics_bits_per_dim(model, images: np.ndarray) -> float:
    """Bits/dim of ``images`` with batch norm on the statistics of ``images`` themselves.

    The stored moving averages are restored afterwards, so the model is unchanged.
    """
    saved = [to_numpy(v) for v in model.flow.non_trainable_variables]
    x = keras.ops.convert_to_tensor(images.astype(np.float32) + to_numpy(dequantization_noise(images)))
    try:
        log_p = to_numpy(model.distribution.log_prob(x, bijector_kwargs={"training": True}))
    finally:
        for variable, value in zip(model.flow.non_trainable_variables, saved):
            variable.assign(value)
    return float(np.mean(model.to_bits_per_dim(log_p)))


def check_inference_mode_matches_batch_statistics_after_a_short_fit(fitted, shipped):
    model = fitted["model"]
    _, test = shipped
    inference = float(np.mean(model.bits_per_dim(test)))
    with_batch_stats = batch_statistics_bits_per_dim(model, test)
    assert np.isfinite(inference) and np.isfinite(with_batch_stats)
    # The flow has learned something (the untrained flow is above 8 bits/dim).
    assert inference < 6.0
    assert inference - with_batch_stats <= 0.05, (inference, with_batch_stats)


def check_validation_bits_per_dim_equals_bits_per_dim_after_the_epoch(fitted, shipped):
    model = fitted["model"]
    _, test = shipped
    reported = fitted["history"]["val_bits_per_dim"][-1]
    assert reported == pytest.approx(float(np.mean(model.bits_per_dim(test))), abs=1e-4)


def check_evaluate_and_log_prob_agree_right_after_fit(fitted, shipped):
    model = fitted["model"]
    _, test = shipped
    result = model.evaluate(test, batch_size=100, verbose=0, return_dict=True)
    assert result["bits_per_dim"] == pytest.approx(float(np.mean(model.bits_per_dim(test))), abs=1e-4)


def check_validation_curve_does_not_look_like_overfitting(fitted):
    history = fitted["history"]
    # Inference-mode validation bits/dim track training bits/dim (the old moving averages
    # put validation several bits/dim above training early on).
    for train_bpd, val_bpd in zip(history["bits_per_dim"], history["val_bits_per_dim"]):
        assert val_bpd < train_bpd + 0.25, history


def check_saved_and_reloaded_model_reports_the_same_numbers(fitted, shipped, tmp_path):
    model = fitted["model"]
    _, test = shipped
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.bits_per_dim(test[:32]), model.bits_per_dim(test[:32]), rtol=1e-6)


def check_recalibrating_by_hand_gives_the_statistics_fit_leaves(fitted, shipped):
    model = fitted["model"]
    train, test = shipped
    before = float(np.mean(model.bits_per_dim(test)))
    saved = [to_numpy(v) for v in model.flow.non_trainable_variables]
    try:
        assert recalibrate_batch_norm(model, train, batch_size=64, num_batches=8, seed=1) == 8
        after = float(np.mean(model.bits_per_dim(test)))
        # Other random training batches, the same weights: nearly the same numbers.
        assert abs(after - before) < 0.05
        counters = [to_numpy(v) for v in model.flow.non_trainable_variables if v.name == "num_updates"]
        assert counters and all(float(c) == 8.0 for c in counters)
    finally:
        for variable, value in zip(model.flow.non_trainable_variables, saved):
            variable.assign(value)


def test_inference_mode_numbers_right_after_fit(tmp_path):
    """One short fit (its cost is the test's), every check of what it leaves."""
    shipped = shipped_images()
    fitted = fit_briefly(shipped)
    check_inference_mode_matches_batch_statistics_after_a_short_fit(fitted, shipped)
    check_validation_bits_per_dim_equals_bits_per_dim_after_the_epoch(fitted, shipped)
    check_evaluate_and_log_prob_agree_right_after_fit(fitted, shipped)
    check_validation_curve_does_not_look_like_overfitting(fitted)
    check_saved_and_reloaded_model_reports_the_same_numbers(fitted, shipped, tmp_path)
    # Last: it moves the averages (and puts them back).
    check_recalibrating_by_hand_gives_the_statistics_fit_leaves(fitted, shipped)
