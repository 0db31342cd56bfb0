"""The scalar search: hits the window, never accepts a point above target, reports
infeasible targets, and treats refusals as 'too much privacy'."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpaudit.allocation.rootfind import find_scale
from dpaudit.errors import InvalidParameterError, OutOfValidityError


@given(st.floats(0.5, 3.0), st.floats(1e-3, 1e3), st.floats(0.01, 100), st.floats(0.02, 50))
def test_power_law_hits_window(a, c, target, guess):
    def f(s):
        return c / s**a, None

    lo, hi = (c / 1e4**a), (c / 1e-2**a)
    if not (lo < target - 1e-3 and hi > target):
        return
    res = find_scale(f, target, 1e-3, guess)
    assert res.hit_window
    assert target - 1e-3 <= res.best.epsilon <= target
    assert len(res.evaluations) <= 30


def test_jump_over_window_returns_best_feasible_point():
    def f(s):  # a staircase: epsilon jumps from 2.5 to 1.5 at s = 1
        return (2.5 if s < 1 else 1.5), None

    res = find_scale(f, 2.0, 1e-3, 0.3)
    assert not res.hit_window
    assert res.best.epsilon == 1.5 and res.best.s >= 1.0
    assert res.best.s < 1.0 + 1e-6


def test_refusals_are_read_as_too_much_privacy():
    def f(s):
        if s < 0.8:
            raise OutOfValidityError("sigma too small")
        return 2.0 / s, None

    res = find_scale(f, 2.0, 1e-3, 0.1)
    assert res.hit_window and 1.999 <= res.best.epsilon <= 2.0


def test_infeasible_targets():
    with pytest.raises(InvalidParameterError, match="too small"):
        find_scale(lambda s: (1.0 / s, None), 1e-6, 1e-3 * 1e-6, 1.0)
    with pytest.raises(InvalidParameterError, match="too large"):
        find_scale(lambda s: (min(5.0, 1.0 / s), None), 10.0, 1e-3, 1.0)


def test_nan_is_never_accepted():
    res = find_scale(lambda s: (math.nan if s < 1 else 2.0 / s, None), 1.5, 1e-3, 0.5)
    assert 1.499 <= res.best.epsilon <= 1.5


def test_accountant_refusing_everywhere_is_reported_not_hidden():
    def f(s):
        raise OutOfValidityError("delta below the accountant's floor")

    with pytest.raises(OutOfValidityError, match="floor"):
        find_scale(f, 2.0, 1e-3, 1.0)


@given(st.floats(0.001, 0.05), st.floats(10, 5000), st.floats(0.5, 5))
def test_noisy_non_monotone_accountant_terminates_and_stays_feasible(amp, freq, target):
    def f(s):  # a discretised accountant: monotone trend plus wiggles larger than the window
        return 2.0 / s + amp * math.sin(freq * s), None

    res = find_scale(f, target, 1e-3, 1.0)
    assert res.best.epsilon <= target
    assert len(res.evaluations) <= 60
    if res.hit_window:
        assert res.best.epsilon >= target - 1e-3
