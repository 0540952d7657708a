"""``RealNVP``'s out-of-distribution scores: how far images lie from the training data.

A likelihood model ranks images by ``log p(x)``, and that ranking fails as a novelty
detector: a flow trained on Fashion-MNIST gives MNIST digits *higher* likelihood than
its own test images (Nalisnick et al. 2019). The scores here (``OOD_METHODS``, higher =
more anomalous, one float per image, independent of the other images of the batch):

* ``"fisher"`` (the default): Fisher's combination of four tests of the image,
  ``-sum_k log p_k(x)``, ``p_k`` the tail probability of test ``k``'s score against the
  ``fit_ood`` images' own scores (``ood_features.calibrated_log_tail``: their smoothed
  empirical tail, exponential beyond its top 5%): the two of ``"dose_orientation"``
  and the two pixel tests of ``ood_pixels``, ``"coarse_density"`` (a Gaussian density
  of the image at about 7 x 7 pixels: its global layout) and ``"pixel_orientation_odds"``
  (upside down or not, from the pixels): the layout a likelihood of local statistics misses.
* ``"fisher_graph"``: the same combination of the tests that run in a graph (no lossless
  coder): ``"typicality"``, ``"orientation_odds"`` and the two pixel tests; the
  SavedModel's ``ood_score``.
* ``"dose_orientation"``: Fisher's combination of ``"dose_complexity"``'s squared
  Mahalanobis distance and ``"orientation_odds"``, tails as above (the distance's
  chi-square tail is not ``Exp(1)`` on held-out images: the tails are the fitted ones).
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
* ``"orientation_odds"``: the log-odds that the image is upside down, ``w . r(x) + b``,
  from the per-scale statistics of the image and of its two turned copies,
  ``r(x) = [s(x) - s(Vx), s(x) - s(Rx)]`` (``ood_features.orientation_rows``): a
  logistic regression that ``fit_ood`` fits to the training images (upright) and their
  vertical flips (upside down, whose turned copies are the image and its mirror ``Hx``).
  The posterior of ``"orientation"`` weighs every scale's log-likelihood alike; the fit
  learns which scales' differences carry the way up and which only add noise (the
  fine scales' local terms). Three flow evaluations per image (four per training image).
* ``"last_scale"``: the last scale's own share of ``-log p(x)``, in bits per latent
  dimension of that scale: ``log p(x)`` minus the terms of the finer scales and the
  logit step, a likelihood ratio of the whole flow against its local (fine-scale) part
  in the spirit of Schirrmeister et al. 2020; needs no second data set.
* ``"coarse_density"``, ``"pixel_orientation_odds"``: the pixel tests of ``ood_pixels``.

``fit_ood`` stores what the scores need; ``save``/``load_model``, the training
checkpoints (``.keras`` files) and ``save_weights`` carry it (``save_own_variables``),
and the SavedModel export adds an ``ood_score`` signature when it is present.
"""

from __future__ import annotations

import numpy as np

from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.model.ood_features import (
    GaussianFit,
    LogisticFit,
    calibrated_log_tail,
    check_compressor,
    compressed_bits_per_dim,
    orientation_rows,
    orientation_score,
    scale_statistics,
    statistic_names,
    upside_down,
)
from tfp_realnvp.model.ood_pixels import fit_pixel_tests, pixel_scores
from tfp_realnvp.model.ood_statistics import OodStatistics, read_statistics, write_statistics
from tfp_realnvp.model.ood_typicality import TypicalityTestMixin

#: The scores of ``RealNVP.ood_scores``; the first is the default (the best measured,
#: see the README's out-of-distribution table).
OOD_METHODS = (
    "fisher",
    "fisher_graph",
    "dose_orientation",
    "dose_complexity",
    "dose",
    "bits_per_dim",
    "complexity",
    "typicality",
    "last_scale",
    "orientation",
    "orientation_odds",
    "pixel_orientation_odds",
    "coarse_density",
)
#: The methods that need the statistics of ``fit_ood``: all but four.
FITTED_METHODS = tuple(m for m in OOD_METHODS if m not in ("bits_per_dim", "complexity", "last_scale", "orientation"))
#: The methods that need the pixel tests of ``fit_ood`` (``ood_pixels``).
PIXEL_METHODS = ("fisher", "fisher_graph", "pixel_orientation_odds", "coarse_density")
#: The lossless coders of ``"dose_complexity"``.
DOSE_COMPRESSORS = ("png", "lzma")
#: The methods computed in the graph (the SavedModel's ``ood_score`` signature): all
#: that need no lossless coder, ``"fisher_graph"`` first; the first that the
#: statistics allow is its ``ood_score``.
_CODER_METHODS = ("fisher", "dose_orientation", "dose_complexity", "complexity")
GRAPH_METHODS = ("fisher_graph", *(m for m in OOD_METHODS if m not in (*_CODER_METHODS, "fisher_graph")))
#: The methods that compare each image with its ``upside_down`` copies.
TURNING_METHODS = ("orientation", "orientation_odds", "dose_orientation", "fisher", "fisher_graph")


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


class OutOfDistributionMixin(TypicalityTestMixin):
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
        one fitted to their complexity scores, the logistic regression of
        ``"orientation_odds"`` (the images upright against their vertical flips), the
        pixel tests of ``ood_pixels``, and the images' scores under each test.

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
        flipped, turned = self._turned_features(images, labels, batch_size)
        mirrored = self.ood_features(np.ascontiguousarray(images[:, :, ::-1]), labels, batch_size=batch_size)
        # Upright: the image against its flip and half-turn. Upside down: the flip against
        # its own flip (the image) and its own half-turn (the image's mirror).
        upright = orientation_rows(features, (flipped, turned))
        upside_down_rows = orientation_rows(flipped, (features, mirrored))
        targets = np.r_[np.zeros(len(images)), np.ones(len(images))]
        orientation = LogisticFit.fit(np.concatenate([upright, upside_down_rows]), targets)
        rows = complexity_rows(images, features[:, 0])
        complexity = GaussianFit.fit(rows)
        statistics = OodStatistics(
            features[:, 0].astype(np.float32),
            GaussianFit.fit(features),
            complexity,
            orientation,
            orientation.log_odds(upright),
            _squared_distance(complexity, complexity.negative_log_density(rows)).astype(np.float32),
            fit_pixel_tests(images, seed=seed),
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
        """The score ``method`` from ``ood_features`` rows alone, on NumPy arrays or
        backend tensors: one of ``"bits_per_dim"``, ``"last_scale"``, ``"typicality"``
        and ``"dose"`` (the others need the images or their turned copies)."""
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
        raise ValueError(
            f"method must be one of ['bits_per_dim', 'last_scale', 'typicality', 'dose']; received {method!r}."
        )

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
        lacking = outdated_methods(self.ood_statistics, methods)
        if lacking:
            raise ValueError(
                f"method={lacking[0]!r} needs statistics of fit_ood that these ones "
                "(saved by an earlier version) lack: call model.fit_ood(train_images) again."
            )
        images = self._image_batch(images)
        features = self.ood_features(images, labels, batch_size=batch_size)
        table, density = {}, None
        if set(TURNING_METHODS) & set(methods):  # the flow on the turned images, once for all
            turned = self._turned_features(images, labels, batch_size)
            posterior = orientation_score(features[:, 0], [t[:, 0] for t in turned], _num_dims(images))
            table["orientation"] = np.asarray(posterior, dtype=np.float32)
            if self.ood_statistics is not None and self.ood_statistics.orientation is not None:
                table["orientation_odds"] = self.ood_statistics.orientation.log_odds(orientation_rows(features, turned))
        if {"dose_complexity", "dose_orientation", "fisher"} & set(methods):  # the coders run once for all
            rows = complexity_rows(images, features[:, 0])
            density = self.ood_statistics.complexity.negative_log_density(rows)
            table["dose_complexity"] = density
            if {"dose_orientation", "fisher"} & set(methods):
                table["dose_orientation"] = self._fisher(density, table["orientation_odds"])
        if set(PIXEL_METHODS) & set(methods):
            pixels = self.ood_statistics.pixels
            table["pixel_orientation_odds"], table["coarse_density"] = pixel_scores(pixels, images)
        if {"fisher", "fisher_graph"} & set(methods):  # the pixel tests' tails, once for both
            pixel_tails = self._pixel_tails(table)
            if "fisher" in methods:
                table["fisher"] = (table["dose_orientation"] + pixel_tails).astype(np.float32)
            if "fisher_graph" in methods:
                table["fisher_graph"] = np.asarray(self._graph_fisher(features, table, pixel_tails), np.float32)
        for method in methods:
            if method in table:
                continue  # computed above
            elif method == "complexity":
                code = compressed_bits_per_dim(images, compressor)
                table[method] = (features[:, 0] - code).astype(np.float32)
            else:
                table[method] = np.asarray(self.scores_from_features(features, method), dtype=np.float32)
        return {method: table[method] for method in methods}

    def _fisher(self, complexity_density, orientation) -> np.ndarray:
        """``"dose_orientation"`` from the ``"dose_complexity"`` and ``"orientation_odds"`` scores."""
        statistics = self.ood_statistics
        squared = _squared_distance(statistics.complexity, complexity_density)
        tails = calibrated_log_tail(statistics.train_complexity_distance, squared)
        tails += calibrated_log_tail(statistics.train_orientation_odds, orientation)
        return tails.astype(np.float32)

    def _pixel_tails(self, scores):
        """``-log P(s(x))`` of the two pixel tests added, each against the fitted images'
        out-of-fold scores (``calibrated_log_tail``); NumPy arrays or backend tensors."""
        pixels = self.ood_statistics.pixels
        tails = calibrated_log_tail(pixels.train_orientation, scores["pixel_orientation_odds"])
        return tails + calibrated_log_tail(pixels.train_coarse, scores["coarse_density"])

    def _graph_fisher(self, features, scores, pixel_tails):
        """``"fisher_graph"``: ``-sum_k log P_k(s_k(x))`` over the tests ``k`` of
        ``"typicality"``, ``"orientation_odds"``, ``"pixel_orientation_odds"`` and
        ``"coarse_density"``, ``P_k`` the calibrated tail of the ``fit_ood`` images' own
        scores (``calibrated_log_tail``). NumPy arrays or backend tensors: ``features``
        are ``ood_features`` rows, ``scores`` holds ``"orientation_odds"``, and
        ``pixel_tails`` is ``_pixel_tails`` of the last two tests."""
        statistics = self.ood_statistics
        train_bits = statistics.train_bits_per_dim.astype(np.float64)
        train_typicality = np.abs(train_bits - statistics.mean_bits_per_dim) / statistics.std_bits_per_dim
        tails = calibrated_log_tail(train_typicality, self.scores_from_features(features, "typicality"))
        return tails + calibrated_log_tail(statistics.train_orientation_odds, scores["orientation_odds"]) + pixel_tails

    def _turned_features(self, images, labels, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``ood_features`` of the ``upside_down`` versions of the images: flipped, half-turned."""
        images = self._image_batch(images)
        return tuple(
            self.ood_features(np.asarray(version), labels, batch_size=batch_size) for version in upside_down(images)
        )

    def ood_score_tensor(self, images, labels=None) -> dict:
        """Every score of ``GRAPH_METHODS`` on backend tensors (for exported graphs) that
        the statistics allow (those of earlier versions lack some tests); ``"ood_score"``
        is the first of them: ``"fisher_graph"``, the best one that needs no lossless
        coder (``"dose"`` for statistics without the orientation and pixel tests).
        Needs ``fit_ood``."""
        statistics = self._require_ood_statistics("ood_score_tensor")
        features = self._ood_statistics_tensor(images, labels)
        turned = [self._ood_statistics_tensor(version, labels) for version in upside_down(images)]
        scores = {}
        for method in GRAPH_METHODS[1:]:
            if method == "orientation":
                scores[method] = orientation_score(features[:, 0], [t[:, 0] for t in turned], _num_dims(images))
            elif method == "orientation_odds":
                if statistics.orientation is not None:
                    scores[method] = statistics.orientation.log_odds(orientation_rows(features, turned))
            elif method == "pixel_orientation_odds":  # the first of the two pixel tests
                if statistics.pixels is not None:
                    scores[method], scores["coarse_density"] = pixel_scores(statistics.pixels, images)
            elif method == "coarse_density":
                continue  # with the pixel orientation test
            else:
                scores[method] = self.scores_from_features(features, method)
        if statistics.orientation is not None and statistics.pixels is not None:
            scores = {"fisher_graph": self._graph_fisher(features, scores, self._pixel_tails(scores)), **scores}
        return {"ood_score": next(iter(scores.values())), **scores}

    # Saving ---------------------------------------------------------------------
    def save_own_variables(self, store):
        """Saves the ``fit_ood`` statistics (when present) beside the weights."""
        super().save_own_variables(store)
        write_statistics(store, self.ood_statistics)

    def load_own_variables(self, store):
        """Restores the statistics ``save_own_variables`` saved; files without them load too."""
        statistics, rest = read_statistics(store)
        if statistics is not None:
            self._set_ood_statistics(statistics)
        super().load_own_variables(rest)


def outdated_methods(statistics: OodStatistics | None, methods) -> list[str]:
    """The ``methods`` that need a test which ``statistics`` (saved by an earlier version
    of ``fit_ood``) lack; empty for ``None`` statistics (which lack everything alike).

    Args:
        statistics: ``RealNVP.ood_statistics``.
        methods: names of ``OOD_METHODS``.

    Returns:
        The methods, in the order given, that ``fit_ood`` must be run again for.
    """
    if statistics is None:
        return []
    return [
        method
        for method in methods
        # every turning method but the posterior, which needs no fit
        if (method in TURNING_METHODS and method != "orientation" and statistics.orientation is None)
        or (method in ("dose_orientation", "fisher") and statistics.train_complexity_distance is None)
        or (method in PIXEL_METHODS and statistics.pixels is None)
    ]


def _squared_distance(fit: GaussianFit, negative_log_density) -> np.ndarray:
    """The squared Mahalanobis distance behind ``fit``'s ``negative_log_density``, float64."""
    return 2.0 * (np.asarray(negative_log_density, dtype=np.float64) - fit.log_normalizer)


def _num_dims(images) -> int:
    """``D``, the dimensions of one image of a batch."""
    return int(np.prod(images.shape[1:]))
