"""Features: numpy and torch paths agree, D2 matches its definition, padding is inert."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import InputError
from hepsafe.tagger import features as F

CONST = list(F.CONSTITUENT_FEATURES)
JET = list(F.JET_FEATURES)


@pytest.fixture(scope="module")
def padded(small: JetBatch) -> dict[str, np.ndarray]:
    return F.padded_constituents(small, 128, extra=("pid",))


def _torch(p: dict[str, np.ndarray], grad: bool = False) -> dict[str, torch.Tensor]:
    out = {k: torch.tensor(v) for k, v in p.items()}
    if grad:
        for k in ("pt", "eta", "phi", "energy"):
            out[k].requires_grad_(True)
    return out


def _cf(xp, p, names=CONST):
    if p.get("pid") is None:  # jets without particle types: the pid flags cannot be computed
        names = [n for n in names if n not in F.FEATURE_FIELDS]
    return F.constituent_features(xp, names, p["pt"], p["eta"], p["phi"], p["energy"],
                                  p["charge"], p["mask"], fields={"pid": p.get("pid")})


def _jf(xp, p, names=JET):
    return F.jet_features(xp, names, p["pt"], p["eta"], p["phi"], p["energy"], p["mask"])


def _d2_brute(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> float:
    """D2 (beta=1) of one jet straight from the definition: sums over i<j and i<j<k."""
    z = pt.astype(np.float64) / pt.sum(dtype=np.float64)
    de = eta[:, None].astype(np.float64) - eta[None, :]
    dp = phi[:, None].astype(np.float64) - phi[None, :]
    dp = (dp + math.pi) % (2 * math.pi) - math.pi
    r = np.sqrt(de**2 + dp**2)
    i, j = np.triu_indices(len(z), 1)
    e2 = np.sum(z[i] * z[j] * r[i, j])
    a, b, c = np.array([t for t in np.ndindex(len(z), len(z), len(z))
                        if t[0] < t[1] < t[2]]).T
    e3 = np.sum(z[a] * z[b] * z[c] * r[a, b] * r[a, c] * r[b, c])
    return e3 / e2**3


def test_numpy_and_torch_agree(padded):
    c_np, j_np = _cf(np, padded), _jf(np, padded)
    tp = _torch(padded)
    c_t, j_t = _cf(torch, tp).numpy(), _jf(None, tp).numpy()
    assert c_np.shape == (len(padded["pt"]), 128, len(CONST)) and c_np.dtype == np.float32
    assert j_np.shape == (len(padded["pt"]), len(JET)) and j_np.dtype == np.float32
    np.testing.assert_allclose(c_t, c_np, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(j_t, j_np, rtol=1e-5, atol=0)
    d2 = JET.index("d2")
    assert np.all(j_np[:, d2] > 0)
    assert np.max(np.abs(j_t[:, d2] / j_np[:, d2] - 1)) < 1e-5


def test_d2_matches_definition(small: JetBatch, padded):
    j = _jf(np, padded, ["d2", "e2"])
    tj = _jf(torch, _torch(padded), ["d2"]).numpy()
    for k in [0, 1, 7, 200, 333]:
        m = padded["mask"][k]
        ref = _d2_brute(padded["pt"][k][m], padded["eta"][k][m], padded["phi"][k][m])
        assert j[k, 0] == pytest.approx(ref, rel=1e-5)
        assert tj[k, 0] == pytest.approx(ref, rel=1e-5)
    # W jets (two prongs) have lower D2 than QCD jets, on average
    assert np.median(j[small.label == 1, 0]) < np.median(j[small.label == 0, 0])


def test_jet_four_vector_from_constituents(small: JetBatch, padded):
    j = _jf(np, padded, ["pt", "eta", "phi", "mass", "n_constituents"])
    np.testing.assert_allclose(j[:, 0], small.pt, rtol=2e-4)
    np.testing.assert_allclose(j[:, 1], small.eta, atol=2e-4)
    dphi = np.angle(np.exp(1j * (j[:, 2] - small.phi)))
    assert np.max(np.abs(dphi)) < 2e-4
    # constituents are stored with 14 mantissa bits (pT and E rounded apart), so the mass of
    # the sum agrees with the stored jet mass closely but not exactly
    dm = np.abs(j[:, 3] - small.mass)
    assert np.median(dm) < 0.05 and np.max(dm / small.pt) < 5e-3
    np.testing.assert_array_equal(j[:, 4], small.n_parts)


def test_padding_is_inert(padded):
    """Garbage (NaN, inf, negative) in padding slots changes nothing, and features are 0 there."""
    dirty = {k: v.copy() for k, v in padded.items()}
    pad = ~padded["mask"]
    for k, bad in (("pt", np.nan), ("eta", np.inf), ("phi", -7.0), ("energy", -1.0),
                   ("charge", np.nan)):
        dirty[k][pad] = bad
    c_clean, c_dirty = _cf(np, padded), _cf(np, dirty)
    np.testing.assert_array_equal(c_dirty, c_clean)
    np.testing.assert_array_equal(_jf(np, dirty), _jf(np, padded))
    assert np.all(c_clean[pad] == 0)
    assert np.all(np.isfinite(c_clean))
    # the caller's arrays are not modified
    assert np.isnan(dirty["pt"][pad]).all()


def test_dphi_wrapped_and_rotation_invariant(padded):
    rot = {k: v.copy() for k, v in padded.items()}
    rot["phi"] = np.angle(np.exp(1j * (padded["phi"].astype(np.float64) + 3.0)))
    rot["phi"] = np.where(padded["mask"], rot["phi"], 0).astype(np.float32)
    names = ["deta", "dphi", "dr", "log_ptrel"]
    a, b = _cf(np, padded, names), _cf(np, rot, names)
    np.testing.assert_allclose(b, a, atol=1e-5)
    dphi = a[..., 1]
    assert np.all(dphi > -math.pi) and np.all(dphi <= math.pi)
    ja, jb = _jf(np, padded, ["mass", "d2"]), _jf(np, rot, ["mass", "d2"])
    np.testing.assert_allclose(jb, ja, rtol=1e-4)


def _edge_jets() -> dict[str, np.ndarray]:
    """Four jets: normal, single constituent, empty, two constituents at the same point."""
    n, m = 4, 5
    p = {k: np.zeros((n, m), dtype=np.float32) for k in F.PADDED_FIELDS}
    p["mask"] = np.zeros((n, m), dtype=bool)
    p["pt"][0, :3] = [300, 200, 50]
    p["eta"][0, :3] = [0.1, -0.2, 0.4]
    p["phi"][0, :3] = [3.1, -3.1, 2.9]  # straddles the phi = pi boundary
    p["charge"][0, :3] = [1, -1, 0]
    p["pt"][1, 0], p["eta"][1, 0], p["phi"][1, 0] = 500, 1.0, 0.5
    p["pt"][3, :2], p["eta"][3, :2], p["phi"][3, :2] = [100, 80], [0.3, 0.3], [1.0, 1.0]
    p["mask"][0, :3] = p["mask"][1, 0] = p["mask"][3, :2] = True
    p["energy"] = np.where(p["mask"], p["pt"] * np.cosh(p["eta"]), 0).astype(np.float32)
    return p


def test_edge_cases_and_gradients():
    p = _edge_jets()
    c, j = _cf(np, p), _jf(np, p)
    assert np.all(np.isfinite(c)) and np.all(np.isfinite(j))
    assert np.all(c[2] == 0) and np.all(j[2] == 0)  # empty jet: all zero
    assert j[1, JET.index("d2")] == 0 and j[3, JET.index("d2")] == 0  # e2 = 0
    dphi = c[0, :3, CONST.index("dphi")]
    assert np.all(np.abs(dphi) < 0.4)  # wrapped across phi = pi
    tp = _torch(p, grad=True)
    loss = _cf(torch, tp).sum() + _jf(torch, tp).sum()
    loss.backward()
    for k in ("pt", "eta", "phi", "energy"):
        g = tp[k].grad
        assert torch.isfinite(g).all(), k
        assert torch.all(g[~tp["mask"]] == 0), k  # padding receives no gradient
    assert tp["phi"].grad[0, :3].abs().sum() > 0


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_random_jets_agree_and_have_finite_gradients(n_real, seed):
    rng = np.random.default_rng(seed)
    m = 12
    p = {
        "pt": rng.exponential(30, (2, m)).astype(np.float32) + 1,
        "eta": rng.normal(0, 0.3, (2, m)).astype(np.float32),
        "phi": rng.uniform(-math.pi, math.pi, (2, m)).astype(np.float32),
        "charge": rng.integers(-1, 2, (2, m)).astype(np.float32),
        "mask": np.arange(m)[None, :] < np.array([[n_real], [max(n_real - 1, 0)]]),
    }
    p["energy"] = (p["pt"] * np.cosh(p["eta"]) * 1.01).astype(np.float32)
    j_np = _jf(np, p)
    tp = _torch(p, grad=True)
    j_t = _jf(torch, tp)
    np.testing.assert_allclose(j_t.detach().numpy(), j_np, rtol=2e-5, atol=1e-5)
    (j_t.sum() + _cf(torch, tp).sum()).backward()
    assert all(torch.isfinite(tp[k].grad).all() for k in ("pt", "eta", "phi", "energy"))


def test_padded_constituents(small: JetBatch):
    p = F.padded_constituents(small, 16)
    assert set(p) == {"pt", "eta", "phi", "energy", "charge", "mask"}
    assert p["pt"].shape == (len(small), 16) and p["pt"].dtype == np.float32
    assert np.all(np.diff(p["pt"], axis=1) <= 0)  # decreasing pT, padding 0 at the end
    np.testing.assert_array_equal(p["mask"].sum(axis=1), np.minimum(small.n_parts, 16))
    # constituents masked out in the batch are dropped
    keep = small.flat("pt") < 5.0
    masked = small.with_parts(mask=keep)
    pm = F.padded_constituents(masked, 128)
    assert np.all(pm["pt"][pm["mask"]] < 5.0)


def test_bad_inputs_are_named(padded):
    with pytest.raises(InputError, match="'bogus'"):
        _cf(np, padded, ["log_pt", "bogus"])
    with pytest.raises(InputError, match="'eta'"):
        F.jet_features(np, ["pt"], padded["pt"], padded["eta"][:, :5], padded["phi"],
                       padded["energy"], padded["mask"])
    with pytest.raises(InputError, match="'charge'"):
        F.constituent_features(np, ["charge"], padded["pt"], padded["eta"], padded["phi"],
                               padded["energy"], None, padded["mask"])
    with pytest.raises(InputError, match="namespace"):
        _jf("jax", padded)


def test_namespace_detection():
    assert F.namespace(np.zeros(2)).name == "numpy"
    assert F.namespace(np.zeros(2), torch.zeros(2)).name == "torch"
    assert F.namespace(torch).name == "torch"


def test_nan_in_a_real_constituent_is_not_hidden(padded):
    bad = {k: v[:3].copy() for k, v in padded.items()}
    bad["pt"][1, 0] = np.nan
    j = _jf(np, bad, ["pt", "eta", "mass", "d2"])
    c = _cf(np, bad, ["log_ptrel", "deta"])
    assert np.all(np.isnan(j[1])) and np.all(np.isfinite(j[[0, 2]]))
    assert np.isnan(c[1][bad["mask"][1]]).all(axis=0).any()
    assert np.all(np.isfinite(c[[0, 2]]))
