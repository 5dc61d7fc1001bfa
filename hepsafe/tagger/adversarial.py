"""Adversarial training (Stein et al.): attacked copies of jets mixed into each batch.

In every training batch a fraction ``fraction`` of the jets (chosen by a generator keyed on
(seed, batch number), so a run is reproducible) is replaced by an attacked copy inside the
uniform envelope ``Envelope.uniform(epsilon)``: ``pT -> pT (1 + d_pt)``, ``eta -> eta +
d_eta``, ``phi -> phi + d_phi`` with ``|d| <= epsilon`` per constituent and coordinate
(relative pT, absolute eta and phi [rad]). The constituent mass is kept
(``E = sqrt((pT cosh eta)^2 + m^2)``), the features are recomputed from the perturbed padded
constituents with :func:`hepsafe.tagger.features.constituent_features` on torch tensors
(differentiable), standardised with the training's mean and standard deviation and fed
to the network being trained.

Attacks (:data:`ATTACKS`):

- ``fgsm``: one signed-gradient step of size ``epsilon`` that raises the loss of each jet's
  true label (binary cross-entropy: the signal score of a W jet goes down, of a QCD jet up;
  softmax cross-entropy of the true class for more than two classes), computed against the
  current network.
- ``pgd``: ``steps`` such steps of ``step_size * epsilon`` (default ``2.5 / steps``) from
  zero, each clipped to the box; the last iterate is used.
- ``learned``: the shipped learned adversary (``adversary_pfn``, ONNX Runtime) applied to the
  chosen jets, its bounds set to ``epsilon``. It is a fixed network trained against the
  reference PFN with target "down" (it lowers the W score of every jet it sees): this is
  data augmentation with a learned mismodelling, not an attack on the current network, so
  its deltas are computed once for all training jets.

Approximations against the attacks at use (:mod:`hepsafe.attacks`): no restoration of the
jet pT and mass (the perturbation kernels rescale the constituents so that both stay within
tolerance; here the jet may move by up to epsilon), the bounds are uniform (no per-particle-
class envelope), the gradients are those of the torch network on the training's
standardised features (not of the exported ONNX graph through onnx2torch, which agrees to
1e-4), PGD keeps its last iterate rather than each jet's best one and has no random
restarts, and the minimum-pT masking of the envelope is not applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepsafe.exceptions import ConfigError
from hepsafe.tagger import features as F

__all__ = ["ATTACKS", "AdversarialSettings", "InTrainingAttack", "check_options",
           "perturbed_constituents"]

#: the attacks ``hepsafe train --adversarial`` takes
ATTACKS = ("pgd", "fgsm", "learned")
#: the default number of PGD steps inside training
DEFAULT_PGD_STEPS = 5


def check_options(attack: str | None, epsilon: float, fraction: float,
                  steps: int | None) -> None:
    """Raise a one-line :class:`ConfigError` naming the option unless ``attack`` is None or
    one of :data:`ATTACKS`, ``epsilon`` in (0, 1), ``fraction`` in (0, 1] and ``steps``
    None or >= 1 (1 for fgsm)."""
    if attack is None:
        return
    if attack not in ATTACKS:
        raise ConfigError(f"option 'adversarial' must be one of {list(ATTACKS)}, got {attack!r}")
    if not (isinstance(epsilon, int | float) and 0.0 < float(epsilon) < 1.0):
        raise ConfigError(f"option 'adv_epsilon' must be in (0, 1) (a relative pT and an "
                          f"absolute eta/phi bound), got {epsilon!r}")
    if not (isinstance(fraction, int | float) and 0.0 < float(fraction) <= 1.0):
        raise ConfigError(f"option 'adv_fraction' must be in (0, 1], got {fraction!r}")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"option 'adv_steps' must be an integer >= 1, got {steps!r}")
        if attack == "fgsm" and steps != 1:
            raise ConfigError(f"option 'adv_steps': fgsm takes one step, got {steps}")


@dataclass(frozen=True)
class AdversarialSettings:
    """What an adversarial training mixes in: ``attack`` (:data:`ATTACKS`), the envelope
    bound ``epsilon`` (relative pT, absolute eta and phi [rad]), the ``fraction`` of each
    batch attacked, the number of gradient ``steps`` and their size ``step_size`` (fraction
    of ``epsilon``)."""

    attack: str
    epsilon: float = 0.02
    fraction: float = 0.5
    steps: int = 1
    step_size: float = 1.0

    @classmethod
    def of(cls, attack: str, epsilon: float, fraction: float,
           steps: int | None) -> AdversarialSettings:
        """Checked settings; ``steps`` None: 1 for fgsm and learned,
        :data:`DEFAULT_PGD_STEPS` for pgd; the PGD step size ``2.5 / steps``."""
        check_options(attack, epsilon, fraction, steps)
        n = steps if steps is not None else (DEFAULT_PGD_STEPS if attack == "pgd" else 1)
        if attack == "learned":
            n = 0
        size = 1.0 if attack == "fgsm" else (2.5 / n if n else 0.0)
        return cls(attack, float(epsilon), float(fraction), int(n), size)

    def record(self) -> dict[str, Any]:
        """The card's description of the adversarial training."""
        how = {
            "fgsm": "one signed-gradient step of epsilon raising the true label's loss, "
                    "against the current network",
            "pgd": f"{self.steps} signed-gradient steps of {self.step_size:.3g} x epsilon from "
                   "zero, clipped to the box, raising the true label's loss against the "
                   "current network (last iterate)",
            "learned": "the shipped learned adversary adversary_pfn (target down, trained "
                       "against the reference pfn) with its bounds at epsilon, applied once "
                       "to every training jet (fixed augmentation)",
        }[self.attack]
        return {"attack": self.attack, "epsilon": self.epsilon, "fraction": self.fraction,
                "steps": self.steps, "step_size": self.step_size,
                "envelope": f"Envelope.uniform({self.epsilon})",
                "description": how,
                "approximation": "no jet pT / mass restoration, uniform bounds, torch network "
                                 "gradients, no restarts (hepsafe.tagger.adversarial)"}


def perturbed_constituents(xp: Any, padded: Mapping[str, Any], delta: Any) -> dict[str, Any]:
    """Padded constituents moved by a padded ``delta`` ``(n, n_max, 3)``: columns relative
    pT, absolute eta, absolute phi [rad]; the constituent mass kept, phi wrapped to
    (-pi, pi], padding 0. ``padded``: ``pt, eta, phi, energy`` [GeV, rad] ``(n, n_max)``,
    ``mask`` bool and optionally ``charge``; numpy arrays or torch tensors (computed in the
    inputs' precision; differentiable in torch)."""
    ns: Any = np
    if hasattr(padded["pt"], "detach"):
        import torch

        ns = torch
    pt0, eta0, phi0, e0 = (padded[k] for k in ("pt", "eta", "phi", "energy"))
    mask = padded["mask"]
    p0 = pt0 * ns.cosh(eta0)
    m2 = ns.where(e0 * e0 - p0 * p0 > 0, e0 * e0 - p0 * p0, 0.0 * e0)
    pt = pt0 * (1.0 + delta[..., 0])
    eta = eta0 + delta[..., 1]
    phi = ns.arctan2(ns.sin(phi0 + delta[..., 2]), ns.cos(phi0 + delta[..., 2]))
    p = pt * ns.cosh(eta)
    energy = ns.sqrt(p * p + m2)
    zero = 0.0 * pt
    out = {"pt": ns.where(mask, pt, zero), "eta": ns.where(mask, eta, zero),
           "phi": ns.where(mask, phi, zero), "energy": ns.where(mask, energy, zero),
           "mask": mask}
    if padded.get("charge") is not None:
        out["charge"] = padded["charge"]
    return out


class InTrainingAttack:
    """Attacked copies of training jets against the network being trained.

    ``padded``: the training jets' padded constituents (:func:`features.padded_constituents`,
    numpy ``(n_jets, n_max)`` arrays and ``mask``), ``features`` the network's feature
    names, ``mean``/``std`` ``(k,)`` its standardisation, ``settings`` the attack,
    ``multiclass`` whether the labels are class indices (softmax) or 0/1 (one logit),
    ``seed`` the training's seed. ``learned_delta``: padded deltas ``(n_jets, n_max, 3)`` of
    the learned adversary (:func:`learned_deltas`), needed for ``attack == "learned"``.
    """

    def __init__(self, padded: Mapping[str, np.ndarray], features: Sequence[str],
                 mean: np.ndarray, std: np.ndarray, settings: AdversarialSettings,
                 multiclass: bool = False, seed: int = 1,
                 learned_delta: np.ndarray | None = None) -> None:
        import torch

        self.settings = settings
        self.features = tuple(features)
        self.multiclass = bool(multiclass)
        self.seed = int(seed)
        self.padded = {k: torch.as_tensor(np.asarray(v, dtype=np.float64))
                       for k, v in padded.items() if k != "mask" and v is not None}
        self.padded["mask"] = torch.as_tensor(np.asarray(padded["mask"], dtype=bool))
        self.mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        self.std = torch.as_tensor(np.asarray(std, dtype=np.float32))
        if settings.attack == "learned":
            if learned_delta is None:
                raise ConfigError("option 'adversarial': 'learned' needs the learned "
                                  "adversary's deltas")
            self.learned = torch.as_tensor(np.asarray(learned_delta, dtype=np.float64))

    def _batch(self, idx: Any) -> dict[str, Any]:
        return {k: v[idx] for k, v in self.padded.items()}

    def standardised(self, padded: Mapping[str, Any], delta: Any) -> Any:
        """Standardised float32 features ``(n, n_max, k)`` of the constituents moved by
        ``delta`` (torch; differentiable in ``delta``)."""
        import torch

        p = perturbed_constituents(torch, padded, delta)
        x = F.constituent_features(torch, self.features, p["pt"].float(), p["eta"].float(),
                                   p["phi"].float(), p["energy"].float(),
                                   p["charge"].float() if "charge" in p else None, p["mask"])
        return (x - self.mean) / self.std

    def _loss(self, net: Any, x: Any, mask: Any, y: Any) -> Any:
        import torch

        out = net(x, mask.float())[0]
        if self.multiclass:
            return torch.nn.functional.cross_entropy(out, y.long(), reduction="sum")
        return torch.nn.functional.binary_cross_entropy_with_logits(out, y.float(),
                                                                    reduction="sum")

    def delta(self, net: Any, idx: Any, y: Any) -> Any:
        """The attack's padded delta ``(len(idx), n_max, 3)`` float64 on the training jets
        ``idx`` with labels ``y``, inside ``[-epsilon, epsilon]`` and 0 on padding."""
        import torch

        s = self.settings
        padded = self._batch(idx)
        box = s.epsilon * padded["mask"].double().unsqueeze(-1).expand(-1, -1, 3)
        if s.attack == "learned":
            return torch.clamp(self.learned[idx], -box, box)
        d = torch.zeros_like(box)
        was_training = net.training
        net.eval()
        try:
            for _ in range(s.steps):
                d.requires_grad_(True)
                loss = self._loss(net, self.standardised(padded, d), padded["mask"], y)
                (g,) = torch.autograd.grad(loss, d)
                with torch.no_grad():
                    d = torch.clamp(d + s.step_size * s.epsilon * torch.sign(g), -box, box)
        finally:
            net.train(was_training)
        return d.detach()

    def chosen(self, n: int, batch_no: int) -> np.ndarray:
        """Positions (int64, sorted) of the jets of batch ``batch_no`` (of ``n`` jets) that
        are attacked: ``round(fraction * n)`` (at least 1), keyed on (seed, batch)."""
        k = max(1, int(round(self.settings.fraction * n)))
        rng = np.random.default_rng([self.seed, 7919, batch_no])
        return np.sort(rng.permutation(n)[:k]).astype(np.int64)

    def mix(self, net: Any, idx: Any, x: Any, y: Any, batch_no: int) -> Any:
        """The batch's standardised features ``x`` ``(n, n_max, k)`` with the chosen jets
        (:meth:`chosen`) replaced by their attacked copies; ``idx`` the jets' positions in
        the training set, ``y`` their labels."""
        import torch

        pos = torch.as_tensor(self.chosen(len(idx), batch_no))
        sub = idx[pos]
        d = self.delta(net, sub, y[pos])
        with torch.no_grad():
            xa = self.standardised(self._batch(sub), d).to(x.dtype)
        out = x.clone()
        out[pos] = xa
        return out


def learned_deltas(padded: Mapping[str, np.ndarray], epsilon: float,
                   model: str | None = None, batch_size: int = 512) -> np.ndarray:
    """The shipped learned adversary's padded deltas ``(n_jets, n_max, 3)`` float32 on the
    padded constituents ``padded`` (:func:`features.padded_constituents`), with every bound
    set to ``epsilon``; slots beyond the adversary's own padding length get 0."""
    from hepsafe.attacks.adversary.graph import OnnxAdversary
    from hepsafe.perturbation.shifts import ADVERSARY_MODEL

    adv = OnnxAdversary(model or ADVERSARY_MODEL, intra_op_threads=1)
    n, n_max = np.shape(padded["pt"])
    m = min(n_max, adv.n_max)

    def cut(a: np.ndarray) -> np.ndarray:
        out = np.zeros((n, adv.n_max), dtype=np.float32)
        out[:, :m] = a[:, :m]
        return out

    pt, eta, phi, energy = (cut(padded[k]) for k in ("pt", "eta", "phi", "energy"))
    charge = cut(padded["charge"]) if padded.get("charge") is not None else np.zeros_like(pt)
    mask = np.zeros((n, adv.n_max), dtype=bool)
    mask[:, :m] = np.asarray(padded["mask"], dtype=bool)[:, :m]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = F.constituent_features(np, list(adv.features), pt, eta, phi, energy, charge, mask)
    bound = np.where(mask[..., None], np.float32(epsilon), np.float32(0.0)) * np.ones(
        (1, 1, 3), dtype=np.float32)
    parts = [adv.padded_delta({"features": x[s], "mask": mask[s].astype(np.float32),
                               "bound": bound[s]})
             for s in (slice(i, i + batch_size) for i in range(0, n, batch_size))]
    full = np.concatenate(parts) if parts else np.zeros((0, adv.n_max, 3), np.float32)
    out = np.zeros((n, n_max, 3), dtype=np.float32)
    out[:, :m] = full[:, :m]
    return out
