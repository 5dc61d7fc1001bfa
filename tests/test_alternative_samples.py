"""The shipped pseudo-data samples with alternative physics settings: cards, settings, physics."""

from __future__ import annotations

import numpy as np
import pytest

from hepsafe import _schemas, data
from hepsafe._files import sha256sum

ALTERNATIVES = {
    "alt_fsr_low": ["TimeShower:alphaSvalue = 0.120"],
    "alt_fsr_high": ["TimeShower:alphaSvalue = 0.150"],
    "alt_lund": ["StringZ:aLund = 0.50", "StringZ:bLund = 0.80"],
}


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
def test_card_records_the_settings(name):
    path = data.DATA_DIR / f"{name}.root"
    card = data.sample_card(path.with_suffix(".json"))
    _schemas.validate(card, "dataset", f"{name} card")
    assert card["sha256"] == sha256sum(path)
    assert card["generator"]["settings"]["pythia"] == ALTERNATIVES[name]
    assert card["class_counts"] == {"QCD": 5000, "W": 5000}
    assert "--set" in card["command"] and name in card["command"]
    jets = data.load_sample(path=path)
    assert len(jets) == card["n_jets"]
    assert np.all((jets.pt >= 500) & (jets.pt <= 700))


def _multiplicity(name: str, label: int) -> tuple[float, float]:
    jets = data.load_sample(path=data.DATA_DIR / f"{name}.root")
    n = jets.n_parts[jets.label == label].astype(float)
    return float(n.mean()), float(n.std() / np.sqrt(len(n)))


def test_more_final_state_radiation_means_more_constituents():
    # QCD jets radiate more with a larger shower coupling: a physics check of the settings
    lo, lo_err = _multiplicity("alt_fsr_low", 0)
    hi, hi_err = _multiplicity("alt_fsr_high", 0)
    nominal, _ = _multiplicity_nominal()
    assert hi - lo > 5 * np.hypot(lo_err, hi_err)
    assert lo < nominal < hi


def _multiplicity_nominal() -> tuple[float, float]:
    jets = data.load_sample()
    n = jets.n_parts[jets.label == 0].astype(float)
    return float(n.mean()), float(n.std() / np.sqrt(len(n)))
