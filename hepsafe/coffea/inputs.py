"""Which jets of a coffea event record to use, and their mapping to ``JetBatch``.

Two input formats:

- ``"hepsafe"``: the project's own tree (``docs/DATA.md``), read with coffea's
  ``BaseSchema``: one entry per jet, branches ``jet_*``, ``weight``, ``n_parts``,
  ``event``, ``jet_index`` and jagged ``part_*``; the event record *is* the jet collection.
- ``"pfnano"``: CMS NanoAOD with PF candidates, read with ``PFNanoAODSchema``: the
  collection ``FatJet`` (or ``Jet``), ``PFCands`` and the association table
  ``FatJetPFCands`` (``JetPFCands``), mapped with :func:`hepsafe.data.nanoaod.jets_from_arrays`
  (PUPPI-weighted candidates for FatJet by default; ``<collection>_msoftdrop`` when present).

:meth:`JetSource.columns` picks the needed arrays out of an event record (eager, virtual or
dask-awkward) as ``{branch name: array}``; :meth:`JetSource.batch` turns eager columns of
one chunk into a :class:`~hepsafe.data.jets.JetBatch`. :func:`pf_constituents` turns NanoEvents
PF candidates per jet (``events.FatJet.constituents.pf``, or the association records
``events.FatJet.constituents`` themselves), whose energy is a behaviour rather than a
field, into the constituent records the tagger reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from hepsafe.data.jets import PART_BRANCHES, REQUIRED_BRANCHES, JetBatch
from hepsafe.data.nanoaod import (
    COLLECTIONS,
    PF_FIELDS,
    PUPPI_BRANCH,
    default_puppi,
    jets_from_arrays,
    weighted_p4,
)
from hepsafe.exceptions import InputError

FORMATS = ("hepsafe", "pfnano")


def _numpy(x: Any, dtype: Any) -> np.ndarray:
    return np.asarray(ak.to_numpy(x), dtype=dtype)


def _lib(x: Any) -> Any:
    """awkward or dask_awkward, whichever ``x`` belongs to."""
    if isinstance(x, ak.Array):
        return ak
    import dask_awkward

    return dask_awkward


def is_pf_candidates(parts: Any) -> bool:
    """Whether ``parts`` are NanoEvents PF candidates (``pt, eta, phi, mass``, no stored
    ``energy``) or PFNano association records (``pFCandsIdxG``) rather than constituents."""
    fields = set(parts.fields)
    return "energy" not in fields and ("pFCandsIdxG" in fields
                                       or {"pt", "eta", "phi", "mass"} <= fields)


def pf_constituents(parts: Any, puppi: bool = True) -> Any:
    """Constituent records ``{pt, eta, phi, energy[, charge][, pid]}`` (float32 pT, energy [GeV];
    ``pid`` the candidate's ``pdgId``)
    from NanoEvents PF candidates per jet, any nesting (jets x candidates, events x jets x
    candidates), eager, virtual or dask-awkward.

    ``parts``: ``events.FatJet.constituents.pf`` (PFCands records: ``pt, eta, phi, mass``,
    energy only a behaviour) or ``events.FatJet.constituents`` (the ``FatJetPFCands``
    association records, followed to their candidates). With ``puppi`` the four-momenta
    are multiplied by ``puppiWeight`` and candidates of weight 0 dropped, as
    :func:`hepsafe.data.nanoaod.jets_from_arrays` does (the same values, bit for bit).
    """
    lib = _lib(parts)
    if "pFCandsIdxG" in parts.fields:
        parts = parts.pf
    missing = [f for f in ("pt", "eta", "phi", "mass") if f not in parts.fields]
    if missing:
        raise InputError(f"PF candidates lack field(s) {missing} (have {list(parts.fields)})")
    weight = None
    if puppi:
        if "puppiWeight" not in parts.fields:
            raise InputError(f"PF candidates lack field 'puppiWeight' ({PUPPI_BRANCH}; option "
                             "'puppi' false reads them unweighted)")
        parts = parts[parts["puppiWeight"] > 0]
        weight = parts["puppiWeight"]
    pt, energy = weighted_p4(parts["pt"], parts["eta"], parts["mass"], weight,
                             lib.values_astype)
    out = {"pt": pt, "eta": lib.values_astype(parts["eta"], np.float32),
           "phi": lib.values_astype(parts["phi"], np.float32), "energy": energy}
    if "charge" in parts.fields:
        out["charge"] = parts["charge"]
    if "pdgId" in parts.fields:
        out["pid"] = parts["pdgId"]
    return lib.zip(out)


@dataclass(frozen=True)
class JetSource:
    """The jets of an event record: ``format`` "hepsafe" or "pfnano" (``collection``
    "FatJet" or "Jet"). ``label`` is the truth label given to PFNano jets (-1 unknown).
    ``puppi``: PFNano candidates weighted by ``PFCands_puppiWeight`` (None: True for
    FatJet, False for Jet; :func:`hepsafe.data.nanoaod.jets_from_arrays`)."""

    format: str = "hepsafe"
    collection: str = "FatJet"
    label: int = -1
    puppi: bool | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"option 'format': expected one of {FORMATS}, got {self.format!r}")
        if self.format == "pfnano" and self.collection not in COLLECTIONS:
            raise InputError(f"option 'collection': expected one of {COLLECTIONS}, "
                             f"got {self.collection!r}")

    @property
    def weighted(self) -> bool:
        """Whether PFNano candidates are PUPPI-weighted (``puppi`` resolved)."""
        return default_puppi(self.collection) if self.puppi is None else bool(self.puppi)

    @property
    def per_event(self) -> bool:
        """True when jets are lists per event (PFNano); False for one jet per entry."""
        return self.format == "pfnano"

    def jets(self, events: Any) -> Any:
        """The jet collection of ``events`` (the record itself for the hepsafe format)."""
        return events if self.format == "hepsafe" else events[self.collection]

    def columns(self, events: Any, where: str = "events") -> dict[str, Any]:
        """The arrays the mapping needs, ``{branch name: array}``, from an event record."""
        fields = set(events.fields)
        if self.format == "hepsafe":
            missing = [b for b in REQUIRED_BRANCHES if b not in fields]
            if missing:
                raise InputError(f"{where}: no branch(es) {missing} (the hepsafe jet format "
                                 "needs them; see docs/DATA.md)")
            names = REQUIRED_BRANCHES + [b for b in ("event", "jet_index") if b in fields]
            return {b: events[b] for b in names}
        c = self.collection
        assoc = f"{c}PFCands"
        missing = [b for b in (c, assoc, "PFCands") if b not in fields]
        if missing:
            raise InputError(f"{where}: no collection(s) {missing} (PFNano {c} needs {c}, "
                             f"{assoc} and PFCands; read with PFNanoAODSchema)")
        cols = {f"{c}_{f}": events[c][f] for f in ("pt", "eta", "phi", "mass")}
        cols[f"{assoc}_jetIdx"] = events[assoc]["jetIdx"]
        cols[f"{assoc}_pFCandsIdx"] = events[assoc]["pFCandsIdx"]
        pf_fields = PF_FIELDS + (("puppiWeight",) if self.weighted else ())
        have = set(events["PFCands"].fields)
        missing = [f"PFCands_{f}" for f in pf_fields if f not in have]
        if missing:
            why = ("PUPPI weights; option 'puppi' false reads the candidates unweighted"
                   if missing == [PUPPI_BRANCH] else f"PFNano {c} needs {list(pf_fields)}")
            raise InputError(f"{where}: no branch '{missing[0]}' ({why})")
        cols.update({f"PFCands_{f}": events["PFCands"][f] for f in pf_fields})
        if "msoftdrop" in events[c].fields:
            cols[f"{c}_msoftdrop"] = events[c]["msoftdrop"]
        for b in ("event", "genWeight"):
            if b in fields:
                cols[b] = events[b]
        return cols

    def batch(self, columns: Mapping[str, Any], where: str = "chunk",
              entry_start: int | None = None) -> JetBatch:
        """The jets of one chunk as a JetBatch, from eager (or virtual) :meth:`columns`.

        For the hepsafe format without an ``event`` branch, event numbers are the entry
        numbers, which needs ``entry_start`` (the chunk's first entry in its file).
        """
        if self.format == "pfnano":
            return jets_from_arrays(columns, self.collection, source=where, label=self.label,
                                    puppi=self.weighted)
        n = len(columns["jet_pt"])
        parts = ak.zip(
            {b[len("part_"):]: ak.values_astype(columns[b], PART_BRANCHES[b])
             for b in PART_BRANCHES},
            depth_limit=2,
        )
        n_parts = _numpy(columns["n_parts"], np.int64)
        counts = _numpy(ak.num(parts, axis=1), np.int64)
        bad = np.flatnonzero(n_parts != counts)
        if len(bad):
            raise InputError(f"{where}: branch 'n_parts' disagrees with the length of "
                             f"'part_pt' at entry {int(bad[0])} of the chunk")
        if "event" in columns:
            event = _numpy(columns["event"], np.int64)
        elif entry_start is not None:
            event = np.arange(entry_start, entry_start + n, dtype=np.int64)
        else:
            raise InputError(f"{where}: no branch 'event' and no chunk start to number the "
                             "events (random variations are keyed on the event number)")
        jet_index = (_numpy(columns["jet_index"], np.int32) if "jet_index" in columns
                     else np.zeros(n, dtype=np.int32))
        return JetBatch(
            pt=_numpy(columns["jet_pt"], np.float32),
            eta=_numpy(columns["jet_eta"], np.float32),
            phi=_numpy(columns["jet_phi"], np.float32),
            mass=_numpy(columns["jet_mass"], np.float32),
            label=_numpy(columns["jet_label"], np.int32),
            weight=_numpy(columns["weight"], np.float32),
            event=event,
            jet_index=jet_index,
            parts=ak.to_packed(parts),
            meta={"source": where, "entry_start": entry_start},
        )

    def counts(self, columns: Mapping[str, Any]) -> np.ndarray | None:
        """Jets per event ``(n_events,)`` int64 for PFNano columns; None for one jet per entry."""
        if not self.per_event:
            return None
        return _numpy(ak.num(columns[f"{self.collection}_pt"], axis=1), np.int64)


def detect_source(events: Any, collection: str = "FatJet",
                  puppi: bool | None = None) -> JetSource:
    """The :class:`JetSource` of an event record: the hepsafe format when it has ``jet_pt``,
    else PFNano ``collection`` (``puppi`` as :class:`JetSource`); raises InputError naming
    what was found."""
    fields = set(events.fields)
    if "jet_pt" in fields:
        return JetSource("hepsafe")
    if collection in fields and f"{collection}PFCands" in fields:
        return JetSource("pfnano", collection, puppi=puppi)
    raise InputError(f"events: neither the hepsafe jet format (branch 'jet_pt') nor PFNano "
                     f"'{collection}' with '{collection}PFCands' (fields: {sorted(fields)})")
