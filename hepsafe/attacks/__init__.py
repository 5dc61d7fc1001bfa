"""Attacks on ONNX taggers, one class per family, one call signature:
``Attack(tagger, envelope, ...)(jets, target) -> Perturbation``."""

from __future__ import annotations

from hepsafe.attacks.adversary.graph import OnnxAdversary
from hepsafe.attacks.adversary.network import LearnedConfig
from hepsafe.attacks.adversary.training import LearnedAdversary
from hepsafe.attacks.base import Attack, AttackInfo, GradientOracle, padded_index, resolve_target
from hepsafe.attacks.greedy import GreedySearch
from hepsafe.attacks.pgd import FGSM, PGD
from hepsafe.attacks.physics import PhysicsVariation
from hepsafe.attacks.registry import AttackFallbackWarning, make_attack
from hepsafe.attacks.spsa import SPSA

__all__ = ["FGSM", "PGD", "SPSA", "Attack", "AttackFallbackWarning", "AttackInfo",
           "GradientOracle", "GreedySearch", "LearnedAdversary", "LearnedConfig",
           "OnnxAdversary", "PhysicsVariation", "make_attack", "padded_index",
           "resolve_target"]
