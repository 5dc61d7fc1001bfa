"""The variations a run or a processor step evaluates: shifts of the jets, grouped into
systematics.

A *shift* is a picklable callable ``shift(jets, tagger) -> JetBatch`` (the varied jets; the
input is never modified); ``tagger`` is the run's :class:`~hepsafe.tagger.onnx.OnnxTagger`
or coffea's ``OnnxWrapper`` (which holds one as ``.tagger``). A shift may also define

- ``vary(jets, tagger, tagger_inputs)``, which the coffea step calls instead, handing over
  the tagger's ONNX inputs of the nominal jets (computed once for the nominal score) so
  that the shift can reuse them;
- ``perturb(jets, tagger) -> Perturbation``: the varied jets with what the attack did
  (``Perturbation.info``, an :class:`~hepsafe.attacks.base.AttackInfo`);
- ``prepare(tagger)``: builds what the shift needs against ``tagger`` and checks its
  options, before any jets are read (``hepsafe run`` calls it once, at the start).

:func:`apply_shift` calls the right one. A :class:`Systematic` names one nuisance parameter
and holds an ``up`` and an optional ``down`` shift (histogram variations ``<name>_up``,
``<name>_down``); its ``kind`` says whether it is a physics variation or an attack.

- :class:`PhysicsShift`: a registered physics variation
  (:mod:`hepsafe.perturbation.variations`), with
  counter-based random numbers keyed on (seed, event, jet, constituent): chunk-invariant.
- :class:`LearnedShift`: the learned adversary exported to ONNX, applied with ONNX Runtime
  alone (one forward pass per batch, fixed batch size: chunk-invariant) and projected
  through the perturbation kernels.
- :class:`AttackShift`: any attack of :func:`hepsafe.attacks.registry.make_attack` (PGD,
  FGSM, SPSA, greedy, the learned adversary with torch) against the tagger; the gradient
  attacks need torch and cost many tagger evaluations, and their result depends on the
  batch composition (float rounding in torch), so their histograms are not bit-identical
  across chunkings.

Shifts hold no ONNX Runtime session or torch module when pickled: they are (re)built on
first use in each worker process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturbation, Perturber
from hepsafe.perturbation.variations import (
    VARIATIONS,
    apply_variation,
    configured_sides,
    list_variations,
)
from hepsafe.tagger.onnx import OnnxTagger, run_fixed_batches
from hepsafe.templates.booking import check_name

if TYPE_CHECKING:
    from hepsafe.attacks.base import Attack, AttackInfo
    from hepsafe.coffea.wrapper import OnnxWrapper

#: the learned adversary shipped with the package (exported to ONNX, with its card)
ADVERSARY_MODEL = MODELS_DIR / "adversary_pfn.onnx"


#: kinds of systematic: a physics variation or an attack on the tagger
SYSTEMATIC_KINDS = ("variation", "attack")


class Shift(Protocol):
    """``shift(jets, tagger) -> JetBatch``: varied jets (a new batch)."""

    def __call__(self, jets: JetBatch, tagger: OnnxTagger | OnnxWrapper) -> JetBatch: ...


class Shifted(NamedTuple):
    """What :func:`apply_shift` returns: the varied jets and, for an attack, what it did."""

    jets: JetBatch
    info: AttackInfo | None = None


def apply_shift(shift: Shift, jets: JetBatch, tagger: OnnxTagger | OnnxWrapper,
                tagger_inputs: Mapping[str, np.ndarray] | None = None) -> Shifted:
    """``shift`` on ``jets`` (``(n_jets,)`` in, ``(n_jets,)`` out): its ``vary`` when
    ``tagger_inputs`` (the tagger's ONNX inputs of ``jets``) are given and it has one, else
    its ``perturb`` (the attack's :class:`~hepsafe.attacks.base.AttackInfo` comes back
    too), else the call ``shift(jets, tagger)``."""
    vary = getattr(shift, "vary", None)
    if tagger_inputs is not None and callable(vary):
        return Shifted(vary(jets, tagger, tagger_inputs))
    perturb = getattr(shift, "perturb", None)
    if callable(perturb):
        p: Perturbation = perturb(jets, tagger)
        return Shifted(p.jets, p.info)
    return Shifted(shift(jets, tagger))


def onnx_tagger(tagger: OnnxTagger | OnnxWrapper) -> OnnxTagger:
    """The :class:`~hepsafe.tagger.onnx.OnnxTagger` behind ``tagger``: itself, or the one a
    wrapper holds as ``.tagger`` (coffea's ``OnnxWrapper``)."""
    return tagger if isinstance(tagger, OnnxTagger) else tagger.tagger


@dataclass(frozen=True)
class PhysicsShift:
    """Registered physics variation ``variation``
    (see ``hepsafe.perturbation.variations.list_variations``)
    with ``seed`` for the random ones and ``options`` overriding its parameters."""

    variation: str
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.variation not in VARIATIONS:
            raise ConfigError(f"option 'variation': unknown variation {self.variation!r}; "
                              f"known: {list_variations()}")

    def __call__(self, jets: JetBatch, tagger: Any = None) -> JetBatch:
        """The varied jets (``tagger`` is not used: a variation does not look at it)."""
        return apply_variation(self.variation, jets, seed=self.seed, **dict(self.options))


class LearnedShift:
    """The learned adversary ``g(J)`` exported to ONNX (``model``, card beside it; default
    the shipped ``adversary_pfn.onnx``), applied with ONNX Runtime only.

    ``target`` must be the direction the network was trained for (default: the card's).
    ONNX Runtime sees exactly ``batch_size`` jets per call (the last batch padded), so the
    result does not depend on the chunking.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, target: str | None = None,
                 batch_size: int = 512) -> None:
        self.model = str(Path(model) if model is not None else ADVERSARY_MODEL)
        if not Path(self.model).exists():
            raise ConfigError(f"{self.model}: no such adversary ONNX file (option 'model' of "
                              "LearnedShift)")
        if batch_size < 1:
            raise ConfigError(f"option 'batch_size' must be >= 1, got {batch_size}")
        self.target = target
        self.batch_size = int(batch_size)
        self._adversary: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_adversary": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"LearnedShift({Path(self.model).name}, target={self.target!r})"

    @property
    def adversary(self) -> Any:
        """The ``OnnxAdversary`` (ONNX Runtime session), built on first use in this process."""
        if self._adversary is None:
            try:
                from hepsafe.attacks.adversary.graph import OnnxAdversary
            except ImportError as exc:
                raise ConfigError("LearnedShift needs hepsafe.attacks.adversary.graph, which this "
                                  f"installation lacks ({exc})") from exc
            self._adversary = OnnxAdversary(self.model, intra_op_threads=1)
            trained = self._adversary.card["target"]
            # a label-aware target is the adversary's own objective when it was trained
            # "down" (signal down, background held fixed): it sees no labels when applied
            label_aware = self.target in ("signal_down_background_up", "true_label")
            if self.target not in (None, trained) and not (label_aware and trained == "down"):
                raise ConfigError(f"{self.model}: option 'target' is {self.target!r}, but the "
                                  f"network was trained for {trained!r}")
        return self._adversary

    def prepare(self, tagger: Any = None) -> None:
        """Build the ONNX Runtime session and check ``target`` against the card."""
        self.adversary  # noqa: B018 (built on first access)

    def __call__(self, jets: JetBatch, tagger: Any = None) -> JetBatch:
        return self.vary(jets, tagger, None)

    def vary(self, jets: JetBatch, tagger: OnnxWrapper,
             tagger_inputs: Mapping[str, np.ndarray] | None) -> JetBatch:
        """The varied jets; ``tagger_inputs``: the tagger's ONNX inputs of these (nominal)
        jets (:meth:`OnnxWrapper.inputs_of`), whose constituent features the network reuses
        when it reads the same ones at the same padding (the reference PFN and adversary do;
        the arrays are identical, so the result is too)."""
        from hepsafe.attacks.adversary.graph import adversary_inputs, flat_delta

        adv = self.adversary
        perturber = Perturber(jets, adv.envelope, adv.preserve)
        n_c = perturber.n_constituents
        if len(jets) == 0 or n_c == 0:
            return perturber.apply(np.zeros((n_c, 3), dtype=np.float32)).jets
        padded = None
        if tagger_inputs is not None:
            name = tagger.constituent_input(adv.features, adv.n_max)
            mask = tagger.mask_input(adv.n_max)
            if name is not None and mask is not None:
                padded = {"features": tagger_inputs[name], "mask": tagger_inputs[mask]}
        inputs, index = adversary_inputs(jets, adv.n_max, adv.features, adv.envelope, padded)
        padded_delta = run_fixed_batches(inputs, self.batch_size, adv.padded_delta)
        delta = flat_delta(padded_delta, index, n_c)
        # one pass of the kernels: clip to the envelope, restore jet pT and mass, build jets
        return perturber.apply(delta).jets


class AttackShift:
    """An attack of :func:`hepsafe.attacks.registry.make_attack` on the tagger: ``attack``
    one of its kinds ("pgd", "fgsm", "spsa", "greedy", "learned", "physics:<variation>")
    pushing the signal score ``target`` ("down", "up" or a class) inside ``envelope``
    (None: the attack's default; for "learned", the envelope it was trained in);
    ``options`` go to the factory (e.g. ``steps``, ``seed``; ``model`` for "learned").

    The attack is built on first use against each tagger (and in each process): its
    options are checked then (:meth:`prepare` does it up front). Costly for the gradient
    attacks (torch) and not bit-identical across chunkings.
    """

    def __init__(self, attack: str = "pgd", target: str = "down",
                 envelope: Envelope | None = None, **options: Any) -> None:
        from hepsafe.attacks.registry import KINDS

        if not isinstance(attack, str) or not (attack in KINDS or attack.startswith("physics:")):
            raise ConfigError(f"option 'attack': expected one of {list(KINDS)} or "
                              f"'physics:<variation>', got {attack!r}")
        self.attack = attack
        self.target = target
        self.envelope = envelope
        self.options = dict(options)
        self._built: tuple[OnnxTagger, Attack] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_built": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"AttackShift({self.attack!r}, target={self.target!r}, {self.options})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttackShift):
            return NotImplemented
        return (self.attack, self.target, self.envelope, self.options) == (
            other.attack, other.target, other.envelope, other.options)

    __hash__ = None  # type: ignore[assignment]

    def attack_for(self, tagger: OnnxTagger | OnnxWrapper) -> Attack:
        """The attack object against ``tagger``, built by the factory on first use."""
        t = onnx_tagger(tagger)
        if self._built is None or self._built[0] is not t:
            from hepsafe.attacks.registry import make_attack

            self._built = (t, make_attack(self.attack, t, self.envelope, **self.options))
        return self._built[1]

    def prepare(self, tagger: OnnxTagger | OnnxWrapper) -> None:
        """Build the attack against ``tagger`` now (a bad option raises here)."""
        self.attack_for(tagger)

    def perturb(self, jets: JetBatch, tagger: OnnxTagger | OnnxWrapper) -> Perturbation:
        """The attacked jets; ``info`` holds the attack's name, target and settings."""
        return self.attack_for(tagger)(jets, self.target)

    def __call__(self, jets: JetBatch, tagger: OnnxTagger | OnnxWrapper) -> JetBatch:
        return self.perturb(jets, tagger).jets


@dataclass(frozen=True)
class Systematic:
    """One nuisance parameter ``name``: histogram variations ``<name>_up`` from ``up`` and
    ``<name>_down`` from ``down`` (None: one-sided; the fit mirrors it). ``kind``:
    "variation" (a physics variation) or "attack" (labelled ``name`` alone in a run's
    summary and gate)."""

    name: str
    up: Any
    down: Any = None
    kind: str = "variation"

    def __post_init__(self) -> None:
        check_name(self.name, "systematic")
        if self.kind not in SYSTEMATIC_KINDS:
            raise ConfigError(f"systematic '{self.name}': 'kind' must be one of "
                              f"{list(SYSTEMATIC_KINDS)}, got {self.kind!r}")
        for side in ("up", "down"):
            s = getattr(self, side)
            if s is not None and not callable(s):
                raise ConfigError(f"systematic '{self.name}': '{side}' must be a shift "
                                  f"(callable jets, tagger -> jets), got {type(s).__name__}")
        if self.up is None:
            raise ConfigError(f"systematic '{self.name}': 'up' is required")

    def shifts(self) -> list[tuple[str, Any]]:
        """``[(direction, shift), ...]``: ``("up", up)`` and, if any, ``("down", down)``."""
        out = [("up", self.up)]
        if self.down is not None:
            out.append(("down", self.down))
        return out

    def sides(self) -> list[tuple[str, Any]]:
        """``[(variation label, shift), ...]``: ``<name>_up`` and, if any, ``<name>_down``."""
        return [(f"{self.name}_{d}", s) for d, s in self.shifts()]


def physics_systematic(name: str, variation: str, seed: int = 0,
                       **options: Any) -> Systematic:
    """The systematic ``name`` of a physics variation type, as a run configuration's
    ``{type: variation, name: name, **options}`` entry: a two-sided type (``scale_all``)
    gives up and down, a one-sided one (``smear_energy``) up only; ``options`` as there
    (``shift`` is the size of a two-sided scale, applied as +shift up and -shift down;
    ``sigma``, ``p``, ``particle_class``). ConfigError names an unknown type or option."""
    sides = configured_sides({"type": variation, "name": name, **options})
    shifts = [PhysicsShift(reg, seed, opts) for _, reg, opts in sides]
    return Systematic(name, shifts[0], shifts[1] if len(shifts) > 1 else None)


def attack_systematic(name: str, attack: str, target: str = "down",
                      envelope: Envelope | None = None, **options: Any) -> Systematic:
    """The one-sided systematic ``name`` of an attack (:class:`AttackShift` with these
    arguments), as a run configuration's ``attacks`` entry."""
    return Systematic(name, AttackShift(attack, target, envelope, **options), kind="attack")


def default_systematics(seed: int = 1, adversary: bool | None = None) -> list[Systematic]:
    """Physics variations ``escale`` (constituent momentum scale up/down), ``smear`` (2 %
    momentum smear) and ``tracking`` (2 % charged-track loss), plus ``adversary`` (the
    shipped learned adversary; None: when its model file exists)."""
    out = [
        physics_systematic("escale", "scale_all", seed),
        physics_systematic("smear", "smear_energy", seed),
        physics_systematic("tracking", "tracking_loss", seed),
    ]
    if adversary or (adversary is None and ADVERSARY_MODEL.exists()):
        out.append(Systematic("adversary", LearnedShift(), kind="attack"))
    return out
