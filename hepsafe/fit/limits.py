"""Asymptotic CLs (qtilde), CLs upper limits on the POI and discovery significance.

The formulas are those of pyhf's AsymptoticCalculator; the fits are :func:`hepsafe.fit.mle.fit`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepsafe.exceptions import WorkspaceError
from hepsafe.fit.mle import FitResult, asimov_data, fit


class _Asymptotics:
    """Asymptotic CLs (qtilde) and q0, as pyhf's AsymptoticCalculator ("normal" base
    distribution), with the fits that do not depend on the tested POI run once.

    Per tested POI value only two conditional fits run (to the data and to the
    background-only Asimov data set), instead of five.
    """

    def __init__(self, model: Any, data: np.ndarray) -> None:
        self.model, self.data = model, data
        self.poi = str(model.config.poi_name)
        lo, _ = model.config.suggested_bounds()[model.config.poi_index]
        if lo != 0:
            raise WorkspaceError(
                f"CLs with qtilde needs the POI {self.poi!r} bounded below at 0, not {lo}"
            )
        self.free = fit(model, data)
        bkg = fit(model, data, {self.poi: 0.0})
        self.asimov = np.asarray(model.expected_data(bkg.bestfit), np.float64)
        self.free_asimov = fit(model, self.asimov)
        self._q: dict[float, float] = {}
        self._qa: dict[float, float] = {}

    def _qtilde(
        self, mu: float, data: np.ndarray, free: FitResult, cache: dict[float, float]
    ) -> float:
        if mu not in cache:
            if free.mu > mu:
                cache[mu] = 0.0
            else:
                nll = fit(self.model, data, {self.poi: mu}).twice_nll
                cache[mu] = max(nll - free.twice_nll, 0.0)
        return cache[mu]

    def sqrt_qa(self, mu: float) -> float:
        """sqrt(qtilde_mu) on the background-only Asimov data set."""
        return float(np.sqrt(self._qtilde(mu, self.asimov, self.free_asimov, self._qa)))

    def guess(self, sqrt_qa: float) -> float:
        """POI where sqrt(q_A) reaches ``sqrt_qa``, interpolated from the fits run so far."""
        mus = np.array([0.0, *self._qa])
        values = np.array([0.0, *(np.sqrt(v) for v in self._qa.values())])
        order = np.argsort(mus)
        return float(np.interp(sqrt_qa, values[order], mus[order]))

    def cls(self, mu: float) -> tuple[float, list[float]]:
        """Observed CLs and expected CLs at (-2, -1, 0, +1, +2) sigma, at POI = ``mu``."""
        from scipy.stats import norm

        sq = float(np.sqrt(self._qtilde(mu, self.data, self.free, self._q)))
        sqa = self.sqrt_qa(mu)
        if sq <= sqa:
            t = sq - sqa
        else:
            t = (sq**2 - sqa**2) / (2.0 * sqa)
        observed = float(norm.cdf(-(t + sqa)) / norm.cdf(-t))
        expected = [float(norm.cdf(-(n + sqa)) / norm.cdf(-n)) for n in (2, 1, 0, -1, -2)]
        return observed, expected


def cls(model: Any, data: np.ndarray, mu: float) -> dict[str, Any]:
    """Asymptotic CLs (qtilde) at POI = ``mu``: ``{"observed", "expected": [-2 .. +2 sigma]}``.

    The same numbers as ``pyhf.infer.hypotest(mu, data, model, return_expected_set=True)``.
    """
    observed, expected = _Asymptotics(model, data).cls(float(mu))
    return {"poi": float(mu), "observed": observed, "expected": expected}


def upper_limit(model: Any, data: np.ndarray, level: float = 0.05) -> dict[str, Any]:
    """CLs upper limit on the POI (asymptotic, qtilde) at confidence ``1 - level``.

    The observed limit solves CLs(mu) = level; the expected limit of band n solves
    sqrt(q_A(mu)) = s_n, with s_n the asymptotic value where CLs = level. Returns
    ``{"level", "observed", "expected": [-2, -1, 0, +1, +2 sigma]}``.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    asy = _Asymptotics(model, data)
    _, hi_bound = model.config.suggested_bounds()[model.config.poi_index]
    s_n = [-n - float(norm.ppf(level * norm.cdf(-n))) for n in (2, 1, 0, -1, -2)]
    upper = min(hi_bound, max(asy.free.mu, 0.0) + 8.0 * max(asy.free.sigma_mu, 1e-6))
    while asy.cls(upper)[0] >= level or asy.sqrt_qa(upper) <= max(s_n):
        if upper >= hi_bound:
            raise WorkspaceError(
                f"CLs = {level} is not reached for {asy.poi} <= {hi_bound}; widen poi_bounds"
            )
        upper = min(hi_bound, 2.0 * upper)
    xtol = 1e-4 * upper
    observed = brentq(lambda mu: asy.cls(mu)[0] - level, 0.0, upper, xtol=xtol, rtol=1e-4)
    expected = [_solve_increasing(asy.sqrt_qa, s, asy.guess(s), upper, xtol) for s in s_n]
    return {"level": level, "observed": float(observed), "expected": [float(x) for x in expected]}


def _solve_increasing(f: Any, target: float, guess: float, upper: float, xtol: float) -> float:
    """Root of the increasing ``f(x) = target`` in [0, upper]: secant from ``guess``,
    brentq on [0, upper] if the secant fails or leaves the interval."""
    from scipy.optimize import brentq, root_scalar

    try:
        res = root_scalar(
            lambda x: f(x) - target, x0=guess, x1=guess * 1.01, method="secant", xtol=xtol
        )
        if res.converged and 0.0 < res.root <= upper:
            return float(res.root)
    except (ValueError, ArithmeticError):
        pass
    return float(brentq(lambda x: f(x) - target, 0.0, upper, xtol=xtol, rtol=1e-4))


def significance(model: Any, data: np.ndarray) -> dict[str, float]:
    """Discovery significance Z = sqrt(q0) (asymptotic): observed on ``data``, and
    expected on the Asimov data set at POI = 1 with nuisance parameters nominal.

    Returns ``{"observed", "expected", "p0_observed", "p0_expected"}``.
    """
    from scipy.stats import norm

    poi = str(model.config.poi_name)

    def z(d: np.ndarray) -> float:
        free = fit(model, d)
        if free.mu <= 0:
            return 0.0
        return float(np.sqrt(max(fit(model, d, {poi: 0.0}).twice_nll - free.twice_nll, 0.0)))

    z_obs, z_exp = z(data), z(asimov_data(model, 1.0))
    return {
        "observed": z_obs,
        "expected": z_exp,
        "p0_observed": float(norm.sf(z_obs)),
        "p0_expected": float(norm.sf(z_exp)),
    }
