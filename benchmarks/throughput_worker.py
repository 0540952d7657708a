"""The measuring side of ``throughput.py``: peak memory, interleaved timing, the train-step
runner and the worker process that measures one or more implementations.

Importing this module imports the standard library only; the worker imports Keras,
NumPy and the backend when it runs.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time

from benchmarks.common import assign_training_state, block_until_ready, device_description, training_state, utc_now
from benchmarks.configs import CONFIGS, build_model


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


class Worker:
    """Measures ``impls`` in one process; writes the partial results after every measurement.

    With more than one implementation the timed repeats alternate between them (see
    ``timed_interleaved``); peak memory is then the process' and shared by all.

    Args:
        args: the parsed command line of ``throughput.py``.
        impls: the implementations to measure (``configs.IMPLEMENTATIONS``).
    """

    def __init__(self, args, impls):
        import keras
        import numpy as np

        self.args, self.impls = args, list(impls)
        backend = keras.backend.backend()
        keras.utils.set_random_seed(args.seed)
        self.memory = PeakMemory(backend)
        self.results = {impl: self._new_result(impl, backend) for impl in self.impls}
        self.models = {}
        self.infer_batch = args.inference_batch_size or max(args.batch_sizes)
        shape = tuple(CONFIGS[args.config]["image_shape"])
        size = (max(max(args.batch_sizes), self.infer_batch),) + shape
        self.pool = np.random.default_rng(args.seed).integers(0, 256, size=size, dtype=np.uint8)
        self.timing = {"warmup": args.warmup, "repeats": args.repeats, "steps": args.steps}

    def _new_result(self, impl: str, backend: str) -> dict:
        return {
            "implementation": impl,
            "backend": backend,
            "device": device_description(backend),
            "started": utc_now(),
            "load_average_start": _load_average(),
            "memory_kind": self.memory.kind,
            "train": {},
            "log_prob": None,
            "sample": None,
            "peak_memory_bytes": None,
        }

    def log(self, message: str) -> None:
        print(f"[{'+'.join(self.impls)}] {message}", flush=True)

    def save(self) -> None:
        """Writes the results so far to ``--worker-output``."""
        if self.args.worker_output is not None:
            self.args.worker_output.write_text(json.dumps(self.results, indent=1))

    def build(self) -> None:
        """Builds and compiles every model."""
        import numpy as np

        args = self.args
        for impl in self.impls:
            start = time.perf_counter()
            model = self.models[impl] = build_model(impl, args.config, args.precision, args.seed)
            model.compile(jit_compile="auto" if args.jit is None else bool(args.jit))
            self.results[impl]["build_s"] = time.perf_counter() - start
            self.results[impl]["jit_compile"] = bool(model.jit_compile)
            self.results[impl]["trainable_parameters"] = int(
                sum(int(np.prod(v.shape)) for v in model.trainable_weights)
            )

    def measure_train(self, batch: int) -> None:
        """The train step at ``batch``: first call, then the timed repeats of every model."""
        import numpy as np

        images = self.pool[:batch]
        self.memory.reset()
        runners, firsts, calls = {}, {}, {}
        for impl, model in self.models.items():
            self.log(f"{impl}: train step, batch {batch}: first call")
            before = _network_calls(model)
            firsts[impl] = _first_call(lambda: model.train_on_batch(images))  # noqa: B023 - called now
            runners[impl] = train_step_runner(model, images, self.args.step_mode)
            calls[impl] = (before, _network_calls(model))
            self.log(f"{impl}: first call {firsts[impl]:.1f} s")
        stats = timed_interleaved(runners, images_per_call=batch, log=self.log, **self.timing)
        peak = self.memory.read()
        for impl, model in self.models.items():
            logs = runners[impl](1)
            entry = {
                **stats[impl],
                "first_call_s": firsts[impl],
                "loss": float(np.asarray(logs["loss"])),
                "peak_memory_bytes": peak,
            }
            before, after_first = calls[impl]
            if before is not None:
                entry["network_calls"] = {
                    "couplings": len(model.flow.couplings),
                    "first_call": after_first - before,
                    "after_first_call": _network_calls(model) - after_first,
                }
            self.results[impl]["train"][str(batch)] = entry

    def measure_inference(self, what: str) -> None:
        """``log_prob`` or ``sample`` at the inference batch size."""
        batch, pool = self.infer_batch, self.pool
        call = {
            "log_prob": lambda model, k: model.log_prob(pool[:batch], batch_size=batch),
            "sample": lambda model, k: model.sample(batch, seed=k),
        }[what]
        self.memory.reset()
        runners, firsts = {}, {}
        for impl, model in self.models.items():
            counter = iter(range(1, 10**9))

            def run(n, model=model, counter=counter):
                for _ in range(n):
                    call(model, next(counter))

            self.log(f"{impl}: {what}, batch {batch}: first call")
            firsts[impl] = _first_call(lambda model=model: call(model, 0))
            runners[impl] = run
        stats = timed_interleaved(runners, images_per_call=batch, log=self.log, **self.timing)
        peak = self.memory.read()
        for impl in self.impls:
            self.results[impl][what] = {**stats[impl], "first_call_s": firsts[impl], "peak_memory_bytes": peak}

    def finish(self) -> None:
        """Records the final peak memory, load average and time."""
        for impl in self.impls:
            self.results[impl]["peak_memory_bytes"] = self.memory.read()
            self.results[impl]["load_average_end"] = _load_average()
            self.results[impl]["finished"] = utc_now()


def run_worker(args, impls) -> dict:
    """Measures ``impls`` in this process (see ``Worker``) and returns their results."""
    worker = Worker(args, impls)
    worker.build()
    worker.save()
    if "train" in args.measure:
        for batch in args.batch_sizes:
            worker.measure_train(batch)
            worker.save()
    for what in ("log_prob", "sample"):
        if what in args.measure:
            worker.measure_inference(what)
            worker.save()
    worker.finish()
    worker.save()
    return worker.results
