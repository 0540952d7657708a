"""AffineCoupling: masks, the affine update, identity start, batch dimensions, lazy
building, custom and batch-normalized conditioners, argument checks.

Exactness, log-dets, event shapes and the cache are checked for every mask in
``test_conformance``."""

import re

import numpy as np
import pytest

from helpers import (
    assert_close,
    check_round_trips,
    fresh,
    randomize,
    tensor,
    to_numpy,
    variable_values,
)
from tfp_realnvp import AffineCoupling
from tfp_realnvp.bijectors import checkerboard

EVENT = (4, 4, 2)
MASKS = [("checkerboard", 0), ("checkerboard", 1), ("channel", 0), ("channel", 1)]
MASK_IDS = [f"{kind}-{parity}" for kind, parity in MASKS]


def make_coupling(kind, parity, *, event=EVENT, dtype="float64", seed=None, **kwargs):
    kwargs = {"num_filters": 4, "num_blocks": 1, **kwargs}
    coupling = AffineCoupling(mask_type=kind, parity=parity, event_shape=event, dtype=dtype, **kwargs)
    if seed is not None:
        randomize(coupling.variables, seed)
    return coupling


@pytest.fixture(scope="module", params=MASKS, ids=MASK_IDS)
def coupling(request):
    kind, parity = request.param
    return make_coupling(kind, parity, seed=10 + MASKS.index(request.param))


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(1)
    return tensor(rng.normal(size=(3,) + EVENT)), tensor(rng.normal(size=(3,) + EVENT))


def fixed_part(kind, parity, value):
    """The entries of ``value`` that the mask keeps fixed (NumPy)."""
    value = to_numpy(value)
    if kind == "checkerboard":
        mask = checkerboard(value.shape[-3], value.shape[-2], parity=parity)[..., 0].astype(bool)
        return value[..., mask, :]
    half = value.shape[-1] // 2
    return value[..., :half] if parity == 0 else value[..., half:]


def updated_part(kind, parity, value):
    value = to_numpy(value)
    if kind == "checkerboard":
        mask = checkerboard(value.shape[-3], value.shape[-2], parity=parity)[..., 0].astype(bool)
        return value[..., ~mask, :]
    half = value.shape[-1] // 2
    return value[..., half:] if parity == 0 else value[..., :half]


def test_mask_keeps_fixed_part_and_changes_the_rest(coupling, points):
    x, y = points
    kind, parity = coupling.mask_type, coupling.parity
    for out, inp in ((coupling.forward(x), x), (coupling.inverse(y), y)):
        np.testing.assert_array_equal(fixed_part(kind, parity, out), fixed_part(kind, parity, inp))
        assert np.min(np.abs(updated_part(kind, parity, out) - updated_part(kind, parity, inp))) > 0


def scale_updated_part(kind, parity, value, factor):
    """``value`` (NumPy) with the entries that the mask updates multiplied by ``factor``."""
    out = np.array(value, copy=True)
    if kind == "checkerboard":
        fixed = checkerboard(out.shape[-3], out.shape[-2], parity=parity).astype(bool)
        return np.where(fixed, out, factor * out)
    half = out.shape[-1] // 2
    out[..., slice(half, None) if parity == 0 else slice(0, half)] *= factor
    return out


def test_update_is_affine_in_the_updated_part(coupling, points):
    """``z_b = y_b * exp(s(y_a)) + t(y_a)``: affine in ``y_b``, log-det independent of it."""
    y, _ = points
    kind, parity = coupling.mask_type, coupling.parity
    y_np = to_numpy(y)
    z0, z1, z2 = (
        to_numpy(coupling.inverse(tensor(scale_updated_part(kind, parity, y_np, f)))) for f in (0.0, 1.0, 2.0)
    )
    assert_close(updated_part(kind, parity, z2 - z1), updated_part(kind, parity, z1 - z0), atol=1e-10)
    ildj = [
        coupling.inverse_log_det_jacobian(tensor(scale_updated_part(kind, parity, y_np, f)), event_ndims=3)
        for f in (0.0, 2.0)
    ]
    assert_close(ildj[0], ildj[1], atol=1e-10)


@pytest.mark.parametrize("kind, parity", MASKS, ids=MASK_IDS)
def test_identity_at_initialisation(kind, parity, points):
    coupling = make_coupling(kind, parity)
    x, _ = points
    np.testing.assert_array_equal(to_numpy(coupling.forward(x)), to_numpy(x))
    np.testing.assert_array_equal(to_numpy(coupling.inverse(fresh(x))), to_numpy(x))
    np.testing.assert_array_equal(to_numpy(coupling.forward_log_det_jacobian(fresh(x), event_ndims=3)), np.zeros(3))


def test_extra_batch_dimensions():
    coupling = make_coupling("checkerboard", 1, seed=3)
    rng = np.random.default_rng(2)
    x = tensor(rng.normal(size=(2, 3) + EVENT))
    y = coupling.forward(x)
    assert tuple(y.shape) == (2, 3) + EVENT
    ldj = coupling.forward_log_det_jacobian(x, event_ndims=3)
    assert tuple(ldj.shape) == (2, 3)
    # Each example transforms as it would alone.
    flat = coupling.forward(tensor(to_numpy(x).reshape((6,) + EVENT)))
    assert_close(to_numpy(y).reshape((6,) + EVENT), flat, atol=1e-12)
    check_round_trips(coupling, x, tensor(rng.normal(size=(2, 3) + EVENT)), atol=1e-10)


def test_float32_round_trip():
    coupling = make_coupling("channel", 0, dtype="float32", seed=4)
    rng = np.random.default_rng(3)
    x = tensor(rng.normal(size=(3,) + EVENT), "float32")
    y = tensor(rng.normal(size=(3,) + EVENT), "float32")
    assert coupling.forward(x).dtype == x.dtype
    check_round_trips(coupling, x, y, atol=1e-4, dtype="float32")


def test_builds_lazily_from_first_input(points):
    coupling = AffineCoupling(mask_type="channel", parity=1, num_filters=4, num_blocks=1, dtype="float64")
    assert not coupling.built
    assert coupling.variables == [] and coupling.layers == []
    x, _ = points
    coupling.forward(x)
    assert coupling.built
    assert len(coupling.trainable_variables) > 0
    with pytest.raises(ValueError, match=re.escape("[4, 6, 2]")):
        coupling.forward(tensor(np.zeros((1, 4, 6, 2))))


def test_custom_conditioner_is_used(points):
    import keras

    class Constant(keras.layers.Layer):
        """Outputs raw scale ``a`` and shift ``b`` everywhere."""

        def call(self, x):
            ones = keras.ops.ones_like(x[..., :1])
            return keras.ops.concatenate([0.3 * ones, -0.7 * ones], axis=-1)

    coupling = AffineCoupling(
        mask_type="channel", parity=0, event_shape=EVENT, conditioner=Constant(dtype="float64"), dtype="float64"
    )
    x, _ = points
    z = to_numpy(coupling.inverse(x))
    s = np.tanh(0.3)  # TanhScale starts with scale 1
    expected = np.concatenate([to_numpy(x)[..., :1], to_numpy(x)[..., 1:] * np.exp(s) - 0.7], axis=-1)
    assert_close(z, expected, atol=1e-6)
    assert_close(coupling.inverse_log_det_jacobian(fresh(x), event_ndims=3), np.full(3, 16 * s), atol=1e-5)


@pytest.mark.parametrize("bad", ["diagonal", "Channel", None])
def test_bad_mask_type(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        AffineCoupling(mask_type=bad)


@pytest.mark.parametrize("bad", [2, -1, "0", True, 0.5])
def test_bad_parity(bad):
    message = f"parity must be an integer >= 0 and <= 1; received {bad!r}."
    with pytest.raises(ValueError, match=re.escape(message)):
        AffineCoupling(mask_type="checkerboard", parity=bad)
    with pytest.raises(ValueError, match=re.escape(message)):
        checkerboard(4, 4, parity=bad)


@pytest.mark.parametrize(
    "key, bad, message",
    [
        ("num_filters", 0, "an integer >= 1"),
        ("num_blocks", -1, "an integer >= 0"),
        ("context_channels", 1.5, "an integer >= 1"),
        ("batch_norm_momentum", 1.0, "a finite number < 1.0"),
    ],
)
def test_bad_sizes_are_refused_before_the_networks_are_built(key, bad, message):
    with pytest.raises(ValueError, match=re.escape(f"{key} must be {message}; received {bad!r}.")):
        AffineCoupling(mask_type="channel", **{key: bad})


def test_odd_channel_count_for_channel_mask():
    with pytest.raises(ValueError, match=re.escape("[4, 4, 3]")):
        AffineCoupling(mask_type="channel", event_shape=(4, 4, 3), num_filters=4, num_blocks=1)
    # Before it is built, the event-shape methods refuse what building would refuse.
    lazy = AffineCoupling(mask_type="channel", num_filters=4, num_blocks=1)
    with pytest.raises(ValueError, match=re.escape("[4, 4, 3]")):
        lazy.forward_event_shape([4, 4, 3])
    with pytest.raises(ValueError, match=re.escape("[4, 4, 3]")):
        lazy.inverse_event_shape_tensor([4, 4, 3])
    assert list(lazy.forward_event_shape([4, 6, 2])) == [4, 6, 2]
    assert not lazy.built
    lazy_checkerboard = AffineCoupling(mask_type="checkerboard", num_filters=4, num_blocks=1)
    assert list(lazy_checkerboard.forward_event_shape([4, 4, 3])) == [4, 4, 3]


def test_conditioner_batch_norm_follows_the_training_argument(points):
    """With batch norm in the conditioner, ``training`` selects its statistics."""
    coupling = make_coupling("channel", 1, seed=6, conditioner_batch_norm=True)
    moving = coupling.conditioner.non_trainable_weights
    assert len(moving) == 3 * 3  # mean, variance and count of each of 3 norms (1 block)
    y, _ = points
    y = tensor(to_numpy(y) * 3.0 + 1.0)  # batch statistics far from the moving averages
    before = variable_values(moving)
    inference = to_numpy(coupling.inverse(y))
    assert all(np.array_equal(a, b) for a, b in zip(variable_values(moving), before))
    training = to_numpy(coupling.inverse(y, training=True))
    after = variable_values(moving)
    assert all(not np.array_equal(a, b) for a, b in zip(after, before))
    assert np.max(np.abs(training - inference)) > 1e-3
    # The batch statistics of the fixed half are the same in both directions, so
    # training mode is still an exact bijection on a batch.
    assert_close(coupling.forward(fresh(coupling.inverse(y, training=True)), training=True), y, atol=1e-10)


@pytest.mark.parametrize("shape", [(4, 4), (8,)])
def test_wrong_rank(shape):
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        AffineCoupling(mask_type="checkerboard", event_shape=shape, num_filters=4, num_blocks=1)
    coupling = AffineCoupling(mask_type="checkerboard", num_filters=4, num_blocks=1)
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        coupling.forward(tensor(np.zeros(shape), "float32"))
    assert not coupling.built
