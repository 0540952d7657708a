"""Tests for the benchmark harness: the plain-Keras baseline is the package's computation,
and ``throughput.py`` produces a complete report."""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import tfp_realnvp

# benchmarks/ is not a package of the distribution: the tests import it from the repository root.
from benchmarks import common, configs, plain_keras, summarize, throughput, throughput_worker
from benchmarks.plain_keras import PlainRealNVP, parameter_count
from helpers import randomize, to_numpy
from tfp_realnvp.model.realnvp import MODEL_FLOW_KEYS

REPO = Path(__file__).resolve().parents[1]

# Small configurations: the harness' "tiny" one, and one with three scales and RGB.
CONFIGS = [
    dict(configs.CONFIGS["tiny"]),
    dict(image_shape=(8, 8, 3), num_scales=3, num_filters=4, num_blocks=2),
]
IDS = ["tiny", "three_scales_rgb"]
# The baseline is written in Keras ops alone: the tiny configuration runs with the fast
# TensorFlow suite, the rest (the three-scale pair with its sample check, and every pair on
# JAX, where compiling both models' steps takes about a minute) with the slow tests.
PAIR_CONFIGS = [
    pytest.param(CONFIGS[0], marks=[pytest.mark.slow] if keras.backend.backend() == "jax" else []),
    pytest.param(CONFIGS[1], marks=pytest.mark.slow),
]


def _baseline_config(package) -> dict:
    """The package model's ``get_config()`` restricted to the keys the baseline takes."""
    accepted = plain_keras.CONFIG_KEYS + plain_keras.KERAS_KEYS
    return {key: value for key, value in package.get_config().items() if key in accepted}


def _pair(config, seed=3):
    """A package model with weights away from the identity initialisation, and the
    baseline built from its configuration, holding the same weights."""
    package = tfp_realnvp.RealNVP(conditioner_batch_norm=False, **config, seed=seed)
    baseline = PlainRealNVP.from_config(_baseline_config(package))
    randomize(package.weights, seed=1)
    baseline.load_weights_from(package)
    return package, baseline


def _images(config, n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *config["image_shape"])).astype(np.uint8)


# Baseline configuration ----------------------------------------------------------------
# The smallest flow: one scale of four checkerboard couplings.
SMALLEST = dict(image_shape=(4, 4, 1), num_scales=1, num_filters=4, num_blocks=1)


@pytest.mark.backend_independent
def test_baseline_options_are_the_package_options():
    """Every flow option of ``RealNVP`` is either taken by the baseline, under the same name
    and default, or listed as not implemented (a new package option fails here first)."""
    assert set(plain_keras.UNSUPPORTED_FLOW_KEYS) <= set(MODEL_FLOW_KEYS)
    assert set(plain_keras.FLOW_KEYS) | set(plain_keras.UNSUPPORTED_FLOW_KEYS) == set(MODEL_FLOW_KEYS)
    ours = inspect.signature(PlainRealNVP.__init__).parameters
    theirs = inspect.signature(tfp_realnvp.RealNVP.__init__).parameters
    assert [name for name in ours if name not in ("self", "kwargs")] == list(plain_keras.CONFIG_KEYS)
    for key in plain_keras.FLOW_KEYS + plain_keras.MODEL_KEYS:
        assert ours[key].default == theirs[key].default, key


def test_baseline_config_round_trip():
    baseline = PlainRealNVP(**SMALLEST, batch_norm_momentum=0.8, l2_scale=0.0, seed=4, name="plain")
    config = baseline.get_config()
    assert set(config) == set(plain_keras.CONFIG_KEYS + plain_keras.KERAS_KEYS)
    assert config["image_shape"] == [4, 4, 1] and config["batch_norm_momentum"] == 0.8 and config["seed"] == 4
    clone = PlainRealNVP.from_config(config)
    assert clone.get_config() == config
    assert parameter_count(clone) == parameter_count(baseline)


def test_baseline_rejects_options_it_does_not_implement():
    config = tfp_realnvp.RealNVP(**SMALLEST, conditioner_batch_norm=False).get_config()
    assert set(plain_keras.MODEL_KEYS) <= set(config)
    with pytest.raises(ValueError, match="PlainRealNVP does not implement") as raised:
        PlainRealNVP.from_config(config)
    named = str(raised.value).split(";")[0]
    for key in plain_keras.UNSUPPORTED_FLOW_KEYS + ("refresh_batches", "num_classes", "class_conditional_base"):
        assert repr(key) in named, key
    for key in plain_keras.CONFIG_KEYS + plain_keras.KERAS_KEYS:
        assert repr(key) not in named, key


# Baseline equivalence ----------------------------------------------------------------
# Building a pair costs more than most checks on it (on JAX above all): each configuration
# builds one pair and runs every check on it, inference-mode ones before the
# training-mode call that moves the batch-norm averages, and train steps last.
@pytest.mark.parametrize("config", PAIR_CONFIGS, ids=IDS)
def test_baseline_matches_package(config):
    package, baseline = _pair(config)

    # Parameter counts.
    assert parameter_count(baseline) == parameter_count(package)
    assert parameter_count(baseline, trainable_only=True) == parameter_count(package, trainable_only=True)
    assert len(baseline.weights) == len(package.weights)

    # log_prob in inference mode: integer images (dequantized with the evaluation noise)
    # and continuous ones.
    images = _images(config)
    for x in (images, images.astype(np.float32) + 0.5):
        expected = package.log_prob(x)
        actual = baseline.log_prob(x)
        assert np.all(np.isfinite(expected))
        np.testing.assert_allclose(actual, expected, rtol=1e-4)

    if config is CONFIGS[1]:
        _check_sample_matches(package, baseline, config)

    # Training mode: the same outputs, and batch statistics moved the moving averages alike.
    x = keras.ops.convert_to_tensor(images.astype(np.float32) + 0.5)
    expected = to_numpy(package(x, training=True))
    actual = to_numpy(baseline(x, training=True))
    np.testing.assert_allclose(actual, expected, rtol=1e-4)
    for theirs, ours in zip(package.flow.batch_norms, baseline.batch_norms):
        for a, b in zip(theirs.variables, ours.weights):
            np.testing.assert_allclose(to_numpy(b), to_numpy(a), rtol=1e-4, atol=1e-6)

    if config is CONFIGS[0]:
        _check_train_steps_match(package, baseline, images)


def _check_sample_matches(package, baseline, config):
    expected = package.sample(4, seed=7, temperature=0.7).astype(np.int32)
    actual = baseline.sample(4, seed=7, temperature=0.7).astype(np.int32)
    assert actual.shape == expected.shape == (4, *config["image_shape"])
    # floor() may round a value that sits on an integer either way.
    assert np.mean(actual != expected) < 0.01
    assert np.max(np.abs(actual - expected)) <= 1


def _check_train_steps_match(package, baseline, images):
    """Two optimizer steps from the same state give the same loss and bits/dim."""
    # On TensorFlow eager steps: the same arithmetic as compiled ones, without tracing two
    # train steps. On JAX, eager steps run op by op and cost more than compiling.
    eager = keras.backend.backend() == "tensorflow"
    package.compile(run_eagerly=eager)
    baseline.compile(run_eagerly=eager)
    for _ in range(2):
        expected = package.train_on_batch(images, return_dict=True)
        actual = baseline.train_on_batch(images, return_dict=True)
        for key in ("loss", "bits_per_dim"):
            assert np.isfinite(expected[key])
            np.testing.assert_allclose(actual[key], expected[key], rtol=1e-4)


def test_load_weights_from_rejects_another_structure():
    # The smallest flow against one of two scales: the weights of small models are
    # quicker to create (on JAX each new weight shape compiles its initializer).
    package = tfp_realnvp.RealNVP(conditioner_batch_norm=False, **SMALLEST)
    baseline = PlainRealNVP(**{**SMALLEST, "num_scales": 2})
    with pytest.raises(ValueError, match="structure mismatch|cannot copy"):
        baseline.load_weights_from(package)


# throughput.py -------------------------------------------------------------------------
def _state_copy(model) -> list[list[np.ndarray]]:
    return [[to_numpy(v) for v in part] for part in common.state_variables(model)]


def test_train_step_loop_leaves_the_state_it_computed():
    """After ``run(n)`` of the ``loop`` mode the model holds what its steps computed: the
    weights, batch-norm averages, noise state and optimizer state that ``n``
    ``train_on_batch`` steps from the same state leave."""
    images = _images(SMALLEST, n=4)
    model = PlainRealNVP(**SMALLEST, seed=5)
    # The write-back matters on JAX, where the compiled step is stateless; on TensorFlow
    # the step updates the variables itself, and tracing it would dominate the test.
    model.compile(run_eagerly=keras.backend.backend() == "tensorflow")
    model.train_on_batch(images)  # the runner's precondition: optimizer and metrics built
    start = _state_copy(model)
    logs = throughput_worker.train_step_runner(model, images, "loop")(2)
    assert np.isfinite(float(to_numpy(logs["loss"])))
    looped = _state_copy(model)
    common.assign_training_state(model, start)
    throughput_worker.train_step_runner(model, images, "train_on_batch")(2)
    stepped = _state_copy(model)

    assert int(to_numpy(model.optimizer.iterations)) == 3
    assert any(not np.array_equal(a, b) for a, b in zip(looped[0], start[0]))
    # Weights, non-trainable state and optimizer state (train_on_batch resets the metrics).
    names = [[v.path for v in part] for part in common.state_variables(model)]
    for part in range(3):
        for name, a, b in zip(names[part], looped[part], stepped[part]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match="trainable_variables"):
        common.assign_training_state(model, [start[0][:-1]] + start[1:])
    with pytest.raises(ValueError, match="4 parts"):
        common.assign_training_state(model, start[:2])


@pytest.mark.backend_independent
def test_every_flag_has_help(monkeypatch):
    # The parser's actions, as add_argument returns them.
    actions = []
    add_argument = argparse.ArgumentParser.add_argument

    def recording(self, *args, **kwargs):
        action = add_argument(self, *args, **kwargs)
        actions.append(action)
        return action

    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", recording)
    parser = throughput.build_parser()
    assert len(actions) > 10
    for action in actions:
        if action.help is not argparse.SUPPRESS:
            assert action.help, f"{action.option_strings} has no help"
    help_text = parser.format_help()
    for flag in (
        "--config",
        "--batch-sizes",
        "--precision",
        "--repeats",
        "--warmup",
        "--jit",
        "--no-jit",
        "--steps",
        "--output",
        "--skip-baseline",
    ):
        assert flag in help_text


@pytest.mark.backend_independent
def test_integer_types_use_the_package_argument_checks():
    assert common.positive_int("3") == 3 and common.non_negative_int("0") == 0
    for check, text, low in ((common.positive_int, "0", 1), (common.non_negative_int, "-1", 0)):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"value must be an integer >= {low}; received {text}\."):
            check(text)
    with pytest.raises(argparse.ArgumentTypeError, match="received 'a'"):
        common.positive_int("a")
    with pytest.raises(argparse.ArgumentTypeError, match="received 0"):
        common.positive_int_list("4,0")


@pytest.mark.backend_independent
def test_the_parent_side_imports_no_library():
    """``summarize.py`` and ``throughput.py``'s parent start without Keras, JAX or TensorFlow."""
    code = (
        "import sys\n"
        "import benchmarks.configs, benchmarks.summarize, benchmarks.throughput, benchmarks.step_profile\n"
        "print(sorted(m for m in ('keras', 'jax', 'tensorflow', 'numpy') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.backend_independent
def test_bad_arguments_are_rejected():
    parser = throughput.build_parser()
    for argv in (
        ["--batch-sizes", "0"],
        ["--batch-sizes", "a"],
        ["--measure", "train,nope"],
        ["--precision", "float8"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    assert parser.parse_args(["--batch-sizes", "256,64,256"]).batch_sizes == [256, 64]


def _check_stats(stats, batch):
    assert stats["batch_size"] == batch
    assert stats["images_per_s"] > 0
    assert len(stats["images_per_s_repeats"]) == 1
    assert all(v > 0 for v in stats["images_per_s_repeats"])
    assert stats["first_call_s"] > 0
    assert stats["peak_memory_bytes"] > 0


# The harness' whole run (worker processes training both models) runs with the slow
# tests; the parts it measures with (baseline parity, the step loop, flags) run above.
@pytest.mark.slow
def test_throughput_cli_writes_complete_report(tmp_path):
    output = tmp_path / "tiny.json"
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    argv = [
        sys.executable,
        "-m",
        "benchmarks.throughput",
        "--config",
        "tiny",
        "--batch-sizes",
        "4",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--schedule",
        "interleaved",
        "--output",
        str(output),
    ]
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pkg/base" in proc.stdout
    report = json.loads(output.read_text())

    assert report["schema_version"] == throughput.SCHEMA_VERSION
    assert report["backend"] == keras.backend.backend()
    assert report["config"] == "tiny" and report["model"]["image_shape"] == [8, 8, 1]
    assert report["precision"] == "float32"
    assert report["batch_sizes"] == [4] and report["inference_batch_size"] == 4
    assert "throughput.py" in report["command"] and "--config tiny" in report["command"]
    for key in ("started", "finished"):
        datetime.datetime.fromisoformat(report[key])
    assert report["device"]["platform"] and report["device"]["devices"]
    assert report["cpu"]["logical_cores"] >= 1
    versions = report["versions"]
    assert versions["keras"] == keras.__version__ and versions["python"]
    if report["backend"] == "jax":
        assert versions["jax"]
    else:
        assert versions["tensorflow"] and versions["tensorflow-probability"]
    assert report["errors"] == {}

    for impl in ("package", "baseline"):
        result = report["results"][impl]
        assert result["implementation"] == impl
        assert result["trainable_parameters"] == report["results"]["package"]["trainable_parameters"]
        train = result["train"]["4"]
        _check_stats(train, 4)
        assert np.isfinite(train["loss"])
        _check_stats(result["log_prob"], 4)
        _check_stats(result["sample"], 4)
        assert result["peak_memory_bytes"] > 0
    # One conditioner pass per coupling per trace, and no retracing while timing.
    calls = report["results"]["package"]["train"]["4"]["network_calls"]
    assert calls["after_first_call"] == 0
    assert calls["first_call"] % calls["couplings"] == 0

    for what in ("log_prob", "sample"):
        assert report["ratios"][what]["images_per_s"] > 0
    assert report["ratios"]["train"]["4"]["images_per_s"] > 0

    printed = summarize.load_reports([output])
    assert printed[0][1]["results"]["package"]["train"]["4"]["images_per_s"] > 0


@pytest.mark.backend_independent
def test_summarize_merges_partial_runs(tmp_path, capsys):
    stats = {"images_per_s": 10.0, "images_per_s_repeats": [10.0], "batch_size": 2, "peak_memory_bytes": 2**20}
    worker = {"backend": "jax", "device": {"platform": "gpu", "devices": ["gpu:0"]}, "train": {"2": stats}}
    # A run cut short: its report lacks the baseline, which left a partial file.
    report = {
        "config": "tiny",
        "precision": "float32",
        "backend": "jax",
        "device": worker["device"],
        "step_mode": "loop",
        "jit": None,
        "results": {"package": {**worker, "implementation": "package"}},
        "errors": {"baseline": "timeout"},
    }
    (tmp_path / "run.json").write_text(json.dumps(report))
    half = {**stats, "images_per_s": 20.0, "images_per_s_repeats": [20.0]}
    (tmp_path / "run.baseline.partial.json").write_text(json.dumps({"baseline": {**worker, "train": {"2": half}}}))
    # A run whose report was never written.
    (tmp_path / "lost.package.partial.json").write_text(json.dumps({"package": worker}))

    assert summarize.main([str(p) for p in sorted(tmp_path.iterdir())]) == 0
    out = capsys.readouterr().out
    assert "run.json (partial: baseline)" in out and "lost.json (partial: package)" in out
    assert "0.500" in out  # package 10 img/s over baseline 20 img/s
    assert summarize.main([str(tmp_path / "missing.json")]) == 1


@pytest.mark.backend_independent
def test_gpu_check_script_runs_within_its_budget(tmp_path):
    """With no time budget every run is skipped: the script still reports and fails."""
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        OUT=str(tmp_path / "out"),
        GPU_CHECK_CONFIG="tiny",
        GPU_CHECK_SKIP_INSTALL="1",
        GPU_CHECK_BUDGET_S="0",
    )
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("skipped") == 2
    assert "== summary" in proc.stdout
    assert (tmp_path / "out").is_dir()
