"""Command line: ``python -m tfp_realnvp {train,evaluate,sample,export,demo}``."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import keras
import numpy as np

from tfp_realnvp import data as data_lib
from tfp_realnvp.baselines import independent_pixel_bits_per_dim
from tfp_realnvp.callbacks import SampleGrid
from tfp_realnvp.model import RealNVP
from tfp_realnvp.training import StopAfterSteps, TimeBudget, as_fit_input, recalibrate_batch_norm, write_json
from tfp_realnvp.visualize import save_grid


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    return value


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="shipped", help="'shipped' (Fashion-MNIST inside the package), a .npz file, an IDX directory, an image folder, or a tfds name such as cifar10 or celeb_a (default: shipped).")
    parser.add_argument("--pad-to", type=_positive_int, default=None, help="zero-pad images to this side (e.g. 32 for 28x28 data with 3 scales).")
    parser.add_argument("--image-size", type=_positive_int, default=None, help="center-crop and resize local images to this side.")
    parser.add_argument("--batch-size", type=_positive_int, default=64, help="images per batch (default: 64, as in the paper).")
    parser.add_argument("--data-dir", default=None, help="tfds data directory (tfds names only).")
    parser.add_argument("--max-images", type=_positive_int, default=None, help="use at most N images of each split held in memory (tfds sources: N images of the evaluation split; default 10000 there).")
    parser.add_argument("--test-split", default="test", help="split for the final bits/dim report (default: test; tfds also accepts e.g. validation).")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-scales", type=_positive_int, default=2, help="scales of the multi-scale flow (default: 2).")
    parser.add_argument("--num-filters", type=_positive_int, default=64, help="conditioner width at the first scale; doubles per scale (default: 64).")
    parser.add_argument("--num-blocks", type=int, default=8, help="residual blocks per conditioner (default: 8).")
    parser.add_argument("--no-batch-norm", action="store_true", help="leave out the batch-normalization steps between couplings.")


def _is_tfds(args) -> bool:
    return data_lib._tfds_key(str(args.data)) is not None and not os.path.exists(str(args.data))


def _load(args, split: str) -> np.ndarray:
    """Local images as a uint8 array, or a tfds split materialised up to ``--max-images``."""
    if _is_tfds(args):
        dataset = data_lib.get_dataset(args.data, split=split, image_size=args.image_size, pad_to=args.pad_to, data_dir=args.data_dir)
        return np.stack(list(dataset.take(args.max_images or 10000).as_numpy_iterator()))
    images = data_lib.load_images(args.data, split=split, pad_to=args.pad_to, image_size=args.image_size)
    return images[: args.max_images] if args.max_images else images


def _report(model: RealNVP, test: np.ndarray, batch_size: int) -> float:
    return float(np.mean(model.bits_per_dim(test, batch_size=batch_size)))


def _train_input(args, train_images):
    """``(x, fit_kwargs)``: a streamed tfds pipeline or the in-memory images."""
    if _is_tfds(args):
        dataset = data_lib.get_dataset(args.data, split="train", image_size=args.image_size, pad_to=args.pad_to, data_dir=args.data_dir, shuffle_files=True)
        return data_lib.make_dataset(dataset, batch_size=args.batch_size, seed=args.seed, flip=args.flip, repeat=True), {"shuffle": False}
    return as_fit_input(train_images, batch_size=args.batch_size, shuffle=True, seed=args.seed, flip=args.flip)


def train(args) -> dict:
    """Trains a RealNVP and writes the model, sample grids and ``report.json``."""
    keras.utils.set_random_seed(args.seed)
    if args.precision != "float32":
        keras.mixed_precision.set_global_policy(args.precision)
    train_images, test_images = _load(args, "train"), _load(args, args.test_split)
    model = RealNVP(
        train_images.shape[1:],
        num_scales=args.num_scales,
        num_filters=args.num_filters,
        num_blocks=args.num_blocks,
        batch_norm=not args.no_batch_norm,
        batch_norm_momentum=args.batch_norm_momentum,
        seed=args.seed,
    )
    model.compile(learning_rate=args.learning_rate, jit_compile=args.jit_compile)
    os.makedirs(args.output_dir, exist_ok=True)
    x, fit_kwargs = _train_input(args, train_images)
    callbacks = [SampleGrid(args.output_dir, num_samples=64, temperature=args.temperature, seed=args.seed, log_dir=args.tensorboard)]
    if args.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(args.tensorboard))
    budget = TimeBudget(args.time_budget) if args.time_budget else None
    if budget:
        callbacks.append(budget)
    epochs, steps_per_epoch = args.epochs, args.steps_per_epoch
    if args.steps:
        batches = math.inf if _is_tfds(args) else math.ceil(len(train_images) / args.batch_size)
        steps_per_epoch = int(min(args.steps, batches, 1000))
        epochs = math.ceil(args.steps / steps_per_epoch)
        callbacks.append(StopAfterSteps(args.steps))
        if not _is_tfds(args) and "batch_size" not in fit_kwargs:
            x = x.repeat()
    elif _is_tfds(args) and steps_per_epoch is None:
        raise ValueError(f"a tfds source streams without end: pass --steps or --steps-per-epoch; received --data {args.data!r}.")
    started = time.perf_counter()
    history = model.fit(x, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=args.verbose, **fit_kwargs)
    train_seconds = time.perf_counter() - started
    if args.recalibrate_batch_norm:
        recalibrate_batch_norm(model, train_images, seed=args.seed)
    model_path = os.path.join(args.output_dir, "model.keras")
    model.save(model_path)
    test_bpd = _report(model, test_images, batch_size=256)
    report = {
        "data": str(args.data),
        "image_shape": list(model.image_shape),
        "train_images": int(len(train_images)),
        "test_images": int(len(test_images)),
        "steps": int(model.optimizer.iterations),
        "train_seconds": round(train_seconds, 1),
        "stopped_by_time_budget": bool(budget and budget.stopped_early),
        "final_train_bits_per_dim": float(history.history["bits_per_dim"][-1]),
        "test_bits_per_dim": test_bpd,
        "independent_pixel_test_bits_per_dim": independent_pixel_bits_per_dim(train_images, test_images),
        "model": model_path,
        "config": model.get_config(),
    }
    write_json(os.path.join(args.output_dir, "report.json"), report)
    print(f"test bits/dim: {test_bpd:.4f}  (independent-pixel baseline: {report['independent_pixel_test_bits_per_dim']:.4f}; {report['steps']} steps in {train_seconds:.0f} s)")
    return {"model": model, "report": report, "test_images": test_images}


def evaluate(args) -> float:
    """Prints the mean bits/dim of a saved model on a split."""
    model = keras.models.load_model(args.model)
    images = _load(args, args.split)
    bpd = _report(model, images, batch_size=args.batch_size)
    print(f"{args.split} bits/dim: {bpd:.4f} ({len(images)} images)")
    return bpd


def sample(args) -> str:
    """Writes a PNG grid of samples from a saved model."""
    model = keras.models.load_model(args.model)
    images = model.sample(args.num_samples, temperature=args.temperature, seed=args.seed)
    path = save_grid(images, args.output, scale=args.scale)
    print(f"wrote {args.num_samples} samples to {path}")
    return path


def demo(args) -> dict:
    """Trains a small Real NVP on the shipped data and writes samples, an interpolation
    strip and a SavedModel."""
    args.data, args.pad_to, args.image_size = "shipped", None, None
    result = train(args)
    model, test_images = result["model"], result["test_images"]
    samples = os.path.join(args.output_dir, "samples.png")
    save_grid(model.sample(64, temperature=args.temperature, seed=args.seed), samples)
    rows = [model.interpolate(test_images[2 * i], test_images[2 * i + 1], steps=10) for i in range(4)]
    strip = os.path.join(args.output_dir, "interpolation.png")
    save_grid(np.concatenate(rows), strip, columns=10)
    from tfp_realnvp.export import export_saved_model

    exported = export_saved_model(model, os.path.join(args.output_dir, "saved_model"), version=1, overwrite=True, measured_bits_per_dim=result["report"]["test_bits_per_dim"])
    print(f"wrote {samples}, {strip} and the SavedModel {exported}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfp_realnvp", description="Real NVP normalizing flows: train, evaluate, sample and export.")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, fn, help_text in (("train", train, "train a Real NVP and report test bits/dim"), ("demo", demo, "train a small Real NVP on the shipped Fashion-MNIST images (a few minutes on CPU)")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "train":
            _add_data_arguments(p)
            _add_model_arguments(p)
        else:
            p.add_argument("--batch-size", type=_positive_int, default=64, help="images per batch (default: 64).")
            p.set_defaults(num_scales=2, num_filters=16, num_blocks=1, no_batch_norm=False, data_dir=None, max_images=None, test_split="test")
        p.add_argument("--epochs", type=_positive_int, default=100 if name == "demo" else 10, help="training epochs (the demo stops at its --time-budget first).")
        p.add_argument("--steps", type=_positive_int, default=None, help="total training steps (overrides --epochs).")
        p.add_argument("--steps-per-epoch", type=_positive_int, default=None, help="batches per epoch (default: one pass over the data).")
        p.add_argument("--time-budget", type=float, default=330.0 if name == "demo" else None, help="stop training after this many seconds (checked after every batch).")
        p.add_argument("--learning-rate", type=float, default=3e-3 if name == "demo" else 1e-3, help="Adam learning rate (default: 1e-3 as in the paper; the short demo uses 3e-3).")
        p.add_argument("--batch-norm-momentum", type=float, default=0.95 if name == "demo" else 0.99, help="decay of the batch-norm moving averages.")
        p.add_argument("--no-recalibrate-batch-norm", dest="recalibrate_batch_norm", action="store_false", help="keep the batch-norm moving averages from training instead of re-estimating them on training batches after fit.")
        p.add_argument("--flip", action="store_true", help="random horizontal flips (TensorFlow backend).")
        p.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"], default="float32", help="Keras dtype policy.")
        p.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto", help="XLA-compile the train step (auto: on where Keras deems it faster).")
        p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature of the sample grids.")
        p.add_argument("--seed", type=int, default=0, help="random seed (data order, noise, samples).")
        p.add_argument("--output-dir", default="realnvp_output" if name == "train" else "demo_output", help="where the model, samples and report.json go.")
        p.add_argument("--tensorboard", default=None, help="TensorBoard log directory (losses and sample images).")
        p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output: 1 = progress bar with bits/dim.")
        p.set_defaults(func=fn)

    p = sub.add_parser("evaluate", help="bits/dim of a saved model on a data split", description="Prints mean bits/dim of a saved .keras model.")
    p.add_argument("--model", required=True, help="path of a saved .keras model.")
    _add_data_arguments(p)
    p.add_argument("--split", default="test", choices=["train", "test", "all"], help="which split (default: test).")
    p.set_defaults(func=evaluate, batch_size=256)

    p = sub.add_parser("sample", help="write a PNG grid of samples", description="Writes a PNG grid of samples from a saved .keras model.")
    p.add_argument("--model", required=True, help="path of a saved .keras model.")
    p.add_argument("--num-samples", type=_positive_int, default=64, help="number of images (default: 64).")
    p.add_argument("--temperature", type=float, default=0.7, help="latent standard deviation (default: 0.7).")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0).")
    p.add_argument("--scale", type=_positive_int, default=2, help="enlarge the grid this many times (default: 2).")
    p.add_argument("--output", default="samples.png", help="PNG path (default: samples.png).")
    p.set_defaults(func=sample)

    if keras.backend.backend() == "tensorflow":  # SavedModel export needs TensorFlow
        from tfp_realnvp import export as export_lib

        p = sub.add_parser("export", help="export a saved model as a TF SavedModel for serving", description="Exports a .keras model as a TF SavedModel.")
        export_lib.add_export_arguments(p)
        p.set_defaults(func=export_lib.run_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "jit_compile", None) is not None:
        args.jit_compile = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
