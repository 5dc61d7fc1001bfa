"""pyhf workspaces and patches from templates; real fits with iminuit; bad input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyhf
import pytest
from template_helpers import mass_templates

from hepsafe import cli
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import FitError, TemplateError, TemplateWarning, WorkspaceError
from hepsafe.fit import limits as limits
from hepsafe.fit import mle as fits
from hepsafe.fit import results as stats
from hepsafe.fit import workspace as W
from hepsafe.templates import booking as T
from hepsafe.templates import files as templates_io

EDGES = np.linspace(40.0, 200.0, 7)  # jet mass [GeV], 6 bins
CONFIG = W.WorkspaceConfig(signal=("W",), lumi=0.02)


def _templates(jets: JetBatch) -> T.Templates:
    """Shared jet-mass templates (tests/template_helpers.py), with the ``peak`` variation."""
    return mass_templates(jets, EDGES, peak=True)


@pytest.fixture(scope="module")
def tmpl(sample: JetBatch) -> T.Templates:
    return _templates(sample)


@pytest.fixture(scope="module")
def workspace(tmpl: T.Templates) -> dict:
    return W.build_workspace(tmpl, CONFIG)


@pytest.fixture(scope="module")
def report(workspace: dict) -> dict:
    return stats.fit_report(workspace, asimov=True)


def _user_workspace(tmpl: T.Templates) -> dict:
    """A user's own one-channel workspace (names differ from the templates'), with modifiers
    of its own: POI, a cross-section normsys, a shapesys, staterror and lumi."""
    wj = (1.2 * tmpl.values("lowpt", "W")).tolist()  # the user's own normalisation
    qcd = tmpl.values("lowpt", "QCD").tolist()
    return {
        "channels": [
            {
                "name": "signal_region",
                "samples": [
                    {
                        "name": "wjets",
                        "data": wj,
                        "modifiers": [
                            {"name": "mu_W", "type": "normfactor", "data": None},
                            {"name": "lumi", "type": "lumi", "data": None},
                            {"name": "stat", "type": "staterror", "data": [1.0] * 6},
                        ],
                    },
                    {
                        "name": "multijet",
                        "data": qcd,
                        "modifiers": [
                            {"name": "xsec_qcd", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                            {"name": "qcd_shape", "type": "shapesys", "data": [5.0] * 6},
                            {"name": "lumi", "type": "lumi", "data": None},
                            {"name": "stat", "type": "staterror", "data": [10.0] * 6},
                        ],
                    },
                ],
            }
        ],
        "observations": [
            {"name": "signal_region", "data": [a + b for a, b in zip(wj, qcd, strict=True)]}
        ],
        "measurements": [
            {
                "name": "user_meas",
                "config": {
                    "poi": "mu_W",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.017],
                            "bounds": [[0.9, 1.1]],
                            "inits": [1.0],
                        }
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }


PATCH_CONFIG = W.WorkspaceConfig(
    signal=("W",), channels={"lowpt": "signal_region"}, samples={"W": "wjets", "QCD": "multijet"}
)


def _lowpt(t: T.Templates) -> T.Templates:
    return T.Templates({"lowpt": t.hists["lowpt"]})


def _pyhf_cli(path: Path) -> None:
    exe = Path(sys.executable).parent / "pyhf"
    for cmd in ("fit", "cls"):
        res = subprocess.run([str(exe), cmd, str(path)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)


# ------------------------------------------------------------------ workspace
def test_workspace_is_complete_and_valid(workspace: dict, tmp_path) -> None:
    pyhf.schema.validate(workspace, "workspace.json")
    ch = {c["name"]: c for c in workspace["channels"]}
    assert list(ch) == ["lowpt", "highpt"]
    w = {s["name"]: s for s in ch["lowpt"]["samples"]}
    mods = {(m["name"], m["type"]) for m in w["W"]["modifiers"]}
    assert {
        ("mu", "normfactor"),
        ("staterror_lowpt", "staterror"),
        ("lumi", "lumi"),
        ("tilt", "normsys"),
        ("tilt", "histosys"),
        ("wnorm", "normsys"),
        ("wnorm", "histosys"),
        ("peak", "normsys"),
        ("peak", "histosys"),
    } == mods
    qcd = {(m["name"], m["type"]) for m in w["QCD"]["modifiers"]}
    assert ("mu", "normfactor") not in qcd and ("tilt", "histosys") in qcd
    wnorm = next(m for m in w["W"]["modifiers"] if m["name"] == "wnorm" and m["type"] == "normsys")
    assert wnorm["data"]["hi"] == pytest.approx(1.1) and wnorm["data"]["lo"] == pytest.approx(0.9)
    # observations: the Asimov sum of nominals (no data sample in the templates)
    assert workspace["observations"][0]["data"] == pytest.approx(
        [a + b for a, b in zip(w["W"]["data"], w["QCD"]["data"], strict=True)]
    )
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(workspace))
    _pyhf_cli(path)


def test_decorrelation(tmpl: T.Templates) -> None:
    cfg = W.WorkspaceConfig(signal=("W",), decorrelate={"tilt": "sample"}, staterror=False)
    ws = W.build_workspace(tmpl, cfg)
    names = W.systematic_parameters(ws)
    assert {"tilt_W", "tilt_QCD", "wnorm", "peak"} == set(names)
    assert (
        W.parameter_name(
            "tilt", "lowpt", "W", W.WorkspaceConfig(decorrelate={"tilt": "sample+region"})
        )
        == "tilt_lowpt_W"
    )
    with pytest.raises(WorkspaceError, match="decorrelate"):
        W.WorkspaceConfig(decorrelate={"tilt": "channel"})


def test_config_from_file(tmp_path) -> None:
    p = tmp_path / "fit.json"
    p.write_text(json.dumps({"signal": ["W"], "lumi": 0.02, "merge_rel_stat": 0.1}))
    cfg = W.load_config(p, lumi=0.03)
    assert cfg.signal == ("W",) and cfg.lumi == 0.03 and cfg.merge_rel_stat == 0.1
    p.write_text(json.dumps({"signal": "W"}))
    with pytest.raises(WorkspaceError, match="key 'signal'"):
        W.load_config(p)


# ------------------------------------------------------------------ fits
def test_asimov_fit_mu_hat_and_sigma(report: dict) -> None:
    rows = {r["fit"]: r for r in report["mu"]}
    for row in rows.values():
        assert row["mu"] == pytest.approx(1.0, abs=1e-3)
    none = rows["no variations"]["sigma_mu"]
    for name in ("tilt", "wnorm", "peak"):
        assert rows[f"only {name}"]["sigma_mu"] > none
        assert rows["all variations"]["sigma_mu"] > rows[f"all but {name}"]["sigma_mu"]
    assert rows["all variations"]["sigma_mu"] > 1.1 * none


def test_impacts_rank_variations(report: dict) -> None:
    imp = report["impacts"]
    assert [r["rank"] for r in imp] == list(range(1, len(imp) + 1))
    sizes = [r["size"] for r in imp]
    assert sizes == sorted(sizes, reverse=True)
    names = [r["name"] for r in imp]
    assert set(names) == {"tilt", "wnorm", "peak", "lumi"}
    # raising the signal yield (wnorm +1 sigma) must lower mu-hat
    wnorm = next(r for r in imp if r["name"] == "wnorm")
    assert wnorm["up"] < 0 < wnorm["down"]
    pulls = {p["name"]: p for p in report["pulls"]}
    assert abs(pulls["wnorm"]["pull"]) < 1e-2 and pulls["lumi"]["prefit_error"] == 0.02


def test_limit_and_significance_match_pyhf(workspace: dict, report: dict) -> None:
    model, data = fits.model_and_data(workspace, asimov=True)
    ul = report["upper_limit"]
    assert ul["expected"] == sorted(ul["expected"]) and ul["observed"] > 1.0
    with fits.minuit_backend():
        obs, exp = pyhf.infer.hypotest(ul["observed"], data, model, return_expected_set=True)
        assert float(obs) == pytest.approx(0.05, abs=2e-4)
        _, exp_med = pyhf.infer.hypotest(ul["expected"][2], data, model, return_expected_set=True)
        assert float(exp_med[2]) == pytest.approx(0.05, abs=2e-4)
        p0 = pyhf.infer.hypotest(0.0, data, model, test_stat="q0")
    ours = limits.cls(model, data, 1.3)
    with fits.minuit_backend():
        ref_obs, ref_exp = pyhf.infer.hypotest(1.3, data, model, return_expected_set=True)
    assert ours["observed"] == pytest.approx(float(ref_obs), rel=1e-3)
    assert ours["expected"] == pytest.approx([float(x) for x in ref_exp], rel=1e-3)
    sig = report["significance"]
    assert sig["p0_observed"] == pytest.approx(float(p0), rel=1e-2)
    assert sig["expected"] == pytest.approx(sig["observed"])  # Asimov data at mu = 1


def test_pyhf_infer_limits_equal_the_asymptotic_formulas(sample: JetBatch) -> None:
    """CLs and the significance (pyhf.infer.hypotest, qtilde and q0) and pyhf's toms748
    upper limit equal hepsafe's own asymptotic formulas to 1e-6 (a two-parameter model of
    the shipped sample's jet masses, so pyhf's scan takes a second)."""
    t = mass_templates(sample, np.array([40.0, 70.0, 100.0, 200.0]))
    ws = W.build_workspace(T.Templates({"lowpt": t.hists["lowpt"]}),
                           W.WorkspaceConfig(signal=("W",), staterror=False,
                                             systematics=("tilt",)))
    model, data = fits.model_and_data(ws, asimov=True)
    assert fits.parameter_labels(model) == ["tilt", "mu"]
    hand = limits._Asymptotics(model, data)
    for mu in (0.4, 1.3):
        ours = limits.cls(model, data, mu)
        observed, expected = hand.cls(mu)
        assert ours["observed"] == pytest.approx(observed, rel=1e-6)
        assert ours["expected"] == pytest.approx(expected, rel=1e-6)
    assert 0.0 < limits.cls(model, data, 1.3)["observed"] < 0.05
    asy = limits.upper_limit(model, data, method="asymptotic", rtol=1e-7)
    ref = limits.upper_limit(model, data, method="pyhf", rtol=1e-7)
    assert ref["method"] == "pyhf" and asy["method"] == "asymptotic"
    assert ref["observed"] == pytest.approx(asy["observed"], rel=1e-6)
    assert ref["expected"] == pytest.approx(asy["expected"], rel=1e-6)
    assert asy["expected"] == sorted(asy["expected"]) and asy["observed"] > asy["expected"][2]
    sig = limits.significance(model, data)
    free, bkg = fits.fit(model, data), fits.fit(model, data, {"mu": 0.0})
    assert sig["observed"] == pytest.approx(np.sqrt(bkg.twice_nll - free.twice_nll), rel=1e-6)
    assert sig["expected"] == pytest.approx(sig["observed"], rel=1e-6)  # Asimov at mu = 1
    with pytest.raises(WorkspaceError, match="method"):
        limits.upper_limit(model, data, method="toys")


def test_report_text_and_json(report: dict) -> None:
    """The text report holds every row of the JSON report (its time: benchmarks/bench_fit.py)."""
    text = stats.format_report(report)
    assert "impacts on the POI" in text and "CLs upper limit" in text
    assert json.loads(json.dumps(report)) == report
    for row in report["mu"]:
        assert f"{row['fit']}" in text and f"{row['mu']:.4f}" in text
    for row in report["impacts"]:
        assert row["name"] in text and f"{row['up']:.4f}" in text
    ul = report["upper_limit"]
    assert f"observed {ul['observed']:.4g}" in text


# ------------------------------------------------------------------ patching
def test_patch_keeps_user_modifiers_and_adds_new(tmpl: T.Templates, tmp_path) -> None:
    user = _user_workspace(tmpl)
    original = copy.deepcopy(user)
    patch = W.build_patch(_lowpt(tmpl), user, PATCH_CONFIG)
    assert user == original  # input untouched
    assert all(op["op"] == "add" and op["path"].endswith("/modifiers/-") for op in patch)
    patched = W.apply_patch(user, patch)
    pyhf.schema.validate(patched, "workspace.json")
    pairs = zip(user["channels"][0]["samples"], patched["channels"][0]["samples"], strict=True)
    for s_old, s_new in pairs:
        n = len(s_old["modifiers"])
        assert s_new["modifiers"][:n] == s_old["modifiers"]  # every original modifier kept
        added = {(m["name"], m["type"]) for m in s_new["modifiers"][n:]}
        expect = {("tilt", "normsys"), ("tilt", "histosys")}
        if s_old["name"] == "wjets":
            expect |= {(x, t) for x in ("wnorm", "peak") for t in ("normsys", "histosys")}
        assert added == expect
    # histosys is the template's relative shape change applied to the user's own nominal
    wj = patched["channels"][0]["samples"][0]
    hs = next(m for m in wj["modifiers"] if m["name"] == "tilt" and m["type"] == "histosys")
    ns = next(m for m in wj["modifiers"] if m["name"] == "tilt" and m["type"] == "normsys")
    nom, up = tmpl.values("lowpt", "W"), tmpl.values("lowpt", "W", "tilt_up")
    rel = np.array(hs["data"]["hi_data"]) / np.array(wj["data"]) * ns["data"]["hi"]
    assert rel == pytest.approx(up / nom)
    # the same through a pyhf PatchSet
    ps = W.as_patchset(patch, user, hepdata="ins1234567")
    assert W.apply_patch(user, ps) == patched
    # pyhf's command line accepts the patched workspace and the fit sees every parameter
    path = tmp_path / "patched.json"
    path.write_text(json.dumps(patched))
    _pyhf_cli(path)
    model, data = fits.model_and_data(patched)
    res = fits.fit(model, data)
    assert {"mu_W", "xsec_qcd", "tilt", "wnorm", "peak", "lumi"} <= set(res.labels)
    assert res.mu == pytest.approx(1.0, abs=1e-3)


def test_patch_errors_name_channel_and_sample(tmpl: T.Templates) -> None:
    user = _user_workspace(tmpl)
    low = _lowpt(tmpl)
    cfg = W.WorkspaceConfig(
        signal=("W",),
        channels={"lowpt": "signal_region"},
        samples={"W": "Wjets_typo", "QCD": "multijet"},
    )
    with pytest.raises(WorkspaceError, match="'Wjets_typo'.*'W'.*'signal_region'"):
        W.build_patch(low, user, cfg)
    with pytest.raises(WorkspaceError, match="channel 'lowpt'.*signal_region"):
        W.build_patch(low, user, W.WorkspaceConfig(signal=("W",)))
    short = copy.deepcopy(user)
    for s in short["channels"][0]["samples"]:
        s["data"] = s["data"][:5]
        for m in s["modifiers"]:
            if isinstance(m["data"], list):
                m["data"] = m["data"][:5]
    short["observations"][0]["data"] = short["observations"][0]["data"][:5]
    with pytest.raises(WorkspaceError, match="5 bins.*6"):
        W.build_patch(low, short, PATCH_CONFIG)
    twice = W.apply_patch(user, W.build_patch(low, user, PATCH_CONFIG))
    with pytest.raises(WorkspaceError, match="'wjets' already has a normsys modifier named 'peak'"):
        W.build_patch(low, twice, PATCH_CONFIG)
    bad = copy.deepcopy(user)
    del bad["observations"]
    with pytest.raises(WorkspaceError, match="not a valid pyhf workspace"):
        W.build_patch(low, bad, PATCH_CONFIG)


# ------------------------------------------------------------------ bad templates
def _simple(w_nom, b_nom, extra=None) -> T.Templates:
    e = [0.0, 1.0, 2.0, 3.0]
    cells = {
        ("SR", "W", "nominal"): (e, w_nom, np.abs(w_nom)),
        ("SR", "B", "nominal"): (e, b_nom, np.abs(b_nom)),
    }
    cells.update(extra or {})
    return T.from_arrays(cells)


def test_bad_yields_raise_or_warn() -> None:
    cfg = W.WorkspaceConfig(signal=("W",))
    with pytest.raises(TemplateError, match="SR_W_nominal has total yield 0"):
        W.build_workspace(_simple([0.0, 0.0, 0.0], [5.0, 5.0, 5.0]), cfg)
    with pytest.raises(FitError, match=r"region 'SR': bins \[2\] of 3 have zero total"):
        W.build_workspace(_simple([1.0, 1.0, 0.0], [5.0, 5.0, 0.0]), cfg)
    merged = W.WorkspaceConfig(signal=("W",), merge_rel_stat=0.5)
    assert (
        len(
            W.build_workspace(_simple([1.0, 1.0, 0.0], [5.0, 5.0, 0.0]), merged)["channels"][0][
                "samples"
            ][0]["data"]
        )
        == 2
    )
    neg = _simple(
        [2.0, 1.0, 1.0],
        [5.0, 5.0, 5.0],
        {("SR", "B", "jes_up"): ([0, 1, 2, 3], [6.0, 5.0, -1.0], [6.0, 5.0, 1.0])},
    )
    with pytest.raises(TemplateError, match=r"negative yields in SR_B_jes_up bins \[2\]"):
        W.build_workspace(neg, W.WorkspaceConfig(signal=("W",), negative="error"))
    with pytest.warns(TemplateWarning, match="SR_B_jes_up"):
        ws = W.build_workspace(neg, cfg)
    b = ws["channels"][0]["samples"][1]
    hs = next(m for m in b["modifiers"] if m["type"] == "histosys")
    assert min(hs["data"]["hi_data"]) >= 0
    with pytest.raises(TemplateError, match=r"signal sample\(s\) \['Z'\]"):
        W.build_workspace(
            _simple([1.0, 1.0, 1.0], [5.0, 5.0, 5.0]), W.WorkspaceConfig(signal=("Z",))
        )


def test_data_sample_used_as_observations() -> None:
    e = [0.0, 1.0, 2.0, 3.0]
    data = {("SR", "data", "nominal"): (e, [7, 6, 8], [7, 6, 8])}
    t = _simple([1.0, 2.0, 1.0], [5.0, 5.0, 5.0], data)
    ws = W.build_workspace(t, W.WorkspaceConfig(signal=("W",)))
    assert ws["observations"][0]["data"] == [7.0, 6.0, 8.0]
    assert [s["name"] for s in ws["channels"][0]["samples"]] == ["W", "B"]


# ------------------------------------------------------------------ command line
def test_cli_fit(tmpl: T.Templates, tmp_path, capsys) -> None:
    path = templates_io.write_templates(tmpl, tmp_path / "templates.root")
    out = tmp_path / "out"
    args = [
        "fit",
        str(path),
        "-o",
        str(out),
        "--signal",
        "W",
        "--lumi",
        "0.02",
        "--asimov",
        "--no-limit",
    ]
    assert cli.main(args) == 0
    assert "impacts on the POI" in capsys.readouterr().out
    rep = json.loads((out / "fit.json").read_text())
    mu = {r["fit"]: r for r in rep["mu"]}
    assert mu["all variations"]["mu"] == pytest.approx(1.0, abs=1e-3)
    pyhf.Workspace(json.loads((out / "workspace.json").read_text()))
    assert cli.main(args) == 2  # outputs exist, no --force
    user = tmp_path / "user.json"
    user.write_text(json.dumps(_user_workspace(tmpl)))
    low = templates_io.write_templates(_lowpt(tmpl), tmp_path / "low.json")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(PATCH_CONFIG.to_dict()))
    rc = cli.main(
        [
            "fit",
            str(low),
            "-o",
            str(out),
            "--workspace",
            str(user),
            "--config",
            str(cfg),
            "--no-limit",
            "--force",
            "--hepdata",
            "ins1234567",
        ]
    )
    assert rc == 0
    patch = json.loads((out / "patch.json").read_text())
    patched = W.apply_patch(json.loads(user.read_text()), patch)
    assert patched == json.loads((out / "workspace.json").read_text())
    assert (out / "patchset.json").exists()


def test_example_fit_variations_runs(tmp_path) -> None:
    """The command written in docs/RESULTS.md runs and writes its section."""
    import runpy

    path = Path(__file__).resolve().parent.parent / "examples" / "fit_variations.py"
    mod = runpy.run_path(str(path))
    assert mod["main"](["-o", str(tmp_path)]) == 0
    section = (tmp_path / "results_section.md").read_text()
    assert section.startswith("## Nuisance parameters in the fit")
    rep = json.loads((tmp_path / "fit.json").read_text())
    assert {r["name"] for r in rep["impacts"]} == {"escale", "smear", "tracking", "lumi"}
    # the adversaries are bounded theta in [0, 1]: a worst-case band, not a +-1 sigma impact
    assert set(rep["worst_case"]) == {"learned", "pgd"}
    assert rep["worst_case"]["learned"]["delta_mu"] > 0.05
    assert not any(m["name"] in ("learned", "pgd") and m["type"] in ("normsys", "histosys")
                   for c in json.loads((tmp_path / "workspace.json").read_text())["channels"]
                   for s in c["samples"] for m in s["modifiers"])
    sigma = {r["fit"]: r["sigma_mu"] for r in rep["mu"]}
    # the adversarial nuisance parameter widens mu's uncertainty
    assert sigma["only learned"] > sigma["no variations"] * 1.05
    assert abs(next(r["mu"] for r in rep["mu"] if r["fit"] == "all variations") - 1) < 1e-3


def test_impacts_of_a_one_bin_staterror() -> None:
    """A one-bin region's staterror is labelled 'staterror_X[0]' by pyhf; impacts find it."""
    import pyhf

    from hepsafe.fit import mle as fits

    spec = {
        "channels": [{"name": "c", "samples": [
            {"name": "s", "data": [5.0],
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "b", "data": [50.0],
             "modifiers": [{"name": "staterror_c", "type": "staterror", "data": [3.0]},
                           {"name": "n", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]},
        ]}],
        "observations": [{"name": "c", "data": [55.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    ws = pyhf.Workspace(spec)
    model, data = ws.model(), ws.data(ws.model())
    rows = fits.impacts(model, data, fits.fit(model, data))
    assert [r["name"] for r in rows] == ["n", "staterror_c[0]"]
    assert all(r["up"] < 0 < r["down"] for r in rows)
