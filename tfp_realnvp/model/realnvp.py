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
from tfp_realnvp.internal.compiled import CompiledFunction
from tfp_realnvp.internal.replicas import refuse_multi_worker_tensorflow
from tfp_realnvp.model import labels as labels_lib
from tfp_realnvp.model.conditional import ConditionalMixin
from tfp_realnvp.model.conditional_base import ConditionalNormal
from tfp_realnvp.model.dequantization import EVAL_NOISE_SEED, dequantization_noise, training_noise
from tfp_realnvp.model.fitting import FitMixin
from tfp_realnvp.model.inference import InferenceMixin
from tfp_realnvp.model.keras_export import KerasExportMixin
from tfp_realnvp.model.ood import OutOfDistributionMixin
from tfp_realnvp.model.sampling import SamplingMixin

#: The flow arguments ``RealNVP`` takes and saves in its config: all but ``preprocess``
#: (always on) and ``context_dim`` (``num_classes`` sets it).
MODEL_FLOW_KEYS = tuple(key for key in FLOW_CONFIG_KEYS if key not in ("preprocess", "context_dim"))

#: The model settings a resumed training run must share with its checkpoint: the flow's
#: architecture and the loss. Not ``recompute`` (it changes how gradients are computed,
#: not their values), nor the options the command line does not set
#: (``batch_norm_lag``, ``context_channels``; ``num_classes`` is compared on its own).
RESUME_SETTING_KEYS = tuple(
    key for key in MODEL_FLOW_KEYS if key not in ("recompute", "batch_norm_lag", "context_channels")
) + ("l2_scale",)

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
        # Lower is better: Keras' monitor callbacks find the direction of
        # ``val_bits_per_dim`` in ``mode="auto"``.
        self._bpd_tracker = directed_metrics(
            [keras.metrics.Mean(name="bits_per_dim")], direction="down", name="bits_per_dim"
        )
        self._compiled = {}
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
    def _pixels(self, images, *, training: bool):
        """Float32 pixels, dequantized when the input has an integer dtype."""
        dtype = keras.backend.standardize_dtype(images.dtype)
        x = ops.cast(images, "float32")
        if "int" not in dtype:
            return x
        if training:
            return x + training_noise(ops.shape(x), self._noise)
        return x + dequantization_noise(images, EVAL_NOISE_SEED)

    def _log_prob_of(self, x, context, *, training: bool):
        """``log p(x)`` or ``log p(x | c)`` of continuous pixels ``x``, float32."""
        if context is None:
            log_p = self._distribution.log_prob(x, bijector_kwargs={"training": training})
        else:
            log_p = self.conditional_distribution(context).log_prob(
                x, bijector_kwargs={"training": training, "conditional_input": context}
            )
        return ops.cast(log_p, "float32")

    def _inputs_log_prob(self, inputs, *, noise_training: bool, training: bool):
        images, labels = labels_lib.split_model_inputs(inputs, num_classes=self.num_classes)
        x = self._pixels(images, training=noise_training)
        return self._log_prob_of(x, None if labels is None else self.context(labels), training=training)

    def call(self, inputs, training=False):
        """Returns ``log p(images)`` (conditional model: ``log p(images | labels)`` of
        ``inputs = (images, labels)``) in nats, shape ``[batch]`` (see the class docstring)."""
        training = bool(training)
        return self._inputs_log_prob(inputs, noise_training=training, training=training)

    def to_bits_per_dim(self, log_prob):
        """``-log_prob / (D ln 2)``."""
        return -log_prob / (self.num_dims * math.log(2.0))
