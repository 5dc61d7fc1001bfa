"""Physics variations (:mod:`hepsafe.perturbation.variations`) behind the attack interface.

``PhysicsVariation(tagger, envelope, variation="scale_all_up")(jets, target)`` runs the
named variation and returns a :class:`~hepsafe.perturbation.perturber.Perturbation`, so a run
can treat a
physics shift and an adversarial one alike (scores, gate, templates). Two differences:

- the target is ignored (a variation does not look at the tagger, and has no direction);
  it is still checked, so a class absent from the card is an error as for every attack;
- a variation is a physics shift, *not* limited to the envelope, and restores no jet
  observable. ``Perturbation.jets`` is the variation's own output, unchanged;
  ``delta_applied`` is the delta implied by the change of coordinates, per constituent
  ``(pT'/pT - 1, eta' - eta, phi' - phi wrapped to (-pi, pi])``, 0 for constituents the
  variation masks (tracking loss: see ``jets.parts.mask``); ``flagged`` is all False,
  ``preserve`` empty and ``info`` names the variation, its options and seed. The envelope is
  only recorded, not applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hepsafe.attacks.base import Attack, AttackInfo, Objective, check_target
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturbation, Perturber
from hepsafe.perturbation.variations import VARIATIONS, apply_variation, list_variations
from hepsafe.tagger.onnx import OnnxTagger


def implied_delta(nominal: JetBatch, varied: JetBatch) -> np.ndarray:
    """The flat delta float32 ``(n_constituents, 3)`` that takes ``nominal`` to ``varied``.

    Columns ``(pT'/pT - 1, eta' - eta, phi' - phi)``, phi wrapped to (-pi, pi]; rows whose
    constituent is masked in ``varied`` (or has pT 0 in ``nominal``) are 0. Both batches must
    have the same constituent structure.
    """
    if not np.array_equal(nominal.n_parts, varied.n_parts):
        raise InputError("implied_delta: the two batches differ in constituent counts")
    pt0 = nominal.flat("pt").astype(np.float64)
    d = np.zeros((len(pt0), 3), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d[:, 0] = np.where(pt0 > 0, varied.flat("pt") / pt0 - 1.0, 0.0)
    d[:, 1] = varied.flat("eta").astype(np.float64) - nominal.flat("eta")
    dphi = varied.flat("phi").astype(np.float64) - nominal.flat("phi")
    d[:, 2] = np.remainder(dphi + np.pi, 2 * np.pi) - np.pi
    if "mask" in varied.parts.fields:
        d[~varied.flat("mask").astype(bool)] = 0.0
    return d.astype(np.float32)


class PhysicsVariation(Attack):
    """A named physics variation through the attack interface (ignores the target).

    ``variation``: a name of :func:`hepsafe.perturbation.variations.list_variations`; ``options``
    override its parameters (e.g. ``{"shift": 0.03}``); ``seed`` keys random variations.
    The variation is applied to the whole input at once (it is chunk-invariant), so
    ``batch_size`` is unused. See the module docstring for what the returned
    :class:`~hepsafe.perturbation.perturber.Perturbation` holds.
    """

    name = "physics"

    def __init__(
        self,
        tagger: OnnxTagger,
        envelope: Envelope | None = None,
        variation: str = "scale_all_up",
        options: Mapping[str, Any] | None = None,
        batch_size: int = 512,
        seed: int = 0,
    ) -> None:
        super().__init__(tagger, envelope, (), batch_size, seed)
        if variation not in VARIATIONS:
            raise ConfigError(
                f"option 'variation': unknown variation {variation!r}; known: {list_variations()}"
            )
        self.variation = variation
        self.options = dict(options or {})
        unknown = set(self.options) - set(VARIATIONS[variation].params)
        if unknown:
            raise ConfigError(
                f"option 'options': unknown parameter(s) {sorted(unknown)} of variation "
                f"'{variation}', expected {sorted(VARIATIONS[variation].params)}"
            )
        self.name = f"physics:{variation}"

    def details(self) -> dict[str, Any]:
        return {"variation": self.variation, "options": dict(self.options), "seed": self.seed}

    def attack_batch(
        self, jets: JetBatch, perturber: Perturber, objective: Objective, batch_no: int
    ) -> np.ndarray:
        """The implied delta of the variation on ``jets`` (``objective`` is ignored)."""
        return implied_delta(jets, apply_variation(self.variation, jets, self.seed,
                                                   **self.options))

    def __call__(self, jets: JetBatch, target: str = "down") -> Perturbation:
        """Apply the variation to ``jets``; ``target`` is checked, then ignored (a label-aware
        one needs no labels here)."""
        if not isinstance(jets, JetBatch):
            raise InputError(f"{self.name}: expected a JetBatch, got {type(jets).__name__}")
        check_target(self.tagger, target)
        varied = apply_variation(self.variation, jets, self.seed, **self.options)
        n = len(jets)
        return Perturbation(
            jets=varied,
            delta_applied=implied_delta(jets, varied),
            flagged=np.zeros(n, dtype=bool),
            flags=np.zeros(n, dtype=np.uint8),
            envelope=self.envelope,
            preserve=(),
            info=AttackInfo(self.name, target, self.details()),
        )
