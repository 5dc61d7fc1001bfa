"""A run's samples read from their files chunk by chunk, the selection applied per chunk.

Each file is read ``step_size`` entries at a time (jets in the hepsafe format, events in
PFNano), branch by branch; a chunk's jets are cut by ``label`` and ``split`` at once, and
reading stops as soon as ``max_jets`` jets are collected. Peak memory is therefore set by
the jets kept and one chunk, not by the size of the files, and the jets are exactly those of
reading every file whole and selecting afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import awkward as ak
import numpy as np

from hepsafe.data.jets import TREE, JetBatch, Selector, iter_root
from hepsafe.exceptions import ConfigError

#: entries read per chunk by default (``read/step_size`` of the run configuration)
STEP_SIZE = 20_000
SPLITS = ("all", "train", "test")


def selector(label: int | None = None, split: str = "all") -> Selector | None:
    """The jet selection of a sample as a :data:`hepsafe.data.jets.Selector`: ``jet_label ==
    label`` (None: any) and the deterministic ``split`` by event number (docs/DATA.md);
    None when it keeps every jet."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if label is None and split == "all":
        return None
    from hepsafe.data.sample import is_test

    def select(labels: np.ndarray, events: np.ndarray) -> np.ndarray:
        keep = np.ones(len(labels), dtype=bool) if label is None else labels == label
        if split != "all":
            test = is_test(events)
            keep &= test if split == "test" else ~test
        return keep

    return select


def iter_selected(
    path: str | os.PathLike[str],
    fmt: str = "hepsafe",
    tree: str | None = None,
    select: Selector | None = None,
    max_jets: int | None = None,
    step_size: int = STEP_SIZE,
    collection: str = "FatJet",
    puppi: bool | None = None,
) -> Iterator[JetBatch]:
    """The jets of one file that ``select`` keeps, chunk by chunk, at most ``max_jets``.

    ``fmt`` is ``hepsafe`` (``tree`` default ``jets``; only the selected jets' entries
    are read) or ``pfnano`` (``tree`` default ``Events``; ``step_size`` events per chunk,
    each chunk read whole, then cut).
    """
    if fmt == "hepsafe":
        yield from iter_root(path, step_size, tree or TREE, select, max_jets)
        return
    if fmt != "pfnano":
        raise ConfigError(f"format must be 'hepsafe' or 'pfnano', got {fmt!r}")
    from hepsafe.data.nanoaod import iter_pfnano

    left = np.inf if max_jets is None else max_jets
    for chunk in iter_pfnano(path, collection, tree or "Events", step_size, puppi):
        if left <= 0:
            return
        n = len(chunk)
        if select is not None:
            chunk = chunk[select(chunk.label, chunk.event)]
        if len(chunk) > left:
            chunk = chunk[: int(left)]
        if len(chunk) < n:  # packed: the chunk's buffers are not kept alive
            chunk = chunk.replace(parts=ak.to_packed(chunk.parts))
        if len(chunk):
            left -= len(chunk)
            yield chunk


def read_selected(
    files: Sequence[str | os.PathLike[str]],
    fmt: str = "hepsafe",
    tree: str | None = None,
    label: int | None = None,
    split: str = "all",
    max_jets: int | None = None,
    step_size: int = STEP_SIZE,
    collection: str = "FatJet",
    puppi: bool | None = None,
) -> JetBatch | None:
    """The first ``max_jets`` jets (None: all) of ``files``, in order, with ``jet_label ==
    label`` (None: any) and in ``split``; None when no jet is selected.

    Equal, array for array, to reading every file whole, concatenating, then cutting, for
    any ``step_size``; but only one chunk of ``step_size`` entries is held besides the
    jets kept, and no file or entry after the last jet needed is read.
    """
    if step_size < 1:
        raise ConfigError(f"step_size must be >= 1, got {step_size}")
    select = selector(label, split)
    pieces: list[JetBatch] = []
    left = max_jets
    for f in files:
        if left is not None and left <= 0:
            break
        for chunk in iter_selected(f, fmt, tree, select, left, step_size, collection, puppi):
            pieces.append(chunk)
            if left is not None:
                left -= len(chunk)
    if not pieces:
        return None
    return pieces[0] if len(pieces) == 1 else JetBatch.concatenate(pieces)
