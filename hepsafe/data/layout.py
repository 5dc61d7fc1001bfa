"""Flat (jagged) constituents <-> padded ``(n_jets, n_max, ...)`` arrays, in one place.

A JetBatch keeps its constituents jagged: flat buffers of shape ``(n_constituents,)`` (the
order of :meth:`~hepsafe.data.jets.JetBatch.flat`) cut into jets by
:attr:`~hepsafe.data.jets.JetBatch.offsets`. Taggers and attacks see them padded: slot
``[j, k]`` of a ``(n_jets, n_max)`` array holds the ``k``-th constituent of jet ``j`` in
the padding order, which is

1. constituents masked out in the batch (field ``mask`` False) are dropped;
2. the rest are ordered by decreasing ``sort_by`` (stable: ties keep file order; NaN
   first, as :func:`awkward.argsort` orders them), or kept in file order for None;
3. the first ``n_max`` are kept; the remaining slots are padding.

Everything goes through the slot index (:func:`slot_index`, :func:`padded_index`): int64
``(n_jets, n_max)``, the flat position of the constituent in each slot, -1 for padding.
:func:`gather` fills padded arrays from flat buffers through it, :func:`scatter` puts a
padded per-slot array back on the flat layout (constituents without a slot get 0).
All of it is vectorised numpy: one stable sort over the constituents, no loop over jets.

Examples
--------
>>> import numpy as np
>>> offsets = np.array([0, 3, 3, 5])          # 3 jets: 3, 0 and 2 constituents
>>> pt = np.array([1.0, 5.0, 2.0, 7.0, 9.0])
>>> index = slot_index(offsets, 2, key=pt)
>>> index
array([[ 1,  2],
       [-1, -1],
       [ 4,  3]])
>>> gather(pt, index)
array([[5., 2.],
       [0., 0.],
       [9., 7.]])
>>> scatter(gather(pt, index)[..., None], index, 5)[:, 0]
array([0., 5., 2., 7., 9.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import awkward as ak
import numpy as np

from hepsafe.exceptions import InputError

if TYPE_CHECKING:
    from hepsafe.data.jets import JetBatch

__all__ = [
    "flat_field",
    "gather",
    "padded_fields",
    "padded_index",
    "scatter",
    "slot_index",
    "to_padded",
]


def _descending_key(values: np.ndarray) -> np.ndarray:
    """int64 ``(n,)`` >= 0: ``values`` mapped so that an ascending sort gives decreasing
    values, equal values equal keys (-0.0 equals 0.0), NaN smallest (first); exact for every
    dtype. float32 and integers of up to 32 bits map in one pass (order-preserving bit map,
    keys < 2**32); other dtypes are ranked (a sort)."""
    if values.dtype == np.float32 or values.dtype == np.float16:
        v = values.astype(np.float32) + np.float32(0.0)  # -0.0 + 0.0 is +0.0
        bits = v.view(np.uint32)
        # ascending map: negative numbers all bits flipped, the others the sign bit set
        up = bits ^ ((np.uint32(0) - (bits >> np.uint32(31))) | np.uint32(0x80000000))
        up[np.isnan(v)] = np.uint32(0xFFFFFFFF)
        return (~up).astype(np.int64)
    if (values.dtype == np.bool_ or np.issubdtype(values.dtype, np.integer)) and \
            values.dtype.itemsize <= 4:
        k = values.astype(np.int64)
        return (int(k.max()) if len(k) else 0) - k
    _, rank = np.unique(values, return_inverse=True)
    rank = rank.reshape(-1).astype(np.int64, copy=False)
    return (int(rank.max()) if len(rank) else 0) - rank


def slot_index(
    offsets: np.ndarray,
    n_max: int,
    key: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Flat index of each padded slot, int64 ``(n_jets, n_max)``, -1 for padding.

    ``offsets``: int ``(n_jets + 1,)`` into the flat buffers (``offsets[0]`` is where the
    first jet starts; positions are counted from ``offsets[0]``, i.e. from 0 for
    :attr:`JetBatch.offsets`). ``key``: sort values ``(n_constituents,)`` (decreasing,
    stable, NaN first) or None for file order; ``keep``: bool ``(n_constituents,)``, False
    drops a constituent, or None to keep all. ``n_max`` >= 0 slots per jet.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n_jets = len(offsets) - 1
    if n_jets < 0:
        raise InputError("slot_index: 'offsets' must have at least one entry")
    if n_max < 0:
        raise InputError(f"slot_index: n_max must be >= 0, got {n_max}")
    counts = np.diff(offsets)
    total = int(counts.sum())
    for name, a in (("key", key), ("keep", keep)):
        if a is not None and np.shape(a) != (total,):
            raise InputError(f"slot_index: '{name}' has shape {np.shape(a)}, expected "
                             f"({total},) (one value per constituent)")
    src = np.arange(total, dtype=np.int64)
    jet = np.repeat(np.arange(n_jets, dtype=np.int64), counts)
    if keep is not None:
        sel = np.asarray(keep, dtype=bool)
        src, jet = src[sel], jet[sel]
    if key is not None and len(src):
        rank = _descending_key(np.asarray(key) if keep is None else np.asarray(key)[src])
        span = int(rank.max()) + 1
        if n_jets <= np.iinfo(np.int64).max // span:
            order = np.argsort(jet * span + rank, kind="stable")
        else:  # pragma: no cover - more than 2**31 jets with 32-bit keys
            order = np.lexsort((rank, jet))
        src, jet = src[order], jet[order]
    kept = np.bincount(jet, minlength=n_jets)
    start = np.zeros(n_jets, dtype=np.int64)
    np.cumsum(kept[:-1], out=start[1:])
    pos = np.arange(len(src), dtype=np.int64) - start[jet]
    inside = pos < n_max
    out = np.full(n_jets * n_max, -1, dtype=np.int64)
    out[jet[inside] * n_max + pos[inside]] = src[inside]
    return out.reshape(n_jets, n_max)


def flat_field(jets: JetBatch, name: str) -> np.ndarray:
    """Flat buffer of constituent field ``name`` of ``jets``, ``(n_constituents,)``, the
    order of :meth:`JetBatch.flat` (not copied: do not modify)."""
    if name not in jets.parts.fields:
        raise InputError(f"constituent field '{name}' not in {list(jets.parts.fields)}")
    return np.asarray(ak.to_numpy(ak.flatten(jets.parts[name], axis=1)))


def padded_index(jets: JetBatch, n_max: int, sort_by: str | None = "pt") -> np.ndarray:
    """Flat constituent index of each padded slot of ``jets``, int64 ``(n_jets, n_max)``,
    -1 for padding, in the padding order of this module (masked-out constituents dropped,
    decreasing ``sort_by``, first ``n_max``): slot ``[j, k]`` of :func:`to_padded` is flat
    constituent ``index[j, k]`` of :meth:`JetBatch.flat`."""
    keep = flat_field(jets, "mask") if "mask" in jets.parts.fields else None
    key = flat_field(jets, sort_by) if sort_by is not None else None
    return slot_index(jets.offsets, n_max, key=key, keep=keep)


def gather(flat: np.ndarray, index: np.ndarray, dtype: Any = None) -> np.ndarray:
    """Padded array from a flat buffer: ``out[j, k] = flat[index[j, k]]``, 0 where
    ``index`` is -1.

    ``flat``: ``(n_constituents, ...)``; ``index``: int ``(n_jets, n_max)`` from
    :func:`slot_index`. Returns ``(n_jets, n_max, ...)`` of ``dtype`` (default ``flat``'s),
    values cast as numpy assignment casts them.
    """
    index = np.asarray(index)
    slots = index >= 0
    return _gather(np.asarray(flat), slots, index[slots], dtype)


def _gather(flat: np.ndarray, slots: np.ndarray, src: np.ndarray, dtype: Any) -> np.ndarray:
    """:func:`gather` with ``slots = index >= 0`` and ``src = index[slots]`` given (shared
    by the fields of one batch)."""
    out = np.zeros((*slots.shape, *flat.shape[1:]), dtype=flat.dtype if dtype is None else dtype)
    out[slots] = flat[src]
    return out


def scatter(
    padded: np.ndarray, index: np.ndarray, n_constituents: int, dtype: Any = np.float32
) -> np.ndarray:
    """A padded per-slot array back on the flat layout: ``out[index[j, k]] = padded[j, k]``.

    ``padded``: ``(n_jets, n_max, ...)``; ``index``: int ``(n_jets, n_max)`` from
    :func:`slot_index`. Returns ``(n_constituents, ...)`` of ``dtype``; constituents
    without a slot (masked out, or beyond ``n_max``) get 0, padding slots are ignored.
    """
    padded = np.asarray(padded, dtype=dtype)
    index = np.asarray(index)
    if padded.shape[:2] != index.shape:
        raise InputError(f"scatter: padded array has shape {padded.shape}, expected "
                         f"{index.shape} + (...) like the slot index")
    rest = padded.shape[2:]
    out = np.zeros((n_constituents, *rest), dtype=dtype)
    flat = index.ravel()
    slots = np.flatnonzero(flat >= 0)
    out[flat[slots]] = padded.reshape(-1, *rest)[slots]
    return out


def _check_n_max(n_max: int) -> None:
    if n_max < 1:
        raise InputError(f"to_padded: n_max must be >= 1, got {n_max}")


def padded_fields(
    jets: JetBatch,
    n_max: int,
    fields: Sequence[str],
    sort_by: str | None = "pt",
    dtype: Any = np.float32,
) -> dict[str, np.ndarray]:
    """Constituent ``fields`` of ``jets`` padded to ``n_max``, each C-contiguous
    ``(n_jets, n_max)`` of ``dtype`` (0 on padding), and the boolean ``mask`` (True for a
    real constituent), in that key order. ``n_max`` >= 1."""
    _check_n_max(n_max)
    index = padded_index(jets, n_max, sort_by)
    slots = index >= 0
    src = index[slots]
    out = {name: _gather(flat_field(jets, name), slots, src, dtype) for name in fields}
    out["mask"] = slots
    return out


def to_padded(
    jets: JetBatch,
    n_max: int,
    fields: Sequence[str] = ("pt", "eta", "phi", "energy"),
    sort_by: str | None = "pt",
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, mask)``: ``x`` of shape ``(n_jets, n_max, len(fields))`` and ``dtype``, and the
    boolean ``mask`` ``(n_jets, n_max)``; see :meth:`JetBatch.to_padded`."""
    _check_n_max(n_max)
    index = padded_index(jets, n_max, sort_by)
    slots = index >= 0
    src = index[slots]
    x = np.zeros((len(jets), n_max, len(fields)), dtype=dtype)
    for i, name in enumerate(fields):
        x[:, :, i][slots] = flat_field(jets, name)[src]
    return x, slots
