"""Memory and time of the compiled train step with and without recomputation.

On JAX (``KERAS_BACKEND=jax``), for each batch size and each ``recompute``
mode (``none``, ``conditioner``, ``invertible``; see ``tfp_realnvp.bijectors.recompute``)
it builds ``RealNVP`` for the chosen configuration, lowers and compiles Keras' own
``train_step`` (forward, loss, gradients, clipped Adam update, metric) with
``jax.jit(..., donate_argnums=0)`` and reads the compiled program's
``memory_analysis()``:

* ``temp_bytes``: the temporary buffers XLA assigns for the step (activations kept for
  the backward pass, gradients, workspace): what recomputation reduces;
* ``argument_bytes``/``output_bytes``: weights, optimizer state, batch and their updated
  copies (the same in every mode);
* ``peak_bytes``: XLA's peak estimate where the backend reports it.

It then times ``--steps`` steps of each compiled program on a device-resident uint8
batch, in rounds of one step per mode (median milliseconds per step; a first call
per mode is not timed). The report gives every
mode's temporary memory and step time relative to ``none`` at the same batch size.

On TensorFlow (``KERAS_BACKEND=tensorflow``) each (batch size, mode) runs in its own
process: ``train_on_batch`` once (tracing and XLA compilation), then ``--steps`` timed
steps; it reports the process' peak resident memory (``ru_maxrss``) and the resident
memory before the first step, whose difference bounds what the step itself needs.

Example (the README's table)::

    KERAS_BACKEND=jax python -m benchmarks.memory --config cifar10 --batch-sizes 64,256 \\
        --output benchmarks/results/cpu/memory_cifar10.json
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import time
from pathlib import Path

from benchmarks.common import (
    REPO_ROOT,
    cpu_description,
    device_description,
    installed_versions,
    non_negative_int,
    training_state,
    utc_now,
)
from benchmarks.configs import CONFIGS, config_record

MODES = ("none", "conditioner", "invertible")


def _build(config: dict, *, recompute: str, precision: str, conditioner_batch_norm: bool, seed: int):
    import keras

    from tfp_realnvp import RealNVP

    keras.utils.set_random_seed(seed)
    model = RealNVP(
        tuple(config["image_shape"]),
        **{k: v for k, v in config.items() if k != "image_shape"},
        conditioner_batch_norm=conditioner_batch_norm,
        recompute=recompute,
        dtype=precision,
        seed=seed,
    )
    model.compile(jit_compile=True)
    return model


class CompiledStep:
    """One mode's compiled Keras train step (JAX), its memory analysis and a timer."""

    def __init__(
        self,
        config: dict,
        *,
        batch_size: int,
        recompute: str,
        precision: str = "float32",
        conditioner_batch_norm: bool = False,
        seed: int = 0,
    ):
        import jax
        import numpy as np

        model = _build(
            config, recompute=recompute, precision=precision, conditioner_batch_norm=conditioner_batch_norm, seed=seed
        )
        shape = (batch_size,) + tuple(config["image_shape"])
        images = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
        self.state = training_state(model)
        self.data = (jax.device_put(images), None, None)
        start = time.perf_counter()
        self.compiled = jax.jit(model.train_step, donate_argnums=0).lower(self.state, self.data).compile()
        analysis = self.compiled.memory_analysis()
        self.row = {
            "recompute": recompute,
            "batch_size": batch_size,
            "temp_bytes": int(analysis.temp_size_in_bytes),
            "argument_bytes": int(analysis.argument_size_in_bytes),
            "output_bytes": int(analysis.output_size_in_bytes),
            "alias_bytes": int(analysis.alias_size_in_bytes),
            "peak_bytes": int(getattr(analysis, "peak_memory_in_bytes", 0)) or None,
            "compile_s": round(time.perf_counter() - start, 2),
        }
        self.times: list[float] = []
        self.logs = None

    def step(self, *, timed: bool) -> None:
        import jax

        start = time.perf_counter()
        self.logs, self.state = self.compiled(self.state, self.data)
        jax.block_until_ready((self.logs, self.state))
        if timed:
            self.times.append((time.perf_counter() - start) * 1e3)

    def result(self) -> dict:
        import numpy as np

        out = dict(self.row)
        if self.times:
            out["ms_per_step"] = round(float(np.median(self.times)), 1)
            out["step_ms"] = [round(t, 1) for t in self.times]
            out["loss"] = float(self.logs["loss"])
        return out

    def release(self) -> None:
        self.compiled = self.state = self.data = None
        gc.collect()


def compiled_step_memory(config: dict, *, batch_size: int, recompute: str, **kwargs) -> dict:
    """Memory analysis of one mode's compiled train step (see ``CompiledStep``).

    Returns:
        ``temp_bytes``, ``argument_bytes``, ``output_bytes``, ``alias_bytes``,
        ``peak_bytes`` (``None`` where not reported) and ``compile_s``.
    """
    step = CompiledStep(config, batch_size=batch_size, recompute=recompute, **kwargs)
    row = step.result()
    step.release()
    return row


def sequential_steps(config: dict, *, batch_size: int, modes, steps: int, **kwargs) -> list[dict]:
    """Times one mode after the other, with one compiled step alive at a time (the
    least memory: at batch 256 the CIFAR-10 step without recomputation alone needs
    about 15 GB on CPU)."""
    rows = []
    for mode in modes:
        runner = CompiledStep(config, batch_size=batch_size, recompute=mode, **kwargs)
        if steps:
            runner.step(timed=False)
            for _ in range(steps):
                runner.step(timed=True)
        rows.append(runner.result())
        runner.release()
    return rows


def interleaved_steps(config: dict, *, batch_size: int, modes, steps: int, **kwargs) -> list[dict]:
    """Compiles every mode, then times them in rounds (one step of each mode per round),
    so that a change in the machine's load reaches every mode alike."""
    runners = [CompiledStep(config, batch_size=batch_size, recompute=mode, **kwargs) for mode in modes]
    for runner in runners:
        runner.step(timed=False)
    for _ in range(steps):
        for runner in runners:
            runner.step(timed=True)
    rows = [runner.result() for runner in runners]
    for runner in runners:
        runner.release()
    return rows


def tensorflow_step_memory(
    config: dict,
    *,
    batch_size: int,
    recompute: str,
    precision: str = "float32",
    conditioner_batch_norm: bool = False,
    steps: int = 2,
    seed: int = 0,
) -> dict:
    """Peak resident memory and step time of ``train_on_batch`` in this (fresh) process."""
    import resource

    import numpy as np

    def rss_bytes() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize()

    model = _build(
        config, recompute=recompute, precision=precision, conditioner_batch_norm=conditioner_batch_norm, seed=seed
    )
    shape = (batch_size,) + tuple(config["image_shape"])
    images = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    before = rss_bytes()
    start = time.perf_counter()
    model.train_on_batch(images)
    first_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logs = model.train_on_batch(images, return_dict=True)
        times.append((time.perf_counter() - start) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {
        "recompute": recompute,
        "batch_size": batch_size,
        "rss_before_step_bytes": before,
        "peak_rss_bytes": int(peak),
        "peak_minus_before_bytes": int(peak - before),
        "first_step_s": round(first_s, 1),
    }
    if times:
        out["ms_per_step"] = round(float(np.median(times)), 1)
        out["step_ms"] = [round(t, 1) for t in times]
        out["loss"] = float(logs["loss"])
    return out


def _tensorflow_row(args, batch_size: int, mode: str) -> dict:
    """Runs one TensorFlow measurement in a fresh process (its own peak memory)."""
    import json
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "row.json"
        argv = [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--config",
            args.config,
            "--precision",
            args.precision,
            "--steps",
            str(args.steps),
            "--seed",
            str(args.seed),
            "--worker",
            f"{batch_size}:{mode}",
            "--worker-output",
            str(result),
        ]
        if args.conditioner_batch_norm:
            argv.append("--conditioner-batch-norm")
        subprocess.run(argv, check=True, cwd=REPO_ROOT, env=dict(os.environ, KERAS_BACKEND="tensorflow"))
        return json.loads(result.read_text())


def _relative(rows: list[dict]) -> None:
    """Adds each row's temporary memory and step time relative to ``none`` at its batch size."""
    base = {r["batch_size"]: r for r in rows if r["recompute"] == "none"}
    for row in rows:
        ref = base.get(row["batch_size"])
        if ref is None:
            continue
        if "temp_bytes" in row:
            row["temp_vs_none"] = round(row["temp_bytes"] / ref["temp_bytes"], 4)
        if "peak_minus_before_bytes" in row:
            row["peak_minus_before_vs_none"] = round(row["peak_minus_before_bytes"] / ref["peak_minus_before_bytes"], 4)
        if "ms_per_step" in row and "ms_per_step" in ref:
            row["time_vs_none"] = round(row["ms_per_step"] / ref["ms_per_step"], 4)


def _previous_rows(path, report: dict) -> list[dict]:
    """Rows of an earlier report at ``path`` measured with the same settings (a rerun
    after an interruption continues where it stopped), else none."""
    import json

    if path is None or not Path(path).exists():
        return []
    try:
        old = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    same = all(old.get(k) == report[k] for k in ("backend", "config", "precision", "conditioner_batch_norm"))
    if not same:
        return []
    report["command"] = old.get("command", "") + "; then " + report["command"]
    return list(old.get("results", []))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", choices=sorted(CONFIGS), default="cifar10", help="Architecture (see benchmarks/configs.py)."
    )
    parser.add_argument("--batch-sizes", default="64,256", help="Comma-separated batch sizes.")
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated recompute modes.")
    parser.add_argument(
        "--precision", default="float32", choices=("float32", "mixed_bfloat16"), help="Keras dtype policy."
    )
    parser.add_argument(
        "--conditioner-batch-norm",
        action="store_true",
        help="Batch norm inside the conditioners (off: the paper's and the baselines' architecture).",
    )
    parser.add_argument(
        "--steps", type=non_negative_int, default=2, help="Timed steps per mode and batch size (0: memory only)."
    )
    parser.add_argument(
        "--schedule",
        choices=("interleaved", "sequential"),
        default="interleaved",
        help="interleaved: all modes compiled at once, timed in rounds of one step each (fair under a changing "
        "load); sequential: one mode at a time (least memory). JAX only.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and the batch.")
    parser.add_argument("--output", type=Path, default=None, help="Write the report as JSON here.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def _worker(args) -> dict:
    """One TensorFlow measurement (``--worker BATCH:MODE``), written to ``--worker-output``."""
    from tfp_realnvp.internal import atomic

    batch_size, mode = args.worker.split(":")
    row = tensorflow_step_memory(
        CONFIGS[args.config],
        batch_size=int(batch_size),
        recompute=mode,
        precision=args.precision,
        conditioner_batch_norm=args.conditioner_batch_norm,
        steps=args.steps,
        seed=args.seed,
    )
    atomic.write_json(args.worker_output, row)
    return row


def _new_report(args, argv, backend: str) -> dict:
    """The report before any measurement: the command, the machine, the versions and the settings."""
    return {
        "schema_version": 1,
        "command": f"KERAS_BACKEND={backend} python -m benchmarks.memory "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "started": utc_now(),
        "backend": backend,
        "measure": "compiled step memory_analysis()"
        if backend == "jax"
        else "process peak resident memory (ru_maxrss)",
        "device": device_description(backend),
        "cpu": cpu_description(),
        "versions": installed_versions(),
        "config": args.config,
        "model": config_record(args.config),
        "conditioner_batch_norm": bool(args.conditioner_batch_norm),
        "precision": args.precision,
        "results": [],
    }


def _measure_batch(args, backend: str, batch_size: int, modes: list[str]) -> list[dict]:
    """Every mode's row at ``batch_size``: compiled steps in this process (JAX) or one
    process per mode (TensorFlow)."""
    if backend == "jax":
        schedule = interleaved_steps if args.schedule == "interleaved" else sequential_steps
        rows = schedule(
            CONFIGS[args.config],
            batch_size=batch_size,
            modes=modes,
            steps=args.steps,
            precision=args.precision,
            conditioner_batch_norm=args.conditioner_batch_norm,
            seed=args.seed,
        )
    else:
        rows = [_tensorflow_row(args, batch_size, mode) for mode in modes]
    for row in rows:
        row["timed_steps"] = args.steps
        if backend == "jax":
            row["schedule"] = args.schedule
    return rows


def _print_rows(backend: str, batch_size: int, rows: list[dict]) -> None:
    for row in rows:
        if backend == "jax":
            memory = f"temp {row['temp_bytes'] / 2**30:6.2f} GiB"
        else:
            memory = f"peak RSS {row['peak_rss_bytes'] / 2**30:6.2f} GiB (+{row['peak_minus_before_bytes'] / 2**30:.2f} over the built model)"
        timing = f", {row['ms_per_step']:.0f} ms/step" if "ms_per_step" in row else ""
        print(f"batch {batch_size:4d} {row['recompute']:12s} {memory}{timing}", flush=True)


def main(argv=None) -> dict:
    """Runs the benchmark; returns the report (a worker: its one row)."""
    import keras

    from tfp_realnvp.internal import atomic

    args = _parser().parse_args(argv)
    backend = keras.backend.backend()
    if args.worker:
        return _worker(args)
    if backend not in ("jax", "tensorflow"):
        raise SystemExit(f"memory.py runs on the JAX or TensorFlow backend; received {backend!r}.")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"--modes: {mode!r} is not one of {list(MODES)}.")
    report = _new_report(args, argv, backend)
    previous = _previous_rows(args.output, report)
    for batch_size in batch_sizes:
        kept = [r for r in previous if r["batch_size"] == batch_size and r["recompute"] in modes]
        if len(kept) == len(modes):
            # Measured by an earlier, interrupted run with the same settings: kept as is.
            report["results"].extend(kept)
            print(f"batch {batch_size:4d}: kept from {args.output}", flush=True)
            continue
        rows = _measure_batch(args, backend, batch_size, modes)
        report["results"].extend(rows)
        _relative(report["results"])
        _print_rows(backend, batch_size, rows)
        if args.output is not None:
            atomic.write_json(args.output, dict(report, finished=None))
    report["finished"] = utc_now()
    if args.output is not None:
        atomic.write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
