"""Perturbations: a per-constituent delta -> a perturbed JetBatch inside an envelope (Numba
kernels), physics variations, shifts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.perturbation.envelope import (
        COORDINATES,
        FORMAT,
        PARTICLE_CLASSES,
        Envelope,
        particle_classes,
    )
    from hepsafe.perturbation.perturber import (
        PRESERVABLE,
        DeltaLike,
        Perturbation,
        Perturber,
        check_preserve,
        perturb,
        project,
    )
    from hepsafe.perturbation.shifts import (
        ADVERSARY_MODEL,
        SYSTEMATIC_KINDS,
        AttackShift,
        LearnedShift,
        PhysicsShift,
        Shift,
        Shifted,
        Systematic,
        apply_shift,
        attack_systematic,
        default_systematics,
        onnx_tagger,
        physics_systematic,
    )
    from hepsafe.perturbation.variations import (
        CLASS_CHOICES,
        DEFAULT_SCALE,
        VARIATIONS,
        Variation,
        angular_smear,
        apply_variation,
        configured_sides,
        energy_scale,
        energy_smear,
        list_variations,
        tracking_loss,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "ADVERSARY_MODEL": "shifts",
    "AttackShift": "shifts",
    "CLASS_CHOICES": "variations",
    "COORDINATES": "envelope",
    "DEFAULT_SCALE": "variations",
    "DeltaLike": "perturber",
    "Envelope": "envelope",
    "FORMAT": "envelope",
    "LearnedShift": "shifts",
    "PARTICLE_CLASSES": "envelope",
    "PRESERVABLE": "perturber",
    "Perturbation": "perturber",
    "Perturber": "perturber",
    "PhysicsShift": "shifts",
    "SYSTEMATIC_KINDS": "shifts",
    "Shift": "shifts",
    "Shifted": "shifts",
    "Systematic": "shifts",
    "VARIATIONS": "variations",
    "Variation": "variations",
    "angular_smear": "variations",
    "apply_shift": "shifts",
    "apply_variation": "variations",
    "attack_systematic": "shifts",
    "check_preserve": "perturber",
    "configured_sides": "variations",
    "default_systematics": "shifts",
    "energy_scale": "variations",
    "energy_smear": "variations",
    "list_variations": "variations",
    "onnx_tagger": "shifts",
    "particle_classes": "envelope",
    "perturb": "perturber",
    "physics_systematic": "shifts",
    "project": "perturber",
    "tracking_loss": "variations",
}
__all__ = [
    "ADVERSARY_MODEL",
    "AttackShift",
    "CLASS_CHOICES",
    "COORDINATES",
    "DEFAULT_SCALE",
    "DeltaLike",
    "Envelope",
    "FORMAT",
    "LearnedShift",
    "PARTICLE_CLASSES",
    "PRESERVABLE",
    "Perturbation",
    "Perturber",
    "PhysicsShift",
    "SYSTEMATIC_KINDS",
    "Shift",
    "Shifted",
    "Systematic",
    "VARIATIONS",
    "Variation",
    "angular_smear",
    "apply_shift",
    "apply_variation",
    "attack_systematic",
    "check_preserve",
    "configured_sides",
    "default_systematics",
    "energy_scale",
    "energy_smear",
    "list_variations",
    "onnx_tagger",
    "particle_classes",
    "perturb",
    "physics_systematic",
    "project",
    "tracking_loss",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
