"""Asymptotic CLs (qtilde), CLs upper limits on the POI and discovery significance.

CLs and the significance are ``pyhf.infer.hypotest`` (qtilde and q0, asymptotic), run with
the minuit optimizer of :func:`hepsafe.fit.mle.minuit_backend`. The upper limit has two
methods that agree to better than 1e-6 (``benchmarks/bench_fit.py`` prints both and their
ratio of times): ``"asymptotic"`` (default), the formulas of pyhf's AsymptoticCalculator
with the fits that do not depend on the tested POI run once (two fits per tested value
instead of five), and ``"pyhf"``, ``pyhf.infer.intervals.upper_limits.toms748_scan``,
about nine times slower on the benchmark's model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepsafe.exceptions import WorkspaceError
from hepsafe.fit.mle import FitResult, fit, minuit_backend

#: upper-limit methods: hepsafe's asymptotic formulas (fewer fits) or pyhf's toms748 scan
LIMIT_METHODS = ("asymptotic", "pyhf")
#: the upper limits' relative tolerance (both methods)
LIMIT_RTOL = 1e-4


def _poi_bounded_at_zero(model: Any) -> None:
    lo, _ = model.config.suggested_bounds()[model.config.poi_index]
    if lo != 0:
        raise WorkspaceError(f"CLs with qtilde needs the POI {model.config.poi_name!r} "
                             f"bounded below at 0, not {lo}")


class _Asymptotics:
    """Asymptotic CLs (qtilde) and q0, as pyhf's AsymptoticCalculator ("normal" base
    distribution), with the fits that do not depend on the tested POI run once.

    Per tested POI value only two conditional fits run (to the data and to the
    background-only Asimov data set), instead of five.
    """

    def __init__(self, model: Any, data: np.ndarray) -> None:
        self.model, self.data = model, data
        self.poi = str(model.config.poi_name)
        _poi_bounded_at_zero(model)
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
    """Asymptotic CLs (qtilde) at POI = ``mu``: ``{"poi", "observed", "expected": [-2 .. +2
    sigma]}``, from ``pyhf.infer.hypotest(mu, data, model, return_expected_set=True)``.

    ``data``: main + auxiliary data, shape ``(n_bins + n_aux,)``.
    """
    import pyhf

    _poi_bounded_at_zero(model)
    with minuit_backend():
        observed, expected = pyhf.infer.hypotest(
            float(mu), data, model, test_stat="qtilde", return_expected_set=True
        )
    return {"poi": float(mu), "observed": float(observed),
            "expected": [float(x) for x in expected]}


def upper_limit(
    model: Any, data: np.ndarray, level: float = 0.05, method: str = "asymptotic",
    rtol: float = LIMIT_RTOL,
) -> dict[str, Any]:
    """CLs upper limit on the POI (asymptotic, qtilde) at confidence ``1 - level``.

    Returns ``{"level", "method", "observed", "expected": [-2, -1, 0, +1, +2 sigma]}`` in
    units of the POI, found to relative tolerance ``rtol``. ``method``: "asymptotic" (the
    observed limit solves CLs(mu) = level; the expected limit of band n solves
    sqrt(q_A(mu)) = s_n, with s_n the asymptotic value where CLs = level) or "pyhf"
    (``pyhf.infer.intervals.upper_limits.toms748_scan`` between the POI's bounds).
    """
    if method not in LIMIT_METHODS:
        raise WorkspaceError(f"upper-limit method = {method!r}; expected one of "
                             f"{list(LIMIT_METHODS)}")
    if method == "pyhf":
        observed, expected = _pyhf_upper_limit(model, data, level, rtol)
    else:
        observed, expected = _asymptotic_upper_limit(model, data, level, rtol)
    return {"level": level, "method": method, "observed": observed, "expected": expected}


def _pyhf_upper_limit(model: Any, data: np.ndarray, level: float,
                      rtol: float) -> tuple[float, list[float]]:
    import pyhf

    _poi_bounded_at_zero(model)
    lo, hi = model.config.suggested_bounds()[model.config.poi_index]
    with minuit_backend():
        obs, exp = pyhf.infer.intervals.upper_limits.toms748_scan(
            data, model, float(lo), float(hi), level=level, rtol=rtol, test_stat="qtilde"
        )
    return float(obs), [float(x) for x in exp]


def _asymptotic_upper_limit(model: Any, data: np.ndarray, level: float,
                            rtol: float) -> tuple[float, list[float]]:
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
    observed = brentq(lambda mu: asy.cls(mu)[0] - level, 0.0, upper, xtol=2e-12, rtol=rtol)
    expected = [_solve_increasing(asy.sqrt_qa, s, asy.guess(s), upper, rtol) for s in s_n]
    return float(observed), [float(x) for x in expected]


def _solve_increasing(f: Any, target: float, guess: float, upper: float, rtol: float) -> float:
    """Root of the increasing ``f(x) = target`` in [0, upper]: secant from ``guess``,
    brentq on [0, upper] if the secant fails or leaves the interval."""
    from scipy.optimize import brentq, root_scalar

    try:
        res = root_scalar(
            lambda x: f(x) - target, x0=guess, x1=guess * 1.01, method="secant",
            xtol=rtol * max(guess, 1e-12), rtol=rtol,
        )
        if res.converged and 0.0 < res.root <= upper:
            return float(res.root)
    except (ValueError, ArithmeticError):
        pass
    return float(brentq(lambda x: f(x) - target, 0.0, upper, xtol=2e-12, rtol=rtol))


def significance(model: Any, data: np.ndarray) -> dict[str, float]:
    """Discovery significance Z = sqrt(q0) (asymptotic) from ``pyhf.infer.hypotest(0, data,
    model, test_stat="q0", return_expected=True)``: observed on ``data``, expected for the
    signal at POI = 1 (pyhf's Asimov data set at POI = 1, nuisance parameters fitted to
    ``data`` at POI = 1).

    Returns ``{"observed", "expected", "p0_observed", "p0_expected"}`` (Z in sigma).
    """
    import pyhf
    from scipy.stats import norm

    with minuit_backend():
        p_obs, p_exp = pyhf.infer.hypotest(0.0, data, model, test_stat="q0",
                                           return_expected=True)
    p0_obs, p0_exp = float(p_obs), float(p_exp)
    return {
        "observed": max(float(norm.isf(p0_obs)), 0.0),
        "expected": max(float(norm.isf(p0_exp)), 0.0),
        "p0_observed": p0_obs,
        "p0_expected": p0_exp,
    }
