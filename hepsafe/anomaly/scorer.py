"""An anomaly scorer that travels: a classifier (ONNX, by path), the scores to compute and, for
``mahalanobis``, the fitted class-conditional Gaussians; picklable (the ONNX Runtime session
is built on first use in each process), so a coffea step can attach its scores per chunk."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe.anomaly.mahalanobis import Mahalanobis
from hepsafe.anomaly.outputs import class_logits
from hepsafe.anomaly.scores import LOGIT_SCORES
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError

#: every score a scorer can compute
SCORE_NAMES = (*LOGIT_SCORES, "mahalanobis")


@dataclass
class AnomalyScorer:
    """``scorer(jets) -> {score name: float32 (n_jets,)}`` (larger = more anomalous) with the
    classifier ``model`` (its card beside it or ``card``); ``mahalanobis`` is needed for the
    score of that name (:meth:`fit` makes one on training jets)."""

    model: str
    card: str | None = None
    scores: tuple[str, ...] = SCORE_NAMES
    mahalanobis: Mahalanobis | None = None
    _tagger: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.model = str(self.model)
        self.scores = tuple(self.scores)
        bad = [s for s in self.scores if s not in SCORE_NAMES]
        if bad or not self.scores:
            raise ConfigError(f"AnomalyScorer: option 'scores': unknown {bad}; choose from "
                              f"{list(SCORE_NAMES)}")
        if "mahalanobis" in self.scores and self.mahalanobis is None:
            raise ConfigError("AnomalyScorer: score 'mahalanobis' needs a fitted Mahalanobis "
                              "(AnomalyScorer.fit, or leave it out of 'scores')")

    @classmethod
    def fit(cls, model: str | os.PathLike[str], train_jets: JetBatch,
            card: str | None = None, scores: tuple[str, ...] = SCORE_NAMES) -> AnomalyScorer:
        """A scorer whose Mahalanobis distance is fitted on ``train_jets`` (in-distribution,
        labelled) in the classifier's representation."""
        from hepsafe.tagger.onnx import OnnxTagger

        tagger = OnnxTagger(Path(model), card=card, providers="cpu", intra_op_threads=1)
        maha = Mahalanobis.fit(tagger.represent(train_jets), train_jets.label)
        return cls(str(model), card, scores, maha)

    @property
    def tagger(self) -> Any:
        """The classifier's :class:`~hepsafe.tagger.onnx.OnnxTagger`, built on first use."""
        if self._tagger is None:
            from hepsafe.tagger.onnx import OnnxTagger

            self._tagger = OnnxTagger(self.model, card=self.card, providers="cpu",
                                      intra_op_threads=1)
        return self._tagger

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tagger"] = None  # no ONNX Runtime session in a pickle
        return state

    def __call__(self, jets: JetBatch) -> dict[str, np.ndarray]:
        """Every configured score of ``jets``, float32 ``(n_jets,)`` each."""
        out: dict[str, np.ndarray] = {}
        logit_names = [s for s in self.scores if s in LOGIT_SCORES]
        if logit_names:
            z = class_logits(self.tagger, jets)
            for s in logit_names:
                out[s] = LOGIT_SCORES[s](z).astype(np.float32)
        if "mahalanobis" in self.scores:
            assert self.mahalanobis is not None
            out["mahalanobis"] = self.mahalanobis.score(
                self.tagger.represent(jets)).astype(np.float32)
        return out
