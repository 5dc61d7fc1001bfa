"""What every attack shares: the call signature, targets, batching, and the gradient path.

An attack is a class ``Attack(tagger, envelope, ...)``; calling it as
``attack(jets, target) -> Perturbation`` returns the perturbed jets (inside the envelope,
preserved observables restored by :mod:`hepsafe.perturbation._kernels`). Deltas live on the flat
constituent layout, float32 ``(n_constituents, 3)`` with columns ``(d_pt, d_eta, d_phi)``
(relative pT, absolute eta, absolute phi [rad]), as :func:`hepsafe.perturb` takes them.

The gradient path (:class:`GradientOracle`): flat delta -> perturbed padded constituents
(torch) -> features (the shared feature code) -> ``tagger.as_torch()`` -> signal logit;
gradients are scattered back to the flat layout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.data.layout import padded_index as padded_index  # re-exported
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.perturbation.envelope import Envelope, particle_classes
from hepsafe.perturbation.perturber import Perturbation, Perturber
from hepsafe.tagger.onnx import OnnxTagger

log = logging.getLogger("hepsafe.attacks")

TARGETS = ("down", "up")


def resolve_target(tagger: OnnxTagger, target: str) -> float:
    """Direction of the signal score an attack pushes: -1 ("down") or +1 ("up").

    ``target`` may also name a class of the tagger's card: the signal class means "up",
    any other class "down". An unknown name raises :class:`ConfigError` listing the classes.
    """
    if target == "down":
        return -1.0
    if target == "up":
        return 1.0
    classes = list(tagger.output.classes)
    if target not in classes:
        raise ConfigError(
            f"option 'target': '{target}' is neither 'down', 'up' nor a class of tagger "
            f"'{tagger.name}' (classes {classes})"
        )
    return 1.0 if target == tagger.output.signal else -1.0


def constituent_classes(jets: JetBatch) -> np.ndarray:
    """Particle-class codes int8 ``(n_constituents,)`` of a batch (0 when pid/charge absent)."""
    fields = jets.parts.fields
    pid = jets.flat("pid").astype(np.int32) if "pid" in fields else None
    charge = jets.flat("charge").astype(np.int8) if "charge" in fields else None
    if pid is None and charge is None:
        return np.zeros(int(jets.n_parts.sum()), dtype=np.int8)
    return particle_classes(pid, charge)


class GradientOracle:
    """Signal logit and its gradient w.r.t. a flat delta, for one batch of jets.

    Built once per batch: the nominal padded constituents (torch, float64 for the kinematics
    that are perturbed), the constituent masses (kept fixed: ``E = sqrt((pT cosh eta)^2 + m^2)``)
    and the slot -> flat index map. ``logit_and_grad(delta)`` returns the per-jet signal
    logit ``(n_jets,)`` and d(sum of logits)/d(delta) as float32 ``(n_constituents, 3)``.
    Constituents beyond the tagger's padding length get zero gradient.
    """

    def __init__(self, tagger: OnnxTagger, jets: JetBatch) -> None:
        import torch

        self.tagger = tagger
        self.n_jets = len(jets)
        self.n_constituents = int(jets.n_parts.sum())
        self.index = padded_index(jets, tagger.n_max)
        padded = tagger.padded(jets)
        self._slot = self.index >= 0
        self._flat_of_slot = torch.as_tensor(self.index[self._slot])
        self._slot_t = torch.as_tensor(self._slot)
        t = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in padded.items()
             if k != "mask"}
        self.pt, self.eta, self.phi = t["pt"], t["eta"], t["phi"]
        self.charge = t.get("charge")
        self.mask = torch.as_tensor(padded["mask"])
        p = self.pt * torch.cosh(self.eta)
        self.m2 = torch.clamp(t["energy"] ** 2 - p**2, min=0.0)

    def _padded_delta(self, delta: np.ndarray, requires_grad: bool) -> Any:
        import torch

        d = torch.zeros((self.n_jets, self.index.shape[1], 3), dtype=torch.float64)
        flat = torch.as_tensor(np.asarray(delta, dtype=np.float64))
        d[self._slot_t] = flat[self._flat_of_slot]
        if requires_grad:
            d.requires_grad_(True)
        return d

    def padded_after(self, d: Any) -> dict[str, Any]:
        """Perturbed padded constituents (torch) for a padded delta ``(n_jets, n_max, 3)``."""
        import torch

        pt = self.pt * (1.0 + d[..., 0])
        eta = self.eta + d[..., 1]
        phi = torch.remainder(self.phi + d[..., 2] + torch.pi, 2 * torch.pi) - torch.pi
        energy = torch.sqrt((pt * torch.cosh(eta)) ** 2 + self.m2 + 1e-30)
        zero = torch.zeros_like(pt)
        out = {
            "pt": torch.where(self.mask, pt, zero).float(),
            "eta": torch.where(self.mask, eta, zero).float(),
            "phi": torch.where(self.mask, phi, zero).float(),
            "energy": torch.where(self.mask, energy, zero).float(),
            "mask": self.mask,
        }
        if self.charge is not None:
            out["charge"] = self.charge.float()
        return out

    def logit(self, delta: np.ndarray) -> np.ndarray:
        """Signal logit per jet ``(n_jets,)`` float64 for a flat delta (no gradient)."""
        import torch

        with torch.no_grad():
            d = self._padded_delta(delta, requires_grad=False)
            return self.tagger.score_torch(self.padded_after(d), kind="logit").double().numpy()

    def logit_and_grad(self, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(logit (n_jets,), gradient (n_constituents, 3) float32)`` at a flat delta."""
        d = self._padded_delta(delta, requires_grad=True)
        logit = self.tagger.score_torch(self.padded_after(d), kind="logit")
        logit.sum().backward()
        grad = np.zeros((self.n_constituents, 3), dtype=np.float32)
        g = d.grad.detach().numpy()
        grad[self.index[self._slot]] = g[self._slot]
        return logit.detach().double().numpy(), grad


@dataclass(frozen=True)
class AttackInfo:
    """What an attack did, beside the perturbed jets: name, target, per-jet score before and
    after (signal probability), and free-form details (steps, restarts, ...)."""

    name: str
    target: str
    details: dict[str, Any]


class Attack:
    """Base class: ``Attack(tagger, envelope, ...)(jets, target) -> Perturbation``.

    Subclasses implement :meth:`attack_batch`, returning a flat delta for one batch; the base
    class checks the target, splits the jets into batches of ``batch_size`` (bounded
    memory), handles empty batches and zero envelopes, and applies the concatenated delta
    with :func:`hepsafe.perturb` (clip to the envelope, restore ``preserve`` observables).
    The returned Perturbation's ``info`` is an :class:`AttackInfo` (name, target, details).
    """

    name = "attack"

    def __init__(
        self,
        tagger: OnnxTagger,
        envelope: Envelope | None = None,
        preserve: Sequence[str] = ("pt", "mass"),
        batch_size: int = 512,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"option 'batch_size' must be >= 1, got {batch_size}")
        self.tagger = tagger
        self.envelope = envelope if envelope is not None else Envelope()
        self.preserve = tuple(preserve)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    # the one method a subclass must provide
    def attack_batch(
        self, jets: JetBatch, perturber: Perturber, direction: float, batch_no: int
    ) -> np.ndarray:
        """Flat delta float32 ``(n_constituents, 3)`` for one batch (already projected)."""
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """Settings recorded in the result's ``info.details`` (override to add more)."""
        return {"batch_size": self.batch_size, "seed": self.seed}

    def __call__(self, jets: JetBatch, target: str = "down") -> Perturbation:
        """Attack ``jets``, pushing the signal score ``target`` ("down", "up" or a class)."""
        if not isinstance(jets, JetBatch):
            raise InputError(f"{self.name}: expected a JetBatch, got {type(jets).__name__}")
        direction = resolve_target(self.tagger, target)
        n_c = int(jets.n_parts.sum())
        if n_c == 0 or self.envelope_is_zero():
            return replace(self.identity(jets), info=AttackInfo(self.name, target,
                                                                self.details()))
        deltas = [np.zeros((0, 3), dtype=np.float32)]
        if n_c and not self.envelope_is_zero():
            for b, start in enumerate(range(0, len(jets), self.batch_size)):
                sub = jets[start : start + self.batch_size]
                if int(sub.n_parts.sum()) == 0:
                    deltas.append(np.zeros((0, 3), dtype=np.float32))
                    continue
                perturber = Perturber(sub, self.envelope, self.preserve)
                deltas.append(self.attack_batch(sub, perturber, direction, b))
        delta = np.concatenate(deltas) if n_c else np.zeros((0, 3), dtype=np.float32)
        if len(delta) != n_c:
            delta = np.zeros((n_c, 3), dtype=np.float32)
        applied = Perturber(jets, self.envelope, self.preserve).apply(delta)
        return replace(applied, info=AttackInfo(self.name, target, self.details()))

    def identity(self, jets: JetBatch) -> Perturbation:
        """The unperturbed batch as a Perturbation (zero envelope or no constituents).

        Constituent kinematics and jet observables are the input's, bit for bit (the kernels,
        which recompute energies and jet observables, are not run; the inputs are checked as
        for an attack); ``parts`` gains an all-True ``mask`` field when it has none.
        """
        n_c = int(jets.n_parts.sum())
        Perturber(jets, self.envelope, self.preserve)  # the same input checks as an attack
        out = jets if "mask" in jets.parts.fields else jets.with_parts(
            mask=np.ones(n_c, dtype=bool))
        return Perturbation(
            jets=out,
            delta_applied=np.zeros((n_c, 3), dtype=np.float32),
            flagged=np.zeros(len(jets), dtype=bool),
            flags=np.zeros(len(jets), dtype=np.uint8),
            envelope=self.envelope,
            preserve=self.preserve,
        )

    def envelope_is_zero(self) -> bool:
        """True when the envelope allows no movement at all (the attack is then the identity)."""
        return bool(np.all(self.envelope.table() == 0))

    def bounds(self, perturber: Perturber) -> np.ndarray:
        """Per-constituent bounds float32 ``(n_constituents, 3)`` of the envelope."""
        return perturber.bounds[perturber.classes.astype(np.int64)].astype(np.float32)
