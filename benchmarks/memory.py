"""Memory and time of the compiled train step with and without recomputation.

JAX backend only (``KERAS_BACKEND=jax``). For each batch size and each ``recompute``
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

It then times ``--steps`` steps of the compiled program on a device-resident uint8
batch (milliseconds per step; the first call is not timed). The report gives every
mode's temporary memory and step time relative to ``none`` at the same batch size.

Example (the README's table)::

    KERAS_BACKEND=jax python benchmarks/memory.py --config cifar10 --batch-sizes 64,256 \\
        --output benchmarks/results/cpu/memory_cifar10.json
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.throughput import CONFIGS, _now, cpu_description, device_description, versions  # noqa: E402

MODES = ("none", "conditioner", "invertible")
_STATE_KEYS = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")


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


def compiled_step_memory(
    config: dict,
    *,
    batch_size: int,
    recompute: str,
    precision: str = "float32",
    conditioner_batch_norm: bool = False,
    steps: int = 0,
    seed: int = 0,
) -> dict:
    """Memory of the compiled Keras train step of one configuration, and its step time.

    Args:
        config: ``RealNVP`` architecture (``image_shape``, ``num_scales``, ...).
        batch_size: images per step.
        recompute: the ``RealNVP(recompute=...)`` mode.
        precision: Keras dtype policy.
        conditioner_batch_norm: batch norm inside the conditioners.
        steps: steps to time after one untimed call (0: memory only).
        seed: seed of the weights and the batch.

    Returns:
        ``temp_bytes``, ``argument_bytes``, ``output_bytes``, ``alias_bytes``,
        ``peak_bytes`` (``None`` where not reported), ``compile_s`` and, when
        ``steps``, ``ms_per_step``.
    """
    import jax
    import numpy as np

    model = _build(config, recompute=recompute, precision=precision, conditioner_batch_norm=conditioner_batch_norm, seed=seed)
    shape = (batch_size,) + tuple(config["image_shape"])
    images = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    state = model._get_jax_state(**{k: True for k in _STATE_KEYS})
    data = (jax.device_put(images), None, None)
    start = time.perf_counter()
    compiled = jax.jit(model.train_step, donate_argnums=0).lower(state, data).compile()
    compile_s = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    out = {
        "recompute": recompute,
        "batch_size": batch_size,
        "temp_bytes": int(analysis.temp_size_in_bytes),
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
        "alias_bytes": int(analysis.alias_size_in_bytes),
        "peak_bytes": int(getattr(analysis, "peak_memory_in_bytes", 0)) or None,
        "compile_s": round(compile_s, 2),
    }
    if steps:
        logs, state = compiled(state, data)
        jax.block_until_ready((logs, state))
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            logs, state = compiled(state, data)
            jax.block_until_ready((logs, state))
            times.append((time.perf_counter() - start) * 1e3)
        out["ms_per_step"] = round(float(np.median(times)), 1)
        out["step_ms"] = [round(t, 1) for t in times]
        out["loss"] = float(logs["loss"])
    del compiled, state, model
    gc.collect()
    return out


def _relative(rows: list[dict]) -> None:
    """Adds each row's temporary memory and step time relative to ``none`` at its batch size."""
    base = {r["batch_size"]: r for r in rows if r["recompute"] == "none"}
    for row in rows:
        ref = base.get(row["batch_size"])
        if ref is None:
            continue
        row["temp_vs_none"] = round(row["temp_bytes"] / ref["temp_bytes"], 4)
        if "ms_per_step" in row and "ms_per_step" in ref:
            row["time_vs_none"] = round(row["ms_per_step"] / ref["ms_per_step"], 4)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cifar10", help="Architecture (see benchmarks/throughput.py).")
    parser.add_argument("--batch-sizes", default="64,256", help="Comma-separated batch sizes.")
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated recompute modes.")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"), help="Keras dtype policy.")
    parser.add_argument("--conditioner-batch-norm", action="store_true", help="Batch norm inside the conditioners (off: the paper's and the baselines' architecture).")
    parser.add_argument("--steps", type=int, default=2, help="Timed steps per mode and batch size (0: memory only).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and the batch.")
    parser.add_argument("--output", type=Path, default=None, help="Write the report as JSON here.")
    return parser


def main(argv=None) -> dict:
    import keras

    from tfp_realnvp import atomic

    args = _parser().parse_args(argv)
    if keras.backend.backend() != "jax":
        raise SystemExit(f"memory.py measures the compiled JAX step; run with KERAS_BACKEND=jax (received {keras.backend.backend()!r}).")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"--modes: {mode!r} is not one of {list(MODES)}.")
    report = {
        "schema_version": 1,
        "command": "KERAS_BACKEND=jax python benchmarks/memory.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "started": _now(),
        "backend": "jax",
        "device": device_description("jax"),
        "cpu": cpu_description(),
        "versions": versions(),
        "config": args.config,
        "model": {k: list(v) if isinstance(v, tuple) else v for k, v in CONFIGS[args.config].items()},
        "conditioner_batch_norm": bool(args.conditioner_batch_norm),
        "precision": args.precision,
        "steps": args.steps,
        "results": [],
    }
    for batch_size in batch_sizes:
        for mode in modes:
            row = compiled_step_memory(
                CONFIGS[args.config],
                batch_size=batch_size,
                recompute=mode,
                precision=args.precision,
                conditioner_batch_norm=args.conditioner_batch_norm,
                steps=args.steps,
                seed=args.seed,
            )
            report["results"].append(row)
            _relative(report["results"])
            timing = f", {row['ms_per_step']:.0f} ms/step" if "ms_per_step" in row else ""
            print(f"batch {batch_size:4d} {mode:12s} temp {row['temp_bytes'] / 2**30:6.2f} GiB{timing} (compile {row['compile_s']:.0f} s)", flush=True)
            if args.output is not None:
                atomic.write_json(args.output, dict(report, finished=None))
    report["finished"] = _now()
    if args.output is not None:
        atomic.write_json(args.output, report)
    return report


if __name__ == "__main__":
    main()
