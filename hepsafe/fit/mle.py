"""Maximum-likelihood fits of pyhf models with iminuit: fit results, pulls, impacts.

Fits run with iminuit (``pyhf.set_backend("numpy", minuit)``, restored afterwards).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepsafe.exceptions import FitError, WorkspaceError
from hepsafe.fit.workspace import MODIFIER_SETTINGS, validate_workspace

#: minuit's convergence tolerance (EDM < 0.002 * tolerance): mu-hat to ~1e-3 sigma
MINUIT_TOLERANCE = 1e-3
#: cap on MIGRAD's likelihood evaluations, in units of iminuit's own default for ``n`` free
#: parameters (200 + 100 n + 5 n^2): a fit that does not converge within it fails fast and
#: is retried (strategy 2, then SLSQP) instead of running to pyhf's 100000 calls
MINUIT_CALLS_FACTOR = 5


def minuit_max_calls(n_free: int) -> int:
    """MIGRAD's call limit for ``n_free`` free parameters."""
    return MINUIT_CALLS_FACTOR * (200 + 100 * n_free + 5 * n_free * n_free)


@contextlib.contextmanager
def _quiet_pyhf() -> Iterator[None]:
    """Silence pyhf's optimizer log for the block: a failed minimisation is retried or
    raised here, with its reason, instead of logging a traceback."""
    import logging

    logger = logging.getLogger("pyhf.optimize.mixins")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def minuit_backend(tolerance: float = MINUIT_TOLERANCE, strategy: int | None = None,
                   maxiter: int | None = None) -> Iterator[None]:
    """Run the block with pyhf's numpy backend and the minuit optimizer (``maxiter``:
    MIGRAD's call limit, default pyhf's); restore after."""
    import pyhf

    tensorlib, optimizer = pyhf.get_backend()
    extra = {} if maxiter is None else {"maxiter": int(maxiter)}
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0, tolerance=tolerance,
                                                             strategy=strategy, **extra))
    try:
        yield
    finally:
        pyhf.set_backend(tensorlib, optimizer)


def model_and_data(
    workspace: Mapping[str, Any], asimov: bool = False, poi: float = 1.0
) -> tuple[Any, np.ndarray]:
    """The pyhf model of ``workspace`` and its data (observed, or Asimov at POI = ``poi``
    with every nuisance parameter at its nominal value), shape ``(n_bins + n_aux,)``."""
    ws = validate_workspace(workspace)
    model = ws.model(modifier_settings=MODIFIER_SETTINGS)
    data = asimov_data(model, poi) if asimov else np.asarray(ws.data(model), np.float64)
    return model, data


def asimov_data(model: Any, poi: float = 1.0) -> np.ndarray:
    """Expected main + auxiliary data of ``model`` at POI = ``poi``, nuisances nominal."""
    pars = np.asarray(model.config.suggested_init(), np.float64)
    pars[model.config.poi_index] = poi
    return np.asarray(model.expected_data(pars), np.float64)


@dataclass(frozen=True)
class FitResult:
    """A maximum-likelihood fit: ``labels[i]`` has ``bestfit[i] +- uncertainty[i]``."""

    labels: list[str]
    bestfit: np.ndarray
    uncertainty: np.ndarray
    twice_nll: float
    poi: str
    fixed: dict[str, float]

    def value(self, name: str) -> float:
        """Best-fit value of parameter ``name`` (label such as ``staterror_SR[2]``)."""
        return float(self.bestfit[self._index(name)])

    def error(self, name: str) -> float:
        """Post-fit uncertainty (HESSE) of parameter ``name``."""
        return float(self.uncertainty[self._index(name)])

    @property
    def mu(self) -> float:
        """Best-fit POI."""
        return self.value(self.poi)

    @property
    def sigma_mu(self) -> float:
        """Post-fit uncertainty of the POI."""
        return self.error(self.poi)

    def _index(self, name: str) -> int:
        if name not in self.labels:
            raise WorkspaceError(f"no parameter {name!r} in the model (have {self.labels})")
        return self.labels.index(name)


def parameter_labels(model: Any) -> list[str]:
    """Labels of every parameter of ``model``, in pyhf's order (e.g. ``staterror_SR[2]``)."""
    return [str(x) for x in model.config.par_names]


def fit(model: Any, data: np.ndarray, fixed: Mapping[str, float] | None = None) -> FitResult:
    """Maximum-likelihood fit of ``model`` to ``data`` with iminuit.

    ``fixed`` maps parameter labels to the values they are held at.
    """
    import pyhf

    labels = parameter_labels(model)
    init = list(model.config.suggested_init())
    mask = list(model.config.suggested_fixed())
    bounds = model.config.suggested_bounds()
    for name, v in (fixed or {}).items():
        if name not in labels:
            raise WorkspaceError(f"cannot fix {name!r}: no such parameter (have {labels})")
        i = labels.index(name)
        init[i] = float(np.clip(v, bounds[i][0], bounds[i][1]))
        mask[i] = True
    # MIGRAD sometimes fails on a hard point of a scan (far from the minimum, with many
    # weakly constrained parameters): retry with the more careful strategy 2, then with
    # scipy's SLSQP (no uncertainties: NaN, with a warning) before giving up
    result = None
    calls = minuit_max_calls(len(mask) - int(sum(bool(m) for m in mask)))
    for options in ({}, {"strategy": 2}):
        try:
            with minuit_backend(maxiter=calls, **options), _quiet_pyhf():
                result, twice_nll = pyhf.infer.mle.fit(
                    data, model, init_pars=init, fixed_params=mask,
                    return_uncertainties=True, return_fitted_val=True,
                )
            break
        except pyhf.exceptions.FailedMinimization:
            continue
    if result is None:
        tensorlib, optimizer = pyhf.get_backend()
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
        try:
            with _quiet_pyhf(), np.errstate(all="ignore"):
                values, twice_nll = pyhf.infer.mle.fit(
                    data, model, init_pars=init, fixed_params=mask, return_fitted_val=True
                )
        except pyhf.exceptions.FailedMinimization as exc:
            raise FitError(
                f"the fit did not converge (fixed: {dict(fixed or {})}): {exc}; check the "
                "templates for bins with little or no background (fewer bins, "
                "merge_empty_bins)"
            ) from exc
        finally:
            pyhf.set_backend(tensorlib, optimizer)
        warnings.warn(f"MIGRAD failed (fixed: {dict(fixed or {})}); used SLSQP, whose fit "
                      "has no uncertainties", stacklevel=2)
        values = np.asarray(values, np.float64)
        result = np.stack([values, np.full_like(values, np.nan)], axis=1)
    result = np.asarray(result, np.float64)
    return FitResult(
        labels=labels,
        bestfit=result[:, 0],
        uncertainty=np.where(mask, 0.0, result[:, 1]),
        twice_nll=float(twice_nll),
        poi=str(model.config.poi_name),
        fixed=dict(fixed or {}),
    )


def nominal_values(model: Any, names: Sequence[str]) -> dict[str, float]:
    """Suggested initial (nominal) value of each parameter in ``names``."""
    labels = parameter_labels(model)
    init = model.config.suggested_init()
    return {n: float(init[labels.index(n)]) for n in names}


def _scalar_constrained(model: Any) -> list[str]:
    """Constrained one-component parameters (normsys, histosys, lumi, ...), POI excluded."""
    labels = parameter_labels(model)
    out = []
    for name in model.config.par_order:
        ps = model.config.param_set(name)
        if name != model.config.poi_name and ps.n_parameters == 1 and ps.constrained:
            # the label, not the name: a one-bin staterror is labelled "staterror_X[0]"
            out.append(labels[model.config.par_slice(name).start])
    return out


def pulls(model: Any, result: FitResult) -> list[dict[str, Any]]:
    """Pull ``(theta_hat - theta_0) / sigma_prefit`` of every constrained parameter.

    Rows ``{"name", "value", "error", "prefit", "prefit_error", "pull", "constraint"}``.
    """
    rows = []
    labels = parameter_labels(model)
    for name in model.config.par_order:
        ps = model.config.param_set(name)
        if not ps.constrained:
            continue
        width = np.atleast_1d(np.asarray(ps.width(), np.float64))
        init = np.atleast_1d(np.asarray(ps.suggested_init, np.float64))
        sl = model.config.par_slice(name)
        for k, i in enumerate(range(sl.start, sl.stop)):
            rows.append(
                {
                    "name": labels[i],
                    "value": float(result.bestfit[i]),
                    "error": float(result.uncertainty[i]),
                    "prefit": float(init[k]),
                    "prefit_error": float(width[k]),
                    "pull": float((result.bestfit[i] - init[k]) / width[k]),
                    "constraint": type(ps).__name__,
                }
            )
    return rows


def impacts(
    model: Any, data: np.ndarray, result: FitResult, parameters: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Post-fit impacts on the POI, ranked by size.

    Each parameter (default: every constrained one-component parameter) is fixed at its
    post-fit value +- post-fit uncertainty, the model refit, and the POI shift recorded.
    Rows ``{"rank", "name", "up", "down", "size"}`` with ``size = max(|up|, |down|)``.
    """
    names = list(parameters) if parameters is not None else _scalar_constrained(model)
    rows: list[dict[str, Any]] = []
    for name in names:
        theta, sigma = result.value(name), result.error(name)
        up = fit(model, data, {name: theta + sigma}).mu - result.mu
        down = fit(model, data, {name: theta - sigma}).mu - result.mu
        rows.append({"name": name, "up": up, "down": down, "size": max(abs(up), abs(down))})
    rows.sort(key=lambda r: -r["size"])
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows
