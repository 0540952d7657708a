"""TensorFlow's multi-worker strategy is refused at once, with the JAX path named.

Keras 3's ``fit`` does not train under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585; with two local workers even a one-layer model fails with
``Attempt to convert a value (PerReplica...)``), so neither the command line nor
``RealNVP`` starts a run that would fail later or train wrongly.
"""

import json
import subprocess
import sys

import pytest

import tiny_runs
from tfp_realnvp.cli import main
from tfp_realnvp.internal.replicas import refuse_multi_worker_tensorflow
from tfp_realnvp.training.distributed import setup_data_parallel

pytestmark = pytest.mark.tf_only

TWO_WORKERS = json.dumps(
    {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
)


def test_cli_refuses_a_multi_worker_tf_config(tmp_path, monkeypatch, capsys):
    data = tiny_runs.write_tiny_npz(tmp_path / "tiny.npz")
    monkeypatch.setenv("TF_CONFIG", TWO_WORKERS)
    argv = ["train", "--data", str(data), *tiny_runs.MODEL_FLAGS, "--steps", "1", "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "MultiWorkerMirroredStrategy" in err and "TF_CONFIG names 2 workers" in err
    assert "KERAS_BACKEND=jax" in err and "KERAS_DISTRIBUTION_JOB_ADDRESSES" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_one_worker_and_no_tf_config_are_fine():
    one = json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}})
    refuse_multi_worker_tensorflow({"TF_CONFIG": one})
    refuse_multi_worker_tensorflow({})
    with pytest.raises(ValueError, match="TF_CONFIG is not JSON"):
        refuse_multi_worker_tensorflow({"TF_CONFIG": "{oops"})


def test_keras_job_variables_on_tensorflow_name_the_jax_backend():
    env = {
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
        "KERAS_DISTRIBUTION_PROCESS_ID": "0",
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "127.0.0.1:1,127.0.0.1:1",
    }
    with pytest.raises(ValueError, match="multi-process training runs on the JAX backend.*Set KERAS_BACKEND=jax"):
        setup_data_parallel(env)
    topology = setup_data_parallel({})
    assert topology.process_count == 1 and not topology.data_parallel and topology.is_chief


SCRIPT = """
import tensorflow as tf, tfp_realnvp
strategy = tf.distribute.MultiWorkerMirroredStrategy()   # one local worker: no TF_CONFIG
with strategy.scope():
    try:
        tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_filters=4, num_blocks=1)
    except ValueError as error:
        print("REFUSED " + str(error))
"""


def test_realnvp_refuses_a_multi_worker_strategy_scope():
    process = tiny_runs.run([sys.executable, "-c", SCRIPT], timeout=240)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "REFUSED" in process.stdout and "a MultiWorkerMirroredStrategy scope is active" in process.stdout
    assert "KERAS_BACKEND=jax" in process.stdout


@pytest.mark.slow  # a training run under a strategy
def test_mirrored_strategy_is_still_accepted():
    script = "import tensorflow as tf, tfp_realnvp\nwith tf.distribute.MirroredStrategy().scope():\n    tfp_realnvp.RealNVP((8, 8, 1), num_scales=1)\nprint('OK')"
    process = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=tiny_runs.env(), timeout=240, check=False
    )
    assert process.returncode == 0 and "OK" in process.stdout, process.stderr[-3000:]
