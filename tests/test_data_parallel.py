"""Data-parallel training through the command line on the JAX backend.

Each run is ``python -m tfp_realnvp train`` of the tiny model in a fresh interpreter:
one process on one device (the reference), one process on two devices, and a job of
two processes with two devices each joined on 127.0.0.1 through Keras' own variables.
With one epoch per step, ``report.json``'s history holds the loss of every step, so the
runs compare step by step; all see the same global batches, the same training noise
and batch-norm statistics over the global batch, so they agree to float32 precision.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import tiny_runs

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax", reason="data parallelism runs on the JAX backend")

STEPS = 4
#: train's default Adam learning rate, which these runs use.
LEARNING_RATE = 1e-3
FLAGS = ["--steps", str(STEPS), "--steps-per-epoch", "1", "--verbose", "2", "--seed", "3"]


def _env(devices: int, **extra) -> dict:
    env = tiny_runs.env()
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    for name in (
        "KERAS_DISTRIBUTION_JOB_ADDRESSES",
        "KERAS_DISTRIBUTION_NUM_PROCESSES",
        "KERAS_DISTRIBUTION_PROCESS_ID",
    ):
        env.pop(name, None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv, env, timeout=300) -> subprocess.CompletedProcess:
    process = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    assert process.returncode == 0, f"status {process.returncode}\n{process.stdout[-2000:]}\n{process.stderr[-4000:]}"
    return process


def _job(argv, *, processes: int, devices: int, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Runs ``argv`` as every process of a job on 127.0.0.1; kills all on a timeout."""
    address = f"127.0.0.1:{_free_port()}"
    running = []
    try:
        for index in range(processes):
            env = _env(
                devices,
                KERAS_DISTRIBUTION_JOB_ADDRESSES=",".join([address] * processes),
                KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes),
                KERAS_DISTRIBUTION_PROCESS_ID=str(index),
            )
            running.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        finished = []
        for process in running:
            stdout, stderr = process.communicate(timeout=timeout)
            finished.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for index, process in enumerate(finished):
        assert process.returncode == 0, f"process {index}: status {process.returncode}\n{process.stderr[-4000:]}"
    return finished


def _report(out):
    return json.loads((out / "report.json").read_text())


def _assert_weights_agree(weights: dict, reference: dict, *, steps: int) -> None:
    """Weights trained with Adam on several devices against those of one device.

    Adam moves every coordinate by up to about its learning rate per step whatever the
    size of its gradient, so a coordinate whose gradient is at the level of float32
    rounding (summed in another order on two devices) can drift by up to twice the
    learning rate per step, either way; how many do depends on the CPU's float code.
    Such coordinates are few: 99% of all agree to half a step, and none by more than
    that bound. test_api_data_parallel_with_sgd_gives_the_weights_of_one_device checks
    every weight to float32 precision with an update that is linear in the gradient.
    """
    assert weights.keys() == reference.keys()
    differences = {name: np.abs(np.asarray(weights[name]) - np.asarray(value)) for name, value in reference.items()}
    every = np.concatenate([d.ravel() for d in differences.values()])
    worst = sorted(((float(d.max()), name) for name, d in differences.items()), reverse=True)[:5]
    assert np.mean(every <= 0.5 * LEARNING_RATE) >= 0.99, f"largest differences: {worst}"
    assert every.max() <= 2 * LEARNING_RATE * steps, f"largest differences: {worst}"


def _assert_same_training(out, reference_out, *, steps=STEPS):
    history, expected = _report(out)["history"], _report(reference_out)["history"]
    assert len(history["loss"]) == len(expected["loss"]) == steps
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=2e-5)
    np.testing.assert_allclose(history["bits_per_dim"], expected["bits_per_dim"], rtol=2e-5)
    _assert_weights_agree(
        tiny_runs.trainable_weights(out / "model.keras"),
        tiny_runs.trainable_weights(reference_out / "model.keras"),
        steps=steps,
    )
    assert abs(_report(out)["test_bits_per_dim"] - _report(reference_out)["test_bits_per_dim"]) < 1e-4


API_SCRIPT = """
import json, keras, numpy as np, tfp_realnvp

def train(distribution):
    keras.distribution.set_distribution(distribution)
    keras.utils.set_random_seed(0)
    model = tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_filters=4, num_blocks=1, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    images = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1)).astype(np.uint8)
    history = model.fit(images, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    return {
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "weights": [keras.ops.convert_to_numpy(v).tolist() for v in model.weights],
        "bits_per_dim": float(np.mean(model.bits_per_dim(images[:16]))),
    }

one = train(None)
two = train(keras.distribution.DataParallel(auto_shard_dataset=False))
print("RESULTS " + json.dumps({"one": one, "two": two}))
"""


def test_api_data_parallel_with_sgd_gives_the_weights_of_one_device(tmp_path):
    script = tmp_path / "api.py"
    script.write_text(API_SCRIPT)
    process = _run([sys.executable, str(script)], _env(2))
    results = json.loads(process.stdout.split("RESULTS ", 1)[1])
    one, two = results["one"], results["two"]
    np.testing.assert_allclose(two["history"]["loss"], one["history"]["loss"], rtol=1e-6)
    assert two["history"]["loss"][1] < two["history"]["loss"][0]
    # Weights, batch-norm moving averages (over the global batch) and their counters.
    assert len(one["weights"]) == len(two["weights"]) > 20
    for a, b in zip(two["weights"], one["weights"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert two["bits_per_dim"] == pytest.approx(one["bits_per_dim"], abs=1e-5)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 64 training images: 4 full global batches of 16 per pass.
    return tiny_runs.write_tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_device")
    process = _run(tiny_runs.train_argv(data, out, *FLAGS), _env(1))
    assert "data parallel" not in process.stdout
    assert "data_parallel" not in _report(out)
    return out


# Command-line jobs (a reference run and one or two processes of two devices): with the
# slow tests; the fast suite trains data parallel through the API above.
@pytest.mark.slow
def test_one_process_on_two_devices_trains_like_one_device(data, reference, tmp_path):
    process = _run(tiny_runs.train_argv(data, tmp_path, *FLAGS), _env(2))
    assert "data parallel on 2 devices in 1 process(es)" in process.stdout
    assert _report(tmp_path)["data_parallel"] == {"processes": 1, "devices": 2, "global_batch_size": 16}
    _assert_same_training(tmp_path, reference)


@pytest.mark.slow
def test_two_processes_of_two_devices_train_like_one_device_and_resume_together(data, reference, tmp_path):
    out = tmp_path / "job"
    half = tiny_runs.train_argv(data, out, *FLAGS[:1], str(STEPS // 2), *FLAGS[2:])
    first = _job(half, processes=2, devices=2)
    assert "this is process 0" in first[0].stdout and "this is process 1" in first[1].stdout
    # Only process 0 writes: it alone reports and prints the epochs and the result.
    assert "test bits/dim" in first[0].stdout and "test bits/dim" not in first[1].stdout
    assert " - loss: " not in first[1].stdout
    assert _report(out)["data_parallel"] == {"processes": 2, "devices": 4, "global_batch_size": 16}
    assert tiny_runs.checkpoint_steps(out)[-1] == STEPS // 2

    # The same command with more steps: every process resumes from the same checkpoint.
    second = _job(tiny_runs.train_argv(data, out, *FLAGS), processes=2, devices=2)
    for process in second:
        assert f"(step {STEPS // 2})" in process.stdout, process.stdout
    report = _report(out)
    assert report["steps"] == STEPS and report["resumed_from_step"] == STEPS // 2
    expected = _report(reference)["history"]
    np.testing.assert_allclose(report["history"]["loss"], expected["loss"][STEPS // 2 :], rtol=2e-5)
    _assert_weights_agree(
        tiny_runs.trainable_weights(out / "model.keras"),
        tiny_runs.trainable_weights(reference / "model.keras"),
        steps=STEPS,
    )


def test_a_batch_the_devices_cannot_share_is_refused_by_flag(data, tmp_path):
    argv = [*tiny_runs.train_argv(data, tmp_path, *FLAGS)]
    argv[argv.index("--batch-size") + 1] = "15"
    process = subprocess.run(argv, capture_output=True, text=True, env=_env(2), timeout=300, check=False)
    assert process.returncode == 2
    assert "--batch-size 15 cannot be split equally over the job's 2 devices" in process.stderr


def test_an_incomplete_job_description_is_refused(data, tmp_path):
    env = _env(1, KERAS_DISTRIBUTION_NUM_PROCESSES="2")
    process = subprocess.run(
        tiny_runs.train_argv(data, tmp_path, *FLAGS), capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert process.returncode == 2
    assert "missing KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_PROCESS_ID" in process.stderr
    assert not (tmp_path / "report.json").exists()
