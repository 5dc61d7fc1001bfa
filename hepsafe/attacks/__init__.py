"""Attacks on ONNX taggers, one class per family, one call signature:
``Attack(tagger, envelope, ...)(jets, target) -> Perturbation``."""

from __future__ import annotations

from .adversary_onnx import OnnxAdversary
from .base import Attack, AttackInfo, GradientOracle, padded_index, resolve_target
from .greedy import GreedySearch
from .learned import LearnedAdversary, LearnedConfig
from .pgd import FGSM, PGD
from .physics import PhysicsVariation
from .registry import AttackFallbackWarning, make_attack
from .spsa import SPSA

__all__ = ["FGSM", "PGD", "SPSA", "Attack", "AttackFallbackWarning", "AttackInfo",
           "GradientOracle", "GreedySearch", "LearnedAdversary", "LearnedConfig",
           "OnnxAdversary", "PhysicsVariation", "make_attack", "padded_index",
           "resolve_target"]
