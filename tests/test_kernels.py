"""Perturbation kernels and ``perturb``: envelope, phi wrapping, jet observables against an
independent float64 reference, restoration of preserved observables, inputs untouched,
chunk invariance, NaN/inf errors, the counter-based generator."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.perturbation import _kernels as kernels
from hepsafe.perturbation.envelope import PARTICLE_CLASSES, Envelope, particle_classes
from hepsafe.perturbation.perturber import Perturber, perturb, project

PI32 = np.float32(np.pi)
F32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


# ---------------------------------------------------------------------- helpers
#: the analysis' jet corrections applied on top of the constituent sums in make_batch
CORR_PT, CORR_M, SHIFT_ETA, SHIFT_PHI = 1.1, 1.05, 0.01, 0.02


def make_batch(counts, pt, eta, phi, energy, pid, charge, event, mask=None) -> JetBatch:
    """A batch whose jets are their kept constituents' sums, "corrected": pT x 1.1,
    mass x 1.05, eta + 0.01, phi + 0.02 (jets without kept constituents: pT = mass = 0)."""
    counts = np.asarray(counts, dtype=np.int64)
    n_jets = len(counts)
    flat = {"pt": pt, "eta": eta, "phi": phi, "energy": energy, "charge": charge, "pid": pid}
    if mask is not None:
        flat["mask"] = mask
    parts = ak.unflatten(ak.zip(flat, depth_limit=1), counts)
    keep = np.ones(len(pt), dtype=bool) if mask is None else np.asarray(mask)
    ptj, etaj, phij, mj, _, _ = reference_jets(counts, pt, eta, phi, energy, keep)
    f32 = np.float32
    return JetBatch(pt=(ptj * CORR_PT).astype(f32), eta=(etaj + SHIFT_ETA).astype(f32),
                    phi=wrapped(phij + SHIFT_PHI).astype(f32), mass=(mj * CORR_M).astype(f32),
                    label=np.zeros(n_jets, np.int32), weight=np.ones(n_jets, np.float32),
                    event=np.asarray(event, np.int64), jet_index=np.arange(n_jets, dtype=np.int32),
                    parts=parts)


def flat_copy(jets: JetBatch) -> dict[str, np.ndarray]:
    """Bytes of every buffer of a batch, to check it was not modified."""
    out = {f"jet_{k}": np.array(v, copy=True) for k, v in jets.jet_arrays().items()}
    for f in jets.parts.fields:
        out[f] = np.array(ak.to_numpy(ak.flatten(jets.parts[f], axis=1)), copy=True)
    return out


def assert_same_bytes(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


def reference_jets(counts, pt, eta, phi, energy, mask):
    """Independent float64 E-scheme jet sums: (pt, eta, phi, mass, E, sum |p|)."""
    counts = np.asarray(counts, dtype=np.int64)
    n_jets = len(counts)
    jet = np.repeat(np.arange(n_jets), counts)
    w = mask.astype(np.float64)
    pt, eta, phi, energy = (np.asarray(x, dtype=np.float64) for x in (pt, eta, phi, energy))
    px = np.bincount(jet, w * pt * np.cos(phi), minlength=n_jets)
    py = np.bincount(jet, w * pt * np.sin(phi), minlength=n_jets)
    pz = np.bincount(jet, w * pt * np.sinh(eta), minlength=n_jets)
    e = np.bincount(jet, w * energy, minlength=n_jets)
    pabs = np.bincount(jet, w * pt * np.cosh(eta), minlength=n_jets)
    ptj = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        etaj = np.where(ptj > 0, np.arcsinh(pz / ptj), 0.0)
    phij = np.arctan2(py, px)
    m2 = e**2 - px**2 - py**2 - pz**2
    return ptj, etaj, phij, np.sqrt(np.maximum(m2, 0)), e, pabs


def wrapped(x):
    return (np.asarray(x, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def check_perturbation(jets: JetBatch, delta: np.ndarray, env: Envelope, preserve) -> None:
    """Every property of ``perturb`` on one batch."""
    before = flat_copy(jets)
    delta_before = delta.copy()
    res = perturb(jets, delta, env, preserve)
    assert_same_bytes(before, flat_copy(jets))
    assert delta.tobytes() == delta_before.tobytes()

    counts = jets.n_parts
    out = res.jets
    assert np.array_equal(out.n_parts, counts)
    assert out.parts.fields[: len(jets.parts.fields)] == jets.parts.fields
    assert "mask" in out.parts.fields
    pt0, eta0, phi0, e0 = (before[f].astype(np.float64) for f in ("pt", "eta", "phi", "energy"))
    mask0 = before.get("mask", np.ones(len(pt0), dtype=bool))
    pt1, eta1, phi1, e1 = (out.flat(f) for f in ("pt", "eta", "phi", "energy"))
    mask1 = out.flat("mask")
    for x in (pt1, eta1, phi1, e1):
        assert x.dtype == np.float32
    # envelope, per particle class, to float32 rounding
    table = env.table()[particle_classes(before["pid"], before["charge"])]
    d = res.delta_applied
    assert d.shape == (len(pt0), 3) and d.dtype == np.float32
    assert np.all(np.abs(d.astype(np.float64)) <= table * (1 + 1e-6))
    assert np.all(np.abs(pt1 / pt0 - 1) <= table[:, 0] + 2e-7)
    assert np.all(np.abs(eta1 - eta0) <= table[:, 1] + 1e-6 * np.maximum(1, np.abs(eta0)))
    assert np.all(np.abs(wrapped(phi1 - phi0)) <= table[:, 2] + 1e-6)
    # outputs follow the applied delta
    assert np.allclose(pt1, pt0 * (1 + d[:, 0].astype(np.float64)), rtol=2e-7, atol=0)
    assert np.all(np.abs(wrapped(phi1 - phi0 - d[:, 2])) <= 1e-6)
    # phi wrapped to (-pi, pi] in float32
    assert np.all((phi1 > -PI32) & (phi1 <= PI32))
    assert np.all((out.phi > -PI32) & (out.phi <= PI32))
    # constituent mass kept (m^2 clipped at 0)
    m2_in = np.maximum(e0**2 - (pt0 * np.cosh(eta0)) ** 2, 0)
    p1 = pt1.astype(np.float64) * np.cosh(eta1.astype(np.float64))
    e1_64 = e1.astype(np.float64)
    assert np.all(np.abs(e1_64**2 - p1**2 - m2_in) <= 3e-7 * e1_64**2)
    # masking below min pT, never removal
    assert np.array_equal(mask1, mask0 & (pt1 >= env.min_pt))
    # the jets move as their constituent sums move (independent float64 references of the
    # sums before, at the kernels' float32 energies and min_pt, and after)
    e0_ref = np.sqrt(m2_in + (pt0 * np.cosh(eta0)) ** 2)
    kept0 = mask0 & (pt0 >= env.min_pt)
    ptn, etan, phin, mn, en, pabsn = reference_jets(counts, pt0, eta0, phi0,
                                                    e0_ref.astype(np.float32), kept0)
    ptj, etaj, phij, mj, ej, pabs = reference_jets(counts, pt1, eta1, phi1, e1, mask1)
    jet_of = np.repeat(np.arange(len(counts)), counts)
    none0 = np.bincount(jet_of, kept0, minlength=len(counts)) == 0
    lost = ~none0 & (np.bincount(jet_of, mask1, minlength=len(counts)) == 0)
    j_in = {k: before[f"jet_{k}"] for k in ("pt", "eta", "phi", "mass")}
    for k in j_in:  # no kept input constituent: the jet is left bit for bit
        assert getattr(out, k)[none0].tobytes() == j_in[k][none0].tobytes(), k
    assert np.all(out.pt[lost] == 0) and np.all(out.mass[lost] == 0)
    assert np.array_equal(out.eta[lost], j_in["eta"][lost])
    assert np.array_equal(out.phi[lost], j_in["phi"][lost])
    ok = ~none0 & ~lost & (ptn > 1e-6 * pabsn) & (ptj > 1e-6 * pabs)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_pt = ptj / ptn
        tol = 4e-7 + 1e-12 * (pabs / ptj + pabsn / ptn)
        assert np.all((np.abs(out.pt - j_in["pt"] * r_pt) <= tol * j_in["pt"] * r_pt)[ok])
        well = ok & (mn**2 > 1e-6 * en**2) & (mj**2 > 1e-6 * ej**2)
        r_m = mj / mn
        assert np.all((np.abs(out.mass - j_in["mass"] * r_m)
                       <= 2e-6 * j_in["mass"] * r_m)[well])
    d_eta = np.abs(out.eta - j_in["eta"] - (etaj - etan))
    assert np.all(d_eta[ok] <= 2e-6 * np.maximum(1, np.abs(etaj[ok]) + np.abs(etan[ok])))
    assert np.all(np.abs(wrapped(out.phi - j_in["phi"] - (phij - phin)))[ok] <= 2e-6)
    # preserved observables within tolerance, or the jet flagged; so are the analysis' jets
    pt_ref, _, _, m_ref, e_ref, _ = reference_jets(counts, pt0, eta0, phi0, e0_ref, mask0)
    keep = ~res.flagged
    if "pt" in preserve:
        assert np.all((np.abs(ptj - pt_ref) <= (env.pt_tol + 1e-5) * pt_ref)[keep])
        if env.min_pt == 0:
            assert np.all((np.abs(out.pt - j_in["pt"]) <= (env.pt_tol + 2e-5) * j_in["pt"])
                          [keep & ok])
    if "mass" in preserve:  # float rounding of m = sqrt(E^2 - p^2) is ~1e-6 E at m ~ 0
        slack = 1e-5 * m_ref + 1e-6 * e_ref
        bad = np.abs(mj - m_ref) > env.mass_tol * m_ref + env.mass_atol + slack
        assert not np.any(bad & keep)
    if not preserve:
        assert not res.flagged.any()
    assert np.array_equal(res.flagged, res.flags != 0)


@st.composite
def jagged_cases(draw):
    n_jets = draw(st.integers(0, 6))
    counts = draw(st.lists(st.integers(0, 5), min_size=n_jets, max_size=n_jets))
    n = int(sum(counts))

    def arr(elements):
        return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=np.float32)

    near_pi = st.sampled_from([float(PI32), float(np.nextafter(-PI32, np.float32(0))), 3.14,
                               -3.14, 0.0])
    pt = arr(st.floats(0.5, 2000, width=32))
    eta = arr(st.floats(-7, 7, width=32))
    below_pi = float(np.float32(3.1415925))
    phi = arr(st.one_of(near_pi, st.floats(-below_pi, below_pi, width=32)))
    mass = arr(st.floats(0, 5, width=32))
    e_factor = arr(st.sampled_from([1.0, 1.0, 1.0, 0.9999]))  # sometimes E < p (m^2 < 0)
    p = pt.astype(np.float64) * np.cosh(eta.astype(np.float64))
    energy = (np.sqrt(mass.astype(np.float64) ** 2 + p**2) * e_factor).astype(np.float32)
    pid = np.array(draw(st.lists(st.sampled_from([211, -211, 130, 22, 11, -13]), min_size=n,
                                 max_size=n)), dtype=np.int32)
    charge = np.where(np.isin(np.abs(pid), [211, 11, 13]), np.sign(pid), 0).astype(np.int8)
    mask = None
    if draw(st.booleans()):
        mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    event = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n_jets, max_size=n_jets))
    jets = make_batch(counts, pt, eta, phi, energy, pid, charge, event, mask)
    small = st.floats(-float(np.float32(0.05)), float(np.float32(0.05)), width=32)
    huge = st.one_of(F32, st.sampled_from([1e30, -1e30, 1e6, -1e6]))
    delta = np.array(
        draw(st.lists(st.tuples(*(st.one_of(small, huge) for _ in range(3))), min_size=n,
                      max_size=n)),
        dtype=np.float32,
    ).reshape(n, 3)
    env = draw(st.sampled_from([
        Envelope(),
        Envelope(pt=0.05, eta=0.1, phi=0.3, min_pt=1.0),
        Envelope(classes={"photon": {"pt": 0.1}, "lepton": {"pt": 0.0, "eta": 0.0, "phi": 0.0},
                          "neutral_hadron": {"phi": 0.05}}),
        Envelope.uniform(0.005, mass_tol=0.0, mass_atol=0.0, pt_tol=0.0),
    ]))
    preserve = draw(st.sampled_from([("pt", "mass"), ("pt",), ("mass",), ()]))
    return jets, delta, env, preserve


# ---------------------------------------------------------------------- property tests
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jagged_cases())
def test_perturb_properties_on_random_jagged_arrays(case):
    check_perturbation(*case)


def test_edge_batches():
    """No jets at all; only empty jets; single-constituent jets."""
    env = Envelope()
    e = np.zeros(0, np.float32)
    empty = make_batch([], e, e, e, e, np.zeros(0, np.int32), np.zeros(0, np.int8), [])
    res = perturb(empty, np.zeros((0, 3), np.float32), env)
    assert len(res.jets) == 0 and res.delta_applied.shape == (0, 3)
    none = make_batch([0, 0], e, e, e, e, np.zeros(0, np.int32), np.zeros(0, np.int8), [1, 2])
    res = perturb(none, None, env)
    assert list(res.jets.pt) == [0, 0] and not res.flagged.any()
    one = make_batch([1], np.array([100.0], np.float32), np.array([0.5], np.float32),
                     np.array([PI32]), np.array([120.0], np.float32), np.array([22], np.int32),
                     np.array([0], np.int8), [7])
    check_perturbation(one, np.array([[0.5, 1.0, 1.0]], np.float32), env, ("pt", "mass"))
    res = perturb(one, np.array([[0.5, 1.0, 1.0]], np.float32), env)
    # pT brought inside its tolerance by the coherent scale; phi crossed +pi and wrapped, the
    # jet's (corrected) values moved with it
    assert abs(res.jets.pt[0] / one.pt[0] - 1) <= env.pt_tol
    exact = perturb(one, np.array([[0.5, 1.0, 1.0]], np.float32), Envelope(pt_tol=0.0))
    assert exact.jets.pt[0] == pytest.approx(100.0 * CORR_PT, rel=1e-6) and not exact.flagged[0]
    assert -PI32 < res.jets.flat("phi")[0] < -3.1
    assert wrapped(res.jets.phi[0] - one.phi[0]) == pytest.approx(0.02, abs=1e-6)
    assert res.jets.eta[0] == pytest.approx(one.eta[0] + 0.02, abs=1e-6)


# ---------------------------------------------------------------------- the real sample
def test_sample_random_and_corner_deltas(part):
    """Restoration works on real jets: few flags for random and for box-corner deltas."""
    p = Perturber(part, Envelope())
    rng = np.random.default_rng(1)
    for delta in (
        rng.uniform(-0.03, 0.03, (p.n_constituents, 3)).astype(np.float32),
        np.sign(rng.normal(size=(p.n_constituents, 3))).astype(np.float32),
    ):
        check_perturbation(part, delta, Envelope(), ("pt", "mass"))
        res = p.apply(delta)
        assert res.flagged.mean() < 0.005
        # feeding the applied delta back is (nearly) a fixed point
        again, flagged = p.project(res.delta_applied)
        same = np.all(again == res.delta_applied, axis=1)
        assert same.mean() > 0.99


def test_zero_delta_is_identity_on_kinematics(part):
    res = perturb(part, None, Envelope())
    for f in ("pt", "eta", "phi", "charge", "pid"):
        assert np.array_equal(res.jets.flat(f), part.flat(f)), f
    e0, e1 = part.flat("energy"), res.jets.flat("energy")
    p = part.flat("pt").astype(float) * np.cosh(part.flat("eta").astype(float))
    # energy recomputed at the input mass: unchanged where m^2 >= 0, E = p where m^2 < 0
    massive = e0.astype(float) >= p
    np.testing.assert_allclose(e1[massive], e0[massive], rtol=2e-7)
    np.testing.assert_allclose(e1[~massive], p[~massive], rtol=2e-7)
    assert not res.flagged.any() and res.jets.flat("mask").all()
    for k in ("pt", "eta", "phi", "mass"):  # the jets themselves: bit for bit
        assert getattr(res.jets, k).tobytes() == getattr(part, k).tobytes(), k


def test_zero_delta_keeps_the_analysis_jets_bit_for_bit(part):
    """Jets that are not their constituent sums (corrected pT and mass, a soft-drop mass)
    come back bit for bit from a zero delta, whatever the envelope and preserve."""
    rng = np.random.default_rng(8)
    n = len(part)
    jets = part.replace(pt=(part.pt * rng.uniform(0.9, 1.2, n)).astype(np.float32),
                        mass=(part.mass * rng.uniform(0.9, 1.2, n)).astype(np.float32),
                        msoftdrop=(part.mass * rng.uniform(0.5, 1.0, n)).astype(np.float32))
    for env, preserve in ((Envelope(), ("pt", "mass")), (Envelope.uniform(0.1), ()),
                          (Envelope(pt=0.0, eta=0.0, phi=0.0), ("pt",))):
        out = Perturber(jets, env, preserve).apply(np.zeros((int(jets.n_parts.sum()), 3),
                                                            np.float32)).jets
        for k in ("pt", "eta", "phi", "mass", "msoftdrop"):
            assert getattr(out, k).tobytes() == getattr(jets, k).tobytes(), (k, env)
    # a real delta moves them by the ratio of the constituent sums, soft-drop mass included
    p = Perturber(jets, Envelope())
    res = p.apply({"pt": np.full(p.n_constituents, 0.02, np.float32)}, drop=None)
    sums = kernels.jet_observables(p.offsets, res.jets.flat("pt"), res.jets.flat("eta"),
                                   res.jets.flat("phi"), res.jets.flat("energy"), p.mask)
    r_m = sums[3].astype(np.float64) / p.nominal_sums[3]
    np.testing.assert_allclose(res.jets.msoftdrop, jets.msoftdrop * r_m, rtol=1e-5)
    np.testing.assert_allclose(res.jets.mass / jets.mass, res.jets.msoftdrop / jets.msoftdrop,
                               rtol=1e-6)


def test_rescale_jets_rules():
    """x / x == 1 leaves values (signed zeros too); no nominal sum: unchanged; every
    constituent lost: pT = mass = 0 at the input direction; massless sum: mass added; phi
    wrapped to (-pi, pi]."""
    jet = np.array([[500.0, 400.0, 300.0, 200.0, 100.0],
                    [-0.0, 1.0, 2.0, -1.0, 0.5],
                    [3.1, -3.1, 1.0, PI32, 0.0],
                    [80.0, 0.0, 30.0, 20.0, 10.0]], np.float32)
    nominal = np.array([[450.0, 0.0, 310.0, 190.0, 90.0],
                        [0.2, 0.0, 2.1, -1.1, 0.4],
                        [3.0, 0.0, 1.1, 3.1, 0.1],
                        [75.0, 0.0, 31.0, 0.0, 9.0]], np.float32)
    varied = nominal.copy()
    varied[:, 1] = [0.0, 0.0, 0.0, 0.0]  # jet 1: nothing to vary (no nominal sum)
    varied[:, 2] = [0.0, 0.0, 0.0, 0.0]  # jet 2: every constituent lost
    varied[:, 3] = [209.0, -1.0, 3.3, 2.0]  # jet 3: massless nominal sum
    varied[2, 0] = -3.1  # jet 0: the sum's phi crosses pi
    msd = np.array([60.0, 1.0, 20.0, 15.0, 7.0], np.float32)
    same, same_msd = kernels.rescale_jets(jet, nominal, nominal, msd)
    assert same.tobytes() == jet.tobytes() and same_msd.tobytes() == msd.tobytes()
    out, out_msd = kernels.rescale_jets(jet, nominal, varied, msd)
    assert out[:, 1].tobytes() == jet[:, 1].tobytes() and out_msd[1] == msd[1]
    assert out[0, 2] == 0 and out[3, 2] == 0 and out_msd[2] == 0
    assert out[1, 2] == jet[1, 2] and out[2, 2] == jet[2, 2]
    assert out[0, 3] == pytest.approx(200.0 * 209.0 / 190.0, rel=1e-6)
    assert out[3, 3] == pytest.approx(20.0 + 2.0) and out_msd[3] == pytest.approx(15.0 + 2.0)
    assert out[1, 3] == pytest.approx(-1.0 + 0.1, abs=1e-6)
    assert out[2, 3] == pytest.approx(PI32 + 0.2 - 2 * np.pi, abs=1e-6)
    d_phi = wrapped(np.float64(-3.1) - 3.0)
    assert out[2, 0] == pytest.approx(wrapped(3.1 + d_phi), abs=1e-6)
    assert np.all((out[2] > -PI32) & (out[2] <= PI32))
    assert kernels.rescale_jets(jet, nominal, varied)[1] is None


def test_min_pt_masks_without_shifting(part):
    env = Envelope(min_pt=1.0)
    res = perturb(part, {"pt": np.full(int(part.n_parts.sum()), -0.02, np.float32)}, env,
                  preserve=())
    mask = res.jets.flat("mask")
    pt_in = part.flat("pt")
    assert np.array_equal(res.jets.n_parts, part.n_parts)
    assert np.array_equal(mask, res.jets.flat("pt") >= 1.0)
    assert (~mask).sum() > 0 and np.all(mask[pt_in >= 1.03])
    x, m = res.jets.to_padded(200)
    assert m.sum() == mask.sum()


def test_chunk_invariance_of_perturb(part):
    rng = np.random.default_rng(2)
    n = int(part.n_parts.sum())
    delta = rng.uniform(-0.05, 0.05, (n, 3)).astype(np.float32)
    whole = perturb(part, delta, Envelope())
    off = part.offsets
    for size in (1, 333, 2048):
        chunks = [perturb(part[s:s + size], delta[off[s]:off[min(s + size, len(part))]],
                          Envelope()) for s in range(0, len(part), size)] if size > 1 else []
        if size == 1:  # every jet alone: cheap enough on a prefix
            k = 200
            chunks = [perturb(part[s:s + 1], delta[off[s]:off[s + 1]], Envelope())
                      for s in range(k)]
            ref = perturb(part[:k], delta[: off[k]], Envelope())
        else:
            ref = whole
        cat = JetBatch.concatenate([c.jets for c in chunks])
        for f in ("pt", "eta", "phi", "energy", "mask"):
            assert cat.flat(f).tobytes() == ref.jets.flat(f).tobytes(), (size, f)
        for k_ in ("pt", "eta", "phi", "mass"):
            assert getattr(cat, k_).tobytes() == getattr(ref.jets, k_).tobytes()
        d = np.concatenate([c.delta_applied for c in chunks])
        assert d.tobytes() == ref.delta_applied.tobytes()


def test_delta_forms_agree(part):
    rng = np.random.default_rng(3)
    n = int(part.n_parts.sum())
    delta = rng.uniform(-0.05, 0.05, (n, 3)).astype(np.float32)
    a = perturb(part, delta, Envelope())
    b = perturb(part, {"pt": delta[:, 0], "eta": delta[:, 1], "phi": delta[:, 2]}, Envelope())
    jag = ak.unflatten(ak.zip({"pt": delta[:, 0], "eta": delta[:, 1], "phi": delta[:, 2]}),
                       part.n_parts)
    c = perturb(part, jag, Envelope())
    d64 = perturb(part, delta.astype(np.float64), Envelope())
    for r in (b, c, d64):
        assert r.delta_applied.tobytes() == a.delta_applied.tobytes()
    with pytest.raises(InputError, match="shape"):
        perturb(part, delta[:-1], Envelope())
    with pytest.raises(InputError, match="coordinate"):
        perturb(part, {"mass": delta[:, 0]}, Envelope())
    with pytest.raises(ConfigError, match="preserve"):
        perturb(part, delta, Envelope(), preserve=("eta",))


def test_projection_matches_box_clip(part):
    env = Envelope(classes={"photon": {"pt": 0.05}, "lepton": {"eta": 0.0}})
    p = Perturber(part, env)
    rng = np.random.default_rng(4)
    delta = rng.normal(0, 0.05, (p.n_constituents, 3)).astype(np.float32)
    before = delta.copy()
    table = env.table()[p.classes]
    expected = np.clip(delta, -table, table).astype(np.float32)
    assert np.array_equal(p.clip(delta), expected)
    assert np.array_equal(project(delta, p.classes, env), expected)
    assert np.array_equal(delta, before)
    out = np.empty_like(delta)
    assert project(delta, p.classes, env, out=out) is out
    project(delta, p.classes, env, out=delta)  # in place on the caller's own buffer
    assert np.array_equal(delta, expected)
    delta[5, 1] = np.nan
    with pytest.raises(InputError, match="index 5"):
        project(delta, p.classes, env)


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("field", ["pt", "eta", "phi", "energy"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_names_event_and_jet(small, field, value):
    jets = small[:20]
    flat = jets.flat(field)
    k = int(jets.offsets[7]) + 2
    flat[k] = value
    bad = jets.with_parts(**{field: flat})
    msg = f"'{field}'.*event {int(jets.event[7])}, jet_index {int(jets.jet_index[7])}"
    with pytest.raises(InputError, match=msg):
        perturb(bad, None, Envelope())


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_delta_names_event_and_jet(small, value):
    jets = small[:20]
    p = Perturber(jets, Envelope())
    delta = np.zeros((p.n_constituents, 3), np.float32)
    delta[int(jets.offsets[11]) + 1, 2] = value
    msg = f"event {int(jets.event[11])}, jet_index {int(jets.jet_index[11])} .constituent 1"
    with pytest.raises(InputError, match=msg):
        p.apply(delta)
    with pytest.raises(InputError, match=msg):
        p.clip(delta)


def test_per_class_bounds_need_pid_or_charge(small):
    jets = small[:5]
    parts = ak.zip({f: jets.parts[f] for f in ("pt", "eta", "phi", "energy")})
    bare = jets.replace(parts=parts)
    perturb(bare, None, Envelope())  # uniform envelope: fine
    with pytest.raises(InputError, match="'pid'"):
        perturb(bare, None, Envelope(classes={"photon": {"pt": 0.1}}))


# ---------------------------------------------------------------------- random numbers
def test_counter_rng_is_keyed_not_positional():
    offsets = np.array([0, 3, 3, 7], dtype=np.int64)
    event = np.array([10, 11, 10], dtype=np.int64)
    jet = np.array([0, 0, 1], dtype=np.int64)
    u = kernels.random_uniform(5, 1, event, jet, offsets)
    # the same jets, reordered and alone, draw the same numbers
    u2 = kernels.random_uniform(5, 1, event[[2]], jet[[2]], np.array([0, 4]))
    assert np.array_equal(u2, u[3:7])
    assert not np.array_equal(kernels.random_uniform(6, 1, event, jet, offsets), u)
    assert not np.array_equal(kernels.random_uniform(5, 2, event, jet, offsets), u)
    assert np.all((u > 0) & (u < 1))
    # huge and negative keys are fine
    kernels.random_normal(2**64 - 1, 3, np.array([-(2**62)]), np.array([2**31]),
                          np.array([0, 2]))


def test_counter_rng_distribution():
    n_jets, per = 20_000, 50
    offsets = np.arange(n_jets + 1, dtype=np.int64) * per
    event = np.arange(n_jets, dtype=np.int64) * 7
    jet = np.zeros(n_jets, dtype=np.int64)
    u = kernels.random_uniform(1, 0, event, jet, offsets)
    z = kernels.random_normal(1, 0, event, jet, offsets)
    assert abs(u.mean() - 0.5) < 2e-3 and abs(u.var() - 1 / 12) < 1e-3
    hist = np.bincount((u * 100).astype(int), minlength=100)
    chi2 = np.sum((hist - len(u) / 100) ** 2 / (len(u) / 100))
    assert chi2 < 99 + 5 * np.sqrt(2 * 99)
    assert abs(z.mean()) < 3e-3 and abs(z.std() - 1) < 3e-3
    assert abs(np.mean(z**3)) < 0.01 and abs(np.mean(z**4) - 3) < 0.03
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 3e-3


def test_threads_give_identical_results(part):
    p = Perturber(part, Envelope())
    delta = np.sign(np.random.default_rng(6).normal(size=(p.n_constituents, 3))).astype(np.float32)
    args = (p.offsets, p.pt, p.eta, p.phi, p.energy, p.mask, p.classes, delta, p.bounds)
    one = kernels.apply_delta(*args, preserve_pt=True, preserve_mass=True, threads=1)
    two = kernels.apply_delta(*args, preserve_pt=True, preserve_mass=True, threads=2)
    for name in one._fields:
        assert getattr(one, name).tobytes() == getattr(two, name).tobytes(), name


def test_math_helpers_match_numpy():
    from hepsafe.perturbation._block import _exp_small
    from hepsafe.perturbation._scalar import _sincos

    x = np.linspace(-2 * np.pi - 0.1, 2 * np.pi + 0.1, 20001)
    for v in x[::97]:
        s, c = _sincos(v)
        assert abs(s - np.sin(v)) < 4e-16 and abs(c - np.cos(v)) < 4e-16
    for v in np.linspace(-5.5, 5.5, 1001):
        assert abs(_exp_small(v) / np.exp(v) - 1) < 4e-15


def test_jet_observables_kernel(part):
    p = Perturber(part, Envelope())
    jet = kernels.jet_observables(p.offsets, p.pt, p.eta, p.phi, p.energy, p.mask)
    ptj, etaj, phij, mj, _, _ = reference_jets(part.n_parts, p.pt, p.eta, p.phi, p.energy,
                                               p.mask)
    np.testing.assert_allclose(jet[0], ptj, rtol=1e-6)
    np.testing.assert_allclose(jet[1], etaj, atol=1e-5)
    assert np.all(np.abs(wrapped(jet[2] - phij)) < 1e-5)
    np.testing.assert_allclose(jet[3], mj, rtol=1e-4, atol=1e-3)


def test_classes_follow_pid(part):
    p = Perturber(part, Envelope())
    pid = np.abs(part.flat("pid"))
    assert np.all(p.classes[pid == 22] == PARTICLE_CLASSES.index("photon"))
    assert np.all(p.classes[pid == 130] == PARTICLE_CLASSES.index("neutral_hadron"))
