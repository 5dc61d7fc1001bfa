"""Attacks on ONNX taggers, one class per family, one call signature:
``Attack(tagger, envelope, ...)(jets, target) -> Perturbation``; targets "down", "up",
"signal_down_background_up", "true_label" or a class of the tagger's card."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.attacks.adversary.graph import OnnxAdversary
    from hepsafe.attacks.adversary.network import LearnedConfig
    from hepsafe.attacks.adversary.training import LearnedAdversary
    from hepsafe.attacks.base import (
        LABEL_TARGETS,
        TARGETS,
        Attack,
        AttackInfo,
        GradientOracle,
        Objective,
        check_target,
        padded_index,
        resolve_directions,
        resolve_target,
        signal_labels_of,
    )
    from hepsafe.attacks.greedy import GreedySearch
    from hepsafe.attacks.pgd import FGSM, PGD
    from hepsafe.attacks.physics import PhysicsVariation
    from hepsafe.attacks.registry import AttackFallbackWarning, make_attack
    from hepsafe.attacks.spsa import SPSA

#: public name -> the module that defines it
_EXPORTS = {
    "FGSM": "pgd",
    "LABEL_TARGETS": "base",
    "PGD": "pgd",
    "SPSA": "spsa",
    "TARGETS": "base",
    "Attack": "base",
    "AttackFallbackWarning": "registry",
    "AttackInfo": "base",
    "GradientOracle": "base",
    "GreedySearch": "greedy",
    "LearnedAdversary": "adversary.training",
    "LearnedConfig": "adversary.network",
    "Objective": "base",
    "OnnxAdversary": "adversary.graph",
    "PhysicsVariation": "physics",
    "check_target": "base",
    "make_attack": "registry",
    "padded_index": "base",
    "resolve_directions": "base",
    "resolve_target": "base",
    "signal_labels_of": "base",
}
__all__ = ["FGSM", "LABEL_TARGETS", "PGD", "SPSA", "TARGETS", "Attack", "AttackFallbackWarning",
           "AttackInfo", "GradientOracle", "GreedySearch", "LearnedAdversary", "LearnedConfig",
           "Objective", "OnnxAdversary", "PhysicsVariation", "check_target", "make_attack",
           "padded_index", "resolve_directions", "resolve_target", "signal_labels_of"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
