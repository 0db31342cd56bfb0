"""Attack statistics benchmark: dpaudit.stats beside its anchor libraries.

* Clopper-Pearson: ``clopper_pearson`` vs ``scipy.stats.binomtest(...).proportion_ci("exact")``;
* ROC metrics: ``roc_metrics`` vs scikit-learn's ``roc_curve`` + ``roc_auc_score``;
* epsilon lower bound from n member + n non-member scores ("bonferroni" and "split");
* optionally (``--shadows K``) LiRA shadow training on digits: in-process vs a process pool.

One process; in every round each case runs once (interleaved), and the median over rounds is
reported, so background load hits all cases alike; one untimed warm-up call each.

Usage::

    python bench/attacks.py [--repeats 7] [--n 10000] [--shadows 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np


def _cases(n: int) -> dict[str, Callable[[], object]]:
    from scipy.stats import binomtest
    from sklearn.metrics import roc_auc_score, roc_curve

    from dpaudit import stats

    rng = np.random.default_rng(0)
    m, nm = rng.normal(1, 1, n), rng.normal(0, 1, n)
    y = np.r_[np.ones(n), np.zeros(n)]
    s = np.r_[m, nm]
    ks = rng.integers(0, 1000, 200)

    def sk_roc():
        roc_curve(y, s)
        return roc_auc_score(y, s)

    return {
        "clopper_pearson x200 (dpaudit)": lambda: [stats.clopper_pearson(int(k), 1000) for k in ks],
        "clopper_pearson x200 (scipy binomtest)": lambda: [
            binomtest(int(k), 1000).proportion_ci(0.95, "exact") for k in ks
        ],
        f"roc_metrics n={n} (dpaudit)": lambda: stats.roc_metrics(m, nm).auc,
        f"roc_curve+auc n={n} (sklearn)": sk_roc,
        f"eps_lb bonferroni n={n}": lambda: stats.epsilon_lower_bound_from_scores(m, nm).epsilon,
        f"eps_lb split n={n}": lambda: stats.epsilon_lower_bound_from_scores(
            m, nm, method="split", rng=0
        ).epsilon,
    }


def _shadow_bench(k: int, workers: int) -> list[str]:
    import torch

    from dpaudit.attacks.lira import InlineExecutor, lira
    from dpaudit.training import TrainConfig, load_dataset, train

    torch.set_num_threads(1)
    ds = load_dataset("digits")
    target = train(TrainConfig(no_privacy=True, member_fraction=0.5, threads=1), dataset=ds,
                   progress=False)
    meta = target.metadata
    mem = np.array(meta["split"]["member_indices"])
    non = np.array(meta["split"]["nonmember_indices"])
    rows = []
    for label, kw in (("in-process", {"executor": InlineExecutor()}),
                      (f"process pool x{workers}", {"workers": workers})):
        t0 = time.perf_counter()
        lira(target.model, meta["config"], mem, non, n_shadows=k, dataset=ds, **kw)
        rows.append(f"| LiRA {k} shadows, digits cnn, {label} | {time.perf_counter() - t0:.1f} s |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--shadows", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cases = _cases(args.n)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    print("| case | median time |")
    print("|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts) * 1e3:.2f} ms |")
    if args.shadows:
        for row in _shadow_bench(args.shadows, args.workers):
            print(row)


if __name__ == "__main__":
    main()
