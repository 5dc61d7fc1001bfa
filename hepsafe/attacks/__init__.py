"""Attacks on ONNX taggers, one class per family, one call signature:
``Attack(tagger, envelope, ...)(jets, target) -> Perturbation``."""

from __future__ import annotations

from .base import Attack, AttackInfo, GradientOracle, padded_index, resolve_target
from .pgd import FGSM, PGD

__all__ = ["FGSM", "PGD", "Attack", "AttackInfo", "GradientOracle", "padded_index",
           "resolve_target"]
