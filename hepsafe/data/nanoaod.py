"""CMS NanoAOD / PFNanoAOD jets with their particle-flow candidates, mapped to ``JetBatch``.

PFNano stores, per event, a jet collection (``FatJet_*`` or ``Jet_*``), the PF candidates
(``PFCands_*``) and an association table (``FatJetPFCands_jetIdx``,
``FatJetPFCands_pFCandsIdx``; ``JetPFCands_*`` for AK4) that links them. This module turns
those per-event arrays into one JetBatch row per jet, fully vectorised. It works on arrays
read by uproot (:func:`read_pfnano`) and on the same fields taken from coffea NanoEvents
(``hepsafe.coffea``).

PUPPI: the association table links a PUPPI jet to the *unweighted* packed candidates, so
with ``puppi`` (default for ``FatJet``, AK8 PUPPI jets) each candidate's four-momentum is
multiplied by its ``PFCands_puppiWeight`` (w in [0, 1]) and candidates with w = 0 are
dropped: they are not part of the PUPPI jet. The nominal jets keep the file's jet values
(``FatJet_pt``, ``FatJet_mass``: corrected); a perturbation moves them by the ratio of the
constituent sums (:meth:`hepsafe.perturbation.perturber.Perturber.build`).
``FatJet_msoftdrop``, when the
file has it, becomes ``JetBatch.msoftdrop``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepsafe._files import check_finite, open_tree, read_branch
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import InputError

COLLECTIONS = ("FatJet", "Jet")
PF_FIELDS = ("pt", "eta", "phi", "mass", "charge", "pdgId")
#: the per-candidate PUPPI weight, in [0, 1]
PUPPI_BRANCH = "PFCands_puppiWeight"


def default_puppi(collection: str) -> bool:
    """Whether ``collection``'s candidates are PUPPI-weighted by default: True for
    ``FatJet`` (AK8 PUPPI jets), False for ``Jet``."""
    return collection == "FatJet"


def _puppi(puppi: bool | None, collection: str) -> bool:
    return default_puppi(collection) if puppi is None else bool(puppi)


def branch_names(collection: str = "FatJet", puppi: bool | None = None) -> list[str]:
    """The NanoAOD branches needed for ``collection`` ("FatJet" or "Jet"), with
    ``PFCands_puppiWeight`` when the candidates are PUPPI-weighted (``puppi``; None: the
    collection's default, :func:`default_puppi`)."""
    if collection not in COLLECTIONS:
        raise InputError(f"collection must be one of {COLLECTIONS}, got {collection!r}")
    return (
        [f"{collection}_{f}" for f in ("pt", "eta", "phi", "mass")]
        + [f"{collection}PFCands_jetIdx", f"{collection}PFCands_pFCandsIdx"]
        + [f"PFCands_{f}" for f in PF_FIELDS]
        + ([PUPPI_BRANCH] if _puppi(puppi, collection) else [])
    )


def optional_branch_names(collection: str = "FatJet") -> list[str]:
    """Branches read when the file has them: ``event``, ``genWeight`` and the soft-drop
    mass ``<collection>_msoftdrop`` [GeV]."""
    return ["event", "genWeight", f"{collection}_msoftdrop"]


def weighted_p4(pt: Any, eta: Any, mass: Any, weight: Any, astype: Any) -> tuple[Any, Any]:
    """Candidate ``(pT, energy)`` [GeV] as float32, after ``p4 -> weight * p4`` (``weight``
    None: unweighted); energy from the float32 pT, eta and the weighted mass.

    Written against numpy ufuncs and ``astype(array, dtype)`` (``np.asarray``,
    ``ak.values_astype``, ``dask_awkward.values_astype``), so flat numpy buffers and jagged
    awkward arrays give the same values bit for bit. Shapes: any, all alike.
    """
    pt64 = astype(pt, np.float64)
    m64 = astype(mass, np.float64)
    if weight is not None:
        w = astype(weight, np.float64)
        pt64 = pt64 * w
        m64 = m64 * w
    cpt = astype(pt64, np.float32)
    pz = astype(cpt, np.float64) * np.cosh(astype(eta, np.float64))
    return cpt, astype(np.sqrt(pz * pz + m64 * m64), np.float32)


def _np_astype(x: Any, dtype: Any) -> np.ndarray:
    return np.asarray(x, dtype=dtype)


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
    puppi: bool | None = None,
) -> JetBatch:
    """Map per-event PFNano arrays to a JetBatch (one row per jet).

    ``arrays`` maps NanoAOD branch names (:func:`branch_names`, plus the optional
    :func:`optional_branch_names`) to per-event jagged arrays (event-level scalars for
    ``event``, ``genWeight``). Jet order within an event is kept and recorded in
    ``jet_index``; jets without associated candidates are kept with zero constituents.
    ``puppi`` (None: True for FatJet, False for Jet): candidate four-momenta times
    ``PFCands_puppiWeight``, candidates of weight 0 dropped (module docstring); recorded in
    ``meta["puppi"]``. Constituents are ordered by decreasing (weighted) pT.
    """
    puppi = _puppi(puppi, collection)
    names = branch_names(collection, puppi)
    missing = [b for b in names if b not in arrays]
    if missing == [PUPPI_BRANCH]:
        raise InputError(f"{source}: no branch '{PUPPI_BRANCH}' (PUPPI weights of the "
                         f"{collection} candidates; option 'puppi' false reads them unweighted)")
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
    weight = None
    if puppi:
        weight = _flat(arrays[PUPPI_BRANCH])[gpf]
        bad = np.flatnonzero(~((weight >= 0) & (weight <= 1)))
        if len(bad):
            raise InputError(f"{source}: event {int(ev_of_assoc[bad[0]])}: {PUPPI_BRANCH} is "
                             f"{weight[bad[0]]}, expected a weight in [0, 1]")
        kept = weight > 0  # a candidate of weight 0 is not part of the PUPPI jet
        gjet, gpf, weight = gjet[kept], gpf[kept], weight[kept]
    cpt, energy = weighted_p4(pf["pt"][gpf], pf["eta"][gpf], pf["mass"][gpf], weight,
                              _np_astype)
    # group by jet, then decreasing pT within the jet (lexsort: last key is primary)
    order = np.lexsort((-cpt, gjet))
    gjet, gpf, cpt, energy = gjet[order], gpf[order], cpt[order], energy[order]
    counts = np.bincount(gjet, minlength=n_jets).astype(np.int64)
    parts = ak.zip(
        {
            "pt": ak.unflatten(cpt, counts),
            "eta": ak.unflatten(pf["eta"][gpf].astype(np.float32), counts),
            "phi": ak.unflatten(pf["phi"][gpf].astype(np.float32), counts),
            "energy": ak.unflatten(energy, counts),
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
    msd = f"{collection}_msoftdrop"
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
        meta={"source": source, "collection": collection, "puppi": puppi},
        msoftdrop=_flat(arrays[msd]).astype(np.float32) if msd in arrays else None,
    )


def _finite_branches(collection: str) -> list[str]:
    """The kinematic branches (jets and candidates), ``genWeight`` and the PUPPI weight,
    checked finite when read."""
    return ([f"{collection}_{f}" for f in ("pt", "eta", "phi", "mass")]
            + [f"PFCands_{f}" for f in ("pt", "eta", "phi", "mass")]
            + ["genWeight", PUPPI_BRANCH])


def _open_events(
    path: str | os.PathLike[str], collection: str, tree: str, puppi: bool | None
) -> tuple[Any, Any, list[str]]:
    """``(file, tree, branches to read)``, the needed branches checked present."""
    f, t = open_tree(path, tree, InputError)
    keys = set(t.keys())
    for b in branch_names(collection, puppi):
        if b not in keys:
            f.close()
            raise InputError(f"{path}: tree '{tree}' has no branch '{b}' (PFNano {collection}"
                             + (", PUPPI weights; option 'puppi'" if b == PUPPI_BRANCH
                                else "") + ")")
    wanted = branch_names(collection, puppi) + [
        b for b in optional_branch_names(collection) if b in keys]
    return f, t, wanted


def _read_events(
    path: str | os.PathLike[str], t: Any, wanted: list[str], collection: str,
    puppi: bool | None, start: int, stop: int,
) -> JetBatch:
    """Events ``[start, stop)`` of an open tree, branch by branch, values checked finite."""
    arrays: dict[str, Any] = {b: read_branch(t, b, path, start, stop, InputError)
                              for b in wanted}
    for b in _finite_branches(collection):
        if b in arrays:
            check_finite(arrays[b], path, b, start, InputError)
    if "event" not in arrays:  # the entry number, so that chunks agree with whole reads
        arrays["event"] = np.arange(start, stop, dtype=np.int64)
    return jets_from_arrays(arrays, collection, source=str(path), puppi=puppi)


def read_pfnano(
    path: str | os.PathLike[str],
    collection: str = "FatJet",
    tree: str = "Events",
    entry_start: int | None = None,
    entry_stop: int | None = None,
    puppi: bool | None = None,
) -> JetBatch:
    """Read events ``[entry_start, entry_stop)`` of a PFNano file as a JetBatch of its jets
    (``puppi``: see :func:`jets_from_arrays`).

    Raises InputError (one line naming the file, and the branch and entry range or entry
    at fault) for a missing, truncated or corrupt file, a missing branch, or a NaN or inf
    in a jet or candidate kinematic branch or ``genWeight``. Without an ``event`` branch,
    a jet's event number is its entry number.
    """
    f, t, wanted = _open_events(path, collection, tree, puppi)
    with f:
        start, stop, _ = slice(entry_start, entry_stop).indices(int(t.num_entries))
        return _read_events(path, t, wanted, collection, puppi, start, max(start, stop))


def iter_pfnano(
    path: str | os.PathLike[str],
    collection: str = "FatJet",
    tree: str = "Events",
    step_size: int = 10_000,
    puppi: bool | None = None,
) -> Iterator[JetBatch]:
    """The jets of a PFNano file in chunks of ``step_size`` events, the file opened once;
    together the jets of :func:`read_pfnano`, for any ``step_size``."""
    if step_size < 1:
        raise InputError(f"iter_pfnano: step_size must be >= 1, got {step_size}")
    f, t, wanted = _open_events(path, collection, tree, puppi)
    with f:
        n = int(t.num_entries)
        for start in range(0, n, step_size):
            yield _read_events(path, t, wanted, collection, puppi, start,
                               min(start + step_size, n))


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
    puppi_weight: np.ndarray | None = None,
    raw_factor: float | np.ndarray = 0.0,
) -> Path:
    """Write a JetBatch as a PFNano-layout file (for tests and examples), atomically.

    Consecutive jets are grouped ``jets_per_event`` to an event; each event gets its own
    PF candidate list and association table, run = 1, luminosityBlock = 1 and ``event``
    numbers 1, 2, ... Candidate masses are sqrt(E^2 - p^2) of the batch's constituents.

    The batch holds the jets as the reader returns them: its constituents are the
    (weighted) jet constituents and its jet values the raw jets. ``puppi_weight`` (float
    ``(n_constituents,)`` in [0, 1], default 1) is written as ``PFCands_puppiWeight`` and
    each candidate is stored unweighted, ``p4 / w`` (a candidate of weight 0 as it is; the
    reader drops it). ``raw_factor`` (scalar or ``(n_jets,)``, below 1) is written as
    ``<collection>_rawFactor`` and the jet pT and mass as the corrected ``raw / (1 -
    rawFactor)``. ``batch.msoftdrop``, when set, is written as ``<collection>_msoftdrop``.
    """
    import uproot

    from hepsafe._files import atomic_path

    n = len(batch)
    n_c = int(batch.n_parts.sum())
    w = (np.ones(n_c, dtype=np.float32) if puppi_weight is None
         else np.asarray(puppi_weight, dtype=np.float32))
    if w.shape != (n_c,) or not np.all((w >= 0) & (w <= 1)):
        raise InputError(f"write_pfnano: puppi_weight must be ({n_c},) weights in [0, 1], got "
                         f"shape {w.shape}")
    rf = np.broadcast_to(np.asarray(raw_factor, dtype=np.float64), (n,))
    if not np.all(rf < 1):
        raise InputError("write_pfnano: raw_factor must be below 1 (raw = corrected * (1 - "
                         "rawFactor))")
    unweight = np.where(w > 0, 1.0 / np.where(w > 0, w.astype(np.float64), 1.0), 1.0)
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

    corr = 1.0 / (1.0 - rf)
    jet = {
        "pt": ev((batch.pt * corr).astype(np.float32), jets_ev),
        "eta": ev(batch.eta.astype(np.float32), jets_ev),
        "phi": ev(batch.phi.astype(np.float32), jets_ev),
        "mass": ev((batch.mass * corr).astype(np.float32), jets_ev),
        "rawFactor": ev(rf.astype(np.float32), jets_ev),
        "nConstituents": ev(n_parts.astype(np.uint8 if n_parts.max(initial=0) < 256
                                           else np.int32), jets_ev),
    }
    if batch.msoftdrop is not None:
        jet["msoftdrop"] = ev(batch.msoftdrop.astype(np.float32), jets_ev)
    out = {
        "run": np.ones(n_events, dtype=np.uint32),
        "luminosityBlock": np.ones(n_events, dtype=np.uint32),
        "event": np.arange(1, n_events + 1, dtype=np.uint64),
        collection: ak.zip(jet),
        "PFCands": ak.zip(
            {
                "pt": ev((batch.flat("pt") * unweight).astype(np.float32), pf_ev),
                "eta": ev(batch.flat("eta").astype(np.float32), pf_ev),
                "phi": ev(batch.flat("phi").astype(np.float32), pf_ev),
                "mass": ev((_constituent_mass(batch) * unweight).astype(np.float32), pf_ev),
                "charge": ev(batch.flat("charge").astype(np.int32), pf_ev),
                "pdgId": ev(batch.flat("pid").astype(np.int32), pf_ev),
                "puppiWeight": ev(w, pf_ev),
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
