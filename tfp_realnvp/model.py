"""``RealNVP``: a Keras model that trains a ``MultiScaleFlow`` by maximum likelihood."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tfp_realnvp.backend import stateless_normal, stateless_uniform, tfd
from tfp_realnvp.bijectors.multiscale import MultiScaleFlow
from tfp_realnvp.compiled import CompiledFunction
from tfp_realnvp.validation import as_image_batch

#: Seed of the dequantization noise used when integer images are evaluated, so that
#: ``log_prob``/``bits_per_dim`` of the same images are reproducible.
EVAL_NOISE_SEED = (20170, 1605)


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class RealNVP(keras.Model):
    """Real NVP density model of ``[H, W, C]`` images with pixel values in ``[0, 256)``.

    ``call(images)`` returns ``log p(x)`` per image, in nats, of the density on the
    pixel cube ``[0, 256)^D``. Integer images (any integer dtype) are dequantized
    first, ``x + u`` with ``u ~ U[0, 1)^D``: fresh noise while training, a fixed seeded
    draw otherwise, so ``bits_per_dim = -log p(x + u) / (D ln 2)`` is the usual upper
    bound for the discrete data. Float images are taken as already continuous.

    ``compile()`` needs no loss: the loss is the mean negative log-likelihood in
    bits/dim plus ``l2_scale * sum(g**2)`` over the weight-norm scales ``g``
    (the paper's ``5e-5``). ``fit`` logs ``loss`` and ``bits_per_dim``; batch norm
    follows Keras' ``training`` flag.

    Args:
        image_shape: ``(H, W, C)``.
        num_scales: scales of the multi-scale architecture.
        num_filters: conditioner width at the first scale (doubles per scale).
        num_blocks: residual blocks per conditioner.
        batch_norm: batch-normalization steps between couplings.
        alpha: margin of the logit preprocessing.
        batch_norm_momentum: decay of the batch-norm moving averages.
        l2_scale: L2 coefficient on the weight-norm scales.
        seed: seed of the training dequantization noise.
        **kwargs: ``keras.Model`` arguments (``name``, ``dtype``).
    """

    def __init__(
        self,
        image_shape,
        *,
        num_scales: int = 2,
        num_filters: int = 64,
        num_blocks: int = 8,
        batch_norm: bool = True,
        alpha: float = 0.05,
        batch_norm_momentum: float = 0.99,
        l2_scale: float = 5e-5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if float(l2_scale) < 0:
            raise ValueError(f"l2_scale must be >= 0; received {l2_scale!r}.")
        flow = MultiScaleFlow(
            image_shape=image_shape,
            num_scales=num_scales,
            num_filters=num_filters,
            num_blocks=num_blocks,
            batch_norm=batch_norm,
            alpha=alpha,
            batch_norm_momentum=batch_norm_momentum,
            dtype=self.dtype_policy,
        )
        # The bijectors are not Keras objects: keep them out of Keras/TF attribute
        # tracking and track their layers instead.
        object.__setattr__(self, "_flow", flow)
        base = tfd.Sample(tfd.Normal(np.float32(0.0), np.float32(1.0)), list(flow.image_shape))
        object.__setattr__(self, "_distribution", tfd.TransformedDistribution(base, flow))
        self.flow_layers = list(flow.layers)
        self.image_shape = tuple(flow.image_shape)
        self.num_dims = int(np.prod(self.image_shape))
        self.l2_scale = float(l2_scale)
        self.seed = seed
        self._noise = keras.random.SeedGenerator(seed)
        self._bpd_tracker = keras.metrics.Mean(name="bits_per_dim")
        self._compiled = {}
        self.built = True

    # Keras plumbing -------------------------------------------------------------
    @property
    def flow(self) -> MultiScaleFlow:
        """The ``MultiScaleFlow`` bijector (``forward``: latent to pixels)."""
        return self._flow

    @property
    def distribution(self):
        """``tfd.TransformedDistribution`` of a standard normal through the flow."""
        return self._distribution

    def get_config(self):
        config = super().get_config()
        flow_config = self._flow.config
        config.update(
            image_shape=list(self.image_shape),
            num_scales=flow_config["num_scales"],
            num_filters=flow_config["num_filters"],
            num_blocks=flow_config["num_blocks"],
            batch_norm=flow_config["batch_norm"],
            alpha=flow_config["alpha"],
            batch_norm_momentum=flow_config["batch_norm_momentum"],
            l2_scale=self.l2_scale,
            seed=self.seed,
        )
        return config

    def build(self, input_shape=None):
        self.built = True

    def compile(self, optimizer=None, *, learning_rate: float = 1e-3, clipnorm: float | None = 1.0, **kwargs):
        """``keras.Model.compile`` with the paper's recipe as defaults.

        Args:
            optimizer: any Keras optimizer; default Adam(``learning_rate``) with global
                gradient-norm clipping at ``clipnorm``.
            learning_rate: used only for the default optimizer.
            clipnorm: global gradient-norm bound of the default optimizer (``None``: off).
            **kwargs: forwarded (``jit_compile``, ``steps_per_execution``, ...). A
                ``loss`` argument is rejected: the loss is the likelihood.
        """
        if "loss" in kwargs and kwargs["loss"] is not None:
            raise ValueError(f"RealNVP trains on its own likelihood; received loss={kwargs['loss']!r}.")
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate=learning_rate, global_clipnorm=clipnorm)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Re-compiles a loaded model with its saved optimizer (so training resumes)."""
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**{k: v for k, v in config.items() if k in ("optimizer", "jit_compile", "steps_per_execution")})
        if self.built and self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    # Likelihood -----------------------------------------------------------------
    def _pixels(self, images, *, training: bool):
        """Float32 pixels, dequantized when the input has an integer dtype."""
        dtype = keras.backend.standardize_dtype(images.dtype)
        x = ops.cast(images, "float32")
        if "int" not in dtype:
            return x
        if training:
            noise = keras.random.uniform(ops.shape(x), seed=self._noise, dtype="float32")
        else:
            noise = stateless_uniform(ops.shape(x), np.asarray(EVAL_NOISE_SEED, np.int32))
        return x + noise

    def call(self, images, training=False):
        """Returns ``log p(images)`` in nats, shape ``[batch]`` (see the class docstring)."""
        x = self._pixels(images, training=bool(training))
        with self._flow.training_mode(bool(training)):
            return ops.cast(self._distribution.log_prob(x), "float32")

    def to_bits_per_dim(self, log_prob):
        """``-log_prob / (D ln 2)``."""
        return -log_prob / (self.num_dims * math.log(2.0))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        nll = ops.mean(self.to_bits_per_dim(y_pred))
        if self.l2_scale:
            nll = nll + self.l2_scale * ops.sum(
                ops.stack([ops.sum(ops.square(ops.cast(g, "float32"))) for g in self._flow.weight_scales()])
            )
        if self.losses:
            nll = nll + ops.sum(ops.stack([ops.cast(l, "float32") for l in self.losses]))
        return nll

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self._bpd_tracker.update_state(self.to_bits_per_dim(y_pred))
        return self.get_metrics_result()

    @property
    def metrics(self):
        return super().metrics + [self._bpd_tracker]

    # Inference API --------------------------------------------------------------
    def _compiled_fn(self, key, fn, **kwargs) -> CompiledFunction:
        if key not in self._compiled:
            self._compiled[key] = CompiledFunction(self, fn, **kwargs)
        return self._compiled[key]

    def _batched(self, key, fn, images, batch_size: int):
        images = as_image_batch(images, image_shape=self.image_shape)
        compiled = self._compiled_fn(key, fn)
        outs = [keras.ops.convert_to_numpy(compiled(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return np.concatenate(outs, axis=0)

    def log_prob(self, images, *, batch_size: int = 256) -> np.ndarray:
        """``log p(x)`` in nats per image (inference mode; integer images seeded-dequantized)."""
        return self._batched("log_prob", lambda x: self(x, training=False), images, batch_size)

    def bits_per_dim(self, images, *, batch_size: int = 256) -> np.ndarray:
        """Bits per dimension per image, ``-log p(x) / (D ln 2)``."""
        return self.to_bits_per_dim(self.log_prob(images, batch_size=batch_size))

    def _encode(self, images):
        x = self._pixels(images, training=False)
        with self._flow.training_mode(False):
            return self._flow.inverse(x)

    def _decode(self, z):
        with self._flow.training_mode(False):
            x = self._flow.forward(ops.cast(z, "float32"))
        return ops.cast(ops.clip(ops.floor(x), 0.0, 255.0), "uint8")

    def encode(self, images, *, batch_size: int = 256) -> np.ndarray:
        """Latent ``z = f(x)`` of shape ``[N, H, W, C]`` (the flow's ``inverse``)."""
        return self._batched("encode", self._encode, images, batch_size)

    def decode(self, z, *, batch_size: int = 256) -> np.ndarray:
        """uint8 images ``floor(g(z))`` clipped to ``[0, 255]`` (the flow's ``forward``)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 4 or tuple(z.shape[1:]) != self.image_shape:
            raise ValueError(f"z must have shape [N, {', '.join(map(str, self.image_shape))}]; received shape {list(z.shape)}.")
        compiled = self._compiled_fn("decode", self._decode)
        return np.concatenate([keras.ops.convert_to_numpy(compiled(z[i : i + batch_size])) for i in range(0, len(z), batch_size)])

    def _sample(self, num_samples, seed, temperature):
        z = stateless_normal((num_samples,) + self.image_shape, seed) * temperature
        return self._decode(z)

    def sample(self, num_samples: int, *, temperature: float = 1.0, seed: int | None = None) -> np.ndarray:
        """Draws uint8 images ``floor(g(T z))``, ``z ~ N(0, I)``, at temperature ``T``.

        Args:
            num_samples: number of images, >= 1.
            temperature: standard deviation of the latent, > 0 (the paper samples at 1;
                lower values trade diversity for cleaner images).
            seed: integer seed; the same seed gives the same images. ``None`` draws one.
        """
        if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer; received {num_samples!r}.")
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be positive; received {temperature!r}.")
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        seed_pair = np.asarray([int(seed) % (2**31 - 1), 0], dtype=np.int32)
        compiled = self._compiled_fn("sample", self._sample, static_argnums=(0,))
        out = compiled(int(num_samples), seed_pair, np.float32(temperature))
        return keras.ops.convert_to_numpy(out)

    def interpolate(self, image_a, image_b, steps: int = 8) -> np.ndarray:
        """Images along ``z(phi) = cos(phi) z_a + sin(phi) z_b``, ``phi`` in ``[0, pi/2]``.

        The paper's latent-manifold walk: for near-orthogonal Gaussian latents the path
        keeps the norm of a typical latent, so every point decodes to a plausible image.
        The ends decode to (the dequantized) ``image_a`` and ``image_b``.

        Returns:
            uint8 ``[steps, H, W, C]``.
        """
        if int(steps) < 2:
            raise ValueError(f"steps must be >= 2; received {steps!r}.")
        pair = np.stack([np.asarray(image_a), np.asarray(image_b)])
        z_a, z_b = self.encode(pair)
        phi = np.linspace(0.0, np.pi / 2, int(steps), dtype=np.float32)[:, None, None, None]
        return self.decode(np.cos(phi) * z_a + np.sin(phi) * z_b)
