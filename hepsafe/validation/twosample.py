"""Two-sample statistics on weighted samples: effective size, weighted KS and its p-value,
histograms, Jensen-Shannon distance, chi2/ndf, correlation matrices.

The samples are treated as independent; when the perturbed sample is the nominal one
modified jet by jet, p-values and chi2 are conservative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np


class Observed(NamedTuple):
    """One variable of one sample: ``values`` and per-entry ``weights`` (None: all 1), ``(n,)``."""

    values: np.ndarray
    weights: np.ndarray | None = None


NamedArrays = Mapping[str, "Observed | tuple[Any, Any] | np.ndarray"]


# =========================================================================== statistics
def effective_size(weights: np.ndarray) -> float:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` of weights, shape ``(n,)``."""
    w = np.asarray(weights, dtype=np.float64)
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def ks_pvalue(d: float, n_eff: float) -> float:
    """Two-sided p-value of a KS statistic ``d`` for effective size ``n_eff = n1 n2/(n1+n2)``.

    Asymptotic Kolmogorov distribution with Stephens' small-sample correction,
    ``Q_KS((sqrt(n) + 0.12 + 0.11/sqrt(n)) d)``.
    """
    if not n_eff > 0:
        return math.nan
    if d <= 0:
        return 1.0
    sn = math.sqrt(n_eff)
    z = (sn + 0.12 + 0.11 / sn) * d
    if z < 1.18:  # the series in exp(-pi^2 / 8 z^2) converges fast for small z
        y = math.exp(-(math.pi**2) / (8.0 * z * z))
        cdf = math.sqrt(2.0 * math.pi) / z * (y + y**9 + y**25 + y**49)
        return float(min(1.0, max(0.0, 1.0 - cdf)))
    k = np.arange(1, 101)
    terms = 2.0 * (-1.0) ** (k - 1) * np.exp(-2.0 * k * k * z * z)
    return float(min(1.0, max(0.0, terms.sum())))


def ks_2samp_weighted(
    x1: np.ndarray, x2: np.ndarray, w1: np.ndarray | None = None, w2: np.ndarray | None = None
) -> tuple[float, float]:
    """Weighted two-sample KS test: ``(D, p)``, D = max |F1 - F2| of the weighted ECDFs.

    The p-value uses the effective sizes (Kish) of both samples in :func:`ks_pvalue`.
    Shapes ``(n1,)`` and ``(n2,)``; weights None mean 1.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    w1 = np.ones(len(x1)) if w1 is None else np.asarray(w1, dtype=np.float64)
    w2 = np.ones(len(x2)) if w2 is None else np.asarray(w2, dtype=np.float64)
    # one sort of the pooled values; both ECDFs are running sums along it, read at the last
    # entry of each group of equal values (so ties are counted whole)
    pooled = np.concatenate([x1, x2])
    order = np.argsort(pooled)
    first = order < len(x1)
    w = np.concatenate([w1, w2])[order]
    c1 = np.cumsum(np.where(first, w, 0.0))
    c2 = np.cumsum(np.where(first, 0.0, w))
    xs = pooled[order]
    last = np.append(xs[1:] != xs[:-1], True)
    d = float(np.max(np.abs(c1[last] / c1[-1] - c2[last] / c2[-1])))
    n1, n2 = effective_size(w1), effective_size(w2)
    n_eff = n1 * n2 / (n1 + n2) if n1 + n2 > 0 else 0.0
    return d, ks_pvalue(d, n_eff)


def histogram(
    x: np.ndarray, edges: np.ndarray, w: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted histogram with under- and overflow: ``(sum w, sum w^2)``, ``(len(edges)+1,)``.

    Bin 0 holds ``x < edges[0]``, bin ``len(edges)`` holds ``x >= edges[-1]``.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.ones(len(x)) if w is None else np.asarray(w, dtype=np.float64)
    idx = np.searchsorted(edges, x, side="right")
    n = len(edges) + 1
    return np.bincount(idx, weights=w, minlength=n), np.bincount(idx, weights=w * w, minlength=n)


def js_distance(h1: np.ndarray, h2: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two histograms of equal binning.

    The histograms are normalised to unit sum; negative bin contents are clipped to 0.
    """
    p = np.clip(np.asarray(h1, dtype=np.float64), 0, None)
    q = np.clip(np.asarray(h2, dtype=np.float64), 0, None)
    if not (p.sum() > 0 and q.sum() > 0):
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def chi2_ndf(
    h1: tuple[np.ndarray, np.ndarray], h2: tuple[np.ndarray, np.ndarray]
) -> tuple[float, int]:
    """Shape chi2 and its ndf between two weighted histograms ``(sum w, sum w^2)``.

    Both are normalised to unit sum; chi2 = sum (p1 - p2)^2 / (s1/W1^2 + s2/W2^2) over bins
    with a non-zero error, ndf = that number of bins - 1 (the normalisation).
    """
    (a, a2), (b, b2) = h1, h2
    wa, wb = float(a.sum()), float(b.sum())
    var = a2 / wa**2 + b2 / wb**2
    used = var > 0
    chi2 = float(np.sum((a[used] / wa - b[used] / wb) ** 2 / var[used]))
    return chi2, int(used.sum()) - 1


def correlation_matrix(columns: Sequence[np.ndarray], weights: np.ndarray | None) -> np.ndarray:
    """Weighted Pearson correlation matrix of ``k`` columns of shape ``(n,)``: ``(k, k)``.

    A constant column is taken as uncorrelated with every other (0 off the diagonal).
    """
    x = np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = (w @ x) / w.sum()
    xc = x - mean
    cov = (xc * w[:, None]).T @ xc / w.sum()
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    ok = sd > 1e-12 * np.maximum(1.0, np.abs(mean))
    denom = np.outer(np.where(ok, sd, 1.0), np.where(ok, sd, 1.0))
    corr = np.where(np.outer(ok, ok), cov / denom, 0.0)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)
