"""AffineCoupling: exact inverse, exact log-det, masks, one pass, argument checks."""

import re

import numpy as np
import pytest
from helpers import (
    assert_close,
    check_log_det,
    check_round_trips,
    fresh,
    randomize,
    tensor,
    to_numpy,
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


def test_round_trips(coupling, points):
    x, y = points
    before = coupling.network_calls
    check_round_trips(coupling, x, y, atol=1e-10)
    # Six calls on fresh tensors ran the network; the log-dets of the two original
    # inputs came from the cache of the first pass over them.
    assert coupling.network_calls - before == 6


def test_log_det_matches_autodiff_jacobian(coupling, points):
    x, y = points
    check_log_det(coupling, x, y, atol=1e-9)


def test_log_det_is_not_trivial(coupling, points):
    """With random weights the coupling is far from volume preserving."""
    x, _ = points
    fldj = to_numpy(coupling.forward_log_det_jacobian(x, event_ndims=3))
    assert np.all(np.abs(fldj) > 1e-3)


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
    z0, z1, z2 = (to_numpy(coupling.inverse(tensor(scale_updated_part(kind, parity, y_np, f)))) for f in (0.0, 1.0, 2.0))
    assert_close(updated_part(kind, parity, z2 - z1), updated_part(kind, parity, z1 - z0), atol=1e-10)
    ildj = [coupling.inverse_log_det_jacobian(tensor(scale_updated_part(kind, parity, y_np, f)), event_ndims=3) for f in (0.0, 2.0)]
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


def test_one_network_pass_per_transformation(points):
    coupling = make_coupling("checkerboard", 0, seed=5)
    x, _ = points
    x = fresh(x)
    start = coupling.network_calls
    y = coupling.forward(x)
    coupling.forward_log_det_jacobian(x, event_ndims=3)
    coupling.inverse_log_det_jacobian(y, event_ndims=3)
    coupling.inverse(y)
    assert coupling.network_calls - start == 1
    coupling.inverse_log_det_jacobian(fresh(y), event_ndims=3)
    assert coupling.network_calls - start == 2


def test_equal_arguments_do_not_share_cached_results(points):
    """TFP's bijector cache is shared by all instances: each instance must be its own key."""
    first = make_coupling("channel", 0, seed=1)
    second = make_coupling("channel", 0, seed=2)
    assert first != second
    x, _ = points
    y_first = first.forward(x)
    y_second = second.forward(x)  # the same input object while y_first is alive
    assert second.network_calls == 1
    assert_close(y_second, second.forward(fresh(x)), atol=0.0)
    assert np.max(np.abs(to_numpy(y_first) - to_numpy(y_second))) > 1e-3
    assert first == first and hash(first) == hash(first)


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

    coupling = AffineCoupling(mask_type="channel", parity=0, event_shape=EVENT, conditioner=Constant(dtype="float64"), dtype="float64")
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


@pytest.mark.parametrize("bad", [2, -1, "0"])
def test_bad_parity(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        AffineCoupling(mask_type="checkerboard", parity=bad)


def test_odd_channel_count_for_channel_mask():
    with pytest.raises(ValueError, match=re.escape("[4, 4, 3]")):
        AffineCoupling(mask_type="channel", event_shape=(4, 4, 3), num_filters=4, num_blocks=1)


@pytest.mark.parametrize("shape", [(4, 4), (8,)])
def test_wrong_rank(shape):
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        AffineCoupling(mask_type="checkerboard", event_shape=shape, num_filters=4, num_blocks=1)
    coupling = AffineCoupling(mask_type="checkerboard", num_filters=4, num_blocks=1)
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        coupling.forward(tensor(np.zeros(shape), "float32"))
