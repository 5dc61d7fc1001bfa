"""``JetBatch``: jets with jagged constituents, labels and weights; ROOT reading and writing.

The on-disk format (``docs/DATA.md``, ``schemas/dataset.schema.json``) is one TTree entry per
jet: jet-level branches and jagged constituent branches ``part_*``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepsafe._files import atomic_path, check_finite, open_tree, read_branch
from hepsafe.data import layout
from hepsafe.exceptions import InputError

TREE = "jets"
#: jet-level branches of the format, with their on-disk dtypes
JET_BRANCHES: dict[str, str] = {
    "jet_pt": "float32",
    "jet_eta": "float32",
    "jet_phi": "float32",
    "jet_mass": "float32",
    "jet_label": "int32",
    "weight": "float32",
    "n_parts": "int32",
    "event": "int64",
    "jet_index": "int32",
}
#: constituent branches of the format (jagged, one list per jet), with their on-disk dtypes
PART_BRANCHES: dict[str, str] = {
    "part_pt": "float32",
    "part_eta": "float32",
    "part_phi": "float32",
    "part_energy": "float32",
    "part_charge": "int8",
    "part_pid": "int32",
}
#: branches a file must have; ``event`` and ``jet_index`` are optional (derived if absent)
REQUIRED_BRANCHES = [b for b in JET_BRANCHES if b not in ("event", "jet_index")] + list(
    PART_BRANCHES
)
PART_FIELDS = tuple(b[len("part_") :] for b in PART_BRANCHES)
CLASS_NAMES = {0: "QCD", 1: "W", 2: "top",
               # out-of-distribution classes (docs/DATA.md), no tagger trains on them
               3: "H174_hh20", 4: "H174_hh80", 5: "top_W20"}


@dataclass(frozen=True, eq=False)
class JetBatch:
    """Jets (one row each) with their jagged constituents.

    Jet-level arrays have shape ``(n_jets,)``: ``pt``, ``eta``, ``phi`` [GeV, rad], ``mass``
    [GeV], ``label`` (0 QCD, 1 W, 2 top; -1 unknown), ``weight``, ``event`` (event number)
    and ``jet_index`` (index of the jet within its event). Together ``(event, jet_index)``
    key the counter-based random numbers, so results never depend on chunking.

    ``parts`` is an ``ak.Array`` of type ``n_jets * var * {pt, eta, phi, energy, charge,
    pid, ...}``; an optional boolean field ``mask`` marks constituents that are kept (a
    perturbation masks, never removes, so indices never shift). Jets with zero constituents
    are valid. A JetBatch is never modified in place; every operation returns a new one.

    ``msoftdrop``: optional soft-drop jet mass [GeV], shape ``(n_jets,)`` (PFNano
    ``FatJet_msoftdrop``); None when the input has none.
    """

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    event: np.ndarray
    jet_index: np.ndarray
    parts: ak.Array
    meta: Mapping[str, Any] = field(default_factory=dict)
    msoftdrop: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.pt)
        names = ("eta", "phi", "mass", "label", "weight", "event", "jet_index")
        for name in names + (("msoftdrop",) if self.msoftdrop is not None else ()):
            if len(getattr(self, name)) != n:
                raise InputError(
                    f"JetBatch field '{name}' has length {len(getattr(self, name))}, "
                    f"expected {n} (length of 'pt')"
                )
        if len(self.parts) != n:
            raise InputError(f"JetBatch 'parts' has {len(self.parts)} jets, expected {n}")
        missing = [f for f in ("pt", "eta", "phi", "energy") if f not in self.parts.fields]
        if missing:
            raise InputError(f"JetBatch 'parts' lacks constituent field(s) {missing}")

    # ------------------------------------------------------------------ basic access
    def __len__(self) -> int:
        return len(self.pt)

    def __repr__(self) -> str:
        counts = self.class_counts()
        cls = ", ".join(f"{CLASS_NAMES.get(k, k)}: {v}" for k, v in counts.items())
        return (
            f"JetBatch({len(self)} jets; {cls}; "
            f"{int(np.sum(self.n_parts))} constituents, fields {list(self.parts.fields)})"
        )

    @property
    def n_parts(self) -> np.ndarray:
        """Number of constituents per jet, shape ``(n_jets,)``, int64 (masked ones included)."""
        counts: np.ndarray = ak.to_numpy(ak.num(self.parts, axis=1)).astype(np.int64)
        return counts

    @property
    def offsets(self) -> np.ndarray:
        """Offsets into the flat constituent buffers, shape ``(n_jets + 1,)``, int64, from 0."""
        counts = self.n_parts
        out = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=out[1:])
        return out

    def flat(self, name: str) -> np.ndarray:
        """Contiguous flat buffer of constituent field ``name``, shape ``(n_constituents,)``.

        A read-only view is never handed out: the result is a fresh copy, safe to modify.
        """
        if name not in self.parts.fields:
            raise InputError(f"constituent field '{name}' not in {list(self.parts.fields)}")
        return np.ascontiguousarray(ak.to_numpy(ak.flatten(self.parts[name], axis=1))).copy()

    def class_counts(self) -> dict[int, int]:
        """Number of jets per label, ``{label: count}``, sorted by label."""
        labels, counts = np.unique(self.label, return_counts=True)
        return {int(k): int(v) for k, v in zip(labels, counts, strict=True)}

    def jet_arrays(self) -> dict[str, np.ndarray]:
        """The jet-level arrays by name (``pt``, ``eta``, ... ``jet_index``, and
        ``msoftdrop`` when the batch has it)."""
        out = {
            k: getattr(self, k)
            for k in ("pt", "eta", "phi", "mass", "label", "weight", "event", "jet_index")
        }
        if self.msoftdrop is not None:
            out["msoftdrop"] = self.msoftdrop
        return out

    # ------------------------------------------------------------------ new batches
    def __getitem__(self, where: slice | np.ndarray | Sequence[int]) -> JetBatch:
        """Select jets by slice, integer indices or boolean mask (a new batch)."""
        if isinstance(where, slice):
            sel: Any = where
        else:
            sel = np.asarray(where)
            if sel.dtype != bool and not np.issubdtype(sel.dtype, np.integer):
                raise InputError(f"JetBatch index must be a slice, ints or bools, got {sel.dtype}")
        arrays = {k: np.asarray(v[sel]) for k, v in self.jet_arrays().items()}
        return JetBatch(**arrays, parts=self.parts[sel], meta=dict(self.meta))

    def replace(self, **changes: Any) -> JetBatch:
        """A new batch with jet-level arrays (``msoftdrop`` included) and/or ``parts``
        replaced."""
        fields = {**self.jet_arrays(), "msoftdrop": self.msoftdrop, "parts": self.parts,
                  "meta": dict(self.meta)}
        unknown = set(changes) - set(fields)
        if unknown:
            raise InputError(f"JetBatch has no field(s) {sorted(unknown)}")
        fields.update(changes)
        return JetBatch(**fields)

    def with_parts(self, **flat_fields: np.ndarray) -> JetBatch:
        """A new batch whose constituent fields are replaced/added from flat buffers.

        Each value has shape ``(n_constituents,)`` in the order of :meth:`flat`.
        """
        counts = self.n_parts
        total = int(counts.sum())
        contents = {k: self.parts[k] for k in self.parts.fields}
        for name, values in flat_fields.items():
            values = np.asarray(values)
            if values.shape != (total,):
                raise InputError(
                    f"constituent field '{name}' has shape {values.shape}, expected ({total},)"
                )
            contents[name] = ak.unflatten(values, counts)
        return self.replace(parts=ak.zip(contents, depth_limit=2))

    @staticmethod
    def concatenate(batches: Sequence[JetBatch]) -> JetBatch:
        """Concatenate batches jet-wise (same constituent fields required); ``msoftdrop``
        is kept only when every batch has it."""
        if not batches:
            raise InputError("JetBatch.concatenate needs at least one batch")
        keys = set.intersection(*(set(b.jet_arrays()) for b in batches))
        arrays = {
            k: np.concatenate([getattr(b, k) for b in batches])
            for k in batches[0].jet_arrays() if k in keys
        }
        parts = ak.concatenate([b.parts for b in batches], axis=0)
        return JetBatch(**arrays, parts=parts, meta=dict(batches[0].meta))

    # ------------------------------------------------------------------ padding
    def to_padded(
        self,
        n_max: int,
        fields: Sequence[str] = ("pt", "eta", "phi", "energy"),
        sort_by: str | None = "pt",
        dtype: Any = np.float32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pad constituents to a fixed length.

        Returns ``(x, mask)``: ``x`` of shape ``(n_jets, n_max, len(fields))`` and boolean
        ``mask`` of shape ``(n_jets, n_max)`` (True for a real constituent). Constituents are
        ordered by decreasing ``sort_by`` (None keeps file order) and the first ``n_max``
        kept. Masked-out constituents (field ``mask`` False) are dropped before padding.

        Examples
        --------
        >>> import numpy as np
        >>> import hepsafe
        >>> jets = hepsafe.data.load_sample("test")[:3]
        >>> x, mask = jets.to_padded(16)
        >>> x.shape, mask.shape  # (jets, slots, fields pt, eta, phi, energy)
        ((3, 16, 4), (3, 16))
        >>> mask.sum(axis=1).tolist() == np.minimum(jets.n_parts, 16).tolist()
        True
        >>> bool(np.all(x[~mask] == 0))  # padding slots hold zeros
        True
        >>> bool(np.all(np.diff(x[..., 0], axis=1)[mask[:, 1:]] <= 0))  # by decreasing pT
        True
        """
        return layout.to_padded(self, n_max, fields, sort_by, dtype)


# ---------------------------------------------------------------------- ROOT I/O
#: jet-level and constituent branches that must hold finite numbers (checked at read time)
FINITE_BRANCHES = ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "weight",
                   "part_pt", "part_eta", "part_phi", "part_energy")
#: ``select(label, event) -> bool mask``: which jets of a chunk to keep, from their
#: ``jet_label`` (int32) and ``event`` (int64) arrays of shape ``(n_entries,)``
Selector = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_branches(path: str | os.PathLike[str], tree: Any, treename: str) -> None:
    present = set(tree.keys())
    for b in REQUIRED_BRANCHES:
        if b not in present:
            raise InputError(
                f"{path}: tree '{treename}' has no branch '{b}' (the format needs "
                f"{REQUIRED_BRANCHES}; see docs/DATA.md)"
            )


def _batch_from_arrays(arrays: Mapping[str, Any], path: str, entry_start: int) -> JetBatch:
    """A JetBatch from the branches read (name -> awkward array, entries from
    ``entry_start`` on): values checked finite, constituent counts checked against
    ``n_parts``."""
    for b in FINITE_BRANCHES:
        check_finite(arrays[b], path, b, entry_start, InputError)
    n = len(arrays["jet_pt"])
    n_parts = ak.to_numpy(arrays["n_parts"]).astype(np.int64)
    for name in PART_FIELDS:
        counts = ak.to_numpy(ak.num(arrays[f"part_{name}"], axis=1))
        bad = np.nonzero(n_parts != counts)[0]
        if len(bad):
            raise InputError(
                f"{path}: branch 'n_parts' disagrees with the length of 'part_{name}' at "
                f"entry {entry_start + int(bad[0])} ({n_parts[bad[0]]} vs {counts[bad[0]]})"
            )
    parts = ak.zip(
        {name: arrays[f"part_{name}"] for name in PART_FIELDS}, depth_limit=2
    )
    event = (
        ak.to_numpy(arrays["event"]).astype(np.int64)
        if "event" in arrays
        else np.arange(entry_start, entry_start + n, dtype=np.int64)
    )
    jet_index = (
        ak.to_numpy(arrays["jet_index"]).astype(np.int32)
        if "jet_index" in arrays
        else np.zeros(n, dtype=np.int32)
    )
    return JetBatch(
        pt=ak.to_numpy(arrays["jet_pt"]),
        eta=ak.to_numpy(arrays["jet_eta"]),
        phi=ak.to_numpy(arrays["jet_phi"]),
        mass=ak.to_numpy(arrays["jet_mass"]),
        label=ak.to_numpy(arrays["jet_label"]).astype(np.int32),
        weight=ak.to_numpy(arrays["weight"]),
        event=event,
        jet_index=jet_index,
        parts=parts,
        meta={"source": str(path), "entry_start": entry_start},
    )


def _open_tree(path: str | os.PathLike[str], treename: str) -> tuple[Any, Any]:
    """``(file, tree)``, the tree's branches checked; raises InputError naming the file."""
    f, t = open_tree(path, treename, InputError)
    try:
        _check_branches(path, t, treename)
    except InputError:
        f.close()
        raise
    return f, t


def _read_entries(path: str | os.PathLike[str], t: Any, start: int, stop: int) -> JetBatch:
    """Entries ``[start, stop)`` of an open, checked tree, branch by branch (one branch's
    baskets in memory at a time)."""
    keys = set(t.keys())
    names = REQUIRED_BRANCHES + [b for b in ("event", "jet_index") if b in keys]
    arrays = {b: read_branch(t, b, path, start, stop, InputError) for b in names}
    return _batch_from_arrays(arrays, str(path), start)


def _entry_range(n: int, entry_start: int | None, entry_stop: int | None) -> tuple[int, int]:
    start, stop, _ = slice(entry_start, entry_stop).indices(n)
    return start, max(start, stop)


def read_root(
    path: str | os.PathLike[str],
    tree: str = TREE,
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> JetBatch:
    """Read jets ``[entry_start, entry_stop)`` of a file in the hepsafe format.

    Raises InputError (one line naming the file, and the branch and entry range or entry
    at fault) for a missing, truncated or corrupt file, a missing branch, or a NaN or inf
    in a kinematic branch or ``weight``.
    """
    f, t = _open_tree(path, tree)
    with f:
        start, stop = _entry_range(int(t.num_entries), entry_start, entry_stop)
        return _read_entries(path, t, start, stop)


def iter_root(
    path: str | os.PathLike[str],
    step_size: int = 10_000,
    tree: str = TREE,
    select: Selector | None = None,
    max_jets: int | None = None,
) -> Iterator[JetBatch]:
    """Iterate over a file in chunks of ``step_size`` entries (jets), the file opened once.

    With ``select`` (see :data:`Selector`), each chunk's ``jet_label`` and ``event`` are
    read first and only the selected jets are read and yielded (chunks with none are
    skipped); iteration stops once ``max_jets`` jets were yielded, reading no further
    entry than needed. The jets yielded are those of :func:`read_root` with the selection
    and the cut to ``max_jets`` applied, for any ``step_size``.
    """
    if step_size < 1:
        raise InputError(f"iter_root: step_size must be >= 1, got {step_size}")
    if max_jets is not None and max_jets < 0:
        raise InputError(f"iter_root: max_jets must be >= 0, got {max_jets}")
    f, t = _open_tree(path, tree)
    with f:
        n = int(t.num_entries)
        has_event = "event" in t.keys()
        left = n if max_jets is None else max_jets
        for start in range(0, n, step_size):
            if left <= 0:
                return
            stop = min(start + step_size, n)
            if select is None:
                batch = _read_entries(path, t, start, min(stop, start + left))
            else:
                label = ak.to_numpy(read_branch(t, "jet_label", path, start, stop, InputError))
                event = (ak.to_numpy(read_branch(t, "event", path, start, stop, InputError))
                         if has_event else np.arange(start, stop))
                keep = np.flatnonzero(select(label.astype(np.int32), event.astype(np.int64)))
                keep = keep[:left]
                if not len(keep):
                    continue
                first, last = int(keep[0]), int(keep[-1]) + 1
                batch = _read_entries(path, t, start + first, start + last)
                if len(keep) < last - first:  # packed: the chunk's buffers are not kept alive
                    batch = batch[keep - first]
                    batch = batch.replace(parts=ak.to_packed(batch.parts))
            left -= len(batch)
            yield batch


def num_entries(path: str | os.PathLike[str], tree: str = TREE) -> int:
    """Number of jets in a file."""
    f, t = open_tree(path, tree, InputError)
    with f:
        return int(t.num_entries)


def write_root(
    batch: JetBatch,
    path: str | os.PathLike[str],
    tree: str = TREE,
    compression: Any = None,
) -> Path:
    """Write ``batch`` to ``path`` in the hepsafe format, atomically (temp file + rename).

    Constituent fields other than the format's (for example ``mask``) are not written.
    """
    import uproot

    missing = [f for f in PART_FIELDS if f not in batch.parts.fields]
    if missing:
        raise InputError(f"write_root: constituents lack field(s) {missing}")
    counts = batch.n_parts
    jet = {
        "jet_pt": batch.pt,
        "jet_eta": batch.eta,
        "jet_phi": batch.phi,
        "jet_mass": batch.mass,
        "jet_label": batch.label,
        "weight": batch.weight,
        "event": batch.event,
        "jet_index": batch.jet_index,
    }
    out: dict[str, Any] = {k: np.asarray(v).astype(JET_BRANCHES[k]) for k, v in jet.items()}
    out["part"] = ak.zip(
        {
            name: ak.unflatten(batch.flat(name).astype(PART_BRANCHES[f"part_{name}"]), counts)
            for name in PART_FIELDS
        },
        depth_limit=2,
    )
    if compression is None:
        compression = uproot.ZLIB(6)
    types = {k: v.dtype for k, v in out.items() if k != "part"}
    types["part"] = out["part"].type.content
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp, compression=compression) as f:
            # the jagged branches part_* share one counter branch, named n_parts
            f.mktree(tree, types, counter_name=lambda _: "n_parts")
            f[tree].extend(out)
    return Path(path)
