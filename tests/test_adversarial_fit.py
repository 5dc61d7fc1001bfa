"""The adversarial fit treatment: one theta in [0, 1] per attack, delta samples, the
worst-case band, the patch, the gate-failed variations, agreement with pyhf alone."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyhf
import pytest

from hepsafe import pipeline
from hepsafe.exceptions import ConfigError, InputError, MirrorWarning, WorkspaceError
from hepsafe.fit import results as R
from hepsafe.fit import workspace as W
from hepsafe.fit.mle import asimov_data, model_and_data, parameter_labels
from hepsafe.pipeline import config
from hepsafe.report import fit_figures
from hepsafe.templates import booking as T
from hepsafe.templates import hygiene

EDGES = np.arange(5.0)
NOMINAL = {"W": [2.0, 5.0, 10.0, 3.0], "QCD": [50.0, 30.0, 15.0, 10.0]}
#: the adversarial templates: the W jets move up the score, QCD loses its first bin's jets
ATTACK = {"W": [1.0, 4.0, 12.0, 5.0], "QCD": [0.0, 31.0, 20.0, 12.0]}
GAUSS = {"QCD": ([52.0, 30.0, 14.0, 10.0], [48.0, 30.0, 16.0, 10.0])}
ADV = W.WorkspaceConfig(signal=("W",), data_sample=None, lumi=0.02,
                        treatment={"adv": "adversarial"})


def _fill(h: T.Hist, sample: str, variation: str, yields: list[float]) -> T.Hist:
    """Yields as 100 entries per bin (10 % statistical error)."""
    x = np.repeat(EDGES[:-1] + 0.5, 100)
    return T.fill(h, x, sample, variation, weight=np.repeat(np.asarray(yields) / 100, 100))


def templates(gauss: bool = True) -> T.Templates:
    """W (signal) and QCD in one region: the one-sided attack ``adv`` on both samples and,
    with ``gauss``, a two-sided physics variation ``gs`` on QCD."""
    h = T.book(EDGES, observable="score")
    for s, nom in NOMINAL.items():
        h = _fill(h, s, T.NOMINAL, nom)
        h = _fill(h, s, "adv_up", ATTACK[s])
        if gauss and s in GAUSS:
            h = _fill(h, s, "gs_up", GAUSS[s][0])
            h = _fill(h, s, "gs_down", GAUSS[s][1])
    return T.Templates({"SR": h})


def _pars(model: pyhf.Model, **values: float) -> np.ndarray:
    pars = np.asarray(model.config.suggested_init(), np.float64)
    for name, v in values.items():
        pars[model.config.par_slice(name)] = v
    return pars


def _expected(model: pyhf.Model, **values: float) -> np.ndarray:
    return np.asarray(model.expected_actualdata(_pars(model, **values)), np.float64)


def test_delta_gives_nominal_at_0_and_attack_at_1() -> None:
    """theta = 0 is the nominal, theta = 1 the adversarial template exactly (the signal's
    delta scaled by mu), yields non-negative on [0, 1], no mirrored side, no normsys."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", MirrorWarning)
        ws = W.build_workspace(templates(gauss=False), ADV)
    model, _ = model_and_data(ws, asimov=True)
    nom, att = (np.add(*(np.asarray(d[s]) for s in ("W", "QCD"))) for d in (NOMINAL, ATTACK))
    np.testing.assert_allclose(_expected(model, adv=0.0), nom, rtol=1e-12)
    np.testing.assert_allclose(_expected(model, adv=1.0), att, rtol=1e-12)
    np.testing.assert_allclose(_expected(model, adv=1.0, mu=2.0),
                               2 * np.asarray(ATTACK["W"]) + ATTACK["QCD"], rtol=1e-12)
    by_sample = {s["name"]: s for s in ws["channels"][0]["samples"]}
    assert set(by_sample) == {"W", "QCD", "W_adv_delta", "QCD_adv_delta"}
    assert [m["type"] for m in by_sample["W_adv_delta"]["modifiers"]] == [
        "normfactor", "normfactor", "lumi"]  # theta, mu, lumi: no staterror
    assert not any(m["type"] in ("normsys", "histosys") for s in by_sample.values()
                   for m in s["modifiers"])
    theta = next(p for p in ws["measurements"][0]["config"]["parameters"] if p["name"] == "adv")
    assert theta == {"name": "adv", "bounds": [[0.0, 1.0]], "inits": [0.0]}
    for th in np.linspace(0, 1, 11):
        per_sample = model.main_model.expected_data(_pars(model, adv=th), return_by_sample=True)
        qcd = np.asarray(per_sample[model.config.samples.index("QCD")]) + np.asarray(
            per_sample[model.config.samples.index("QCD_adv_delta")])
        assert np.all(qcd >= -1e-12) and np.all(_expected(model, adv=th) >= 0)
    assert qcd[0] == pytest.approx(0.0, abs=1e-12)  # the attack empties QCD's first bin


def test_gaussian_treatment_still_mirrors_and_config_round_trip() -> None:
    """With the gaussian treatment the attack is a mirrored normsys + histosys (warned);
    the treatment reads from the JSON configuration in both spellings and is checked."""
    cfg = W.WorkspaceConfig(signal=("W",), data_sample=None)
    with pytest.warns(MirrorWarning, match="adv_up"):
        ws = W.build_workspace(templates(gauss=False), cfg)
    assert W.systematic_parameters(ws) == ["adv"]
    assert {m["type"] for s in ws["channels"][0]["samples"] for m in s["modifiers"]
            if m["name"] == "adv"} == {"normsys", "histosys"}
    read = W.WorkspaceConfig.from_dict({"treatment": {"a": {"name": "adversarial"},
                                                      "b": "gaussian"}})
    assert read.adversarial("a") and not read.adversarial("b") and not read.adversarial("c")
    assert W.WorkspaceConfig.from_dict(read.to_dict()) == read
    with pytest.raises(WorkspaceError, match="treatment"):
        W.WorkspaceConfig.from_dict({"treatment": {"a": "flat"}})


def test_patch_adds_the_same_samples_to_a_nominal_only_workspace() -> None:
    """The patch adds the delta samples and theta to a nominal-only workspace: the patched
    model has the built model's expected data at any theta, mu and gs."""
    t = templates()
    built = W.build_workspace(t, ADV)
    base = W.build_workspace(hygiene.select_systematics(t, []), ADV)
    assert len(base["channels"][0]["samples"]) == 2
    patch = W.build_patch(t, base, ADV)
    added = [op["value"]["name"] for op in patch if op["path"] == "/channels/0/samples/-"]
    assert sorted(added) == ["QCD_adv_delta", "W_adv_delta"]
    patched = W.apply_patch(base, patch)
    assert W.systematic_parameters(patch) == W.systematic_parameters(built) == ["gs", "adv"]
    m_built, _ = model_and_data(built, asimov=True)
    m_patched, _ = model_and_data(patched, asimov=True)
    assert sorted(parameter_labels(m_built)) == sorted(parameter_labels(m_patched))
    for point in ({"adv": 0.0}, {"adv": 1.0, "mu": 1.5}, {"adv": 0.3, "gs": -0.7}):
        np.testing.assert_allclose(_expected(m_patched, **point), _expected(m_built, **point),
                                   rtol=1e-10)
    assert m_patched.config.suggested_bounds()[m_patched.config.par_slice("adv")][0] == [0, 1]


def test_worst_case_is_two_fixed_fits_and_pyhf_alone_agrees(tmp_path) -> None:
    """fit.json's worst-case delta mu is mu-hat(theta = 1) - mu-hat(theta = 0) with the rest
    profiled, and pyhf alone on workspace.json (Asimov data) gives fit.json's mu-hat and
    sigma_mu to 1e-3."""
    out = R.fit_templates(templates(), ADV, asimov=True, limit=False)
    R.write_fit_outputs(out, tmp_path)
    report = json.loads((tmp_path / "fit.json").read_text())
    spec = json.loads((tmp_path / "workspace.json").read_text())
    model = pyhf.Workspace(spec).model(modifier_settings=W.MODIFIER_SETTINGS)
    data = asimov_data(model)
    tensorlib, optimizer = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0))
    try:
        best = pyhf.infer.mle.fit(data, model, return_uncertainties=True)
        # the fixed-theta fits run far from the Asimov point: minuit's tolerance as hepsafe's
        pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0, tolerance=1e-3))
        fixed = model.config.suggested_fixed()
        fixed[model.config.par_slice("adv")] = [True]
        mus = []
        for theta in (0.0, 1.0):
            init = _pars(model, adv=theta)
            mus.append(float(pyhf.infer.mle.fit(data, model, init_pars=init.tolist(),
                                                fixed_params=fixed)[model.config.poi_index]))
    finally:
        pyhf.set_backend(tensorlib, optimizer)
    row = next(r for r in report["mu"] if r["fit"] == "all variations")
    poi = model.config.poi_index
    assert row["mu"] == pytest.approx(float(best[poi][0]), abs=1e-3)
    assert row["sigma_mu"] == pytest.approx(float(best[poi][1]), abs=1e-3)
    wc = report["worst_case"]["adv"]
    assert wc["mu_at_0"] == pytest.approx(mus[0], abs=1e-3)
    assert wc["mu_at_1"] == pytest.approx(mus[1], abs=1e-3)
    assert wc["delta_mu"] == pytest.approx(mus[1] - mus[0], abs=1e-3)
    assert abs(wc["delta_mu"]) > 0.05  # the attack moves signal-like yield: a real shift
    theta = report["adversarial"][0]
    assert theta["name"] == "adv" and theta["bounds"] == [0.0, 1.0]
    assert 0.0 <= theta["value"] <= 1.0
    assert "adv" not in {r["name"] for r in report["pulls"]} | {
        r["name"] for r in report["impacts"]}
    assert "worst-case dmu" in (tmp_path / "fit.txt").read_text()


def test_run_leaves_gate_failed_out_unless_include_failed(run_doc) -> None:
    """Attacks take the adversarial treatment by default; a systematic handed to fit_run as
    gate-failed is left out of the fit (listed with its checks), kept with fit:
    {include_failed: true}."""
    t = templates()
    doc = run_doc(attacks=[{"type": "pgd", "name": "adv", "epsilon": 0.02}],
                  variations=[{"type": "scale_all", "name": "gs"}])
    cfg = config.from_dict(doc, "run.yaml")
    assert dict(cfg.fit.workspace.treatment) == {"adv": "adversarial"}
    assert not cfg.fit.include_failed
    fitted, note = pipeline.fit_run(t, cfg, ("W",), failed={"gs": ["jet_pt"]})
    assert fitted is not None, note
    assert fitted.report["systematics"] == ["adv"]
    assert fitted.report["left_out"] == {"gs": ["jet_pt"]}
    assert "left out of the fit" in fitted.text and "gs (jet_pt)" in fitted.text
    kept_cfg = config.from_dict({**doc, "fit": {"include_failed": True}}, "run.yaml")
    kept, _ = pipeline.fit_run(t, kept_cfg, ("W",), failed={"gs": ["jet_pt"]})
    assert kept is not None and kept.report["systematics"] == ["gs", "adv"]
    assert kept.report["included_failed"] == ["gs"] and kept.report["left_out"] == {}
    gauss = config.from_dict({**doc, "fit": {"treatment": {"adv": "gaussian"}}}, "run.yaml")
    assert dict(gauss.fit.workspace.treatment) == {}
    with pytest.raises(ConfigError, match="fit/treatment"):
        config.from_dict({**doc, "fit": {"treatment": {"nope": "adversarial"}}}, "run.yaml")


def test_cabinetry_takes_the_workspace_as_it_is(tmp_path) -> None:
    """cabinetry fits workspace.json (Gaussian variations and an adversarial theta) as
    written, with the model it builds itself, to fit.json's mu-hat and sigma_mu (1e-3), and
    cabinetry.fit.ranking gives fit.json's impacts (1e-3). cabinetry would fix theta at
    theta-hat - sigma < 0, outside its bounds (pyhf refuses): theta's uncertainty is set to
    0 in the results handed to the ranking, so cabinetry skips it (hepsafe gives theta a
    worst-case band instead); the staterror gammas cabinetry ranks as well."""
    cabinetry = pytest.importorskip("cabinetry")
    out = R.fit_templates(templates(), ADV, asimov=True, limit=False)
    R.write_fit_outputs(out, tmp_path)
    spec = json.loads((tmp_path / "workspace.json").read_text())
    model, _ = cabinetry.model_utils.model_and_data(pyhf.Workspace(spec))
    data = asimov_data(model)
    res = cabinetry.fit.fit(model, data, tolerance=1e-3)
    report = json.loads((tmp_path / "fit.json").read_text())
    row = next(r for r in report["mu"] if r["fit"] == "all variations")
    poi = res.labels.index(model.config.poi_name)
    assert row["mu"] == pytest.approx(float(res.bestfit[poi]), abs=1e-3)
    assert row["sigma_mu"] == pytest.approx(float(res.uncertainty[poi]), abs=1e-3)
    theta = res.labels.index("adv")
    assert 0.0 <= res.bestfit[theta] <= 1.0
    with pytest.raises(ValueError, match="outside of its bounds"):
        cabinetry.fit.ranking(model, data, fit_results=res, tolerance=1e-3)
    unc = res.uncertainty.copy()
    unc[theta] = 0.0
    ranking = cabinetry.fit.ranking(model, data, fit_results=res._replace(uncertainty=unc),
                                    tolerance=1e-3)
    theirs = {n: (u, d) for n, u, d in zip(ranking.labels, ranking.postfit_up,
                                           ranking.postfit_down, strict=True)}
    assert [r["name"] for r in report["impacts"]] == ["lumi", "gs"]
    for r in report["impacts"]:
        assert r["up"] == pytest.approx(theirs[r["name"]][0], abs=1e-3)
        assert r["down"] == pytest.approx(theirs[r["name"]][1], abs=1e-3)
        assert abs(r["up"]) > 0.01
    assert theirs["adv"] == (0.0, 0.0)
    assert {n for n in theirs if n.startswith("staterror_")} == {
        f"staterror_SR[{i}]" for i in range(4)}
    fig = fit_figures.ranking_figure(ranking, max_pars=3)
    (ax,) = fig.axes
    assert len(ax.get_yticks()) == 3
    assert ax.get_yticklabels()[0].get_text() == max(
        theirs, key=lambda n: max(abs(theirs[n][0]), abs(theirs[n][1])))


def test_pulls_and_ranking_figures_have_one_row_per_parameter() -> None:
    """The pulls figure: one row per constrained parameter (Gaussian pulls) and a panel
    with one row per theta on [0, 1]; the ranking: one row per impact and per worst-case
    band, largest on top; a given ax is drawn on; a dict that is no report is refused."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = R.fit_templates(templates(), ADV, asimov=True, limit=False).report
    fig = fit_figures.pulls_figure(report)
    pulls_ax, theta_ax = fig.axes
    assert [t.get_text() for t in pulls_ax.get_yticklabels()] == ["gs", "lumi"]
    assert [t.get_text() for t in theta_ax.get_yticklabels()] == ["adv"]
    assert theta_ax.get_xlim()[0] > -0.1 and theta_ax.get_xlim()[1] < 1.1
    fig_all = fit_figures.pulls_figure(report, include_staterror=True)
    assert len(fig_all.axes[0].get_yticks()) == 2 + 4
    fig2 = fit_figures.ranking_figure(report)
    labels = [t.get_text() for t in fig2.axes[0].get_yticklabels()]
    rows = fit_figures.impact_rows(report)
    assert len(labels) == len(rows) == 3 and labels[0] == rows[0].name + (
        " (θ: 0→1)" if rows[0].adversarial else "")
    assert rows[0].size >= rows[1].size >= rows[2].size
    assert {r.name for r in rows if r.adversarial} == {"adv"}
    _, ax = plt.subplots()
    assert fit_figures.ranking_figure(report, ax=ax) is ax.figure
    plt.close("all")
    with pytest.raises(InputError, match="impacts"):
        fit_figures.ranking_figure({"pulls": []})
