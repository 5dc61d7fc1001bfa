"""The calibrated gate's statistics on many pairs of weighted samples at once.

A comparison is two weight vectors over one pooled set of jets: the nominal and perturbed
samples side by side (``pooled = concat(nominal, perturbed)``, weights ``(w, 0)`` and
``(0, w')``), or a random half of the nominal sample against the other half (weights
``w m`` and ``w (1 - m)``). Weights of shape ``(K, n)`` give K comparisons in one pass:
the calibration's thousands of halves cost a few array operations, no loop over jets.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _arr(x: Any) -> np.ndarray:
    """``x`` as a float64 array (typed)."""
    out: np.ndarray = np.asarray(x, dtype=np.float64)
    return out


def kish(w: np.ndarray) -> np.ndarray:
    """Kish effective size ``(sum w)^2 / sum w^2`` per row of ``w`` ``(K, n)``: ``(K,)``."""
    s2 = np.sum(w * w, axis=-1)
    return np.where(s2 > 0, np.sum(w, axis=-1) ** 2 / np.where(s2 > 0, s2, 1.0), 0.0)


def ks_distance(x: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> np.ndarray:
    """Weighted KS distance ``max |F_a - F_b|`` between the rows of ``wa``, ``wb`` ``(K, n)``
    over the pooled values ``x`` ``(n,)``: ``(K,)``. Ties are counted whole."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    last = np.append(xs[1:] != xs[:-1], True)
    # F_a - F_b as one running sum of the normalised weight difference
    diff = wa / wa.sum(axis=1, keepdims=True) - wb / wb.sum(axis=1, keepdims=True)
    c = np.cumsum(diff[:, order], axis=1)
    d = np.max(np.abs(c[:, last]), axis=1)
    return _arr(np.where(d < 1e-12, 0.0, d))  # rounding of equal distributions


def fraction(mask: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted fraction of the jets in ``mask`` ``(n,)`` per row of ``w`` ``(K, n)``: ``(K,)``."""
    return _arr((w @ mask.astype(np.float64)) / np.sum(w, axis=1))


def binned(index: np.ndarray, bins: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``w`` ``(K, n)``: bin fractions ``(K, bins)`` and relative variances
    ``sum w^2 / (sum w)^2`` per bin at that row's size (``(K, bins)``, 0 in empty bins).

    ``index`` ``(n,)`` is each jet's bin in ``[0, bins)``."""
    onehot = np.zeros((len(index), bins))
    onehot[np.arange(len(index)), index] = 1.0
    s1 = w @ onehot
    s2 = (w * w) @ onehot
    total = s1.sum(axis=1, keepdims=True)
    rel = np.where(s1 > 0, s2 / np.where(s1 > 0, s1, 1.0) ** 2, 0.0)
    return s1 / total, rel


def quantile_index(reference: np.ndarray, w: np.ndarray, bins: int,
                   x: np.ndarray) -> tuple[np.ndarray, int]:
    """Bin of each value of ``x`` among ``bins`` equal-probability bins of the weighted
    ``reference`` sample (first and last bin open); ``(index (len(x),), number of bins)``."""
    order = np.argsort(reference, kind="stable")
    cw = np.cumsum(w[order])
    cw = cw / cw[-1]
    targets = np.arange(1, bins) / bins
    inner = np.unique(reference[order][np.minimum(np.searchsorted(cw, targets), len(cw) - 1)])
    return np.searchsorted(inner, x, side="right"), len(inner) + 1


def fisher_z(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Fisher-transformed weighted Pearson correlations ``atanh r_ij`` (i < j) of the columns
    of ``x`` ``(n, k)`` per row of ``w`` ``(K, n)``: ``(K, k (k - 1) / 2)``."""
    x = np.asarray(x, dtype=np.float64)
    centre = x.mean(axis=0)
    scale = x.std(axis=0)
    u = (x - centre) / np.where(scale > 0, scale, 1.0)
    k = x.shape[1]
    total = w.sum(axis=1)
    mean = (w @ u) / total[:, None]
    second = (w @ (u[:, :, None] * u[:, None, :]).reshape(len(u), k * k)).reshape(-1, k, k)
    cov = second / total[:, None, None] - mean[:, :, None] * mean[:, None, :]
    sd = np.sqrt(np.clip(np.einsum("kii->ki", cov), 0.0, None))
    ok = sd > 1e-12
    denom = np.where(ok, sd, 1.0)
    r = cov / (denom[:, :, None] * denom[:, None, :])
    r = np.where(ok[:, :, None] & ok[:, None, :], r, 0.0)
    i, j = np.triu_indices(x.shape[1], k=1)
    return _arr(np.arctanh(np.clip(r[:, i, j], -1 + 1e-12, 1 - 1e-12)))
