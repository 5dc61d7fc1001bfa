"""Anomaly scores from a jet classifier (Cheng & Courville, "classifier-based anomaly
detection"): ``msp``, ``entropy``, ``max_logit``, ``energy`` from its logits and the
``Mahalanobis`` distance in its representation layer; :func:`anomaly_metrics` evaluates a
score on an out-of-distribution class against QCD."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.anomaly.evaluation import AnomalyMetrics, anomaly_metrics
    from hepsafe.anomaly.mahalanobis import Mahalanobis
    from hepsafe.anomaly.outputs import class_logits, log_probabilities
    from hepsafe.anomaly.scorer import SCORE_NAMES, AnomalyScorer
    from hepsafe.anomaly.scores import (
        LOGIT_SCORES,
        binary_logits,
        energy,
        entropy,
        log_softmax,
        max_logit,
        msp,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "AnomalyMetrics": "evaluation",
    "AnomalyScorer": "scorer",
    "SCORE_NAMES": "scorer",
    "LOGIT_SCORES": "scores",
    "Mahalanobis": "mahalanobis",
    "anomaly_metrics": "evaluation",
    "binary_logits": "scores",
    "class_logits": "outputs",
    "energy": "scores",
    "entropy": "scores",
    "log_probabilities": "outputs",
    "log_softmax": "scores",
    "max_logit": "scores",
    "msp": "scores",
}
__all__ = [
    "AnomalyMetrics",
    "AnomalyScorer",
    "SCORE_NAMES",
    "LOGIT_SCORES",
    "Mahalanobis",
    "anomaly_metrics",
    "binary_logits",
    "class_logits",
    "energy",
    "entropy",
    "log_probabilities",
    "log_softmax",
    "max_logit",
    "msp",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
