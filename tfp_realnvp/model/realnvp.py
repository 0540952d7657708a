"""``RealNVP``: a Keras model that trains a ``MultiScaleFlow`` by maximum likelihood."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tfp_realnvp.bijectors.multiscale import FLOW_CONFIG_KEYS, MultiScaleFlow
from tfp_realnvp.internal.backend import backend_name, stateless_normal, tfd
from tfp_realnvp.internal.compiled import CompiledFunction
from tfp_realnvp.internal.replicas import num_replicas_in_sync, refuse_multi_worker_tensorflow
from tfp_realnvp.internal.validation import as_image_batch
from tfp_realnvp.model import labels as labels_lib
from tfp_realnvp.model.batch_norm_refresh import make_refresh_callback
from tfp_realnvp.model.conditional_base import ConditionalNormal
from tfp_realnvp.model.dequantization import EVAL_NOISE_SEED, dequantization_noise, training_noise

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
class RealNVP(keras.Model):
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
        if float(l2_scale) < 0:
            raise ValueError(f"l2_scale must be >= 0; received {l2_scale!r}.")
        if (
            isinstance(refresh_batches, bool)
            or not isinstance(refresh_batches, (int, np.integer))
            or refresh_batches < 0
        ):
            raise ValueError(f"refresh_batches must be an integer >= 0; received {refresh_batches!r}.")
        self.refresh_batches = int(refresh_batches)
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2
        ):
            raise ValueError(f"num_classes must be None or an integer >= 2; received {num_classes!r}.")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.class_conditional_base = bool(class_conditional_base)
        self.context_channels = int(context_channels)
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
        if self.num_classes is not None and self.class_conditional_base:
            # Float32 (float64 under a float64 policy) whatever the compute precision:
            # the base density accumulates like the log-dets.
            self.prior = ConditionalNormal(
                self.num_classes, flow.image_shape, dtype=self.dtype_policy.variable_dtype, name="class_prior"
            )
        else:
            self.prior = None
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
        """``tfd.TransformedDistribution`` of a standard normal through the flow.

        For a class-conditional model, see ``conditional_distribution``.
        """
        return self._distribution

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
        if not self.conditional:
            raise ValueError(
                "conditional_distribution needs a class-conditional model (num_classes); this one has none."
            )
        base = self.prior.distribution(conditional_input) if self.prior is not None else self._distribution.distribution
        return tfd.TransformedDistribution(base, self._flow)

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
        # The model is built from the start, so the optimizer can be too. Otherwise
        # TensorFlow creates the slots while tracing the first train step and then
        # traces the whole step a second time.
        self._build_optimizer()

    def _build_optimizer(self):
        """Creates the optimizer's slots for the trainable weights, under the model's strategy."""
        if self.optimizer is None or self.optimizer.built:
            return
        if backend_name() == "tensorflow":
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        else:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        """Re-compiles a loaded model with its saved optimizer (so training resumes)."""
        config = keras.saving.deserialize_keras_object(config)
        config.pop("loss", None)
        self.compile(**{k: v for k, v in config.items() if k in ("optimizer", "jit_compile", "steps_per_execution")})

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

    def l2_penalty(self):
        """``l2_scale * sum(g**2)`` over the weight-norm scales, float32."""
        squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in self._flow.weight_scales()]
        return self.l2_scale * ops.sum(ops.stack(squares))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean bits/dim of the batch plus the L2 penalty (and any ``add_loss`` terms).

        Under a TensorFlow distribution strategy each replica sees its share of the
        batch and the replicas' gradients are summed, so the value is divided by the
        number of replicas, as Keras does for its own losses.
        """
        loss = ops.mean(self.to_bits_per_dim(y_pred))
        if self.l2_scale:
            loss = loss + self.l2_penalty()
        if self.losses:
            loss = loss + ops.sum(ops.stack([ops.cast(term, "float32") for term in self.losses]))
        replicas = num_replicas_in_sync()
        if replicas > 1:
            loss = loss / float(replicas)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self._bpd_tracker.update_state(self.to_bits_per_dim(y_pred))
        return self.get_metrics_result()

    # Batch-norm statistics -----------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, callbacks=None, **kwargs):
        """``keras.Model.fit``, then batch-norm averages that describe the trained flow.

        At the end of every epoch (before validation and before any callback) the
        batch-norm moving averages are re-estimated from ``refresh_batches`` batches
        of the training data (``tfp_realnvp.model.batch_norm_refresh``), so inference-mode
        numbers right after ``fit`` (``val_bits_per_dim``, ``evaluate``,
        ``bits_per_dim``, samples, saved models, exports) describe the weights as
        trained. ``x`` must be a NumPy array or a ``tf.data.Dataset`` for that; other
        sources train as usual, with a warning.
        """
        if self.conditional:
            x, y = labels_lib.labelled_fit_input(x, y, num_classes=self.num_classes)
            if kwargs.get("validation_data") is not None:
                kwargs["validation_data"] = labels_lib.labelled_validation_data(
                    kwargs["validation_data"], num_classes=self.num_classes
                )
        callbacks = list(callbacks or [])
        refresh = make_refresh_callback(
            self, x, batch_size=batch_size, num_batches=self.refresh_batches, seed=self.seed or 0
        )
        if refresh is not None:
            callbacks.insert(0, refresh)
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate``; a conditional model takes ``(images, labels)`` as ``fit`` does."""
        if self.conditional:
            x, y = labels_lib.labelled_fit_input(x, y, num_classes=self.num_classes)
        return super().evaluate(x, y, *args, **kwargs)

    def batch_statistics_step(self):
        """A compiled ``step(inputs)`` that runs the flow in training mode on a batch and
        stores the updated batch-norm statistics; weights are not changed.

        ``fit``'s epoch-end re-estimation (``tfp_realnvp.model.batch_norm_refresh``) calls it
        once per batch after resetting the update counts, so every average becomes the
        mean of the batches' statistics. ``inputs`` are images, or ``(images, labels)``
        for a conditional model.
        """
        if "statistics" in self._compiled:
            return self._compiled["statistics"]

        def log_prob_with_batch_statistics(inputs):
            return self._inputs_log_prob(inputs, noise_training=False, training=True)

        if backend_name() == "tensorflow":
            step = self._compiled_fn("statistics_tf", log_prob_with_batch_statistics)
        else:
            import jax

            flow = self._flow
            others = [v for v in self.variables if all(v is not w for w in flow.variables)]

            def pure(trainable, state, other_values, images):
                with keras.StatelessScope(state_mapping=list(zip(others, other_values))):
                    return flow.stateless_call(trainable, state, log_prob_with_batch_statistics, images)[1]

            compiled = jax.jit(pure)

            def step(images):
                new_state = compiled(
                    [v.value for v in flow.trainable_variables],
                    [v.value for v in flow.non_trainable_variables],
                    [v.value for v in others],
                    images,
                )
                for variable, value in zip(flow.non_trainable_variables, new_state):
                    variable.assign(value)

        self._compiled["statistics"] = step
        return step

    # Inference API --------------------------------------------------------------
    def _compiled_fn(self, key, fn, **kwargs) -> CompiledFunction:
        if key not in self._compiled:
            self._compiled[key] = CompiledFunction(self, fn, **kwargs)
        return self._compiled[key]

    def _image_batch(self, images) -> np.ndarray:
        """``images`` as a checked NumPy ``[N, H, W, C]`` batch with ``N >= 1``."""
        arr = np.asarray(keras.ops.convert_to_numpy(images))
        if arr.size == 0:
            raise ValueError(f"images must hold at least one image; received shape {list(arr.shape)}.")
        return as_image_batch(arr, image_shape=self.image_shape)

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

    def _batched(self, key, fn, inputs, batch_size: int) -> np.ndarray:
        """``fn`` compiled once and run over ``inputs`` (an array, or a tuple of arrays of
        one length, each passed as an argument) in slices of ``batch_size``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; received {batch_size!r}.")
        arrays = tuple(inputs) if isinstance(inputs, tuple) else (inputs,)
        if len(arrays[0]) == 0:
            raise ValueError(f"received an empty batch of shape {list(arrays[0].shape)}.")
        compiled = self._compiled_fn(key, fn)
        outs = [
            keras.ops.convert_to_numpy(compiled(*(a[i : i + batch_size] for a in arrays)))
            for i in range(0, len(arrays[0]), batch_size)
        ]
        return np.concatenate(outs, axis=0)

    def log_prob(self, images, labels=None, *, batch_size: int = 256) -> np.ndarray:
        """``log p(x)`` (conditional model: ``log p(x | y)``) in nats per image, batch
        norm in inference mode.

        Args:
            images: ``[N, H, W, C]`` (or one ``[H, W, C]`` image) in ``[0, 256)``.
                Integer images are dequantized with ``dequantization_noise``; float
                images are evaluated as they are.
            labels: for a class-conditional model, integer labels ``[N]`` in
                ``[0, num_classes)`` (or one int for all); ``None`` otherwise.
            batch_size: images per compiled call.

        Returns:
            float32 ``[N]``.

        Raises:
            ValueError: naming the shape, value range, labels or ``batch_size`` received.
        """
        images = self._image_batch(images)
        labels = self.check_labels(labels, len(images))
        if labels is None:
            return self._batched("log_prob", lambda x: self(x, training=False), images, batch_size)
        return self._batched("log_prob_labels", lambda x, y: self((x, y), training=False), (images, labels), batch_size)

    def bits_per_dim(self, images, labels=None, *, batch_size: int = 256) -> np.ndarray:
        """Bits per dimension per image, ``-log p(x) / (D ln 2)`` (conditional model:
        ``-log p(x | y) / (D ln 2)``; see ``log_prob``)."""
        return self.to_bits_per_dim(self.log_prob(images, labels, batch_size=batch_size))

    def class_log_likelihoods_tensor(self, images):
        """``log p(x | k)`` ``[N, K]`` for every class ``k`` on backend tensors, in one pass
        over ``N * K`` images (``class_log_likelihoods`` is the checked NumPy version)."""
        k = self.num_classes
        x = self._pixels(images, training=False)
        n = ops.shape(x)[0]
        repeated = ops.repeat(x, k, axis=0)
        labels = ops.tile(ops.arange(k, dtype="int32"), [n])
        log_p = self._log_prob_of(repeated, self.context(labels), training=False)
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
        if not self.conditional:
            raise ValueError("class_log_likelihoods needs a class-conditional model (num_classes); this one has none.")
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
        if not self.conditional:
            raise ValueError("classify needs a class-conditional model (num_classes); this one has none.")
        prior = labels_lib.check_prior(prior, num_classes=self.num_classes)
        return labels_lib.posterior(self.class_log_likelihoods(images, batch_size=batch_size), prior)

    def encode_tensor(self, images, labels=None):
        """``z = f(x)`` on backend tensors, for compiled functions and exported graphs.

        Args:
            images: ``[N, H, W, C]`` tensor; integer images are dequantized with the
                seeded per-image noise (``tfp_realnvp.model.dequantization``), float images
                are taken as they are. Not checked: ``encode`` checks NumPy input.
            labels: int32 ``[N]`` for a conditional model, else ``None``.

        Returns:
            float32 latents ``[N, H, W, C]`` (batch norm in inference mode).
        """
        x = self._pixels(images, training=False)
        if labels is None:
            return self._flow.inverse(x, training=False)
        return self._flow.inverse(x, training=False, conditional_input=self.context(labels))

    def decode_tensor(self, z, labels=None):
        """uint8 images ``clip(floor(g(z)), 0, 255)`` on backend tensors (see ``decode``).

        Args:
            z: latents ``[N, H, W, C]``; not checked for finiteness here.
            labels: int32 ``[N]`` for a conditional model, else ``None``.
        """
        z = ops.cast(z, "float32")
        if labels is None:
            x = self._flow.forward(z, training=False)
        else:
            x = self._flow.forward(z, training=False, conditional_input=self.context(labels))
        return ops.cast(ops.clip(ops.floor(x), 0.0, 255.0), "uint8")

    def encode(self, images, labels=None, *, batch_size: int = 256) -> np.ndarray:
        """Latent ``z = f(x)`` (conditional: ``f(x; y)``), the flow's ``inverse``, batch
        norm in inference mode.

        Args:
            images: as for ``log_prob``; integer images are dequantized first, so
                ``decode(encode(x)) == x`` for integer ``x`` (with the same labels).
            labels: for a class-conditional model, integer labels ``[N]`` (or one int).
            batch_size: images per compiled call.

        Returns:
            float32 ``[N, H, W, C]``.
        """
        images = self._image_batch(images)
        labels = self.check_labels(labels, len(images))
        if labels is None:
            return self._batched("encode", self.encode_tensor, images, batch_size)
        return self._batched("encode_labels", self.encode_tensor, (images, labels), batch_size)

    def decode(self, z, labels=None, *, batch_size: int = 256) -> np.ndarray:
        """uint8 images ``floor(g(z))`` (conditional: ``g(z; y)``) clipped to ``[0, 255]``
        (the flow's ``forward``).

        Args:
            z: finite latents ``[N, H, W, C]``.
            labels: for a class-conditional model, integer labels ``[N]`` (or one int).
            batch_size: latents per compiled call.

        Returns:
            uint8 ``[N, H, W, C]``.

        Raises:
            ValueError: for a wrong shape, non-finite values or bad labels, naming them.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 4 or tuple(z.shape[1:]) != self.image_shape:
            raise ValueError(
                f"z must have shape [N, {', '.join(map(str, self.image_shape))}]; received shape {list(z.shape)}."
            )
        if not np.all(np.isfinite(z)):
            raise ValueError(f"z must be finite; received {int(np.sum(~np.isfinite(z)))} NaN or infinite values.")
        labels = self.check_labels(labels, len(z))
        if labels is None:
            return self._batched("decode", self.decode_tensor, z, batch_size)
        return self._batched("decode_labels", self.decode_tensor, (z, labels), batch_size)

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
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer; received {num_samples!r}.")
        if not (float(temperature) > 0 and math.isfinite(float(temperature))):
            raise ValueError(f"temperature must be positive and finite; received {temperature!r}.")
        labels = self.check_labels(labels, int(num_samples))
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31 - 1))
        seed_pair = np.asarray([int(seed) % (2**31 - 1), 0], dtype=np.int32)
        if labels is None:
            compiled = self._compiled_fn("sample", self.sample_tensor, static_argnums=(0,))
            out = compiled(int(num_samples), seed_pair, np.float32(temperature))
        else:
            compiled = self._compiled_fn("sample_labels", self.sample_tensor, static_argnums=(0,))
            out = compiled(int(num_samples), seed_pair, np.float32(temperature), labels)
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
        if int(steps) < 2:
            raise ValueError(f"steps must be >= 2; received {steps!r}.")
        if self.conditional and label is not None and np.ndim(label) != 0:
            raise ValueError(f"label must be one integer class; received shape {list(np.shape(label))}.")
        pair = np.stack([np.asarray(image_a), np.asarray(image_b)])
        z_a, z_b = self.encode(pair, label)
        phi = np.linspace(0.0, np.pi / 2, int(steps), dtype=np.float32)[:, None, None, None]
        return self.decode(np.cos(phi) * z_a + np.sin(phi) * z_b, label)
