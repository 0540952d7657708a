"""Checkpoints, resuming, signals and step counts of ``python -m tfp_realnvp train``."""

import json
import signal

import numpy as np
import pytest

import tiny_runs
from tfp_realnvp.cli import main
from tfp_realnvp.internal import atomic
from tfp_realnvp.training import batch_stream
from tfp_realnvp.training.steps import StepPlan, plan_steps

TOTAL = ["--steps", "40", "--steps-per-epoch", "4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_runs.write_tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


def _report(out):
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run of ``TOTAL`` steps, trained in this process: its folder, its
    command (without the executable) and the trainable weights of its model."""
    out = tmp_path_factory.mktemp("reference")
    argv = ["train", "--data", str(data), *tiny_runs.MODEL_FLAGS, *TOTAL, "--output-dir", str(out), "--verbose", "0"]
    with tiny_runs.graphs_as_in_a_subprocess():
        assert main(argv) == 0
    assert _report(out)["steps"] == 40
    return out, argv, tiny_runs.trainable_weights(out / "model.keras")


def _assert_same_weights(model_file, reference):
    """The resumed run saw the same batches and noise: the same weights (CPU is deterministic)."""
    resumed = tiny_runs.trainable_weights(model_file)
    _, _, expected = reference
    assert resumed.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


# Signals ------------------------------------------------------------------------------
@pytest.mark.slow  # four training processes; the fast suite stops a run by SIGKILL in test_atomic_writes
def test_signals_stop_with_a_checkpoint_and_the_same_command_ends_like_an_uninterrupted_run(data, tmp_path, reference):
    """One run, stopped three times: by SIGTERM, then (resumed with --resume) by SIGINT,
    then (the same command again) by SIGKILL; the same command then finishes it with
    the weights of the uninterrupted run."""
    out = tmp_path / "run"
    argv = tiny_runs.train_argv(data, out, *TOTAL)
    step = 0
    for signum, extra in ((signal.SIGTERM, []), (signal.SIGINT, ["--resume"])):
        process = tiny_runs.start([*argv, *extra])
        first = tiny_runs.wait_for_checkpoint(process, out, after=step)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 128 + signum, stderr[-3000:]
        assert "Traceback" not in stderr
        name = signal.Signals(signum).name
        assert f"interrupted by {name} at step" in stderr
        stopped = int(stderr.split(f"interrupted by {name} at step ")[1].split()[0])
        assert first <= stopped < 40
        assert tiny_runs.checkpoint_steps(out)[-1] == stopped, "the checkpoint of the step where it stopped"
        assert "run the same command again" in stderr and "python -m tfp_realnvp train" in stderr
        assert not (out / "model.keras").exists()
        if extra:
            # Resumed (in the middle of an epoch, where SIGTERM stopped the first process).
            assert f"(step {step})" in stdout, stdout
        step = stopped

    # SIGKILL: nothing runs on the way out; the newest complete checkpoint stays.
    killed = tiny_runs.start(argv)
    tiny_runs.wait_for_checkpoint(killed, out, after=step)
    killed.kill()
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    saved = tiny_runs.checkpoint_steps(out)
    assert saved and step < saved[-1] < 40, f"the run was not killed mid-training: checkpoints {saved}"
    assert not (out / "model.keras").exists()

    rerun = tiny_runs.run(argv, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"(step {saved[-1]})" in rerun.stdout, rerun.stdout
    report = _report(out)
    assert report["resumed_from_step"] == saved[-1]
    assert report["steps"] == report["requested_steps"] == 40
    assert len(tiny_runs.checkpoint_steps(out)) <= 3, "only the newest checkpoints are kept"
    # Output to a pipe: one line per epoch, no progress bar.
    epochs_run = 10 - saved[-1] // 4
    assert rerun.stdout.count(" - loss: ") == epochs_run
    assert "\r" not in rerun.stdout and "\b" not in rerun.stdout
    # Every resume saw the batches and noise of the uninterrupted run.
    _assert_same_weights(out / "model.keras", reference)


# A finished run -----------------------------------------------------------------------
@pytest.mark.slow  # three training runs
def test_a_finished_run_refuses_other_settings_trains_only_extra_steps_and_fresh_starts_over(reference, capsys):
    out, argv, _ = reference
    assert tiny_runs.checkpoint_steps(out) == [32, 36, 40]
    capsys.readouterr()

    # Other settings than the checkpoint's are refused, naming them; the model stays.
    before = (out / "model.keras").read_bytes()
    assert main([*argv, "--seed", "5", "--num-filters", "8"]) == 2
    err = capsys.readouterr().err
    assert "seed: checkpoint 0, now 5" in err
    assert "--num-filters: checkpoint 4, now 8" in err and "--fresh" in err
    assert (out / "model.keras").read_bytes() == before

    # The same command with more steps resumes and trains only the extra steps.
    more = [*argv[: argv.index("--steps") + 1], "42", *argv[argv.index("--steps") + 2 :]]
    assert main(more) == 0
    assert "(step 40)" in capsys.readouterr().out
    report = _report(out)
    assert report["resumed_from_step"] == 40 and report["steps"] == 42
    assert tiny_runs.checkpoint_steps(out)[-1] == 42

    # --fresh deletes the run and starts over. With more steps per epoch than the data has
    # batches (64 images in batches of 16 are 4 batches; 3 epochs of 6 steps need the data
    # 4.5 times), it trains exactly the steps asked for.
    before = (out / "model.keras").read_bytes()
    flags = argv.index("--steps")
    fresh = [*argv[:flags], "--epochs", "3", "--steps-per-epoch", "6", *argv[flags + 4 :], "--fresh"]
    assert main(fresh) == 0
    printed = capsys.readouterr().out
    assert "--fresh: deleted" in printed and "resuming" not in printed
    assert tiny_runs.checkpoint_steps(out) == [6, 12, 18]
    report = _report(out)
    assert report["steps"] == report["requested_steps"] == 18 and report["resumed_from_step"] is None
    assert (out / "model.keras").read_bytes() != before


# Starting and resuming explicitly ---------------------------------------------------------
def test_resume_without_a_checkpoint_is_an_error(data, tmp_path, capsys):
    argv = ["train", "--data", str(data), *tiny_runs.MODEL_FLAGS, *TOTAL, "--output-dir", str(tmp_path), "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "no checkpoint" in err and str(tmp_path / "checkpoints") in err


def test_a_second_run_into_the_same_output_dir_is_refused(data, tmp_path, capsys):
    argv = ["train", "--data", str(data), *tiny_runs.MODEL_FLAGS, *TOTAL, "--output-dir", str(tmp_path)]
    with atomic.directory_lock(tmp_path):
        assert main(argv) == 2
    assert "another run is writing to --output-dir" in capsys.readouterr().err


# Step counts --------------------------------------------------------------------------
@pytest.mark.backend_independent
def test_plan_steps():
    # One pass over the data per epoch unless --steps-per-epoch says otherwise.
    assert plan_steps(batches_per_pass=4) == StepPlan(40, 4, 10)
    assert plan_steps(batches_per_pass=4, epochs=3) == StepPlan(12, 4, 3)
    assert plan_steps(batches_per_pass=4, steps=10) == StepPlan(10, 4, 3)
    assert plan_steps(batches_per_pass=4, steps=3) == StepPlan(3, 3, 1)
    # --steps with --steps-per-epoch: both are kept (the 3000 / 10).
    assert plan_steps(batches_per_pass=4, steps=3000, steps_per_epoch=10) == StepPlan(3000, 10, 300)
    # More steps per epoch than the data has batches: the data repeats.
    assert plan_steps(batches_per_pass=4, epochs=300, steps_per_epoch=10) == StepPlan(3000, 10, 300)
    # Streams without end.
    assert plan_steps(batches_per_pass=None, steps=2500) == StepPlan(2500, 1000, 3)
    assert plan_steps(batches_per_pass=None, epochs=2, steps_per_epoch=7) == StepPlan(14, 7, 2)
    with pytest.raises(ValueError, match="not both; received epochs=2 and steps=5"):
        plan_steps(batches_per_pass=4, epochs=2, steps=5)
    with pytest.raises(ValueError, match="streamed source"):
        plan_steps(batches_per_pass=None, epochs=2)
    with pytest.raises(ValueError, match=r"steps_per_epoch must be an integer >= 1; received 0\."):
        plan_steps(batches_per_pass=4, steps_per_epoch=0)


def test_epochs_and_steps_together_are_refused_by_flag_name(data, tmp_path, capsys):
    argv = [
        "train",
        "--data",
        str(data),
        *tiny_runs.MODEL_FLAGS,
        "--epochs",
        "2",
        "--steps",
        "5",
        "--output-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--epochs 2 and --steps 5" in err
    assert "epochs=" not in err


# The batch stream ---------------------------------------------------------------------
def _stream(images, start, count, flip=False):
    x, _ = batch_stream.resumable_fit_input(images, batch_size=4, seed=7, flip=flip, start_step=start)
    if tiny_runs.BACKEND == "tensorflow":
        return [b for b in x.take(count).as_numpy_iterator()]
    return [next(x)[0] for _ in range(count)]


@pytest.mark.parametrize("flip", [False, True])
def test_a_stream_started_at_step_k_continues_the_stream_started_at_0(flip):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 3, 3, 1)).astype(np.uint8)
    full = _stream(images, 0, 9, flip)
    # 3 batches per pass (4, 4, 2 images); every pass visits every image once.
    assert [len(b) for b in full] == [4, 4, 2] * 3
    plain = full if not flip else _stream(images, 0, 9, False)
    for p in range(3):
        seen = np.concatenate(plain[3 * p : 3 * p + 3])
        assert sorted(map(bytes, seen)) == sorted(map(bytes, images))
    assert not all(np.array_equal(a, b) for a, b in zip(plain[:3], plain[3:6])), "each pass has its own order"
    for start in (1, 3, 5):
        tail = _stream(images, start, 9 - start, flip)
        for a, b in zip(tail, full[start:]):
            np.testing.assert_array_equal(a, b)
    if flip:
        pairs = list(zip(np.concatenate(full), np.concatenate(plain)))
        assert all(np.array_equal(a, b) or np.array_equal(a, b[:, ::-1]) for a, b in pairs)
        assert any(not np.array_equal(a, b) for a, b in pairs), "some images are flipped"
