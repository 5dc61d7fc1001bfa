"""hepsafe: how far can mismodelling that passes validation fool a jet tagger?"""

from __future__ import annotations

from . import datasets, exceptions, features, jets, metrics, stats, tagger, templates, validate
from .envelope import Envelope
from .jets import JetBatch
from .perturb import Perturbation, Perturber, perturb
from .stats import WorkspaceConfig
from .tagger import OnnxTagger
from .templates import Templates
from .validate import GateConfig, GateReport, gate

__version__ = "0.1.0"
__all__ = [
    "Envelope",
    "GateConfig",
    "GateReport",
    "JetBatch",
    "OnnxTagger",
    "Perturbation",
    "Perturber",
    "Templates",
    "WorkspaceConfig",
    "datasets",
    "exceptions",
    "features",
    "gate",
    "jets",
    "metrics",
    "perturb",
    "stats",
    "tagger",
    "templates",
    "validate",
    "__version__",
]
