"""Figures of a run (PNG, mplhep style): ROC curves, score distributions, control-region
overlays with the gate's statistics, pulls and impacts. Plotting only; no computing beyond
histograms. Needs the ``plot`` extra (matplotlib, mplhep)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe import metrics

#: figure file -> caption (in the order they appear in the report)
CAPTIONS = {
    "roc.png": "ROC curves, nominal and under each variation/attack (signal vs background).",
    "scores.png": "Tagger score per sample: nominal (filled) and varied (lines).",
    "control.png": "Control sample: nominal vs perturbed jet pT, jet mass and score, with the "
                   "gate's KS statistic.",
    "impacts.png": "Pulls and impacts of the nuisance parameters on mu (Asimov fit).",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.CMS)
    plt.rcParams.update({"font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12,
                         "legend.fontsize": 9, "figure.dpi": 80})
    return plt


#: line colours of the variations (no grey: the nominal is the grey fill)
COLORS = ("tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:green", "tab:brown",
          "tab:pink", "tab:olive", "tab:cyan")


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _save(fig: Any, path: Path) -> Path:
    """Lay out, write and close a figure; return its path."""
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return path


def roc(path: Path, samples: Mapping[str, Any], nominal: Mapping[str, np.ndarray],
        varied: Sequence[Any]) -> Path:
    """ROC curves (background rejection vs signal efficiency), nominal and varied."""
    plt = _plt()
    sig = [s for s in samples.values() if s.role == "signal"][0]
    bkg = [s for s in samples.values() if s.role == "background"]
    fig, ax = plt.subplots(figsize=(6, 5))
    nominal_jets = {name: s.jets for name, s in samples.items()}
    curves = [("nominal", nominal, nominal_jets)] + [(v.key, v.scores, v.jets) for v in varied]
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
    return _save(fig, path)


def scores(path: Path, samples: Mapping[str, Any], nominal: Mapping[str, np.ndarray],
           varied: Sequence[Any], threshold: float) -> Path:
    """Score distributions per sample (normalised), nominal filled, variations as lines."""
    plt = _plt()
    names = list(samples)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.5), squeeze=False)
    edges = np.linspace(0, 1, 26)
    for ax, name in zip(axes[0], names, strict=True):
        w = samples[name].jets.weight
        ax.hist(nominal[name], edges, weights=w, density=True, histtype="stepfilled",
                color="0.8", label="nominal")
        for i, v in enumerate(varied):
            ax.hist(v.scores[name], edges, weights=v.jets[name].weight, density=True,
                    histtype="step", lw=1.3, color=_color(i), label=v.key)
        ax.axvline(threshold, color="k", ls="--", lw=1)
        ax.set_title(f"{name} ({samples[name].role})")
        ax.set_xlabel("tagger score")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("density")
    axes[0][-1].legend(loc="upper center")
    return _save(fig, path)


def control(path: Path, control_jets: Any, control_scores: np.ndarray, varied: Sequence[Any],
            control_name: str, gates: Mapping[str, Any]) -> Path:
    """Control-sample overlays of jet pT, jet mass and score, nominal vs each perturbation,
    annotated with the gate's KS statistic."""
    plt = _plt()
    panels = [("jet_pt", "jet pT [GeV]", np.linspace(500, 700, 21)),
              ("jet_mass", "jet mass [GeV]", np.linspace(0, 250, 26)),
              ("score", "tagger score", np.linspace(0, 1, 21))]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    nom = {"jet_pt": control_jets.pt, "jet_mass": control_jets.mass, "score": control_scores}
    w0 = control_jets.weight
    for ax, (var, label, edges) in zip(axes, panels, strict=True):
        ax.hist(np.clip(nom[var], edges[0], edges[-1]), edges, weights=w0, histtype="stepfilled",
                color="0.8", label="nominal")
        for i, v in enumerate(varied):
            j = v.jets[control_name]
            val = {"jet_pt": j.pt, "jet_mass": j.mass, "score": v.scores[control_name]}[var]
            rep = gates[v.key]
            ks = rep.stats(var).ks if var in [s.variable for s in rep.variables] else float("nan")
            ax.hist(np.clip(val, edges[0], edges[-1]), edges, weights=j.weight, histtype="step",
                    lw=1.3, color=_color(i), label=f"{v.key} (KS {ks:.3f})")
        ax.set_xlabel(label)
        ax.set_title(f"control: {control_name}")
        ax.legend(loc="upper right", fontsize=7)
    axes[0].set_ylabel("jets")
    return _save(fig, path)


def impacts(path: Path, fit: Mapping[str, Any]) -> Path:
    """Pulls (left) and impacts on mu (right) of the fit's nuisance parameters."""
    plt = _plt()
    rows = fit.get("impacts") or []
    pulls = {p["name"]: p for p in fit.get("pulls") or []}
    names = [r["name"] for r in rows][::-1]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.5 * len(names) + 2), sharey=True)
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
    return _save(fig, path)


def make_all(out: Path, samples: Mapping[str, Any], nominal: Mapping[str, np.ndarray],
             varied: Sequence[Any], gates: Mapping[str, Any], fit: Mapping[str, Any],
             threshold: float, control_name: str, region: tuple[Any, Any, Any] | None = None,
             ) -> list[str]:
    """Every figure of a run into ``out``; returns the file names (empty without the
    ``plot`` extra). ``region``: ``(samples, nominal, varied)`` restricted to the signal
    region, for the ROC and score plots (the control plot shows all control jets, as the
    gate sees them)."""
    try:
        _plt()
    except ImportError:
        return []
    sr_samples, sr_nominal, sr_varied = region or (samples, nominal, varied)
    files = [roc(out / "roc.png", sr_samples, sr_nominal, sr_varied).name,
             scores(out / "scores.png", sr_samples, sr_nominal, sr_varied, threshold).name]
    if varied:
        files.append(control(out / "control.png", samples[control_name].jets,
                             nominal[control_name], varied, control_name, gates).name)
    if fit.get("impacts"):
        files.append(impacts(out / "impacts.png", fit).name)
    return files

