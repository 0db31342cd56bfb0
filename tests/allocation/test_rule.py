"""The validation schedule's runtime rule never goes below the planned worst case, so a run
that follows it never spends more than the plan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpaudit.allocation import ValidationDecay, ValidationRule
from dpaudit.errors import InvalidParameterError


def _rule(factor=0.5, patience=2, min_ratio=0.25, epochs=10, s0=2.0):
    sched = ValidationDecay(factor=factor, patience=patience, min_ratio=min_ratio)
    return ValidationRule(initial_sigma=s0, factor=factor, patience=patience,
                          min_sigma=min_ratio * s0, worst_case=sched.sigmas(s0, epochs))


def test_no_decay_while_improving():
    r = _rule()
    assert r.sigmas([0.1, 0.2, 0.3, 0.4]) == (2.0,) * 5


def test_decays_after_patience_stalls_and_floors():
    r = _rule()
    # epoch0 improves (best=0.5), epochs 1,2 stall -> decay applies from epoch 3
    s = r.sigmas([0.5, 0.5, 0.4, 0.45, 0.5, 0.3, 0.2, 0.1, 0.1])
    assert s[:3] == (2.0, 2.0, 2.0)
    assert s[3] == 1.0
    assert min(s) == pytest.approx(0.5)  # min_ratio * s0
    assert r.next_sigma([0.5, 0.5, 0.4]) == 1.0


def test_worst_case_equals_plan_when_always_stalling_from_start():
    # If the very first epochs already count as stalls the rule can at most match the
    # worst case; it can never go below it.
    r = _rule(patience=1)
    s = r.sigmas([0.0] * 9)
    assert all(a >= b for a, b in zip(s, r.worst_case))


@given(
    st.floats(0.05, 1.0), st.integers(1, 5), st.floats(0.05, 1.0), st.integers(2, 25),
    st.data(),
)
def test_rule_never_below_worst_case_and_never_increases(factor, patience, min_ratio, epochs, data):
    r = _rule(factor, patience, min_ratio, epochs)
    accs = data.draw(st.lists(st.floats(0, 1), min_size=0, max_size=epochs - 1))
    s = r.sigmas(accs)
    assert len(s) == len(accs) + 1
    assert all(a >= b for a, b in zip(s, r.worst_case))
    assert all(b <= a for a, b in zip(s, s[1:]))
    assert ValidationRule.from_dict(r.to_dict()) == r


def test_rule_input_errors():
    r = _rule(epochs=3)
    with pytest.raises(InvalidParameterError):
        r.sigmas([0.1, 0.2, 0.3])  # more results than epochs left
    with pytest.raises(InvalidParameterError):
        r.sigmas([float("nan")])
    with pytest.raises(InvalidParameterError):
        ValidationRule.from_dict({"factor": 0.5})
