"""Plot of planned noise schedules: sigma per epoch and cumulative epsilon (``plan --plot``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from dpaudit.allocation.plan import Plan
from dpaudit.plotting import pyplot, save_figure


def plot_plans(plans: Sequence[Plan], path: str | os.PathLike[str]) -> None:
    """Two panels, one line per plan: the noise multiplier per epoch, and the cumulative
    epsilon per epoch with the target as a dashed line. Written as PNG, atomically."""
    if not plans:
        raise ValueError("no plan to plot")
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for p in plans:
        epochs = list(range(1, p.epochs + 1))
        ax1.plot(epochs, p.noise_multipliers, marker=".", label=p.schedule.name)
        if p.cumulative_epsilon:
            ax2.plot(epochs, p.cumulative_epsilon, marker=".", label=p.schedule.name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("noise multiplier sigma")
    ax1.set_title("noise per epoch")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(f"epsilon spent (delta = {plans[0].delta:g})")
    ax2.axhline(plans[0].target_epsilon, color="grey", linestyle="--", linewidth=0.8)
    ax2.set_title(f"cumulative epsilon ({plans[0].accountant})")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)
