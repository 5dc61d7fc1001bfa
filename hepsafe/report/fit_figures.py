"""Pulls and ranking figures of a fit, in cabinetry's layout, drawn with matplotlib.

Both take a fit report (``fit.json``, :func:`hepsafe.fit.results.fit_report`); the ranking
also takes cabinetry's ``RankingResults``. Adversarial parameters are shown on their
[0, 1] range (post-fit theta), never as Gaussian pulls, and in the ranking by their
worst-case band ``mu-hat(theta = 1) - mu-hat(theta = 0)``. matplotlib is imported when a
figure is drawn; ``ax=None`` makes a new figure; the figure is returned, nothing is saved.
cabinetry's own ``cabinetry.visualize.pulls`` / ``ranking`` are not used: they make their
own figure (no ``ax``) and draw every parameter as a Gaussian pull.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from hepsafe.exceptions import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: cabinetry's colours: the +-1 / +-2 sigma bands, post-fit up / down impacts
BAND_1, BAND_2 = "#a6d96a", "#ffffbf"
UP_COLOUR, DOWN_COLOUR, WORST_COLOUR = "#1f77b4", "#9ecae1", "#d62728"


class PullRow(NamedTuple):
    """One row of the pulls figure: a Gaussian pull ``(value - prefit) / prefit_error`` with
    error ``error / prefit_error``, or (``adversarial``) a theta value on [0, 1] with the
    interval ``[low, high]`` drawn: the profiled 68 % interval ``[theta-hat, upper_68]``
    when the report has it, else the HESSE error clipped to [0, 1]."""

    name: str
    value: float
    error: float
    adversarial: bool
    low: float = 0.0
    high: float = 0.0


class ImpactRow(NamedTuple):
    """One row of the ranking: post-fit impacts on the POI (``up``, ``down``), or for an
    adversarial parameter its worst-case shift ``up`` (``down`` = 0, ``adversarial``)."""

    name: str
    up: float
    down: float
    adversarial: bool

    @property
    def size(self) -> float:
        """The larger of |up| and |down|."""
        return max(abs(self.up), abs(self.down))


def pull_rows(report: Mapping[str, Any], include_staterror: bool = False) -> list[PullRow]:
    """The rows of :func:`pulls_figure`: the report's constrained parameters (staterror
    gammas only with ``include_staterror``), then its adversarial parameters."""
    _check_report(report, ("pulls",))
    rows = []
    for r in report["pulls"]:
        if not include_staterror and str(r["name"]).startswith("staterror_"):
            continue
        width = float(r["prefit_error"]) or 1.0
        rows.append(PullRow(str(r["name"]), (float(r["value"]) - float(r["prefit"])) / width,
                            float(r["error"]) / width, False))
    for r in report.get("adversarial") or []:
        value, error = float(r["value"]), float(r["error"])
        if r.get("upper_68") is not None:
            low, high = value, float(r["upper_68"])
        else:
            low, high = max(value - error, 0.0), min(value + error, 1.0)
        rows.append(PullRow(str(r["name"]), value, error, True, low, high))
    return rows


def impact_rows(results: Mapping[str, Any] | Any, max_pars: int | None = None) -> list[ImpactRow]:
    """The rows of :func:`ranking_figure`, largest first: a fit report's ``impacts`` and
    ``worst_case`` bands, or cabinetry ``RankingResults`` (post-fit up / down)."""
    rows: list[ImpactRow]
    if isinstance(results, Mapping):
        _check_report(results, ("impacts",))
        rows = [ImpactRow(str(r["name"]), float(r["up"]), float(r["down"]), False)
                for r in results["impacts"]]
        rows += [ImpactRow(str(n), float(w["delta_mu"]), 0.0, True)
                 for n, w in (results.get("worst_case") or {}).items()]
    elif all(hasattr(results, k) for k in ("labels", "postfit_up", "postfit_down")):
        rows = [ImpactRow(str(n), float(u), float(d), False) for n, u, d in zip(
            results.labels, results.postfit_up, results.postfit_down, strict=True)]
    else:
        raise InputError(f"ranking: expected a fit report (fit.json) or cabinetry "
                         f"RankingResults, got {type(results).__name__}")
    rows.sort(key=lambda r: -r.size)
    return rows[:max_pars] if max_pars is not None else rows


def _check_report(report: Mapping[str, Any], keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in report]
    if missing:
        raise InputError(f"fit report: no key {missing[0]!r} (expected a report of "
                         "hepsafe.fit.results.fit_report, fit.json)")


def _axes(ax: Axes | None, n_rows: int, width: float = 6.0) -> tuple[Figure, Axes]:
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new = plt.subplots(figsize=(width, 1.0 + 0.35 * max(n_rows, 1)), layout="constrained")
    return fig, new


def _rows_axis(ax: Axes, names: Sequence[str]) -> np.ndarray:
    y = np.arange(len(names))[::-1].astype(np.float64)  # first row on top
    ax.set_yticks(y, list(names))
    ax.set_ylim(-0.5, len(names) - 0.5)
    return y


def pulls_figure(report: Mapping[str, Any], ax: Axes | None = None,
                 theta_ax: Axes | None = None, include_staterror: bool = False) -> Figure:
    """Pulls of a fit report (fit.json): one row per constrained parameter, its pull
    ``(value - prefit) / prefit_error`` with the post-fit error over the pre-fit error, on
    the +-1 / +-2 bands; and one row per adversarial parameter theta on its [0, 1] range
    (the post-fit value and its profiled 68 % interval, :class:`PullRow`).

    With ``ax=None`` a new figure holds both panels (the theta panel below, when there are
    adversarial parameters); with ``ax`` the pulls go on ``ax`` and the thetas on
    ``theta_ax`` (left out when it is None). Returns the figure.
    """
    rows = pull_rows(report, include_staterror)
    gauss = [r for r in rows if not r.adversarial]
    thetas = [r for r in rows if r.adversarial]
    if ax is None:
        import matplotlib.pyplot as plt

        n = len(gauss) + len(thetas)
        ratios = [max(len(gauss), 1)] + ([len(thetas)] if thetas else [])
        fig, axes = plt.subplots(len(ratios), 1, figsize=(6.0, 1.4 + 0.35 * n),
                                 height_ratios=ratios, layout="constrained", squeeze=False)
        ax, theta_ax = axes[0, 0], (axes[1, 0] if thetas else None)
    else:
        fig = ax.figure  # type: ignore[assignment]
    y = _rows_axis(ax, [r.name for r in gauss])
    ax.axvspan(-2, 2, color=BAND_2, zorder=0)
    ax.axvspan(-1, 1, color=BAND_1, zorder=0)
    ax.axvline(0, color="0.4", lw=0.8, ls="--")
    if gauss:
        ax.errorbar([r.value for r in gauss], y, xerr=[r.error for r in gauss], fmt="o",
                    color="black")
    lim = max([3.0] + [abs(r.value) + r.error + 0.5 for r in gauss])
    ax.set_xlim(-lim, lim)
    ax.set_xlabel(r"$(\hat{\alpha} - \alpha_0) / \Delta\alpha$")
    if theta_ax is not None and thetas:
        ty = _rows_axis(theta_ax, [r.name for r in thetas])
        theta_ax.axvspan(0, 1, color="0.92", zorder=0)
        value = np.array([r.value for r in thetas])
        lo = value - np.array([r.low for r in thetas])
        hi = np.array([r.high for r in thetas]) - value
        theta_ax.errorbar(value, ty, xerr=[np.maximum(lo, 0), np.maximum(hi, 0)], fmt="s",
                          color=WORST_COLOUR, capsize=3)
        theta_ax.set_xlim(-0.05, 1.05)
        theta_ax.set_xlabel(r"adversarial $\hat{\theta}$ (flat prior on [0, 1])")
    return fig


def ranking_figure(results: Mapping[str, Any] | Any, ax: Axes | None = None,
                   max_pars: int | None = None) -> Figure:
    """Ranking of the parameters by their effect on the POI, largest on top: the post-fit
    impacts (parameter at post-fit +-1 sigma, refit; up and down bars) of a fit report or of
    cabinetry ``RankingResults``, and the report's adversarial parameters by their
    worst-case band (theta from 0 to 1, all else profiled). One row per parameter (the
    first ``max_pars``). Returns the figure."""
    rows = impact_rows(results, max_pars)
    fig, ax = _axes(ax, len(rows))
    y = _rows_axis(ax, [f"{r.name} (θ: 0→1)" if r.adversarial else r.name for r in rows])
    gauss = [(yi, r) for yi, r in zip(y, rows, strict=True) if not r.adversarial]
    worst = [(yi, r) for yi, r in zip(y, rows, strict=True) if r.adversarial]
    if gauss:
        ys = [g[0] for g in gauss]
        ax.barh(ys, [g[1].up for g in gauss], height=0.6, color=UP_COLOUR,
                label=r"post-fit impact, $+1\sigma$")
        ax.barh(ys, [g[1].down for g in gauss], height=0.6, color=DOWN_COLOUR,
                label=r"post-fit impact, $-1\sigma$")
    if worst:
        ax.barh([w[0] for w in worst], [w[1].up for w in worst], height=0.6,
                color=WORST_COLOUR,
                label=r"worst case $\hat{\mu}(\theta=1) - \hat{\mu}(\theta=0)$")
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_xlabel(r"$\Delta\hat{\mu}$")
    if rows:
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, fontsize="small",
                  frameon=False)
    return fig
