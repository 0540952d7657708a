"""``RealNVP``: a Keras model that trains a ``MultiScaleFlow`` by maximum likelihood.

The model's methods are grouped by what they serve: ``fitting`` (compile, loss, ``fit``),
``inference`` (``log_prob``, ``encode``, ``decode``), ``sampling`` (``sample``,
``interpolate``), ``conditional`` (labels and ``classify``) and ``keras_export``
(Keras' ``export`` with the model's input signature); this module holds the
model's state, its Keras plumbing and the likelihood they all build on.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tfp_realnvp.bijectors.multiscale import FLOW_CONFIG_KEYS, MultiScaleFlow
from tfp_realnvp.internal.arguments import check_int, check_number
from tfp_realnvp.internal.backend import directed_metrics, tfd
from tfp_realnvp.internal.compiled import CompiledFunction, SharedTrace
from tfp_realnvp.internal.replicas import refuse_multi_worker_tensorflow
from tfp_realnvp.model import labels as labels_lib
from tfp_realnvp.model.conditional import ConditionalMixin
from tfp_realnvp.model.conditional_base import ConditionalNormal
from tfp_realnvp.model.dequantization import (
    EVAL_NOISE_SEED,
    dequantization_noise,
    dequantization_noise_keys,
    training_noise,
)
from tfp_realnvp.model.fitting import FitMixin
from tfp_realnvp.model.inference import InferenceMixin
from tfp_realnvp.model.keras_export import KerasExportMixin
from tfp_realnvp.model.ood import OutOfDistributionMixin
from tfp_realnvp.model.sampling import SamplingMixin
from tfp_realnvp.model.variational import VariationalDequantizer

#: The dequantizations ``RealNVP`` offers: uniform noise, or a learned ``q(u | x)``.
DEQUANTIZATIONS = ("uniform", "variational")

#: The flow arguments ``RealNVP`` takes and saves in its config: all but ``preprocess``
#: (always on) and ``context_dim`` (``num_classes`` sets it).
MODEL_FLOW_KEYS = tuple(key for key in FLOW_CONFIG_KEYS if key not in ("preprocess", "context_dim"))

#: The model settings a resumed training run must share with its checkpoint: the flow's
#: architecture and the loss. Not ``recompute`` (it changes how gradients are computed,
#: not their values), nor the options the command line does not set
#: (``batch_norm_lag``, ``context_channels``; ``num_classes`` is compared on its own).
RESUME_SETTING_KEYS = tuple(
    key for key in MODEL_FLOW_KEYS if key not in ("recompute", "batch_norm_lag", "context_channels")
) + ("l2_scale", "dequantization")

# Key under which the model saves the state of its training-noise seed generator.
_NOISE_STATE_KEY = "dequantization_seed_state"


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class RealNVP(
    ConditionalMixin,
    InferenceMixin,
    SamplingMixin,
    OutOfDistributionMixin,
    FitMixin,
    KerasExportMixin,
    keras.Model,
):
    """Real NVP density model of ``[H, W, C]`` images with pixel values in ``[0, 256)``.

    ``call(images)`` returns ``log p(x)`` per image, in nats, of the density on the
    pixel cube ``[0, 256)^D``. Integer images (any integer dtype) are dequantized
    first, ``x + u`` with ``u ~ U[0, 1)^D``: fresh noise while training, a fixed seeded
    draw otherwise, so ``bits_per_dim = -log p(x + u) / (D ln 2)`` is the usual upper
    bound for the discrete data. The evaluation noise of an image depends only on its
    pixels (``dequantization_noise``), so its ``log_prob`` does not change with the
    batch it is evaluated in. Float images are taken as already continuous.

    **Variational dequantization.** With ``dequantization="variational"`` the noise
    comes from a learned conditional flow ``q(u | x)`` on ``(0, 1)^D``
    (``VariationalDequantizer``, Flow++), fed by the same uniform noise, and for integer
    images ``call`` returns the one-sample variational bound
    ``log p(x + u) - log q(u | x)`` of the discrete ``log P(x)``: the loss, ``fit``'s
    ``bits_per_dim``, ``log_prob``, ``bits_per_dim`` and the exports all use it.
    ``log_prob(images, samples=K)`` gives the importance-weighted bound
    ``log (1/K) sum_k p(x + u_k) / q(u_k | x)`` (either dequantization; ``q = 1`` for
    uniform), which tightens towards ``log P(x)`` as ``K`` grows.

    ``compile()`` needs no loss: the loss is the mean negative log-likelihood in
    bits/dim plus ``l2_scale * sum(g**2)`` over the weight-norm scales ``g``
    (the paper's ``5e-5``). ``fit`` logs ``loss`` and ``bits_per_dim``; batch norm
    follows Keras' ``training`` flag, which reaches every bijector as TFP's
    ``bijector_kwargs={"training": ...}``. Inference mode (``evaluate``, ``validation_data``,
    ``log_prob``, ``sample``, exports) uses the batch-norm moving averages, which ``fit``
    re-estimates from training batches at the end of every epoch, so the numbers right
    after ``fit`` describe the trained flow.

    **Class-conditional model.** With ``num_classes=K`` the model is ``p(x | y)`` for
    integer labels ``y`` in ``[0, K)``: the labels are one-hot encoded and reach every
    coupling as the flow's ``conditional_input`` (see ``MultiScaleFlow``), and with
    ``class_conditional_base`` (default) the latent has a learned mean and scale per
    class (``ConditionalNormal``). ``fit`` takes ``(images, labels)``: ``fit(images,
    labels)`` with arrays, or a ``tf.data.Dataset`` of ``(images, labels)`` batches;
    ``call((images, labels))`` returns ``log p(x | y)``. ``log_prob``, ``bits_per_dim``,
    ``encode``, ``decode`` and ``sample`` then take ``labels``, and ``classify`` gives
    ``p(y | x)`` by Bayes' rule. The unconditional model (``num_classes=None``) takes
    no labels anywhere.

    Args:
        image_shape: ``(H, W, C)``.
        num_scales: scales of the multi-scale architecture.
        num_filters: conditioner width at the first scale (doubles per scale).
        num_blocks: residual blocks per conditioner.
        batch_norm: batch-normalization steps between couplings.
        alpha: margin of the logit preprocessing.
        batch_norm_momentum: decay of the batch-norm moving averages.
        batch_norm_lag: weight of the moving averages in the training statistics.
        conditioner_batch_norm: batch normalization inside the conditioner networks
            (default on; see ``MultiScaleFlow``).
        recompute: ``"none"``, ``"conditioner"`` (recompute each conditioner's
            activations in the backward pass) or ``"invertible"`` (rebuild every
            step's input from its output with the inverse, so the train step's memory
            does not grow with the depth). Same gradients and batch-norm updates; see
            ``MultiScaleFlow`` and the README's memory table.
        l2_scale: L2 coefficient on the weight-norm scales.
        refresh_batches: training batches from which ``fit`` re-estimates the
            batch-norm averages at the end of every epoch (0: keep the running
            averages of training).
        seed: seed of the training dequantization noise.
        num_classes: number of classes ``K`` of a class-conditional model, >= 2;
            ``None`` (default) for the unconditional model.
        class_conditional_base: with ``num_classes``, a learned per-class mean and
            log-scale of the latent (else a standard-normal base for every class).
        context_channels: with ``num_classes``, features of each coupling's label
            embedding.
        dequantization: ``"uniform"`` or ``"variational"`` (see above).
        dequantization_steps: coupling steps of ``q(u | x)`` (variational only).
        dequantization_filters: conditioner width of ``q(u | x)``.
        dequantization_blocks: residual blocks per conditioner of ``q(u | x)``.
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
        batch_norm_lag: float = 0.0,
        conditioner_batch_norm: bool = True,
        recompute: str = "none",
        l2_scale: float = 5e-5,
        refresh_batches: int = 8,
        seed: int | None = None,
        num_classes: int | None = None,
        class_conditional_base: bool = True,
        context_channels: int = 8,
        dequantization: str = "uniform",
        dequantization_steps: int = 3,
        dequantization_filters: int = 16,
        dequantization_blocks: int = 1,
        **kwargs,
    ):
        refuse_multi_worker_tensorflow(check_environment=False)
        super().__init__(**kwargs)
        self.l2_scale = check_number(l2_scale, name="l2_scale", low=0.0, strict=False)
        self.refresh_batches = check_int(refresh_batches, name="refresh_batches", low=0)
        self.num_classes = check_int(num_classes, name="num_classes", low=2, allow_none=True)
        self.class_conditional_base = bool(class_conditional_base)
        self.context_channels = check_int(context_channels, name="context_channels")
        flow = MultiScaleFlow(
            image_shape=image_shape,
            num_scales=num_scales,
            num_filters=num_filters,
            num_blocks=num_blocks,
            batch_norm=batch_norm,
            alpha=alpha,
            batch_norm_momentum=batch_norm_momentum,
            batch_norm_lag=batch_norm_lag,
            conditioner_batch_norm=conditioner_batch_norm,
            recompute=recompute,
            context_dim=self.num_classes,
            context_channels=self.context_channels,
            dtype=self.dtype_policy,
        )
        # The bijectors are not Keras objects: keep them out of Keras/TF attribute
        # tracking and track their layers instead.
        object.__setattr__(self, "_flow", flow)
        base = tfd.Sample(tfd.Normal(np.float32(0.0), np.float32(1.0)), list(flow.image_shape))
        object.__setattr__(self, "_distribution", tfd.TransformedDistribution(base, flow))
        self.flow_layers = list(flow.layers)
        self.prior = self._class_prior()
        self.image_shape = tuple(flow.image_shape)
        self.num_dims = int(np.prod(self.image_shape))
        self.seed = seed
        self._noise = keras.random.SeedGenerator(seed)
        self.dequantizer = self._make_dequantizer(
            dequantization, steps=dequantization_steps, filters=dequantization_filters, blocks=dequantization_blocks
        )
        # Lower is better: Keras' monitor callbacks find the direction of
        # ``val_bits_per_dim`` in ``mode="auto"``.
        self._bpd_tracker = directed_metrics(
            [keras.metrics.Mean(name="bits_per_dim")], direction="down", name="bits_per_dim"
        )
        self._compiled = {}
        # The flow's inference passes, one trace each shared by every graph (TensorFlow).
        self._inverse_pass = SharedTrace(self._inference_inverse)
        self._forward_pass = SharedTrace(self._inference_forward)
        self.built = True

    def _class_prior(self) -> ConditionalNormal | None:
        """The learned per-class base of a conditional model with ``class_conditional_base``."""
        if self.num_classes is None or not self.class_conditional_base:
            return None
        # Float32 (float64 under a float64 policy) whatever the compute precision:
        # the base density accumulates like the log-dets.
        return ConditionalNormal(
            self.num_classes, self._flow.image_shape, dtype=self.dtype_policy.variable_dtype, name="class_prior"
        )

    def _make_dequantizer(self, dequantization, *, steps, filters, blocks) -> VariationalDequantizer | None:
        """The ``q(u | x)`` of ``dequantization="variational"``; ``None`` for uniform noise."""
        if dequantization not in DEQUANTIZATIONS:
            raise ValueError(f"dequantization must be one of {list(DEQUANTIZATIONS)}; received {dequantization!r}.")
        self.dequantization = dequantization
        self.dequantization_steps = check_int(steps, name="dequantization_steps")
        self.dequantization_filters = check_int(filters, name="dequantization_filters")
        self.dequantization_blocks = check_int(blocks, name="dequantization_blocks", low=0)
        if dequantization == "uniform":
            return None
        return VariationalDequantizer(
            self.image_shape,
            num_steps=self.dequantization_steps,
            num_filters=self.dequantization_filters,
            num_blocks=self.dequantization_blocks,
            dtype=self.dtype_policy,
            name="dequantizer",
        )

    # Keras plumbing -------------------------------------------------------------
    @property
    def flow(self) -> MultiScaleFlow:
        """The ``MultiScaleFlow`` bijector (``forward``: latent to pixels)."""
        return self._flow

    @property
    def distribution(self):
        """``tfd.TransformedDistribution`` of a standard normal through the flow.

        For a class-conditional model, see ``conditional_distribution``.
        """
        return self._distribution

    def get_config(self):
        config = super().get_config()
        flow_config = self._flow.config
        config.update(
            {key: flow_config[key] for key in MODEL_FLOW_KEYS},
            image_shape=list(self.image_shape),
            l2_scale=self.l2_scale,
            refresh_batches=self.refresh_batches,
            seed=self.seed,
            num_classes=self.num_classes,
            class_conditional_base=self.class_conditional_base,
            context_channels=self.context_channels,
            dequantization=self.dequantization,
            dequantization_steps=self.dequantization_steps,
            dequantization_filters=self.dequantization_filters,
            dequantization_blocks=self.dequantization_blocks,
        )
        return config

    def build(self, input_shape=None):
        self.built = True

    def save_own_variables(self, store):
        """Saves the state of the training dequantization noise with the weights.

        Keras does not save the state of a ``keras.random.SeedGenerator``; without it a
        model restored from ``model.save``, ``save_weights`` or a ``BackupAndRestore``
        backup would draw the noise of the first steps again when training resumes.
        """
        super().save_own_variables(store)
        store[_NOISE_STATE_KEY] = ops.convert_to_numpy(self._noise.state.value)

    def load_own_variables(self, store):
        """Restores what ``save_own_variables`` saved (files without the noise state load too)."""
        keys = list(store.keys())
        if _NOISE_STATE_KEY in keys:
            self._noise.state.assign(np.asarray(store[_NOISE_STATE_KEY]))
        super().load_own_variables({key: store[key] for key in keys if key != _NOISE_STATE_KEY})

    def _compiled_fn(self, key, fn, **kwargs) -> CompiledFunction:
        """``fn`` compiled once per ``key`` (and kept for the model's lifetime)."""
        if key not in self._compiled:
            self._compiled[key] = CompiledFunction(self, fn, **kwargs)
        return self._compiled[key]

    # Likelihood -----------------------------------------------------------------
    def _dequantize(self, images, *, training: bool, noise=None):
        """``(x + u, log q(u | x))``: float32 pixels and the log-density of their noise.

        Float images come back as they are, with ``log_q = None``; so do integer images
        under uniform dequantization (``log q = 0``). ``noise`` is the base noise
        ``[N, H, W, C]`` in ``[0, 1)`` (default: fresh while training, else the seeded
        ``dequantization_noise``).
        """
        dtype = keras.backend.standardize_dtype(images.dtype)
        x = ops.cast(images, "float32")
        if "int" not in dtype:
            return x, None
        if noise is None:
            noise = (
                training_noise(ops.shape(x), self._noise) if training else dequantization_noise(images, EVAL_NOISE_SEED)
            )
        if self.dequantizer is None:
            return x + noise, None
        u, log_q = self.dequantizer(x, noise)
        return x + ops.cast(u, "float32"), ops.cast(log_q, "float32")

    def _pixels(self, images, *, training: bool):
        """Float32 pixels, dequantized when the input has an integer dtype."""
        return self._dequantize(images, training=training)[0]

    def _inference_inverse(self, x, context=None):
        """``(z, log p(x))`` (or given the context ``c``: ``(z, log p(x | c))``) of continuous
        pixels ``x``, batch norm in inference mode; ``log p`` float32. One pass of the
        flow: the distribution's ``log_prob`` reuses the inverse (the bijector's cache)."""
        kwargs = {"training": False} if context is None else {"training": False, "conditional_input": context}
        z = self._flow.inverse(x, **kwargs)
        distribution = self._distribution if context is None else self.conditional_distribution(context)
        return z, ops.cast(distribution.log_prob(x, bijector_kwargs=kwargs), "float32")

    def _inference_forward(self, z, context=None):
        """Continuous pixels ``g(z)`` (given the context ``c``: ``g(z; c)``), batch norm in inference mode."""
        if context is None:
            return self._flow.forward(z, training=False)
        return self._flow.forward(z, training=False, conditional_input=context)

    def _log_prob_of(self, x, context, *, training: bool):
        """``log p(x)`` or ``log p(x | c)`` of continuous pixels ``x``, float32."""
        if not training:
            return self._inverse_pass(x, context)[1]
        if context is None:
            log_p = self._distribution.log_prob(x, bijector_kwargs={"training": training})
        else:
            log_p = self.conditional_distribution(context).log_prob(
                x, bijector_kwargs={"training": training, "conditional_input": context}
            )
        return ops.cast(log_p, "float32")

    def _inputs_log_prob(self, inputs, *, noise_training: bool, training: bool):
        """``log p(x + u) - log q(u | x)`` (``log p(x + u)`` for uniform noise) of ``inputs``, float32 ``[N]``."""
        images, labels = labels_lib.split_model_inputs(inputs, num_classes=self.num_classes)
        x, log_q = self._dequantize(images, training=noise_training)
        log_p = self._log_prob_of(x, None if labels is None else self.context(labels), training=training)
        return log_p if log_q is None else log_p - log_q

    def log_weights_tensor(self, images, seed_keys, labels=None):
        """Importance log-weights ``log p(x + u_k) - log q(u_k | x)``, float32 ``[K, N]``.

        Draw ``k`` of image ``n`` is fed the seeded base noise
        ``dequantization_noise(images, seeds[k])`` (``dequantization_noise_keys``), so each
        weight depends only on the image and ``k``. Batch norm in inference mode.

        Args:
            images: integer ``[N, H, W, C]`` tensor in ``[0, 256)``.
            seed_keys: ``uint32`` ``[K]`` (``dequantization.noise_seed_keys``).
            labels: int32 ``[N]`` for a conditional model, else ``None``.
        """
        count = ops.shape(seed_keys)[0]
        noise = dequantization_noise_keys(images, seed_keys)
        tiled = ops.reshape(ops.tile(images[None], [count, 1, 1, 1, 1]), (-1, *self.image_shape))
        x, log_q = self._dequantize(tiled, training=False, noise=noise)
        context = None if labels is None else self.context(ops.reshape(ops.tile(labels[None], [count, 1]), (-1,)))
        log_w = self._log_prob_of(x, context, training=False)
        if log_q is not None:
            log_w = log_w - log_q
        return ops.reshape(log_w, (count, -1))

    def call(self, inputs, training=False):
        """Returns ``log p(images)`` (conditional model: ``log p(images | labels)`` of
        ``inputs = (images, labels)``) in nats, shape ``[batch]`` (see the class docstring)."""
        training = bool(training)
        return self._inputs_log_prob(inputs, noise_training=training, training=training)

    def to_bits_per_dim(self, log_prob):
        """``-log_prob / (D ln 2)``."""
        return -log_prob / (self.num_dims * math.log(2.0))
