"""Schedules: formulas (Yu et al. 2019, Sec. V-B) at hand-computed points, shape invariants,
parameter validation and JSON round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpaudit.allocation import (
    SCHEDULES,
    Constant,
    ExpDecay,
    PolyDecay,
    StepDecay,
    TimeDecay,
    ValidationDecay,
    make_schedule,
    schedule_from_dict,
)
from dpaudit.errors import InvalidParameterError


def test_formulas_at_hand_computed_points():
    assert Constant().sigmas(1.5, 3) == (1.5, 1.5, 1.5)
    assert TimeDecay(k=0.5).sigmas(2.0, 3) == pytest.approx((2.0, 2.0 / 1.5, 1.0))
    assert ExpDecay(k=0.1).sigmas(2.0, 3) == pytest.approx((2.0, 2 * math.exp(-0.1), 2 * math.exp(-0.2)))
    assert StepDecay(k=0.5, period=2).sigmas(4.0, 5) == pytest.approx((4, 4, 2, 2, 1))
    # poly: (s0 - s_end)(1 - t/p)^pow + s_end with s_end = 0.25 s0, p = 4, pow = 2
    s = PolyDecay(end_ratio=0.25, power=2, period=4).sigmas(4.0, 6)
    assert s == pytest.approx((4.0, 3 * 0.75**2 + 1, 3 * 0.25 + 1, 3 * 0.0625 + 1, 1.0, 1.0))
    # poly default period E-1: the last epoch runs at sigma_end
    assert PolyDecay(end_ratio=0.5).sigmas(2.0, 5)[-1] == pytest.approx(1.0)
    # validation worst case: decay every `patience` epochs, floored at min_ratio sigma_0
    v = ValidationDecay(factor=0.5, patience=2, min_ratio=0.3).sigmas(1.0, 7)
    assert v == pytest.approx((1, 1, 0.5, 0.5, 0.3, 0.3, 0.3))


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_defaults_decay_and_round_trip(name):
    sched = make_schedule(name)
    shape = sched.shape(30)
    assert len(shape) == 30 and shape[0] == 1.0
    assert all(0 < b <= a for a, b in zip(shape, shape[1:]))
    if name != "constant":
        assert shape[-1] < 1.0
    assert schedule_from_dict(sched.to_dict()) == sched


schedules = st.one_of(
    st.builds(TimeDecay, k=st.floats(0, 5)),
    st.builds(ExpDecay, k=st.floats(0, 2)),
    st.builds(StepDecay, k=st.floats(0.05, 1), period=st.integers(1, 20)),
    st.builds(PolyDecay, end_ratio=st.floats(0.01, 1), power=st.floats(0.1, 5),
              period=st.one_of(st.none(), st.integers(1, 40))),
    st.builds(ValidationDecay, factor=st.floats(0.05, 1), patience=st.integers(1, 10),
              min_ratio=st.floats(0.01, 1)),
)


@given(schedules, st.integers(1, 60), st.floats(0.1, 50))
def test_shape_is_scale_free_positive_non_increasing(sched, epochs, scale):
    shape = sched.shape(epochs)
    assert shape[0] == pytest.approx(1.0)
    assert all(0 < b <= a * (1 + 1e-12) for a, b in zip(shape, shape[1:]))
    assert sched.sigmas(scale, epochs) == pytest.approx(tuple(scale * s for s in shape))
    assert schedule_from_dict(sched.to_dict()) == sched


@pytest.mark.parametrize(
    "name, params",
    [
        ("exp", {"k": -0.1}),
        ("step", {"k": 0.0}),
        ("step", {"k": 1.5}),
        ("step", {"period": 0}),
        ("step", {"period": 2.5}),
        ("poly", {"end_ratio": 0.0}),
        ("poly", {"power": float("nan")}),
        ("validation", {"factor": 1.2}),
        ("validation", {"patience": 0}),
        ("time", {"period": 3}),
        ("time", {"k": "abc"}),
        ("nosuch", {}),
    ],
)
def test_bad_parameters_are_clear_errors(name, params):
    with pytest.raises(InvalidParameterError):
        make_schedule(name, **params)


def test_from_dict_rejects_garbage():
    for bad in (None, [], {"params": {}}, {"name": "exp", "params": [1]}):
        with pytest.raises(InvalidParameterError):
            schedule_from_dict(bad)
