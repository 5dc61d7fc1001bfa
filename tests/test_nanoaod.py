"""PFNano-layout files map to JetBatch exactly."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hepsafe.exceptions import InputError
from hepsafe.nanoaod import branch_names, jets_from_arrays, read_pfnano, write_pfnano


@pytest.mark.parametrize("collection,per_event", [("FatJet", 3), ("Jet", 1)])
def test_round_trip(small, tmp_path, collection, per_event):
    path = write_pfnano(small, tmp_path / "nano.root", per_event, collection)
    back = read_pfnano(path, collection)
    assert len(back) == len(small)
    for f in ("pt", "eta", "phi", "mass"):
        assert np.array_equal(getattr(back, f), getattr(small, f)), f
    assert np.array_equal(back.n_parts, small.n_parts)
    for f in ("pt", "eta", "phi", "charge", "pid"):
        assert ak.array_equal(back.parts[f], small.parts[f]), f
    assert np.allclose(back.flat("energy"), small.flat("energy"), rtol=2e-4)
    assert np.array_equal(back.jet_index, np.arange(len(small)) % per_event)
    assert np.array_equal(back.event, np.arange(len(small)) // per_event + 1)


def test_chunked_events_equal_whole(small, tmp_path):
    path = write_pfnano(small, tmp_path / "nano.root", 2)
    whole = read_pfnano(path)
    parts = [read_pfnano(path, entry_start=s, entry_stop=s + 37) for s in range(0, 250, 37)]
    assert np.array_equal(np.concatenate([p.pt for p in parts]), whole.pt)
    assert np.array_equal(np.concatenate([p.jet_index for p in parts]), whole.jet_index)


def test_jets_without_candidates_are_kept(small):
    b = small[:4]
    arrays = {
        "FatJet_pt": ak.Array([b.pt[:2].tolist(), b.pt[2:].tolist()]),
        "FatJet_eta": ak.Array([b.eta[:2].tolist(), b.eta[2:].tolist()]),
        "FatJet_phi": ak.Array([b.phi[:2].tolist(), b.phi[2:].tolist()]),
        "FatJet_mass": ak.Array([b.mass[:2].tolist(), b.mass[2:].tolist()]),
        # only jet 1 of event 0 has candidates
        "FatJetPFCands_jetIdx": ak.Array([[1, 1], []]),
        "FatJetPFCands_pFCandsIdx": ak.Array([[0, 1], []]),
        **{f"PFCands_{f}": ak.Array([[3.0, 5.0], []]) for f in ("pt", "eta", "phi", "mass")},
        "PFCands_charge": ak.Array([[1, 0], []]),
        "PFCands_pdgId": ak.Array([[211, 22], []]),
    }
    out = jets_from_arrays(arrays)
    assert list(out.n_parts) == [0, 2, 0, 0]
    assert out.parts.pt[1].tolist() == [5.0, 3.0]  # decreasing pT


def test_missing_branch_named(small, tmp_path):
    path = tmp_path / "bad.root"
    with uproot.recreate(path) as f:
        f["Events"] = {"FatJet_pt": ak.Array([[500.0]])}
    with pytest.raises(InputError, match=r"bad\.root.*'FatJet_eta'"):
        read_pfnano(path)


def test_bad_index_named(small):
    arrays = {b: ak.Array([[1.0]]) for b in branch_names()}
    arrays["FatJetPFCands_jetIdx"] = ak.Array([[0]])
    arrays["FatJetPFCands_pFCandsIdx"] = ak.Array([[4]])
    with pytest.raises(InputError, match="event 0.*pFCandsIdx 4 of 1"):
        jets_from_arrays(arrays)


def test_unknown_collection():
    with pytest.raises(InputError, match="collection"):
        branch_names("AK15Jet")
