"""``RealNVP``'s generative side: samples at a temperature and latent-space interpolation."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfp_realnvp.internal.arguments import check_int, check_number
from tfp_realnvp.internal.backend import stateless_normal

# Seeds drawn for ``sample(seed=None)`` and the stateless seeds made from user seeds
# lie in [0, 2**31 - 1): int32 values on every backend.
_SEED_MODULUS = 2**31 - 1


class SamplingMixin:
    """``RealNVP`` methods that draw and walk the latent space.

    The model provides ``image_shape``, ``prior``, ``context``, ``check_labels``,
    ``encode``, ``decode``, ``decode_tensor`` and ``_compiled_fn``.
    """

    def _latent(self, num_samples, seed, temperature, labels=None):
        """``T z`` with ``z ~ N(0, I)``; with a class prior ``mu(y) + T sigma(y) z``."""
        eps = stateless_normal((num_samples,) + self.image_shape, seed) * temperature
        if labels is None or self.prior is None:
            return eps
        loc, scale = self.prior.loc_and_scale(self.context(labels))
        return ops.cast(loc, "float32") + ops.cast(scale, "float32") * eps

    def sample_tensor(self, num_samples, seed, temperature, labels=None):
        """``num_samples`` uint8 images from a stateless seed, on backend tensors (see ``sample``).

        Args:
            num_samples: a Python int (static in compiled functions).
            seed: int32 ``[2]`` stateless seed.
            temperature: float32 scalar standard deviation of the latent.
            labels: int32 ``[num_samples]`` for a conditional model, else ``None``.
        """
        return self.decode_tensor(self._latent(num_samples, seed, temperature, labels), labels)

    def sample(self, num_samples: int, *, labels=None, temperature: float = 1.0, seed: int | None = None) -> np.ndarray:
        """Draws uint8 images ``floor(g(T z))``, ``z ~ N(0, I)``, at temperature ``T``.

        A class-conditional model draws from ``p(x | y)``: ``x = g(mu(y) + T sigma(y) z; y)``
        with the learned per-class base (``mu = 0``, ``sigma = 1`` without one).

        Args:
            num_samples: number of images, >= 1.
            labels: for a class-conditional model, the class of every image: one int, or
                ``[num_samples]`` integers in ``[0, num_classes)``. ``None`` otherwise.
            temperature: standard deviation of the latent, > 0 (the paper samples at 1;
                lower values trade diversity for cleaner images).
            seed: integer seed; the same seed gives the same images. ``None`` draws one.

        Returns:
            uint8 ``[num_samples, H, W, C]``.

        Raises:
            ValueError: naming a bad ``num_samples``, ``temperature`` or ``labels``.
        """
        num_samples = check_int(num_samples, name="num_samples")
        temperature = check_number(temperature, name="temperature", low=0.0)
        labels = self.check_labels(labels, num_samples)
        if seed is None:
            seed = int(np.random.default_rng().integers(_SEED_MODULUS))
        seed_pair = np.asarray([int(seed) % _SEED_MODULUS, 0], dtype=np.int32)
        if labels is None:
            compiled = self._compiled_fn("sample", self.sample_tensor, static_argnums=(0,))
            out = compiled(num_samples, seed_pair, np.float32(temperature))
        else:
            compiled = self._compiled_fn("sample_labels", self.sample_tensor, static_argnums=(0,))
            out = compiled(num_samples, seed_pair, np.float32(temperature), labels)
        return keras.ops.convert_to_numpy(out)

    def interpolate(self, image_a, image_b, steps: int = 8, *, label=None) -> np.ndarray:
        """Images along ``z(phi) = cos(phi) z_a + sin(phi) z_b``, ``phi`` in ``[0, pi/2]``.

        The paper's latent-manifold walk: for near-orthogonal Gaussian latents the path
        keeps the norm of a typical latent, so every point decodes to a plausible image.
        The ends decode to (the dequantized) ``image_a`` and ``image_b``.

        Args:
            image_a: ``[H, W, C]`` image at ``phi = 0``.
            image_b: ``[H, W, C]`` image at ``phi = pi / 2``.
            steps: number of images on the path, >= 2.
            label: for a class-conditional model, the class (an int) under which both
                images are encoded and the path decoded.

        Returns:
            uint8 ``[steps, H, W, C]``.

        Raises:
            ValueError: naming a bad ``steps``, image shape or label.
        """
        steps = check_int(steps, name="steps", low=2)
        if self.conditional and label is not None and np.ndim(label) != 0:
            raise ValueError(f"label must be one integer class; received shape {list(np.shape(label))}.")
        pair = np.stack([np.asarray(image_a), np.asarray(image_b)])
        z_a, z_b = self.encode(pair, label)
        phi = np.linspace(0.0, np.pi / 2, steps, dtype=np.float32)[:, None, None, None]
        return self.decode(np.cos(phi) * z_a + np.sin(phi) * z_b, label)
