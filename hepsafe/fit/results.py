"""The statistical analysis of templates in one call, and its report.

:func:`fit_templates` builds a pyhf workspace from templates (or a JSON patch for a user's
workspace, :mod:`hepsafe.fit.workspace`), fits it (:mod:`hepsafe.fit.mle`), computes the CLs upper
limit and the significance (:mod:`hepsafe.fit.limits`) and reports mu-hat with and without each
systematic, pulls and impacts (:func:`fit_report`); :func:`write_fit_outputs` writes it all.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe._files import write_json, write_text
from hepsafe._versions import package_versions
from hepsafe.exceptions import OutputExistsError, TemplateWarning, WorkspaceError
from hepsafe.fit.adversarial import THETA_BOUNDS, adversarial_parameters
from hepsafe.fit.limits import significance, upper_limit
from hepsafe.fit.mle import (
    FitResult,
    fit,
    impacts,
    model_and_data,
    nominal_values,
    parameter_labels,
    pulls,
)
from hepsafe.fit.workspace import (
    MODIFIER_SETTINGS,
    WorkspaceConfig,
    apply_patch,
    as_patchset,
    build_patch,
    build_workspace,
    prepare_templates,
    systematic_parameters,
)
from hepsafe.report.tables import format_table
from hepsafe.templates import booking as tpl
from hepsafe.templates.booking import Templates

REPORT_FORMAT = "hepsafe-fit/1"


def _mu_row(label: str, result: FitResult, free: Sequence[str]) -> dict[str, Any]:
    return {"fit": label, "free": list(free), "mu": result.mu, "sigma_mu": result.sigma_mu}


def worst_case(model: Any, data: Any, thetas: Sequence[str]) -> dict[str, dict[str, float]]:
    """The worst-case band of each adversarial parameter: ``{name: {"mu_at_0", "mu_at_1",
    "delta_mu"}}`` with ``delta_mu = mu-hat(theta = 1) - mu-hat(theta = 0)``, every other
    parameter profiled (two fits with theta fixed)."""
    out = {}
    for name in thetas:
        at0 = fit(model, data, {name: THETA_BOUNDS[0]}).mu
        at1 = fit(model, data, {name: THETA_BOUNDS[1]}).mu
        out[name] = {"mu_at_0": at0, "mu_at_1": at1, "delta_mu": at1 - at0}
    return out


def theta_upper(model: Any, data: Any, best: FitResult, name: str,
                level: float = 1.0) -> float:
    """The profile-likelihood upper edge of adversarial parameter ``name``: the theta in
    [theta-hat, 1] where ``2 (NLL(theta) - NLL(best)) = level`` (1: the one-sided 68 %
    interval's edge in the asymptotic approximation), every other parameter profiled; 1
    when the data do not reach ``level`` on [0, 1]. At the boundary theta-hat = 0 this,
    not the HESSE error, is the constraint the data put on theta."""
    from scipy.optimize import brentq

    lo = float(np.clip(best.value(name), *THETA_BOUNDS))

    def excess(theta: float) -> float:
        return fit(model, data, {name: theta}).twice_nll - best.twice_nll - level

    if excess(THETA_BOUNDS[1]) <= 0:
        return THETA_BOUNDS[1]
    return float(brentq(excess, lo, THETA_BOUNDS[1], xtol=1e-3))


def free_normfactors(model: Any, result: FitResult,
                     exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The free normfactors of ``model`` other than the POI and ``exclude`` (e.g. the
    control sample's ``norm_<sample>``): rows ``{"name", "value", "error", "bounds"}``."""
    rows = []
    for name in model.config.par_order:
        ps = model.config.param_set(name)
        if (name == model.config.poi_name or name in exclude or ps.constrained
                or ps.n_parameters != 1 or ps.suggested_fixed[0]):
            continue
        rows.append({"name": name, "value": result.value(name), "error": result.error(name),
                     "bounds": [float(x) for x in ps.suggested_bounds[0]]})
    return rows


def fit_report(
    workspace: Mapping[str, Any],
    systematics: Sequence[str] | None = None,
    asimov: bool = False,
    limit: bool = True,
    level: float = 0.05,
) -> dict[str, Any]:
    """Fit ``workspace`` and report (a JSON-ready dict, format ``hepsafe-fit/1``).

    ``systematics``: the nuisance parameters whose effect is studied (default: every
    normsys/histosys parameter). The report holds mu-hat +- sigma with all of them free,
    with none, with each one alone and with all but each one (the others fixed at
    nominal); pulls; post-fit impacts of every constrained one-component parameter; per
    adversarial parameter theta-hat with its profiled upper edge (``upper_68``,
    :func:`theta_upper`) and its worst-case band; the free normfactors (``normfactors``:
    the control samples' ``norm_<sample>``); the CLs upper limit (``limit``) and the
    discovery significance. ``asimov``: fit the Asimov
    data set at POI = 1 instead of the observations.
    """
    model, data = model_and_data(workspace, asimov=asimov)
    labels = parameter_labels(model)
    names = list(systematics) if systematics is not None else systematic_parameters(workspace)
    missing = [n for n in names if n not in labels]
    if missing:
        raise WorkspaceError(f"systematics {missing} are not parameters of the model")
    nominal = nominal_values(model, names)

    def without(keep: Sequence[str]) -> dict[str, float]:
        return {n: v for n, v in nominal.items() if n not in keep}

    thetas = [n for n in adversarial_parameters(workspace) if n in names]
    full = fit(model, data)
    rows = [
        _mu_row("all variations", full, names),
        _mu_row("no variations", fit(model, data, nominal), []),
    ]
    for n in names:
        rows.append(_mu_row(f"only {n}", fit(model, data, without([n])), [n]))
        others = [m for m in names if m != n]
        rows.append(_mu_row(f"all but {n}", fit(model, data, {n: nominal[n]}), others))
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "poi": full.poi,
        "data": "asimov (poi = 1, nuisance parameters nominal)" if asimov else "observed",
        "systematics": names,
        "interpolation": {k: v["interpcode"] for k, v in MODIFIER_SETTINGS.items()},
        "mu": rows,
        "twice_nll": full.twice_nll,
        "pulls": pulls(model, full),
        "impacts": impacts(model, data, full),
        "adversarial": [
            {"name": n, "value": full.value(n), "error": full.error(n),
             "upper_68": theta_upper(model, data, full, n), "bounds": list(THETA_BOUNDS)}
            for n in thetas
        ],
        "worst_case": worst_case(model, data, thetas),
        "normfactors": free_normfactors(model, full, thetas),
        "significance": significance(model, data),
        "upper_limit": upper_limit(model, data, level) if limit else None,
        "versions": package_versions(("hepsafe", "pyhf", "iminuit", "numpy"), python=False),
    }
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The fit report as text tables."""
    poi = report["poi"]
    parts = [f"data: {report['data']}"]
    parts.append(
        format_table(
            ["fit", f"{poi}-hat", f"sigma_{poi}"],
            [[r["fit"], r["mu"], r["sigma_mu"]] for r in report["mu"]],
            title=f"\n{poi}-hat with and without the variations (others fixed at nominal)",
            floatfmt=".4f",
        )
    )
    parts.append(
        format_table(
            ["rank", "parameter", f"d{poi} (+1 sigma)", f"d{poi} (-1 sigma)"],
            [[r["rank"], r["name"], r["up"], r["down"]] for r in report["impacts"]],
            title="\nimpacts on the POI (parameter fixed at post-fit +-1 sigma, refit)",
            floatfmt=".4f",
        )
    )
    parts.append(
        format_table(
            ["parameter", "post-fit", "error", "pre-fit", "pre-fit error", "pull"],
            [
                [r["name"], r["value"], r["error"], r["prefit"], r["prefit_error"], r["pull"]]
                for r in report["pulls"]
            ],
            title="\npulls",
            floatfmt=".4f",
        )
    )
    if report.get("adversarial"):
        wc = report.get("worst_case", {})
        parts.append(
            format_table(
                ["parameter", "post-fit", "bounds", f"{poi}-hat (theta=0)",
                 f"{poi}-hat (theta=1)", f"worst-case d{poi}"],
                [[r["name"], r["value"], "[0, 1]", wc[r["name"]]["mu_at_0"],
                  wc[r["name"]]["mu_at_1"], wc[r["name"]]["delta_mu"]]
                 for r in report["adversarial"]],
                title="\nadversarial parameters theta in [0, 1] (flat prior; worst case: "
                      "theta fixed at 0 and at 1, all else profiled)",
                floatfmt=".4f",
            )
        )
    norms = report.get("normfactors") or []
    if norms:
        parts.append("\nfree normalisations (shared by every channel): " + "; ".join(
            f"{r['name']} = {r['value']:.4f} +- {r['error']:.4f}" for r in norms))
    left = report.get("left_out") or {}
    if left:
        parts.append("\nleft out of the fit (failed the control-region gate): " + "; ".join(
            f"{n} ({', '.join(c) or 'gate'})" for n, c in left.items()))
    kept = report.get("included_failed") or []
    if kept:
        parts.append(f"\nin the fit although they failed the control-region gate: "
                     f"{', '.join(kept)}")
    sig = report["significance"]
    lines = [
        f"\ndiscovery significance: observed {sig['observed']:.3f}, expected "
        f"{sig['expected']:.3f} sigma"
    ]
    ul = report.get("upper_limit")
    if ul:
        exp = ", ".join(f"{x:.4g}" for x in ul["expected"])
        lines.append(
            f"CLs upper limit on {poi} ({100 * (1 - ul['level']):.0f}% CL): observed "
            f"{ul['observed']:.4g}; expected [-2, -1, 0, +1, +2 sigma] = [{exp}]"
        )
    parts.append("\n".join(lines))
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- one call
@dataclass(frozen=True)
class FitOutputs:
    """What :func:`fit_templates` produces: the workspace fitted, the patch (when a user
    workspace was given), its PatchSet, the report and its text."""

    workspace: dict[str, Any]
    patch: list[dict[str, Any]] | None
    patchset: dict[str, Any] | None
    report: dict[str, Any]
    text: str
    yields: str


def fit_templates(
    t: Templates,
    config: WorkspaceConfig | None = None,
    user_workspace: Mapping[str, Any] | None = None,
    asimov: bool = False,
    limit: bool = True,
    hepdata: str | None = None,
) -> FitOutputs:
    """Templates (and optionally a user's workspace) -> workspace or patch, fit, report.

    Without ``user_workspace`` a complete workspace is built; with it, a JSON patch adding
    the systematics is built and applied, and the patched workspace is fitted; with
    ``hepdata`` (the analysis' HEPData record) the patch is also wrapped as a PatchSet.
    """
    config = config or WorkspaceConfig()
    patch = patchset = None
    if user_workspace is None:
        ws = build_workspace(t, config)
        names = systematic_parameters(ws)
    else:
        patch = build_patch(t, user_workspace, config)
        if hepdata is not None:
            patchset = as_patchset(patch, user_workspace, hepdata)
        ws = apply_patch(user_workspace, patch)
        names = systematic_parameters(patch)
    report = fit_report(ws, names, asimov=asimov, limit=limit)
    report["config"] = config.to_dict()
    with warnings.catch_warnings():  # the same templates again: warned once already
        warnings.simplefilter("ignore", TemplateWarning)
        yields = tpl.format_yields(prepare_templates(t, config))
    return FitOutputs(
        workspace=ws,
        patch=patch,
        patchset=patchset,
        report=report,
        text=format_report(report),
        yields=yields,
    )


OUTPUT_FILES = (
    "workspace.json",
    "patch.json",
    "patchset.json",
    "fit.json",
    "fit.txt",
    "yields.txt",
)


def write_fit_outputs(
    out: FitOutputs, outdir: str | os.PathLike[str], force: bool = False
) -> list[Path]:
    """Write ``workspace.json``, ``patch.json`` + ``patchset.json`` (when patching),
    ``fit.json``, ``fit.txt`` and ``yields.txt`` into ``outdir``, each atomically."""
    d = Path(outdir)
    existing = [d / f for f in OUTPUT_FILES if (d / f).exists()]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} exists; pass --force (force=True) to overwrite")
    written = [write_json(d / "workspace.json", out.workspace)]
    for name, obj in (("patch.json", out.patch), ("patchset.json", out.patchset)):
        if obj is not None:
            written.append(write_json(d / name, obj))
        else:
            (d / name).unlink(missing_ok=True)  # no stale file from an earlier run
    written.append(write_json(d / "fit.json", out.report))
    written.append(write_text(d / "fit.txt", out.text))
    written.append(write_text(d / "yields.txt", out.yields + "\n"))
    return written
