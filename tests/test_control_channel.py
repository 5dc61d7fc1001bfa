"""The control region as a channel of the fit: the control sample's joint (score x jet
mass) templates for the nominal and an attack, normalised to the expected control-region
yield, the QCD normalisation free and shared, real pyhf and cabinetry fits."""

from __future__ import annotations

import json

import numpy as np
import pyhf
import pytest

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import TemplateError, WorkspaceError
from hepsafe.fit import mle
from hepsafe.fit import results as R
from hepsafe.fit import workspace as W
from hepsafe.tagger.onnx import OnnxTagger
from hepsafe.templates import booking as T
from hepsafe.templates import control as C
from hepsafe.templates import hygiene

EVENTS = 3054.0
CR = C.ControlRegionConfig(events=EVENTS)


class Toy:
    """The W and QCD jets of the test split, their pfn scores, and a toy attack that moves
    every score up (``score ** 0.9``: QCD looks more signal-like) without touching the
    jets' mass."""

    def __init__(self, jets: JetBatch, tagger: OnnxTagger) -> None:
        self.score = tagger.predict(jets).astype(np.float64)
        self.attack = self.score**0.9
        self.mass = jets.mass.astype(np.float64)
        self.pt = jets.pt.astype(np.float64)
        self.qcd, self.w = jets.label == 0, jets.label == 1

    def signal_region(self) -> T.Templates:
        h = T.book(np.linspace(0.0, 1.0, 11), observable="score")
        for name, sel, weight in (("W", self.w, 0.05), ("QCD", self.qcd, 1.0)):
            h = T.fill(h, self.score[sel], name, weight=weight, clip=True)
            h = T.fill(h, self.attack[sel], name, "adv_up", weight=weight, clip=True)
        return T.Templates({"SR": h})

    def control(self, config: C.ControlRegionConfig = CR) -> T.Templates:
        q = self.qcd
        values = {"score": self.score[q], "jet_mass": self.mass[q], "jet_pt": self.pt[q]}
        varied = {"adv_up": {**values, "score": self.attack[q]}}
        return C.book_control(values, varied, 1.0, config, "QCD")


@pytest.fixture(scope="module")
def toy(wq_test: JetBatch, pfn: OnnxTagger) -> Toy:
    return Toy(wq_test, pfn)


def _config(control: C.ControlRegionConfig | None) -> W.WorkspaceConfig:
    return W.WorkspaceConfig(signal=("W",), data_sample=None, lumi=0.02,
                             treatment={"adv": "adversarial"}, control_region=control)


def test_control_templates_are_one_joint_channel_normalised_to_events(toy: Toy) -> None:
    """One region whose bins are the score x mass joint bins (empty ones merged, every jet
    kept): the nominal totals ``events``, the attack keeps its own total, variances scale
    with the square of the factor."""
    cr = toy.control()
    assert cr.regions == ["control"] and cr.samples("control") == ["QCD"]
    nominal = cr.values("control", "QCD")
    assert nominal.sum() == pytest.approx(EVENTS, rel=1e-12)
    assert cr.values("control", "QCD", "adv_up").sum() == pytest.approx(EVENTS, rel=1e-12)
    assert np.all(nominal > 0)
    n_qcd = int(toy.qcd.sum())
    idx = C.joint_bin({"score": toy.score[toy.qcd], "jet_mass": toy.mass[toy.qcd]}, CR)
    raw = np.bincount(idx, minlength=int(np.prod(CR.shape)))
    groups = C.control_groups(raw.astype(np.float64))
    assert len(raw) == 6 * 5 and len(nominal) == len(groups) <= len(raw)
    scale = EVENTS / n_qcd
    np.testing.assert_allclose(nominal, [raw[g].sum() * scale for g in groups], rtol=1e-12)
    np.testing.assert_allclose(cr.variances("control", "QCD"), nominal * scale, rtol=1e-12)
    # the attack moves jets between the joint bins (it raises the score)
    assert not np.allclose(cr.values("control", "QCD", "adv_up"), nominal)
    single = toy.control(C.ControlRegionConfig(variables=("score",), lumi=2.0))
    assert single.values("control", "QCD").sum() == pytest.approx(2.0 * n_qcd)
    assert len(single.edges("control")) - 1 == 6


def test_empty_joint_bins_are_merged_not_lost() -> None:
    """A joint bin with no nominal jet joins the next one (the last run the previous one);
    a variation's jets in an emptied bin stay in the channel."""
    cfg = C.ControlRegionConfig(variables=("score",), bins={"score": [0, 0.25, 0.5, 0.75, 1]})
    nominal = {"score": np.array([0.1, 0.1, 0.9])}  # bins 1 and 2 empty
    t = C.book_control(nominal, {"a_up": {"score": np.array([0.3, 0.6, 0.9])}}, None, cfg,
                       "QCD")
    np.testing.assert_array_equal(t.values("control", "QCD"), [2.0, 1.0])
    np.testing.assert_array_equal(t.values("control", "QCD", "a_up"), [0.0, 3.0])
    assert [g.tolist() for g in C.control_groups(np.array([2.0, 0, 0, 1]))] == [[0], [1, 2, 3]]
    assert [g.tolist() for g in C.control_groups(np.array([2.0, 1, 0, 0]))] == [[0], [1, 2, 3]]
    observed = C.book_control(nominal, {}, 2.0, C.ControlRegionConfig(
        variables=("score",), bins={"score": [0, 0.25, 0.5, 0.75, 1]}, events=30.0), "QCD",
        data={"score": np.array([0.05, 0.3, 0.8, 0.9])})
    np.testing.assert_array_equal(observed.values("control", "QCD"), [20.0, 10.0])
    np.testing.assert_array_equal(observed.values("control", "data"), [1.0, 3.0])


def test_workspace_shares_the_qcd_normfactor_and_pyhf_fits_it(toy: Toy) -> None:
    """The control channel is a channel of the workspace with the same theta; the QCD
    sample carries one free normfactor norm_QCD in both channels (its delta samples too),
    bounded, and the Asimov fit finds it at 1; the patch route gives the same model."""
    t = C.combine(toy.signal_region(), toy.control())
    ws = W.build_workspace(t, _config(CR))
    channels = {c["name"]: {s["name"]: s for s in c["samples"]} for c in ws["channels"]}
    assert set(channels) == {"SR", "control"}
    assert set(channels["control"]) == {"QCD", "QCD_adv_delta"}
    for ch in ("SR", "control"):
        for name in ("QCD", "QCD_adv_delta"):
            assert {"name": "norm_QCD", "type": "normfactor", "data": None} in channels[ch][
                name]["modifiers"]
    assert not any(m["name"] == "norm_QCD" for m in channels["SR"]["W"]["modifiers"])
    pars = {p["name"]: p for p in ws["measurements"][0]["config"]["parameters"]}
    assert pars["norm_QCD"] == {"name": "norm_QCD", "bounds": [[0.0, 10.0]], "inits": [1.0]}
    model, data = mle.model_and_data(ws, asimov=True)
    res = mle.fit(model, data)
    assert res.value("norm_QCD") == pytest.approx(1.0, abs=1e-3) and res.mu == pytest.approx(
        1.0, abs=1e-3)
    base = W.build_workspace(hygiene.select_systematics(t, []), _config(CR))
    patched = W.apply_patch(base, W.build_patch(t, base, _config(CR)))
    m2, _ = mle.model_and_data(patched, asimov=True)
    p1 = np.asarray(model.config.suggested_init(), np.float64)
    p1[model.config.par_slice("adv")] = 0.6
    p1[model.config.par_slice("norm_QCD")] = 1.3
    p2 = np.asarray(m2.config.suggested_init(), np.float64)
    p2[m2.config.par_slice("adv")] = 0.6
    p2[m2.config.par_slice("norm_QCD")] = 1.3
    assert sorted(m2.config.channels) == sorted(model.config.channels)
    for ch in model.config.channels:
        np.testing.assert_allclose(
            np.asarray(m2.main_model.expected_data(p2))[m2.config.channel_slices[ch]],
            np.asarray(model.main_model.expected_data(p1))[model.config.channel_slices[ch]],
            rtol=1e-10)


def _constraint(t: T.Templates, cfg: W.WorkspaceConfig) -> tuple[float, float, float]:
    """(theta's profiled 68 % upper edge at the Asimov fit, 2 Delta NLL of theta = 1,
    mu-hat at theta = 1)."""
    model, data = mle.model_and_data(W.build_workspace(t, cfg), asimov=True)
    free, at1 = mle.fit(model, data), mle.fit(model, data, {"adv": 1.0})
    return R.theta_upper(model, data, free, "adv"), at1.twice_nll - free.twice_nll, at1.mu


def test_control_channel_tightens_theta_and_keeps_the_worst_case(toy: Toy, tmp_path) -> None:
    """The control-region data constrain the attack: with the channel, theta's post-fit
    constraint (the profiled 68 % upper edge; theta-hat sits at its bound 0, where the HESSE
    error means little) is tighter and theta = 1 is excluded more strongly (2 Delta NLL larger); the
    worst-case band is still two profiled fits, and cabinetry fits the workspace as
    written to fit.json's mu-hat and sigma_mu (1e-3)."""
    sr = toy.signal_region()
    both = C.combine(sr, toy.control())
    err_sr, q_sr, _ = _constraint(sr, _config(None))
    err_cr, q_cr, mu1 = _constraint(both, _config(CR))
    assert 0 < err_cr < 0.8 * err_sr < 0.8 and q_cr > 1.5 * q_sr, (err_sr, err_cr, q_sr, q_cr)
    # a larger control region constrains more
    _, q_big, _ = _constraint(C.combine(sr, toy.control(C.ControlRegionConfig(events=3e4))),
                              _config(C.ControlRegionConfig(events=3e4)))
    assert q_big > q_cr
    out = R.fit_templates(both, _config(CR), asimov=True, limit=False)
    R.write_fit_outputs(out, tmp_path)
    report = json.loads((tmp_path / "fit.json").read_text())
    wc = report["worst_case"]["adv"]
    assert wc["mu_at_1"] == pytest.approx(mu1, abs=1e-3)
    assert wc["delta_mu"] == pytest.approx(wc["mu_at_1"] - wc["mu_at_0"]) and wc["delta_mu"] < -0.02
    assert [r["name"] for r in report["normfactors"]] == ["norm_QCD"]
    assert report["adversarial"][0]["upper_68"] == pytest.approx(err_cr, abs=2e-3)
    assert report["config"]["control_region"]["events"] == EVENTS
    assert "norm_QCD" in out.text
    cabinetry = pytest.importorskip("cabinetry")
    spec = json.loads((tmp_path / "workspace.json").read_text())
    model, _ = cabinetry.model_utils.model_and_data(pyhf.Workspace(spec))
    res = cabinetry.fit.fit(model, mle.asimov_data(model))
    row = next(r for r in report["mu"] if r["fit"] == "all variations")
    poi = res.labels.index(model.config.poi_name)
    assert row["mu"] == pytest.approx(float(res.bestfit[poi]), abs=1e-3)
    assert row["sigma_mu"] == pytest.approx(float(res.uncertainty[poi]), abs=1e-3)


def test_control_region_errors_name_the_key(toy: Toy) -> None:
    """Bad settings are one-line errors naming control_region/<key>; a configured control
    region missing from the templates names control_region/region."""
    bad = [({"variables": ["score", "eta"]}, "control_region/variables"),
           ({"events": 10, "lumi": 1.0}, "control_region/events"),
           ({"events": -1}, "control_region/events"),
           ({"bins": {"jet_mass": [0, 50, 40]}}, "control_region/bins/jet_mass"),
           ({"norm_bounds": [2, 5]}, "control_region/norm_bounds"),
           ({"evnts": 3}, "control_region/evnts")]
    for d, key in bad:
        with pytest.raises(TemplateError, match=key):
            C.ControlRegionConfig.from_dict(d)
        with pytest.raises(WorkspaceError, match=key):
            W.WorkspaceConfig.from_dict({"control_region": d})
    read = W.WorkspaceConfig.from_dict({"control_region": {"events": 10, "variables": ["score"],
                                                           "bins": {"score": [0, 0.5, 1]}}})
    assert read.control_region == C.ControlRegionConfig(events=10, variables=("score",),
                                                        bins={"score": (0.0, 0.5, 1.0)})
    assert W.WorkspaceConfig.from_dict(read.to_dict()) == read
    with pytest.raises(TemplateError, match="control_region/region"):
        W.build_workspace(toy.signal_region(), _config(CR))
    with pytest.raises(TemplateError, match="jet_mass"):
        C.book_control({"score": np.zeros(3)}, {}, None, CR, "QCD")
