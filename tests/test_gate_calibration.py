"""The calibrated control-region gate on the shipped sample and the reference PFN: critical
values, sizes, flip sizes, the false-alarm rate on random halves, the tail test, config errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hepsafe import validation as validate
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.metrics import threshold_at_efficiency
from hepsafe.perturbation.shifts import LearnedShift, apply_shift
from hepsafe.perturbation.variations import apply_variation
from hepsafe.validation import significance as sig
from hepsafe.validation.config import GateConfig
from hepsafe.validation.report import GateReport


@pytest.fixture(scope="module")
def control(test_split, pfn):
    """The demo's control sample (QCD jets of the test split), their PFN scores and the
    working point keeping 50 % of the W jets."""
    qcd, w = test_split[test_split.label == 0], test_split[test_split.label == 1]
    thr = float(threshold_at_efficiency(pfn.predict(w), 0.5, w.weight))
    return qcd, pfn.predict(qcd).astype(np.float64), thr


@pytest.fixture(scope="module")
def learned(control, pfn):
    """The shipped learned adversary on the control sample: jets and scores."""
    qcd, _, _ = control
    jets = apply_shift(LearnedShift(), qcd, pfn).jets
    return jets, pfn.predict(jets).astype(np.float64)


# ------------------------------------------------------------------------ critical values
def test_ks_critical_values_follow_from_the_sizes():
    # the numbers: 95 %, simulation taken as exact
    crit = [float(validate.ks_critical_value(0.05, n)) for n in (2e3, 1e4, 1e5)]
    assert crit == pytest.approx([0.030, 0.014, 0.0043], abs=5e-4)
    # the leading term of the Kolmogorov series, sqrt(-ln(a/2)/2), to 3e-6
    assert validate.kolmogorov_quantile(0.05) == pytest.approx(
        math.sqrt(-math.log(0.025) / 2), abs=1e-5)
    # the p-value at the critical value is the level
    for n_data, n_sim in ((2e3, math.inf), (3051, 3051), (1e5, 2e4)):
        c = validate.ks_critical_value(0.01, n_data, n_sim)
        assert float(sig.ks_pvalue_sizes(c, n_data, n_sim)) == pytest.approx(0.01, rel=1e-6)
    # a finite simulation adds its own noise: sqrt(1/N_data + 1/N_sim)
    assert float(validate.ks_critical_value(0.05, 2e3, 2e3)) == pytest.approx(
        math.sqrt(2) * crit[0], rel=1e-9)


def test_larger_samples_never_loosen_a_limit(control, learned):
    n = np.geomspace(100, 1e7, 60)
    for n_sim in (3051.0, 1e5, math.inf):
        assert np.all(np.diff(validate.ks_critical_value(0.05, n, n_sim)) < 0)
    assert np.all(np.diff(validate.ks_critical_value(0.05, 2e3, n)) < 0)
    qcd, s0, thr = control
    jets, s1 = learned
    cal = validate.gate(qcd, jets, s0, s1, threshold=thr).calibration
    assert cal is not None
    for t in (*cal.tests, cal.combined):
        for rows in (t.at, t.at_infinite_sim):
            p = [a.p_value for a in rows]
            assert p == sorted(p, reverse=True), t.name  # more events: smaller p-values
            if t.name.endswith(":ks"):
                lim = [a.limit for a in rows]
                assert lim == sorted(lim, reverse=True), t.name
        # exact simulation is never less sensitive than a finite one
        for fin, inf in zip(t.at, t.at_infinite_sim, strict=True):
            assert inf.p_value <= fin.p_value + 1e-12, t.name


# ------------------------------------------------------------------------ the gate's verdicts
def test_identical_samples_pass_and_never_flip(control):
    qcd, s0, thr = control
    rep = validate.gate(qcd, qcd, s0, s0, threshold=thr)
    cal = rep.calibration
    assert rep.passed and cal is not None and cal.pairing == "paired"
    assert cal.n_data == cal.n_sim == pytest.approx(len(qcd))  # unit weights: Kish size = N
    assert [t.name for t in cal.tests] == [
        "jet_pt:ks", "jet_mass:ks", "jet_eta:ks", "n_constituents:ks", "score:ks",
        "score:eff_z", "score:lr", "correlation:corr_chi2"]
    for t in (*cal.tests, cal.combined):
        assert t.p_value == pytest.approx(1.0) and t.flip_events is None, t.name
        assert t.flip_events_infinite_sim is None, t.name


def test_learned_adversary_verdicts_and_flip_size(control, learned, tmp_path):
    """The report carries the learned adversary's verdict at 2e3 and 1e5 control events and
    the sizes where it flips; the flip is consistent with the verdicts just below it."""
    qcd, s0, thr = control
    jets, s1 = learned
    rep = validate.gate(qcd, jets, s0, s1, threshold=thr,
                        config=GateConfig(simulation_events="infinite"))
    cal = rep.calibration
    assert cal is not None and math.isinf(cal.n_sim)
    eps_sim, eps_data = cal.efficiency  # type: ignore[misc]
    assert eps_sim == pytest.approx(np.mean(s0 > thr)) and eps_data < eps_sim
    for n in (2e3, 1e5):
        assert cal.combined.at_size(n).passed == (cal.combined.flip_events is None
                                                  or n < cal.combined.flip_events)
    flip = cal.combined.flip_events
    assert flip is not None and 2e3 < flip < 1e5  # hidden at 2e3, visible at 1e5
    assert flip == min(t.flip_events for t in cal.tests if t.flip_events is not None)
    below = GateConfig(simulation_events="infinite", control_events=flip - 1)
    at = GateConfig(simulation_events="infinite", control_events=flip)
    assert validate.gate(qcd, jets, s0, s1, threshold=thr, config=below).passed
    r_at = validate.gate(qcd, jets, s0, s1, threshold=thr, config=at)
    assert not r_at.passed
    first = [t.name for t in cal.tests if t.flip_events == flip]
    assert r_at.failed == first
    # with the shipped simulation (3051 jets) the simulation's own noise hides it: "never"
    finite = validate.gate(qcd, jets, s0, s1, threshold=thr).calibration
    assert finite is not None and finite.n_sim == pytest.approx(len(qcd))
    for t in finite.tests:
        assert t.flip_events is None or t.flip_events >= flip, t.name
    assert finite.combined.flip_events_infinite_sim == flip
    # gate.json carries it all; the text names the flip sizes
    path = rep.write_json(tmp_path / "gate.json")
    back = GateReport.from_dict(json.loads(path.read_text()))
    assert back == rep
    text = rep.to_text()
    assert "calibrated gate (paired)" in text and f"{flip:.4g}" in text
    assert text.splitlines()[-1] == "verdict: PASS"


def test_energy_scale_flip_matches_the_ks_formula(control):
    """For a KS test the flip size solves D = c(a) sqrt(1/N + 1/N_sim) in N."""
    qcd, s0, thr = control
    up = apply_variation("scale_all_up", qcd)
    rep = validate.gate(qcd, up, s0, s0, threshold=thr)
    cal = rep.calibration
    assert cal is not None and rep.failed == ["jet_pt:ks"]
    t = cal.test("jet_pt:ks")
    c = validate.kolmogorov_quantile(cal.local_alpha)
    expected = 1.0 / ((t.value / c) ** 2 - 1.0 / cal.n_sim)
    assert t.flip_events == math.floor(expected) + 1
    assert t.limit == pytest.approx(c * math.sqrt(1 / cal.n_data + 1 / cal.n_sim))


def test_efficiency_test_catches_a_tail_shift_ks_misses(control):
    """Every other jet above the working point moved just below it (the top 1 % of scores
    only): KS and the binned likelihood ratio do not see it, counting jets above does."""
    qcd, s0, thr = control
    above = np.flatnonzero(s0 > thr)
    moved = above[np.argsort(s0[above])][::2]
    s1 = s0.copy()
    s1[moved] = thr - (s0[moved] - thr)
    assert len(above) / len(s0) < 0.012 and 0.004 < len(moved) / len(s0) < 0.007
    cfg = GateConfig(control_events=20_000, simulation_events="infinite")
    rep = validate.gate(qcd, qcd, s0, s1, threshold=thr, config=cfg)
    assert rep.failed == ["score:eff_z"]
    assert rep.check("score", "ks").passed and rep.check("score", "lr").passed
    assert rep.check("score", "eff_z").value > 2 * rep.check("score", "eff_z").limit  # type: ignore[operator]
    # without the working point the gate is blind to it
    assert validate.gate(qcd, qcd, s0, s1, config=cfg).passed


# ------------------------------------------------------------------------ false alarms
def test_false_alarm_rate_on_random_halves(control):
    qcd, s0, thr = control
    nominal = validate.control_variables(qcd, s0)
    cfg = GateConfig()
    fa = validate.false_alarm_rate(nominal, cfg, thr, halves=1000, seed=1)
    assert fa.halves == 1000 and fa.alpha == pytest.approx(0.05)
    assert 0.03 <= fa.rate <= 0.07, fa
    assert fa.error == pytest.approx(math.sqrt(fa.rate * (1 - fa.rate) / 1000))
    # the per-test level lies between Bonferroni and the stated rate, near Sidak's
    assert 0.05 / 8 * 0.8 < fa.local_alpha < 0.05
    # the rate is measured on other halves than those that set the level
    with pytest.raises(ConfigError, match="calibration_seed"):
        validate.false_alarm_rate(nominal, cfg, thr, seed=cfg.calibration_seed)


def test_independent_halves_use_their_own_sizes(control):
    qcd, s0, thr = control
    half = validate.random_halves(len(qcd), 1, seed=3)[0].astype(bool)
    cfg = GateConfig(pairing="independent", control_events=1e6)  # sizes unused here
    rep = validate.gate(qcd, qcd, s0, s0, threshold=thr, config=cfg, select=(half, ~half))
    cal = rep.calibration
    assert cal is not None and cal.pairing == "independent"
    assert (cal.n_data, cal.n_sim) == (pytest.approx((~half).sum()), pytest.approx(half.sum()))
    assert cal.combined.flip_events is None and cal.combined.at == ()
    assert {t.name for t in cal.tests} >= {"score:eff_z", "score:lr", "jet_pt:ks"}


# ------------------------------------------------------------------------ configuration
@pytest.mark.parametrize(("kwargs", "key"), [
    ({"confidence": 1.5}, "confidence"),
    ({"control_events": -3}, "control_events"),
    ({"simulation_events": "lots"}, "simulation_events"),
    ({"mode": "strict"}, "mode"),
    ({"pairing": "twins"}, "pairing"),
    ({"local_alpha": 2.0}, "local_alpha"),
    ({"score_bins": 1}, "score_bins"),
    ({"report_events": [2000, 0]}, "report_events"),
    ({"calibration_halves": 5}, "calibration_halves"),
])
def test_config_errors_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"GateConfig.{key}") as err:
        GateConfig(**kwargs)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=key):
        GateConfig.from_dict(kwargs)


def test_modes_and_round_trip():
    assert GateConfig().mode == "calibrated"
    # users who set limits get them
    assert GateConfig(overrides={"jet_mass": {"ks_max": 0.1}}).mode == "fixed"
    assert GateConfig(corr_frobenius_max=0.05, mode="calibrated").mode == "calibrated"
    # in a file, limits given are limits wanted, even at their default values
    assert GateConfig.from_dict({"defaults": {"ks_max": 0.04}}).mode == "fixed"
    assert GateConfig.from_dict({"confidence": 0.9}).mode == "calibrated"
    cfg = GateConfig(simulation_events="infinite", control_events=2e4, local_alpha="sidak")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["simulation_events"] == "infinite" and GateConfig.from_dict(d) == cfg


def test_bad_inputs_are_one_line_errors(control):
    qcd, s0, thr = control
    with pytest.raises(ConfigError, match="threshold"):
        validate.gate(qcd, qcd, s0, s0, threshold=math.nan)
    with pytest.raises(InputError, match="threshold"):
        validate.gate(qcd, qcd, threshold=thr)
    with pytest.raises(InputError, match="describe the same"):
        validate.compare({"jet_pt": np.arange(5.0), "jet_mass": np.arange(4.0)},
                         {"jet_pt": np.arange(5.0), "jet_mass": np.arange(4.0)})
