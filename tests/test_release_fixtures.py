"""Files written by release 0.1.0 still load, serve and resume.

``tests/fixtures/release_0_1_0`` was written by the 0.1.0 code before its modules moved
into packages: a tiny unconditional and a class-conditional ``.keras`` file, a checkpoint
of a ``train`` run halfway through, and a SavedModel export, with the values that release
computed for them (``expected.json``). A module move that changes a registered class name,
a serialized config key or a checkpoint's layout fails here.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import keras
import numpy as np
import pytest

import tfp_realnvp
import tiny_runs

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "release_0_1_0"


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FIXTURES / "expected.json").read_text())


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.load(FIXTURES / "tiny.npz")["x_test"]


def test_a_keras_file_of_the_release_loads_with_keras_and_computes_the_same_log_prob(images, expected):
    model = keras.saving.load_model(FIXTURES / "model.keras", compile=False)
    assert isinstance(model, tfp_realnvp.RealNVP)
    np.testing.assert_allclose(model.log_prob(images), expected["log_prob"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(model.bits_per_dim(images), expected["bits_per_dim"], rtol=1e-5, atol=1e-6)


def test_a_conditional_keras_file_of_the_release_loads(images, expected):
    model = keras.saving.load_model(FIXTURES / "conditional_model.keras", compile=False)
    labels = np.asarray(expected["conditional_labels"])
    np.testing.assert_allclose(model.log_prob(images, labels), expected["conditional_log_prob"], rtol=1e-5, atol=1e-3)


@pytest.mark.tf_only
def test_an_export_of_the_release_serves_and_its_metadata_reads(images, expected):
    import tensorflow as tf

    served = tf.saved_model.load(str(FIXTURES / "export"))
    out = served.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(out["log_prob"].numpy(), expected["served_log_prob"], rtol=1e-5, atol=1e-3)
    metadata = tfp_realnvp.load_metadata(FIXTURES / "export")
    assert metadata["format_version"] == 1 and metadata["image_shape"] == [8, 8, 1]


@pytest.mark.slow  # a training run
def test_a_checkpoint_of_the_release_resumes_to_the_end_of_its_run(tmp_path, monkeypatch, capsys):
    # The run was ``train --data tiny.npz <tiny flags> --steps 6 --steps-per-epoch 3``,
    # stopped after its checkpoint at step 3. The command runs in this process (the files
    # are the subject here, not the process).
    from tfp_realnvp.cli import main

    shutil.copy(FIXTURES / "tiny.npz", tmp_path / "tiny.npz")
    shutil.copytree(FIXTURES / "run", tmp_path / "run")
    argv = tiny_runs.train_argv(pathlib.Path("tiny.npz"), pathlib.Path("run"), "--steps", "6")
    argv += ["--steps-per-epoch", "3", "--checkpoint-every", "600", "--resume", "--verbose", "0"]
    assert argv[1:3] == ["-m", "tfp_realnvp"]
    monkeypatch.chdir(tmp_path)
    status = main(argv[3:])
    assert status == 0, capsys.readouterr().err[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["resumed_from_step"] == 3 and report["steps"] == 6
    assert np.isfinite(report["test_bits_per_dim"])
