"""The class-conditional side of ``RealNVP``: labels, contexts, ``p(x | y)`` and ``p(y | x)``."""

from __future__ import annotations

import numpy as np
from keras import ops

from tfp_realnvp.internal.backend import tfd
from tfp_realnvp.model import labels as labels_lib


class ConditionalMixin:
    """``RealNVP`` methods for a class-conditional model (``num_classes`` set).

    The model provides ``num_classes``, ``prior`` (a ``ConditionalNormal`` or ``None``),
    the flow and its distribution, and the likelihood and batching methods these
    methods build on (``_dequantize``, ``_pixels``, ``_log_prob_of``, ``_image_batch``, ``_batched``).
    """

    @property
    def conditional(self) -> bool:
        """Whether this is a class-conditional model (``num_classes`` set)."""
        return self.num_classes is not None

    def context(self, labels):
        """One-hot float32 ``[..., K]`` context of integer ``labels`` (the flow's ``conditional_input``)."""
        return ops.one_hot(ops.cast(labels, "int32"), self.num_classes, dtype="float32")

    def conditional_distribution(self, conditional_input):
        """``p(x | c)`` as a ``tfd.TransformedDistribution`` for a context ``c`` ``[N, K]``.

        Its base is ``ConditionalNormal.distribution(c)`` (or a standard normal), so
        pass the same context to the flow::

            c = model.context(labels)
            dist = model.conditional_distribution(c)
            dist.log_prob(x, bijector_kwargs={"conditional_input": c, "training": False})

        Raises:
            ValueError: for an unconditional model.
        """
        self._require_conditional("conditional_distribution")
        base = self.prior.distribution(conditional_input) if self.prior is not None else self._distribution.distribution
        return tfd.TransformedDistribution(base, self._flow)

    def _require_conditional(self, what: str) -> None:
        if not self.conditional:
            raise ValueError(f"{what} needs a class-conditional model (num_classes); this one has none.")

    def check_labels(self, labels, count: int, *, name: str = "labels") -> np.ndarray | None:
        """Checked int32 labels ``[count]`` for a conditional model, ``None`` for an unconditional one.

        A single integer label stands for every one of the ``count`` items.

        Raises:
            ValueError: when labels are missing for a conditional model, given to an
                unconditional one, or of the wrong count, dtype or range.
        """
        if not self.conditional:
            if labels is not None:
                raise ValueError(
                    f"this RealNVP is unconditional (num_classes=None) and takes no {name}; received {name} "
                    f"of shape {list(np.shape(labels))}."
                )
            return None
        if labels is None:
            raise ValueError(
                f"this RealNVP is class-conditional (num_classes={self.num_classes}) and needs {name}, one "
                f"integer in [0, {self.num_classes}) per image; received {name}=None."
            )
        arr = np.asarray(labels)
        if arr.ndim == 0:
            arr = np.full(count, arr)
        return labels_lib.check_labels(arr, num_classes=self.num_classes, count=count, name=name)

    def class_log_likelihoods_tensor(self, images):
        """``log p(x | k)`` ``[N, K]`` for every class ``k`` on backend tensors, in one pass
        over ``N * K`` images (``class_log_likelihoods`` is the checked NumPy version)."""
        k = self.num_classes
        x, log_q = self._dequantize(images, training=False)
        n = ops.shape(x)[0]
        repeated = ops.repeat(x, k, axis=0)
        labels = ops.tile(ops.arange(k, dtype="int32"), [n])
        log_p = self._log_prob_of(repeated, self.context(labels), training=False)
        if log_q is not None:
            # The variational bound of each class: the noise and q(u | x) do not depend on the label.
            log_p = log_p - ops.repeat(log_q, k, axis=0)
        return ops.reshape(log_p, (-1, k))

    def class_log_likelihoods(self, images, *, batch_size: int = 32) -> np.ndarray:
        """``log p(x | y = k)`` in nats for every image and class, float32 ``[N, K]``.

        Each image is dequantized once (the same seeded noise as ``log_prob``) and scored
        under every class, so ``class_log_likelihoods(x)[:, k] == log_prob(x, k)``.

        Args:
            images: as for ``log_prob``.
            batch_size: images per compiled call (each call runs the flow on
                ``batch_size * num_classes`` images).

        Raises:
            ValueError: for an unconditional model, or bad images or ``batch_size``.
        """
        self._require_conditional("class_log_likelihoods")
        images = self._image_batch(images)
        return self._batched("class_log_likelihoods", self.class_log_likelihoods_tensor, images, batch_size)

    def classify(self, images, *, prior=None, batch_size: int = 32) -> np.ndarray:
        """``p(y | x)`` for every image and class, by Bayes' rule on the flow's likelihoods.

        ``p(y = k | x) = p(x | k) p(k) / sum_j p(x | j) p(j)``, with ``log p(x | k)`` from
        ``class_log_likelihoods`` and the normaliser computed with logsumexp in float64.
        ``classify(x).argmax(axis=1)`` is the maximum-a-posteriori label.

        Args:
            images: ``[N, H, W, C]`` (or one ``[H, W, C]`` image) in ``[0, 256)``.
            prior: class probabilities ``p(y)``, ``[K]`` non-negative (normalised here);
                ``None`` for the uniform prior.
            batch_size: images per compiled call.

        Returns:
            float64 ``[N, K]``, each row summing to 1.

        Raises:
            ValueError: for an unconditional model, a bad prior (naming it), images or
                ``batch_size``.
        """
        self._require_conditional("classify")
        prior = labels_lib.check_prior(prior, num_classes=self.num_classes)
        return labels_lib.posterior(self.class_log_likelihoods(images, batch_size=batch_size), prior)
