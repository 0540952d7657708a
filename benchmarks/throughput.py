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

Example::

    KERAS_BACKEND=jax python -m benchmarks.throughput --config cifar10 \\
        --batch-sizes 64,256 --precision float32 --output cifar10.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    REPO_ROOT,
    assign_training_state,
    block_until_ready,
    cpu_description,
    device_description,
    installed_versions,
    non_negative_int,
    positive_int,
    positive_int_list,
    training_state,
    utc_now,
)

#: Model settings per ``--config``. ``celeba`` follows the Real NVP paper (section 4.1):
#: 64x64 images, the multi-scale recursion repeated until the last scale works on
#: 4x4 (five scales), 32 feature maps at the first scale and 2 residual blocks.
CONFIGS = {
    "cifar10": {"image_shape": (32, 32, 3), "num_scales": 2, "num_filters": 64, "num_blocks": 8},
    "celeba": {"image_shape": (64, 64, 3), "num_scales": 5, "num_filters": 32, "num_blocks": 2},
    "tiny": {"image_shape": (8, 8, 1), "num_scales": 2, "num_filters": 8, "num_blocks": 1},
}
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
MEASUREMENTS = ("train", "log_prob", "sample")
IMPLEMENTATIONS = ("package", "baseline")
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


# Memory --------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory so far: the GPU allocator's peak, or the process' max RSS on CPU.

    Only TensorFlow can restart a GPU peak; JAX's ``peak_bytes_in_use`` and the max RSS
    cover the whole process so far, so later readings include earlier measurements.
    """

    def __init__(self, backend: str):
        self.backend = backend
        self.kind = "host_max_rss"
        self._device = None
        if backend == "jax":
            import jax

            device = jax.local_devices()[0]
            if device.platform != "cpu" and (device.memory_stats() or {}).get("peak_bytes_in_use") is not None:
                self._device = device
                self.kind = "device_peak_bytes_in_use"
        else:
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                self._device = "GPU:0"
                self.kind = "device_peak_bytes_in_use"

    def reset(self) -> None:
        """Restarts the peak where the backend allows it (TensorFlow GPU)."""
        if self.backend == "tensorflow" and self._device is not None:
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats(self._device)

    def read(self) -> int:
        """Bytes."""
        if self._device is None:
            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        if self.backend == "jax":
            return int(self._device.memory_stats()["peak_bytes_in_use"])
        import tensorflow as tf

        return int(tf.config.experimental.get_memory_info(self._device)["peak"])


# Timing --------------------------------------------------------------------------------
def timed_interleaved(runners: dict, *, warmup: int, repeats: int, steps: int, images_per_call: int, log=None) -> dict:
    """Times each ``runners[name](n)`` (``n`` calls, returning once their results are ready).

    Every runner first gets ``warmup`` untimed calls; then ``repeats`` rounds, each of
    which times ``steps`` calls of every runner, the order alternating between rounds,
    so that a change of machine load hits all runners alike.

    Returns:
        ``{name: stats}`` with the median images/s and the per-repeat values.
    """
    for run in runners.values():
        if warmup:
            run(warmup)
    rates = {name: [] for name in runners}
    names = list(runners)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runners[name](steps)
            rates[name].append(images_per_call * steps / (time.perf_counter() - start))
    out = {}
    for name, values in rates.items():
        median = statistics.median(values)
        out[name] = {
            "images_per_s": median,
            "seconds_per_call": images_per_call / median,
            "images_per_s_repeats": values,
            "batch_size": images_per_call,
            "warmup": warmup,
            "repeats": repeats,
            "steps": steps,
        }
        if log:
            log(f"{name}: {median:.1f} img/s")
    return out


def _first_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def train_step_runner(model, images, mode: str):
    """``run(n)``: ``n`` optimizer steps on ``images``, returning once they are done.

    ``mode="loop"`` calls the model's compiled Keras train function
    (``model.train_function``, made by ``model.make_train_function()``) ``n`` times on a
    device-resident batch and waits for the results once. On JAX the training state
    (``common.training_state``) goes through the ``n`` steps and the last one is written
    back into the model's variables (``common.assign_training_state``), so after
    ``run(n)`` the model holds what the steps computed. ``mode="train_on_batch"`` calls
    ``model.train_on_batch`` per step.

    Call it after one ``model.train_on_batch(images)``, which builds the optimizer and the
    metrics and compiles the train function that the ``loop`` mode reuses.
    """
    import keras

    backend = keras.backend.backend()
    if mode == "train_on_batch" or backend not in ("tensorflow", "jax"):

        def run(n):
            for _ in range(n):
                logs = model.train_on_batch(images, return_dict=True)
            return logs

        return run

    model.make_train_function()
    if backend == "tensorflow":
        import tensorflow as tf

        data = (tf.constant(images), None, None)

        def run(n):
            for _ in range(n):
                logs = model.train_function(iter([data]))
            block_until_ready(logs)
            return logs

        return run

    import jax

    data = (jax.device_put(images), None, None)

    def run(n):
        # As fit does within an epoch: the stateless train function takes the values of
        # every variable and returns their new values, and the model's variables get the
        # last state once the steps are done (the compiled train function donates its
        # input state: until then the variables may hold deleted arrays).
        state = training_state(model)
        for _ in range(n):
            logs, state = model.train_function(state, iter([data]))
        jax.block_until_ready((logs, state))
        assign_training_state(model, state)
        return logs

    return run


# Worker --------------------------------------------------------------------------------
def build_model(impl: str, config: str, precision: str, seed: int):
    """The package's ``RealNVP`` or the plain-Keras baseline, compiled later."""
    kwargs = dict(CONFIGS[config], dtype=precision, seed=seed)
    if impl == "package":
        import tfp_realnvp

        # The architecture of the plain baseline and the PyTorch port: weight-norm
        # conditioners without batch norm (the package's default adds it).
        return tfp_realnvp.RealNVP(conditioner_batch_norm=False, **kwargs)
    from benchmarks.plain_keras import PlainRealNVP

    return PlainRealNVP(**kwargs)


def run_worker(args, impls) -> dict:
    """Measures ``impls`` in this process; writes partial results after every measurement.

    With more than one implementation the timed repeats alternate between them (see
    ``timed_interleaved``); peak memory is then the process' and shared by all.
    """
    import keras
    import numpy as np

    backend = keras.backend.backend()
    keras.utils.set_random_seed(args.seed)
    memory = PeakMemory(backend)

    def log(message):
        print(f"[{'+'.join(impls)}] {message}", flush=True)

    results = {
        impl: {
            "implementation": impl,
            "backend": backend,
            "device": device_description(backend),
            "started": utc_now(),
            "load_average_start": _load_average(),
            "memory_kind": memory.kind,
            "train": {},
            "log_prob": None,
            "sample": None,
            "peak_memory_bytes": None,
        }
        for impl in impls
    }

    def save():
        if args.worker_output is not None:
            args.worker_output.write_text(json.dumps(results, indent=1))

    models = {}
    for impl in impls:
        start = time.perf_counter()
        models[impl] = build_model(impl, args.config, args.precision, args.seed)
        models[impl].compile(jit_compile="auto" if args.jit is None else bool(args.jit))
        results[impl]["build_s"] = time.perf_counter() - start
        results[impl]["jit_compile"] = bool(models[impl].jit_compile)
        results[impl]["trainable_parameters"] = int(sum(int(np.prod(v.shape)) for v in models[impl].trainable_weights))
    shape = tuple(CONFIGS[args.config]["image_shape"])
    rng = np.random.default_rng(args.seed)
    infer_batch = args.inference_batch_size or max(args.batch_sizes)
    pool = rng.integers(0, 256, size=(max(max(args.batch_sizes), infer_batch),) + shape, dtype=np.uint8)
    timing = {"warmup": args.warmup, "repeats": args.repeats, "steps": args.steps}
    save()

    if "train" in args.measure:
        for batch in args.batch_sizes:
            images = pool[:batch]
            memory.reset()
            runners, extra = {}, {}
            for impl, model in models.items():
                log(f"{impl}: train step, batch {batch}: first call")
                calls = _network_calls(model)
                first = _first_call(lambda: model.train_on_batch(images))  # noqa: B023 - called now
                runners[impl] = train_step_runner(model, images, args.step_mode)
                extra[impl] = {"first_call_s": first, "_calls": (calls, _network_calls(model))}
                log(f"{impl}: first call {first:.1f} s")
            stats = timed_interleaved(runners, images_per_call=batch, log=log, **timing)
            peak = memory.read()
            for impl, model in models.items():
                logs = runners[impl](1)
                calls, calls_first = extra[impl].pop("_calls")
                entry = {
                    **stats[impl],
                    **extra[impl],
                    "loss": float(np.asarray(logs["loss"])),
                    "peak_memory_bytes": peak,
                }
                if calls is not None:
                    entry["network_calls"] = {
                        "couplings": len(model.flow.couplings),
                        "first_call": calls_first - calls,
                        "after_first_call": _network_calls(model) - calls_first,
                    }
                results[impl]["train"][str(batch)] = entry
            save()

    inference = {
        "log_prob": lambda model, n, k: model.log_prob(pool[:infer_batch], batch_size=infer_batch),
        "sample": lambda model, n, k: model.sample(infer_batch, seed=k),
    }
    for what, call in inference.items():
        if what not in args.measure:
            continue
        memory.reset()
        runners, firsts = {}, {}
        for impl, model in models.items():
            counter = iter(range(1, 10**9))

            def run(n, model=model, counter=counter, call=call):
                for _ in range(n):
                    call(model, infer_batch, next(counter))

            log(f"{impl}: {what}, batch {infer_batch}: first call")
            firsts[impl] = _first_call(lambda model=model, call=call: call(model, infer_batch, 0))
            runners[impl] = run
        stats = timed_interleaved(runners, images_per_call=infer_batch, log=log, **timing)
        peak = memory.read()
        for impl in impls:
            results[impl][what] = {**stats[impl], "first_call_s": firsts[impl], "peak_memory_bytes": peak}
        save()

    for impl in impls:
        results[impl]["peak_memory_bytes"] = memory.read()
        results[impl]["load_average_end"] = _load_average()
        results[impl]["finished"] = utc_now()
    save()
    return results


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _network_calls(model):
    """Conditioner passes traced or run so far (the package's counter), else ``None``.

    Inside compiled code the counter moves once per trace, so a train step that traces
    once adds one pass per coupling, and a count that grows while timing means retracing.
    """
    flow = getattr(model, "flow", None)
    calls = getattr(flow, "network_calls", None)
    return int(calls) if calls is not None else None


# Parent --------------------------------------------------------------------------------
def _ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def _ratio_entry(pkg: dict, base: dict) -> dict:
    entry = {
        "images_per_s": _ratio(pkg["images_per_s"], base["images_per_s"]),
        "peak_memory_bytes": _ratio(pkg.get("peak_memory_bytes"), base.get("peak_memory_bytes")),
    }
    a, b = pkg.get("images_per_s_repeats") or [], base.get("images_per_s_repeats") or []
    if a and len(a) == len(b):
        # Repeat i of both ran back to back under the interleaved schedule.
        entry["images_per_s_paired_median"] = statistics.median(x / y for x, y in zip(a, b))
    return entry


def compute_ratios(results: dict) -> dict:
    """package / baseline for every throughput (and peak memory) measured by both."""
    pkg, base = results.get("package"), results.get("baseline")
    if not pkg or not base:
        return {}
    ratios = {"train": {}}
    for batch, stats in (pkg.get("train") or {}).items():
        other = (base.get("train") or {}).get(batch)
        if other:
            ratios["train"][batch] = _ratio_entry(stats, other)
    for key in ("log_prob", "sample"):
        if pkg.get(key) and base.get(key):
            ratios[key] = _ratio_entry(pkg[key], base[key])
    return ratios


def summary_rows(report: dict) -> list[tuple]:
    """Rows ``(what, batch, package img/s, baseline img/s, ratio, paired ratio, package MiB, baseline MiB)``.

    The paired ratio is the median over repeats of package/baseline for repeats that ran
    back to back (``--schedule interleaved``); ``None`` otherwise.
    """
    results = report.get("results", {})
    pkg, base = results.get("package") or {}, results.get("baseline") or {}
    rows = []
    batches = sorted({int(b) for r in (pkg, base) for b in (r.get("train") or {})})
    for batch in batches:
        p, b = (pkg.get("train") or {}).get(str(batch)), (base.get("train") or {}).get(str(batch))
        rows.append(("train", batch, p, b))
    for key in ("log_prob", "sample"):
        p, b = pkg.get(key), base.get(key)
        if p or b:
            rows.append((key, (p or b)["batch_size"], p, b))
    out = []
    for what, batch, p, b in rows:
        pr = p["images_per_s"] if p else None
        br = b["images_per_s"] if b else None
        pm = p.get("peak_memory_bytes") if p else None
        bm = b.get("peak_memory_bytes") if b else None
        paired = None
        if report.get("schedule") == "interleaved" and p and b:
            paired = _ratio_entry(p, b).get("images_per_s_paired_median")
        out.append((what, batch, pr, br, _ratio(pr, br), paired, pm, bm))
    return out


def format_summary(report: dict) -> str:
    """A plain-text table of the report."""

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = (
        f"config={report['config']} precision={report['precision']} backend={report['backend']} "
        f"device={(report.get('device') or {}).get('platform')} jit={report.get('jit')} "
        f"step_mode={report['step_mode']} schedule={report.get('schedule', 'isolated')}"
    )
    lines = [
        head,
        f"{'what':<9}{'batch':>6}{'package img/s':>15}{'baseline img/s':>16}{'pkg/base':>10}{'paired':>8}"
        f"{'pkg MiB':>10}{'base MiB':>10}",
    ]
    for what, batch, pr, br, ratio, paired, pm, bm in summary_rows(report):
        lines.append(
            f"{what:<9}{batch:>6}{num(pr, '.1f'):>15}{num(br, '.1f'):>16}{num(ratio, '.3f'):>10}{num(paired, '.3f'):>8}"
            f"{num(pm and pm / 2**20, '.0f'):>10}{num(bm and bm / 2**20, '.0f'):>10}"
        )
    return "\n".join(lines)


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


def main(argv=None) -> int:
    """Runs the benchmark; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.worker:
        run_worker(args, args.worker.split(","))
        return 0

    # The parent stays off the accelerator (JAX would reserve most of a GPU's memory):
    # the workers report the backend and the devices.
    impls = ["package"] if args.skip_baseline else list(IMPLEMENTATIONS)
    report = {
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
        "model": {k: list(v) if isinstance(v, tuple) else v for k, v in CONFIGS[args.config].items()},
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

    def write():
        if args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=1) + "\n")

    status = 0
    groups = [impls] if args.schedule == "interleaved" else [[impl] for impl in impls]
    for group in groups:
        name = "+".join(group)
        print(f"== {name} ({args.config}, {args.precision})", flush=True)
        base = (
            args.output if args.output is not None else Path(tempfile.gettempdir()) / f"throughput-{os.getpid()}.json"
        )
        partial = base.with_name(f"{base.stem}.{name}.partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        proc = subprocess.run(_worker_command(args, ",".join(group), partial), check=False, cwd=REPO_ROOT)
        if partial.exists():
            report["results"].update(json.loads(partial.read_text()))
        if proc.returncode != 0:
            status = 1
            report["errors"][name] = f"worker exited with status {proc.returncode}"
        else:
            partial.unlink(missing_ok=True)
        for impl in group:
            done = report["results"].get(impl) or {}
            report["backend"] = report["backend"] or done.get("backend")
            report["device"] = report["device"] or done.get("device")
        report["ratios"] = compute_ratios(report["results"])
        write()

    report["finished"] = utc_now()
    write()
    print(format_summary(report), flush=True)
    if args.output is not None:
        print(f"wrote {args.output}")
    return status


if __name__ == "__main__":
    sys.exit(main())
