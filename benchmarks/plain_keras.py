"""Real NVP written directly in Keras 3, without TensorFlow Probability.

``PlainRealNVP`` computes the same log-likelihood as ``tfp_realnvp.RealNVP`` with the
same layers and weights, but as straight-line Keras code: no ``tfb.Bijector``, no
``tfb.Chain``, no bijector cache, no ``TransformedDistribution``. It is the baseline
against which the throughput harness measures the cost of the TFP machinery.

The computation, in the data-to-latent direction, for images ``x`` in ``[0, 256)``:

1. dequantize integer images (``x + u``, ``u ~ U[0, 1)``; outside training the
   package's seeded evaluation noise), then ``y = logit(alpha + (1 - 2 alpha) x / 256)`` with its log-det;
2. per scale: 3 checkerboard couplings, squeeze, 3 channel couplings, factor out
   half of the channels and recurse on the other half, un-squeeze; the last scale has
   4 checkerboard couplings; a batch-norm step follows every coupling;
3. ``log p(x) = log N(z; 0, I) + sum of the log-dets``.

The loss is the mean negative log-likelihood in bits/dim plus ``l2_scale`` times the
sum of squared weight-norm scales, as in the package.

The options are the package's: ``FLOW_KEYS`` are the flow options of ``RealNVP``
(``tfp_realnvp.model.realnvp.MODEL_FLOW_KEYS``) less the ones the baseline does not implement
(``UNSUPPORTED_FLOW_KEYS``), so ``PlainRealNVP.from_config`` builds the baseline of a
``RealNVP`` from that model's ``get_config()`` restricted to ``CONFIG_KEYS``. The
batch-norm weights are the package's own layer (``FlowBatchNormState``); only the
arithmetic of the flow is written out, its layers in ``plain_layers.py``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from benchmarks.plain_layers import BatchNorm, Coupling, squeeze, unsqueeze
from tfp_realnvp.internal.backend import stateless_normal
from tfp_realnvp.internal.compiled import CompiledFunction

# The package's evaluation noise (plain keras.ops code), so both see the same pixels.
from tfp_realnvp.model.dequantization import EVAL_NOISE_SEED, dequantization_noise
from tfp_realnvp.model.realnvp import MODEL_FLOW_KEYS

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

#: The flow options of ``tfp_realnvp.RealNVP`` that the baseline does not implement: its
#: batch norm has no lag (``batch_norm_lag=0``), its conditioners have no batch norm
#: (``conditioner_batch_norm=False``), its train step keeps every activation
#: (``recompute="none"``) and it takes no labels (so no ``context_channels``).
UNSUPPORTED_FLOW_KEYS = ("batch_norm_lag", "conditioner_batch_norm", "recompute", "context_channels")
#: The flow options it takes, with the names, meanings and defaults of ``RealNVP``'s:
#: ``tfp_realnvp.model.realnvp.MODEL_FLOW_KEYS`` less ``UNSUPPORTED_FLOW_KEYS``.
FLOW_KEYS = tuple(key for key in MODEL_FLOW_KEYS if key not in UNSUPPORTED_FLOW_KEYS)
#: Its other options shared with ``RealNVP`` (``RealNVP.get_config`` saves them too).
MODEL_KEYS = ("l2_scale", "seed")
#: Options of the baseline alone.
OWN_KEYS = ("inference_jit_compile",)
#: Every constructor option; ``get_config`` saves these (with ``KERAS_KEYS``).
CONFIG_KEYS = FLOW_KEYS + MODEL_KEYS + OWN_KEYS
#: What ``keras.Model.get_config`` saves for a subclassed model.
KERAS_KEYS = ("name", "trainable", "dtype")


class PlainRealNVP(keras.Model):
    """Real NVP density of ``[H, W, C]`` images on ``[0, 256)^D``, in plain Keras.

    ``call(images, training)`` returns ``log p(images)`` in nats. The constructor takes
    the options of ``tfp_realnvp.RealNVP`` named in ``FLOW_KEYS`` and ``MODEL_KEYS``, with
    its defaults, and the loss (``compile()`` needs none), the ``bits_per_dim`` metric,
    the default optimizer (Adam with global gradient-norm clipping) and the inference
    methods ``log_prob`` and ``sample`` mirror it too. ``from_config`` takes a
    ``RealNVP``'s ``get_config()`` restricted to ``CONFIG_KEYS`` and ``KERAS_KEYS``.

    Args:
        image_shape: ``(H, W, C)``; ``H`` and ``W`` divide by ``2**(num_scales - 1)``.
        num_scales: scales of the multi-scale architecture.
        num_filters: conditioner width at the first scale (doubles per scale).
        num_blocks: residual blocks per conditioner.
        batch_norm: a batch-normalization step after every coupling.
        alpha: margin of the logit preprocessing.
        batch_norm_momentum: decay of the batch-norm moving averages.
        l2_scale: L2 coefficient on the weight-norm scales.
        seed: seed of the training dequantization noise.
        inference_jit_compile: XLA-compile ``log_prob``/``sample`` on TensorFlow
            (JAX always compiles them).
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
        batch_norm_momentum: float = 0.9,
        l2_scale: float = 5e-5,
        seed: int | None = None,
        inference_jit_compile: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        h, w, c = (int(d) for d in image_shape)
        factor = 2 ** (num_scales - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"num_scales={num_scales} needs image sides divisible by {factor}; received image shape {[h, w, c]}."
            )
        # The options, under their names in CONFIG_KEYS (get_config reads them back).
        self.image_shape = (h, w, c)
        self.num_scales = int(num_scales)
        self.num_filters = int(num_filters)
        self.num_blocks = int(num_blocks)
        self.batch_norm = bool(batch_norm)
        self.alpha = float(alpha)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.l2_scale = float(l2_scale)
        self.seed = seed
        self.inference_jit_compile = bool(inference_jit_compile)
        self.num_dims = h * w * c
        self.couplings = []
        self.batch_norms = []
        # Per scale: (indices of the checkerboard units, indices of the channel units).
        self._plan = []
        shape = (h, w, c)
        for scale in range(self.num_scales):
            last = scale == self.num_scales - 1
            filters = num_filters * 2**scale
            checker = [
                self._add_unit(
                    "checkerboard",
                    i % 2,
                    shape,
                    filters,
                    num_blocks,
                    batch_norm,
                    batch_norm_momentum,
                    f"s{scale}_cb{i}",
                )
                for i in range(4 if last else 3)
            ]
            channel = []
            if not last:
                squeezed = (shape[0] // 2, shape[1] // 2, 4 * shape[2])
                channel = [
                    self._add_unit(
                        "channel",
                        i % 2,
                        squeezed,
                        2 * filters,
                        num_blocks,
                        batch_norm,
                        batch_norm_momentum,
                        f"s{scale}_ch{i}",
                    )
                    for i in range(3)
                ]
                shape = (squeezed[0], squeezed[1], squeezed[2] // 2)
            self._plan.append((tuple(checker), tuple(channel)))
        self._noise = keras.random.SeedGenerator(seed)
        self._bpd_tracker = keras.metrics.Mean(name="bits_per_dim")
        self._compiled = {}
        self.built = True

    def _add_unit(self, kind, parity, shape, filters, blocks, batch_norm, momentum, name) -> int:
        policy = self.dtype_policy
        self.couplings.append(
            Coupling(kind, parity, shape, num_filters=filters, num_blocks=blocks, dtype=policy, name=name)
        )
        if batch_norm:
            bn = BatchNorm(momentum=momentum, dtype=policy, name=f"{name}_bn")
            bn.build((None,) + tuple(shape))
            self.batch_norms.append(bn)
        return len(self.couplings) - 1

    def build(self, input_shape=None):
        self.built = True

    def get_config(self) -> dict:
        """``KERAS_KEYS`` and ``CONFIG_KEYS``: what ``from_config`` rebuilds the model from."""
        config = super().get_config()
        config.update({key: getattr(self, key) for key in CONFIG_KEYS})
        config["image_shape"] = list(self.image_shape)
        return config

    @classmethod
    def from_config(cls, config: dict):
        """The baseline of a configuration: this model's ``get_config()``, or a
        ``tfp_realnvp.RealNVP``'s restricted to ``CONFIG_KEYS`` and ``KERAS_KEYS``.

        Raises:
            ValueError: naming every key the baseline does not take (the options it
                does not implement, e.g. ``UNSUPPORTED_FLOW_KEYS`` or ``num_classes``).
        """
        accepted = CONFIG_KEYS + KERAS_KEYS
        unsupported = [key for key in config if key not in accepted]
        if unsupported:
            raise ValueError(
                f"PlainRealNVP does not implement {unsupported}; it takes {list(accepted)} "
                "(restrict a RealNVP configuration to these keys)."
            )
        return cls(**config)

    def compile(self, optimizer=None, *, learning_rate: float = 1e-3, clipnorm: float | None = 1.0, **kwargs):
        """``keras.Model.compile`` with the default optimizer of ``tfp_realnvp.RealNVP``."""
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate=learning_rate, global_clipnorm=clipnorm)
        super().compile(optimizer=optimizer, **kwargs)

    # Flow -----------------------------------------------------------------------
    def _unit_inverse(self, i, x, training):
        x, ldj = self.couplings[i].inverse(x)
        if self.batch_norms:
            x, d = self.batch_norms[i].inverse(x, training)
            ldj = ldj + d
        return x, ldj

    def _unit_forward(self, i, z):
        if self.batch_norms:
            z = self.batch_norms[i].forward(z)
        return self.couplings[i].forward(z)

    def _scale_inverse(self, scale, x, training):
        checker, channel = self._plan[scale]
        ldj = 0.0
        for i in checker:
            x, d = self._unit_inverse(i, x, training)
            ldj = ldj + d
        if not channel:
            return x, ldj
        x = squeeze(x)
        for i in channel:
            x, d = self._unit_inverse(i, x, training)
            ldj = ldj + d
        half = x.shape[-1] // 2
        rest, d = self._scale_inverse(scale + 1, x[..., half:], training)
        x = ops.concatenate([x[..., :half], rest], axis=-1)
        return unsqueeze(x), ldj + d

    def _scale_forward(self, scale, z):
        checker, channel = self._plan[scale]
        if channel:
            z = squeeze(z)
            half = z.shape[-1] // 2
            z = ops.concatenate([z[..., :half], self._scale_forward(scale + 1, z[..., half:])], axis=-1)
            for i in reversed(channel):
                z = self._unit_forward(i, z)
            z = unsqueeze(z)
        for i in reversed(checker):
            z = self._unit_forward(i, z)
        return z

    def encode_with_log_det(self, x, training: bool = False):
        """Pixels ``[N, H, W, C]`` in ``[0, 256)`` to ``(z, log|det dz/dx|)``."""
        a = self.alpha
        p = a + (1.0 - 2.0 * a) * x / 256.0
        y = ops.log(p) - ops.log1p(-p)
        ldj = ops.sum(math.log((1.0 - 2.0 * a) / 256.0) + ops.softplus(y) + ops.softplus(-y), axis=(1, 2, 3))
        z, d = self._scale_inverse(0, y, training)
        return z, ldj + d

    def decode_to_pixels(self, z):
        """Latent ``[N, H, W, C]`` to continuous pixels in ``[0, 256)``."""
        y = self._scale_forward(0, z)
        a = self.alpha
        return 256.0 * (ops.sigmoid(y) - a) / (1.0 - 2.0 * a)

    # Likelihood -----------------------------------------------------------------
    def _pixels(self, images, training: bool):
        dtype = keras.backend.standardize_dtype(images.dtype)
        x = ops.cast(images, "float32")
        if "int" not in dtype:
            return x
        if training:
            return x + keras.random.uniform(ops.shape(x), seed=self._noise, dtype="float32")
        return x + dequantization_noise(images, EVAL_NOISE_SEED)

    def call(self, images, training=False):
        """``log p(images)`` in nats, shape ``[batch]``."""
        x = self._pixels(images, bool(training))
        z, ldj = self.encode_with_log_det(x, bool(training))
        log_pz = -0.5 * ops.sum(ops.square(z), axis=(1, 2, 3)) - self.num_dims * _HALF_LOG_2PI
        return ops.cast(log_pz + ldj, "float32")

    def to_bits_per_dim(self, log_prob):
        """``-log_prob / (D ln 2)``."""
        return -log_prob / (self.num_dims * math.log(2.0))

    def weight_scales(self) -> list:
        """The weight-norm scales of every conditioner."""
        return [g for c in self.couplings for g in c.conditioner.weight_scales()]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = ops.mean(self.to_bits_per_dim(y_pred))
        if self.l2_scale:
            loss = loss + self.l2_scale * ops.sum(
                ops.stack([ops.sum(ops.square(ops.cast(g, "float32"))) for g in self.weight_scales()])
            )
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self._bpd_tracker.update_state(self.to_bits_per_dim(y_pred))
        return self.get_metrics_result()

    @property
    def metrics(self):
        return super().metrics + [self._bpd_tracker]

    # Inference ------------------------------------------------------------------
    def _compiled_fn(self, key, fn, **kwargs):
        if key not in self._compiled:
            self._compiled[key] = CompiledFunction(self, fn, jit_compile=self.inference_jit_compile, **kwargs)
        return self._compiled[key]

    def log_prob(self, images, *, batch_size: int = 256) -> np.ndarray:
        """``log p(x)`` in nats per image, inference mode."""
        images = np.asarray(images)
        fn = self._compiled_fn("log_prob", lambda x: self(x, training=False))
        outs = [ops.convert_to_numpy(fn(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return np.concatenate(outs, axis=0)

    def sample_tensor(self, num_samples, seed, temperature):
        z = stateless_normal((num_samples,) + self.image_shape, seed) * temperature
        x = self.decode_to_pixels(z)
        return ops.cast(ops.clip(ops.floor(x), 0.0, 255.0), "uint8")

    def sample(self, num_samples: int, *, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
        """uint8 images ``floor(g(T z))``, ``z ~ N(0, I)``, with the package's seeding."""
        seed_pair = np.asarray([int(seed) % (2**31 - 1), 0], dtype=np.int32)
        fn = self._compiled_fn("sample", self.sample_tensor, static_argnums=(0,))
        return ops.convert_to_numpy(fn(int(num_samples), seed_pair, np.float32(temperature)))

    # Weights --------------------------------------------------------------------
    def load_weights_from(self, model) -> None:
        """Copies every weight of a ``tfp_realnvp.RealNVP`` with the same configuration.

        Raises:
            ValueError: if the two models do not have the same structure.
        """
        flow = model.flow
        if len(flow.couplings) != len(self.couplings) or len(flow.batch_norms) != len(self.batch_norms):
            raise ValueError(
                f"structure mismatch: package has {len(flow.couplings)} couplings and "
                f"{len(flow.batch_norms)} batch norms; baseline has {len(self.couplings)} and {len(self.batch_norms)}."
            )
        pairs = []
        for theirs, ours in zip(flow.couplings, self.couplings):
            conditioner, scale = theirs.layers
            pairs += zip(conditioner.weights, ours.conditioner.weights)
            pairs += zip(scale.weights, ours.scale.weights)
        for theirs, ours in zip(flow.batch_norms, self.batch_norms):
            pairs += zip(theirs.variables, ours.weights)
        for src, dst in pairs:
            if tuple(src.shape) != tuple(dst.shape) or src.name != dst.name:
                raise ValueError(f"cannot copy {src.path} {tuple(src.shape)} into {dst.path} {tuple(dst.shape)}.")
            dst.assign(ops.convert_to_numpy(src))


def parameter_count(model, trainable_only: bool = False) -> int:
    """Number of scalars in ``model.weights`` (or ``trainable_weights``)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(int(np.prod(v.shape)) for v in weights))
