"""The training side of ``batch_norm_modes.py``: batch-norm statistics read from and
written to a model, shadow moving averages kept by the package's rule, a probe model that
measures copied weights, and one training run with its measurements.

TensorFlow backend only (the callback reads the averages after every step).
"""

from __future__ import annotations

import math
import sys
import time

import keras
import numpy as np

from tfp_realnvp.model.dequantization import EVAL_NOISE_SEED, dequantization_noise
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.steps import StopAfterSteps

#: Counter value that turns the warm start off: ``k / (k + 1)`` is 1 in float32.
NO_WARM_START = 1e9

#: Test images per batch of the batch-mode measurement.
TEST_BATCH = 250


# Batch-norm statistics -----------------------------------------------------------------
def stat_groups(model) -> list[tuple]:
    """``(moving_mean, moving_variance, num_updates)`` of every batch norm of the model's
    flow (the flow's own steps and any conditioner batch norm), in a fixed order."""
    groups: dict[str, dict] = {}
    for variable in model.flow.non_trainable_variables:
        owner, _, leaf = variable.path.rpartition("/")
        groups.setdefault(owner, {})[leaf] = variable
    out = []
    for owner, members in groups.items():
        if set(members) != {"moving_mean", "moving_variance", "num_updates"}:
            raise ValueError(f"unexpected non-trainable variables under {owner!r}: {sorted(members)}.")
        out.append((members["moving_mean"], members["moving_variance"], members["num_updates"]))
    return out


def read_stats(groups) -> list[tuple[np.ndarray, np.ndarray]]:
    """The current ``(mean, variance)`` of every group, as float32 NumPy arrays."""
    return [
        (np.array(keras.ops.convert_to_numpy(m), np.float32), np.array(keras.ops.convert_to_numpy(v), np.float32))
        for m, v, _ in groups
    ]


def write_stats(groups, stats) -> None:
    for (m, v, _), (mean, var) in zip(groups, stats):
        m.assign(mean)
        v.assign(var)


class ShadowAverages:
    """Moving averages kept outside the model by ``BatchNormalization``'s rule.

    After ``k`` updates the decay is ``d = min(momentum, k / (k + 1))`` and every average
    moves as ``a <- d a + (1 - d) s`` (float32, as ``moving_stats.update_moving_moments``).
    The averages start at mean 0 and variance 1; ``warm_start=False`` starts ``k`` at 1e9.
    """

    def __init__(self, shapes, *, momentum: float, warm_start: bool = True):
        self.momentum = np.float32(momentum)
        self.k = np.float32(0.0 if warm_start else NO_WARM_START)
        self.stats = [(np.zeros(n, np.float32), np.ones(n, np.float32)) for n in shapes]

    def update(self, batch_stats) -> None:
        one = np.float32(1.0)
        decay = np.minimum(self.momentum, self.k / (self.k + one)).astype(np.float32)
        self.stats = [
            (decay * a_m + (one - decay) * s_m, decay * a_v + (one - decay) * s_v)
            for (a_m, a_v), (s_m, s_v) in zip(self.stats, batch_stats)
        ]
        self.k = np.float32(self.k + one)

    def reset(self, stats, *, updates: float = NO_WARM_START) -> None:
        """Replaces the averages (e.g. by a re-estimation); later updates decay by ``momentum``."""
        self.stats = [(np.array(m, np.float32), np.array(v, np.float32)) for m, v in stats]
        self.k = np.float32(updates)


class Probe:
    """A second model of the same architecture for measurements on copied weights.

    Built with momentum 0 and lag 0, so a training-mode call normalises every batch norm
    with the batch's statistics and leaves exactly those statistics in its averages.
    """

    def __init__(self, image_shape, model_kwargs: dict):
        import tensorflow as tf

        kwargs = dict(model_kwargs, batch_norm_momentum=0.0, batch_norm_lag=0.0)
        self.model = RealNVP(image_shape, **kwargs)
        self.groups = stat_groups(self.model)
        spec = tf.TensorSpec([None, *image_shape], tf.float32)
        self._batch_mode = tf.function(lambda x: self.model(x, training=True), input_signature=[spec], autograph=False)

    def load_weights_of(self, model) -> None:
        source, target = model.flow.trainable_variables, self.model.flow.trainable_variables
        if len(source) != len(target):
            raise ValueError(f"probe has {len(target)} trainable variables, the model {len(source)}.")
        for s, t in zip(source, target):
            t.assign(s)

    def batch_stats(self, x) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per-group batch statistics of ``x`` (float pixels) under the current weights."""
        self._batch_mode(x)
        return read_stats(self.groups)

    def reestimate(self, batches) -> list[tuple[np.ndarray, np.ndarray]]:
        """Mean of the batch statistics over ``batches`` (what warm-started averages with
        momentum >= (n - 1) / n hold after ``n`` batches)."""
        total = None
        for x in batches:
            stats = self.batch_stats(x)
            total = stats if total is None else [(a + m, b + v) for (a, b), (m, v) in zip(total, stats)]
        n = np.float32(len(batches))
        return [(a / n, b / n) for a, b in total]

    def inference_bpd(self, stats, images) -> float:
        """``bits_per_dim(images).mean()`` of the probe holding ``stats``."""
        write_stats(self.groups, stats)
        return float(np.mean(self.model.bits_per_dim(images)))

    def batch_mode_bpd(self, batches) -> float:
        """Mean bits/dim with every batch normalised by its own statistics."""
        values = [keras.ops.convert_to_numpy(self.model.to_bits_per_dim(self._batch_mode(x))) for x in batches]
        return float(np.mean(np.concatenate(values)))


def dequantize(images: np.ndarray, seed) -> np.ndarray:
    """``images + u`` as float32, ``u`` the per-image seeded noise of ``dequantization_noise``."""
    return (images.astype(np.float32) + keras.ops.convert_to_numpy(dequantization_noise(images, seed))).astype(
        np.float32
    )


def sample_batches(images: np.ndarray, order: np.ndarray, count: int, size: int, seed) -> list[np.ndarray]:
    """``count`` dequantized batches of ``size`` images, taken from ``images`` in ``order``."""
    picked = images[order[: count * size]]
    return [
        dequantize(picked[i * size : (i + 1) * size], seed)
        for i in range(count)
        if len(picked[i * size : (i + 1) * size])
    ]


# Training with measurements -------------------------------------------------------------
class _Measure(keras.callbacks.Callback):
    """Reads batch statistics after every step (shadow runs) and measures every ``every`` steps."""

    def __init__(self, run: Run):
        super().__init__()
        self.run = run
        self.step = 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.run.after_step(self.step)


class Run:
    """One training run and its measurements."""

    def __init__(self, name: str, *, args, train, test, model_kwargs: dict, candidates: list[dict], shadow: bool):
        self.name = name
        self.args = args
        self.train = train
        self.test = test
        self.model_kwargs = model_kwargs
        self.candidates = candidates
        self.shadow = shadow
        self.curves = {c["name"]: [] for c in candidates}
        self.steps: list[int] = []
        self.reference: list[float] = []
        self.batch_mode: list[float] = []
        self.eval_seconds = 0.0
        self.epoch_end_reestimations = 0

    def _log(self, text: str) -> None:
        if self.args.verbose:
            print(f"[{self.name}] {text}", file=sys.stderr, flush=True)

    def prepare(self) -> None:
        args = self.args
        keras.utils.set_random_seed(args.seed)
        self.model = RealNVP(self.train.shape[1:], **self.model_kwargs)
        self.model.compile(learning_rate=args.learning_rate)
        probe_kwargs = {
            k: v for k, v in self.model_kwargs.items() if k not in ("batch_norm_momentum", "batch_norm_lag")
        }
        self.probe = Probe(self.train.shape[1:], probe_kwargs)
        self.groups = stat_groups(self.model)
        shapes = [int(m.shape[0]) for m, _, _ in self.groups]
        self.shadows = (
            {
                c["name"]: ShadowAverages(shapes, momentum=c["momentum"], warm_start=c["warm_start"])
                for c in self.candidates
            }
            if self.shadow
            else {}
        )
        rng = np.random.default_rng([args.seed, 1])
        self.reference_batches = sample_batches(
            self.train,
            rng.permutation(len(self.train)),
            args.reestimate_batches,
            args.reestimate_batch_size,
            (args.seed, 11),
        )
        self._epoch_rng = np.random.default_rng([args.seed, 2])
        test_order = np.random.default_rng([args.seed, 3]).permutation(len(self.test))
        test_float = dequantize(self.test[test_order], EVAL_NOISE_SEED)
        self.test_batches = np.array_split(test_float, max(1, math.ceil(len(test_float) / TEST_BATCH)))

    def after_step(self, step: int) -> None:
        args = self.args
        if self.shadow:
            batch_stats = read_stats(self.groups)
            for shadow in self.shadows.values():
                shadow.update(batch_stats)
        epoch_end = step % args.steps_per_epoch == 0
        measure = step % args.eval_every == 0 or step == args.steps
        if not (measure or (epoch_end and any(c.get("epoch_end_reestimation") for c in self.candidates))):
            return
        started = time.perf_counter()
        self.probe.load_weights_of(self.model)
        if epoch_end:
            for c in self.candidates:
                if c.get("epoch_end_reestimation"):
                    order = self._epoch_rng.permutation(len(self.train))
                    batches = sample_batches(
                        self.train, order, args.reestimate_batches, args.reestimate_batch_size, (args.seed, 100 + step)
                    )
                    self.shadows[c["name"]].reset(self.probe.reestimate(batches))
                    self.epoch_end_reestimations += 1
        if measure:
            reference = self.probe.reestimate(self.reference_batches)
            self.steps.append(step)
            self.reference.append(self.probe.inference_bpd(reference, self.test))
            self.batch_mode.append(self.probe.batch_mode_bpd(self.test_batches))
            for c in self.candidates:
                if self.shadow:
                    value = self.probe.inference_bpd(self.shadows[c["name"]].stats, self.test)
                else:
                    value = float(np.mean(self.model.bits_per_dim(self.test)))
                self.curves[c["name"]].append(value)
            shown = " ".join(f"{c['name']}={self.curves[c['name']][-1]:.4f}" for c in self.candidates)
            self._log(f"step {step}: reference={self.reference[-1]:.4f} batch_mode={self.batch_mode[-1]:.4f} {shown}")
        self.eval_seconds += time.perf_counter() - started

    def fit(self) -> dict:
        from tfp_realnvp.data import make_dataset

        args = self.args
        started = time.perf_counter()
        self.prepare()
        setup = time.perf_counter() - started
        data = make_dataset(self.train, batch_size=args.batch_size, shuffle=True, seed=args.seed, repeat=True)
        epochs = math.ceil(args.steps / args.steps_per_epoch)
        fit_started = time.perf_counter()
        self.model.fit(
            data,
            epochs=epochs,
            steps_per_epoch=args.steps_per_epoch,
            callbacks=[_Measure(self), StopAfterSteps(args.steps)],
            verbose=0,
        )
        fit_seconds = time.perf_counter() - fit_started
        for c in self.candidates:
            if c.get("epoch_end_reestimation_by_fit") and self.steps and self.steps[-1] == args.steps:
                # The last step was measured before fit's epoch-end callbacks ran.
                self.curves[c["name"]][-1] = float(np.mean(self.model.bits_per_dim(self.test)))
        steps = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        updates = sorted({float(keras.ops.convert_to_numpy(k)) for _, _, k in self.groups})
        return {
            "model": dict(self.model.flow.config),
            "trained_model_batch_norm_momentum": self.model.flow.config["batch_norm_momentum"],
            "averages": "shadow copies fed with the batch statistics of every step"
            if self.shadow
            else "the model's own",
            "steps_trained": steps,
            "num_updates_after_training": updates,
            "eval_steps": self.steps,
            "reference_bits_per_dim": self.reference,
            "batch_mode_bits_per_dim": self.batch_mode,
            "epoch_end_reestimations": self.epoch_end_reestimations,
            "setup_seconds": round(setup, 1),
            "train_seconds": round(fit_seconds - self.eval_seconds, 1),
            "eval_seconds": round(self.eval_seconds, 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "seconds_per_step": round((fit_seconds - self.eval_seconds) / max(steps, 1), 4),
        }
