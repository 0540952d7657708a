"""The batch typicality test of ``RealNVP`` (Nalisnick et al. 2019b): is a batch of
images, as a whole, out of distribution?"""

from __future__ import annotations

import numpy as np

from tfp_realnvp.internal.arguments import check_int, check_number


class TypicalityTestMixin:
    """``RealNVP.ood_test``; the model provides ``ood_features`` and the ``fit_ood``
    statistics (``_require_ood_statistics``)."""

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
