"""A tagger's class logits and representation, the inputs of the anomaly scores."""

from __future__ import annotations

from typing import Any

import numpy as np

from hepsafe.anomaly.scores import binary_logits
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ModelError


def class_logits(tagger: Any, jets: JetBatch) -> np.ndarray:
    """Class logits ``(n_jets, n_classes)`` float64 of an
    :class:`~hepsafe.tagger.onnx.OnnxTagger`, columns as the card's classes.

    From the card's output activation: ``logits`` as they are; ``logit`` (binary) as
    ``[0, l]``; ``sigmoid`` through the log-odds. A ``softmax`` card gives probabilities
    only, the logits up to a per-jet constant: ModelError (``msp`` and ``entropy`` need no
    more than :func:`log_probabilities`)."""
    out = tagger.output
    if out.activation == "softmax":
        raise ModelError(f"tagger '{tagger.name}': its card gives softmax probabilities, not "
                         "logits; max_logit and energy need the logits (use "
                         "hepsafe.anomaly.outputs.log_probabilities for msp / entropy)")
    y = np.asarray(tagger.outputs(jets, [out.name])[out.name], dtype=np.float64)
    if out.activation == "logits":
        return y.reshape(len(jets), -1)
    y = y.reshape(-1)
    if out.activation == "sigmoid":
        p = np.clip(y, 1e-12, 1 - 1e-12)
        y = np.log(p / (1 - p))
    return binary_logits(y)


def log_probabilities(tagger: Any, jets: JetBatch) -> np.ndarray:
    """Log class probabilities ``(n_jets, n_classes)`` float64 (any output activation)."""
    return np.log(np.clip(tagger.predict_proba(jets).astype(np.float64), 1e-30, None))
