"""Gradient attacks: FGSM (one signed step) and PGD (iterated, projected, with restarts).

Step sizes are fractions of the envelope's bound per constituent and coordinate, so one
setting works for every envelope: a step of ``alpha`` moves each coordinate by
``alpha * bound``. Every step is projected through the perturbation kernels (clip to the
envelope, restore the preserved jet observables).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hepsafe.attacks.base import Attack, GradientOracle, Objective
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturber
from hepsafe.tagger.onnx import OnnxTagger


class FGSM(Attack):
    """Fast gradient sign method: ``delta = bound * sign(grad)`` in one step, then projected;
    ``grad`` the gradient of each jet's objective (its direction times the signal logit, or
    its label's cross-entropy for "true_label": the same signs)."""

    name = "fgsm"

    def attack_batch(
        self, jets: JetBatch, perturber: Perturber, objective: Objective, batch_no: int
    ) -> np.ndarray:
        oracle = GradientOracle(self.tagger, jets)
        zero = np.zeros((oracle.n_constituents, 3), dtype=np.float32)
        _, grad = oracle.logit_and_grad(zero)
        jet_of = np.repeat(np.arange(len(jets)), np.diff(perturber.offsets))
        delta = self.bounds(perturber) * objective.signs(grad, jet_of)
        applied, _ = perturber.project(delta)
        return applied


class PGD(Attack):
    """Projected gradient ascent of each jet's objective inside the envelope.

    The objective (:class:`~hepsafe.attacks.base.Objective`): the signal logit times the
    jet's direction, or for "true_label" the binary cross-entropy of its label (same step
    signs, another value). ``steps`` signed-gradient steps of ``step_size`` (fraction of
    the bound, default ``2.5 / steps``), from zero or, with ``random_start``, from a uniform
    point of the envelope; ``restarts`` further random starts; per jet the delta with the
    best objective (lowest logit for "down") over all steps and restarts is kept.
    """

    name = "pgd"

    def __init__(
        self,
        tagger: OnnxTagger,
        envelope: Envelope | None = None,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = False,
        restarts: int = 0,
        preserve: Sequence[str] = ("pt", "mass"),
        batch_size: int = 512,
        seed: int = 0,
        signal_labels: Sequence[int] | None = None,
    ) -> None:
        super().__init__(tagger, envelope, preserve, batch_size, seed, signal_labels)
        if steps < 1:
            raise ConfigError(f"option 'steps' must be >= 1, got {steps}")
        if restarts < 0:
            raise ConfigError(f"option 'restarts' must be >= 0, got {restarts}")
        self.steps = int(steps)
        self.step_size = float(step_size) if step_size is not None else 2.5 / self.steps
        if not self.step_size > 0:
            raise ConfigError(f"option 'step_size' must be > 0, got {step_size}")
        self.random_start = bool(random_start)
        self.restarts = int(restarts)

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "steps": self.steps,
            "step_size": self.step_size,
            "random_start": self.random_start,
            "restarts": self.restarts,
        }

    def attack_batch(
        self, jets: JetBatch, perturber: Perturber, objective: Objective, batch_no: int
    ) -> np.ndarray:
        oracle = GradientOracle(self.tagger, jets)
        bounds = self.bounds(perturber)
        offsets = perturber.offsets
        jet_of = np.repeat(np.arange(len(jets)), np.diff(offsets))
        rng = np.random.default_rng([self.seed, batch_no])
        best = np.zeros_like(bounds)
        best_obj = objective.value(oracle.logit(best))
        for start in range(self.restarts + 1):
            if self.random_start or start > 0:
                delta = bounds * rng.uniform(-1.0, 1.0, size=bounds.shape).astype(np.float32)
                delta, _ = perturber.project(delta)
            else:
                delta = np.zeros_like(bounds)
            for _ in range(self.steps):
                logit, grad = oracle.logit_and_grad(delta)
                obj = objective.value(logit)
                better = obj > best_obj
                if better.any():
                    sel = better[jet_of]
                    best[sel] = delta[sel]
                    best_obj = np.where(better, obj, best_obj)
                step = self.step_size * bounds * objective.signs(grad, jet_of)
                delta, _ = perturber.project(delta + step)
            obj = objective.value(oracle.logit(delta))
            better = obj > best_obj
            sel = better[jet_of]
            best[sel] = delta[sel]
            best_obj = np.where(better, obj, best_obj)
        return best
