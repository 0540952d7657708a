"""The TFP substrate follows the Keras backend; concreteness checks; test environment; the
TFP and Keras internals that internal/backend.py relies on, as the installed versions have them."""

import re

import keras
import numpy as np
import pytest

import tfp_realnvp
from helpers import BACKEND, compiled, tensor
from tfp_realnvp.internal import backend


def test_backend_name_is_the_keras_backend():
    assert backend.backend_name() == keras.backend.backend() == BACKEND
    assert BACKEND in backend.SUPPORTED_BACKENDS


def test_tfp_substrate_matches_backend():
    expected = "tensorflow_probability" if BACKEND == "tensorflow" else "tensorflow_probability.substrates.jax"
    assert backend.tfp.__name__ == expected
    assert backend.load_tfp().__name__ == expected
    assert tfp_realnvp.tfb is backend.tfp.bijectors
    assert tfp_realnvp.tfd is backend.tfp.distributions
    assert backend.ps.__name__.startswith(
        "tensorflow_probability.python" if BACKEND == "tensorflow" else "tensorflow_probability.substrates.jax"
    )
    # The distributions work on the backend's arrays.
    value = tfp_realnvp.tfd.Normal(0.0, 1.0).log_prob(keras.ops.zeros((3,)))
    assert keras.ops.is_tensor(value)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(value), np.full(3, -0.5 * np.log(2 * np.pi)), rtol=1e-6)


@pytest.mark.parametrize("name", ["torch", "numpy", "mlx"])
def test_unsupported_backend_is_named(name):
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        backend.load_tfp(name)


def test_is_concrete():
    x = tensor(np.ones(3))
    assert backend.is_concrete(x)
    assert backend.is_concrete(np.ones(3))
    seen = []

    def fn(t):
        seen.append(backend.is_concrete(t))
        return t * 2

    compiled(fn)(x)
    assert seen == [False]


def test_float64_tensors_keep_their_precision():
    x = tensor(np.array([1.0 + 1e-12]))
    assert keras.backend.standardize_dtype(x.dtype) == "float64"
    assert float(keras.ops.convert_to_numpy(x - 1.0)[0]) == pytest.approx(1e-12, rel=1e-3)


def test_public_names():
    for name in tfp_realnvp.__all__:
        assert getattr(tfp_realnvp, name) is not None
    assert issubclass(tfp_realnvp.AffineCoupling, tfp_realnvp.tfb.Bijector)
    assert issubclass(tfp_realnvp.MultiScaleFlow, tfp_realnvp.tfb.Bijector)
    assert issubclass(tfp_realnvp.ResNetConditioner, keras.layers.Layer)


# TFP internals: each test fails when TFP changes what internal/backend.py relies on.
tfb = backend.tfb


class Plain(tfb.Bijector):
    """A bijector that is not a ``CompositeTensor`` (as every bijector of this package),
    taking keyword arguments as a ``OnePassBijector`` does; counts its forward calls."""

    def __init__(self, scale: float = 2.0):
        parameters = dict(locals())
        self.calls = 0
        super().__init__(forward_min_event_ndims=0, parameters=parameters, name="plain")

    def _forward(self, x, **kwargs):
        self.calls += 1
        return x * 2.0

    def _inverse(self, y, **kwargs):
        return y / 2.0

    def _forward_log_det_jacobian(self, x, **kwargs):
        return keras.ops.zeros_like(x) + np.log(2.0)


class Keyed(backend.IdentityKeyedBijector, Plain):
    pass


def test_chain_and_invert_types_cover_what_tfp_returns():
    for steps in ([tfb.Exp()], [Plain()], [tfb.Exp(), Plain()], []):
        chain = tfb.Chain(steps)
        assert isinstance(chain, backend.CHAIN_TYPES) and list(chain.bijectors) == steps
    for inner in (tfb.Exp(), Plain()):
        inverted = tfb.Invert(inner)
        assert isinstance(inverted, backend.INVERT_TYPES) and inverted.bijector is inner
    # The private classes are what TFP returns for steps that are not CompositeTensors,
    # and they are not the public ones: the reason the names are looked up.
    assert not isinstance(tfb.Chain([Plain()]), tfb.Chain)
    assert not isinstance(tfb.Invert(Plain()), tfb.Invert)
    for bijector in (tfb.Exp(), Plain(), tfb.Chain([Plain()])):
        assert not isinstance(bijector, backend.INVERT_TYPES)
    assert not isinstance(tfb.Invert(tfb.Chain([Plain()])), backend.CHAIN_TYPES)


def test_identity_keyed_bijectors_equal_only_themselves():
    # TFP compares bijectors by their constructor arguments...
    assert Plain(3.0) == Plain(3.0) and hash(Plain(3.0)) == hash(Plain(3.0))
    # ...unless the private hook says otherwise.
    a, b = Keyed(3.0), Keyed(3.0)
    assert a != b and a == a and hash(a) != hash(b)


def test_a_cached_call_is_found_read_and_forgotten():
    bijector = Plain()
    x = tensor(np.ones(3))
    y = bijector.forward(x, training=True)
    assert bijector.calls == 1
    bijector.forward(x, training=True)
    assert bijector.calls == 1  # answered by the cache

    mine = [call for call in backend.cached_calls(bijector._cache) if call.owner is bijector]
    forward = [call for call in mine if call.name == "_forward"]
    inverse = [call for call in mine if call.name == "_inverse"]
    assert len(forward) == 1 and forward[0].input() is x and forward[0].kwargs == {"training": True}
    assert len(inverse) == 1 and inverse[0].input() is y and inverse[0].kwargs == {"training": True}
    # Every bijector's cache reads the one store.
    assert any(call.owner is bijector for call in backend.cached_calls(Plain()._cache))

    forward[0].forget()
    assert not any(c.owner is bijector and c.name == "_forward" for c in backend.cached_calls(bijector._cache))
    bijector.forward(x, training=True)
    assert bijector.calls == 2  # computed again


def test_cached_attributes_are_shared_by_both_sides_of_a_call():
    bijector = Plain()
    x = tensor(np.ones(3))
    attributes = backend.cached_attributes(bijector._cache, x, {"training": False}, inverse=False)
    attributes["note"] = "written before the call"
    y = bijector.forward(x, training=False)
    assert backend.cached_attributes(bijector._cache, y, {"training": False}, inverse=True) is attributes
    assert backend.cached_attributes(bijector._cache, x, {"training": False}, inverse=False) is attributes
    # Other keyword arguments are another entry.
    assert "note" not in backend.cached_attributes(bijector._cache, x, {"training": True}, inverse=False)


def test_prefer_static_keeps_static_shapes_static():
    shape = backend.ps.concat([np.array([2], np.int32), backend.ps.stack([3, 4])], axis=0)
    assert isinstance(shape, np.ndarray) and shape.tolist() == [2, 3, 4]


@pytest.mark.tf_only
def test_the_tensorflow_variable_inside_a_keras_variable():
    import tensorflow as tf

    variable = keras.Variable(np.zeros(2, np.float32))
    (inner,) = backend.tensorflow_variables([variable])
    assert isinstance(inner, tf.Variable) and not isinstance(variable, tf.Variable)
    variable.assign(np.ones(2, np.float32))
    np.testing.assert_array_equal(inner.numpy(), np.ones(2))


def _model_with(metric_holder=None):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    if metric_holder is not None:
        model.scores = metric_holder
    return model


@pytest.mark.parametrize(("direction", "better", "worse"), [("down", 1.0, 2.0), ("up", 2.0, 1.0)])
def test_keras_monitor_callbacks_read_the_direction_of_directed_metrics(direction, better, worse):
    holder = backend.directed_metrics([keras.metrics.Mean(name="score")], direction=direction, name="score")
    model = _model_with(holder)
    assert [m.name for m in model.metrics] == ["score"]
    # The holder's result is its members' results, logged under their own names.
    holder.metrics[0].update_state(np.array([1.0, 3.0], np.float32))
    assert {k: float(v) for k, v in model.get_metrics_result().items()} == {"score": 2.0}
    holder.reset_state()
    assert float(holder.metrics[0].result()) == 0.0
    stop = keras.callbacks.EarlyStopping(monitor="val_score", patience=0)  # mode="auto"
    stop.set_model(model)
    stop.on_train_begin()
    stop.on_epoch_end(0, {"val_score": better})
    stop.on_epoch_end(1, {"val_score": worse})
    assert model.stop_training and stop.best == better


def test_keras_monitor_callbacks_cannot_tell_the_direction_of_a_plain_metric():
    # What directed_metrics is for: without it Keras refuses mode="auto".
    model = _model_with()
    model.score = keras.metrics.Mean(name="score")
    stop = keras.callbacks.EarlyStopping(monitor="val_score")
    stop.set_model(model)
    stop.on_train_begin()
    with pytest.raises(ValueError, match="automatically determine"):
        stop.on_epoch_end(0, {"val_score": 1.0})


def test_directed_metrics_refuse_an_unknown_direction():
    with pytest.raises(ValueError, match="'sideways'"):
        backend.directed_metrics([keras.metrics.Mean()], direction="sideways", name="x")
