"""Attacks by name: ``make_attack(kind, tagger, envelope, **options) -> Attack``.

Names: "fgsm", "pgd", "spsa", "greedy", "learned" and "physics:<variation>" (a name of
:func:`hepsafe.perturbation.variations.list_variations`). The one factory behind the run
configuration and the shifts of the coffea step
(:class:`~hepsafe.perturbation.shifts.AttackShift`), so that an attack is one string plus
options.

"learned" is a trained adversary network loaded from ``model`` (an exported ONNX graph with
its card beside it, a path or a shipped name); without ``model``, the shipped
``adversary_pfn`` when the tagger is the shipped PFN. Training one is
:meth:`hepsafe.attacks.adversary.training.LearnedAdversary.fit`.

Fallback: FGSM and PGD need the tagger's torch twin. When onnx2torch cannot convert the
graph (:meth:`OnnxTagger.as_torch` raises :class:`~hepsafe.exceptions.ConversionError`),
:func:`make_attack` returns the black-box :class:`~hepsafe.attacks.spsa.SPSA` instead and
warns (:class:`AttackFallbackWarning`, naming the operator). The options carry over
(``steps``; PGD's ``step_size`` becomes SPSA's ``lr``; FGSM becomes one SPSA step of the full
bound); options without an SPSA counterpart are named in the warning and dropped. The
greedy search does not fall back: SPSA would drop its distribution caps, so it raises.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hepsafe.attacks.base import Attack, signal_labels_of
from hepsafe.attacks.greedy import GreedySearch
from hepsafe.attacks.pgd import FGSM, PGD
from hepsafe.attacks.physics import PhysicsVariation
from hepsafe.attacks.spsa import SPSA
from hepsafe.exceptions import AttackFallbackWarning, ConfigError, ConversionError
from hepsafe.models import model_path
from hepsafe.perturbation.envelope import Envelope
from hepsafe.tagger.onnx import OnnxTagger

#: attacks that need gradients through ``tagger.as_torch()``
GRADIENT_KINDS: tuple[str, ...] = ("fgsm", "pgd", "greedy")
#: every kind :func:`make_attack` knows, besides "physics:<variation>"
KINDS: tuple[str, ...] = ("fgsm", "pgd", "spsa", "greedy", "learned")
#: options that carry over to SPSA when a gradient attack falls back to it
_SPSA_OPTIONS = ("steps", "preserve", "batch_size", "seed", "samples", "c", "lr",
                 "signal_labels")


def _learned() -> type[Attack]:
    try:
        module = importlib.import_module("hepsafe.attacks.adversary.training")
    except ImportError as exc:
        raise ConfigError(
            "attack 'learned': hepsafe.attacks.adversary.training cannot be imported "
            f"({exc}); the learned adversary is not available in this installation"
        ) from exc
    cls = getattr(module, "LearnedAdversary", None)
    if cls is None:
        raise ConfigError("attack 'learned': hepsafe.attacks.adversary.training has no class "
                          "'LearnedAdversary'")
    return cls


def attack_class(kind: str) -> type[Attack]:
    """The class behind an attack name (``"physics:<variation>"`` gives PhysicsVariation)."""
    if kind.startswith("physics:"):
        return PhysicsVariation
    classes: dict[str, Callable[[], type[Attack]]] = {
        "fgsm": lambda: FGSM, "pgd": lambda: PGD, "spsa": lambda: SPSA,
        "greedy": lambda: GreedySearch, "learned": _learned,
    }
    if kind not in classes:
        raise ConfigError(
            f"option 'kind': unknown attack {kind!r}; known: {list(KINDS)} and "
            "'physics:<variation>'"
        )
    return classes[kind]()


def _load_learned(cls: Any, tagger: OnnxTagger, envelope: Envelope | None,
                  options: dict[str, Any]) -> Attack:
    """The trained adversary (``cls``: LearnedAdversary) of option ``model`` (default: the
    shipped one, for the shipped PFN only); ``envelope`` None: the one it was trained in."""
    unknown = sorted(set(options) - {"model", "signal_labels"})
    if unknown:
        raise ConfigError(f"attack 'learned': unknown option(s) {unknown}; known: ['model', "
                          "'signal_labels'] (the network is trained)")
    if options.get("signal_labels") is not None:
        signal_labels_of(tagger, options["signal_labels"])  # checked; g sees no labels
    model = options.get("model")
    if model is None:
        if Path(tagger.path).resolve() != model_path("pfn").resolve():
            raise ConfigError("attack 'learned' needs option 'model', an adversary trained "
                              "against this tagger (examples/train_adversary.py)")
        model = model_path("adversary_pfn")
    return cls.load(model, tagger, envelope)


def _check_options(kind: str, cls: type[Any], options: dict[str, Any]) -> None:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n in params if n not in ("self", "tagger", "envelope")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"attack '{kind}': unknown option(s) {unknown}; known: {known}")


def _spsa_options(kind: str, options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out = {k: v for k, v in options.items() if k in _SPSA_OPTIONS}
    if kind == "fgsm":
        out.setdefault("steps", 1)
        out.setdefault("lr", 1.0)
    if "step_size" in options:
        out["lr"] = options["step_size"]
    dropped = sorted(k for k in options if k not in _SPSA_OPTIONS and k != "step_size")
    return out, dropped


def make_attack(
    kind: str, tagger: OnnxTagger, envelope: Envelope | None = None, **options: Any
) -> Attack:
    """An attack by name, ready to call as ``attack(jets, target)``.

    ``kind``: "fgsm", "pgd", "spsa", "greedy", "learned" or "physics:<variation>";
    ``options``: keyword arguments of that class (an unknown one is a :class:`ConfigError`
    naming it); for "learned", only ``model`` (module docstring; ``envelope`` None: the
    network's own) and ``signal_labels`` (checked, unused: the network's objective is its
    own and it sees no labels). FGSM and PGD on a graph onnx2torch cannot convert fall back
    to SPSA with an :class:`AttackFallbackWarning`; "greedy" then raises the
    :class:`ConversionError`.
    """
    if not isinstance(kind, str):
        raise ConfigError(f"option 'kind' must be a string, got {type(kind).__name__}")
    cls = attack_class(kind)
    if kind == "learned":
        return _load_learned(cls, tagger, envelope, options)
    if kind.startswith("physics:"):
        if "variation" in options:
            raise ConfigError(f"attack '{kind}': the variation is named in the kind; do not "
                              "also give option 'variation'")
        options = {**options, "variation": kind.split(":", 1)[1]}
    _check_options(kind, cls, options)
    if kind in GRADIENT_KINDS:
        try:
            tagger.as_torch()
        except ConversionError as exc:
            if kind == "greedy":
                raise ConversionError(f"attack 'greedy' needs gradients and has no black-box "
                                      f"fallback: {exc}") from exc
            spsa_opts, dropped = _spsa_options(kind, options)
            note = f"; option(s) {dropped} have no SPSA counterpart and are ignored" if dropped \
                else ""
            warnings.warn(
                f"attack '{kind}' on tagger '{tagger.name}' falls back to black-box SPSA: "
                f"{exc}{note}",
                AttackFallbackWarning,
                stacklevel=2,
            )
            return SPSA(tagger, envelope, **spsa_opts)
    return cls(tagger, envelope, **options)
