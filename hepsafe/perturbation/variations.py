"""Physics variations of the constituents: energy scale, energy and angular smearing,
tracking-efficiency loss.

Each variation returns a new JetBatch (the input is never modified) with jet pT/eta/phi/mass
recomputed from the kept constituents and a ``mask`` field on the constituents. Random
variations draw from the counter-based generator in :mod:`hepsafe.perturbation._kernels`, keyed on
``(seed, event, jet_index, constituent index)``, so the result never depends on chunking,
batch size or number of workers. Variations are physics shifts, not limited to the attack
envelope; relative pT changes are kept above -0.999 so that pT stays positive.

:data:`VARIATIONS` names them all (``scale_<class>_up``/``_down``, ``smear_energy``,
``smear_angle``, ``tracking_loss``); :func:`apply_variation` runs one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError
from hepsafe.perturbation import _kernels as kernels
from hepsafe.perturbation.envelope import PARTICLE_CLASSES, Envelope
from hepsafe.perturbation.perturber import Perturber

#: particle class names accepted by the variations ("all" selects every constituent)
CLASS_CHOICES: tuple[str, ...] = (*PARTICLE_CLASSES, "all")
#: random streams, one per kind of draw, so variations sharing a seed stay independent
STREAM_ENERGY, STREAM_ETA, STREAM_PHI, STREAM_TRACK = 1, 2, 3, 4
#: box used by variations: pT relative change > -1, eta free, phi within pi
_VARIATION_BOUNDS = np.tile(np.array([0.999, np.inf, np.pi]), (len(PARTICLE_CLASSES), 1))


def _select(p: Perturber, particle_class: str) -> np.ndarray:
    if particle_class not in CLASS_CHOICES:
        raise ConfigError(
            f"option 'particle_class': unknown class {particle_class!r}, "
            f"expected one of {list(CLASS_CHOICES)}"
        )
    if particle_class == "all":
        return np.ones(p.n_constituents, dtype=bool)
    selected: np.ndarray = p.classes == PARTICLE_CLASSES.index(particle_class)
    return selected


def _perturber(jets: JetBatch) -> Perturber:
    return Perturber(jets, Envelope(), preserve=(), bounds=_VARIATION_BOUNDS)


def _check(name: str, value: float, lo: float, hi: float) -> float:
    v = float(value)
    if not (lo <= v <= hi):
        raise ConfigError(f"option '{name}' must be in [{lo}, {hi}], got {v}")
    return v


def energy_scale(jets: JetBatch, shift: float, particle_class: str = "all") -> JetBatch:
    """Scale the momentum of every constituent of ``particle_class`` by ``1 + shift``.

    Coherent: the same relative shift for all selected constituents; angles and constituent
    masses are kept, so the energy follows. ``shift`` is relative (e.g. +0.02 for +2 %).
    """
    _check("shift", shift, -0.99, 10.0)
    p = _perturber(jets)
    delta = np.zeros((p.n_constituents, 3), dtype=np.float32)
    delta[:, 0] = np.where(_select(p, particle_class), np.float32(shift), np.float32(0))
    return p.apply(delta).jets


def energy_smear(
    jets: JetBatch, sigma: float = 0.02, seed: int = 0, particle_class: str = "all"
) -> JetBatch:
    """Gaussian smear of constituent momentum: ``pT -> pT * (1 + sigma * z)``, z ~ N(0, 1).

    ``sigma`` is relative (e.g. 0.02 for a 2 % extra resolution).
    """
    sigma = _check("sigma", sigma, 0.0, 1.0)
    p = _perturber(jets)
    z = kernels.random_normal(seed, STREAM_ENERGY, jets.event, jets.jet_index, p.offsets)
    delta = np.zeros((p.n_constituents, 3), dtype=np.float32)
    delta[:, 0] = np.where(_select(p, particle_class), sigma * z, 0.0)
    return p.apply(delta).jets


def angular_smear(
    jets: JetBatch, sigma: float = 0.01, seed: int = 0, particle_class: str = "all"
) -> JetBatch:
    """Gaussian smear of constituent eta and phi, each by ``sigma`` (absolute, rad)."""
    sigma = _check("sigma", sigma, 0.0, 1.0)
    p = _perturber(jets)
    sel = _select(p, particle_class)
    delta = np.zeros((p.n_constituents, 3), dtype=np.float32)
    for q, stream in ((1, STREAM_ETA), (2, STREAM_PHI)):
        z = kernels.random_normal(seed, stream, jets.event, jets.jet_index, p.offsets)
        delta[:, q] = np.where(sel, sigma * z, 0.0)
    return p.apply(delta).jets


def tracking_loss(jets: JetBatch, p: float = 0.02, seed: int = 0) -> JetBatch:
    """Tracking-efficiency loss: mask each charged constituent with probability ``p``.

    Charged means non-zero ``charge`` (charged hadrons and leptons; without a ``charge``
    field, the charged-hadron and lepton classes). Dropped constituents stay in the structure
    with ``mask`` False.
    """
    prob = _check("p", p, 0.0, 1.0)
    pert = _perturber(jets)
    if "charge" in jets.parts.fields:
        charged = jets.flat("charge") != 0
    else:
        charged = np.isin(pert.classes, [PARTICLE_CLASSES.index("charged_hadron"),
                                         PARTICLE_CLASSES.index("lepton")])
    u = kernels.random_uniform(seed, STREAM_TRACK, jets.event, jets.jet_index, pert.offsets)
    return pert.apply(None, drop=charged & (u < prob)).jets


@dataclass(frozen=True)
class Variation:
    """A named variation: ``func(jets, **params)``; random ones also take ``seed``."""

    name: str
    func: Callable[..., JetBatch]
    params: Mapping[str, Any] = field(default_factory=dict)
    random: bool = False
    description: str = ""

    def __call__(self, jets: JetBatch, seed: int = 0, **overrides: Any) -> JetBatch:
        """Apply to ``jets``; ``overrides`` replace the default parameters."""
        unknown = set(overrides) - set(self.params)
        if unknown:
            raise ConfigError(
                f"variation '{self.name}': unknown option(s) {sorted(unknown)}, "
                f"expected {sorted(self.params)}"
            )
        kwargs = {**self.params, **overrides}
        if self.random:
            kwargs["seed"] = seed
        return self.func(jets, **kwargs)


#: default relative scale shift per particle class: the default envelope's pT bound
DEFAULT_SCALE: dict[str, float] = {c: Envelope().pt for c in CLASS_CHOICES}


def _registry() -> dict[str, Variation]:
    out: dict[str, Variation] = {}
    for cls in CLASS_CHOICES:
        for direction, sign in (("up", 1.0), ("down", -1.0)):
            name = f"scale_{cls}_{direction}"
            out[name] = Variation(
                name, energy_scale, {"shift": sign * DEFAULT_SCALE[cls], "particle_class": cls},
                description=f"coherent {direction} shift of the {cls} momentum scale",
            )
    out["smear_energy"] = Variation(
        "smear_energy", energy_smear, {"sigma": 0.02, "particle_class": "all"}, random=True,
        description="Gaussian relative smear of constituent momentum",
    )
    out["smear_angle"] = Variation(
        "smear_angle", angular_smear, {"sigma": 0.01, "particle_class": "all"}, random=True,
        description="Gaussian smear of constituent eta and phi",
    )
    out["tracking_loss"] = Variation(
        "tracking_loss", tracking_loss, {"p": 0.02}, random=True,
        description="mask charged constituents with probability p",
    )
    return out


#: every named variation
VARIATIONS: dict[str, Variation] = _registry()


def list_variations() -> list[str]:
    """Names of the registered variations, sorted."""
    return sorted(VARIATIONS)


def apply_variation(name: str, jets: JetBatch, seed: int = 0, **overrides: Any) -> JetBatch:
    """Apply the registered variation ``name`` (see :data:`VARIATIONS`) to ``jets``."""
    if name not in VARIATIONS:
        raise ConfigError(f"unknown variation {name!r}; known: {list_variations()}")
    return VARIATIONS[name](jets, seed=seed, **overrides)


def configured_sides(entry: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The registered variations behind a run-configuration entry ``{type, name, options}``:
    ``[(direction, registry name, overrides), ...]``.

    ``type: scale_all`` (``<type>_up`` and ``<type>_down`` registered) gives "up" and
    "down"; a registered ``type`` (``smear_energy``) gives one side, "up". The other keys
    of the entry are options of the variation (e.g. ``sigma``, ``p``, ``particle_class``);
    for a two-sided scale, ``shift`` is the size (>= 0), applied as +shift up and -shift
    down. ConfigError names an unknown type or option.
    """
    kind = entry["type"]
    known = list_variations()
    if f"{kind}_up" in known and f"{kind}_down" in known:
        sides = [("up", f"{kind}_up"), ("down", f"{kind}_down")]
    elif kind in known:
        sides = [("up", kind)]
    else:
        two = sorted({k.rsplit("_", 1)[0] for k in known if k.endswith(("_up", "_down"))})
        one = [k for k in known if not k.endswith(("_up", "_down"))]
        raise ConfigError(f"unknown variation type '{kind}' (known: {two + one})")
    options = {k: v for k, v in entry.items() if k not in ("type", "name")}
    out = []
    for direction, name in sides:
        allowed = VARIATIONS[name].params
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(f"variation type '{kind}': unknown option(s) {unknown}, "
                              f"expected some of {sorted(allowed)}")
        overrides = dict(options)
        for key, value in overrides.items():
            if isinstance(allowed[key], float) and (
                    isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"variation type '{kind}': option '{key}' must be a number, "
                                  f"got {value!r}")
        if len(sides) == 2 and "shift" in overrides:
            size = overrides["shift"]
            if not isinstance(size, (int, float)) or not size >= 0:
                raise ConfigError(f"variation type '{kind}': option 'shift' is the size of the "
                                  f"two-sided shift, a number >= 0; got {size!r}")
            overrides["shift"] = float(size) if direction == "up" else -float(size)
        out.append((direction, name, overrides))
    return out
