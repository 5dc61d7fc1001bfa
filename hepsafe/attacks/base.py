"""What every attack shares: the call signature, targets, batching, and the gradient path.

An attack is a class ``Attack(tagger, envelope, ...)``; calling it as
``attack(jets, target) -> Perturbation`` returns the perturbed jets (inside the envelope,
preserved observables restored by :mod:`hepsafe.perturbation._kernels`). Deltas live on the flat
constituent layout, float32 ``(n_constituents, 3)`` with columns ``(d_pt, d_eta, d_phi)``
(relative pT, absolute eta, absolute phi [rad]), as :func:`hepsafe.perturb` takes them.

Targets become one direction per jet (:func:`resolve_directions`, from the jets' labels for
the label-aware ones) held by an :class:`Objective`, which each attack maximises.

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

from hepsafe.data.jets import CLASS_NAMES, JetBatch
from hepsafe.data.layout import padded_index as padded_index  # re-exported
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.perturbation.envelope import Envelope, particle_classes
from hepsafe.perturbation.perturber import Perturbation, Perturber
from hepsafe.tagger.onnx import OnnxTagger

log = logging.getLogger("hepsafe.attacks")

#: targets an attack takes besides a class name of the tagger's card
TARGETS = ("signal_down_background_up", "down", "up", "true_label")
#: targets whose direction depends on each jet's label
LABEL_TARGETS = ("signal_down_background_up", "true_label")
#: the signal label when neither ``signal_labels`` nor the card's signal class gives one
DEFAULT_SIGNAL_LABEL = 1


def check_target(tagger: OnnxTagger, target: str) -> None:
    """Raise :class:`ConfigError` unless ``target`` is one of :data:`TARGETS` or a class of
    the tagger's card (the message lists both)."""
    if not isinstance(target, str):
        raise ConfigError(f"option 'target' must be a string, got {type(target).__name__}")
    if target in TARGETS or target in tagger.output.classes:
        return
    raise ConfigError(
        f"option 'target': '{target}' is neither one of {list(TARGETS)} nor a class of tagger "
        f"'{tagger.name}' (classes {list(tagger.output.classes)})"
    )


def resolve_target(tagger: OnnxTagger, target: str) -> float:
    """Direction of the signal score for a target that is the same for every jet: -1
    ("down") or +1 ("up").

    ``target`` may also name a class of the tagger's card: the signal class means "up",
    any other class "down". A label-aware target (:data:`LABEL_TARGETS`) has one direction
    per jet (:func:`resolve_directions`) and raises :class:`ConfigError` here, as does an
    unknown name (the message lists the classes).
    """
    if target == "down":
        return -1.0
    if target == "up":
        return 1.0
    check_target(tagger, target)
    if target in LABEL_TARGETS:
        raise ConfigError(f"option 'target': '{target}' sets one direction per jet from its "
                          "label; use resolve_directions")
    signal = getattr(tagger.output, "signal_classes", (tagger.output.signal,))
    return 1.0 if target in signal or target == tagger.output.signal else -1.0


def signal_labels_of(tagger: OnnxTagger, signal_labels: Sequence[int] | None = None
                     ) -> tuple[int, ...]:
    """The jet labels that count as signal for a label-aware target.

    ``signal_labels`` when given; else the labels whose names
    (:data:`hepsafe.data.jets.CLASS_NAMES`) are the card's signal classes ("W" -> 1); else
    :data:`DEFAULT_SIGNAL_LABEL`. The card names its classes but declares no label numbers,
    hence the lookup by name.
    """
    if signal_labels is not None:
        if isinstance(signal_labels, str | bytes) or not isinstance(signal_labels, Sequence) \
                or not len(signal_labels):
            raise ConfigError(f"option 'signal_labels' must be a non-empty sequence of jet "
                              f"labels, got {signal_labels!r}")
        bad = [v for v in signal_labels
               if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0]
        if bad:
            raise ConfigError(f"option 'signal_labels': labels must be ints >= 0, got {bad}")
        return tuple(int(v) for v in signal_labels)
    by_name = {name: label for label, name in CLASS_NAMES.items()}
    names = getattr(tagger.output, "signal_classes", None) or (tagger.output.signal,)
    known = tuple(sorted({by_name[n] for n in names if n in by_name}))
    return known or (DEFAULT_SIGNAL_LABEL,)


def resolve_directions(
    tagger: OnnxTagger, target: str, labels: np.ndarray,
    signal_labels: Sequence[int] | None = None,
) -> np.ndarray:
    """Per-jet direction of the signal score, float64 ``(n_jets,)`` of -1 and +1.

    "down", "up" and a class name give one direction for all jets (:func:`resolve_target`);
    "signal_down_background_up" and "true_label" give -1 to the jets whose ``labels``
    (int ``(n_jets,)``) are in :func:`signal_labels_of` and +1 to the others. A jet with
    label -1 (unknown) under a label-aware target is an :class:`InputError` naming the
    target and the count.

    Examples
    --------
    >>> from hepsafe.tagger import reference
    >>> resolve_directions(reference("pfn"), "signal_down_background_up", np.array([1, 0, 2]))
    array([-1.,  1.,  1.])
    """
    labels = np.asarray(labels)
    if target not in LABEL_TARGETS:
        return np.full(len(labels), resolve_target(tagger, target), dtype=np.float64)
    unknown = int(np.count_nonzero(labels < 0))
    if unknown:
        raise InputError(
            f"target '{target}': {unknown} of {len(labels)} jets have label -1 (unknown); "
            "give the jets their labels (a sample's 'label' key) or use target 'down' or 'up'"
        )
    signal = np.isin(labels, signal_labels_of(tagger, signal_labels))
    return np.where(signal, -1.0, 1.0)


@dataclass(frozen=True)
class Objective:
    """What an attack maximises per jet, as a function of the signal logit ``z``.

    ``direction`` float64 ``(n_jets,)``: -1 pushes the signal score down, +1 up. ``loss``
    False: the objective is ``direction * z``; True ("true_label"): the binary cross-entropy
    of the jet's label, ``softplus(direction * z)`` (``-log f`` for a signal jet, ``-log(1 -
    f)`` for a background jet, ``f = sigmoid(z)``), which weighs each jet by how confidently
    it is classified but moves it the same way (the slope's sign is ``direction``). On a
    multi-class card ``z`` is the signal-vs-rest log-odds the card declares, so the loss is
    that binary cross-entropy, not the cross-entropy of each jet's own class: the card names
    its classes without jet labels, and the torch twin exposes the signal score only.
    """

    direction: np.ndarray
    loss: bool = False

    def __len__(self) -> int:
        return len(self.direction)

    def take(self, sl: slice) -> Objective:
        """The objective of the jets ``sl`` of the batch."""
        return Objective(self.direction[sl], self.loss)

    def value(self, logit: np.ndarray) -> np.ndarray:
        """Objective per jet, float64 ``(n_jets,)``, at the signal logits ``(n_jets,)``."""
        x = self.direction * logit
        return np.logaddexp(0.0, x) if self.loss else x

    def slope(self, logit: np.ndarray) -> np.ndarray:
        """d(objective)/d(logit) per jet, float64 ``(n_jets,)``: ``direction`` for the logit
        objective, ``direction * sigmoid(direction * z)`` for the loss."""
        if not self.loss:
            return self.direction
        x = self.direction * logit
        return self.direction * np.exp(-np.logaddexp(0.0, -x))

    def signs(self, grad: np.ndarray, jet_of: np.ndarray) -> np.ndarray:
        """Sign of the objective's gradient, float32 ``(n_constituents, 3)``, from the
        signal logit's gradient ``grad`` ``(n_constituents, 3)`` and the jet of each row
        ``jet_of`` (the loss's slope has the sign of ``direction``, so both objectives give
        the same signs)."""
        return np.sign(self.direction[jet_of][:, None] * grad).astype(np.float32)


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

        # the torch twin built here, outside any no_grad block (its conversion may check
        # gradients), not on the first no-gradient call of logit()
        tagger.as_torch()
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
        #: extra constituent fields the tagger's features read (e.g. pid), unperturbed
        self.fields = {f: t[f] for f in getattr(tagger, "fields", ()) if f in t}
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
        out.update({f: v.float() for f, v in self.fields.items()})
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
    """What an attack did, beside the perturbed jets: its name, the target it was called
    with ("down", "signal_down_background_up", a class, ...) and free-form details (steps,
    restarts, ...)."""

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

    Targets (:data:`TARGETS`, or a class of the card): "down" and "up" push every jet's
    signal score one way; "signal_down_background_up" pushes the signal jets down and the
    others up (the analysis' worst case for eps_S/sqrt(eps_B)); "true_label" maximises each
    jet's binary cross-entropy of signal vs the rest (same directions, the objective
    weighted by the loss). ``signal_labels``: the jet labels that are signal for these
    (None: from the card's signal class, :func:`signal_labels_of`).
    """

    name = "attack"

    def __init__(
        self,
        tagger: OnnxTagger,
        envelope: Envelope | None = None,
        preserve: Sequence[str] = ("pt", "mass"),
        batch_size: int = 512,
        seed: int = 0,
        signal_labels: Sequence[int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"option 'batch_size' must be >= 1, got {batch_size}")
        self.tagger = tagger
        self.envelope = envelope if envelope is not None else Envelope()
        self.preserve = tuple(preserve)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.signal_labels = (None if signal_labels is None
                              else signal_labels_of(tagger, signal_labels))

    # the one method a subclass must provide
    def attack_batch(
        self, jets: JetBatch, perturber: Perturber, objective: Objective, batch_no: int
    ) -> np.ndarray:
        """Flat delta float32 ``(n_constituents, 3)`` for one batch (already projected);
        ``objective`` holds the per-jet directions of this batch."""
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """Settings recorded in the result's ``info.details`` (override to add more)."""
        return {"batch_size": self.batch_size, "seed": self.seed}

    def objective(self, jets: JetBatch, target: str) -> Objective:
        """The per-jet :class:`Objective` of ``target`` on ``jets`` (directions from the
        labels for a label-aware target, :func:`resolve_directions`)."""
        check_target(self.tagger, target)
        directions = resolve_directions(self.tagger, target, jets.label, self.signal_labels)
        return Objective(directions, loss=target == "true_label")

    def __call__(self, jets: JetBatch, target: str = "down") -> Perturbation:
        """Attack ``jets``, pushing the signal score ``target``: "down", "up", a class of the
        card, "signal_down_background_up" (signal jets down, the others up, by label) or
        "true_label" (maximise the binary cross-entropy of each jet's label)."""
        if not isinstance(jets, JetBatch):
            raise InputError(f"{self.name}: expected a JetBatch, got {type(jets).__name__}")
        objective = self.objective(jets, target)
        n_c = int(jets.n_parts.sum())
        if n_c == 0 or self.envelope_is_zero():
            return replace(self.identity(jets), info=AttackInfo(self.name, target,
                                                                self.details()))
        deltas = [np.zeros((0, 3), dtype=np.float32)]
        for b, start in enumerate(range(0, len(jets), self.batch_size)):
            sl = slice(start, start + self.batch_size)
            sub = jets[sl]
            if int(sub.n_parts.sum()) == 0:
                deltas.append(np.zeros((0, 3), dtype=np.float32))
                continue
            perturber = Perturber(sub, self.envelope, self.preserve)
            deltas.append(self.attack_batch(sub, perturber, objective.take(sl), b))
        delta = np.concatenate(deltas)
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
