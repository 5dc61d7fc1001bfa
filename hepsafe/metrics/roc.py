"""Tagger performance metrics: ROC, AUC, rejection, working points, SIC, fooling rate, sweeps.

Conventions. A jet is *selected* (tagged as signal) when ``score >= threshold``. Every
function takes optional per-jet weights (default 1); weights must be finite and
non-negative with a positive sum, and efficiencies are weighted fractions. Scores are any
finite real numbers (probabilities, logits, discriminants); shapes are ``(n_jets,)``.
Everything is vectorised: sorting and cumulative sums, no Python loops over jets.

"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hepsafe.exceptions import ConfigError, InputError


# --------------------------------------------------------------------------- input checks
def _scores(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise InputError(f"'{name}' must be one-dimensional (n_jets,), got shape {a.shape}")
    if a.size == 0:
        raise InputError(f"'{name}' is empty: at least one jet is needed")
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise InputError(f"'{name}' has a non-finite value {a[bad]} at index {bad}")
    return a


def _weights(w: Any, n: int, name: str) -> np.ndarray:
    if w is None:
        return np.ones(n, dtype=np.float64)
    a = np.asarray(w, dtype=np.float64)
    if a.shape != (n,):
        raise InputError(f"'{name}' has shape {a.shape}, expected ({n},) like its scores")
    if not np.all(np.isfinite(a)):
        raise InputError(f"'{name}' has non-finite values")
    if np.any(a < 0):
        bad = int(np.flatnonzero(a < 0)[0])
        raise InputError(
            f"'{name}' has a negative weight {a[bad]} at index {bad}; efficiencies need "
            "non-negative weights"
        )
    if not a.sum() > 0:
        raise InputError(f"'{name}' sums to zero: no selected weight to normalise by")
    return a


def _fraction(eff: float, name: str) -> float:
    e = float(eff)
    if not 0.0 < e <= 1.0:
        raise ConfigError(f"'{name}' must be in (0, 1], got {eff}")
    return e


def _sig_bkg(
    scores_sig: Any, scores_bkg: Any, weights_sig: Any, weights_bkg: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked signal and background scores and their weights (default 1)."""
    ss = _scores(scores_sig, "scores_sig")
    sb = _scores(scores_bkg, "scores_bkg")
    ws = _weights(weights_sig, len(ss), "weights_sig")
    wb = _weights(weights_bkg, len(sb), "weights_bkg")
    return ss, sb, ws, wb


def _rejection(eps_b: float) -> float:
    """1/eps_B, ``inf`` when no background passes."""
    return math.inf if eps_b <= 0 else 1.0 / eps_b


def _sic(eps_s: float, eps_b: float) -> float:
    """eps_S/sqrt(eps_B), ``inf`` when no background passes."""
    return math.inf if eps_b <= 0 else eps_s / math.sqrt(eps_b)


# --------------------------------------------------------------------------- efficiencies
def efficiency(scores: Any, threshold: float, weights: Any = None) -> float:
    """Weighted fraction of jets with ``score >= threshold`` (a number in [0, 1])."""
    s = _scores(scores, "scores")
    w = _weights(weights, len(s), "weights")
    return float(w[s >= threshold].sum() / w.sum())


def threshold_at_efficiency(scores: Any, eff: float, weights: Any = None) -> float:
    """Score threshold of a working point with (weighted) efficiency ``eff`` in (0, 1].

    Returns the largest score value ``t`` such that ``efficiency(scores, t) >= eff``: the
    tightest cut that keeps at least the requested fraction. With continuous scores the
    efficiency reached exceeds ``eff`` by at most one jet's weight; with tied scores it can
    exceed it by the weight of the tie (use :func:`efficiency` for the value reached).
    """
    s = _scores(scores, "scores")
    w = _weights(weights, len(s), "weights")
    e = _fraction(eff, "eff")
    order = np.argsort(-s, kind="stable")
    cw = np.cumsum(w[order]) / w.sum()
    # first position (in descending score order) where the cumulative efficiency reaches eff;
    # a small tolerance absorbs rounding in the cumulative sum
    i = int(np.searchsorted(cw, e * (1.0 - 1e-12), side="left"))
    return float(s[order][min(i, len(s) - 1)])


# --------------------------------------------------------------------------- ROC
@dataclass(frozen=True)
class RocCurve:
    """A ROC curve: one point per distinct score value, from the tightest cut to the loosest.

    ``thresholds`` (descending; the first is ``+inf``, selecting nothing), ``eps_s`` and
    ``eps_b`` (non-decreasing, from 0 to 1) have the same shape ``(n_points,)``. Point ``i``
    is the selection ``score >= thresholds[i]``.
    """

    thresholds: np.ndarray
    eps_s: np.ndarray
    eps_b: np.ndarray

    def auc(self) -> float:
        """Area under eps_S as a function of eps_B (trapezoids; ties count one half)."""
        return float(np.sum(np.diff(self.eps_b) * (self.eps_s[1:] + self.eps_s[:-1]) / 2.0))


def roc_curve(
    scores_sig: Any,
    scores_bkg: Any,
    weights_sig: Any = None,
    weights_bkg: Any = None,
) -> RocCurve:
    """Weighted ROC curve of signal vs. background scores (shapes ``(n_sig,)``, ``(n_bkg,)``).

    Tied scores (within or across classes) form a single point, so the curve joins
    the points before and after a tie by a straight segment.
    """
    ss, sb, ws, wb = _sig_bkg(scores_sig, scores_bkg, weights_sig, weights_bkg)
    values, inv = np.unique(np.concatenate([ss, sb]), return_inverse=True)
    n = len(values)
    # weight per distinct score value, highest score first
    per_s = np.bincount(inv[: len(ss)], weights=ws, minlength=n)[::-1]
    per_b = np.bincount(inv[len(ss) :], weights=wb, minlength=n)[::-1]
    eps_s = np.concatenate([[0.0], np.cumsum(per_s) / ws.sum()])
    eps_b = np.concatenate([[0.0], np.cumsum(per_b) / wb.sum()])
    eps_s[-1] = eps_b[-1] = 1.0  # exact despite rounding in the sums
    thresholds = np.concatenate([[np.inf], values[::-1]])
    return RocCurve(thresholds=thresholds, eps_s=eps_s, eps_b=eps_b)


def roc_auc(
    scores_sig: Any,
    scores_bkg: Any,
    weights_sig: Any = None,
    weights_bkg: Any = None,
) -> float:
    """Weighted ROC AUC: P(score_sig > score_bkg) + P(score_sig == score_bkg) / 2, in [0, 1].

    Scores and weights of each class have shape ``(n,)`` (weights default to 1).

    Examples
    --------
    >>> from hepsafe import metrics
    >>> metrics.roc_auc([0.9, 0.8, 0.4], [0.1, 0.5, 0.4])  # 7.5 of 9 pairs: a tie counts 1/2
    0.8333...
    >>> metrics.roc_auc([1.0, 2.0], [0.5, 3.0], weights_bkg=[3.0, 1.0])
    0.75
    """
    return roc_curve(scores_sig, scores_bkg, weights_sig, weights_bkg).auc()


def eps_b_at(roc: RocCurve, eps_s: float | np.ndarray) -> np.ndarray:
    """Background efficiency at signal efficiency ``eps_s``, linearly interpolated on ``roc``.

    Where the curve is flat in eps_S, the smallest eps_B reaching ``eps_s`` is taken.
    ``eps_s`` is a number or array in [0, 1]; the result has its shape.
    """
    target = np.asarray(eps_s, dtype=np.float64)
    if np.any((target < 0) | (target > 1)) or not np.all(np.isfinite(target)):
        raise ConfigError(f"'eps_s' must lie in [0, 1], got {eps_s}")
    i = np.searchsorted(roc.eps_s, target, side="left")
    i = np.clip(i, 1, len(roc.eps_s) - 1)
    s0, s1 = roc.eps_s[i - 1], roc.eps_s[i]
    b0, b1 = roc.eps_b[i - 1], roc.eps_b[i]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(s1 > s0, (target - s0) / (s1 - s0), 1.0)
    out = b0 + np.clip(frac, 0.0, 1.0) * (b1 - b0)
    return np.where(target <= 0, 0.0, out)


def _interpolated(
    scores_sig: Any, scores_bkg: Any, eff_sig: float, weights_sig: Any, weights_bkg: Any
) -> tuple[float, float]:
    """``(eps_s, eps_b)`` at signal efficiency ``eff_sig``, eps_B interpolated on the ROC."""
    e = _fraction(eff_sig, "eff_sig")
    return e, float(eps_b_at(roc_curve(scores_sig, scores_bkg, weights_sig, weights_bkg), e))


def rejection_at_efficiency(
    scores_sig: Any,
    scores_bkg: Any,
    eff_sig: float = 0.5,
    weights_sig: Any = None,
    weights_bkg: Any = None,
) -> float:
    """Background rejection 1/eps_B at signal efficiency ``eff_sig`` (ROC interpolated).

    ``inf`` when no background passes at that signal efficiency.
    """
    _, b = _interpolated(scores_sig, scores_bkg, eff_sig, weights_sig, weights_bkg)
    return _rejection(b)


def sic_at_efficiency(
    scores_sig: Any,
    scores_bkg: Any,
    eff_sig: float = 0.5,
    weights_sig: Any = None,
    weights_bkg: Any = None,
) -> float:
    """Significance improvement eps_S/sqrt(eps_B) at signal efficiency ``eff_sig``.

    eps_B is interpolated on the ROC curve as in :func:`rejection_at_efficiency`; ``inf``
    when no background passes.
    """
    return _sic(*_interpolated(scores_sig, scores_bkg, eff_sig, weights_sig, weights_bkg))


def sic_curve(roc: RocCurve, min_eps_b: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """SIC curve ``(eps_s, eps_s / sqrt(eps_b))`` over the ROC points with ``eps_b > min_eps_b``.

    Points with no background (``eps_b == 0``) are always left out (their SIC is
    infinite). Raising ``min_eps_b`` (e.g. to a few / total background weight) keeps
    the maximum away from the statistically empty tail.
    """
    if not min_eps_b >= 0:
        raise ConfigError(f"'min_eps_b' must be >= 0, got {min_eps_b}")
    keep = roc.eps_b > min_eps_b
    return roc.eps_s[keep], roc.eps_s[keep] / np.sqrt(roc.eps_b[keep])


def max_sic(roc: RocCurve, min_eps_b: float = 0.0) -> tuple[float, float, float]:
    """Maximum of the SIC curve: ``(sic_max, eps_s, threshold)`` at the maximum.

    ``(nan, nan, nan)`` when no ROC point has ``eps_b > min_eps_b``.
    """
    if not min_eps_b >= 0:
        raise ConfigError(f"'min_eps_b' must be >= 0, got {min_eps_b}")
    keep = np.flatnonzero(roc.eps_b > min_eps_b)
    if keep.size == 0:
        return math.nan, math.nan, math.nan
    sic = roc.eps_s[keep] / np.sqrt(roc.eps_b[keep])
    j = int(np.argmax(sic))
    return float(sic[j]), float(roc.eps_s[keep][j]), float(roc.thresholds[keep][j])


# --------------------------------------------------------------------------- working points
@dataclass(frozen=True)
class WorkingPoint:
    """A cut ``score >= threshold`` fixed on the signal at target efficiency ``target``.

    ``eps_s`` and ``eps_b`` are the efficiencies that cut actually reaches, ``rejection``
    is 1/eps_B (``inf`` if zero) and ``sic`` is eps_S/sqrt(eps_B).
    """

    target: float
    threshold: float
    eps_s: float
    eps_b: float
    rejection: float
    sic: float


def working_point(
    scores_sig: Any,
    scores_bkg: Any,
    eff_sig: float = 0.5,
    weights_sig: Any = None,
    weights_bkg: Any = None,
) -> WorkingPoint:
    """The cut on the score keeping ``eff_sig`` of the (weighted) signal, and its efficiencies.

    The threshold is :func:`threshold_at_efficiency` on the signal; apply it to any other
    selection with :func:`efficiency`.
    """
    ss, sb, ws, wb = _sig_bkg(scores_sig, scores_bkg, weights_sig, weights_bkg)
    t = threshold_at_efficiency(ss, _fraction(eff_sig, "eff_sig"), ws)
    es = float(ws[ss >= t].sum() / ws.sum())
    eb = float(wb[sb >= t].sum() / wb.sum())
    return WorkingPoint(
        target=float(eff_sig),
        threshold=t,
        eps_s=es,
        eps_b=eb,
        rejection=_rejection(eb),
        sic=_sic(es, eb),
    )


# --------------------------------------------------------------------------- fooling rate
@dataclass(frozen=True)
class FoolingRate:
    """How often the decision ``score >= threshold`` changes from nominal to perturbed scores.

    Fractions of the total weight: ``rate`` (any flip) = ``up`` (fail -> pass) + ``down``
    (pass -> fail). Conditional fractions: ``up_given_fail`` of the nominally failing
    weight, ``down_given_pass`` of the nominally passing weight (``nan`` if that weight is
    zero). ``eff_nominal`` and ``eff_perturbed`` are the selection efficiencies.
    """

    threshold: float
    rate: float
    up: float
    down: float
    up_given_fail: float
    down_given_pass: float
    eff_nominal: float
    eff_perturbed: float


def fooling_rate(
    nominal: Any, perturbed: Any, threshold: float, weights: Any = None
) -> FoolingRate:
    """Fraction of jets whose decision at ``threshold`` flips, with its direction.

    ``nominal`` and ``perturbed`` are the scores of the same jets in the same order, shape
    ``(n_jets,)``; ``weights`` (optional) is per jet.
    """
    s0 = _scores(nominal, "nominal")
    s1 = _scores(perturbed, "perturbed")
    if s0.shape != s1.shape:
        raise InputError(
            f"'perturbed' has shape {s1.shape} but 'nominal' has {s0.shape}: the fooling rate "
            "compares the same jets"
        )
    w = _weights(weights, len(s0), "weights")
    p0, p1 = s0 >= threshold, s1 >= threshold
    total = w.sum()
    up = float(w[~p0 & p1].sum())
    down = float(w[p0 & ~p1].sum())
    w_pass, w_fail = float(w[p0].sum()), float(w[~p0].sum())
    return FoolingRate(
        threshold=float(threshold),
        rate=(up + down) / total,
        up=up / total,
        down=down / total,
        up_given_fail=up / w_fail if w_fail > 0 else math.nan,
        down_given_pass=down / w_pass if w_pass > 0 else math.nan,
        eff_nominal=w_pass / total,
        eff_perturbed=float(w[p1].sum()) / total,
    )



def as_dict(obj: WorkingPoint | FoolingRate) -> dict[str, float]:
    """A working point or fooling rate as a plain dict of floats."""
    return {k: float(v) for k, v in asdict(obj).items()}
