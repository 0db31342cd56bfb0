"""``tradeoff.png``: the claimed trade-off curve, the audit's (FPR, FNR) points with their
simultaneous confidence corners, and the certified curve (matplotlib through
:mod:`dpaudit.plotting`; imported only when a report folder is written).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dpaudit.audit.verdict import AuditReport

#: Name of the figure in a report folder.
TRADEOFF_PNG = "tradeoff.png"


def has_tradeoff(report: AuditReport) -> bool:
    """True when the report holds a multi-run canary audit with corners to draw."""
    return any(c.name == "canary_multi_run" and "corners" in c.details for c in report.checks)


def _curves(report: AuditReport, details: dict[str, Any]) -> tuple[Any, Any, Any]:
    from dpaudit.audit.certify import claim_family
    from dpaudit.audit.claim import Claim

    claim = Claim.from_dict(report.claim)
    family = claim_family(claim)
    cert = details["certified"]
    claimed = family.curve(cert["claim_scale"])
    certified = family.curve(cert["scale"]) if math.isfinite(cert["scale"]) else None
    return claim, claimed, certified


def tradeoff_figure(report: AuditReport) -> Any:
    """The figure of the report's multi-run canary audit (see the module docstring)."""
    from dpaudit.plotting import pyplot

    check = next(c for c in report.checks if c.name == "canary_multi_run" and "corners" in c.details)
    d = check.details
    corners = d["corners"]
    claim, claimed, certified = _curves(report, d)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    a = np.concatenate((np.geomspace(1e-6, 0.01, 200), np.linspace(0.01, 1.0, 400)))
    ax.plot(a, claimed(a), color="black", lw=1.8, label=f"claimed mechanism (eps={claim.epsilon:.3g}, delta={claim.delta:g})")
    if certified is not None:
        ax.plot(a, certified(a), color="tab:red", lw=1.4, ls="--",
                label=f"certified: rejected, eps_lb={d['epsilon_lower_bound']:.3g}")
    n_out, n_in = corners["n_out"], corners["n_in"]
    fpr = np.array(corners["ranks"]) / n_out
    fnr = np.array(corners["fn"]) / n_in
    fpr_hi, fnr_hi = np.array(corners["fpr_upper"]), np.array(corners["fnr_upper"])
    for x0, y0, x1, y1 in zip(fpr, fnr, fpr_hi, fnr_hi):
        ax.add_patch(plt.Rectangle((0.0, 0.0), x1, y1, fill=False, lw=0.3, color="tab:blue", alpha=0.25))
        ax.plot([x0, x1], [y0, y1], color="tab:blue", lw=0.8, alpha=0.7)
    ax.scatter(fpr, fnr, s=12, color="tab:blue", label=f"audit (FPR, FNR), {n_in}+{n_out} runs")
    ax.scatter(fpr_hi, fnr_hi, s=18, marker="^", color="tab:blue", facecolors="none",
               label=f"upper corners ({check.confidence:.4g} simultaneous)")
    ax.plot([0, 1], [1, 0], color="grey", lw=0.6, ls=":", label="no privacy loss (f = 1 - FPR)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("FPR (type I error: canary out, called in)")
    ax.set_ylabel("FNR (type II error: canary in, called out)")
    ax.set_title(f"Trade-off: {report.trainer}, multi-run canary audit ({check.verdict})")
    ax.legend(loc="upper right", fontsize=7)
    fig.text(0.01, -0.06,
             "A corner (the simultaneous upper confidence bound of an (FPR, FNR) point) below the claimed curve\n"
             "contradicts the claim. The certified curve is the most private member of the claimed family (noise\n"
             f"scaled by {d['certified']['scale']:.4g}) the corners reject; p = {check.p_value:.2g} for the claimed curve.",
             fontsize=7, ha="left", va="top")
    return fig


def write_tradeoff(report: AuditReport, path: Any) -> None:
    """Draw :func:`tradeoff_figure` into ``path`` (a temporary file of an all-or-nothing
    report folder)."""
    from dpaudit.plotting import pyplot

    fig = tradeoff_figure(report)
    fig.savefig(path, format="png", dpi=130, bbox_inches="tight")
    pyplot().close(fig)
