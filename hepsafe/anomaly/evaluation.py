"""How well an anomaly score separates an out-of-distribution class from QCD: AUC, QCD
rejection and significance improvement at a fixed OOD efficiency (Cheng & Courville quote
both at 50 %)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from hepsafe import metrics


class AnomalyMetrics(NamedTuple):
    """One score on one OOD class against QCD; ``efficiency`` is the OOD efficiency of the
    working point (fraction), ``rejection`` = 1 / QCD efficiency there, SIC = eps_S/sqrt(eps_B)."""

    auc: float
    rejection: float
    sic: float
    efficiency: float
    n_ood: int
    n_qcd: int


def anomaly_metrics(
    ood: Any, qcd: Any, efficiency: float = 0.5,
    w_ood: Any = None, w_qcd: Any = None,
) -> AnomalyMetrics:
    """AUC (OOD as signal, larger score = more anomalous), QCD rejection and SIC at OOD
    efficiency ``efficiency`` of scores ``ood`` ``(n,)`` and ``qcd`` ``(m,)``."""
    s, b = np.asarray(ood, np.float64), np.asarray(qcd, np.float64)
    return AnomalyMetrics(
        auc=float(metrics.roc_auc(s, b, w_ood, w_qcd)),
        rejection=float(metrics.rejection_at_efficiency(s, b, efficiency, w_ood, w_qcd)),
        sic=float(metrics.sic_at_efficiency(s, b, efficiency, w_ood, w_qcd)),
        efficiency=efficiency,
        n_ood=len(s),
        n_qcd=len(b),
    )
