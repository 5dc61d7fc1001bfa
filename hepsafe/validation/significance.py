"""Size-aware tests of the calibrated gate: p-values from a measured statistic and the sizes of
the data and simulation samples.

Every function takes the statistic measured between two samples and the effective sizes
``n_data`` and ``n_sim`` (``math.inf``: simulation taken as exact), and broadcasts over
arrays, so the same code scores one comparison, thousands of random halves, or one shift
at many hypothetical control-region sizes.

- KS: the two-sample Kolmogorov-Smirnov distribution, asymptotic, at
  ``n_eff = 1 / (1/n_data + 1/n_sim)``; the critical value is
  ``c(alpha) sqrt(1/n_data + 1/n_sim)`` with ``c`` the Kolmogorov quantile
  (``c(alpha) ~ sqrt(-ln(alpha/2) / 2)``: 1.358 at alpha = 0.05).
- Efficiency at the working point: the two-proportion z-test with the pooled efficiency,
  ``z = (eps_data - eps_sim) / sqrt(eps0 (1 - eps0) (1/n_data + 1/n_sim))``, two-sided.
- Binned Poisson likelihood ratio on a distribution: data counts ``n`` against the
  simulation's prediction ``nu`` normalised to the data total, the simulation's statistical
  uncertainty as one Gaussian-constrained scale ``gamma`` per bin (Barlow-Beeston lite,
  profiled in closed form), ``q = 2 sum[n ln(n / gamma nu) - (n - gamma nu)] +
  sum (gamma - 1)^2 / delta^2``, chi2 with ``bins - 1`` degrees of freedom.
- Correlations: Fisher's ``z = atanh(r)`` per pair of variables; the change between the
  samples over its asymptotic standard deviation (the delta-method variance of Pearson's r
  for non-normal variables, from fourth moments of the simulation), summed in squares as a
  chi2 with one degree of freedom per pair (the pairs are treated as independent; the
  combined gate's calibration absorbs what that misses).

The significance ``Z`` of a p-value is its two-sided Gaussian equivalent,
``Z = Phi^-1(1 - p/2)`` (so the efficiency test's ``Z`` is ``|z|``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize, special, stats

ArrayLike = float | np.ndarray


def _arr(x: Any) -> np.ndarray:
    """``x`` as a float64 array (typed)."""
    out: np.ndarray = np.asarray(x, dtype=np.float64)
    return out


def _inv_sum(n_data: ArrayLike, n_sim: ArrayLike) -> np.ndarray:
    """``1/n_data + 1/n_sim`` (an infinite size contributes 0)."""
    return 1.0 / np.asarray(n_data, dtype=np.float64) + 1.0 / np.asarray(n_sim, dtype=np.float64)


def kolmogorov_sf(lam: ArrayLike) -> np.ndarray:
    """Survival function of the Kolmogorov distribution, ``P(sqrt(n) D > lam)``, asymptotic."""
    x = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    out = np.ones_like(x)
    small = (x > 0) & (x < 1.18)
    if small.any():
        y = np.exp(-(math.pi**2) / (8.0 * x[small] ** 2))
        cdf = math.sqrt(2.0 * math.pi) / x[small] * (y + y**9 + y**25 + y**49)
        out[small] = 1.0 - cdf
    big = x >= 1.18
    if big.any():
        k = np.arange(1, 41, dtype=np.float64)
        terms = 2.0 * (-1.0) ** (k - 1) * np.exp(-2.0 * np.outer(x[big] ** 2, k * k))
        out[big] = terms.sum(axis=1)
    out = np.clip(out, 0.0, 1.0)
    return out.reshape(np.shape(lam))


def kolmogorov_quantile(alpha: float) -> float:
    """``c`` with ``P(sqrt(n) D > c) = alpha`` (asymptotic; 1.3581 at alpha = 0.05)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    guess = math.sqrt(-math.log(alpha / 2.0) / 2.0)
    return float(
        optimize.brentq(lambda c: float(kolmogorov_sf(c)) - alpha, 0.1, max(4.0, 2 * guess),
                        xtol=1e-12)
    )


def ks_critical_value(alpha: float, n_data: ArrayLike, n_sim: ArrayLike = math.inf) -> np.ndarray:
    """KS distance a data set of ``n_data`` events must exceed to disagree with a simulation of
    ``n_sim`` effective events at level ``alpha``: ``c(alpha) sqrt(1/n_data + 1/n_sim)``.

    Examples
    --------
    >>> from hepsafe.validation.significance import ks_critical_value
    >>> [round(float(ks_critical_value(0.05, n)), 4) for n in (2e3, 1e4, 1e5)]
    [0.0304, 0.0136, 0.0043]
    """
    return _arr(kolmogorov_quantile(alpha) * np.sqrt(_inv_sum(n_data, n_sim)))


def ks_pvalue_sizes(d: ArrayLike, n_data: ArrayLike, n_sim: ArrayLike) -> np.ndarray:
    """p-value of a KS distance ``d`` between samples of effective sizes ``n_data``, ``n_sim``."""
    return kolmogorov_sf(np.asarray(d, dtype=np.float64) / np.sqrt(_inv_sum(n_data, n_sim)))


def efficiency_z(
    eff_data: ArrayLike, eff_sim: ArrayLike, n_data: ArrayLike, n_sim: ArrayLike
) -> np.ndarray:
    """Two-proportion z of an efficiency (fraction above the working point) in data vs simulation.

    The null variance uses the pooled efficiency (the simulation's when ``n_sim`` is infinite);
    0 where the pooled efficiency is 0 or 1 (nothing to count).
    """
    ed = np.asarray(eff_data, dtype=np.float64)
    es = np.asarray(eff_sim, dtype=np.float64)
    nd = np.asarray(n_data, dtype=np.float64)
    ns = np.asarray(n_sim, dtype=np.float64)
    frac_sim = np.where(np.isinf(ns), 1.0, ns / np.where(np.isinf(ns), 1.0, nd + ns))
    e0 = frac_sim * es + (1.0 - frac_sim) * ed
    var = e0 * (1.0 - e0) * _inv_sum(nd, ns)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, (ed - es) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    return z


def two_sided_p(z: ArrayLike) -> np.ndarray:
    """Two-sided Gaussian p-value of a z-score, ``erfc(|z| / sqrt 2)``."""
    return _arr(special.erfc(np.abs(np.asarray(z, dtype=np.float64)) / math.sqrt(2.0)))


def significance(p: ArrayLike) -> np.ndarray:
    """Two-sided Gaussian equivalent ``Z = Phi^-1(1 - p/2)`` of a p-value (inf at p = 0)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return _arr(np.sqrt(2.0) * special.erfcinv(p))


def z_critical(alpha: float) -> float:
    """``|z|`` a two-sided Gaussian test must exceed at level ``alpha`` (1.96 at 0.05)."""
    return float(significance(alpha))


def poisson_lr(
    p_data: np.ndarray, p_sim: np.ndarray, rel_var_sim: np.ndarray, n_data: ArrayLike
) -> np.ndarray:
    """Binned Poisson likelihood ratio of data vs simulation, the simulation's statistical
    uncertainty profiled per bin (Barlow-Beeston lite).

    ``p_data``, ``p_sim``: bin fractions, shape ``(..., bins)`` (each sums to 1);
    ``rel_var_sim``: the simulation's relative variance per bin, ``delta^2 = sum w^2 /
    (sum w)^2`` at its size (0: exact); ``n_data``: the data's size, broadcast against
    ``(...)``. The data counts are ``n = n_data p_data`` (the Asimov data set when
    ``p_data`` is the expected distribution), the prediction ``nu = n_data p_sim``.
    Returns ``q``, shape ``(...)``.
    """
    nd = np.asarray(n_data, dtype=np.float64)[..., None]
    n = nd * np.asarray(p_data, dtype=np.float64)
    nu = nd * np.asarray(p_sim, dtype=np.float64)
    d2 = np.asarray(rel_var_sim, dtype=np.float64)
    nu = np.maximum(nu, 1e-12 * nd)  # a bin the simulation leaves empty
    # gamma solves gamma^2 + (nu d2 - 1) gamma - n d2 = 0 (1 where d2 = 0)
    b = nu * d2 - 1.0
    disc = np.sqrt(b * b + 4.0 * n * d2)
    with np.errstate(divide="ignore", invalid="ignore"):
        # the stable root: (-b + disc)/2, written to avoid cancellation when b > 0
        gamma = np.where(b <= 0, (-b + disc) / 2.0, 2.0 * n * d2 / np.where(b + disc > 0,
                                                                          b + disc, 1.0))
    gamma = np.where(d2 > 0, gamma, 1.0)
    mu = gamma * nu
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0) / mu), 0.0)
        constraint = np.where(d2 > 0, (gamma - 1.0) ** 2 / np.where(d2 > 0, d2, 1.0), 0.0)
    q = 2.0 * np.sum(log_term - (n - mu), axis=-1) + np.sum(constraint, axis=-1)
    return _arr(np.maximum(q, 0.0))


def chi2_pvalue(q: ArrayLike, dof: int) -> np.ndarray:
    """Upper-tail probability of a chi2 with ``dof`` degrees of freedom (1 when ``dof < 1``)."""
    if dof < 1:
        return np.ones_like(np.asarray(q, dtype=np.float64))
    return _arr(stats.chi2.sf(np.asarray(q, dtype=np.float64), dof))


def chi2_critical(alpha: float, dof: int) -> float:
    """The chi2 value with upper-tail probability ``alpha`` (inf when ``dof < 1``)."""
    return float(stats.chi2.isf(alpha, dof)) if dof >= 1 else math.inf


def correlation_unit_variance(x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """``n var(atanh r_ij)`` per pair of columns of ``x`` (shape ``(n, k)``): ``(k, k)``.

    The delta-method variance of Pearson's r for any distribution with finite fourth
    moments (``(1 - rho^2)^2`` for normal variables), divided by ``(1 - rho^2)^2`` for Fisher's
    transform. Weighted by ``w`` (None: all 1).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=np.float64)
    w = w / w.sum()
    u = x - w @ x
    sd = np.sqrt(w @ (u * u))
    u = u / np.where(sd > 0, sd, 1.0)
    rho = np.einsum("n,ni,nj->ij", w, u, u)
    m22 = np.einsum("n,ni,nj->ij", w, u * u, u * u)
    m31 = np.einsum("n,ni,nj->ij", w, u**3, u)  # E[u_i^3 u_j]
    m4 = np.diag(m22)
    var_r = (rho**2 / 4.0) * (m4[:, None] + m4[None, :] + 2.0 * m22) - rho * (m31 + m31.T) + m22
    one = np.clip(1.0 - rho**2, 1e-12, None)
    out: np.ndarray = var_r / one**2
    return out


def correlation_chi2(
    dz: np.ndarray, unit_var: np.ndarray, n_data: ArrayLike, n_sim: ArrayLike
) -> np.ndarray:
    """chi2 of changes of Fisher-transformed correlations, ``dz`` of shape ``(..., m)`` (one per
    pair), ``unit_var`` their ``n var`` ``(m,)``; the variance scales as ``1/n_data + 1/n_sim``."""
    var = np.asarray(unit_var, dtype=np.float64) * _inv_sum(n_data, n_sim)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(var > 0, dz**2 / np.where(var > 0, var, 1.0), 0.0)
    return _arr(np.sum(terms, axis=-1))
