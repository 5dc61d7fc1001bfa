"""Flat <-> padded layout: bit-identical to the awkward formulation it replaced, on the
shipped sample (masked constituents, jets with zero constituents, several n_max), ties and
NaN ordered as awkward orders them, scatter the inverse of gather, chunk independence."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from hepsafe.attacks import base
from hepsafe.attacks.adversary import graph
from hepsafe.data import layout
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import InputError
from hepsafe.tagger import features as F

FIELDS = ("pt", "eta", "phi", "energy", "charge", "pid")


# ---------------------------------------------------------------- the awkward formulation
def _ref_to_padded(jets: JetBatch, n_max: int, fields, sort_by, dtype):
    """Padding written with awkward slicing (the formulation layout replaced)."""
    parts = jets.parts
    if "mask" in parts.fields:
        parts = parts[parts["mask"]]
    if sort_by is not None:
        parts = parts[ak.argsort(parts[sort_by], axis=1, ascending=False, stable=True)]
    parts = parts[:, :n_max]
    counts = ak.to_numpy(ak.num(parts, axis=1))
    mask = np.arange(n_max)[None, :] < counts[:, None]
    x = np.zeros((len(jets), n_max, len(fields)), dtype=dtype)
    for i, name in enumerate(fields):
        x[:, :, i][mask] = ak.to_numpy(ak.flatten(parts[name], axis=1))
    return x, mask


def _ref_padded_index(jets: JetBatch, n_max: int) -> np.ndarray:
    parts = jets.parts
    flat_idx = ak.local_index(parts["pt"], axis=1) + ak.Array(jets.offsets[:-1])
    if "mask" in parts.fields:
        flat_idx = flat_idx[parts["mask"]]
        pt = parts["pt"][parts["mask"]]
    else:
        pt = parts["pt"]
    flat_idx = flat_idx[ak.argsort(pt, axis=1, ascending=False, stable=True)][:, :n_max]
    counts = ak.to_numpy(ak.num(flat_idx, axis=1))
    out = np.full((len(jets), n_max), -1, dtype=np.int64)
    out[np.arange(n_max)[None, :] < counts[:, None]] = ak.to_numpy(ak.flatten(flat_idx))
    return out


def _ref_flat_delta(padded: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, 3), dtype=np.float32)
    flat = index.ravel()
    slots = np.flatnonzero(flat >= 0)
    out[flat[slots]] = np.asarray(padded, dtype=np.float32).reshape(-1, 3)[slots]
    return out


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


# ---------------------------------------------------------------- batches
@pytest.fixture(scope="module")
def plain(sample: JetBatch) -> JetBatch:
    """Every 10th jet of the sample, 40 of them emptied (zero constituents)."""
    sub = sample[::10]
    empty = np.zeros(len(sub), dtype=bool)
    empty[::60] = True
    parts = sub.parts[ak.unflatten(np.repeat(~empty, sub.n_parts), sub.n_parts)]
    out = sub.replace(parts=parts)
    assert int((out.n_parts == 0).sum()) == int(empty.sum()) > 0
    return out


@pytest.fixture(scope="module")
def masked(plain: JetBatch) -> JetBatch:
    """``plain`` with a third of the constituents masked out, and every constituent of
    some jets masked out."""
    rng = np.random.default_rng(7)
    keep = rng.random(int(plain.n_parts.sum())) > 0.33
    jet = np.repeat(np.arange(len(plain)), plain.n_parts)
    keep[np.isin(jet, np.arange(3, len(plain), 97))] = False
    return plain.with_parts(mask=keep)


@pytest.mark.parametrize("which", ["plain", "masked"])
@pytest.mark.parametrize("n_max", [1, 7, 32, 128, 200])
def test_identical_to_awkward_formulation(request, which, n_max):
    jets = request.getfixturevalue(which)
    for dtype in (np.float32, np.float64):
        x, mask = jets.to_padded(n_max, fields=FIELDS, dtype=dtype)
        rx, rmask = _ref_to_padded(jets, n_max, FIELDS, "pt", dtype)
        _same_bits(x, rx)
        _same_bits(mask, rmask)
    index = base.padded_index(jets, n_max)
    _same_bits(index, _ref_padded_index(jets, n_max))
    p = F.padded_constituents(jets, n_max)
    rx, rmask = _ref_to_padded(jets, n_max, F.PADDED_FIELDS, "pt", np.float32)
    assert list(p) == [*F.PADDED_FIELDS, "mask"]
    for i, name in enumerate(F.PADDED_FIELDS):
        assert p[name].flags.c_contiguous
        _same_bits(p[name], np.ascontiguousarray(rx[:, :, i]))
    _same_bits(p["mask"], rmask)
    # the padded slots hold exactly the flat constituents the index names
    pt = jets.flat("pt")
    np.testing.assert_array_equal(p["pt"][index >= 0], pt[index[index >= 0]])
    # adversary deltas go back where the index says
    delta = np.random.default_rng(n_max).normal(size=(*index.shape, 3)).astype(np.float32)
    n = int(jets.n_parts.sum())
    _same_bits(graph.flat_delta(delta, index, n), _ref_flat_delta(delta, index, n))


@pytest.mark.parametrize("sort_by", [None, "energy", "pid"])
def test_other_orderings_identical(masked, sort_by):
    x, mask = masked.to_padded(40, fields=FIELDS, sort_by=sort_by)
    rx, rmask = _ref_to_padded(masked, 40, FIELDS, sort_by, np.float32)
    _same_bits(x, rx)
    _same_bits(mask, rmask)


def test_ties_nan_and_signed_zero_ordered_as_awkward():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 12, size=300)
    values = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 2.5, 2.5, 7.0],
                        size=int(counts.sum()))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ref = ak.argsort(ak.unflatten(values, counts), axis=1, ascending=False, stable=True)
    ref = ref + ak.Array(offsets[:-1])
    for n_max in (1, 4, 12):
        got = layout.slot_index(offsets, n_max, key=values)
        want = ak.to_numpy(ak.fill_none(ak.pad_none(ref, n_max, axis=1, clip=True), -1))
        _same_bits(got, want.astype(np.int64))
    keep = rng.random(len(values)) > 0.5
    got = layout.slot_index(offsets, 12, key=values, keep=keep)
    sel = ak.unflatten(keep, counts)
    kept_ref = ak.Array(ak.local_index(sel, axis=1) + ak.Array(offsets[:-1]))[sel]
    kept_ref = kept_ref[ak.argsort(ak.unflatten(values, counts)[sel], axis=1,
                                   ascending=False, stable=True)]
    want = ak.to_numpy(ak.fill_none(ak.pad_none(kept_ref, 12, axis=1, clip=True), -1))
    _same_bits(got, want.astype(np.int64))


def test_scatter_inverts_gather(masked):
    index = layout.padded_index(masked, 16)
    n = int(masked.n_parts.sum())
    flat = np.random.default_rng(1).normal(size=(n, 2))
    back = layout.scatter(layout.gather(flat, index), index, n, dtype=np.float64)
    has_slot = np.zeros(n, dtype=bool)
    has_slot[index[index >= 0]] = True
    assert 0 < has_slot.sum() < n  # masked and truncated constituents exist
    np.testing.assert_array_equal(back[has_slot], flat[has_slot])
    assert np.all(back[~has_slot] == 0)
    # a constituent sits in at most one slot
    used = index[index >= 0]
    assert len(np.unique(used)) == len(used)


def test_index_does_not_depend_on_chunking(masked):
    whole = layout.padded_index(masked, 24)
    offsets = masked.offsets
    for lo, hi in ((0, 100), (100, 1234), (1234, len(masked))):
        part = layout.padded_index(masked[lo:hi], 24)
        shifted = np.where(part >= 0, part + offsets[lo], -1)
        _same_bits(shifted, whole[lo:hi])


def test_empty_batch_and_errors(plain):
    none = plain[:0]
    x, mask = none.to_padded(5)
    assert x.shape == (0, 5, 4) and mask.shape == (0, 5)
    assert layout.padded_index(none, 5).shape == (0, 5)
    assert layout.scatter(np.zeros((0, 5, 3)), np.zeros((0, 5), np.int64), 0).shape == (0, 3)
    with pytest.raises(InputError, match="n_max must be >= 1, got 0"):
        plain.to_padded(0)
    with pytest.raises(InputError, match="n_max must be >= 1, got 0"):
        F.padded_constituents(plain, 0)
    with pytest.raises(InputError, match="'key' has shape"):
        layout.slot_index(plain.offsets, 4, key=np.zeros(3))
    with pytest.raises(InputError, match="scatter: padded array has shape"):
        layout.scatter(np.zeros((2, 4, 3)), np.zeros((2, 5), np.int64), 10)
    with pytest.raises(InputError, match="constituent field 'bogus'"):
        plain.to_padded(4, sort_by="bogus")


def test_attacks_base_re_exports_padded_index():
    assert base.padded_index is layout.padded_index
