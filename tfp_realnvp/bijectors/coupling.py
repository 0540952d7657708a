"""Affine coupling bijector with a checkerboard or channel mask."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfp_realnvp.bijectors.batch_norm import check_fraction
from tfp_realnvp.bijectors.event_shapes import check_built_event, format_event
from tfp_realnvp.bijectors.masks import check_mask_type, check_parity, checkerboard
from tfp_realnvp.bijectors.one_pass import OnePassBijector
from tfp_realnvp.bijectors.pull_back import CONTEXT_KEY, add_gradients
from tfp_realnvp.bijectors.recompute import rematerialized_call
from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.backend import eager_scope
from tfp_realnvp.internal.gradients import read_values, vjp
from tfp_realnvp.internal.stateless import stateless_call
from tfp_realnvp.internal.validation import check_event_shape
from tfp_realnvp.networks.context import ContextEmbedding
from tfp_realnvp.networks.resnet import ResNetConditioner
from tfp_realnvp.networks.tanh_scale import TanhScale


class AffineCoupling(OnePassBijector):
    """Real NVP affine coupling on ``[..., H, W, C]`` events.

    A mask splits the event into a fixed part ``a`` and an updated part ``b``. With
    ``s = scale * tanh(raw_s(x_a))`` and ``t = t(x_a)`` from one conditioner pass:

    * ``inverse`` (data to latent, the paper's ``f``):
      ``z_a = y_a``, ``z_b = y_b * exp(s(y_a)) + t(y_a)``,
      ``log|det dz/dy| = sum(s)`` over the event.
    * ``forward`` (latent to data): ``y_a = z_a``, ``y_b = (z_b - t(z_a)) * exp(-s(z_a))``,
      ``log|det dy/dz| = -sum(s)``.

    Masks: ``"checkerboard"`` fixes the pixels with ``(i + j) % 2 == parity``;
    ``"channel"`` fixes the first half of the channels when ``parity == 0`` and the
    second half when ``parity == 1``.

    ``training`` (a call argument, default ``False``) reaches the conditioner, so a
    conditioner with batch normalization uses batch statistics only in training mode.

    The network runs once per transformation: the log-det computed with the values is
    kept in TFP's bijector cache, so ``log_prob`` and ``sample`` reuse it.

    **Recomputation.** With ``rematerialize=True`` a training-mode call keeps only the
    conditioner's input and recomputes its hidden activations for the gradient
    (``keras.remat``). Under invertible recomputation (``bijectors.reversible``) the
    backward pass rebuilds the input from the output, ``x_a = z_a``,
    ``x_b = (z_b - t(z_a)) exp(-s(z_a))``, and pulls the cotangents back with the same
    single conditioner pass: ``dE/dx_b = exp(s) dE/dz_b``,
    ``dE/ds = (z_b - t) dE/dz_b + dE/dL``, ``dE/dt = dE/dz_b``, and ``(dE/ds, dE/dt)``
    flow through the network into ``dE/dx_a`` and its weights.

    **Conditioning.** Built with ``context_dim=K``, the coupling models a conditional
    bijection ``x -> z | c`` for a context ``c`` in ``R^K`` (a one-hot label or any
    feature vector), passed as ``conditional_input`` of shape ``[..., K]``:
    ``coupling.inverse(y, conditional_input=c)``, or through a distribution,
    ``dist.log_prob(y, bijector_kwargs={"conditional_input": c})``. A learned
    ``ContextEmbedding`` maps ``c`` to ``context_channels`` features, broadcast over
    ``H, W`` and concatenated to the fixed part as extra conditioner input channels:
    ``s = s(x_a, c)``, ``t = t(x_a, c)``. The context does not depend on ``x``, so the
    Jacobian stays triangular and ``log|det| = sum(s)`` as above, for every ``c``. The
    batch dimensions of ``c`` broadcast against those of ``y``.

    Args:
        mask_type: ``"checkerboard"`` or ``"channel"``.
        parity: 0 or 1, which half of the mask stays fixed.
        event_shape: ``[H, W, C]``; builds the networks now. ``None`` builds them on
            first use from the input's last three dimensions.
        conditioner: a Keras layer mapping ``[N, H, W, C_a]`` (with a context,
            ``[N, H, W, C_a + context_channels]``) to ``[N, H, W, 2 * C_b]`` (raw
            log-scale, then shift). Default: a ``ResNetConditioner``.
        num_filters: hidden width of the default conditioner.
        num_blocks: residual blocks of the default conditioner.
        conditioner_batch_norm: batch normalization inside the default conditioner.
        batch_norm_momentum: decay of its moving averages.
        rematerialize: recompute the conditioner's activations in the backward pass
            of training-mode calls instead of storing them.
        context_dim: size ``K`` of the context vector; ``None`` (default) builds an
            unconditional coupling.
        context_channels: features of the context embedding given to the conditioner.
        dtype: Keras dtype policy of the layers (e.g. ``"float64"``, ``"mixed_bfloat16"``).
        validate_args: passed to ``tfb.Bijector``.
        name: bijector name.
    """

    def __init__(
        self,
        *,
        mask_type: str,
        parity: int = 0,
        event_shape=None,
        conditioner: keras.layers.Layer | None = None,
        num_filters: int = 64,
        num_blocks: int = 8,
        conditioner_batch_norm: bool = False,
        batch_norm_momentum: float = 0.9,
        rematerialize: bool = False,
        context_dim: int | None = None,
        context_channels: int = 8,
        dtype=None,
        validate_args: bool = False,
        name: str | None = None,
    ):
        parameters = dict(locals())
        self._mask_type = check_mask_type(mask_type)
        self._context_dim = check_context_dim(context_dim)
        self._context_channels = check_int(context_channels, name="context_channels")
        self._context_layer = None
        self._parity = check_parity(parity)
        self._conditioner = conditioner
        self._num_filters = check_int(num_filters, name="num_filters")
        self._num_blocks = check_int(num_blocks, name="num_blocks", low=0)
        self._conditioner_batch_norm = bool(conditioner_batch_norm)
        self._batch_norm_momentum = check_fraction(batch_norm_momentum, name="batch_norm_momentum")
        if not isinstance(rematerialize, (bool, np.bool_)):
            raise ValueError(f"rematerialize must be a bool; received {rematerialize!r}.")
        self._rematerialize = bool(rematerialize)
        self._layer_dtype = dtype
        self._scale_layer = None
        self._event_shape = None
        self._mask = None
        self.network_calls = 0
        super().__init__(
            forward_min_event_ndims=3,
            validate_args=validate_args,
            parameters=parameters,
            name=name or f"affine_coupling_{mask_type}_{parity}",
        )
        if event_shape is not None:
            self.build(event_shape)

    # Building -----------------------------------------------------------------
    def build(self, event_shape) -> None:
        """Creates the conditioner and scale layers for an ``[H, W, C]`` event.

        Raises:
            ValueError: naming the shape, for an event this coupling cannot transform
                (another shape than the one it was built for, an odd channel count
                with a channel mask, a rank below 3).
        """
        h, w, c = check_event_shape(event_shape, name=f"{self.name} event")
        self._validate_event_shape((h, w, c), inverse=False)
        if self._event_shape is not None:
            return
        with eager_scope():
            self._build_layers(h, w, c)
        self._track_variables(self.variables)

    def _validate_event_shape(self, event, *, inverse: bool) -> None:
        check_built_event(event, self._event_shape, name=self.name)
        c = event[-1]
        if self._mask_type == "channel" and c is not None and c % 2:
            raise ValueError(
                f"A channel mask splits channels in halves and needs an even channel count; "
                f"received event shape {format_event(event)}."
            )

    def _has_moving_statistics(self) -> bool:
        return bool(self.non_trainable_variables)

    def _build_layers(self, h: int, w: int, c: int) -> None:
        c_a = c if self._mask_type == "checkerboard" else c // 2
        c_b = c_a
        extra = 0
        if self._context_dim is not None:
            self._context_layer = ContextEmbedding(
                self._context_channels, dtype=self._layer_dtype, name=f"{self.name}_context"
            )
            self._context_layer.build((None, self._context_dim))
            extra = self._context_channels
        if self._conditioner is None:
            self._conditioner = ResNetConditioner(
                c_b,
                num_filters=self._num_filters,
                num_blocks=self._num_blocks,
                batch_norm=self._conditioner_batch_norm,
                batch_norm_momentum=self._batch_norm_momentum,
                dtype=self._layer_dtype,
                name=f"{self.name}_net",
            )
        self._scale_layer = TanhScale(dtype=self._layer_dtype, name=f"{self.name}_scale")
        self._conditioner.build((None, h, w, c_a + extra))
        self._scale_layer.build((None, h, w, c_b))
        if self._mask_type == "checkerboard":
            self._mask = checkerboard(h, w, parity=self._parity)
        self._event_shape = (h, w, c)

    @property
    def built(self) -> bool:
        return self._event_shape is not None

    @property
    def conditional(self) -> bool:
        """Whether the coupling takes a context (built with ``context_dim``)."""
        return self._context_dim is not None

    @property
    def context_dim(self) -> int | None:
        return self._context_dim

    @property
    def context_layer(self) -> ContextEmbedding | None:
        """The context embedding (``None`` for an unconditional or unbuilt coupling)."""
        return self._context_layer

    @property
    def conditioner(self) -> keras.layers.Layer | None:
        return self._conditioner

    @property
    def rematerialize(self) -> bool:
        """Whether training-mode calls recompute the conditioner's activations."""
        return self._rematerialize

    @property
    def mask_type(self) -> str:
        return self._mask_type

    @property
    def parity(self) -> int:
        return self._parity

    @property
    def layers(self) -> list:
        """The Keras layers this bijector uses (empty until built)."""
        if not self.built:
            return []
        layers = [self._conditioner, self._scale_layer]
        return layers + [self._context_layer] if self._context_layer is not None else layers

    # Math ---------------------------------------------------------------------
    def _split(self, x):
        """Returns ``(fixed, updated)`` parts as the conditioner and the update see them."""
        if self._mask_type == "checkerboard":
            mask = ops.cast(self._mask, x.dtype)
            return x * mask, x
        half = self._event_shape[-1] // 2
        first, second = x[..., :half], x[..., half:]
        return (first, second) if self._parity == 0 else (second, first)

    def _merge(self, fixed, updated):
        if self._mask_type == "checkerboard":
            return updated
        return ops.concatenate([fixed, updated] if self._parity == 0 else [updated, fixed], axis=-1)

    def _context_features(self, context, fixed):
        """The embedded context ``[M, H, W, context_channels]`` for the flattened batch of ``fixed``."""
        h, w, _ = self._event_shape
        context = check_context(context, self._context_dim, name=self.name)
        if tuple(context.shape[:-1]) != tuple(fixed.shape[:-3]) or None in tuple(context.shape[:-1]):
            # Broadcast the context's batch dimensions against the input's.
            zeros = ops.zeros_like(ops.cast(fixed[..., 0, 0, :1], context.dtype))
            context = context + zeros
        flat = ops.reshape(context, (-1, self._context_dim))
        return self._context_layer(flat, height=h, width=w)

    def _scale_and_shift(self, fixed, training: bool = False, context=None):
        """One conditioner pass: log-scale ``s`` and shift ``t``, zero on the fixed part."""
        self.network_calls += 1
        h, w, _ = self._event_shape
        batch_shape = ops.shape(fixed)[:-3]
        flat = ops.reshape(fixed, (-1, h, w, fixed.shape[-1]))
        if self._context_layer is not None:
            features = self._context_features(context, fixed)
            flat = ops.concatenate([flat, ops.cast(features, flat.dtype)], axis=-1)
        if self._rematerialize and training:
            out = rematerialized_call(self._conditioner, flat, training=training)
        else:
            out = self._conditioner(flat, training=training)
        raw_s, t = ops.split(out, 2, axis=-1)
        s = ops.cast(self._scale_layer(raw_s), fixed.dtype)
        t = ops.cast(t, fixed.dtype)
        if self._mask_type == "checkerboard":
            free = 1.0 - ops.cast(self._mask, fixed.dtype)
            s, t = s * free, t * free
        out_shape = tuple(batch_shape) + tuple(s.shape[-3:])
        return ops.reshape(s, out_shape), ops.reshape(t, out_shape)

    def _transform(self, x, *, inverse: bool, training: bool = False, conditional_input=None):
        self.build(x.shape[-3:])
        fixed, updated = self._split(x)
        s, t = self._scale_and_shift(fixed, training=training, context=conditional_input)
        if inverse:
            updated = updated * ops.exp(s) + t
            log_det = ops.sum(s, axis=(-3, -2, -1))
        else:
            updated = (updated - t) * ops.exp(-s)
            log_det = -ops.sum(s, axis=(-3, -2, -1))
        return self._merge(fixed if self._mask_type == "channel" else None, updated), log_det

    def _elementwise(self, x, s, t):
        """The data-to-latent update given the conditioner's outputs: ``(z, log_det)``."""
        fixed, updated = self._split(x)
        updated = updated * ops.exp(s) + t
        return self._merge(fixed if self._mask_type == "channel" else None, updated), ops.sum(s, axis=(-3, -2, -1))

    def _reverse(
        self, y, g_y, g_log_det, record, *, inverse: bool, training: bool, grads: dict, conditional_input=None
    ):
        """Rebuilds the input from the latent ``y`` with one conditioner pass (see the class)."""
        context = {} if conditional_input is None else {"conditional_input": conditional_input}
        if not inverse:
            return super()._reverse(
                y, g_y, g_log_det, record, inverse=inverse, training=training, grads=grads, **context
            )
        variables, state_variables = self.trainable_variables, self.non_trainable_variables
        params, state = read_values(variables), read_values(state_variables)

        def network(params, fixed, *context):
            return stateless_call(
                variables, state_variables, params, state, self._scale_and_shift, fixed, training, *context
            )[0]

        fixed, updated = self._split(y)
        primals = (params, fixed) + ((conditional_input,) if context else ())
        (s, t), network_pullback = vjp(network, *primals)
        x = self._merge(fixed if self._mask_type == "channel" else None, (updated - t) * ops.exp(-s))
        _, elementwise_pullback = vjp(self._elementwise, x, s, t)
        g_x, g_s, g_t = elementwise_pullback((g_y, g_log_det))
        g_params, g_fixed, *g_context = network_pullback((g_s, g_t))
        _, split_pullback = vjp(lambda x: self._split(x)[0], x)
        (g_x_through_fixed,) = split_pullback(g_fixed)
        add_gradients(grads, variables, g_params)
        if g_context:
            add_gradients(grads, [CONTEXT_KEY], g_context)
        return x, g_x + g_x_through_fixed


def check_context_dim(context_dim) -> int | None:
    """``context_dim`` as an int >= 1 or ``None``, else ``ValueError`` naming it."""
    return check_int(context_dim, name="context_dim", allow_none=True)


def check_context(context, context_dim: int, *, name: str):
    """The context as a float tensor ``[..., K]``, or ``ValueError`` naming its shape or dtype."""
    context = ops.convert_to_tensor(context)
    dtype = keras.backend.standardize_dtype(context.dtype)
    if "float" not in dtype:
        raise ValueError(
            f"{name} takes a float context [..., {context_dim}] as conditional_input (one-hot labels or "
            f"any feature vector); received dtype {dtype}. Integer labels: one-hot them first."
        )
    if len(context.shape) < 1 or context.shape[-1] != context_dim:
        raise ValueError(
            f"{name} was built with context_dim={context_dim} and needs conditional_input of shape "
            f"[..., {context_dim}]; received shape {list(context.shape)}."
        )
    return context
