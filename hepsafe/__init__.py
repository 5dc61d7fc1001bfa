"""hepsafe: how far can mismodelling that passes validation fool a jet tagger?

One subpackage per stage of the data flow (``docs/ARCHITECTURE.md``): ``data`` (ROOT /
PFNano -> JetBatch), ``tagger`` (JetBatch -> scores), ``perturbation`` (delta -> perturbed
JetBatch), ``attacks``, ``validation`` (the control-region gate), ``templates``, ``fit``
(pyhf), ``pipeline`` (``hepsafe run``), ``report``; ``models`` holds the shipped taggers,
``metrics`` the ROC and working-point figures, ``anomaly`` anomaly scores from a
classifier, ``coffea`` the processor step (optional
extra). Subpackages are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepsafe.data.jets import JetBatch
    from hepsafe.data.regions import Region
    from hepsafe.fit.workspace import WorkspaceConfig
    from hepsafe.perturbation.envelope import Envelope
    from hepsafe.perturbation.perturber import Perturbation, Perturber, perturb
    from hepsafe.tagger.onnx import OnnxTagger
    from hepsafe.templates.booking import Templates
    from hepsafe.validation.checks import gate
    from hepsafe.validation.config import GateConfig
    from hepsafe.validation.report import GateReport

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "Envelope": "hepsafe.perturbation.envelope",
    "GateConfig": "hepsafe.validation.checks",
    "GateReport": "hepsafe.validation.checks",
    "JetBatch": "hepsafe.data.jets",
    "OnnxTagger": "hepsafe.tagger.onnx",
    "Perturbation": "hepsafe.perturbation.perturber",
    "Perturber": "hepsafe.perturbation.perturber",
    "Region": "hepsafe.data.regions",
    "Templates": "hepsafe.templates.booking",
    "WorkspaceConfig": "hepsafe.fit.workspace",
    "gate": "hepsafe.validation.checks",
    "perturb": "hepsafe.perturbation.perturber",
}
#: the stage subpackages (and modules) reachable as attributes
_SUBPACKAGES = ("anomaly", "attacks", "coffea", "data", "exceptions", "fit", "metrics", "models",
                "perturbation", "pipeline", "report", "tagger", "templates", "validation")

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
    "__version__",
    "anomaly",
    "attacks",
    "data",
    "exceptions",
    "fit",
    "gate",
    "metrics",
    "models",
    "perturb",
    "perturbation",
    "pipeline",
    "report",
    "tagger",
    "templates",
    "validation",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
