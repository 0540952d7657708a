"""Where a train step's time goes: a per-part profile of the compiled step, package against baseline.

JAX backend only (``KERAS_BACKEND=jax``), on a CPU or a GPU. For each implementation
(``tfp_realnvp.RealNVP``, and the plain-Keras ``PlainRealNVP`` unless
``--skip-baseline``) it:

1. builds and compiles the model, runs one ``train_on_batch`` (which builds the
   optimizer), then compiles Keras' own ``train_step`` (forward, loss, gradients,
   clipped Adam update, metric) with ``jax.jit`` and keeps the compiled program;
2. times ``--repeats`` runs of ``--steps`` back-to-back steps on a device-resident uint8
   batch (median milliseconds per step: the wall time, including any gaps between
   operations);
3. records ``--profile-steps`` further steps with ``jax.profiler`` and sums the time of
   every XLA operation of the step (a GPU kernel, or a CPU thunk) by *part* and *pass*,
   as ``hlo_profile.py`` attributes them: ``conv`` (the conditioners' convolutions),
   ``network``, ``coupling``, ``batch_norm``, ``reshape``, ``layout``, ``cast``, ``loss``,
   ``optimizer``, ``other``; forward, backward, update, unlabelled.

It also counts the instructions of the compiled program by opcode and part (each one is
a kernel launch on a GPU) and the ``convert`` instructions (precision casts), and
compares the two compiled programs instruction by instruction (opcode and result type):
a handful of differences in tens of thousands means XLA runs the same computation for
both, so any difference in speed comes from outside the compiled step.

Both models are built first; the timed repeats alternate between them.

On a GPU, XLA may launch a step's kernels as CUDA graphs ("command buffers"), which the
profiler records as one operation; ``--no-command-buffers`` turns them off (set before
JAX starts) so that every kernel is seen. The wall times then describe that setting.

Example::

    KERAS_BACKEND=jax python -m benchmarks.step_profile --config cifar10 --batch-size 64 \\
        --precision float32 --output profile_cifar10_b64.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import hlo_profile, hlo_text
from benchmarks.common import (
    block_until_ready,
    cpu_description,
    device_description,
    installed_versions,
    non_negative_int,
    positive_int,
    training_state,
    utc_now,
)
from benchmarks.configs import CONFIGS, IMPLEMENTATIONS, PRECISIONS, build_model, config_record

SCHEMA_VERSION = 1


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Per-part profile (convolutions, batch norm, coupling, optimizer, ...) of one "
        "compiled train step of tfp_realnvp.RealNVP and of the plain-Keras baseline (JAX backend).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cifar10", help="Model size (see configs.py).")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="Images per train step.")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="Keras dtype policy.")
    parser.add_argument("--warmup", type=non_negative_int, default=2, help="Untimed steps after compiling.")
    parser.add_argument("--repeats", type=positive_int, default=3, help="Timed repeats (median reported).")
    parser.add_argument("--steps", type=positive_int, default=5, help="Steps per timed repeat.")
    parser.add_argument("--profile-steps", type=positive_int, default=3, help="Steps recorded by the profiler.")
    parser.add_argument("--skip-baseline", action="store_true", help="Profile the package only.")
    parser.add_argument(
        "--no-command-buffers",
        action="store_true",
        help="GPU: add --xla_gpu_enable_command_buffer= to XLA_FLAGS (before JAX starts), so the "
        "profiler sees every kernel instead of whole CUDA graphs.",
    )
    parser.add_argument("--hlo-dir", type=Path, default=None, help="Also write each compiled step's HLO text here.")
    parser.add_argument(
        "--trace-dir", type=Path, default=None, help="Keep the profiler traces here (default: deleted)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and the batch.")
    parser.add_argument("--output", type=Path, default=None, help="Write the report as JSON to this file.")
    return parser


class StepRunner:
    """One implementation's compiled train step, with the training state threaded through it."""

    def __init__(self, impl: str, args, images, log):
        import jax

        self.impl = impl
        start = time.perf_counter()
        model = build_model(impl, args.config, args.precision, args.seed)
        model.compile(jit_compile=True)
        model.train_on_batch(images)  # builds the optimizer and metric variables
        self.build_s = time.perf_counter() - start
        self.state = training_state(model)
        self.data = (jax.device_put(images), None, None)
        start = time.perf_counter()
        self.compiled = jax.jit(model.train_step, donate_argnums=0).lower(self.state, self.data).compile()
        self.compile_s = time.perf_counter() - start
        self.text = self.compiled.as_text()
        self.module = hlo_text.parse_hlo(self.text)
        self.logs = None
        if args.hlo_dir is not None:
            args.hlo_dir.mkdir(parents=True, exist_ok=True)
            (args.hlo_dir / f"{impl}_{args.config}_{args.precision}_b{args.batch_size}.hlo.txt").write_text(self.text)
        log(
            f"{impl}: built and first step in {self.build_s:.1f} s; lowered and compiled in {self.compile_s:.1f} s "
            f"(less when JAX reuses the first step's program); {len(self.text) / 1e6:.1f} MB of HLO"
        )

    def run(self, n: int) -> None:
        """``n`` steps back to back; returns once their results are computed."""
        for _ in range(n):
            self.logs, self.state = self.compiled(self.state, self.data)
        block_until_ready((self.logs, self.state))

    def timed(self, n: int) -> float:
        """Milliseconds per step over ``n`` steps."""
        start = time.perf_counter()
        self.run(n)
        return (time.perf_counter() - start) * 1e3 / n

    def profile(self, steps: int, trace_dir: Path) -> dict:
        """Per-part operation times of ``steps`` steps recorded by ``jax.profiler``."""
        import jax

        with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
            self.run(steps)
        events = hlo_profile.load_trace_events(hlo_profile.find_trace(trace_dir))
        return hlo_profile.profile_events(events, self.module, steps)


def measure(runners: dict, args, trace_root: Path, log) -> dict:
    """Warm-up, timed repeats alternating between the runners (so a changing machine load
    hits all alike), then one profiled run each."""
    for runner in runners.values():
        runner.run(max(args.warmup, 0) + 1)
    wall = {impl: [] for impl in runners}
    names = list(runners)
    for r in range(args.repeats):
        for impl in names if r % 2 == 0 else names[::-1]:
            wall[impl].append(runners[impl].timed(args.steps))
    results = {}
    for impl, runner in runners.items():
        wall_ms = statistics.median(wall[impl])
        log(f"{impl}: {wall_ms:.2f} ms/step ({args.batch_size * 1e3 / wall_ms:.1f} img/s)")
        profile = runner.profile(args.profile_steps, trace_root / impl)
        results[impl] = {
            "implementation": impl,
            "trainable_parameters": int(sum(int(v.size) for v in runner.state[0])),
            "build_and_first_step_s": runner.build_s,
            "lower_and_compile_s": runner.compile_s,
            "loss": float(runner.logs["loss"]),
            "wall_ms_per_step": wall_ms,
            "wall_ms_per_step_repeats": wall[impl],
            "images_per_s": args.batch_size * 1e3 / wall_ms,
            "hlo_module": runner.module.name,
            "hlo_characters": len(runner.text),
            "static": hlo_profile.static_counts(runner.module),
            "profile": profile,
        }
    if len(runners) == 2:
        package, baseline = (wall[i] for i in IMPLEMENTATIONS)
        results["paired_wall_ratio"] = statistics.median(a / b for a, b in zip(package, baseline))
    return results


def compare(results: dict) -> dict:
    """Package minus baseline, per part (ms/step), and the ratios of the totals."""
    if "package" not in results or "baseline" not in results:
        return {}
    pkg, base = results["package"], results["baseline"]
    parts = {
        part: pkg["profile"]["parts"][part]["ms_per_step"] - base["profile"]["parts"][part]["ms_per_step"]
        for part in hlo_profile.PARTS
    }

    def ratio(a, b):
        return a / b if b else None

    return {
        "ms_per_step_difference_by_part": parts,
        "wall_ratio": ratio(pkg["wall_ms_per_step"], base["wall_ms_per_step"]),
        "op_time_ratio": ratio(pkg["profile"]["op_ms_per_step"], base["profile"]["op_ms_per_step"]),
        "ops_per_step_ratio": ratio(pkg["profile"]["ops_per_step"], base["profile"]["ops_per_step"]),
        "instructions_ratio": ratio(pkg["static"].get("instructions", 0), base["static"].get("instructions", 0)),
        "paired_wall_ratio": results.get("paired_wall_ratio"),
    }


def format_report(report: dict) -> str:
    """Plain-text tables of a report."""
    results = report["results"]
    impls = [i for i in IMPLEMENTATIONS if i in results]
    lines = [
        f"{report['config']}, {report['precision']}, batch {report['batch_size']}, "
        f"{report.get('device', {}).get('devices', ['?'])[0]}"
    ]
    header = f"{'part':<11}" + "".join(f"{impl + ' ms':>13}{'%':>6}{'ops':>7}" for impl in impls)
    if len(impls) == 2:
        header += f"{'diff ms':>10}"
    lines.append(header)
    for part in hlo_profile.PARTS:
        row = f"{part:<11}"
        for impl in impls:
            missing = {"ms_per_step": 0.0, "fraction": 0.0, "ops_per_step": 0}  # a part added later
            entry = results[impl]["profile"]["parts"].get(part, missing)
            row += f"{entry['ms_per_step']:>13.3f}{100 * entry['fraction']:>6.1f}{entry['ops_per_step']:>7.0f}"
        if len(impls) == 2:
            row += f"{report['comparison']['ms_per_step_difference_by_part'].get(part, 0.0):>+10.3f}"
        lines.append(row)
    summary = (
        ("op time", lambda r: f"{r['profile']['op_ms_per_step']:.3f} ms"),
        ("wall", lambda r: f"{r['wall_ms_per_step']:.3f} ms"),
        ("images/s", lambda r: f"{r['images_per_s']:.1f}"),
        ("ops/step", lambda r: f"{r['profile']['ops_per_step']:.0f}"),
        ("unmatched", lambda r: f"{r['profile'].get('unmatched_ms_per_step', 0.0):.3f} ms"),
        ("instructions", lambda r: f"{r['static'].get('instructions', 0)}"),
        ("converts", lambda r: f"{r['static'].get('converts_anywhere', 0)}"),
    ) + tuple(
        (step_pass, lambda r, p=step_pass: f"{r['profile']['passes'][p]:.3f} ms") for step_pass in hlo_profile.PASSES
    )
    for label, fmt in summary:
        lines.append(f"{label:<11}" + "".join(f"{fmt(results[impl]):>26}" for impl in impls))
    comparison = report.get("comparison") or {}
    if comparison.get("wall_ratio") is not None:
        paired = comparison.get("paired_wall_ratio")
        lines.append(
            f"package/baseline: wall {comparison['wall_ratio']:.3f}"
            + (f" (paired {paired:.3f})" if paired is not None else "")
            + f", op time {comparison['op_time_ratio']:.3f}, ops/step {comparison['ops_per_step_ratio']:.3f}"
        )
    difference = comparison.get("program_difference")
    if difference:
        lines.append(
            f"compiled programs: {difference['instructions'][0]} and {difference['instructions'][1]} instructions, "
            f"{difference['differing']} differ by opcode and result type"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    """Runs the profile; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.no_command_buffers:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_enable_command_buffer=".strip()
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        print(f"step_profile.py needs KERAS_BACKEND=jax; the active Keras backend is {backend!r}", file=sys.stderr)
        return 2
    import numpy as np

    keras.utils.set_random_seed(args.seed)
    impls = ["package"] if args.skip_baseline else list(IMPLEMENTATIONS)
    shape = tuple(CONFIGS[args.config]["image_shape"])
    images = np.random.default_rng(args.seed).integers(0, 256, size=(args.batch_size,) + shape, dtype=np.uint8)
    report = {
        "schema_version": SCHEMA_VERSION,
        "command": shlex.join([sys.executable] + sys.argv) if argv is None else shlex.join(["step_profile.py", *argv]),
        "started": utc_now(),
        "backend": backend,
        "device": device_description(backend),
        "cpu": cpu_description(),
        "versions": installed_versions(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "config": args.config,
        "model": config_record(args.config),
        "precision": args.precision,
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "steps": args.steps,
        "profile_steps": args.profile_steps,
        "parts": hlo_profile.PART_DESCRIPTIONS,
        "results": {},
        "comparison": {},
    }

    def log(message):
        print(f"[step_profile] {message}", flush=True)

    def write():
        if args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=1) + "\n")

    runners = {impl: StepRunner(impl, args, images, log) for impl in impls}
    with tempfile.TemporaryDirectory(prefix="step_profile_") as tmp:
        trace_root = args.trace_dir if args.trace_dir is not None else Path(tmp)
        results = measure(runners, args, trace_root, log)
    paired = results.pop("paired_wall_ratio", None)
    report["results"] = results
    report["comparison"] = compare({**results, "paired_wall_ratio": paired})
    if len(runners) == 2:
        report["comparison"]["program_difference"] = hlo_text.program_difference(
            runners["package"].text, runners["baseline"].text
        )
    report["finished"] = utc_now()
    write()
    print(format_report(report), flush=True)
    if args.output is not None:
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
