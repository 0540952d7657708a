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

This module is the command line; the training and its measurements are in
``batch_norm_training.py``, the runs and the report in ``batch_norm_experiment.py``, the
PNG in ``batch_norm_plot.py``.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.batch_norm_experiment import RUNS, format_table, run
from benchmarks.batch_norm_plot import plot_png
from benchmarks.common import positive_int
from tfp_realnvp.internal import atomic
from tfp_realnvp.training.steps import write_json


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
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=None, help="JSON output path.")
    parser.add_argument("--plot", default=None, help="PNG output path.")
    parser.add_argument("--steps", type=positive_int, default=700, help="optimizer steps per run (default: 700).")
    parser.add_argument("--eval-every", type=positive_int, default=50, help="steps between measurements (default: 50).")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, data order and noise (default: 0).")
    parser.add_argument("--data", default="shipped", help="'shipped' (default) or an IDX directory.")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="training batch (default: 64).")
    parser.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Adam learning rate (default: 3e-3, as the demo)."
    )
    parser.add_argument(
        "--steps-per-epoch", type=int, default=None, help="steps per epoch (default: one pass, train images // batch)."
    )
    parser.add_argument("--lag", type=float, default=0.5, help="batch_norm_lag of the lag run (default: 0.5).")
    parser.add_argument(
        "--reestimate-batches", type=positive_int, default=20, help="training batches of a re-estimation (default: 20)."
    )
    parser.add_argument(
        "--reestimate-batch-size", type=positive_int, default=256, help="images per re-estimation batch (default: 256)."
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
    """Runs the benchmark and writes ``--output`` and ``--plot``; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    result = run(args)
    if args.output:
        write_json(args.output, result)
    if args.plot:
        atomic.write_bytes(args.plot, plot_png(result))
    if args.verbose:
        print(format_table(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
