"""Throughput and memory of ``tfp_realnvp.RealNVP`` against the same network in plain Keras.

For each implementation (the package, and ``plain_keras.PlainRealNVP`` unless
``--skip-baseline``) this measures, after warm-up, the median over ``--repeats`` of:

* train: images/s of one optimizer step (forward, loss, gradients, Adam update) on a
  fixed device-resident uint8 batch, through the model's own compiled Keras train
  function (``--step-mode loop``, the per-step path of ``fit``) or
  ``model.train_on_batch`` (``--step-mode train_on_batch``);
* log_prob: images/s of ``model.log_prob(uint8 images)`` (NumPy in, NumPy out);
* sample: images/s of ``model.sample(n)`` (uint8 NumPy out);
* peak memory: the accelerator's ``peak_bytes_in_use`` on a GPU, otherwise the
  process' maximum resident set size.

Each implementation runs in a subprocess of its own, so peak memory and compilation
caches are not shared. The JSON output records the environment (backend, devices, CPU,
versions), the settings, per-repeat values and the package/baseline ratios.

This module is the command line and the parent process; the measuring is in
``throughput_worker.py``, the ratios and the summary table in ``throughput_report.py``,
the model sizes in ``configs.py``.

Example::

    KERAS_BACKEND=jax python -m benchmarks.throughput --config cifar10 \\
        --batch-sizes 64,256 --precision float32 --output cifar10.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import (
    REPO_ROOT,
    cpu_description,
    installed_versions,
    non_negative_int,
    positive_int,
    positive_int_list,
    utc_now,
)
from benchmarks.configs import CONFIGS, IMPLEMENTATIONS, PRECISIONS, config_record
from benchmarks.throughput_report import compute_ratios, format_summary
from benchmarks.throughput_worker import run_worker

MEASUREMENTS = ("train", "log_prob", "sample")
SCHEMA_VERSION = 1
#: Environment variables copied into the report (plus every ``XLA_*``).
RECORDED_ENV = (
    "KERAS_BACKEND",
    "CUDA_VISIBLE_DEVICES",
    "JAX_PLATFORMS",
    "JAX_COMPILATION_CACHE_DIR",
    "TF_ENABLE_ONEDNN_OPTS",
    "OMP_NUM_THREADS",
)


# Command line --------------------------------------------------------------------------
def _measurement_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in MEASUREMENTS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"choose from {','.join(MEASUREMENTS)}; received {text!r}")
    return [m for m in MEASUREMENTS if m in values]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description=(
            "Train-step, log_prob and sample throughput (images/s) and peak memory of "
            "tfp_realnvp.RealNVP and of the same network in plain Keras, on the active "
            "Keras backend (KERAS_BACKEND)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        choices=sorted(CONFIGS),
        default="cifar10",
        help="Model size: cifar10 = 32x32x3, 2 scales, 64 filters, 8 blocks; celeba = 64x64x3, "
        "5 scales (last scale 4x4), 32 filters, 2 blocks (Real NVP paper, sec. 4.1); "
        "tiny = 8x8x1, 2 scales, 8 filters, 1 block (for tests).",
    )
    parser.add_argument(
        "--batch-sizes",
        type=positive_int_list,
        default=[64, 256],
        metavar="N[,N...]",
        help="Comma-separated batch sizes of the train step, measured in the order given.",
    )
    parser.add_argument(
        "--inference-batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="Batch size of log_prob and sample (default: the largest of --batch-sizes).",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="Keras dtype policy of both models (log-dets and losses stay float32).",
    )
    parser.add_argument("--repeats", type=positive_int, default=5, help="Timed repeats; the median is reported.")
    parser.add_argument(
        "--warmup", type=non_negative_int, default=2, help="Untimed calls after the first (compiling) call."
    )
    parser.add_argument("--steps", type=positive_int, default=5, help="Calls per timed repeat.")
    parser.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile(jit_compile=...) of the train step: --jit forces XLA (TF) / jax.jit (JAX), "
        "--no-jit disables it; default: Keras' 'auto' (XLA off on a CPU-only TF machine, jit on JAX).",
    )
    parser.add_argument(
        "--measure",
        type=_measurement_list,
        default=list(MEASUREMENTS),
        metavar="WHAT[,WHAT...]",
        help=f"What to measure, from {','.join(MEASUREMENTS)}.",
    )
    parser.add_argument(
        "--step-mode",
        choices=("loop", "train_on_batch"),
        default="loop",
        help="loop: call the model's compiled Keras train function back to back on a device-resident "
        "batch and synchronise once per repeat (what fit does per step); train_on_batch: "
        "model.train_on_batch(x) per step, which adds a host sync and, on JAX, a variable sync per step.",
    )
    parser.add_argument("--output", type=Path, default=None, help="Write the results as JSON to this file.")
    parser.add_argument("--skip-baseline", action="store_true", help="Measure the package only.")
    parser.add_argument(
        "--schedule",
        choices=("isolated", "interleaved"),
        default="isolated",
        help="isolated: one subprocess per implementation, run one after the other (separate "
        "peak-memory readings); interleaved: one subprocess builds both models and alternates "
        "their timed repeats, so that a shared machine's changing load hits both alike "
        "(peak memory is then the process', shared).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights, data and noise.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


# Parent --------------------------------------------------------------------------------
def _worker_command(args, impl: str, output: Path) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.throughput",
        "--config",
        args.config,
        "--batch-sizes",
        ",".join(map(str, args.batch_sizes)),
        "--precision",
        args.precision,
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--measure",
        ",".join(args.measure),
        "--step-mode",
        args.step_mode,
        "--seed",
        str(args.seed),
        "--worker",
        impl,
        "--worker-output",
        str(output),
    ]
    if args.inference_batch_size:
        argv += ["--inference-batch-size", str(args.inference_batch_size)]
    if args.jit is not None:
        argv.append("--jit" if args.jit else "--no-jit")
    return argv


def new_report(args, argv) -> dict:
    """The report before any measurement: the command, the machine, the versions and the settings."""
    return {
        "schema_version": SCHEMA_VERSION,
        "command": shlex.join([sys.executable] + sys.argv) if argv is None else shlex.join(["throughput.py", *argv]),
        "started": utc_now(),
        "finished": None,
        "backend": None,
        "device": None,
        "cpu": cpu_description(),
        "host": platform.node(),
        "environment": {k: v for k, v in os.environ.items() if k in RECORDED_ENV or k.startswith("XLA_")},
        "versions": installed_versions(),
        "config": args.config,
        "model": config_record(args.config),
        "precision": args.precision,
        "batch_sizes": args.batch_sizes,
        "inference_batch_size": args.inference_batch_size or max(args.batch_sizes),
        "jit": args.jit,
        "step_mode": args.step_mode,
        "measure": args.measure,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "steps": args.steps,
        "schedule": args.schedule,
        "results": {},
        "ratios": {},
        "errors": {},
    }


def run_group(args, group: list[str], report: dict) -> int:
    """Measures ``group`` in one worker process and merges its results into ``report``.

    Returns:
        The worker's exit status (its partial results are merged whatever it is).
    """
    name = "+".join(group)
    print(f"== {name} ({args.config}, {args.precision})", flush=True)
    # Absolute: the worker runs in the repository root, the caller anywhere.
    base = (
        Path(args.output).resolve()
        if args.output is not None
        else Path(tempfile.gettempdir()) / f"throughput-{os.getpid()}.json"
    )
    partial = base.with_name(f"{base.stem}.{name}.partial.json")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    proc = subprocess.run(_worker_command(args, ",".join(group), partial), check=False, cwd=REPO_ROOT)
    if partial.exists():
        report["results"].update(json.loads(partial.read_text()))
    if proc.returncode != 0:
        report["errors"][name] = f"worker exited with status {proc.returncode}"
    else:
        partial.unlink(missing_ok=True)
    for impl in group:
        done = report["results"].get(impl) or {}
        report["backend"] = report["backend"] or done.get("backend")
        report["device"] = report["device"] or done.get("device")
    report["ratios"] = compute_ratios(report["results"])
    return proc.returncode


def main(argv=None) -> int:
    """Runs the benchmark; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.worker:
        run_worker(args, args.worker.split(","))
        return 0

    # The parent stays off the accelerator (JAX would reserve most of a GPU's memory):
    # the workers report the backend and the devices.
    impls = ["package"] if args.skip_baseline else list(IMPLEMENTATIONS)
    report = new_report(args, argv)

    def write():
        if args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=1) + "\n")

    status = 0
    groups = [impls] if args.schedule == "interleaved" else [[impl] for impl in impls]
    for group in groups:
        if run_group(args, group, report) != 0:
            status = 1
        write()

    report["finished"] = utc_now()
    write()
    print(format_summary(report), flush=True)
    if args.output is not None:
        print(f"wrote {args.output}")
    return status


if __name__ == "__main__":
    sys.exit(main())
