"""hepsafe: how far can mismodelling that passes validation fool a jet tagger?"""

from __future__ import annotations

from . import (
    datasets,
    exceptions,
    features,
    fits,
    hygiene,
    jets,
    limits,
    metrics,
    regions,
    stats,
    tagger,
    templates,
    templates_io,
    validate,
    workspace,
)
from .envelope import Envelope
from .jets import JetBatch
from .perturb import Perturbation, Perturber, perturb
from .regions import Region
from .tagger import OnnxTagger
from .templates import Templates
from .validate import GateConfig, GateReport, gate
from .workspace import WorkspaceConfig

__version__ = "0.1.0"
__all__ = [
    "Envelope",
    "GateConfig",
    "GateReport",
    "JetBatch",
    "OnnxTagger",
    "Perturbation",
    "Perturber",
    "Region",
    "Templates",
    "WorkspaceConfig",
    "datasets",
    "exceptions",
    "features",
    "fits",
    "gate",
    "hygiene",
    "jets",
    "limits",
    "metrics",
    "perturb",
    "regions",
    "stats",
    "tagger",
    "templates",
    "templates_io",
    "validate",
    "workspace",
    "__version__",
]
