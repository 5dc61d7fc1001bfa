"""Physics variations: effects, registry, inputs untouched, bit-for-bit chunk invariance."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hepsafe.attacks.registry import KINDS, make_attack
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation import variations as variations
from hepsafe.perturbation.envelope import PARTICLE_CLASSES, Envelope, particle_classes
from hepsafe.perturbation.variations import (
    VARIATIONS,
    angular_smear,
    apply_variation,
    energy_scale,
    energy_smear,
    list_variations,
    tracking_loss,
)

RANDOM = ("smear_energy", "smear_angle", "tracking_loss")


def _bytes(jets: JetBatch) -> dict[str, bytes]:
    out = {f"jet_{k}": np.asarray(v).tobytes() for k, v in jets.jet_arrays().items()}
    for f in jets.parts.fields:
        out[f] = ak.to_numpy(ak.flatten(jets.parts[f], axis=1)).tobytes()
    return out


def test_registry_names():
    names = list_variations()
    for cls in (*PARTICLE_CLASSES, "all"):
        assert f"scale_{cls}_up" in names and f"scale_{cls}_down" in names
    for name in RANDOM:
        assert name in names
    assert VARIATIONS["scale_photon_up"].params["shift"] == -VARIATIONS["scale_photon_down"].params[
        "shift"
    ] > 0
    with pytest.raises(ConfigError, match="unknown variation 'nope'"):
        apply_variation("nope", None)  # type: ignore[arg-type]


def test_every_variation_leaves_input_untouched(small):
    before = _bytes(small)
    for name in list_variations():
        out = apply_variation(name, small, seed=3)
        assert isinstance(out, JetBatch) and "mask" in out.parts.fields
        assert np.array_equal(out.n_parts, small.n_parts)
        assert np.all((out.phi > -np.float32(np.pi)) & (out.phi <= np.float32(np.pi)))
    assert _bytes(small) == before


def test_energy_scale_per_class(part):
    cls = particle_classes(part.flat("pid"), part.flat("charge"))
    photon = cls == PARTICLE_CLASSES.index("photon")
    up = apply_variation("scale_photon_up", part)
    down = apply_variation("scale_photon_down", part)
    pt0 = part.flat("pt").astype(np.float64)
    np.testing.assert_allclose(up.flat("pt")[photon], pt0[photon] * 1.02, rtol=1e-7)
    np.testing.assert_allclose(down.flat("pt")[photon], pt0[photon] * 0.98, rtol=1e-7)
    assert np.array_equal(up.flat("pt")[~photon], part.flat("pt")[~photon])
    assert np.array_equal(up.flat("eta"), part.flat("eta"))
    has_photon = np.asarray(ak.any(part.parts["pid"] == 22, axis=1))
    assert np.all(up.pt[has_photon] > down.pt[has_photon])
    assert np.array_equal(up.pt[~has_photon], down.pt[~has_photon])
    # a coherent scale of everything scales the jet momentum exactly
    nominal = energy_scale(part, 0.0)
    allup = energy_scale(part, 0.03)
    np.testing.assert_allclose(allup.pt, nominal.pt * 1.03, rtol=1e-6)
    np.testing.assert_allclose(allup.eta, nominal.eta, atol=1e-5)
    # the energy follows at fixed constituent mass: between 1 (heavy) and 1.03 (massless)
    e_ratio = allup.flat("energy").astype(np.float64) / nominal.flat("energy")
    assert np.all((e_ratio > 1) & (e_ratio < 1.03 + 1e-6))
    assert np.median(e_ratio) == pytest.approx(1.03, abs=1e-5)
    with pytest.raises(ConfigError, match="particle_class"):
        energy_scale(part, 0.01, particle_class="gluon")


def test_energy_smear_statistics(part):
    out = energy_smear(part, sigma=0.05, seed=1)
    r = out.flat("pt").astype(np.float64) / part.flat("pt") - 1
    assert abs(r.mean()) < 1e-3 and abs(r.std() - 0.05) < 1e-3
    assert np.array_equal(out.flat("eta"), part.flat("eta"))
    again = energy_smear(part, sigma=0.05, seed=1)
    other = energy_smear(part, sigma=0.05, seed=2)
    assert _bytes(again) == _bytes(out)
    assert not np.array_equal(other.flat("pt"), out.flat("pt"))
    only_photons = energy_smear(part, sigma=0.05, seed=1, particle_class="photon")
    photon = part.flat("pid") == 22
    assert np.array_equal(only_photons.flat("pt")[~photon], part.flat("pt")[~photon])
    assert np.array_equal(only_photons.flat("pt")[photon], out.flat("pt")[photon])


def test_angular_smear_statistics(part):
    out = angular_smear(part, sigma=0.01, seed=4)
    de = out.flat("eta").astype(np.float64) - part.flat("eta")
    dp = (out.flat("phi").astype(np.float64) - part.flat("phi") + np.pi) % (2 * np.pi) - np.pi
    for x in (de, dp):
        assert abs(x.mean()) < 2e-4 and abs(x.std() - 0.01) < 2e-4
    assert abs(np.corrcoef(de, dp)[0, 1]) < 0.01  # independent streams
    assert np.array_equal(out.flat("pt"), part.flat("pt"))


def test_tracking_loss(part):
    out = tracking_loss(part, p=0.1, seed=5)
    mask = out.flat("mask")
    charged = part.flat("charge") != 0
    assert np.all(mask[~charged])
    lost = 1 - mask[charged].mean()
    n = charged.sum()
    assert abs(lost - 0.1) < 5 * np.sqrt(0.1 * 0.9 / n)
    # dropped constituents leave the jet: its pT and multiplicity seen by padding fall
    assert np.all(out.pt <= part.pt * 1.01 + 1) and np.mean(out.pt < part.pt) > 0.5
    _, m = out.to_padded(200)
    assert m.sum() == mask.sum()
    assert np.all(tracking_loss(part, p=0.0, seed=5).flat("mask"))
    with pytest.raises(ConfigError, match="'p'"):
        tracking_loss(part, p=1.5)


def test_overrides_and_seed(part):
    a = apply_variation("smear_energy", part, seed=9, sigma=0.1)
    b = energy_smear(part, sigma=0.1, seed=9)
    assert _bytes(a) == _bytes(b)
    with pytest.raises(ConfigError, match="unknown option"):
        apply_variation("smear_energy", part, width=0.1)


def _chunked(name: str, jets: JetBatch, size: int, seed: int) -> JetBatch:
    chunks = [apply_variation(name, jets[s:s + size], seed=seed) for s in range(0, len(jets), size)]
    return JetBatch.concatenate(chunks)


@pytest.mark.parametrize("name", RANDOM)
def test_chunk_invariance_whole_sample(sample, name):
    whole = apply_variation(name, sample, seed=11)
    for size in (4099, 10_000):
        assert _bytes(_chunked(name, sample, size, seed=11)) == _bytes(whole), size


@settings(max_examples=10, deadline=None)
@given(size=st.integers(1, 300), name=st.sampled_from(RANDOM), seed=st.integers(0, 2**63))
def test_chunk_invariance_any_size(small, size, name, seed):
    jets = small[:300]
    assert _bytes(_chunked(name, jets, size, seed)) == _bytes(apply_variation(name, jets,
                                                                              seed=seed))


def test_batch_order_does_not_matter(small):
    """Keys, not positions: a permuted batch gets the permuted result."""
    perm = np.random.default_rng(0).permutation(len(small))
    a = variations.energy_smear(small, seed=2)[perm]
    b = variations.energy_smear(small[perm], seed=2)
    assert _bytes(a) == _bytes(b)


def test_configured_sides_options_and_signs():
    sides = variations.configured_sides({"type": "scale_all", "name": "e", "shift": 0.03})
    assert [(d, n) for d, n, _ in sides] == [("up", "scale_all_up"), ("down", "scale_all_down")]
    assert [o["shift"] for _, _, o in sides] == [0.03, -0.03]
    assert variations.configured_sides({"type": "smear_energy"}) == [("up", "smear_energy", {})]
    # a single registered side keeps its signed shift
    assert variations.configured_sides({"type": "scale_photon_down", "shift": -0.01}) == [
        ("up", "scale_photon_down", {"shift": -0.01})]
    with pytest.raises(ConfigError, match="unknown option"):
        variations.configured_sides({"type": "tracking_loss", "sigma": 0.1})
    with pytest.raises(ConfigError, match="shift"):
        variations.configured_sides({"type": "scale_all", "shift": -0.02})
    with pytest.raises(ConfigError, match="unknown variation type 'jes'"):
        variations.configured_sides({"type": "jes"})


# --------------------------------------------------------------------------- empty jets
#: jets of the mixed batch left without kept constituents (3, 17: none; 9: all masked)
EMPTY = [3, 9, 17]
JET_FIELDS = ("pt", "eta", "phi", "mass", "msoftdrop")


@pytest.fixture(scope="module")
def mixed(small) -> JetBatch:
    """40 jets of the sample with soft-drop masses: jets 3 and 17 have no constituents,
    every constituent of jet 9 is masked in the input, the others are as they are."""
    jets = small[:40]
    n = len(jets)
    keep = ak.unflatten(np.repeat(~np.isin(np.arange(n), EMPTY[::2]), jets.n_parts),
                        jets.n_parts)
    parts = jets.parts[keep]
    counts = ak.to_numpy(ak.num(parts, axis=1))
    parts = ak.with_field(parts, ak.unflatten(np.repeat(np.arange(n) != 9, counts), counts),
                          "mask")
    return jets.replace(parts=parts, msoftdrop=(jets.mass * 0.8).astype(np.float32))


def _left_alone(out: JetBatch, jets: JetBatch) -> None:
    """The EMPTY jets of ``out`` are those of ``jets``, bit for bit (four-vector, soft-drop
    mass); the others moved somewhere."""
    for k in JET_FIELDS:
        assert getattr(out, k)[EMPTY].tobytes() == getattr(jets, k)[EMPTY].tobytes(), k
    assert list(out.n_parts[EMPTY]) == [0, int(jets.n_parts[9]), 0]


def test_empty_jets_left_alone_by_every_variation(mixed):
    assert list(mixed.n_parts[EMPTY[::2]]) == [0, 0] and mixed.n_parts[9] > 0
    for name in list_variations():
        out = apply_variation(name, mixed, seed=3)
        _left_alone(out, mixed)
        assert not np.array_equal(out.flat("pt"), mixed.flat("pt")) or name.startswith(
            ("tracking", "smear_angle", "scale_lepton")), name
    moved = apply_variation("scale_all_up", mixed)
    normal = ~np.isin(np.arange(len(mixed)), EMPTY)
    np.testing.assert_allclose(moved.pt[normal], mixed.pt[normal] * 1.02, rtol=1e-5)


@pytest.mark.parametrize("kind,options", [
    ("fgsm", {}), ("pgd", {"steps": 2}), ("spsa", {"steps": 2, "samples": 2}),
    ("greedy", {"steps": 2}), ("physics:smear_energy", {}),
])
def test_empty_jets_left_alone_by_every_attack(mixed, pfn, kind, options):
    res = make_attack(kind, pfn, Envelope(), **options)(mixed, "down")
    _left_alone(res.jets, mixed)
    assert not res.flagged[EMPTY].any()
    assert not np.array_equal(res.jets.flat("pt"), mixed.flat("pt"))


def test_attack_kinds_all_covered():
    covered = {"fgsm", "pgd", "spsa", "greedy"}
    assert set(KINDS) - covered == {"learned"}  # learned: its own test below


def test_empty_jets_left_alone_by_the_learned_adversary(mixed, pfn):
    from hepsafe.attacks.adversary.graph import OnnxAdversary
    from hepsafe.attacks.adversary.training import LearnedAdversary

    adv = LearnedAdversary.load("adversary_pfn", pfn)
    res = adv(mixed, "down")
    _left_alone(res.jets, mixed)
    onnx_res = OnnxAdversary(MODELS_DIR / "adversary_pfn.onnx")(mixed, "down")
    _left_alone(onnx_res.jets, mixed)
    # the other jets keep their (here: the file's) pT and mass within the tolerances
    ok = ~np.isin(np.arange(len(mixed)), EMPTY) & ~res.flagged
    env = adv.envelope
    assert ok.sum() > 30
    assert np.all(np.abs(res.jets.pt[ok] / mixed.pt[ok] - 1) <= env.pt_tol + 1e-5)
    assert np.all(np.abs(res.jets.mass[ok] - mixed.mass[ok])
                  <= env.mass_tol * mixed.mass[ok] + env.mass_atol + 1e-3)


def test_tracking_loss_of_every_constituent(mixed):
    """A jet whose constituents are all lost has pT = mass = soft-drop mass = 0 and keeps
    its direction; a jet keeping its neutral constituents moves by their share."""
    charged = mixed.parts[mixed.parts["charge"] != 0]
    only_charged = mixed.replace(parts=charged)
    out = tracking_loss(only_charged, p=1.0)
    lost = np.flatnonzero(only_charged.n_parts > 0)
    lost = lost[lost != 9]
    assert len(lost) > 30 and not out.flat("mask").any()
    for k in ("pt", "mass", "msoftdrop"):
        assert np.all(getattr(out, k)[lost] == 0), k
    for k in ("eta", "phi"):
        assert np.array_equal(getattr(out, k)[lost], getattr(mixed, k)[lost]), k
    for k in JET_FIELDS:
        assert getattr(out, k)[EMPTY].tobytes() == getattr(mixed, k)[EMPTY].tobytes(), k
    # the mixed jets: only the charged candidates lost, pT scaled by the neutral share
    kept = tracking_loss(mixed, p=1.0)
    normal = np.setdiff1d(np.arange(len(mixed)), EMPTY)
    assert np.all(kept.pt[normal] < mixed.pt[normal]) and np.all(kept.pt[normal] > 0)
