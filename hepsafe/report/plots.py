"""Figures of a run: ROC curves, score distributions, control-region overlays with the gate's
statistics, pulls and impacts. Plotting only: each function draws into the axes it is given
(``ax=None``: a new figure) and returns the figure; it never saves, and it uses whatever
style is active. Saving and the report's style: :mod:`hepsafe.report.figures`. Needs the
``plot`` extra (matplotlib; mplhep for the report's style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hepsafe import metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from hepsafe.data.jets import JetBatch
    from hepsafe.validation.report import GateReport


class SampleLike(Protocol):
    """A sample of a run: its name, role (``signal``, ``background``) and nominal jets."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def jets(self) -> JetBatch: ...


class VariedLike(Protocol):
    """One variation or attack of a run: its label, and per sample its jets and scores."""

    @property
    def key(self) -> str: ...
    @property
    def jets(self) -> Mapping[str, JetBatch]: ...
    @property
    def scores(self) -> Mapping[str, np.ndarray]: ...


#: line colours of the variations (no grey: the nominal is the grey fill)
COLORS = ("tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:green", "tab:brown",
          "tab:pink", "tab:olive", "tab:cyan")


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _hist(ax: Axes, values: np.ndarray, edges: np.ndarray, **style: Any) -> None:
    """``ax.hist`` of ``values`` on the bin ``edges``, shape ``(n_bins + 1,)``."""
    # matplotlib takes an array of edges; its annotations name only sequences
    ax.hist(values, edges, **style)  # type: ignore[arg-type]


def _axes(ax: Any, n: int, **subplots: Any) -> tuple[Figure, list[Axes]]:
    """``(figure, n axes)``: ``ax`` itself (one Axes or a sequence of ``n``), or a new
    pyplot figure of ``n`` side-by-side axes when ``ax`` is None."""
    if ax is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, n, squeeze=False, **subplots)
        return fig, list(axes[0])
    axes = [ax] if n == 1 and not isinstance(ax, Sequence | np.ndarray) else list(ax)
    if len(axes) != n:
        raise ValueError(f"expected {n} axes, got {len(axes)}")
    return axes[0].figure, axes


def roc(samples: Mapping[str, SampleLike], nominal: Mapping[str, np.ndarray],
        varied: Sequence[VariedLike], ax: Axes | None = None) -> Figure:
    """ROC curves (background rejection vs signal efficiency), nominal and varied.

    ``nominal`` and each ``varied[i].scores`` map sample name to scores, shape ``(n_jets,)``;
    the signal is the first sample of role ``signal``, the background every sample of role
    ``background``. Draws into ``ax`` (None: a new 6 x 5 inch figure); returns the figure.
    """
    sig = [s for s in samples.values() if s.role == "signal"][0]
    bkg = [s for s in samples.values() if s.role == "background"]
    fig, (ax,) = _axes(ax, 1, figsize=(6, 5))
    nominal_jets = {name: s.jets for name, s in samples.items()}
    curves: list[tuple[str, Mapping[str, np.ndarray], Mapping[str, JetBatch]]] = [
        ("nominal", nominal, nominal_jets)
    ]
    curves += [(v.key, v.scores, v.jets) for v in varied]
    for i, (name, scores, jets) in enumerate(curves):
        wb = np.concatenate([jets[b.name].weight for b in bkg])
        rc = metrics.roc_curve(scores[sig.name], np.concatenate([scores[b.name] for b in bkg]),
                               jets[sig.name].weight, wb)
        ok = (rc.eps_b > 0) & (rc.eps_s > 0.05)
        ax.plot(rc.eps_s[ok], 1 / rc.eps_b[ok], lw=2.5 if i == 0 else 1.3,
                color="k" if i == 0 else _color(i - 1), label=f"{name} (AUC {rc.auc():.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("background rejection 1/eps_B")
    ax.legend(loc="upper right")
    return fig


def scores(samples: Mapping[str, SampleLike], nominal: Mapping[str, np.ndarray],
           varied: Sequence[VariedLike], threshold: float,
           ax: Sequence[Axes] | None = None) -> Figure:
    """Score distributions per sample (normalised), nominal filled, variations as lines, the
    working point's ``threshold`` dashed.

    One panel per sample: ``ax`` is a sequence of ``len(samples)`` axes (None: a new
    figure of 5 x 4.5 inches per sample); returns the figure.
    """
    names = list(samples)
    fig, axes = _axes(ax, len(names), figsize=(5 * len(names), 4.5))
    edges = np.linspace(0, 1, 26)
    for a, name in zip(axes, names, strict=True):
        w = samples[name].jets.weight
        _hist(a, nominal[name], edges, weights=w, density=True, histtype="stepfilled",
              color="0.8", label="nominal")
        for i, v in enumerate(varied):
            _hist(a, v.scores[name], edges, weights=v.jets[name].weight, density=True,
                  histtype="step", lw=1.3, color=_color(i), label=v.key)
        a.axvline(threshold, color="k", ls="--", lw=1)
        a.set_title(f"{name} ({samples[name].role})")
        a.set_xlabel("tagger score")
        a.set_yscale("log")
    axes[0].set_ylabel("density")
    axes[-1].legend(loc="upper center")
    return fig


def control(control_jets: JetBatch, control_scores: np.ndarray, varied: Sequence[VariedLike],
            control_name: str, gates: Mapping[str, GateReport],
            ax: Sequence[Axes] | None = None) -> Figure:
    """Control-sample overlays of jet pT [GeV], jet mass [GeV] and score, nominal vs each
    perturbation, annotated with the gate's KS statistic (``gates[v.key]``).

    Three panels: ``ax`` is a sequence of 3 axes (None: a new 15 x 4.5 inch figure);
    returns the figure.
    """
    panels = [("jet_pt", "jet pT [GeV]", np.linspace(500, 700, 21)),
              ("jet_mass", "jet mass [GeV]", np.linspace(0, 250, 26)),
              ("score", "tagger score", np.linspace(0, 1, 21))]
    fig, axes = _axes(ax, 3, figsize=(15, 4.5))
    nom = {"jet_pt": control_jets.pt, "jet_mass": control_jets.mass, "score": control_scores}
    w0 = control_jets.weight
    for a, (var, label, edges) in zip(axes, panels, strict=True):
        _hist(a, np.clip(nom[var], edges[0], edges[-1]), edges, weights=w0,
              histtype="stepfilled", color="0.8", label="nominal")
        for i, v in enumerate(varied):
            j = v.jets[control_name]
            val = {"jet_pt": j.pt, "jet_mass": j.mass, "score": v.scores[control_name]}[var]
            rep = gates[v.key]
            ks = rep.stats(var).ks if var in [s.variable for s in rep.variables] else float("nan")
            _hist(a, np.clip(val, edges[0], edges[-1]), edges, weights=j.weight,
                  histtype="step", lw=1.3, color=_color(i), label=f"{v.key} (KS {ks:.3f})")
        a.set_xlabel(label)
        a.set_title(f"control: {control_name}")
        a.legend(loc="upper right", fontsize=7)
    axes[0].set_ylabel("jets")
    return fig


def impacts(fit: Mapping[str, Any], ax: Sequence[Axes] | None = None) -> Figure:
    """Pulls (left) and impacts on mu (right) of the fit's nuisance parameters.

    ``fit`` is a fit report (``fit.json``): rows ``impacts`` (``name``, ``up``, ``down``,
    ranked) and ``pulls`` (``name``, ``pull``, ``error``, ``prefit_error``). Two panels:
    ``ax`` is a sequence of 2 axes sharing y (None: a new figure, 10 inches wide and
    0.5 inch per parameter + 2 high); returns the figure.
    """
    rows = fit.get("impacts") or []
    pulls = {p["name"]: p for p in fit.get("pulls") or []}
    names = [r["name"] for r in rows][::-1]
    fig, (a1, a2) = _axes(ax, 2, figsize=(10, 0.5 * len(names) + 2), sharey=True)
    y = np.arange(len(names))
    pv = [pulls.get(n, {}).get("pull", 0.0) for n in names]
    pe = [pulls[n]["error"] / pulls[n]["prefit_error"] if n in pulls else 0.0 for n in names]
    a1.errorbar(pv, y, xerr=pe, fmt="o", color="k")
    a1.axvline(0, color="0.5", lw=1)
    a1.set_xlabel("pull (theta-hat - theta0) / sigma")
    a1.set_yticks(y, names)
    up = [r["up"] for r in rows][::-1]
    down = [r["down"] for r in rows][::-1]
    a2.barh(y, up, color="tab:blue", alpha=0.7, label="+1 sigma")
    a2.barh(y, down, color="tab:orange", alpha=0.7, label="-1 sigma")
    a2.axvline(0, color="0.5", lw=1)
    a2.set_xlabel("impact on mu")
    a2.legend(loc="lower right")
    return fig
