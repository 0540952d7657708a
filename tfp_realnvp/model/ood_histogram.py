"""Histograms of two sets of out-of-distribution scores as an RGB image (NumPy only).

The in-distribution scores are drawn in blue, the out-of-distribution ones in orange,
over the same bins, each normalised to its own largest bin; where both cover a bin the
colours mix. A light axis marks the bottom; no text (the file name says what it shows).
"""

from __future__ import annotations

import numpy as np

_BLUE = np.array([31, 119, 180], dtype=np.float64)
_ORANGE = np.array([255, 127, 14], dtype=np.float64)


def histogram_image(
    in_scores, out_scores, *, bins: int = 60, height: int = 160, bar_width: int = 5, clip_quantile: float = 0.005
) -> np.ndarray:
    """Two overlaid histograms as a uint8 ``[height, bins * bar_width, 3]`` image.

    Args:
        in_scores: scores of the in-distribution images.
        out_scores: scores of the out-of-distribution images.
        bins: number of bins, spanning both sets between their ``clip_quantile`` and
            ``1 - clip_quantile`` quantiles (scores outside go to the end bins).
        height: image height in pixels.
        bar_width: pixels per bin.
        clip_quantile: quantile trimmed at each end, so that a few extreme scores do
            not squeeze the rest into one bin.
    """
    inside = np.asarray(in_scores, dtype=np.float64).reshape(-1)
    outside = np.asarray(out_scores, dtype=np.float64).reshape(-1)
    both = np.concatenate([inside, outside])
    both = both[np.isfinite(both)]
    low, high = np.quantile(both, [clip_quantile, 1 - clip_quantile]) if both.size else (0.0, 1.0)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    image = np.full((height, bins * bar_width, 3), 255.0)
    for scores, colour in ((inside, _BLUE), (outside, _ORANGE)):
        counts, _ = np.histogram(np.clip(scores[np.isfinite(scores)], low, high), bins=edges)
        tops = np.round(counts / max(counts.max(), 1) * (height - 2)).astype(int)
        for index, top in enumerate(tops):
            if top:
                column = slice(index * bar_width, (index + 1) * bar_width - 1)
                region = image[height - 1 - top : height - 1, column]
                blank = np.all(region == 255.0, axis=-1, keepdims=True)
                image[height - 1 - top : height - 1, column] = np.where(blank, colour, 0.5 * (region + colour))
    image[height - 1] = 128.0
    return image.astype(np.uint8)
