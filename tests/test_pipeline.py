"""The main job end to end on a small configuration of the shipped sample."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hepsafe import metrics
from hepsafe.attacks.spsa import SPSA
from hepsafe.data.sample import SAMPLE_FILE
from hepsafe.exceptions import ConfigError, InputError, ModelError, OutputExistsError
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation import variations as V
from hepsafe.pipeline import config as config
from hepsafe.pipeline import runner as pipeline
from hepsafe.templates import booking as T
from hepsafe.templates import files as templates_io

EXPECTED = {"report.md", "report.html", "roc.png", "scores.png", "control.png", "impacts.png",
            "workspace.json", "patch.json", "templates.root", "templates.json", "gate.json",
            "fit.json", "provenance.json", "summary.json"}


@pytest.fixture(scope="module")
def small_config(run_doc):
    """``small_config(out, **extra)``: 500 W and 500 QCD jets of the test split, seed 3, two
    variations, PGD and a luminosity uncertainty, written to ``out``."""

    def make(out: Path, **extra) -> config.RunConfig:
        doc = {
            "seed": 3,
            "variations": [{"type": "scale_all", "name": "escale"},
                           {"type": "smear_energy", "name": "smear"}],
            "attacks": [{"type": "pgd", "name": "pgd", "epsilon": 0.02, "steps": 3}],
            "fit": {"lumi_uncertainty": 0.02},
            # the gate calibrated to 2000 control-region events: 500 jets' own size would
            # hide a 2 % energy scale (visible from about 600 events)
            "gate": {"control_events": 2000},
            "output": str(out),
            **extra,
        }
        return config.from_dict(run_doc(split="test", max_jets=500, scale=0.05, **doc),
                                source="test.yaml")

    return make


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, small_config):
    base = tmp_path_factory.mktemp("runs")
    a = pipeline.run(small_config(base / "a"), quiet=True)
    b = pipeline.run(small_config(base / "b"), quiet=True)
    return a, b


def test_every_file_is_written(two_runs):
    a, _ = two_runs
    assert EXPECTED <= set(a.files), EXPECTED - set(a.files)
    assert not [p for p in a.output.parent.iterdir() if p.name.startswith(".")]


def test_same_seed_same_json(two_runs):
    a, b = two_runs
    for name in sorted(f for f in a.files if f.endswith(".json")):
        ja = json.loads((a.output / name).read_text())
        jb = json.loads((b.output / name).read_text())
        if name == "provenance.json":
            for j in (ja, jb):
                j.pop("created")
                j.pop("seconds")
                j["config"].pop("output")
        assert ja == jb, name


def test_report_matches_fit_and_gate(two_runs):
    a, _ = two_runs
    md = (a.output / "report.md").read_text()
    fit = json.loads((a.output / "fit.json").read_text())
    gate = json.loads((a.output / "gate.json").read_text())
    for row in fit["mu"]:
        assert f"| {row['fit']} | {row['mu']:.4f} | {row['sigma_mu']:.4f} |" in md
    for r in fit["impacts"]:
        assert f"| {r['rank']} | {r['name']} | {r['up']:.4f} | {r['down']:.4f} |" in md
    for name, rep in gate.items():
        verdict = "pass" if rep["passed"] else "FAIL"
        assert re.search(rf"^\| {name} \| {verdict} \|", md, re.M), name
    assert set(gate) == {"escale_up", "escale_down", "smear_up", "pgd"}
    # the calibrated gate's table: one row per variation, "visible from N" beside
    for name, rep in gate.items():
        flip = rep["calibration"]["combined"]["flip_events"]
        shown = "never" if flip is None else f"{flip:.3g}"
        assert re.search(rf"^\| {name} \| [^|]+ \| {re.escape(shown)} \|", md, re.M), name
    html = (a.output / "report.html").read_text()
    # roc, scores, control, impacts, pulls, ranking
    assert html.count("data:image/png;base64,") == 6


def test_gate_failed_are_left_out_of_the_fit(two_runs):
    """Attacks that fail the gate are not in the fit (fit.json lists them with their failed
    checks, as does the report); the others are, and physics variations always are."""
    a, _ = two_runs
    fit = json.loads((a.output / "fit.json").read_text())
    gate = json.loads((a.output / "gate.json").read_text())
    failed = {k for k, r in gate.items() if not r["passed"] and k in ("pgd",)}
    assert "pgd" in failed
    assert not (gate["escale_up"]["passed"] and gate["escale_down"]["passed"])
    assert set(fit["left_out"]) == failed and fit["included_failed"] == []
    assert set(fit["systematics"]) == {"escale", "smear", "pgd"} - failed
    assert {r["name"] for r in fit["impacts"]} & failed == set()
    md = (a.output / "report.md").read_text()
    assert "Left out of the fit" in md and "`pgd`" in md
    patch = json.loads((a.output / "patch.json").read_text())
    added = {op["value"]["name"] for op in patch if op["op"] == "add"
             and isinstance(op.get("value"), dict) and "name" in op["value"]}
    assert not added & failed and "_pgd_delta" not in str(patch)
    rows = {r["name"]: r for r in a.summary}
    assert rows["pgd"]["eff_sig"] < rows["nominal"]["eff_sig"]


def test_existing_output_needs_force(two_runs, small_config):
    a, _ = two_runs
    before = (a.output / "fit.json").read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        pipeline.run(small_config(a.output), quiet=True)
    assert (a.output / "fit.json").read_bytes() == before


def test_strict_gate(tmp_path, small_config):
    cfg = small_config(tmp_path / "s", attacks=[])
    with pytest.raises(pipeline.GateFailed, match="escale_up"):
        pipeline.run(cfg, quiet=True, strict_gate=True)
    assert (tmp_path / "s" / "gate.json").exists()  # outputs kept for inspection


def test_empty_input_file(tmp_path, small_config):
    from hepsafe.data.jets import read_root, write_root

    empty = write_root(read_root(SAMPLE_FILE, entry_stop=0), tmp_path / "empty.root")
    cfg = small_config(tmp_path / "o")
    w, qcd = cfg.samples
    cfg = replace(cfg, samples=(w._replace(files=(str(empty),)), qcd))
    with pytest.raises(InputError, match=r"samples/0.*empty\.root"):
        pipeline.run(cfg, quiet=True)
    assert not (tmp_path / "o").exists()
    cfg = small_config(tmp_path / "o", variations=[{"type": "smear_energy", "sigma": 2.0}])
    with pytest.raises(ConfigError, match=r"test.yaml: key 'variations/0' \('smear_energy'\): "
                                          r"option 'sigma' must be in"):
        pipeline.run(cfg, quiet=True)
    assert not (tmp_path / "o").exists()


def test_card_mismatch(tmp_path, small_config):
    card = json.loads((MODELS_DIR / "pfn.json").read_text())
    card["inputs"][0]["name"] = "not_an_input"
    (tmp_path / "bad.json").write_text(json.dumps(card))
    cfg = small_config(tmp_path / "o",
                       tagger={"model": "pfn", "card": str(tmp_path / "bad.json")})
    with pytest.raises((ModelError, ConfigError), match="not_an_input"):
        pipeline.run(cfg, quiet=True)


def test_attack_seed_and_learned_options(tmp_path, small_config, pfn):
    """The attacks of a configuration are built by the one factory: the run's seed unless
    the entry gives its own, the learned adversary with the options it takes only."""
    cfg = small_config(tmp_path / "o", attacks=[{"type": "spsa", "name": "s"},
                                                {"type": "spsa", "name": "t", "seed": 5}])
    s, t = (syst.up.attack_for(pfn) for syst in cfg.systematics if syst.kind == "attack")
    assert (type(s), s.seed, t.seed) == (SPSA, 3, 5)  # small_config's seed is 3
    cfg = small_config(tmp_path / "o", attacks=[{"type": "learned", "name": "l", "steps": 3}])
    with pytest.raises(ConfigError, match=r"test.yaml: key 'attacks/0' \('l'\): attack "
                                          r"'learned': unknown option\(s\) \['steps'\]"):
        pipeline.run(cfg, quiet=True)
    assert not (tmp_path / "o").exists()


def test_unknown_variation_type_and_attack_option(tmp_path, small_config):
    with pytest.raises(ConfigError, match="test.yaml: key 'variations/0': unknown variation "
                                          "type 'jes_magic'"):
        small_config(tmp_path / "o", variations=[{"type": "jes_magic"}])
    cfg = small_config(tmp_path / "o", attacks=[{"type": "fgsm", "steps": 3}])
    with pytest.raises(ConfigError, match=r"test.yaml: key 'attacks/0' \('fgsm'\): .*steps"):
        pipeline.run(cfg, quiet=True)
    assert not (tmp_path / "o").exists()


def test_region_is_applied_to_each_variation(tmp_path, small_config):
    """With a signal region, every variation's templates hold exactly its own jets inside
    the box, and the summary's efficiencies are relative to the nominal jets in it."""
    box = {"jet_pt": [500.0, 700.0], "jet_mass": [55.0, 105.0]}
    variations = [{"type": "scale_all", "name": "escale", "shift": 0.03},
                  {"type": "smear_energy", "name": "smear", "sigma": 0.05}]
    cfg = small_config(tmp_path / "sr", attacks=[], region=box, variations=variations,
                       observable={"bins": 5, "range": [0.0, 1.0]})
    res = pipeline.run(cfg, quiet=True)
    samples = pipeline.load_samples(cfg)
    t = templates_io.read_templates(res.output / "templates.json")
    cells = T.cell_contents(t)[pipeline.REGION]
    tagger = cfg.tagger.build()

    def inside(jets):
        return ((jets.pt > 500) & (jets.pt < 700) & (jets.mass > 55) & (jets.mass < 105))

    rows = {r["name"]: r for r in res.summary}
    sig = samples["W"].jets
    s_nom = tagger.predict(sig)
    thr = metrics.threshold_at_efficiency(s_nom[inside(sig)], 0.5, sig.weight[inside(sig)])
    nominal_yield = sig.weight[inside(sig)].sum()
    edges = np.linspace(0.0, 1.0, 6)
    moved = 0
    # the configured options are used: shift 0.03 (+ up, - down), sigma 0.05
    for key, reg, options in (("escale_up", "scale_all_up", {"shift": 0.03}),
                              ("escale_down", "scale_all_down", {"shift": -0.03}),
                              ("smear_up", "smear_energy", {"sigma": 0.05})):
        for name, s in samples.items():
            varied = V.apply_variation(reg, s.jets, seed=cfg.seed, **options)
            keep = inside(varied)
            moved += int((keep != inside(s.jets)).sum())
            values, _ = cells[(name, key)]
            expected, _ = np.histogram(tagger.predict(varied)[keep], edges,
                                       weights=varied.weight[keep].astype(np.float64))
            np.testing.assert_allclose(values, expected, rtol=1e-6)
        varied = V.apply_variation(reg, sig, seed=cfg.seed, **options)
        keep, score = inside(varied), tagger.predict(varied)
        eff = varied.weight[keep & (score >= thr)].sum() / nominal_yield
        assert rows[key]["eff_sig"] == pytest.approx(eff, rel=1e-12)
    assert moved > 0  # the variations move jets across the box
    for name, s in samples.items():
        values, _ = cells[(name, "nominal")]
        assert values.sum() == pytest.approx(s.jets.weight[inside(s.jets)].sum(), rel=1e-6)
    assert rows["nominal"]["eff_sig"] == pytest.approx(
        sig.weight[inside(sig) & (s_nom >= thr)].sum() / nominal_yield, rel=1e-12)
    assert "Signal region: 500 < jet pT < 700 GeV, 55 < jet mass < 105 GeV" in (
        res.output / "report.md").read_text()
