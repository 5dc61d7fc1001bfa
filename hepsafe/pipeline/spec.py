"""The typed parts of a run configuration: the tagger, the samples, the read options, the
observable's binning and the fit, each built once by the loader
(:func:`hepsafe.pipeline.config.from_dict`) and read as they are by the run.

The envelope (:class:`~hepsafe.perturbation.envelope.Envelope`), the region
(:class:`~hepsafe.data.regions.Region`), the gate (:class:`~hepsafe.validation.GateConfig`) and
the systematics (:class:`~hepsafe.perturbation.shifts.Systematic`) are the stages' own types.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from hepsafe.fit.workspace import WorkspaceConfig

if TYPE_CHECKING:
    from hepsafe.tagger.onnx import OnnxTagger


class TaggerSpec(NamedTuple):
    """The tagger of a run: ``model`` (the .onnx file), ``card`` (None: the .json beside
    it), the ONNX Runtime ``providers`` ("auto", "cpu" or "cuda") and ``batch_size`` (jets
    per ONNX Runtime call; None: the tagger's default)."""

    model: Path
    card: Path | None = None
    providers: str = "auto"
    batch_size: int | None = None

    def build(self) -> OnnxTagger:
        """The :class:`~hepsafe.tagger.onnx.OnnxTagger` (an ONNX Runtime session)."""
        from hepsafe.tagger.onnx import OnnxTagger

        card = None if self.card is None else str(self.card)
        if self.batch_size is None:
            return OnnxTagger(str(self.model), card=card, providers=self.providers)
        return OnnxTagger(str(self.model), card=card, providers=self.providers,
                          batch_size=self.batch_size)

    def card_file(self) -> Path:
        """The card read: ``card``, or the .json beside ``model``."""
        from hepsafe.tagger.card import card_path

        return self.card if self.card is not None else card_path(self.model)


class SampleSpec(NamedTuple):
    """One sample: ``name``, ``role`` ("signal" or "background"), its ``files`` (resolved
    paths), the truth ``label`` kept (None: any), the event ``split`` ("all", "train" or
    "test"), at most ``max_jets`` jets (None: all) and the weight ``scale`` (None: 1)."""

    name: str
    role: str
    files: tuple[str, ...]
    label: int | None = None
    split: str = "all"
    max_jets: int | None = None
    scale: float | None = None


class ReadOptions(NamedTuple):
    """How every input file is read: ``format`` ("hepsafe" or "pfnano"), the ``tree``, the
    PFNano jet ``collection`` ("FatJet" or "Jet"), ``puppi`` weighting of PFNano candidates
    and ``step_size`` entries per chunk (jets; events for PFNano)."""

    format: str = "hepsafe"
    tree: str = "jets"
    collection: str = "FatJet"
    puppi: bool = False
    step_size: int = 20_000


class Observable(NamedTuple):
    """The binning of the templates' observable (the tagger score): ``bins`` equal bins
    from ``low`` to ``high``."""

    bins: int = 10
    low: float = 0.0
    high: float = 1.0

    def edges(self) -> np.ndarray:
        """Bin edges, float64 ``(bins + 1,)``."""
        return np.linspace(self.low, self.high, self.bins + 1)


class FitSpec(NamedTuple):
    """The fit: ``workspace`` (how the templates become a pyhf model: the signal samples,
    luminosity uncertainty, ``missing_side``, ``merge_empty_bins``, the treatment per
    variation), ``skip`` (no fit) and ``include_failed`` (variations that fail the
    control-region gate stay in the fit)."""

    workspace: WorkspaceConfig
    skip: bool = False
    include_failed: bool = False
