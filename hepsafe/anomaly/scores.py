"""Anomaly scores from a classifier's outputs (Cheng & Courville): maximum softmax probability,
softmax entropy, maximum logit and the energy score.

Every score is oriented so that a **larger value is more anomalous**; inputs are the
classifier's logits, shape ``(n_jets, n_classes)``. A binary tagger with one logit ``l``
(its sigmoid is the signal probability) is the two-class case ``[0, l]``
(:func:`binary_logits`).

Examples
--------
>>> import numpy as np
>>> z = np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
>>> bool(msp(z)[1] > msp(z)[0]), bool(entropy(z)[1] > entropy(z)[0])
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hepsafe.exceptions import InputError


def _logits(logits: Any) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise InputError(f"anomaly scores need logits of shape (n_jets, n_classes >= 2), "
                         f"got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise InputError("anomaly scores: non-finite logits")
    return z


def binary_logits(logit: Any) -> np.ndarray:
    """Logits ``(n,)`` of a binary tagger as the two-class logits ``[0, l]``: ``(n, 2)``."""
    z = np.asarray(logit, dtype=np.float64).reshape(-1)
    return np.stack([np.zeros_like(z), z], axis=1)


def log_softmax(logits: Any) -> np.ndarray:
    """Log class probabilities ``(n, K)`` of logits ``(n, K)``, numerically stable."""
    z = _logits(logits)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def msp(logits: Any) -> np.ndarray:
    """``1 - max_k p_k`` ``(n,)``: one minus the maximum softmax probability."""
    return 1.0 - np.exp(log_softmax(logits).max(axis=1))


def entropy(logits: Any) -> np.ndarray:
    """Softmax entropy ``-sum_k p_k log p_k`` [nats] ``(n,)``."""
    lp = log_softmax(logits)
    return -(np.exp(lp) * lp).sum(axis=1)


def max_logit(logits: Any) -> np.ndarray:
    """``-max_k z_k`` ``(n,)``: minus the largest logit."""
    return -_logits(logits).max(axis=1)


def energy(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Energy score ``-T log sum_k exp(z_k / T)`` ``(n,)`` (Liu et al.), ``T > 0``."""
    if not temperature > 0:
        raise InputError(f"energy score: option 'temperature' must be > 0, got {temperature}")
    z = _logits(logits) / temperature
    m = z.max(axis=1)
    return -temperature * (m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


#: the scores computed from logits alone, by name
LOGIT_SCORES: dict[str, Callable[[Any], np.ndarray]] = {
    "msp": msp,
    "entropy": entropy,
    "max_logit": max_logit,
    "energy": energy,
}
