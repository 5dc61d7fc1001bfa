"""The signal region of a run: a box in the jet's own pT, mass and soft-drop mass.

A variation or an attack changes the jets, so the region is applied again to each set of
varied jets: a jet that a variation moves out of the box leaves the templates and the
efficiencies, one that it moves in enters them (yield migration, as for any jet-energy
variation in an analysis). Bounds are exclusive: ``low < x < high``. The run configuration's
``region`` and the coffea step's ``region`` (``mass_window`` its shorthand) are this box.
A cut on ``jet_msoftdrop`` needs jets that carry a soft-drop mass (PFNano
``FatJet_msoftdrop``, :attr:`hepsafe.data.jets.JetBatch.msoftdrop`); varied jets scale it by
their mass ratio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError

#: the observables a region can cut on, with their units
OBSERVABLES = {"jet_pt": "GeV", "jet_mass": "GeV", "jet_msoftdrop": "GeV"}
_WORDS = {"jet_pt": "jet pT", "jet_mass": "jet mass", "jet_msoftdrop": "jet soft-drop mass"}


@dataclass(frozen=True)
class Region:
    """``jet_pt``, ``jet_mass``, ``jet_msoftdrop``: ``(low, high)`` [GeV] or None (no cut
    on it)."""

    jet_pt: tuple[float, float] | None = None
    jet_mass: tuple[float, float] | None = None
    jet_msoftdrop: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for key in OBSERVABLES:
            box = getattr(self, key)
            if box is None:
                continue
            if len(box) != 2 or not all(np.isfinite(float(x)) for x in box):
                raise ConfigError(f"region '{key}': expected [low, high] in GeV, got {box}")
            lo, hi = (float(x) for x in box)
            if not lo < hi:
                raise ConfigError(f"region '{key}': need low < high, got [{lo}, {hi}]")
            object.__setattr__(self, key, (lo, hi))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Region:
        """From a config mapping ``{jet_pt: [low, high], jet_mass: [low, high],
        jet_msoftdrop: [low, high]}`` (GeV, each optional)."""
        d = dict(d or {})
        unknown = sorted(set(d) - set(OBSERVABLES))
        if unknown:
            raise ConfigError(f"region: unknown key(s) {unknown}; known: {list(OBSERVABLES)}")
        return cls(**{k: tuple(v) for k, v in d.items()})

    @property
    def cuts(self) -> bool:
        """Whether the region cuts at all."""
        return any(getattr(self, k) is not None for k in OBSERVABLES)

    def select(self, pt: Any, mass: Any, msoftdrop: Any = None, where: str = "jets") -> Any:
        """Inside the region, from jet ``pt``, ``mass`` and ``msoftdrop`` [GeV] of any array
        library with comparisons and ``&`` (numpy, awkward, dask-awkward); None without cuts.
        A ``jet_msoftdrop`` cut without ``msoftdrop`` is a ConfigError naming ``where``."""
        if self.jet_msoftdrop is not None and msoftdrop is None:
            raise ConfigError(f"region 'jet_msoftdrop': {where} carry no soft-drop mass "
                              "(expected PFNano jets with a branch FatJet_msoftdrop)")
        keep = None
        for box, x in ((self.jet_pt, pt), (self.jet_mass, mass),
                       (self.jet_msoftdrop, msoftdrop)):
            if box is not None:
                inside = (x > box[0]) & (x < box[1])
                keep = inside if keep is None else keep & inside
        return keep

    def mask(self, jets: JetBatch) -> np.ndarray:
        """Jets inside the region, bool ``(n_jets,)`` (all True without cuts)."""
        where = f"the jets of {jets.meta['source']}" if "source" in jets.meta else "the jets"
        keep = self.select(jets.pt, jets.mass, jets.msoftdrop, where)
        return np.ones(len(jets), dtype=bool) if keep is None else np.asarray(keep)

    def to_dict(self) -> dict[str, list[float]]:
        """The cuts as a config mapping (only those set)."""
        return {k: list(getattr(self, k)) for k in OBSERVABLES if getattr(self, k) is not None}

    def describe(self) -> str:
        """One line, e.g. ``500 < jet pT < 700 GeV, 55 < jet mass < 105 GeV`` or ``all jets``."""
        parts = [f"{lo:g} < {_WORDS[k]} < {hi:g} GeV"
                 for k in OBSERVABLES if (box := getattr(self, k)) is not None
                 for lo, hi in [box]]
        return ", ".join(parts) if parts else "all jets"
