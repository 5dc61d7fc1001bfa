"""hepsafe: how far can mismodelling that passes validation fool a jet tagger?"""

from __future__ import annotations

from . import datasets, exceptions, jets, metrics, validate
from .envelope import Envelope
from .jets import JetBatch
from .perturb import Perturbation, Perturber, perturb
from .validate import GateConfig, GateReport, gate

__version__ = "0.1.0"
__all__ = [
    "Envelope",
    "GateConfig",
    "GateReport",
    "JetBatch",
    "Perturbation",
    "Perturber",
    "datasets",
    "exceptions",
    "gate",
    "jets",
    "metrics",
    "perturb",
    "validate",
    "__version__",
]
