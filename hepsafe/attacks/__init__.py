"""Attacks on ONNX taggers, one class per family, one call signature:
``Attack(tagger, envelope, ...)(jets, target) -> Perturbation``."""

from __future__ import annotations

from .base import Attack, AttackInfo, GradientOracle, padded_index, resolve_target
from .greedy import GreedySearch
from .pgd import FGSM, PGD
from .physics import PhysicsVariation
from .registry import AttackFallbackWarning, make_attack
from .spsa import SPSA

__all__ = ["FGSM", "PGD", "SPSA", "Attack", "AttackFallbackWarning", "AttackInfo",
           "GradientOracle", "GreedySearch", "PhysicsVariation", "make_attack", "padded_index",
           "resolve_target"]
