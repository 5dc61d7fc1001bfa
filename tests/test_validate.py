"""Control-region gate on the shipped sample: statistics, verdicts, weights, errors, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepsafe import validation as validate
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.validation.config import GateConfig, Limits
from hepsafe.validation.report import GateReport


def stand_in_score(jets, logit_shift=0.0):
    """A deterministic per-jet score in (0, 1) (the tagger itself lives elsewhere)."""
    x = (jets.mass.astype(np.float64) - 80.0) / 20.0 + 0.02 * (jets.n_parts - 40)
    return 1.0 / (1.0 + np.exp(-(x + logit_shift)))


@pytest.fixture(scope="module")
def qcd(sample):
    """The QCD control sample (10k jets)."""
    return sample[sample.label == 0]


# ------------------------------------------------------------------------ statistics
def test_weighted_ks_matches_scipy_and_duplication():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    a, b = np.round(rng.normal(0, 1, 800), 2), np.round(rng.normal(0.15, 1, 600), 2)
    d, p = validate.ks_2samp_weighted(a, b)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=0.05, abs=1e-3)
    # integer weights == duplicated entries (statistic exactly)
    wa, wb = rng.integers(1, 4, 800), rng.integers(1, 4, 600)
    dw, _ = validate.ks_2samp_weighted(a, b, wa, wb)
    assert dw == pytest.approx(stats.ks_2samp(np.repeat(a, wa), np.repeat(b, wb)).statistic)


def test_ks_pvalue_limits():
    assert validate.ks_pvalue(0.0, 100) == 1.0
    assert validate.ks_pvalue(1.0, 100) < 1e-30
    n = 5000.0  # D at the textbook 5 % critical value 1.358/sqrt(n) gives p ~ 0.05
    assert validate.ks_pvalue(1.358 / np.sqrt(n), n) == pytest.approx(0.05, abs=0.003)


def test_js_distance_and_chi2_known_cases():
    assert validate.js_distance([1, 2, 3], [2, 4, 6]) == 0.0
    assert validate.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4): from the definition
    kl_p = 0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25)
    kl_q = np.log2(1 / 0.75)
    assert validate.js_distance([1, 1], [1, 0]) == pytest.approx(np.sqrt(0.5 * (kl_p + kl_q)))
    # two unit-weight histograms with 100 entries each: p1 - p2 = (+0.1, -0.1)
    h1 = (np.array([60.0, 40.0]), np.array([60.0, 40.0]))
    h2 = (np.array([50.0, 50.0]), np.array([50.0, 50.0]))
    chi2, ndf = validate.chi2_ndf(h1, h2)
    assert ndf == 1
    assert chi2 == pytest.approx(0.01 / (0.006 + 0.005) + 0.01 / (0.004 + 0.005))


def test_histogram_keeps_flow():
    h, h2 = validate.histogram(np.array([-5.0, 0.5, 1.5, 9.0]), np.array([0.0, 1.0, 2.0]), None)
    np.testing.assert_array_equal(h, [1, 1, 1, 1])
    np.testing.assert_array_equal(h2, h)


# ------------------------------------------------------------------------ the gate on jets
def test_identical_samples_pass_with_zero_statistics(sample):
    scores = stand_in_score(sample)
    report = validate.gate(sample, sample, scores, scores, select=sample.label == 0)
    assert report.passed and report.failed == []
    for v in report.variables:
        assert v.ks == 0.0 and v.jsd == 0.0 and v.chi2 == 0.0, v
    assert report.check("correlation", "corr_frobenius").value == 0.0
    names = {v.variable for v in report.variables}
    assert names == set(validate.CONTROL_VARIABLES)
    assert report.stats("jet_pt").n_nominal == 10_000
    assert report.stats("part_pt").n_nominal == int(sample[sample.label == 0].n_parts.sum())


def test_mass_shift_fails_the_mass_check_and_names_it(sample):
    shifted = sample.replace(mass=sample.mass * np.float32(1.03))
    report = validate.gate(sample, shifted)
    assert not report.passed
    assert report.failed_variables == ["jet_mass"]
    assert "jet_mass:ks" in report.failed
    assert report.stats("jet_mass").ks > 0.04
    table = report.to_text().splitlines()[2:-1]
    fail_lines = [line for line in table if line.endswith("FAIL")]
    assert fail_lines and all(line.startswith("jet_mass") for line in fail_lines)
    # a Pearson correlation does not see a pure scale change (the calibrated gate's default
    # correlation test is the chi2 of the Fisher-transformed changes)
    assert report.check("correlation", "corr_chi2").passed
    assert report.check("correlation", "corr_frobenius").value < 1e-6
    # the input batch is untouched
    assert np.array_equal(shifted.mass, sample.mass * np.float32(1.03))


def test_small_mass_shift_passes_on_qcd_control(qcd):
    """A 2 % jet-mass scale change hides inside the QCD control region's default limits."""
    report = validate.gate(qcd, qcd.replace(mass=qcd.mass * np.float32(1.02)))
    st = report.stats("jet_mass")
    assert report.passed, report.failed
    assert 0.005 < st.ks < 0.04
    assert st.mean_perturbed == pytest.approx(1.02 * st.mean_nominal, rel=1e-6)


def test_large_reweighting_fails(qcd):
    w = np.exp((qcd.pt.astype(np.float64) - 600.0) / 50.0).astype(np.float32)
    report = validate.gate(qcd, qcd.replace(weight=w))
    assert not report.passed
    assert "jet_pt:ks" in report.failed
    assert report.stats("jet_pt").ks > 0.1
    assert report.stats("jet_pt").n_eff_perturbed < 0.5 * len(qcd)


def test_weights_are_honoured(qcd):
    idx = np.arange(0, len(qcd), 3)
    duplicated = type(qcd).concatenate([qcd, qcd[idx]])
    w = np.ones(len(qcd), dtype=np.float32)
    w[idx] = 2.0
    weighted = qcd.replace(weight=w)
    report = validate.gate(duplicated, weighted)
    for v in report.variables:
        assert v.ks == pytest.approx(0.0, abs=1e-12), v
        assert v.jsd == pytest.approx(0.0, abs=1e-6), v
    assert report.check("correlation", "corr_frobenius").value < 1e-9
    assert report.passed
    # without the weights the same comparison sees a difference
    unweighted = validate.gate(duplicated, qcd)
    assert unweighted.stats("jet_mass").ks > 0.0


def test_correlation_change_alone_fails(qcd):
    """Permuting masses keeps every marginal but breaks the mass correlations."""
    perm = np.random.default_rng(11).permutation(len(qcd))
    report = validate.gate(qcd, qcd.replace(mass=qcd.mass[perm]))
    assert report.stats("jet_mass").ks == 0.0
    assert report.failed == ["correlation:corr_chi2"]
    assert report.check("correlation", "corr_frobenius").value > 0.1
    fixed = validate.gate(qcd, qcd.replace(mass=qcd.mass[perm]), config=GateConfig(mode="fixed"))
    assert fixed.failed == ["correlation:corr_frobenius"]


def test_mask_counts_only_kept_constituents(qcd):
    pt = qcd.flat("pt")
    all_kept = qcd.with_parts(mask=np.ones(len(pt), dtype=bool))
    assert validate.gate(qcd, all_kept).passed
    soft_dropped = qcd.with_parts(mask=pt > 2.0)
    cv = validate.control_variables(soft_dropped)
    assert cv["n_constituents"].values.sum() == np.count_nonzero(pt > 2.0)
    assert cv["part_pt"].values.min() > 2.0
    report = validate.gate(qcd, soft_dropped)
    assert "n_constituents:ks" in report.failed
    # constituent marginals are reported, not tested, by the calibrated gate; the fixed one
    # gates on them
    assert report.check("part_pt", "ks").passed is None and report.stats("part_pt").ks > 0.04
    fixed = validate.gate(qcd, soft_dropped, config=GateConfig(mode="fixed"))
    assert "n_constituents:ks" in fixed.failed and "part_pt:ks" in fixed.failed


def test_overrides_are_per_variable(sample):
    shifted = sample.replace(mass=sample.mass * np.float32(1.03))
    loose = GateConfig(overrides={"jet_mass": {"ks_max": 0.2, "jsd_max": None}})
    report = validate.gate(sample, shifted, config=loose)
    assert report.passed
    assert report.check("jet_mass", "jsd").passed is None  # reported, not gated
    assert report.check("jet_pt", "ks").limit == 0.04
    assert GateConfig().limits_for("score").ks_max == 0.02
    # the background score: a small logit shift fails the tighter default score limit
    qcd = sample[sample.label == 0]
    r = validate.gate(qcd, qcd, stand_in_score(qcd), stand_in_score(qcd, logit_shift=0.12))
    assert r.failed_variables == ["score"]
    assert 0.02 < r.stats("score").ks < 0.04


def test_compare_on_named_arrays():
    rng = np.random.default_rng(2)
    x = rng.normal(size=4000)
    report = validate.compare(
        {"x": x, "y": (x**2, np.ones(4000))}, {"x": x + 0.5, "y": (x**2, None)}
    )
    assert report.failed_variables == ["x"]
    assert report.correlation_variables == ()  # no jet-level variables -> no correlation check
    cfg = GateConfig(correlation_variables=("x", "y"), corr_frobenius_max=0.01)
    r2 = validate.compare({"x": x, "y": x}, {"x": x, "y": rng.permutation(x)}, cfg)
    assert r2.failed == ["correlation:corr_frobenius"]


# ------------------------------------------------------------------------ errors
def test_bad_input_names_the_culprit(qcd):
    x = np.arange(10.0)
    with pytest.raises(InputError, match="'jet_mass'.*weights have shape"):
        validate.compare({"jet_mass": (x, np.ones(9))}, {"jet_mass": x})
    with pytest.raises(InputError, match="perturbed_scores"):
        validate.gate(qcd, qcd, stand_in_score(qcd), np.zeros(3))
    with pytest.raises(ConfigError, match="jet_mas"):
        validate.gate(qcd, qcd, config=GateConfig(overrides={"jet_mas": {"ks_max": 0.1}}))
    with pytest.raises(ConfigError, match="ks_maximum"):
        GateConfig(overrides={"jet_mass": {"ks_maximum": 0.1}})
    with pytest.raises(ConfigError, match="ks_max"):
        Limits(ks_max=-1.0)
    neg = qcd.replace(weight=np.where(np.arange(len(qcd)) == 7, -1.0, 1.0).astype(np.float32))
    with pytest.raises(InputError, match="'jet_pt'.*negative weight.*allow_negative_weights"):
        validate.gate(qcd, neg)
    allowed = validate.gate(qcd, neg, config=GateConfig(allow_negative_weights=True))
    assert allowed.stats("jet_pt").ks > 0
    with pytest.raises(InputError, match="'select'.*no jets"):
        validate.gate(qcd, qcd, select=np.zeros(len(qcd), dtype=bool))
    with pytest.raises(InputError, match="nominal_jets"):
        validate.gate(qcd[:0], qcd)
    with pytest.raises(InputError, match="'x' \\(nominal\\).*empty"):
        validate.compare({"x": np.array([])}, {"x": x})
    with pytest.raises(InputError, match="'y'"):
        validate.compare({"x": x}, {"x": x, "y": x})
    with pytest.raises(ConfigError, match="select"):
        validate.gate(qcd, qcd[:100], select=np.ones(len(qcd), dtype=bool))
    with pytest.raises(ConfigError, match="bins\\['jet_mass'\\]"):
        GateConfig(bins={"jet_mass": [0.0, 0.0]})


# ------------------------------------------------------------------------ report
def test_report_round_trips_and_lists_every_check(qcd, tmp_path):
    shifted = qcd.replace(mass=qcd.mass * np.float32(1.05))
    s = stand_in_score(qcd)
    cfg = GateConfig(
        defaults=Limits(chi2_ndf_max=3.0),
        bins={"part_pt": 30, "jet_mass": np.arange(0.0, 310.0, 10.0)},
        variables=["jet_pt", "jet_mass", "part_pt", "score"],
    )
    report = validate.gate(qcd, shifted, s, stand_in_score(shifted), config=cfg)
    path = report.write_json(tmp_path / "gate.json")
    back = GateReport.from_dict(json.loads(path.read_text()))
    assert back == report
    assert GateConfig.from_dict(back.config) == cfg
    assert back.stats("jet_mass").n_bins == 31 + 1 and back.stats("part_pt").n_bins == 31 + 1
    assert [v.variable for v in back.variables] == ["jet_pt", "jet_mass", "part_pt", "score"]
    # a 5 % mass scale passes the mass checks on 10 GeV bins, but moves the mass-based score
    assert back.failed_variables == ["score"] and not back.passed
    text = report.to_text()
    rows = text.splitlines()[2:-1]
    assert len(rows) == len(report.checks) == 4 * len(report.variables) + 1
    for line, c in zip(rows, report.checks, strict=True):
        assert line.split()[:2] == [c.variable, c.statistic]
    assert text.splitlines()[-1] == f"verdict: {'PASS' if report.passed else 'FAIL'}"
    txt = report.write_text(tmp_path / "gate.txt")
    assert txt.read_text() == text + "\n"
