"""Test helpers for the allocation tests (unique module name, imported by the tests and by
conftest.py): reference accountants and hypothesis strategies for planning problems."""

from __future__ import annotations

import importlib

from hypothesis import strategies as st

from dpaudit.accounting import ACCOUNTANTS, SOUND_ACCOUNTANTS
from dpaudit.accounting.base import EpsilonReport
from dpaudit.allocation import (
    ExpDecay,
    PolyDecay,
    StepDecay,
    TimeDecay,
    ValidationDecay,
    make_schedule,
)


class DpAccountingRdp:
    """Reference accountant: dp_accounting's RdpAccountant on ``run.to_dp_event()``
    (its default orders). Used to pin the solver independently of our own accountants."""

    name = "dpa-rdp"

    def epsilon(self, run, delta):
        import dp_accounting

        acc = dp_accounting.rdp.RdpAccountant()
        acc.compose(run.to_dp_event())
        eps = acc.get_epsilon(delta)
        return EpsilonReport("dpa-rdp", run.batching, run.relation, eps, delta, run.total_steps)

    def delta(self, run, epsilon):  # pragma: no cover - protocol completeness
        import dp_accounting

        acc = dp_accounting.rdp.RdpAccountant()
        acc.compose(run.to_dp_event())
        return acc.get_delta(epsilon)


class FastIntRdp:
    """Test-only RDP accountant over integer orders 2..256, vectorised with numpy.

    Sampled Gaussian: A_a = sum_k C(a,k) (1-q)^(a-k) q^k exp((k^2-k)/(2 sigma^2)),
    eps_RDP(a) = log(A_a)/(a-1) (Mironov, Talwar, Zhang 2019, Sec. 3.3); unsampled:
    a/(2 sigma^2) (Mironov 2017, Prop. 7). Conversion: Balle et al. 2020, Thm 21 (as in
    dp_accounting). A sound RDP bound (integer orders only), checked against dp_accounting
    in test_solver.py; fast enough for property tests.
    """

    name = "fast-rdp"

    def __init__(self, max_order: int = 256) -> None:
        import math

        import numpy as np

        self.orders = np.arange(2, max_order + 1, dtype=float)
        a = max_order
        lg = np.array([math.lgamma(i + 1) for i in range(a + 1)])
        k = np.arange(a + 1)
        self._logbin = lg[:, None] - lg[None, :] - lg[np.maximum(k[:, None] - k[None, :], 0)]
        self._mask = k[None, :] <= k[:, None]  # [alpha, k]
        self._k = k.astype(float)

    def _rdp(self, q, sigma):
        import numpy as np

        if q >= 1.0:
            return self.orders / (2 * sigma**2)
        al = self.orders.astype(int)
        k = self._k
        with np.errstate(divide="ignore"):
            terms = (
                self._logbin[al]
                + (al[:, None] - k[None, :]) * np.log1p(-q)
                + k[None, :] * np.log(q)
                + (k * k - k)[None, :] / (2 * sigma**2)
            )
        terms = np.where(self._mask[al], terms, -np.inf)
        m = terms.max(axis=1)
        loga = m + np.log(np.exp(terms - m[:, None]).sum(axis=1))
        return loga / (self.orders - 1)

    def epsilon(self, run, delta):
        import math

        import numpy as np

        rdp = sum(seg.count * self._rdp(seg.sample_rate, seg.noise_multiplier) for seg in run.segments())
        a = self.orders
        eps = rdp + np.log1p(-1 / a) - (math.log(delta) + np.log(a)) / (a - 1)
        i = int(np.argmin(eps))
        return EpsilonReport("fast-rdp", run.batching, run.relation, max(0.0, float(eps[i])), delta,
                             run.total_steps, parameter=float(a[i]))


def available_accountants() -> list[str]:
    """Sound registry accountants whose module exists and imports."""
    out = []
    for name in SOUND_ACCOUNTANTS:
        module = ACCOUNTANTS[name].split(":")[0]
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        out.append(name)
    return out


schedules = st.one_of(
    st.just(make_schedule("constant")),
    st.builds(TimeDecay, k=st.floats(0, 1)),
    st.builds(ExpDecay, k=st.floats(0, 0.5)),
    st.builds(StepDecay, k=st.floats(0.3, 1), period=st.integers(1, 4)),
    st.builds(PolyDecay, end_ratio=st.floats(0.2, 1), power=st.floats(0.5, 3)),
    st.builds(ValidationDecay, factor=st.floats(0.3, 1), patience=st.integers(1, 3),
              min_ratio=st.floats(0.2, 1)),
)
runs = st.fixed_dictionaries({
    "target_epsilon": st.floats(0.2, 20),
    "delta": st.sampled_from([1e-3, 1e-5, 1e-7]),
    "sample_rate": st.floats(1e-3, 0.2),
    "epochs": st.integers(1, 5),
    "batching": st.sampled_from(["poisson", "shuffle"]),
    "schedule": schedules,
})
