"""The Real NVP multi-scale architecture as one composite bijector."""

from __future__ import annotations

from tfp_realnvp.bijectors.batch_norm import BatchNormalization, check_fraction
from tfp_realnvp.bijectors.coupling import AffineCoupling, check_context_dim
from tfp_realnvp.bijectors.event_shapes import check_built_event, format_event
from tfp_realnvp.bijectors.factor_out import FactorOut
from tfp_realnvp.bijectors.one_pass import OnePassBijector, one_pass_steps, transform
from tfp_realnvp.bijectors.preprocess import LogitPreprocess
from tfp_realnvp.bijectors.recompute import check_recompute
from tfp_realnvp.bijectors.reversible import record_transform, reverse_transform, reversible_transform
from tfp_realnvp.bijectors.squeeze import Squeeze
from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.backend import tfb
from tfp_realnvp.internal.stateless import stateless_call
from tfp_realnvp.internal.validation import check_event_shape

#: The constructor arguments that define a ``MultiScaleFlow`` (``MultiScaleFlow.config``
#: holds exactly these); ``RealNVP``'s configuration and the command line derive theirs
#: from this tuple.
FLOW_CONFIG_KEYS = (
    "image_shape",
    "num_scales",
    "num_filters",
    "num_blocks",
    "batch_norm",
    "preprocess",
    "alpha",
    "batch_norm_momentum",
    "batch_norm_lag",
    "conditioner_batch_norm",
    "recompute",
    "context_dim",
    "context_channels",
)


class MultiScaleFlow(OnePassBijector):
    """Real NVP (Dinh et al., 2017): latent ``z`` (``forward``) to images in ``[0, 256)^D``.

    Read in the data-to-latent direction (``inverse``, the paper's ``f``), for an image
    ``x`` of event shape ``[H, W, C]``:

    1. ``LogitPreprocess``: ``y = logit(alpha + (1 - 2 alpha) x / 256)``.
    2. Each scale ``l < num_scales - 1`` on ``[h, w, c]``: 3 checkerboard couplings,
       squeeze to ``[h/2, w/2, 4c]``, 3 channel couplings, then the first ``2c``
       channels are factored out and scale ``l + 1`` transforms the other ``2c``;
       the halves are concatenated and un-squeezed back to ``[h, w, c]``.
    3. The last scale: 4 checkerboard couplings.

    Mask parities alternate. Filters double after each squeeze: the checkerboard
    couplings of scale ``l`` use ``num_filters * 2**l`` hidden channels, its channel
    couplings (after the squeeze) ``num_filters * 2**(l + 1)``. With ``batch_norm=True`` a
    ``BatchNormalization`` step follows every coupling. The latent has the data's
    event shape, so the base is ``tfd.Sample(tfd.Normal(0, 1), [H, W, C])`` and

    ``log p(x) = log N(f(x); 0, I) + sum_k log|det J_k(x)|``

    is the density of the pixels on ``[0, 256)^D``.

    **Batch-norm mode** is a call argument, ``training`` (default ``False``: moving
    averages), that TFP passes through: ``flow.inverse(x, training=True)``,
    ``dist.log_prob(x, bijector_kwargs={"training": True})``. It is part of TFP's cache
    key and of every trace, so a result is never reused across modes. Under a user's
    ``jax.jit`` training mode needs ``stateless_call`` (the moving averages cannot be
    updated in place from inside a trace; the flow refuses with a ``ValueError``).

    **Memory.** ``recompute`` trades computation for activation memory in training-mode
    calls (``bijectors.recompute``): ``"conditioner"`` recomputes each conditioner's
    hidden activations in the backward pass; ``"invertible"`` keeps only the latent of
    the data-to-latent pass and rebuilds every step's input from its output with the
    inverse, so the memory of a training step stops growing with the flow's depth.
    Gradients and batch-norm updates are those of ``"none"``.

    **Conditioning.** With ``context_dim=K`` the flow is a conditional bijection
    ``z = f(x; c)`` for a context ``c`` in ``R^K`` (one-hot labels, or any vector), passed
    as TFP's conditional-bijector keyword ``conditional_input`` (shape ``[..., K]``, batch
    dimensions broadcasting against the images'): it reaches every ``AffineCoupling``,
    whose conditioner sees a learned embedding of ``c`` broadcast over the image. Then

    ``log p(x | c) = log p_base(f(x; c) | c) + sum_k log|det J_k(x; c)|``,

    with a standard-normal base or a class-conditional one (``ConditionalNormal``)::

        dist = tfd.TransformedDistribution(base, flow)
        dist.log_prob(x, bijector_kwargs={"conditional_input": c})
        dist.sample(n, seed=s, bijector_kwargs={"conditional_input": c})

    The context is part of TFP's cache key (tensors by identity): a result cached for
    one context is never returned for another.

    **Weights.** ``trainable_variables``/``variables`` list the Keras weights; on
    TensorFlow a ``tfd.TransformedDistribution`` (or ``tfb.Chain``, ``tfb.Invert``)
    holding the flow lists them too, and ``tf.train.Checkpoint`` saves them all. On JAX,
    ``stateless_call`` runs any function of the flow as a pure function of the weights
    (for ``jax.jit``/``jax.grad``), returning the updated batch-norm state.

    Args:
        image_shape: ``[H, W, C]`` to build every network now; ``None`` builds the flow
            from the event shape of its first input.
        num_scales: number of scales, >= 1; ``H`` and ``W`` must divide by
            ``2**(num_scales - 1)``.
        num_filters: hidden width of the first scale's conditioners.
        num_blocks: residual blocks per conditioner.
        batch_norm: insert a batch-normalization step after each coupling.
        preprocess: include the pixel-to-logit step (``False``: the flow acts on
            real-valued ``[H, W, C]`` events).
        alpha: margin of the logit preprocessing.
        batch_norm_momentum: decay of the batch-norm moving averages (see
            ``BatchNormalization``).
        batch_norm_lag: weight of the moving averages in the training statistics
            (the paper's appendix E; 0 uses plain batch statistics).
        conditioner_batch_norm: batch normalization after the hidden convolutions of
            every conditioner network (the paper's "batch normalization and weight
            normalization in s and t"). On by default: at an equal 6-minute CPU budget
            on Fashion-MNIST it reached 3.38 test bits/dim against 3.50 without, though
            each step takes about twice as long on CPU
            (``benchmarks/results/cpu/fashion_mnist_bits_per_dim*.json``).
        recompute: ``"none"``, ``"conditioner"`` or ``"invertible"`` (see **Memory**).
        context_dim: size ``K`` of the context vector ``conditional_input``; ``None``
            (default) builds an unconditional flow.
        context_channels: features of each coupling's context embedding.
        dtype: Keras dtype policy for every layer (``"float64"`` for exactness tests,
            ``"mixed_bfloat16"`` for speed).
        validate_args: passed to ``tfb.Bijector`` and to the logit step, which then
            checks that ``inverse`` inputs lie in its domain, with no NaN.
        name: bijector name.

    Raises:
        ValueError: for a bad argument, or an image shape whose sides do not divide by
            ``2**(num_scales - 1)``; the message names the received value. The
            event-shape methods (``forward_event_shape``, ...) raise the same errors, and
            also reject another image shape than the one the flow was built for.
    """

    def __init__(
        self,
        *,
        image_shape=None,
        num_scales: int = 2,
        num_filters: int = 64,
        num_blocks: int = 8,
        batch_norm: bool = True,
        preprocess: bool = True,
        alpha: float = 0.05,
        batch_norm_momentum: float = 0.9,
        batch_norm_lag: float = 0.0,
        conditioner_batch_norm: bool = True,
        recompute: str = "none",
        context_dim: int | None = None,
        context_channels: int = 8,
        dtype=None,
        validate_args: bool = False,
        name: str = "multi_scale_flow",
    ):
        parameters = dict(locals())
        self._context_dim = check_context_dim(context_dim)
        self._context_channels = check_int(context_channels, name="context_channels")
        self._num_scales = check_int(num_scales, name="num_scales")
        self._num_filters = check_int(num_filters, name="num_filters")
        self._num_blocks = check_int(num_blocks, name="num_blocks", low=0)
        self._batch_norm = bool(batch_norm)
        self._batch_norm_momentum = check_fraction(batch_norm_momentum, name="batch_norm_momentum")
        self._batch_norm_lag = check_fraction(batch_norm_lag, name="batch_norm_lag")
        self._conditioner_batch_norm = bool(conditioner_batch_norm)
        self._recompute = check_recompute(recompute)
        self._layer_dtype = dtype
        self._preprocess = LogitPreprocess(alpha=alpha, validate_args=validate_args) if preprocess else None
        self._image_shape = None
        self._chain = None
        self.couplings: list[AffineCoupling] = []
        self.batch_norms: list[BatchNormalization] = []
        super().__init__(forward_min_event_ndims=3, validate_args=validate_args, parameters=parameters, name=name)
        if image_shape is not None:
            self.build(image_shape)

    # Construction ---------------------------------------------------------------
    def check_image_shape(self, image_shape) -> tuple[int, int, int]:
        """Returns ``(H, W, C)`` or raises ``ValueError`` naming the shape and scale count."""
        shape = check_event_shape(image_shape, name="image_shape")
        self._validate_event_shape(shape, inverse=True)
        return shape

    def _validate_event_shape(self, event, *, inverse: bool) -> None:
        # The flow maps [H, W, C] to [H, W, C]: both directions accept the same events.
        h, w, c = event
        factor = 2 ** (self._num_scales - 1)
        if (h is not None and h % factor) or (w is not None and w % factor):
            raise ValueError(
                f"MultiScaleFlow with num_scales={self._num_scales} needs image height and width "
                f"divisible by 2**(num_scales - 1) = {factor}; received image shape {format_event(event)}."
            )
        check_built_event(event, self._image_shape, name=self.name, what="image shape")

    def build(self, image_shape) -> None:
        """Creates every bijector and network for images of shape ``[H, W, C]``."""
        shape = self.check_image_shape(image_shape)
        if self._image_shape is not None:
            return
        steps = [self._preprocess] if self._preprocess is not None else []
        steps.append(self._scale(0, shape))
        self._chain = tfb.Chain(steps, name=f"{self.name}_chain")
        self._image_shape = shape

    def _one_pass_parts(self):
        return one_pass_steps(self._chain) if self._chain is not None else iter(())

    def _coupling(self, scale: int, kind: str, index: int, parity: int, shape) -> list:
        coupling = AffineCoupling(
            mask_type=kind,
            parity=parity,
            event_shape=shape,
            # Filters double after each squeeze: the channel couplings of a scale work
            # on squeezed tensors and use twice the width of its checkerboard couplings.
            num_filters=self._num_filters * 2 ** (scale + (kind == "channel")),
            num_blocks=self._num_blocks,
            conditioner_batch_norm=self._conditioner_batch_norm,
            batch_norm_momentum=self._batch_norm_momentum,
            rematerialize=self._recompute == "conditioner",
            context_dim=self._context_dim,
            context_channels=self._context_channels,
            dtype=self._layer_dtype,
            name=f"scale{scale}_{kind}{index}",
        )
        self.couplings.append(coupling)
        steps = [coupling]
        if self._batch_norm:
            bn = BatchNormalization(
                event_shape=shape,
                momentum=self._batch_norm_momentum,
                lag=self._batch_norm_lag,
                dtype=self._layer_dtype,
                name=f"scale{scale}_{kind}{index}_bn",
            )
            self.batch_norms.append(bn)
            steps.append(bn)
        return steps

    def _scale(self, scale: int, shape) -> tfb.Bijector:
        """The bijector of scale ``scale`` on ``[h, w, c]``, listed in data-to-latent order."""
        h, w, c = shape
        steps = []
        last = scale == self._num_scales - 1
        for i in range(4 if last else 3):
            steps += self._coupling(scale, "checkerboard", i, i % 2, shape)
        if not last:
            squeezed = (h // 2, w // 2, 4 * c)
            steps.append(tfb.Invert(Squeeze(name=f"scale{scale}_squeeze")))
            for i in range(3):
                steps += self._coupling(scale, "channel", i, i % 2, squeezed)
            inner = self._scale(scale + 1, (h // 2, w // 2, 2 * c))
            steps.append(FactorOut(inner, name=f"scale{scale}_factor_out"))
            steps.append(Squeeze(name=f"scale{scale}_unsqueeze"))
        # tfb.Chain applies its last bijector first in `forward`, its first in `inverse`.
        return tfb.Chain(steps, name=f"scale{scale}")

    # Introspection --------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self._image_shape is not None

    @property
    def conditional(self) -> bool:
        """Whether the flow takes a context (built with ``context_dim``)."""
        return self._context_dim is not None

    @property
    def context_dim(self) -> int | None:
        return self._context_dim

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return self._image_shape

    @property
    def chain(self):
        """The underlying ``tfb.Chain`` (``None`` until built)."""
        return self._chain

    @property
    def config(self) -> dict:
        """The constructor arguments that rebuild this flow, keyed by ``FLOW_CONFIG_KEYS``."""
        config = {
            "image_shape": list(self._image_shape) if self._image_shape else None,
            "num_scales": self._num_scales,
            "num_filters": self._num_filters,
            "num_blocks": self._num_blocks,
            "batch_norm": self._batch_norm,
            "preprocess": self._preprocess is not None,
            "alpha": self._preprocess.alpha if self._preprocess is not None else None,
            "batch_norm_momentum": self._batch_norm_momentum,
            "batch_norm_lag": self._batch_norm_lag,
            "conditioner_batch_norm": self._conditioner_batch_norm,
            "recompute": self._recompute,
            "context_dim": self._context_dim,
            "context_channels": self._context_channels,
        }
        return {key: config[key] for key in FLOW_CONFIG_KEYS}

    @property
    def recompute(self) -> str:
        """The training-mode recomputation: ``"none"``, ``"conditioner"`` or ``"invertible"``."""
        return self._recompute

    @property
    def layers(self) -> list:
        """Every Keras layer of the flow (conditioners, scales, batch-norm weights)."""
        return [layer for b in self.couplings + self.batch_norms for layer in b.layers]

    def weight_scales(self) -> list:
        """The weight-norm scales of every conditioner (the paper's L2 target)."""
        return [g for c in self.couplings for g in c.conditioner.weight_scales()]

    @property
    def network_calls(self) -> int:
        """Conditioner passes run so far, summed over couplings (for one-pass checks)."""
        return sum(c.network_calls for c in self.couplings)

    # Pure functions (JAX) ------------------------------------------------------------
    def stateless_call(self, trainable_values, non_trainable_values, fn, *args, **kwargs):
        """Runs ``fn(*args, **kwargs)`` as a pure function of the flow's weights.

        The flow's ``trainable_variables`` read ``trainable_values`` and its
        ``non_trainable_variables`` (batch-norm statistics) read
        ``non_trainable_values`` while ``fn`` runs; nothing is written to the variables.
        Training-mode batch norm inside ``fn`` returns its updated statistics instead.
        This is the path for ``jax.jit``/``jax.grad`` users::

            params = [v.value for v in flow.trainable_variables]
            state = [v.value for v in flow.non_trainable_variables]

            def loss(params, state, x):
                log_p, state = flow.stateless_call(
                    params, state, dist.log_prob, x, bijector_kwargs={"training": True})
                return -log_p.mean(), state

            (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params, state, x)

        Returns:
            ``(fn's result, new non-trainable values)``, the values in the order of
            ``non_trainable_variables``.

        Raises:
            ValueError: if the flow is not built or the value lists have the wrong length.
        """
        if not self.built:
            raise ValueError(
                f"{self.name} is not built: pass image_shape to MultiScaleFlow or call "
                "flow.build([H, W, C]) before stateless_call."
            )
        return stateless_call(
            self.trainable_variables,
            self.non_trainable_variables,
            trainable_values,
            non_trainable_values,
            fn,
            *args,
            **kwargs,
        )

    # Math -----------------------------------------------------------------------
    def _transform(self, x, *, inverse: bool, training: bool = False, conditional_input=None):
        self.build(x.shape[-3:])
        if self._recompute == "invertible" and training and inverse:
            context = {} if conditional_input is None else {"conditional_input": conditional_input}
            return reversible_transform(self, x, inverse=inverse, training=training, **context)
        return transform(self._chain, x, inverse=inverse, training=training, conditional_input=conditional_input)

    def _transform_recorded(self, x, *, inverse: bool, training: bool = False, conditional_input=None):
        self.build(x.shape[-3:])
        return record_transform(self._chain, x, inverse=inverse, training=training, conditional_input=conditional_input)

    def _reverse(
        self, y, g_y, g_log_det, record, *, inverse: bool, training: bool, grads: dict, conditional_input=None
    ):
        return reverse_transform(
            self._chain,
            y,
            g_y,
            g_log_det,
            record,
            inverse=inverse,
            training=training,
            grads=grads,
            conditional_input=conditional_input,
        )
