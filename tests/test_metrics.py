"""Metrics: ROC/AUC against independent computations, working points, SIC, fooling rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hepsafe import metrics
from hepsafe.exceptions import ConfigError, InputError


def pairwise_auc(sig, bkg, ws=None, wb=None):
    """Independent O(n^2) AUC: weighted P(s > b) + P(s == b) / 2."""
    sig, bkg = np.asarray(sig, float), np.asarray(bkg, float)
    ws = np.ones(len(sig)) if ws is None else np.asarray(ws, float)
    wb = np.ones(len(bkg)) if wb is None else np.asarray(wb, float)
    w = ws[:, None] * wb[None, :]
    gt = (sig[:, None] > bkg[None, :]) * w
    eq = (sig[:, None] == bkg[None, :]) * w
    return (gt.sum() + 0.5 * eq.sum()) / w.sum()


# ------------------------------------------------------------------------ AUC
def test_auc_perfect_separation_and_inverted():
    sig, bkg = np.linspace(0.6, 1.0, 50), np.linspace(0.0, 0.4, 70)
    assert metrics.roc_auc(sig, bkg) == 1.0
    assert metrics.roc_auc(bkg, sig) == 0.0


def test_auc_identical_distributions_is_half():
    rng = np.random.default_rng(1)
    assert abs(metrics.roc_auc(rng.normal(size=20_000), rng.normal(size=20_000)) - 0.5) < 0.01
    same = rng.normal(size=500)
    assert metrics.roc_auc(same, same) == pytest.approx(0.5, abs=1e-12)  # all ties: exactly 1/2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_pairwise_with_ties_and_weights(seed):
    rng = np.random.default_rng(seed)
    # rounded scores give many ties within and across classes
    sig = np.round(rng.normal(0.5, 1.0, 300), 1)
    bkg = np.round(rng.normal(0.0, 1.0, 400), 1)
    ws, wb = rng.uniform(0, 2, 300), rng.uniform(0, 2, 400)
    assert metrics.roc_auc(sig, bkg) == pytest.approx(pairwise_auc(sig, bkg), abs=1e-12)
    assert metrics.roc_auc(sig, bkg, ws, wb) == pytest.approx(
        pairwise_auc(sig, bkg, ws, wb), abs=1e-12
    )


def test_weighted_auc_equals_duplicated_sample():
    rng = np.random.default_rng(3)
    sig, bkg = np.round(rng.normal(1, 1, 200), 2), np.round(rng.normal(0, 1, 300), 2)
    ws, wb = rng.integers(0, 4, 200), rng.integers(1, 4, 300)
    dup = metrics.roc_auc(np.repeat(sig, ws), np.repeat(bkg, wb))
    assert metrics.roc_auc(sig, bkg, ws, wb) == pytest.approx(dup, abs=1e-12)
    assert metrics.rejection_at_efficiency(sig, bkg, 0.4, ws, wb) == pytest.approx(
        metrics.rejection_at_efficiency(np.repeat(sig, ws), np.repeat(bkg, wb), 0.4)
    )


def test_roc_curve_shape_and_endpoints():
    roc = metrics.roc_curve([0.9, 0.8, 0.8], [0.8, 0.1])
    assert roc.thresholds[0] == np.inf
    np.testing.assert_allclose(roc.eps_s, [0, 1 / 3, 1, 1])
    np.testing.assert_allclose(roc.eps_b, [0, 0, 0.5, 1])
    assert np.all(np.diff(roc.eps_s) >= 0) and np.all(np.diff(roc.eps_b) >= 0)


# ------------------------------------------------------------------------ working points
def test_threshold_and_efficiency_known_cases():
    s = np.array([1.0, 2.0, 3.0, 4.0])
    assert metrics.threshold_at_efficiency(s, 0.5) == 3.0
    assert metrics.threshold_at_efficiency(s, 0.6) == 2.0
    assert metrics.threshold_at_efficiency(s, 1.0) == 1.0
    assert metrics.threshold_at_efficiency(s, 0.25) == 4.0
    # weights: jet 4 carries half the weight -> 50 % already at threshold 4
    assert metrics.threshold_at_efficiency(s, 0.5, [1, 1, 1, 3]) == 4.0
    assert metrics.efficiency(s, 2.5) == 0.5
    assert metrics.efficiency(s, 2.5, [0, 0, 1, 3]) == 1.0
    # ties: all equal scores -> one cut, efficiency 1
    assert metrics.efficiency([5, 5, 5], metrics.threshold_at_efficiency([5, 5, 5], 0.3)) == 1.0


def test_rejection_known_case():
    sig = np.arange(10, 20, dtype=float)  # 10 signal jets, 10..19
    bkg = np.arange(0, 20, dtype=float)  # 20 background jets, 0..19
    # 50 % signal -> cut at 15 -> background 15..19 = 5/20 -> rejection 4
    assert metrics.rejection_at_efficiency(sig, bkg, 0.5) == pytest.approx(4.0)
    wp = metrics.working_point(sig, bkg, 0.5)
    assert (wp.threshold, wp.eps_s, wp.eps_b, wp.rejection) == (15.0, 0.5, 0.25, 4.0)
    assert wp.sic == pytest.approx(0.5 / math.sqrt(0.25))
    assert metrics.sic_at_efficiency(sig, bkg, 0.5) == pytest.approx(1.0)
    # perfect separation -> infinite rejection
    assert metrics.rejection_at_efficiency([5, 6], [1, 2], 0.5) == math.inf


def test_eps_b_interpolates_inside_a_tie():
    # one tied block holding all signal and background: the ROC is the diagonal
    roc = metrics.roc_curve([1.0, 1.0], [1.0, 1.0])
    np.testing.assert_allclose(metrics.eps_b_at(roc, [0.25, 0.5, 1.0]), [0.25, 0.5, 1.0])


def test_sic_curve_and_max():
    sig = np.arange(10, 20, dtype=float)
    bkg = np.arange(0, 20, dtype=float)
    roc = metrics.roc_curve(sig, bkg)
    eps_s, sic = metrics.sic_curve(roc)
    assert np.all(np.isfinite(sic)) and len(eps_s) == len(sic)
    best, e_s, thr = metrics.max_sic(roc)
    # cut at t (10 <= t <= 19): eps_s = (20 - t)/10, eps_b = (20 - t)/20 -> sic = sqrt((20-t)/5)
    assert best == pytest.approx(math.sqrt(2.0)) and e_s == 1.0 and thr == 10.0
    assert best == pytest.approx(sic.max())
    assert math.isnan(metrics.max_sic(roc, min_eps_b=1.0)[0])


# ------------------------------------------------------------------------ fooling rate
def test_fooling_rate_definition():
    nom = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    per = np.array([0.6, 0.2, 0.4, 0.7, 0.9])  # jet 0 fail->pass, jet 2 pass->fail
    fr = metrics.fooling_rate(nom, per, 0.5)
    assert (fr.rate, fr.up, fr.down) == (0.4, 0.2, 0.2)
    assert fr.up_given_fail == 0.5 and fr.down_given_pass == pytest.approx(1 / 3)
    assert fr.eff_nominal == 0.6 and fr.eff_perturbed == 0.6
    wfr = metrics.fooling_rate(nom, per, 0.5, weights=[3, 1, 0, 0, 0])
    assert (wfr.rate, wfr.up, wfr.down) == (0.75, 0.75, 0.0)
    assert metrics.fooling_rate(nom, nom, 0.5).rate == 0.0
    # decision at equality: score == threshold passes, so moving onto it is a flip up
    assert metrics.fooling_rate([0.4], [0.5], 0.5).up == 1.0


def test_fooling_rate_shape_mismatch():
    with pytest.raises(InputError, match="perturbed"):
        metrics.fooling_rate([0.1, 0.2], [0.1], 0.5)


# ------------------------------------------------------------------------ sweeps
def _toy(eps, n=2000):
    rng = np.random.default_rng(7)
    sig, bkg = rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n)
    return sig - eps, bkg + eps  # the perturbation pushes the classes together


def test_sweep_callable_and_dict_agree():
    eps = [0.0, 0.2, 0.5]
    t1 = metrics.sweep(_toy, eps, eff_sig=0.5)
    t2 = metrics.sweep({e: _toy(e) for e in eps}, eff_sig=0.5)
    assert t1.rows == t2.rows
    auc = t1.column("auc")
    assert np.all(np.diff(auc) < 0)  # separation falls with eps
    assert t1.rows[0]["fool_sig"] == 0.0 and t1.rows[0]["eps_s_at_ref_cut"] == 0.5
    assert np.all(np.diff(t1.column("fool_sig")) > 0)
    assert np.all(np.diff(t1.column("eps_b_at_ref_cut")) > 0)
    assert t1.rows[1]["auc"] == pytest.approx(metrics.roc_auc(*_toy(0.2)))
    assert "fool_bkg" in t1.to_text() and len(t1.to_text().splitlines()) == 2 + len(eps)
    assert t1.to_dict()["rows"][2]["eps"] == 0.5


def test_sweep_errors():
    with pytest.raises(ConfigError, match="epsilons"):
        metrics.sweep(_toy)
    with pytest.raises(ConfigError, match="reference_eps"):
        metrics.sweep({0.1: _toy(0.1)})
    with pytest.raises(InputError, match="eps=0.0"):
        metrics.sweep({0.0: (np.ones(3),)})


# ------------------------------------------------------------------------ input errors
def test_input_errors_name_the_argument():
    with pytest.raises(InputError, match="weights_bkg"):
        metrics.roc_auc([1, 2], [0, 1], weights_bkg=[1, -1])
    with pytest.raises(InputError, match="scores_sig"):
        metrics.roc_auc([], [0, 1])
    with pytest.raises(InputError, match="scores_bkg"):
        metrics.roc_auc([1], [np.nan])
    with pytest.raises(InputError, match="weights_sig"):
        metrics.roc_auc([1, 2], [0], weights_sig=[1])
    with pytest.raises(ConfigError, match="eff_sig"):
        metrics.rejection_at_efficiency([1], [0], eff_sig=0.0)


def test_auc_on_a_physics_discriminant(sample):
    """Jet mass separates top from QCD on the shipped sample; weights 1 change nothing."""
    top, qcd = sample.mass[sample.label == 2], sample.mass[sample.label == 0]
    auc = metrics.roc_auc(top, qcd)
    assert 0.8 < auc < 1.0
    assert metrics.roc_auc(top, qcd, np.ones(len(top)), np.ones(len(qcd))) == auc
    sub_t, sub_q = top[:150], qcd[:150]
    assert metrics.roc_auc(sub_t, sub_q) == pytest.approx(pairwise_auc(sub_t, sub_q), abs=1e-12)
