"""JetBatch and the ROOT format: round trips, chunking, padding, errors."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hepsafe import data as datasets
from hepsafe.data.jets import JetBatch, iter_root, num_entries, read_root, write_root
from hepsafe.exceptions import InputError


def _same(a: JetBatch, b: JetBatch) -> None:
    for k, v in a.jet_arrays().items():
        assert np.array_equal(v, getattr(b, k)), k
    assert a.parts.fields[:6] == b.parts.fields[:6]
    for f in ("pt", "eta", "phi", "energy", "charge", "pid"):
        assert ak.array_equal(a.parts[f], b.parts[f]), f


def test_round_trip_identical(small, tmp_path):
    out = write_root(small, tmp_path / "rt.root")
    _same(small, read_root(out))


def test_chunked_reading_equals_whole():
    whole = read_root(datasets.SAMPLE_FILE, entry_start=0, entry_stop=5000)
    for step in (999, 1700, 5000):
        chunks = [read_root(datasets.SAMPLE_FILE, entry_start=s, entry_stop=min(s + step, 5000))
                  for s in range(0, 5000, step)]
        _same(whole, JetBatch.concatenate(chunks))


def test_iter_root_covers_file(small, tmp_path):
    path = write_root(small, tmp_path / "s.root")
    chunks = list(iter_root(path, step_size=77))
    assert sum(len(c) for c in chunks) == num_entries(path) == len(small)
    _same(small, JetBatch.concatenate(chunks))


def test_zero_constituent_jets_kept(small, tmp_path):
    n = 5
    b = small[:n]
    keep = np.ones(int(b.n_parts.sum()), dtype=bool)
    off = b.offsets
    keep[off[1]:off[2]] = False  # empty jet 1
    keep[off[3]:off[4]] = False  # empty jet 3
    parts = ak.unflatten(ak.flatten(b.parts)[keep], np.where(np.isin(np.arange(n), [1, 3]), 0,
                                                          b.n_parts))
    empty = b.replace(parts=parts)
    back = read_root(write_root(empty, tmp_path / "e.root"))
    assert len(back) == n
    assert list(back.n_parts) == [b.n_parts[0], 0, b.n_parts[2], 0, b.n_parts[4]]
    x, mask = back.to_padded(8)
    assert x.shape == (n, 8, 4) and not mask[1].any() and not mask[3].any()
    assert np.all(x[1] == 0)


def test_to_padded_orders_by_pt(small):
    rng = np.random.default_rng(0)
    flat = {f: small.flat(f) for f in small.parts.fields}
    perm = np.concatenate([s + rng.permutation(n) for s, n in zip(small.offsets[:-1],
                                                                  small.n_parts, strict=True)])
    shuffled = small.with_parts(**{f: v[perm] for f, v in flat.items()})
    x, mask = shuffled.to_padded(64)
    assert x.shape == (len(small), 64, 4) and mask.dtype == bool
    pts = np.where(mask, x[:, :, 0], -1)
    assert np.all(np.diff(pts, axis=1) <= 0)
    assert np.array_equal(mask.sum(1), np.minimum(small.n_parts, 64))
    x0, _ = small.to_padded(64)
    assert np.array_equal(x0[:, :, 0], x[:, :, 0])  # ties in pT may swap other columns
    assert np.allclose(x0.sum(1), x.sum(1), rtol=1e-5)


def test_to_padded_respects_mask_field(small):
    b = small[:20]
    keep = b.flat("pt") > 5.0
    x, mask = b.with_parts(mask=keep).to_padded(128)
    assert mask.sum() == keep.sum()
    assert np.all(x[:, :, 0][mask] > 5.0)


def test_missing_branch_names_branch_and_file(tmp_path):
    path = tmp_path / "bad.root"
    with uproot.recreate(path) as f:
        f["jets"] = {"jet_pt": np.ones(3, np.float32)}
    with pytest.raises(InputError, match=r"bad\.root.*'jet_eta'"):
        read_root(path)


def test_missing_file_and_tree(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_root(tmp_path / "nope.root")
    path = tmp_path / "t.root"
    with uproot.recreate(path) as f:
        f["other"] = {"x": np.ones(2)}
    with pytest.raises(InputError, match="no tree 'jets'"):
        read_root(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.root"
    path.write_bytes(b"not a root file at all" * 10)
    with pytest.raises(InputError, match="corrupt.root"):
        read_root(path)


def test_write_is_atomic(small, tmp_path):
    path = tmp_path / "keep.root"
    write_root(small[:10], path)
    before = path.read_bytes()
    bad = small[:10].replace(parts=ak.zip({"pt": small[:10].parts.pt,
                                           "eta": small[:10].parts.eta,
                                           "phi": small[:10].parts.phi,
                                           "energy": small[:10].parts.energy}))
    with pytest.raises(InputError, match="charge"):
        write_root(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.root"]


def test_inputs_not_modified(small):
    pt_before = small.flat("pt")
    out = small.with_parts(pt=small.flat("pt") * 2)
    assert np.array_equal(small.flat("pt"), pt_before)
    assert np.allclose(out.flat("pt"), 2 * pt_before)


def test_length_mismatch_is_an_error(small):
    with pytest.raises(InputError, match="'eta'"):
        small.replace(eta=small.eta[:-1])
