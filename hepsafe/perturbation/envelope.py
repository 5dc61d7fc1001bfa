"""The uncertainty envelope: how far each constituent coordinate may move.

An :class:`Envelope` bounds a per-constituent perturbation ``delta = (d_pt, d_eta, d_phi)``:
``pT -> pT * (1 + d_pt)`` with ``|d_pt| <= pt`` (relative), ``eta -> eta + d_eta`` with
``|d_eta| <= eta`` and ``phi -> phi + d_phi`` with ``|d_phi| <= phi`` [rad]. Bounds may differ
per particle class (:data:`PARTICLE_CLASSES`, decided from the PF ``pid`` and ``charge``). It
also holds the tolerances within which preserved jet observables must stay (jet pT, jet mass)
and a minimum constituent pT [GeV] below which a perturbed constituent is masked.

Envelopes are immutable, and serialise to/from JSON (``schemas/envelope.schema.json``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe._files import write_json
from hepsafe._schemas import validate
from hepsafe.exceptions import EnvelopeError, InputError

#: particle classes, in the order of their integer codes 0..3
PARTICLE_CLASSES: tuple[str, ...] = ("charged_hadron", "neutral_hadron", "photon", "lepton")
#: perturbed constituent coordinates, in the order of the columns of a delta array
COORDINATES: tuple[str, ...] = ("pt", "eta", "phi")
FORMAT = "hepsafe-envelope/1"

CHARGED_HADRON, NEUTRAL_HADRON, PHOTON, LEPTON = 0, 1, 2, 3


def _check_bound(name: str, value: Any, coord: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"envelope: '{name}' must be a number, got {value!r}") from exc
    if not math.isfinite(v) or v < 0:
        raise EnvelopeError(f"envelope: '{name}' must be finite and >= 0, got {v}")
    if coord == "pt" and v >= 1:
        raise EnvelopeError(
            f"envelope: '{name}' is a relative pT bound and must be < 1 (pT stays > 0), got {v}"
        )
    if coord == "phi" and v > math.pi:
        raise EnvelopeError(f"envelope: '{name}' must be <= pi rad, got {v}")
    return v


@dataclass(frozen=True)
class Envelope:
    """Bounds on per-constituent perturbations and tolerances on preserved jet observables.

    - ``pt``: relative pT bound, ``|d_pt| <= pt`` (default 0.02), in [0, 1).
    - ``eta``: absolute eta bound (default 0.02).
    - ``phi``: absolute phi bound [rad] (default 0.02), at most pi.
    - ``classes``: per-class overrides, ``{class name: {coordinate: bound}}``; a class or
      coordinate not listed uses the default bound above.
    - ``pt_tol``: preserved jet pT must satisfy ``|dpT| <= pt_tol * pT`` (default 0.01).
    - ``mass_tol``, ``mass_atol``: preserved jet mass must satisfy
      ``|dm| <= mass_tol * m + mass_atol`` (defaults 0.01 and 0.1 GeV; the absolute term
      covers float32 rounding of nearly massless jets).
    - ``min_pt``: a kept constituent whose perturbed pT [GeV] falls below this is masked
      (default 0: never).

    Examples
    --------
    >>> from hepsafe import Envelope
    >>> env = Envelope(pt=0.01, classes={"photon": {"pt": 0.03}})
    >>> env.bound("photon", "pt"), env.bound("charged_hadron", "pt"), env.bound("photon", "eta")
    (0.03, 0.01, 0.02)
    >>> env.table()  # one row per particle class, columns pt, eta, phi
    array([[0.01, 0.02, 0.02],
           [0.01, 0.02, 0.02],
           [0.03, 0.02, 0.02],
           [0.01, 0.02, 0.02]])
    >>> Envelope.uniform(0.005).phi, env.scaled(2.0).bound("photon", "pt")
    (0.005, 0.06)
    """

    pt: float = 0.02
    eta: float = 0.02
    phi: float = 0.02
    classes: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    pt_tol: float = 0.01
    mass_tol: float = 0.01
    mass_atol: float = 0.1
    min_pt: float = 0.0

    def __post_init__(self) -> None:
        for coord in COORDINATES:
            object.__setattr__(self, coord, _check_bound(coord, getattr(self, coord), coord))
        if not isinstance(self.classes, Mapping):
            raise EnvelopeError(
                f"envelope: 'classes' must map class names to bounds, got {type(self.classes)}"
            )
        classes: dict[str, dict[str, float]] = {}
        for name, bounds in self.classes.items():
            if name not in PARTICLE_CLASSES:
                raise EnvelopeError(
                    f"envelope: unknown particle class 'classes/{name}' "
                    f"(expected one of {list(PARTICLE_CLASSES)})"
                )
            if not isinstance(bounds, Mapping):
                raise EnvelopeError(f"envelope: 'classes/{name}' must be a mapping of bounds")
            unknown = set(bounds) - set(COORDINATES)
            if unknown:
                raise EnvelopeError(
                    f"envelope: 'classes/{name}' has unknown coordinate(s) {sorted(unknown)} "
                    f"(expected {list(COORDINATES)})"
                )
            classes[name] = {
                c: _check_bound(f"classes/{name}/{c}", bounds[c], c)
                for c in COORDINATES
                if c in bounds
            }
        object.__setattr__(self, "classes", classes)
        for name in ("pt_tol", "mass_tol", "mass_atol", "min_pt"):
            object.__setattr__(self, name, _check_bound(name, getattr(self, name), name))

    # ------------------------------------------------------------------ construction
    @classmethod
    def uniform(cls, eps: float, **kwargs: Any) -> Envelope:
        """An envelope with the same bound ``eps`` on pT (relative), eta and phi [rad]."""
        return cls(pt=eps, eta=eps, phi=eps, **kwargs)

    def scaled(self, factor: float) -> Envelope:
        """A copy with every coordinate bound (default and per class) times ``factor``.

        Tolerances and ``min_pt`` are unchanged. Used for epsilon sweeps.
        """
        f = _check_bound("factor", factor, "factor")
        return replace(
            self,
            pt=self.pt * f,
            eta=self.eta * f,
            phi=self.phi * f,
            classes={k: {c: v * f for c, v in b.items()} for k, b in self.classes.items()},
        )

    # ------------------------------------------------------------------ access
    def bound(self, particle_class: str, coord: str) -> float:
        """Bound on ``coord`` ("pt" relative, "eta", "phi" [rad]) for ``particle_class``."""
        if particle_class not in PARTICLE_CLASSES:
            raise EnvelopeError(
                f"envelope: unknown particle class '{particle_class}' "
                f"(expected one of {list(PARTICLE_CLASSES)})"
            )
        if coord not in COORDINATES:
            raise EnvelopeError(f"envelope: unknown coordinate '{coord}' (expected {COORDINATES})")
        return float(self.classes.get(particle_class, {}).get(coord, getattr(self, coord)))

    def table(self) -> np.ndarray:
        """Bounds as a float64 array of shape ``(4, 3)``: particle class x (pt, eta, phi)."""
        return np.array(
            [[self.bound(k, c) for c in COORDINATES] for k in PARTICLE_CLASSES],
            dtype=np.float64,
        )

    @property
    def is_uniform(self) -> bool:
        """True when every particle class has the same bounds."""
        t = self.table()
        return bool(np.all(t == t[0]))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The envelope as a JSON-ready dict (schema ``envelope``)."""
        return {
            "format": FORMAT,
            "bounds": {c: getattr(self, c) for c in COORDINATES},
            "classes": {k: dict(v) for k, v in self.classes.items()},
            "preserve_tolerance": {
                "pt": self.pt_tol,
                "mass": self.mass_tol,
                "mass_abs": self.mass_atol,
            },
            "min_pt": self.min_pt,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], what: str = "envelope") -> Envelope:
        """An envelope from a dict valid against schema ``envelope``."""
        validate(doc, "envelope", what=what, error=EnvelopeError)
        b = doc["bounds"]
        tol = doc.get("preserve_tolerance", {})
        defaults = cls()
        return cls(
            pt=b.get("pt", defaults.pt),
            eta=b.get("eta", defaults.eta),
            phi=b.get("phi", defaults.phi),
            classes=doc.get("classes", {}),
            pt_tol=tol.get("pt", defaults.pt_tol),
            mass_tol=tol.get("mass", defaults.mass_tol),
            mass_atol=tol.get("mass_abs", defaults.mass_atol),
            min_pt=doc.get("min_pt", defaults.min_pt),
        )

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The envelope as JSON text; also written atomically to ``path`` when given."""
        doc = self.to_dict()
        if path is not None:
            write_json(path, doc)
        return json.dumps(doc, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> Envelope:
        """An envelope from a JSON file path, or from JSON text (a string starting with '{')."""
        if isinstance(source, str) and source.lstrip().startswith("{"):
            text, what = source, "envelope"
        else:
            p = Path(source)
            if not p.exists():
                raise EnvelopeError(f"{p}: no such envelope file")
            text, what = p.read_text(), str(p)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EnvelopeError(f"{what}: not valid JSON ({exc})") from exc
        return cls.from_dict(doc, what=what)


def particle_classes(pid: np.ndarray | None, charge: np.ndarray | None) -> np.ndarray:
    """Particle class code per constituent (int8, shape ``(n_constituents,)``).

    Codes index :data:`PARTICLE_CLASSES`: leptons (|pid| 11 or 13), photons (pid 22),
    charged hadrons (other charged), neutral hadrons (other neutral). Without ``charge``,
    |pid| 211 counts as charged; without ``pid``, the charge alone decides (hadron classes).
    """
    if pid is None and charge is None:
        raise InputError("particle classes need constituent field 'pid' or 'charge'")
    if charge is not None:
        charged = np.asarray(charge) != 0
    else:
        charged = np.abs(np.asarray(pid)) == 211
    codes = np.where(charged, np.int8(CHARGED_HADRON), np.int8(NEUTRAL_HADRON)).astype(np.int8)
    if pid is not None:
        apid = np.abs(np.asarray(pid))
        codes[apid == 22] = PHOTON
        codes[(apid == 11) | (apid == 13)] = LEPTON
    return codes
