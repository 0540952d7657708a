"""Inference-mode bits/dim right after ``fit`` for the batch-norm moving-average rules.

Real NVP's batch norm normalises with batch statistics while training and with moving
averages otherwise. If the averages lag the weights, inference-mode bits/dim (what
``model.bits_per_dim`` and every export report) are worse than what the trained weights
give. This benchmark trains ``RealNVP(image_shape=(28, 28, 1), num_scales=2,
num_filters=16, num_blocks=1)`` with Adam on the shipped Fashion-MNIST train split and,
every ``--eval-every`` steps, measures on the test split:

* **inference** bits/dim, ``model.bits_per_dim(test).mean()``, with the moving averages
  that each candidate rule would hold at that step;
* **reference** ("best re-estimation"): the same weights, every batch-norm average
  (flow and conditioner) replaced by the mean of the batch statistics of
  ``--reestimate-batches`` fixed training batches of ``--reestimate-batch-size`` images;
* **batch-mode** bits/dim: the same weights with the statistics of each test batch
  (training-mode normalisation, batches of 250 test images).

Candidates (``momentum`` is the decay of the averages; "warm start" is the counter rule
``d_k = min(momentum, k / (k + 1))`` after ``k`` updates; "no warm start" starts the
counter at 1e9, i.e. plain ``d = momentum`` from averages 0 and 1):

* run ``shared`` (lag 0, weight-norm conditioners): momentum 0.99 without warm start (the
  old default), 0.99, 0.95, 0.9 (the default) with warm start, and 0.9 with a
  re-estimation of the averages at every epoch end. Without lag, training normalises with
  batch statistics only, so the weights follow one trajectory whatever the momentum: the
  run trains once, its model built with momentum 0 so that after every step its averages
  hold exactly that step's batch statistics, which a callback reads and feeds to one
  shadow copy of the averages per candidate (same rule, float32).
* run ``lag``: momentum 0.9 with ``batch_norm_lag=0.5`` (the paper's appendix E), trained
  as such; inference numbers come from the model itself.
* run ``conditioner_batch_norm``: momentum 0.9 with ``conditioner_batch_norm=True``,
  trained as such, at the same step budget.
* run ``default``: ``RealNVP`` as shipped (conditioner batch norm, and ``fit``'s own
  re-estimation at every epoch end); its final point is measured after ``fit`` returns,
  as a user would.

Every run uses the same seed, data order (a shuffled, repeated ``tf.data`` pipeline) and
number of steps. Reference and batch-mode numbers come from a second model (the *probe*)
that receives copies of the trained weights, so training is never disturbed. TensorFlow
backend only (the callback reads the averages after every step).

    KERAS_BACKEND=tensorflow python -m benchmarks.batch_norm_modes \\
        --output benchmarks/results/cpu/batch_norm_modes.json \\
        --plot benchmarks/results/cpu/batch_norm_modes.png
    KERAS_BACKEND=tensorflow python -m benchmarks.batch_norm_modes --steps 700 --eval-every 50 \\
        --seed 0 --data shipped --runs shared,lag,conditioner_batch_norm --output bn.json --plot bn.png

The JSON holds every curve, per candidate the final inference and reference bits/dim,
their gap and the largest gap over the last half of the curve, the settings, the machine,
the library versions and the wall times.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time

import keras
import numpy as np

from benchmarks.common import machine_description, runtime_versions
from tfp_realnvp.data import load_images
from tfp_realnvp.internal import atomic
from tfp_realnvp.model.dequantization import EVAL_NOISE_SEED, dequantization_noise
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.steps import StopAfterSteps, write_json

#: Gap (bits/dim) between inference mode and the re-estimation that counts as "matching".
THRESHOLD = 0.02

#: Counter value that turns the warm start off: ``k / (k + 1)`` is 1 in float32.
NO_WARM_START = 1e9

RUNS = ("shared", "lag", "conditioner_batch_norm", "default")

#: Candidates tracked as shadow averages on the ``shared`` run.
SHADOW_CANDIDATES = (
    {
        "name": "momentum_0.99_no_warm_start",
        "label": "0.99, no warm start (old default)",
        "momentum": 0.99,
        "warm_start": False,
    },
    {"name": "momentum_0.99_warm_start", "label": "0.99, warm start", "momentum": 0.99, "warm_start": True},
    {"name": "momentum_0.95_warm_start", "label": "0.95, warm start", "momentum": 0.95, "warm_start": True},
    {"name": "momentum_0.9_warm_start", "label": "0.9, warm start (default)", "momentum": 0.9, "warm_start": True},
    {
        "name": "momentum_0.9_warm_start_epoch_end_reestimation",
        "label": "0.9, warm start + re-estimation at epoch end",
        "momentum": 0.9,
        "warm_start": True,
        "epoch_end_reestimation": True,
    },
)

TEST_BATCH = 250


# Environment ---------------------------------------------------------------------------
def _versions() -> dict:
    """The run's library versions, with TensorFlow, TensorFlow Probability and NumPy."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    return {
        **runtime_versions(),
        "tensorflow": tf.__version__,
        "tensorflow_probability": tfp.__version__,
        "numpy": np.__version__,
    }


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


def _batches(images: np.ndarray, order: np.ndarray, count: int, size: int, seed) -> list[np.ndarray]:
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
        self.reference_batches = _batches(
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
                    batches = _batches(
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


def summarize(
    candidate: dict, steps: list[int], inference: list[float], reference: list[float], total_steps: int
) -> dict:
    gaps = [a - b for a, b in zip(inference, reference)]
    last_half = [g for s, g in zip(steps, gaps) if s >= total_steps / 2]
    within_from = None
    for s, g in reversed(list(zip(steps, gaps))):
        if abs(g) > THRESHOLD:
            break
        within_from = s
    return dict(
        candidate,
        inference_bits_per_dim=inference,
        gap=gaps,
        final_inference_bits_per_dim=inference[-1],
        final_reference_bits_per_dim=reference[-1],
        final_gap=gaps[-1],
        max_gap_last_half=max(last_half, key=abs) if last_half else None,
        within_threshold_at_end=abs(gaps[-1]) <= THRESHOLD,
        within_threshold_over_last_half=bool(last_half) and all(abs(g) <= THRESHOLD for g in last_half),
        within_threshold_from_step=within_from,
    )


def run(args) -> dict:
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(
            f"batch_norm_modes.py needs the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()!r}."
        )
    started = time.perf_counter()
    train = load_images(args.data, split="train")
    test = load_images(args.data, split="test")
    if args.max_train:
        train = train[: args.max_train]
    if args.max_test:
        test = test[: args.max_test]
    if args.steps_per_epoch is None:
        args.steps_per_epoch = max(1, len(train) // args.batch_size)
    config = {"num_scales": args.num_scales, "num_filters": args.num_filters, "num_blocks": args.num_blocks}
    # Every run keeps the averages of its own rule: fit's epoch-end re-estimation is off,
    # and the candidate that re-estimates at epoch ends does so on its shadow copy.
    base = dict(config, seed=args.seed, refresh_batches=0, conditioner_batch_norm=False)
    plans = {
        "shared": (dict(base, batch_norm_momentum=0.0, batch_norm_lag=0.0), [dict(c) for c in SHADOW_CANDIDATES], True),
        "lag": (
            dict(base, batch_norm_momentum=0.9, batch_norm_lag=args.lag),
            [
                {
                    "name": f"momentum_0.9_warm_start_lag_{args.lag:g}",
                    "label": f"0.9, warm start, lag {args.lag:g}",
                    "momentum": 0.9,
                    "warm_start": True,
                    "lag": args.lag,
                }
            ],
            False,
        ),
        "conditioner_batch_norm": (
            dict(base, batch_norm_momentum=0.9, conditioner_batch_norm=True),
            [
                {
                    "name": "momentum_0.9_warm_start_conditioner_batch_norm",
                    "label": "0.9, warm start, conditioner batch norm",
                    "momentum": 0.9,
                    "warm_start": True,
                    "conditioner_batch_norm": True,
                }
            ],
            False,
        ),
        # RealNVP as shipped: conditioner batch norm and fit's epoch-end re-estimation on.
        "default": (
            dict(config, seed=args.seed),
            [
                {
                    "name": "defaults",
                    "label": "defaults: 0.9, conditioner batch norm, re-estimation by fit",
                    "momentum": 0.9,
                    "warm_start": True,
                    "conditioner_batch_norm": True,
                    "epoch_end_reestimation_by_fit": True,
                }
            ],
            False,
        ),
    }
    runs, candidates = {}, []
    for name in args.runs:
        model_kwargs, run_candidates, shadow = plans[name]
        for c in run_candidates:
            c.setdefault("lag", 0.0)
            c.setdefault("conditioner_batch_norm", False)
            c.setdefault("epoch_end_reestimation", False)
            c["run"] = name
        trainer = Run(
            name, args=args, train=train, test=test, model_kwargs=model_kwargs, candidates=run_candidates, shadow=shadow
        )
        runs[name] = trainer.fit()
        for c in run_candidates:
            candidates.append(summarize(c, trainer.steps, trainer.curves[c["name"]], trainer.reference, args.steps))
        del trainer
        keras.backend.clear_session()

    by_name = {c["name"]: c for c in candidates}
    comparison = None
    plain, with_bn = (
        by_name.get("momentum_0.9_warm_start"),
        by_name.get("momentum_0.9_warm_start_conditioner_batch_norm"),
    )
    if plain and with_bn:
        comparison = {
            "steps": args.steps,
            "weight_norm_only": {
                "final_inference_bits_per_dim": plain["final_inference_bits_per_dim"],
                "final_reference_bits_per_dim": plain["final_reference_bits_per_dim"],
                "train_seconds": runs["shared"]["train_seconds"],
                "seconds_per_step": runs["shared"]["seconds_per_step"],
            },
            "conditioner_batch_norm": {
                "final_inference_bits_per_dim": with_bn["final_inference_bits_per_dim"],
                "final_reference_bits_per_dim": with_bn["final_reference_bits_per_dim"],
                "train_seconds": runs["conditioner_batch_norm"]["train_seconds"],
                "seconds_per_step": runs["conditioner_batch_norm"]["seconds_per_step"],
            },
            "inference_difference": with_bn["final_inference_bits_per_dim"] - plain["final_inference_bits_per_dim"],
        }
    result = {
        "benchmark": "batch_norm_modes",
        "description": (
            "Inference-mode test bits/dim right after fit for moving-average rules of batch norm, against the same "
            "weights with re-estimated statistics (reference) and with per-batch statistics (batch mode)."
        ),
        "method": {
            "inference": "model.bits_per_dim(test).mean() with the candidate's moving averages",
            "reference": (
                f"every batch-norm average (flow and conditioner) set to the mean of the batch statistics of "
                f"{args.reestimate_batches} fixed training batches of {args.reestimate_batch_size} images, then inference-mode test bits/dim"
            ),
            "batch_mode": f"training-mode normalisation with the statistics of each test batch of {TEST_BATCH} images (same dequantization noise as inference)",
            "shared_run": (
                "without lag the weights do not depend on the momentum: trained once with momentum 0, whose averages hold each "
                "step's batch statistics after the step; every candidate's averages are shadow copies updated by the same rule"
            ),
            "epoch_end_reestimation": "at every epoch end the averages are replaced by a re-estimation on fresh random training batches",
            "gap": "inference minus reference bits/dim; matching means |gap| <= threshold",
            "threshold": THRESHOLD,
        },
        "settings": {
            "data": args.data,
            "train_images": int(len(train)),
            "test_images": int(len(test)),
            "image_shape": list(train.shape[1:]),
            "model": config,
            "optimizer": "Adam, global gradient-norm clipping 1.0 (RealNVP.compile default)",
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "steps_per_epoch": args.steps_per_epoch,
            "eval_every": args.eval_every,
            "seed": args.seed,
            "lag": args.lag,
            "reestimate_batches": args.reestimate_batches,
            "reestimate_batch_size": args.reestimate_batch_size,
            "runs": list(args.runs),
        },
        "runs": runs,
        "candidates": candidates,
        "conditioner_batch_norm_comparison": comparison,
        "matching_at_end": [c["name"] for c in candidates if c["within_threshold_at_end"]],
        "matching_over_last_half": [c["name"] for c in candidates if c["within_threshold_over_last_half"]],
        "machine": machine_description(),
        "versions": _versions(),
        "command": " ".join(["benchmarks/batch_norm_modes.py"] + list(args.argv)),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if args.output:
        write_json(args.output, result)
    if args.plot:
        atomic.write_bytes(args.plot, plot_png(result))
    if args.verbose:
        print(format_table(result), file=sys.stderr)
    return result


def format_table(result: dict) -> str:
    lines = ["candidate | final inference | final reference | gap | max |gap| last half"]
    for c in result["candidates"]:
        lines.append(
            f"{c['label']} | {c['final_inference_bits_per_dim']:.4f} | {c['final_reference_bits_per_dim']:.4f} | "
            f"{c['final_gap']:+.4f} | {c['max_gap_last_half']:+.4f}"
        )
    return "\n".join(lines)


# Plot (Pillow only) -----------------------------------------------------------------------
COLORS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    span = max(high - low, 1e-12)
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=10 * magnitude)
    start = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = start
    while value <= high + 1e-9 * span:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _dashed(draw, points, color, width, dash=8, gap=6):
    """Dashed polyline: alternating drawn and skipped pieces along the path."""
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        pos = 0.0
        while pos < length:
            piece = min(left, length - pos)
            if on:
                t0, t1 = pos / length, (pos + piece) / length
                draw.line(
                    [(x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0), (x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1)],
                    fill=color,
                    width=width,
                )
            pos += piece
            left -= piece
            if left <= 1e-9:
                on = not on
                left = dash if on else gap


class _Panel:
    """One axes box: data-to-pixel mapping, ticks, labels; lines drawn on a clipped layer."""

    def __init__(self, canvas, box, xlim, ylim, *, title, xlabel, ylabel):
        from PIL import Image, ImageDraw

        self.canvas, self.box, self.xlim, self.ylim = canvas, box, xlim, ylim
        left, top, right, bottom = box
        self.layer = Image.new("RGBA", (right - left, bottom - top), (255, 255, 255, 0))
        self.draw = ImageDraw.Draw(self.layer)
        draw = ImageDraw.Draw(canvas)
        small, medium = _font(13), _font(15)
        draw.rectangle(box, outline=(0, 0, 0), width=1)
        for x in _nice_ticks(*xlim):
            px = self._x(x) + left
            draw.line([(px, bottom), (px, bottom + 5)], fill=(0, 0, 0))
            draw.line([(px, top), (px, bottom)], fill=(235, 235, 235))
            draw.text((px, bottom + 8), f"{x:g}", fill=(0, 0, 0), font=small, anchor="mt")
        for y in _nice_ticks(*ylim):
            py = self._y(y) + top
            draw.line([(left - 5, py), (left, py)], fill=(0, 0, 0))
            draw.line([(left, py), (right, py)], fill=(235, 235, 235))
            draw.text((left - 8, py), f"{y:g}", fill=(0, 0, 0), font=small, anchor="rm")
        draw.rectangle(box, outline=(0, 0, 0), width=1)
        draw.text(((left + right) / 2, top - 10), title, fill=(0, 0, 0), font=medium, anchor="ms")
        draw.text(((left + right) / 2, bottom + 30), xlabel, fill=(0, 0, 0), font=medium, anchor="mt")
        label = Image.new("RGBA", (bottom - top, 22), (255, 255, 255, 0))
        ImageDraw.Draw(label).text(((bottom - top) / 2, 11), ylabel, fill=(0, 0, 0), font=medium, anchor="mm")
        label = label.rotate(90, expand=True)
        canvas.paste(label, (left - 75, top), label)

    def _x(self, x):
        lo, hi = self.xlim
        return (x - lo) / (hi - lo) * (self.box[2] - self.box[0])

    def _y(self, y):
        lo, hi = self.ylim
        return (hi - y) / (hi - lo) * (self.box[3] - self.box[1])

    def line(self, xs, ys, color, *, width=2, dashed=False, markers=True):
        points = [(self._x(x), self._y(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if len(points) >= 2:
            (
                _dashed(self.draw, points, color, width)
                if dashed
                else self.draw.line(points, fill=color, width=width, joint="curve")
            )
        if markers:
            for px, py in points:
                self.draw.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=color)

    def hline(self, y, color, *, dashed=True):
        self.line(list(self.xlim), [y, y], color, width=1, dashed=dashed, markers=False)

    def finish(self):
        self.canvas.paste(self.layer, self.box[:2], self.layer)
        from PIL import ImageDraw

        ImageDraw.Draw(self.canvas).rectangle(self.box, outline=(0, 0, 0), width=1)


def plot_png(result: dict) -> bytes:
    """Two panels: inference-mode test bits/dim per candidate with the re-estimation
    references (dashed), and the gap inference - reference with the threshold."""
    from PIL import Image, ImageDraw

    candidates = result["candidates"]
    runs = result["runs"]
    width, height = 1500, 720
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    xmax = max(result["settings"]["steps"], 1)
    xlim = (0, xmax)
    references = [v for r in runs.values() for v in r["reference_bits_per_dim"]]
    finals = [c["final_inference_bits_per_dim"] for c in candidates] + [
        r["reference_bits_per_dim"][-1] for r in runs.values()
    ]
    values = [v for c in candidates for v in c["inference_bits_per_dim"]] + references
    low = min(values)
    # The old default's early values are far above the rest: cap the axis (lines leave the box).
    high = min(max(values), max(max(finals) + 0.6, low + 0.3))
    pad = 0.05 * (high - low)
    left = _Panel(
        canvas,
        (100, 60, 720, 520),
        xlim,
        (low - pad, high + pad),
        title="Inference-mode test bits/dim (dashed: re-estimated statistics)",
        xlabel="training steps",
        ylabel="bits/dim",
    )
    gaps = [g for c in candidates for g in c["gap"]]
    glow = min(-0.04, min(gaps) - 0.01)
    ghigh = min(max(gaps) + 0.02, 0.4)
    right = _Panel(
        canvas,
        (860, 60, 1480, 520),
        xlim,
        (glow, ghigh),
        title="Gap: inference - re-estimation (dotted: +/- 0.02)",
        xlabel="training steps",
        ylabel="bits/dim",
    )
    legend = []
    run_color = {}
    for i, c in enumerate(candidates):
        color = COLORS[i % len(COLORS)]
        run_color.setdefault(c["run"], color)
        steps = runs[c["run"]]["eval_steps"]
        left.line(steps, c["inference_bits_per_dim"], color)
        right.line(steps, c["gap"], color)
        legend.append(
            (color, f"{c['label']}: final {c['final_inference_bits_per_dim']:.3f}, gap {c['final_gap']:+.3f}", False)
        )
    for name, r in runs.items():
        color = (0, 0, 0) if name == "shared" else run_color.get(name, (0, 0, 0))
        left.line(r["eval_steps"], r["reference_bits_per_dim"], color, width=2, dashed=True, markers=False)
        text = {"shared": "re-estimation, weight-norm conditioners (run shared)"}.get(
            name, f"re-estimation, run {name}"
        )
        legend.append((color, f"{text}: final {r['reference_bits_per_dim'][-1]:.3f}", True))
    for y in (THRESHOLD, -THRESHOLD):
        right.hline(y, (90, 90, 90))
    right.hline(0.0, (0, 0, 0), dashed=False)
    left.finish()
    right.finish()
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    columns = 2
    for i, (color, text, dashed) in enumerate(legend):
        x = 100 + (i % columns) * 690
        y = 585 + (i // columns) * 24
        if dashed:
            _dashed(draw, [(x, y), (x + 36, y)], color, 3)
        else:
            draw.line([(x, y), (x + 36, y)], fill=color, width=3)
        draw.text((x + 46, y), text, fill=(0, 0, 0), font=font, anchor="lm")
    s = result["settings"]
    note = (
        f"RealNVP {s['model']['num_scales']} scales, {s['model']['num_filters']} filters, {s['model']['num_blocks']} block; "
        f"Adam {s['learning_rate']:g}, batch {s['batch_size']}, {s['train_images']} train / {s['test_images']} test images, seed {s['seed']}"
    )
    draw.text((width / 2, height - 14), note, fill=(80, 80, 80), font=_font(13), anchor="ms")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


# Command line -----------------------------------------------------------------------------
def _runs(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in RUNS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"runs must be a comma-separated subset of {','.join(RUNS)}; received {text!r}."
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=None, help="JSON output path.")
    parser.add_argument("--plot", default=None, help="PNG output path.")
    parser.add_argument("--steps", type=int, default=700, help="optimizer steps per run (default: 700).")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between measurements (default: 50).")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, data order and noise (default: 0).")
    parser.add_argument("--data", default="shipped", help="'shipped' (default) or an IDX directory.")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch (default: 64).")
    parser.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Adam learning rate (default: 3e-3, as the demo)."
    )
    parser.add_argument(
        "--steps-per-epoch", type=int, default=None, help="steps per epoch (default: one pass, train images // batch)."
    )
    parser.add_argument("--lag", type=float, default=0.5, help="batch_norm_lag of the lag run (default: 0.5).")
    parser.add_argument(
        "--reestimate-batches", type=int, default=20, help="training batches of a re-estimation (default: 20)."
    )
    parser.add_argument(
        "--reestimate-batch-size", type=int, default=256, help="images per re-estimation batch (default: 256)."
    )
    parser.add_argument(
        "--runs", type=_runs, default=list(RUNS), help=f"comma-separated runs (default: {','.join(RUNS)})."
    )
    parser.add_argument("--num-scales", type=int, default=2, help="model scales (default: 2).")
    parser.add_argument("--num-filters", type=int, default=16, help="conditioner width (default: 16).")
    parser.add_argument("--num-blocks", type=int, default=1, help="residual blocks (default: 1).")
    parser.add_argument("--max-train", type=int, default=None, help="use only the first N training images.")
    parser.add_argument("--max-test", type=int, default=None, help="use only the first N test images.")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1], help="progress lines on stderr (default: 1).")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    for key in ("steps", "eval_every", "batch_size", "reestimate_batches", "reestimate_batch_size"):
        if getattr(args, key) < 1:
            raise SystemExit(f"--{key.replace('_', '-')} must be >= 1; received {getattr(args, key)}.")
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
