"""``RealNVP``'s Keras training side: compile, loss and metrics, fit/evaluate, batch statistics."""

from __future__ import annotations

import keras
from keras import ops

from tfp_realnvp.internal.backend import backend_name
from tfp_realnvp.internal.replicas import num_replicas_in_sync
from tfp_realnvp.internal.summary import equip_keras_tensorboard
from tfp_realnvp.model import labels as labels_lib
from tfp_realnvp.model.adam import Adam
from tfp_realnvp.model.batch_norm_refresh import make_refresh_callback
from tfp_realnvp.model.inputs import InputKind, classify_fit_input

# The compile arguments a loaded model is re-compiled with (``compile_from_config``).
_RECOMPILED_KEYS = ("optimizer", "jit_compile", "steps_per_execution")


class FitMixin:
    """``RealNVP`` methods that Keras' ``fit``/``evaluate`` machinery calls or that wrap it.

    The model provides ``l2_scale``, ``refresh_batches``, ``seed``, ``num_classes``,
    ``dequantizer`` (``q(u | x)`` or ``None``),
    ``conditional``, the flow, ``_bpd_tracker`` (the ``bits_per_dim`` mean, held with its
    direction by ``internal.backend.directed_metrics``), ``_compiled``, ``_compiled_fn``,
    ``_inputs_log_prob`` and ``to_bits_per_dim``.
    """

    def compile(self, optimizer=None, *, learning_rate: float = 1e-3, clipnorm: float | None = 1.0, **kwargs):
        """``keras.Model.compile`` with the paper's recipe as defaults.

        Args:
            optimizer: any Keras optimizer; default ``tfp_realnvp.Adam`` (Keras' Adam
                in fewer graph ops) at ``learning_rate`` with global gradient-norm
                clipping at ``clipnorm``.
            learning_rate: used only for the default optimizer.
            clipnorm: global gradient-norm bound of the default optimizer (``None``: off).
            **kwargs: forwarded (``jit_compile``, ``steps_per_execution``, ...). A
                ``loss`` argument is rejected: the loss is the likelihood.
        """
        if "loss" in kwargs and kwargs["loss"] is not None:
            raise ValueError(f"RealNVP trains on its own likelihood; received loss={kwargs['loss']!r}.")
        if optimizer is None:
            optimizer = Adam(learning_rate=learning_rate, global_clipnorm=clipnorm)
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
        self.compile(**{k: v for k, v in config.items() if k in _RECOMPILED_KEYS})

    def l2_penalty(self):
        """``l2_scale * sum(g**2)`` over the weight-norm scales (the flow's and, with
        variational dequantization, those of ``q(u | x)``), float32."""
        scales = list(self._flow.weight_scales())
        if self.dequantizer is not None:
            scales += self.dequantizer.weight_scales()
        squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in scales]
        return self.l2_scale * ops.sum(ops.stack(squares))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean bits/dim of the batch plus the L2 penalty (and any ``add_loss`` terms).

        ``y_pred`` is ``call``'s output: ``log p(x + u)``, or with variational
        dequantization the bound ``log p(x + u) - log q(u | x)``, so ``q`` trains jointly.

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
        bits = self.to_bits_per_dim(y_pred)
        for tracker in self._bpd_tracker.metrics:
            tracker.update_state(bits)
        return self.get_metrics_result()

    def fit(self, x=None, y=None, batch_size=None, epochs=1, callbacks=None, **kwargs):
        """``keras.Model.fit``, then batch-norm averages that describe the trained flow.

        At the end of every epoch (before validation and before any callback) the
        batch-norm moving averages are re-estimated from ``refresh_batches`` batches
        of the training data (``tfp_realnvp.model.batch_norm_refresh``), so inference-mode
        numbers right after ``fit`` (``val_bits_per_dim``, ``evaluate``,
        ``bits_per_dim``, samples, saved models, exports) describe the weights as
        trained. ``x`` must be a NumPy array or a ``tf.data.Dataset`` for that; other
        sources train as usual, with a warning.

        Where TensorFlow is not installed (JAX), every ``keras.callbacks.TensorBoard`` in
        ``callbacks`` writes through ``tfp_realnvp.internal.summary`` (the ``tensorboard``
        package) instead of ``tf.summary``.
        """
        if self.conditional:
            x, y = labels_lib.labelled_fit_input(x, y, num_classes=self.num_classes)
            if kwargs.get("validation_data") is not None:
                kwargs["validation_data"] = labels_lib.labelled_validation_data(
                    kwargs["validation_data"], num_classes=self.num_classes
                )
        callbacks = list(callbacks or [])
        # Without TensorFlow, Keras' TensorBoard callbacks write through the tensorboard package.
        equip_keras_tensorboard(callbacks)
        refresh = make_refresh_callback(
            self, x, batch_size=batch_size, num_batches=self.refresh_batches, seed=self.seed or 0
        )
        if refresh is not None:
            callbacks.insert(0, refresh)
        # Keras shuffles in-memory arrays only: for a dataset, PyDataset or generator its
        # default shuffle=True is ignored with a warning, so it is not passed for them.
        kwargs.setdefault("shuffle", classify_fit_input(x, y).kind in (InputKind.ARRAYS, InputKind.PAIR))
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
        if "statistics" not in self._compiled:

            def log_prob_with_batch_statistics(inputs):
                return self._inputs_log_prob(inputs, noise_training=False, training=True)

            if backend_name() == "tensorflow":
                step = self._compiled_fn("statistics_tf", log_prob_with_batch_statistics)
            else:
                step = self._jax_statistics_step(log_prob_with_batch_statistics)
            self._compiled["statistics"] = step
        return self._compiled["statistics"]

    def _jax_statistics_step(self, fn):
        """``fn(inputs)`` run by ``jax.jit`` as a pure function of the variables; the flow's
        non-trainable variables (its batch-norm state) are assigned what it leaves them."""
        import jax

        flow = self._flow
        others = [v for v in self.variables if all(v is not w for w in flow.variables)]

        def pure(trainable, state, other_values, images):
            with keras.StatelessScope(state_mapping=list(zip(others, other_values))):
                return flow.stateless_call(trainable, state, fn, images)[1]

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

        return step
