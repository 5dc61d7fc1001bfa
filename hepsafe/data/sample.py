"""The shipped jet sample: its files, its deterministic train/test split, its card, and a
short description of any file in the format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe.data.jets import CLASS_NAMES, JetBatch, read_root
from hepsafe.exceptions import ConfigError

DATA_DIR = Path(__file__).parent
SAMPLE_FILE = DATA_DIR / "sample.root"
SAMPLE_CARD = DATA_DIR / "sample.json"

#: fraction of events in the test split (decided by a hash of the event number)
TEST_FRACTION = 0.3
LABELS = {"qcd": 0, "w": 1, "top": 2, "hh20": 3, "hh80": 4, "top_w20": 5}

# --------------------------------------------------------------------------- split


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 (vectorised); a well-mixed hash of integers."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def is_test(event: np.ndarray) -> np.ndarray:
    """Deterministic split: True where the jet's event belongs to the test split.

    An event is in the test split when ``splitmix64(event) / 2**64 < TEST_FRACTION``; all
    jets of one event fall on the same side, and the split does not depend on file order.
    """
    with np.errstate(over="ignore"):
        h = _splitmix64(np.asarray(event, dtype=np.int64).view(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53 < TEST_FRACTION


def load_sample(split: str | None = None, path: str | os.PathLike[str] | None = None) -> JetBatch:
    """The shipped sample (or ``path``) as a JetBatch; ``split`` is None, "train" or "test"."""
    batch = read_root(path or SAMPLE_FILE)
    if split is None:
        return batch
    if split not in ("train", "test"):
        raise ConfigError(f"load_sample: split must be None, 'train' or 'test', got {split!r}")
    test = is_test(batch.event)
    return batch[test if split == "test" else ~test]


def sample_card(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The dataset card (JSON) of the shipped sample, or of the card at ``path``."""
    card: dict[str, Any] = json.loads(Path(path or SAMPLE_CARD).read_text())
    return card



def describe(batch: JetBatch) -> str:
    """A short text summary of a batch: class counts, masses, constituent multiplicity."""
    lines = [repr(batch)]
    for k, name in CLASS_NAMES.items():
        sel = batch.label == k
        if not sel.any():
            continue
        m = batch.mass[sel]
        hist, edges = np.histogram(m, bins=np.arange(0, 300, 5))
        mode = edges[np.argmax(hist)] + 2.5
        lines.append(
            f"  {name:9s} {int(sel.sum()):6d} jets; mass mode {mode:6.1f} GeV, median "
            f"{np.median(m):6.1f} GeV; <n_parts> {batch.n_parts[sel].mean():5.1f}"
        )
    return "\n".join(lines)
