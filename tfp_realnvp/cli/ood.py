"""``ood``: how well a saved model's out-of-distribution scores tell its data from other sets.

For the test split of ``--data`` (in distribution) against each ``--ood`` set, every
method of ``--method`` (default: all of ``tfp_realnvp.OOD_METHODS``) is scored per
image, and the command reports AUROC, AUPR and the false-positive rate at 95% true
positives (out of distribution = positive), writes ``ood.json`` and one histogram PNG
per set and method (``hist_<set>_<method>.png``: blue in distribution, orange out) into
``--output-dir``, and prints a table.

An ``--ood`` set is any source ``--data`` takes (its ``all`` split) or the name of a
set made from the test images (``noise``, ``constant``, ``vflip``, ``inverted``, ``rot90``, ``letters``).
A model without OOD statistics, or with statistics of an earlier version that lack a
test a ``--method`` needs, gets them from the training split of ``--data``
(``RealNVP.fit_ood``); ``--save-model`` writes the model with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import keras
import numpy as np

from tfp_realnvp import data as data_lib
from tfp_realnvp.cli.flags import add_data_arguments
from tfp_realnvp.cli.parser import positive_int
from tfp_realnvp.internal import atomic
from tfp_realnvp.internal.visualize import save_png
from tfp_realnvp.model.files import load_realnvp, save_realnvp
from tfp_realnvp.model.ood import OOD_METHODS, outdated_methods
from tfp_realnvp.model.ood_features import COMPRESSORS
from tfp_realnvp.model.ood_histogram import histogram_image
from tfp_realnvp.model.ood_metrics import detection_metrics
from tfp_realnvp.model.ood_sets import SYNTHETIC_OOD_SETS, synthetic_ood_images
from tfp_realnvp.training.inputs import DataSource, check_source_available, load_split


def add_ood_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``ood``'s flags: the model, the data flags, the OOD sets, the methods, the outputs."""
    parser.add_argument("--model", required=True, help="path of a saved .keras model.")
    add_data_arguments(parser)
    parser.add_argument(
        "--ood",
        action="append",
        required=True,
        metavar="SET",
        help=f"an out-of-distribution set: a source as for --data (a .npz file, IDX directory, image folder, ...) or one of {', '.join(SYNTHETIC_OOD_SETS)} (made from the test images); repeat for several.",
    )
    parser.add_argument(
        "--method",
        action="append",
        choices=OOD_METHODS,
        default=None,
        help=f"a score to measure; repeat for several (default: all, {', '.join(OOD_METHODS)}; the first is the default of RealNVP.ood_scores).",
    )
    parser.add_argument(
        "--compressor",
        choices=COMPRESSORS,
        default="png",
        help="lossless coder of the complexity score (default: png).",
    )
    parser.add_argument(
        "--fit-images",
        type=positive_int,
        default=10000,
        help="training images fit_ood uses when the model has no OOD statistics (default: 10000).",
    )
    parser.add_argument(
        "--ood-images", type=positive_int, default=None, help="score at most N images of each set (default: all)."
    )
    parser.add_argument("--output-dir", default="ood_output", help="where ood.json and the histograms go.")
    parser.add_argument("--save-model", default=None, help="also write the model with its OOD statistics here.")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic sets.")


def _ood_set(spec: str, test_images: np.ndarray, seed: int) -> np.ndarray:
    if spec in SYNTHETIC_OOD_SETS:
        return synthetic_ood_images(spec, test_images, seed=seed)
    return data_lib.load_images(spec, split="all")


def _set_name(spec: str) -> str:
    name = os.path.splitext(os.path.basename(os.path.normpath(spec)))[0] or spec
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _statistics(model, source: DataSource, args, methods, log) -> dict | None:
    """Fits the OOD statistics on the training split when the model has none, or has
    statistics of an earlier version that lack a test one of ``methods`` needs."""
    outdated = outdated_methods(model.ood_statistics, methods)
    if model.ood_statistics is not None and not outdated:
        return None
    train_images = load_split(source, "train")
    why = "has no OOD statistics" if not outdated else f"has OOD statistics without the tests of {', '.join(outdated)}"
    log(f"the model {why}: fitting them on {min(len(train_images), args.fit_images)} training images")
    summary = model.fit_ood(train_images, max_images=args.fit_images, batch_size=args.batch_size)
    if args.save_model:
        save_realnvp(model, args.save_model)
        log(f"wrote {args.save_model} (the model with its OOD statistics)")
    return summary


def run_ood(args) -> dict:
    """Scores the test split of ``--data`` and every ``--ood`` set; returns the report."""
    started = time.time()
    source = DataSource.of(args)
    check_source_available(source)
    model = load_realnvp(args.model)
    if model.num_classes is not None:
        raise ValueError(
            f"--model {args.model!r} is class-conditional: its OOD scores need labels; score it with "
            "RealNVP.ood_scores(images, labels) in Python."
        )

    def log(message: str) -> None:
        print(f"[ood {time.time() - started:6.1f}s] {message}", flush=True)

    methods = tuple(dict.fromkeys(args.method or OOD_METHODS))
    fitted = _statistics(model, source, args, methods, log)
    test_images = load_split(source, "test")[: args.ood_images]
    log(f"scoring {len(test_images)} test images of --data {args.data!r}")
    table = {"in_distribution": model.ood_score_table(test_images, methods=methods, compressor=args.compressor)}
    results = {}
    for spec in args.ood:
        name = _set_name(spec)
        images = _ood_set(spec, test_images, args.seed)[: args.ood_images]
        log(f"scoring {len(images)} images of --ood {spec!r}")
        scores = model.ood_score_table(images, methods=methods, compressor=args.compressor)
        results[name] = {"source": spec, "num_images": len(images), "methods": {}}
        for method in methods:
            results[name]["methods"][method] = detection_metrics(table["in_distribution"][method], scores[method])
            path = os.path.join(args.output_dir, f"hist_{name}_{method}.png")
            with atomic.atomic_path(path) as temporary:
                save_png(histogram_image(table["in_distribution"][method], scores[method]), temporary)
    report = {
        "model": os.path.abspath(args.model),
        "data": args.data,
        "in_distribution_images": len(test_images),
        "methods": list(methods),
        "default_method": OOD_METHODS[0],
        "compressor": args.compressor,
        "fitted_statistics": fitted,
        "ood": results,
        "backend": keras.backend.backend(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "wall_seconds": round(time.time() - started, 1),
    }
    written = atomic.write_json(os.path.join(args.output_dir, "ood.json"), report)
    _print_table(results, methods)
    log(f"wrote {written} and the histograms")
    return report


def _print_table(results: dict, methods: tuple) -> None:
    print(f"{'set':<20} {'method':<16} {'AUROC':>7} {'AUPR':>7} {'FPR95':>7}")
    for name, result in results.items():
        for method in methods:
            row = result["methods"][method]
            print(f"{name:<20} {method:<16} {row['auroc']:7.4f} {row['aupr']:7.4f} {row['fpr_at_95_tpr']:7.4f}")
