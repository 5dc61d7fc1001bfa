"""hepsafe inside coffea: the ONNX tagger as a ``numpy_call_wrapper`` and the processor step.

Needs the optional extra ``hepsafe[coffea]`` (coffea, dask, distributed); the core package
never imports this one. The dask-awkward path (:func:`run_apply_to_fileset`) also needs
``dask-awkward`` and ``dask-histogram``.

- :class:`OnnxWrapper`: an :class:`~hepsafe.tagger.onnx.OnnxTagger` as a coffea
  ``numpy_call_wrapper`` (eager, virtual and dask-awkward arrays; the ONNX Runtime session
  is created lazily on each worker and never pickled).
- :class:`JetSource`: which jets of an event record to use, the project's tree format
  (``BaseSchema``) or a NanoAOD/PFNano collection (``PFNanoAODSchema``), mapped to
  :class:`~hepsafe.data.jets.JetBatch`.
- :class:`Systematic` with :class:`PhysicsShift`, :class:`LearnedShift` and
  :class:`AttackShift` (any attack of :func:`hepsafe.attacks.registry.make_attack`): the
  configured variations, the same objects ``hepsafe run`` builds from its configuration.
- :class:`AdversarialSystematics`: the processor step (nominal + varied scores per chunk,
  attached to the jets, filled into a templates-compatible histogram).
- :class:`AdversarialProcessor`: a complete ``ProcessorABC`` using the step.
- :func:`run_fileset`, :func:`run_apply_to_fileset`: run with any executor and report
  skipped files (never a silent partial result).
"""

from __future__ import annotations

try:
    import coffea as _coffea  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "hepsafe.coffea needs coffea: pip install 'hepsafe[coffea]'"
    ) from exc

from hepsafe.coffea.inputs import JetSource, detect_source
from hepsafe.coffea.processor import AdversarialProcessor, scale_samples, to_templates
from hepsafe.coffea.run import RunReport, run_apply_to_fileset, run_fileset
from hepsafe.coffea.step import AdversarialSystematics
from hepsafe.coffea.wrapper import OnnxWrapper
from hepsafe.perturbation.shifts import (
    AttackShift,
    LearnedShift,
    PhysicsShift,
    Shift,
    Systematic,
    attack_systematic,
    default_systematics,
    physics_systematic,
)

__all__ = [
    "AdversarialProcessor",
    "AdversarialSystematics",
    "AttackShift",
    "JetSource",
    "LearnedShift",
    "OnnxWrapper",
    "PhysicsShift",
    "RunReport",
    "Shift",
    "Systematic",
    "attack_systematic",
    "default_systematics",
    "physics_systematic",
    "detect_source",
    "run_apply_to_fileset",
    "run_fileset",
    "scale_samples",
    "to_templates",
]
