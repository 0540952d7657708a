"""The one walk over ``tfb.Chain``/``tfb.Invert`` (``bijectors.walk``) and the functions
on top of it: the order and direction of every step, checked against TFP's own chains."""

import re

import keras
import numpy as np
import pytest

from helpers import assert_close, fresh, randomize, tensor, to_numpy
from tfp_realnvp import BatchNormalization, FactorOut, Squeeze, tfb
from tfp_realnvp.bijectors.one_pass import check_nested_event_shape, one_pass_steps, transform
from tfp_realnvp.bijectors.reversible import record_transform, reverse_transform
from tfp_realnvp.bijectors.walk import Leaf, leaves
from tfp_realnvp.internal.gradients import vjp


def named(*names):
    return [tfb.Identity(name=name) for name in names]


def walked(bijector, **kwargs):
    return [(leaf.bijector.name, leaf.inverse) for leaf in leaves(bijector, **kwargs)]


def test_leaves_in_the_order_and_direction_a_call_applies_them():
    a, b, c, d = named("a", "b", "c", "d")
    nested = tfb.Chain([a, tfb.Invert(b), tfb.Chain([c, d])])
    # inverse: a chain applies its first bijector first; an Invert flips the direction.
    assert walked(nested, inverse=True) == [("a", True), ("b", False), ("c", True), ("d", True)]
    # forward: the last first.
    assert walked(nested, inverse=False) == [("d", False), ("c", False), ("b", True), ("a", False)]
    # An inverted chain is its reverse, each step in the other direction.
    assert walked(tfb.Invert(tfb.Chain([a, b])), inverse=True) == [("b", False), ("a", False)]
    assert walked(tfb.Invert(tfb.Invert(a)), inverse=True) == [("a", True)]
    # A step that is neither is its own only leaf; an empty chain has none.
    assert list(leaves(a, inverse=False)) == [Leaf(a, False)]
    assert walked(tfb.Chain([]), inverse=True) == []


def test_declared_order_lists_the_steps_as_written():
    a, b, c = named("a", "b", "c")
    nested = tfb.Chain([a, tfb.Invert(tfb.Chain([b, c]))])
    assert walked(nested, inverse=False, order="declared") == [("a", False), ("b", True), ("c", True)]
    with pytest.raises(ValueError, match=re.escape("order must be one of ['applied', 'declared']; received 'up'.")):
        list(leaves(a, inverse=True, order="up"))


def test_one_pass_steps_in_declared_order():
    steps = [BatchNormalization(event_shape=(2, 2, 2), name=f"bn{i}", dtype="float64") for i in range(3)]
    flow = tfb.Chain([steps[0], tfb.Invert(tfb.Chain([steps[1], Squeeze(), steps[2]]))])
    assert list(one_pass_steps(flow)) == steps
    factor_out = FactorOut(flow)
    assert list(one_pass_steps(factor_out)) == [factor_out]  # a step: its parts are its own


def scalar_chain():
    """TFP bijectors in every arrangement the walk handles (log-dets summed over the event)."""
    return tfb.Chain(
        [
            tfb.Chain([tfb.Exp(), tfb.Invert(tfb.Scale(tensor(0.25)))]),
            tfb.Shift(tensor(0.5)),
            tfb.Invert(tfb.Chain([tfb.Scale(tensor(3.0)), tfb.Shift(tensor(-1.0))])),
        ]
    )


@pytest.mark.parametrize("inverse", [True, False], ids=["inverse", "forward"])
def test_transform_agrees_with_tfp(inverse):
    chain = scalar_chain()
    rng = np.random.default_rng(0)
    x = tensor(rng.uniform(0.5, 2.0, size=(2, 2, 2, 2)))
    value, log_det = transform(chain, x, inverse=inverse, training=False)
    expected = chain.inverse(fresh(x)) if inverse else chain.forward(fresh(x))
    ldj = chain.inverse_log_det_jacobian if inverse else chain.forward_log_det_jacobian
    assert_close(value, expected, atol=1e-12)
    assert_close(log_det, ldj(fresh(x), event_ndims=3), atol=1e-12)
    recorded, recorded_log_det, record = record_transform(chain, fresh(x), inverse=inverse, training=False)
    assert_close(recorded, expected, atol=1e-12)
    assert_close(recorded_log_det, log_det, atol=1e-12)
    assert record == [None] * len(list(leaves(chain, inverse=inverse)))


def test_reverse_transform_rebuilds_the_input_and_refuses_another_record():
    bn = BatchNormalization(event_shape=(2, 2, 2), dtype="float64")
    randomize(bn.variables, seed=1)
    chain = tfb.Chain([tfb.Exp(), tfb.Invert(tfb.Chain([tfb.Scale(tensor(3.0)), tfb.Shift(tensor(-1.0))])), bn])
    x = tensor(np.random.default_rng(1).uniform(0.5, 2.0, size=(3, 2, 2, 2)))
    y, log_det, record = record_transform(chain, x, inverse=True, training=False)
    # Exp, then the inverted chain's Shift and Scale, then the batch norm (its statistics).
    assert len(record) == 4 and record[:3] == [None, None, None] and len(record[3]) == 2
    g_y = tensor(np.random.default_rng(2).normal(size=(3, 2, 2, 2)))
    g_log_det = tensor(np.array([0.5, -1.0, 2.0]))
    rebuilt, g_x = reverse_transform(chain, y, g_y, g_log_det, record, inverse=True, training=False, grads={})
    assert_close(rebuilt, to_numpy(x), atol=1e-12)
    # The cotangent of the input is autodiff's through the whole chain.
    _, pull = vjp(lambda x: transform(chain, keras.ops.copy(x), inverse=True, training=False), fresh(x))
    (expected,) = pull((g_y, g_log_det))
    assert_close(g_x, expected, atol=1e-10)
    ones = tensor(np.ones((3, 2, 2, 2)))
    with pytest.raises(ValueError, match=re.escape("one entry per step (4); received 3 entries.")):
        reverse_transform(chain, y, ones, tensor(np.ones(3)), record[:3], inverse=True, training=False, grads={})


def test_nested_event_shapes_follow_the_walk():
    bn = BatchNormalization(event_shape=(2, 2, 8), dtype="float64")
    flow = tfb.Chain([tfb.Invert(Squeeze()), bn, Squeeze()])
    assert check_nested_event_shape(flow, (4, 4, 2), inverse=True) == (4, 4, 2)
    assert check_nested_event_shape(tfb.Invert(flow), (4, 4, 2), inverse=False) == (4, 4, 2)
    assert check_nested_event_shape(tfb.Chain([tfb.Invert(Squeeze()), bn]), (4, 4, 2), inverse=True) == (2, 2, 8)
    with pytest.raises(ValueError, match=re.escape("[2, 2, 4]")):  # the squeezed event, which bn refuses
        check_nested_event_shape(flow, (4, 4, 1), inverse=True)
