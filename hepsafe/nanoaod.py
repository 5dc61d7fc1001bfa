"""CMS NanoAOD / PFNanoAOD jets with their particle-flow candidates, mapped to ``JetBatch``.

PFNano stores, per event, a jet collection (``FatJet_*`` or ``Jet_*``), the PF candidates
(``PFCands_*``) and an association table (``FatJetPFCands_jetIdx``,
``FatJetPFCands_pFCandsIdx``; ``JetPFCands_*`` for AK4) that links them. This module turns
those per-event arrays into one JetBatch row per jet, fully vectorised. It works on arrays
read by uproot (:func:`read_pfnano`) and on the same fields taken from coffea NanoEvents
(``hepsafe.coffea``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from .exceptions import InputError
from .io import open_root
from .jets import JetBatch

COLLECTIONS = ("FatJet", "Jet")
PF_FIELDS = ("pt", "eta", "phi", "mass", "charge", "pdgId")


def branch_names(collection: str = "FatJet") -> list[str]:
    """The NanoAOD branches needed for ``collection`` ("FatJet" or "Jet")."""
    if collection not in COLLECTIONS:
        raise InputError(f"collection must be one of {COLLECTIONS}, got {collection!r}")
    return (
        [f"{collection}_{f}" for f in ("pt", "eta", "phi", "mass")]
        + [f"{collection}PFCands_jetIdx", f"{collection}PFCands_pFCandsIdx"]
        + [f"PFCands_{f}" for f in PF_FIELDS]
    )


def _flat(x: Any) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(x, axis=1)))


def _offsets(x: Any) -> np.ndarray:
    counts = np.asarray(ak.to_numpy(ak.num(x, axis=1)), dtype=np.int64)
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def jets_from_arrays(
    arrays: Mapping[str, Any],
    collection: str = "FatJet",
    source: str = "arrays",
    label: int = -1,
) -> JetBatch:
    """Map per-event PFNano arrays to a JetBatch (one row per jet).

    ``arrays`` maps NanoAOD branch names (:func:`branch_names`, plus optional ``event`` and
    ``genWeight``) to per-event jagged arrays (event-level scalars for ``event``). Jet
    order within an event is kept and recorded in ``jet_index``; constituents are ordered
    by decreasing pT; jets without associated candidates are kept with zero constituents.
    """
    names = branch_names(collection)
    missing = [b for b in names if b not in arrays]
    if missing:
        raise InputError(f"{source}: no branch '{missing[0]}' (PFNano {collection} needs {names})")
    jet_pt = arrays[f"{collection}_pt"]
    n_events = len(jet_pt)
    jet_off = _offsets(jet_pt)
    n_jets = int(jet_off[-1])
    pf_off = _offsets(arrays["PFCands_pt"])
    assoc_jet = arrays[f"{collection}PFCands_jetIdx"]
    assoc_pf = arrays[f"{collection}PFCands_pFCandsIdx"]
    assoc_counts = np.asarray(ak.to_numpy(ak.num(assoc_jet, axis=1)), dtype=np.int64)
    ev_of_assoc = np.repeat(np.arange(n_events, dtype=np.int64), assoc_counts)
    local_jet = _flat(assoc_jet).astype(np.int64)
    local_pf = _flat(assoc_pf).astype(np.int64)
    n_jet_ev = np.diff(jet_off)[ev_of_assoc]
    n_pf_ev = np.diff(pf_off)[ev_of_assoc]
    bad = np.nonzero((local_jet < 0) | (local_jet >= n_jet_ev) | (local_pf < 0)
                     | (local_pf >= n_pf_ev))[0]
    if len(bad):
        e = int(ev_of_assoc[bad[0]])
        raise InputError(
            f"{source}: event {e}: {collection}PFCands index out of range "
            f"(jetIdx {local_jet[bad[0]]} of {n_jet_ev[bad[0]]} jets, pFCandsIdx "
            f"{local_pf[bad[0]]} of {n_pf_ev[bad[0]]} candidates)"
        )
    gjet = jet_off[ev_of_assoc] + local_jet
    gpf = pf_off[ev_of_assoc] + local_pf
    pf = {f: _flat(arrays[f"PFCands_{f}"]) for f in PF_FIELDS}
    cpt = pf["pt"][gpf].astype(np.float32)
    # group by jet, then decreasing pT within the jet (lexsort: last key is primary)
    order = np.lexsort((-cpt, gjet))
    gjet, gpf, cpt = gjet[order], gpf[order], cpt[order]
    counts = np.bincount(gjet, minlength=n_jets).astype(np.int64)
    eta = pf["eta"][gpf].astype(np.float64)
    mass = pf["mass"][gpf].astype(np.float64)
    energy = np.sqrt((cpt.astype(np.float64) * np.cosh(eta)) ** 2 + mass**2)
    parts = ak.zip(
        {
            "pt": ak.unflatten(cpt, counts),
            "eta": ak.unflatten(eta.astype(np.float32), counts),
            "phi": ak.unflatten(pf["phi"][gpf].astype(np.float32), counts),
            "energy": ak.unflatten(energy.astype(np.float32), counts),
            "charge": ak.unflatten(pf["charge"][gpf].astype(np.int8), counts),
            "pid": ak.unflatten(pf["pdgId"][gpf].astype(np.int32), counts),
        },
        depth_limit=2,
    )
    ev_of_jet = np.repeat(np.arange(n_events, dtype=np.int64), np.diff(jet_off))
    if "event" in arrays:
        event = np.asarray(ak.to_numpy(arrays["event"]), dtype=np.int64)[ev_of_jet]
    else:
        event = ev_of_jet
    if "genWeight" in arrays:
        weight = np.asarray(ak.to_numpy(arrays["genWeight"]), dtype=np.float32)[ev_of_jet]
    else:
        weight = np.ones(n_jets, dtype=np.float32)
    return JetBatch(
        pt=_flat(jet_pt).astype(np.float32),
        eta=_flat(arrays[f"{collection}_eta"]).astype(np.float32),
        phi=_flat(arrays[f"{collection}_phi"]).astype(np.float32),
        mass=_flat(arrays[f"{collection}_mass"]).astype(np.float32),
        label=np.full(n_jets, label, dtype=np.int32),
        weight=weight,
        event=event,
        jet_index=(np.arange(n_jets, dtype=np.int64) - jet_off[ev_of_jet]).astype(np.int32),
        parts=parts,
        meta={"source": source, "collection": collection},
    )


def read_pfnano(
    path: str | os.PathLike[str],
    collection: str = "FatJet",
    tree: str = "Events",
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> JetBatch:
    """Read events ``[entry_start, entry_stop)`` of a PFNano file as a JetBatch of its jets."""
    with open_root(path, InputError) as f:
        if tree not in f:
            raise InputError(f"{path}: no tree '{tree}' (keys: {list(f.keys())})")
        t = f[tree]
        keys = set(t.keys())
        for b in branch_names(collection):
            if b not in keys:
                raise InputError(f"{path}: tree '{tree}' has no branch '{b}' (PFNano {collection})")
        wanted = branch_names(collection) + [b for b in ("event", "genWeight") if b in keys]
        arrays = t.arrays(wanted, entry_start=entry_start, entry_stop=entry_stop, how=dict)
    return jets_from_arrays(arrays, collection, source=str(path))


def _constituent_mass(batch: JetBatch) -> np.ndarray:
    """Constituent masses [GeV], shape ``(n_constituents,)``, from (pt, eta, energy)."""
    pt = batch.flat("pt").astype(np.float64)
    p = pt * np.cosh(batch.flat("eta").astype(np.float64))
    e = batch.flat("energy").astype(np.float64)
    return np.sqrt(np.maximum(e * e - p * p, 0.0))


def write_pfnano(
    batch: JetBatch,
    path: str | os.PathLike[str],
    jets_per_event: int = 2,
    collection: str = "FatJet",
) -> Path:
    """Write a JetBatch as a PFNano-layout file (for tests and examples), atomically.

    Consecutive jets are grouped ``jets_per_event`` to an event; each event gets its own
    PF candidate list and association table, run = 1, luminosityBlock = 1 and ``event``
    numbers 1, 2, ... Candidate masses are sqrt(E^2 - p^2) of the batch's constituents.
    """
    import uproot

    from .io import atomic_path

    n = len(batch)
    n_events = -(-n // jets_per_event)
    jets_ev = np.full(n_events, jets_per_event, dtype=np.int64)
    if n % jets_per_event:
        jets_ev[-1] = n % jets_per_event
    n_parts = batch.n_parts
    ev_of_jet = np.repeat(np.arange(n_events), jets_ev)
    pf_ev = np.bincount(ev_of_jet, weights=n_parts, minlength=n_events).astype(np.int64)
    jet_first = np.concatenate([[0], np.cumsum(jets_ev)[:-1]])
    local_jet = np.repeat(np.arange(n) - jet_first[ev_of_jet], n_parts)
    part_first_ev = np.concatenate([[0], np.cumsum(pf_ev)[:-1]])
    local_pf = np.arange(int(n_parts.sum())) - np.repeat(part_first_ev, pf_ev)

    def ev(x: np.ndarray, counts: np.ndarray) -> ak.Array:
        return ak.unflatten(x, counts)

    out = {
        "run": np.ones(n_events, dtype=np.uint32),
        "luminosityBlock": np.ones(n_events, dtype=np.uint32),
        "event": np.arange(1, n_events + 1, dtype=np.uint64),
        collection: ak.zip(
            {
                "pt": ev(batch.pt.astype(np.float32), jets_ev),
                "eta": ev(batch.eta.astype(np.float32), jets_ev),
                "phi": ev(batch.phi.astype(np.float32), jets_ev),
                "mass": ev(batch.mass.astype(np.float32), jets_ev),
                "nConstituents": ev(n_parts.astype(np.uint8 if n_parts.max(initial=0) < 256
                                                   else np.int32), jets_ev),
            }
        ),
        "PFCands": ak.zip(
            {
                "pt": ev(batch.flat("pt").astype(np.float32), pf_ev),
                "eta": ev(batch.flat("eta").astype(np.float32), pf_ev),
                "phi": ev(batch.flat("phi").astype(np.float32), pf_ev),
                "mass": ev(_constituent_mass(batch).astype(np.float32), pf_ev),
                "charge": ev(batch.flat("charge").astype(np.int32), pf_ev),
                "pdgId": ev(batch.flat("pid").astype(np.int32), pf_ev),
            }
        ),
        f"{collection}PFCands": ak.zip(
            {
                "jetIdx": ev(local_jet.astype(np.int32), pf_ev),
                "pFCandsIdx": ev(local_pf.astype(np.int32), pf_ev),
            }
        ),
    }
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as f:
            types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype)
                     for k, v in out.items()}
            f.mktree(
                "Events",
                types,
                counter_name=lambda counted: f"n{counted}",
                field_name=lambda outer, inner: f"{outer}_{inner}",
            )
            f["Events"].extend(out)
    return Path(path)
