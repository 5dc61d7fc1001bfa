"""The shipped sample: counts, card, split, and physics sanity."""

from __future__ import annotations

import numpy as np

from hepsafe import _schemas as schemas
from hepsafe import data as datasets
from hepsafe._files import sha256sum


def test_class_counts(sample):
    counts = sample.class_counts()
    assert counts[0] >= 10_000 and counts[1] >= 10_000 and counts[2] >= 5_000


def test_size_and_card_checksum():
    assert datasets.SAMPLE_FILE.stat().st_size <= 15 * 1024**2
    card = datasets.sample_card()
    schemas.validate(card, "dataset", "sample card")
    assert card["sha256"] == sha256sum(datasets.SAMPLE_FILE)
    assert card["command"].startswith("hepsafe generate")
    assert card["n_jets"] == sum(card["class_counts"].values())


def test_split_is_deterministic_and_disjoint(sample):
    train, test = datasets.load_sample("train"), datasets.load_sample("test")
    assert len(train) + len(test) == len(sample)
    assert not set(train.event.tolist()) & set(test.event.tolist())
    frac = len(test) / len(sample)
    assert abs(frac - datasets.TEST_FRACTION) < 0.02
    card = datasets.sample_card()
    assert card["split"]["counts"] == {"train": len(train), "test": len(test)}
    # independent of order: the same events in a reversed batch
    rev = sample[::-1]
    assert np.array_equal(datasets.is_test(rev.event)[::-1], datasets.is_test(sample.event))


def _mode(values, lo=0.0, hi=300.0, width=5.0):
    hist, edges = np.histogram(values, bins=np.arange(lo, hi + width, width))
    return edges[np.argmax(hist)] + width / 2


def test_physics_sanity(sample):
    w_mode = _mode(sample.mass[sample.label == 1])
    top_mode = _mode(sample.mass[sample.label == 2])
    assert 70 <= w_mode <= 95, w_mode
    assert 150 <= top_mode <= 195, top_mode
    qcd = sample.mass[sample.label == 0]
    hist, _ = np.histogram(qcd, bins=np.arange(100, 300, 20))
    assert np.all(np.diff(hist) <= 0.1 * hist[:-1] + 5), hist  # falling above 100 GeV
    assert np.all((sample.pt >= 500) & (sample.pt <= 700))
    assert np.all(np.abs(sample.eta) < 2)


def test_constituents_are_consistent(sample):
    b = sample[:2000]
    pt, eta, phi, e = (b.flat(f) for f in ("pt", "eta", "phi", "energy"))
    assert np.all(pt > 1.0)
    assert np.all(np.abs(phi) <= np.float32(np.pi))
    # every stored constituent is physical: E >= |p| (to float32 rounding)
    p = pt.astype(np.float64) * np.cosh(eta.astype(np.float64))
    assert np.all(e >= p * (1 - 1e-6))
    # the jet four-vector is the constituents' sum (E-scheme), up to float32 storage
    off = b.offsets
    px = np.add.reduceat(pt * np.cos(phi), off[:-1]) if len(pt) else pt
    py = np.add.reduceat(pt * np.sin(phi), off[:-1])
    nonempty = b.n_parts > 0
    jet_pt = np.hypot(px, py)
    assert np.allclose(jet_pt[nonempty], b.pt[nonempty], rtol=1e-5)
    # constituent pT sorted decreasing within each jet
    d = np.diff(pt)
    first = np.zeros(len(pt), dtype=bool)
    first[off[:-1][nonempty]] = True
    assert np.all(d[~first[1:]] <= 0)


def test_jets_are_the_sum_of_their_stored_constituents(sample):
    from hepsafe import perturb

    b = sample[::10]
    again = perturb(b, None).jets  # recomputed from the constituents, nothing moved
    assert np.allclose(again.pt, b.pt, rtol=1e-6)
    assert np.allclose(again.mass, b.mass, rtol=1e-5, atol=1e-3)
    assert np.allclose(again.eta, b.eta, atol=1e-5)


def _share_a_position(batch) -> tuple[np.ndarray, np.ndarray]:
    """Per constituent (flat): neutral, and sharing (eta, phi) with another one of its jet."""
    jet = np.repeat(np.arange(len(batch)), batch.n_parts)
    eta, phi = batch.flat("eta"), batch.flat("phi")
    keys = np.stack([jet, eta.view(np.int32), phi.view(np.int32)], axis=1)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return batch.flat("charge") == 0, counts[inverse.ravel()] > 1


def test_neutral_candidates_are_calorimeter_clusters(sample):
    # one candidate per calorimeter cell: neutrals never share a position (< 1 % allowed)
    neutral, shared = _share_a_position(sample[::5])
    assert neutral.sum() > 10_000
    assert (neutral & shared).sum() / neutral.sum() < 0.01


def test_merge_cells_sums_energy_per_cell():
    e = np.array([1.0, 2.0, 5.0, 3.0, 4.0])
    eta = np.array([0.0001, 0.0002, 0.05, 0.0435, -1.0])
    # particles 0, 1: one ECAL crystal; 2: a neutral hadron; 3: an ECAL deposit in the middle
    # crystal of that hadron's HCAL tower (joins it); 4: elsewhere
    phi = np.array([0.0, 0.0, 0.05, 0.0436, 1.0])
    calo = np.array([0, 0, 1, 0, 0])
    c = datasets.merge_cells(e, eta, phi, calo)
    assert sorted(c["energy"].tolist()) == [3.0, 4.0, 8.0]
    assert np.isclose(c["energy"].sum(), e.sum())
    had = c["calo"] == 1
    assert c["energy"][had].tolist() == [8.0]
    assert np.isclose(c["eta"][had][0], 0.5 * datasets.HCAL_CELL[0])
    crystal = (c["calo"] == 0) & (c["energy"] == 3.0)
    assert np.isclose(c["eta"][crystal][0], 0.5 * datasets.ECAL_CELL[0])
    # phi cell centres lie in (-pi, pi)
    assert np.all(np.abs(c["phi"]) < np.pi)
