"""``RealNVP``: a Keras model that trains a ``MultiScaleFlow`` by maximum likelihood."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tfp_realnvp.backend import backend_name, stateless_normal, tfd
from tfp_realnvp.batch_norm_refresh import make_refresh_callback
from tfp_realnvp.bijectors.multiscale import MultiScaleFlow
from tfp_realnvp.compiled import CompiledFunction
from tfp_realnvp.distributed import refuse_multi_worker_tensorflow
from tfp_realnvp.validation import as_image_batch

#: Seed of the dequantization noise used when integer images are evaluated, so that
#: ``log_prob``/``bits_per_dim`` of the same images are reproducible.
EVAL_NOISE_SEED = (20170, 1605)

# Key under which the model saves the state of its training-noise seed generator.
_NOISE_STATE_KEY = "dequantization_seed_state"


def _hash32_numpy(x: np.ndarray) -> np.ndarray:
    """The ``lowbias32`` integer hash (C. Wellons) of a ``uint32`` NumPy array."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))


def _hash32(x):
    """``_hash32_numpy`` on a ``uint32`` backend tensor (multiplications wrap mod 2**32)."""

    def u32(value):
        return ops.convert_to_tensor(np.uint32(value))

    x = ops.bitwise_xor(x, ops.right_shift(x, u32(16)))
    x = ops.multiply(x, u32(0x7FEB352D))
    x = ops.bitwise_xor(x, ops.right_shift(x, u32(15)))
    x = ops.multiply(x, u32(0x846CA68B))
    return ops.bitwise_xor(x, ops.right_shift(x, u32(16)))


def dequantization_noise(images, seed=EVAL_NOISE_SEED):
    """Uniform ``[0, 1)`` noise for integer images that depends only on each image.

    The noise of an image is a fixed pseudo-random function of its pixels and
    ``seed`` (a counter-based integer hash, identical on every backend), so the
    dequantized image ``x + u``, and with it ``log_prob`` and ``bits_per_dim``, does
    not depend on the batch size, on the image's position in its batch, or on the
    other images in the batch. Each ``u`` is uniform on the 2**24 grid points of
    ``[0, 1)``; different images get effectively independent noise.

    Args:
        images: integer tensor ``[..., H, W, C]`` with values in ``[0, 256)``.
        seed: two integers.

    Returns:
        float32 noise of the shape of ``images``.
    """
    shape = ops.shape(images)
    num_dims = int(np.prod(images.shape[-3:]))
    seed = np.asarray(seed, dtype=np.int64).astype(np.uint32)
    seed_key = _hash32_numpy(seed[0] ^ _hash32_numpy(seed[1]))
    # One key per pixel position, then one key per image from all (position, value) pairs.
    position_key = _hash32_numpy(np.arange(num_dims, dtype=np.uint32) ^ seed_key)
    values = ops.reshape(ops.cast(images, "uint32"), (-1, num_dims))
    golden = ops.convert_to_tensor(np.uint32(0x9E3779B9))
    pair_hash = _hash32(ops.add(ops.convert_to_tensor(position_key), ops.multiply(values, golden)))
    image_key = ops.cast(ops.sum(pair_hash, axis=-1, keepdims=True), "uint32")
    image_key = _hash32(ops.bitwise_xor(image_key, ops.convert_to_tensor(seed_key)))
    bits = _hash32(ops.bitwise_xor(image_key, ops.convert_to_tensor(position_key)))
    noise = ops.cast(ops.right_shift(bits, ops.convert_to_tensor(np.uint32(8))), "float32") * (2.0**-24)
    return ops.reshape(noise, shape)


def _num_replicas() -> int:
    """Replicas that each compute a share of the batch (TensorFlow distribution strategies)."""
    if backend_name() != "tensorflow":
        return 1
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def _replica_id():
    """Index of the replica running this code, or ``None`` outside a multi-replica step."""
    if backend_name() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync < 2:
        return None
    return context.replica_id_in_sync_group


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
        **kwargs,
    ):
        refuse_multi_worker_tensorflow(check_environment=False)
        super().__init__(**kwargs)
        if float(l2_scale) < 0:
            raise ValueError(f"l2_scale must be >= 0; received {l2_scale!r}.")
        if isinstance(refresh_batches, bool) or not isinstance(refresh_batches, (int, np.integer)) or refresh_batches < 0:
            raise ValueError(f"refresh_batches must be an integer >= 0; received {refresh_batches!r}.")
        self.refresh_batches = int(refresh_batches)
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
        flow_config = dict(self._flow.config)
        flow_config.pop("preprocess", None)
        config.update(
            flow_config,
            image_shape=list(self.image_shape),
            l2_scale=self.l2_scale,
            refresh_batches=self.refresh_batches,
            seed=self.seed,
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
            replica = _replica_id()
            if replica is None:
                noise = keras.random.uniform(ops.shape(x), seed=self._noise, dtype="float32")
            else:
                # Every replica holds the same generator state: draw for all of them
                # and keep this replica's share, so no two replicas share noise.
                shape = (_num_replicas(),) + tuple(ops.shape(x))
                noise = keras.random.uniform(shape, seed=self._noise, dtype="float32")
                noise = ops.take(noise, replica, axis=0)
        else:
            noise = dequantization_noise(images, EVAL_NOISE_SEED)
        return x + noise

    def call(self, images, training=False):
        """Returns ``log p(images)`` in nats, shape ``[batch]`` (see the class docstring)."""
        training = bool(training)
        x = self._pixels(images, training=training)
        return ops.cast(self._distribution.log_prob(x, bijector_kwargs={"training": training}), "float32")

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
            loss = loss + ops.sum(ops.stack([ops.cast(l, "float32") for l in self.losses]))
        replicas = _num_replicas()
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
        of the training data (``tfp_realnvp.batch_norm_refresh``), so inference-mode
        numbers right after ``fit`` (``val_bits_per_dim``, ``evaluate``,
        ``bits_per_dim``, samples, saved models, exports) describe the weights as
        trained. ``x`` must be a NumPy array or a ``tf.data.Dataset`` for that; other
        sources train as usual, with a warning.
        """
        callbacks = list(callbacks or [])
        refresh = make_refresh_callback(self, x, batch_size=batch_size, num_batches=self.refresh_batches, seed=self.seed or 0)
        if refresh is not None:
            callbacks.insert(0, refresh)
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks, **kwargs)

    def _statistics_step(self):
        """A compiled ``step(images)`` that runs the flow in training mode on ``images``
        and stores the updated batch-norm statistics (weights are not changed)."""
        if "statistics" in self._compiled:
            return self._compiled["statistics"]

        def log_prob_with_batch_statistics(images):
            x = self._pixels(images, training=False)
            return self._distribution.log_prob(x, bijector_kwargs={"training": True})

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

    def _batched(self, key, fn, inputs: np.ndarray, batch_size: int) -> np.ndarray:
        """``fn`` compiled once and run over ``inputs`` in slices of ``batch_size``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; received {batch_size!r}.")
        if len(inputs) == 0:
            raise ValueError(f"received an empty batch of shape {list(inputs.shape)}.")
        compiled = self._compiled_fn(key, fn)
        outs = [keras.ops.convert_to_numpy(compiled(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)]
        return np.concatenate(outs, axis=0)

    def log_prob(self, images, *, batch_size: int = 256) -> np.ndarray:
        """``log p(x)`` in nats per image, with batch norm in inference mode.

        Args:
            images: ``[N, H, W, C]`` (or one ``[H, W, C]`` image) in ``[0, 256)``.
                Integer images are dequantized with ``dequantization_noise``; float
                images are evaluated as they are.
            batch_size: images per compiled call.

        Returns:
            float32 ``[N]``.

        Raises:
            ValueError: naming the shape, value range or ``batch_size`` received.
        """
        images = self._image_batch(images)
        return self._batched("log_prob", lambda x: self(x, training=False), images, batch_size)

    def bits_per_dim(self, images, *, batch_size: int = 256) -> np.ndarray:
        """Bits per dimension per image, ``-log p(x) / (D ln 2)`` (see ``log_prob``)."""
        return self.to_bits_per_dim(self.log_prob(images, batch_size=batch_size))

    def _encode(self, images):
        x = self._pixels(images, training=False)
        return self._flow.inverse(x, training=False)

    def _decode(self, z):
        x = self._flow.forward(ops.cast(z, "float32"), training=False)
        return ops.cast(ops.clip(ops.floor(x), 0.0, 255.0), "uint8")

    def encode(self, images, *, batch_size: int = 256) -> np.ndarray:
        """Latent ``z = f(x)`` (the flow's ``inverse``), batch norm in inference mode.

        Args:
            images: as for ``log_prob``; integer images are dequantized first, so
                ``decode(encode(x)) == x`` for integer ``x``.
            batch_size: images per compiled call.

        Returns:
            float32 ``[N, H, W, C]``.
        """
        images = self._image_batch(images)
        return self._batched("encode", self._encode, images, batch_size)

    def decode(self, z, *, batch_size: int = 256) -> np.ndarray:
        """uint8 images ``floor(g(z))`` clipped to ``[0, 255]`` (the flow's ``forward``).

        Args:
            z: finite latents ``[N, H, W, C]``.
            batch_size: latents per compiled call.

        Returns:
            uint8 ``[N, H, W, C]``.

        Raises:
            ValueError: for a wrong shape or non-finite values, naming them.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 4 or tuple(z.shape[1:]) != self.image_shape:
            raise ValueError(f"z must have shape [N, {', '.join(map(str, self.image_shape))}]; received shape {list(z.shape)}.")
        if not np.all(np.isfinite(z)):
            raise ValueError(f"z must be finite; received {int(np.sum(~np.isfinite(z)))} NaN or infinite values.")
        return self._batched("decode", self._decode, z, batch_size)

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

        Returns:
            uint8 ``[num_samples, H, W, C]``.

        Raises:
            ValueError: naming a bad ``num_samples`` or ``temperature``.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer; received {num_samples!r}.")
        if not (float(temperature) > 0 and math.isfinite(float(temperature))):
            raise ValueError(f"temperature must be positive and finite; received {temperature!r}.")
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

        Args:
            image_a: ``[H, W, C]`` image at ``phi = 0``.
            image_b: ``[H, W, C]`` image at ``phi = pi / 2``.
            steps: number of images on the path, >= 2.

        Returns:
            uint8 ``[steps, H, W, C]``.

        Raises:
            ValueError: naming a bad ``steps`` or image shape.
        """
        if int(steps) < 2:
            raise ValueError(f"steps must be >= 2; received {steps!r}.")
        pair = np.stack([np.asarray(image_a), np.asarray(image_b)])
        z_a, z_b = self.encode(pair)
        phi = np.linspace(0.0, np.pi / 2, int(steps), dtype=np.float32)[:, None, None, None]
        return self.decode(np.cos(phi) * z_a + np.sin(phi) * z_b)
