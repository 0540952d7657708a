"""The shared argument checks: one message form, the received value named."""

import numpy as np
import pytest

from tfp_realnvp.internal.arguments import check_int, check_number, is_integer


def test_integers_pass_and_come_back_as_int():
    assert check_int(3, name="n") == 3 and type(check_int(np.int64(3), name="n")) is int
    assert check_int(0, name="n", low=0) == 0 and check_int(8.0, name="n") == 8
    assert check_int(None, name="n", allow_none=True) is None
    assert not is_integer(True) and not is_integer(2.5) and not is_integer(float("nan"))


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (0, {}, r"^n must be an integer >= 1; received 0\.$"),
        (True, {}, r"received True"),
        (2.5, {}, r"received 2\.5"),
        ("3", {}, r"received '3'"),
        (None, {}, r"received None"),
        (-1, {"low": 0}, r"^n must be an integer >= 0; received -1\.$"),
        (5, {"high": 4}, r"^n must be an integer >= 1 and <= 4; received 5\.$"),
    ],
)
def test_bad_integers_are_named_with_the_value(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_int(value, name="n", **kwargs)


def test_numbers_and_their_bounds():
    assert check_number(0.5, name="t", low=0) == 0.5 and check_number(0, name="t", low=0, strict=False) == 0.0
    with pytest.raises(ValueError, match=r"^t must be a finite number > 0; received 0\.$"):
        check_number(0, name="t", low=0)
    with pytest.raises(ValueError, match=r"^p must be a finite number >= 0 and <= 1; received 1\.5\.$"):
        check_number(1.5, name="p", low=0, high=1, strict=False)
    with pytest.raises(ValueError, match=r"received nan"):
        check_number(float("nan"), name="t")
    with pytest.raises(ValueError, match=r"received True"):
        check_number(True, name="t")
