"""``RealNVP``'s out-of-distribution scores: how far images lie from the training data.

A likelihood model ranks images by ``log p(x)``, and that ranking fails as a novelty
detector: a flow trained on Fashion-MNIST gives MNIST digits *higher* likelihood than
its own test images (Nalisnick et al. 2019). The scores here (``OOD_METHODS``, higher =
more anomalous, one float per image, independent of the other images of the batch):

* ``"dose_orientation"`` (the default): Fisher's combination of two tests of the image,
  ``-log p_c(x) - log p_o(x)``: ``p_c`` the tail probability of ``"dose_complexity"``'s
  Mahalanobis distance (chi-square with 4 degrees of freedom under its Gaussian),
  ``p_o`` the fraction of the ``fit_ood`` images whose ``"orientation"`` score is at
  least the image's. The first flags images whose likelihood and code lengths do not
  fit together, the second images the flow finds likelier upside down.
* ``"dose_complexity"``: the DoSE density on the complexity scores of two
  lossless coders and their code lengths,
  ``-log N((bpd - L_png, bpd - L_lzma, log L_png, log L_lzma); mu, Sigma)`` (``L`` in bits
  per dimension) with ``N`` fitted to the training images by ``fit_ood``: two-sided,
  so it flags images that are too simple for their likelihood as well as too complex,
  and the two coders see different structure (PNG's row filters reward smooth images,
  LZMA repeated byte strings).
* ``"dose"``: the DoSE recipe (Morningstar et al. 2021) on the multi-scale flow's own
  statistics: ``-log N(s(x); mu, Sigma)`` for the per-image statistics ``s(x)`` of
  ``ood_features.statistic_names`` (bits/dim, the logit step's share, each scale's
  share of ``-log p(x)`` and its mean squared latent), ``N`` fitted to the training
  images by ``fit_ood``.
* ``"bits_per_dim"``: ``-log p(x) / (D ln 2)``, the raw likelihood baseline.
* ``"complexity"``: ``bits_per_dim(x) - L(x)`` with ``L(x)`` a lossless code length in
  bits per dimension (PNG by default; Serrà et al. 2020): a likelihood ratio against a
  general-purpose image coder.
* ``"typicality"``: ``|bits_per_dim(x) - m| / s`` for the mean ``m`` and standard
  deviation ``s`` of the training images' bits/dim (the per-image form of Nalisnick et
  al. 2019b's typicality test; ``ood_test`` is the batch test itself).
* ``"orientation"``: ``-log P(upright | x)``, the flow's own posterior that the image is
  the right way up against the two ways of turning it upside down, a vertical flip ``V``
  and a half-turn ``R``, each with prior ``1/3``:
  ``log(1 + p(Vx)/p(x) + p(Rx)/p(x))``. Every likelihood term of an image and its flips
  shares the local statistics that make likelihoods fail as novelty scores, so the ratio
  keeps what the flow learned about global layout; it flags upside-down images that every
  other score ranks as typical. Needs no ``fit_ood``; three flow evaluations per image.
* ``"last_scale"``: the last scale's own share of ``-log p(x)``, in bits per latent
  dimension of that scale: ``log p(x)`` minus the terms of the finer scales and the
  logit step, a likelihood ratio of the whole flow against its local (fine-scale) part
  in the spirit of Schirrmeister et al. 2020; needs no second data set.

``fit_ood`` stores what the scores need; ``save``/``load_model``, the training
checkpoints (``.keras`` files) and ``save_weights`` carry it (``save_own_variables``),
and the SavedModel export adds an ``ood_score`` signature when it is present.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tfp_realnvp.internal.arguments import check_int, check_number
from tfp_realnvp.model.ood_features import (
    GaussianFit,
    check_compressor,
    chi_square_log_tail,
    compressed_bits_per_dim,
    empirical_log_tail,
    orientation_score,
    scale_statistics,
    statistic_names,
    upside_down,
)

#: The scores of ``RealNVP.ood_scores``; the first is the default (the best measured,
#: see the README's out-of-distribution table).
OOD_METHODS = (
    "dose_orientation",
    "dose_complexity",
    "dose",
    "bits_per_dim",
    "complexity",
    "typicality",
    "last_scale",
    "orientation",
)
#: The methods that need the statistics of ``fit_ood``.
FITTED_METHODS = ("dose_orientation", "dose_complexity", "dose", "typicality")
#: The lossless coders of ``"dose_complexity"``.
DOSE_COMPRESSORS = ("png", "lzma")
#: The methods computed in the graph (the SavedModel's ``ood_score`` signature).
GRAPH_METHODS = ("dose", "bits_per_dim", "typicality", "last_scale", "orientation")

# Keys of the statistics in the model's saved variables (save_own_variables).
_STORE_KEYS = ("ood_train_bits_per_dim", "ood_mean", "ood_precision", "ood_log_normalizer")
_COMPLEXITY_KEYS = ("ood_complexity_mean", "ood_complexity_precision", "ood_complexity_log_normalizer")
# Added with "dose_orientation": files saved before it load without it.
_ORIENTATION_KEY = "ood_train_orientation"


def complexity_rows(images: np.ndarray, bits_per_dim: np.ndarray) -> np.ndarray:
    """``[N, 4]``: ``bits_per_dim - L(x)`` and ``log L(x)`` for each coder of
    ``DOSE_COMPRESSORS`` (``L`` in bits per dimension)."""
    codes = [compressed_bits_per_dim(images, compressor).astype(np.float64) for compressor in DOSE_COMPRESSORS]
    return np.stack([bits_per_dim - code for code in codes] + [np.log(code) for code in codes], axis=-1)


def check_method(method: str) -> str:
    """``method`` if it is one of ``OOD_METHODS``; else a ``ValueError`` naming it."""
    if method not in OOD_METHODS:
        raise ValueError(f"method must be one of {list(OOD_METHODS)}; received {method!r}.")
    return method


class OodStatistics(NamedTuple):
    """What ``fit_ood`` measured on the training images.

    Attributes:
        train_bits_per_dim: float32 ``[n]``, the bits/dim of the images fitted.
        gaussian: the ``GaussianFit`` of their ``scale_statistics``.
        complexity: the ``GaussianFit`` of their complexity scores (``complexity_rows``).
        train_orientation: float32 ``[n]``, their ``"orientation"`` scores (``None`` in
            statistics saved before ``"dose_orientation"`` existed).
    """

    train_bits_per_dim: np.ndarray
    gaussian: GaussianFit
    complexity: GaussianFit
    train_orientation: np.ndarray | None = None

    @property
    def mean_bits_per_dim(self) -> float:
        return float(np.mean(self.train_bits_per_dim))

    @property
    def std_bits_per_dim(self) -> float:
        return max(float(np.std(self.train_bits_per_dim)), 1e-6)


class OutOfDistributionMixin:
    """``RealNVP`` methods that score how far images lie from the training distribution.

    The model provides the flow, ``_image_batch``, ``_batched``, ``check_labels``,
    ``_pixels`` and ``context``.
    """

    @property
    def ood_statistics(self) -> OodStatistics | None:
        """The statistics ``fit_ood`` stored (``None`` before)."""
        return getattr(self, "_ood_statistics", None)

    def _set_ood_statistics(self, statistics: OodStatistics | None) -> None:
        # Kept outside Keras' attribute tracking: NumPy arrays, saved by save_own_variables.
        object.__setattr__(self, "_ood_statistics", statistics)

    def ood_statistic_names(self) -> tuple[str, ...]:
        """The names of the columns of ``ood_features``."""
        return statistic_names(self.flow.config["num_scales"])

    def ood_features(self, images, labels=None, *, batch_size: int = 256) -> np.ndarray:
        """Per-image statistics of the multi-scale flow, float32 ``[N, F]``, columns as
        ``ood_statistic_names`` (see ``tfp_realnvp.model.ood_features.scale_statistics``).

        Args:
            images: ``[N, H, W, C]`` (or one image) in ``[0, 256)``, as for ``log_prob``.
            labels: integer labels for a class-conditional model, else ``None``.
            batch_size: images per compiled call.
        """
        images = self._image_batch(images)
        labels = self.check_labels(labels, len(images))
        if labels is None:
            return self._batched("ood_features", lambda x: self._ood_statistics_tensor(x), images, batch_size)
        return self._batched(
            "ood_features_labels", lambda x, y: self._ood_statistics_tensor(x, y), (images, labels), batch_size
        )

    def _ood_statistics_tensor(self, images, labels=None):
        """``scale_statistics`` of images (integer ones dequantized as in ``log_prob``)."""
        pixels, log_q = self._dequantize(images, training=False)
        return scale_statistics(self, pixels, labels, log_q)

    def fit_ood(self, images, labels=None, *, max_images: int = 10000, batch_size: int = 256, seed: int = 0) -> dict:
        """Measures and stores what the ``FITTED_METHODS`` and ``ood_test`` need: the
        bits/dim of the training images, a Gaussian fitted to their ``ood_features``,
        one fitted to their complexity scores, and their ``"orientation"`` scores.

        Args:
            images: in-distribution images, ``[N, H, W, C]`` in ``[0, 256)``, ``N >= 2``:
                the training set (or a held-out split of it).
            labels: their labels, for a class-conditional model.
            max_images: at most this many images are used (a fixed random subset).
            batch_size: images per compiled call.
            seed: seed of the subset.

        Returns:
            A summary: ``num_images``, ``mean_bits_per_dim``, ``std_bits_per_dim``,
            ``statistics`` (the column names).

        Raises:
            ValueError: for fewer than 2 images or bad arguments, naming them.
        """
        max_images = check_int(max_images, name="max_images", low=2)
        images = self._image_batch(images)
        labels = self.check_labels(labels, len(images))
        if len(images) < 2:
            raise ValueError(f"fit_ood needs at least 2 images; received shape {list(images.shape)}.")
        if len(images) > max_images:
            keep = np.sort(np.random.default_rng(seed).choice(len(images), max_images, replace=False))
            images, labels = images[keep], None if labels is None else labels[keep]
        features = self.ood_features(images, labels, batch_size=batch_size)
        statistics = OodStatistics(
            features[:, 0].astype(np.float32),
            GaussianFit.fit(features),
            GaussianFit.fit(complexity_rows(images, features[:, 0])),
            self._orientation_scores(images, labels, features[:, 0], batch_size),
        )
        self._set_ood_statistics(statistics)
        return {
            "num_images": len(images),
            "mean_bits_per_dim": statistics.mean_bits_per_dim,
            "std_bits_per_dim": statistics.std_bits_per_dim,
            "statistics": list(self.ood_statistic_names()),
        }

    def _require_ood_statistics(self, what: str) -> OodStatistics:
        statistics = self.ood_statistics
        if statistics is None:
            raise ValueError(
                f"{what} needs the training statistics: call model.fit_ood(train_images) first "
                "(or use a method that needs none: bits_per_dim, complexity, last_scale)."
            )
        return statistics

    def scores_from_features(self, features, method: str):
        """The score ``method`` (one of ``GRAPH_METHODS``) from ``ood_features`` rows,
        on NumPy arrays or backend tensors."""
        if method == "bits_per_dim":
            return features[:, 0]
        if method == "last_scale":
            return features[:, -2]
        statistics = self._require_ood_statistics(f"method={method!r}")
        if method == "typicality":
            centred = features[:, 0] - np.float32(statistics.mean_bits_per_dim)
            return abs(centred) / np.float32(statistics.std_bits_per_dim)
        if method == "dose":
            return statistics.gaussian.negative_log_density(features)
        raise ValueError(f"method must be one of {list(GRAPH_METHODS)}; received {method!r}.")

    def ood_scores(
        self,
        images,
        labels=None,
        *,
        method: str = OOD_METHODS[0],
        compressor: str = "png",
        batch_size: int = 256,
    ) -> np.ndarray:
        """Out-of-distribution score per image, higher = more anomalous (see the module
        docstring for each ``method``). An image's score does not depend on the other
        images it is scored with.

        Args:
            images: ``[N, H, W, C]`` (or one image) in ``[0, 256)``, as for ``log_prob``.
            labels: integer labels for a class-conditional model (its scores use
                ``log p(x | y)``), else ``None``.
            method: one of ``OOD_METHODS``.
            compressor: the lossless coder of ``"complexity"``, one of
                ``ood_features.COMPRESSORS``.
            batch_size: images per compiled call.

        Returns:
            float32 ``[N]``.

        Raises:
            ValueError: for a bad argument, naming it, or a method that needs ``fit_ood``
                on a model without its statistics.
        """
        method = check_method(method)
        return self.ood_score_table(images, labels, methods=(method,), compressor=compressor, batch_size=batch_size)[
            method
        ]

    def ood_score_table(
        self, images, labels=None, *, methods=OOD_METHODS, compressor: str = "png", batch_size: int = 256
    ) -> dict[str, np.ndarray]:
        """``ood_scores`` of several ``methods`` from one pass of the flow: ``{method: [N]}``."""
        methods = tuple(check_method(method) for method in methods)
        check_compressor(compressor)
        for method in methods:
            if method in FITTED_METHODS:
                self._require_ood_statistics(f"method={method!r}")
        if "dose_orientation" in methods and self.ood_statistics.train_orientation is None:
            raise ValueError(
                "method='dose_orientation' needs the training images' orientation scores, which these "
                "statistics (saved by an earlier version) lack: call model.fit_ood(train_images) again."
            )
        features = self.ood_features(images, labels, batch_size=batch_size)
        table, orientation, density = {}, None, None
        if {"orientation", "dose_orientation"} & set(methods):
            orientation = self._orientation_scores(images, labels, features[:, 0], batch_size)
        if {"dose_complexity", "dose_orientation"} & set(methods):  # the coders run once for both
            rows = complexity_rows(self._image_batch(images), features[:, 0])
            density = self.ood_statistics.complexity.negative_log_density(rows)
        for method in methods:
            if method in ("dose_complexity", "dose_orientation"):
                table[method] = density if method == "dose_complexity" else self._fisher(density, orientation)
            elif method == "orientation":
                table[method] = orientation
            elif method == "complexity":
                code = compressed_bits_per_dim(self._image_batch(images), compressor)
                table[method] = (features[:, 0] - code).astype(np.float32)
            else:
                table[method] = np.asarray(self.scores_from_features(features, method), dtype=np.float32)
        return table

    def _fisher(self, complexity_density, orientation) -> np.ndarray:
        """``"dose_orientation"`` from the ``"dose_complexity"`` and ``"orientation"`` scores."""
        statistics = self.ood_statistics
        fit = statistics.complexity
        squared = 2.0 * (complexity_density.astype(np.float64) - fit.log_normalizer)
        tails = chi_square_log_tail(squared, len(fit.mean))
        tails += empirical_log_tail(statistics.train_orientation, orientation)
        return tails.astype(np.float32)

    def _orientation_scores(self, images, labels, bits, batch_size: int) -> np.ndarray:
        """``"orientation"`` (``ood_features.orientation_score``) from the bits/dim
        ``bits`` of the images as given and those of their ``upside_down`` versions."""
        images = self._image_batch(images)
        turned = [
            self.ood_features(np.asarray(version), labels, batch_size=batch_size)[:, 0]
            for version in upside_down(images)
        ]
        score = orientation_score(bits, turned, int(np.prod(images.shape[1:])))
        return np.asarray(score, dtype=np.float32)

    def ood_score_tensor(self, images, labels=None) -> dict:
        """Every score of ``GRAPH_METHODS`` on backend tensors (for exported graphs);
        ``"ood_score"`` is the first of them (``"dose"``), the best one that needs no
        lossless coder. Needs ``fit_ood``."""
        self._require_ood_statistics("ood_score_tensor")
        features = self._ood_statistics_tensor(images, labels)
        scores = {}
        for method in GRAPH_METHODS:
            if method == "orientation":  # the flow on the turned images too
                turned = [self._ood_statistics_tensor(version, labels)[:, 0] for version in upside_down(images)]
                scores[method] = orientation_score(features[:, 0], turned, int(np.prod(images.shape[1:])))
            else:
                scores[method] = self.scores_from_features(features, method)
        return {"ood_score": scores[GRAPH_METHODS[0]], **scores}

    def ood_test(
        self, images, labels=None, *, alpha: float = 0.01, num_bootstrap: int = 2000, seed: int = 0, batch_size=256
    ) -> dict:
        """The typicality test of a batch (Nalisnick et al. 2019b): is the batch as a
        whole out of distribution?

        The statistic is ``|mean(bits_per_dim(images)) - m|`` with ``m`` the mean bits/dim
        of the images given to ``fit_ood``. Its null distribution is bootstrapped:
        ``num_bootstrap`` batches of ``M = len(images)`` drawn with replacement from the
        fitted bits/dim; the threshold is its ``1 - alpha`` quantile and the p-value the
        fraction of bootstrap batches at least as far from ``m`` (with the usual +1 in
        numerator and denominator).

        Args:
            images: the batch, ``[M, H, W, C]`` in ``[0, 256)``.
            labels: labels for a class-conditional model.
            alpha: false-positive rate of the test, in ``(0, 1)``.
            num_bootstrap: bootstrap batches.
            seed: seed of the bootstrap.
            batch_size: images per compiled call.

        Returns:
            ``{"statistic", "threshold", "p_value", "out_of_distribution", "batch_size",
            "mean_bits_per_dim"}``.
        """
        alpha = check_number(alpha, name="alpha", low=0.0, high=1.0)
        if alpha >= 1.0 or alpha <= 0.0:
            raise ValueError(f"alpha must lie strictly between 0 and 1; received {alpha!r}.")
        num_bootstrap = check_int(num_bootstrap, name="num_bootstrap")
        statistics = self._require_ood_statistics("ood_test")
        bits = self.ood_features(images, labels, batch_size=batch_size)[:, 0]
        reference = statistics.mean_bits_per_dim
        statistic = abs(float(np.mean(bits)) - reference)
        rng = np.random.default_rng(seed)
        draws = rng.choice(statistics.train_bits_per_dim, size=(num_bootstrap, len(bits)), replace=True)
        null = np.abs(draws.astype(np.float64).mean(axis=1) - reference)
        threshold = float(np.quantile(null, 1.0 - alpha))
        return {
            "statistic": statistic,
            "threshold": threshold,
            "p_value": float((1 + np.sum(null >= statistic)) / (1 + num_bootstrap)),
            "out_of_distribution": bool(statistic > threshold),
            "batch_size": len(bits),
            "mean_bits_per_dim": float(np.mean(bits)),
        }

    # Saving ---------------------------------------------------------------------
    def save_own_variables(self, store):
        """Saves the ``fit_ood`` statistics (when present) beside the weights."""
        super().save_own_variables(store)
        statistics = self.ood_statistics
        if statistics is not None:
            gaussian, complexity = statistics.gaussian, statistics.complexity
            values = (statistics.train_bits_per_dim, gaussian.mean, gaussian.precision, [gaussian.log_normalizer])
            values += (complexity.mean, complexity.precision, [complexity.log_normalizer])
            for key, value in zip(_STORE_KEYS + _COMPLEXITY_KEYS, values):
                store[key] = np.asarray(value, dtype=np.float64 if key != _STORE_KEYS[0] else np.float32)
            if statistics.train_orientation is not None:
                store[_ORIENTATION_KEY] = np.asarray(statistics.train_orientation, dtype=np.float32)

    def load_own_variables(self, store):
        """Restores the statistics ``save_own_variables`` saved; files without them load too."""
        keys = list(store.keys())
        own = _STORE_KEYS + _COMPLEXITY_KEYS
        if all(key in keys for key in own):
            values = [np.asarray(store[key]) for key in own]
            gaussian = GaussianFit(values[1], values[2], float(np.reshape(values[3], [-1])[0]))
            complexity = GaussianFit(values[4], values[5], float(np.reshape(values[6], [-1])[0]))
            orientation = np.asarray(store[_ORIENTATION_KEY], np.float32) if _ORIENTATION_KEY in keys else None
            self._set_ood_statistics(OodStatistics(values[0].astype(np.float32), gaussian, complexity, orientation))
        own += (_ORIENTATION_KEY,)
        super().load_own_variables({key: store[key] for key in keys if key not in own})
