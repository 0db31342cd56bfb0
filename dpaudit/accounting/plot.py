"""Plot of cumulative epsilon per epoch for every accountant and batching (``dpaudit compare``'s plot)."""

from __future__ import annotations

import os
from typing import Any

from dpaudit.plotting import pyplot, save_figure

_STYLE = {"poisson": "-", "shuffle": "--", "balls_in_bins": "-."}
_LOWER_MARK = {"shuffle": ".", "balls_in_bins": "x"}
_LOWER_LABEL = {"shuffle": "shuffle: proven lower bound (Chua et al.)",
                "balls_in_bins": "balls-in-bins: proven lower bound"}


def plot_compare(table: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Draw ``table["curves"]`` (from :func:`dpaudit.accounting.report.compare_run` with
    ``curves=True``): epsilon vs epochs, solid for Poisson, dashed for shuffle, dash-dot for
    balls-in-bins (``pld`` only: the other accountants claim no amplification there, their
    curves repeat the shuffled ones); the proven lower bounds dotted with markers."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colors: dict[str, Any] = {}
    for key, curve in sorted(table.get("curves", {}).items()):
        name, batching = key.split("/")
        if batching == "balls_in_bins" and name != "pld":
            continue
        color = colors.setdefault(name, f"C{len(colors)}")
        ax.plot(
            range(1, len(curve) + 1), curve, color=color,
            linestyle=_STYLE.get(batching, ":"),
            label=f"{name} ({batching})",
        )
    for key, pts in table.get("lower_curves", {}).items():
        batching = key.split("/")[-1]
        pts = [(e, v) for e, v in pts if v is not None]
        if pts:
            ax.plot(*zip(*pts), color="k", linestyle=":", marker=_LOWER_MARK.get(batching, "."),
                    label=_LOWER_LABEL.get(batching, f"{batching}: proven lower bound"))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"epsilon (delta = {table['delta']:g})")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Cumulative epsilon: accountants x batching")
    save_figure(fig, path)
