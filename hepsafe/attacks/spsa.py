"""Black-box attack: SPSA (simultaneous perturbation stochastic approximation).

The tagger is only *run*, never differentiated: scores come from ONNX Runtime
(:meth:`OnnxTagger.run` on :meth:`OnnxTagger.inputs_from_padded` of perturbed padded
constituents), so SPSA works on any graph ONNX Runtime runs, including graphs onnx2torch
cannot convert (see :func:`hepsafe.attacks.registry.make_attack`, which falls back to it).

Per step, the gradient of each jet's signal logit is estimated from ``samples`` random
Rademacher directions ``v`` (one sign per constituent and coordinate): the logits at
``delta + c * bound * v`` and ``delta - c * bound * v`` (both, for every jet of the batch, in
one ONNX Runtime call) give ``g += (f+ - f-) / (2 c) * v``. The step is signed, like PGD's:
``delta += lr * bound * sign(direction * g)`` (``direction`` per jet, from the target),
projected through the perturbation kernels;
per jet the best delta seen is kept. The Rademacher signs are counter-based, keyed on
``(seed, event, jet_index, constituent, step, sample, coordinate)``, so a result is
deterministic for a seed and the draws do not depend on how the jets are split into batches
(the scores themselves may differ in the last bits between batch sizes, as ONNX Runtime's
kernels do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hepsafe.attacks.base import Attack, Objective, padded_index
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError
from hepsafe.perturbation import _kernels as kernels
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturber
from hepsafe.tagger.onnx import OnnxTagger
from hepsafe.tagger.torch import signal_logit_np

#: first random stream of SPSA's Rademacher draws (the physics variations use streams 1-4)
STREAM_SPSA = 1 << 20


class ScoreOracle:
    """Signal logits of one batch of jets at flat deltas, through ONNX Runtime only.

    Built once per batch: the nominal padded constituents (numpy, float64 kinematics), the
    constituent masses (kept fixed: ``E = sqrt((pT cosh eta)^2 + m^2)``) and the slot ->
    flat index map of :func:`padded_index`, as :class:`~hepsafe.attacks.base.GradientOracle`.
    Constituents beyond the tagger's padding length do not reach the tagger (``in_slot`` is
    False for them); for such long jets the tagger's own padding of the perturbed jet may keep
    a slightly different set of constituents, as the nominal pT order is kept here.
    """

    def __init__(self, tagger: OnnxTagger, jets: JetBatch) -> None:
        self.tagger = tagger
        self.n_jets = len(jets)
        self.n_constituents = int(jets.n_parts.sum())
        index = padded_index(jets, tagger.n_max)
        self._slot = index >= 0
        self._flat_of_slot = index[self._slot]
        #: bool ``(n_constituents,)``: True where the constituent is in a padded slot
        self.in_slot = np.zeros(self.n_constituents, dtype=bool)
        self.in_slot[self._flat_of_slot] = True
        padded = tagger.padded(jets)
        self.mask = padded["mask"]
        self.pt = padded["pt"].astype(np.float64)
        self.eta = padded["eta"].astype(np.float64)
        self.phi = padded["phi"].astype(np.float64)
        self.charge = padded.get("charge")
        #: extra constituent fields the tagger's features read (e.g. pid), unperturbed
        self.fields = {f: padded[f] for f in getattr(tagger, "fields", ()) if f in padded}
        p = self.pt * np.cosh(self.eta)
        self.m2 = np.clip(padded["energy"].astype(np.float64) ** 2 - p**2, 0.0, None)

    def padded_after(self, deltas: np.ndarray) -> dict[str, np.ndarray]:
        """Padded constituents for ``k`` flat deltas ``(k, n_constituents, 3)``, stacked.

        Returns the keys of :meth:`OnnxTagger.padded`, each ``(k * n_jets, n_max)``: copy
        ``i`` of the batch holds delta ``i``.
        """
        k = deltas.shape[0]
        d = np.zeros((k, *self.mask.shape, 3), dtype=np.float64)
        d[:, self._slot] = deltas[:, self._flat_of_slot]
        pt = self.pt * (1.0 + d[..., 0])
        eta = self.eta + d[..., 1]
        phi = np.remainder(self.phi + d[..., 2] + np.pi, 2 * np.pi) - np.pi
        energy = np.sqrt((pt * np.cosh(eta)) ** 2 + self.m2)
        mask = np.broadcast_to(self.mask, (k, *self.mask.shape))

        def flat(x: np.ndarray) -> np.ndarray:
            return np.where(mask, x, 0.0).astype(np.float32).reshape(-1, x.shape[-1])

        out = {"pt": flat(pt), "eta": flat(eta), "phi": flat(phi), "energy": flat(energy),
               "mask": mask.reshape(-1, mask.shape[-1])}
        if self.charge is not None:
            out["charge"] = np.broadcast_to(self.charge, mask.shape).reshape(out["mask"].shape)
        for f, v in self.fields.items():
            out[f] = np.broadcast_to(v, (k, *v.shape)).reshape(out["mask"].shape)
        return out

    def logits(self, deltas: np.ndarray) -> np.ndarray:
        """Signal logits float64 ``(k, n_jets)`` for ``k`` flat deltas ``(k, n_constituents, 3)``,
        in one ONNX Runtime call."""
        t = self.tagger
        inputs = t.inputs_from_padded(np, self.padded_after(np.asarray(deltas)))
        y = t.run(inputs, [t.output.name])[t.output.name]
        return signal_logit_np(y, t.output).reshape(deltas.shape[0], self.n_jets)


class SPSA(Attack):
    """SPSA: black-box signed-gradient attack on ONNX Runtime scores (no torch).

    ``steps`` signed steps of ``lr`` (fraction of the envelope bound per constituent and
    coordinate, default ``2.5 / steps`` as PGD); each step estimates the gradient from
    ``samples`` Rademacher directions evaluated at ``+-c`` (fraction of the bound). Per jet
    the delta with the best objective (lowest logit for "down") over all steps is kept. Costs
    ``steps * (2 * samples + 1)`` tagger evaluations of the batch.
    """

    name = "spsa"

    def __init__(
        self,
        tagger: OnnxTagger,
        envelope: Envelope | None = None,
        samples: int = 8,
        steps: int = 20,
        c: float = 0.5,
        lr: float | None = None,
        preserve: Sequence[str] = ("pt", "mass"),
        batch_size: int = 512,
        seed: int = 0,
        signal_labels: Sequence[int] | None = None,
    ) -> None:
        super().__init__(tagger, envelope, preserve, batch_size, seed, signal_labels)
        if samples < 1:
            raise ConfigError(f"option 'samples' must be >= 1, got {samples}")
        if steps < 1:
            raise ConfigError(f"option 'steps' must be >= 1, got {steps}")
        if not 0 < c <= 1:
            raise ConfigError(f"option 'c' must be in (0, 1] (a fraction of the bound), got {c}")
        self.samples = int(samples)
        self.steps = int(steps)
        self.c = float(c)
        self.lr = float(lr) if lr is not None else 2.5 / self.steps
        if not self.lr > 0:
            raise ConfigError(f"option 'lr' must be > 0, got {lr}")

    def details(self) -> dict[str, Any]:
        return {**super().details(), "samples": self.samples, "steps": self.steps,
                "c": self.c, "lr": self.lr}

    def rademacher(self, jets: JetBatch, offsets: np.ndarray, step: int,
                   sample: int) -> np.ndarray:
        """Random signs float32 ``(n_constituents, 3)`` of one (step, sample), counter-based."""
        base = STREAM_SPSA + 3 * (step * self.samples + sample)
        cols = [
            kernels.random_uniform(self.seed, base + q, jets.event, jets.jet_index, offsets)
            for q in range(3)
        ]
        return np.where(np.stack(cols, axis=1) < 0.5, -1.0, 1.0).astype(np.float32)

    def attack_batch(
        self, jets: JetBatch, perturber: Perturber, objective: Objective, batch_no: int
    ) -> np.ndarray:
        oracle = ScoreOracle(self.tagger, jets)
        bounds = self.bounds(perturber) * oracle.in_slot[:, None].astype(np.float32)
        jet_of = np.repeat(np.arange(len(jets)), np.diff(perturber.offsets))
        delta = np.zeros_like(bounds)
        best = delta.copy()
        best_obj = objective.value(oracle.logits(delta[None])[0])
        for step in range(self.steps):
            grad = np.zeros(bounds.shape, dtype=np.float64)
            for sample in range(self.samples):
                v = self.rademacher(jets, perturber.offsets, step, sample)
                h = self.c * bounds * v
                f_plus, f_minus = oracle.logits(np.stack([delta + h, delta - h]))
                grad += ((f_plus - f_minus) / (2.0 * self.c))[jet_of, None] * v
            step_delta = self.lr * bounds * objective.signs(grad, jet_of)
            delta, _ = perturber.project(delta + step_delta)
            obj = objective.value(oracle.logits(delta[None])[0])
            better = obj > best_obj
            if better.any():
                sel = better[jet_of]
                best[sel] = delta[sel]
                best_obj = np.where(better, obj, best_obj)
        return best
