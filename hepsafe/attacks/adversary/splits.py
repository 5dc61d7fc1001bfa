"""The learned adversary's data splits: training jets, a selection hold-out that picks the
stopping point, and a report hold-out whose gate is the one reported (never used to choose).

The split is seeded and per jet (a uniform number per jet of ``numpy.random.default_rng([seed,
7])``, in input order); jets are identified across batches by their ``(event, jet_index)``
key, which is how :func:`check_disjoint` tells that two given batches share no jet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import InputError


class Splits(NamedTuple):
    """Training jets, the selection hold-out (stopping point) and the report hold-out
    (the gate stored in the card); pairwise disjoint."""

    train: JetBatch
    selection: JetBatch
    report: JetBatch


def split_jets(jets: JetBatch, seed: int, selection_fraction: float, report_fraction: float,
               carve_selection: bool = True, carve_report: bool = True) -> Splits:
    """Split ``jets`` into training, selection and report parts, seeded by ``seed``.

    A jet goes to the selection part with probability ``selection_fraction`` and to the
    report part with probability ``report_fraction`` (the same uniform number per jet, so
    the parts never overlap); a part that is not carved (``carve_*`` False) is empty and its
    jets train.
    """
    u = np.random.default_rng([seed, 7]).random(len(jets))
    sel = (u < selection_fraction) if carve_selection else np.zeros(len(jets), dtype=bool)
    rep = ((u >= selection_fraction) & (u < selection_fraction + report_fraction)
           if carve_report else np.zeros(len(jets), dtype=bool))
    return Splits(jets[~(sel | rep)], jets[sel], jets[rep])


def jet_keys(jets: JetBatch) -> np.ndarray:
    """The ``(event, jet_index)`` key of every jet, int64 ``(n_jets, 2)``."""
    return np.stack([np.asarray(jets.event, dtype=np.int64),
                     np.asarray(jets.jet_index, dtype=np.int64)], axis=1)


def shared_jets(a: JetBatch, b: JetBatch) -> int:
    """How many jets of ``a`` have an ``(event, jet_index)`` key that ``b`` also has."""
    ka, kb = jet_keys(a), jet_keys(b)
    if not len(ka) or not len(kb):
        return 0
    view = np.dtype([("e", np.int64), ("j", np.int64)])
    return int(np.isin(np.ascontiguousarray(ka).view(view).ravel(),
                       np.ascontiguousarray(kb).view(view).ravel()).sum())


def check_disjoint(parts: Mapping[str, JetBatch]) -> None:
    """Raise :class:`InputError` naming the two parts (options) that share jets, and how
    many, when any pair of ``parts`` (name -> jets) shares an ``(event, jet_index)`` key."""
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            n = shared_jets(parts[a], parts[b])
            if n:
                raise InputError(f"fit: '{a}' and '{b}' share {n} jets (same event and "
                                 "jet_index); the selection and report hold-outs must be "
                                 "disjoint from each other and from the training jets")
