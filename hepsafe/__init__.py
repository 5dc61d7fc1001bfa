"""hepsafe: how far can mismodelling that passes validation fool a jet tagger?"""

from __future__ import annotations

from . import datasets, exceptions, jets, metrics, validate
from .jets import JetBatch
from .validate import GateConfig, GateReport, gate

__version__ = "0.1.0"
__all__ = [
    "GateConfig",
    "GateReport",
    "JetBatch",
    "datasets",
    "exceptions",
    "gate",
    "jets",
    "metrics",
    "validate",
    "__version__",
]
