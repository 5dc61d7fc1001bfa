"""Run configurations: valid ones load, broken ones give one-line errors naming the key/file."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hepsafe.data.regions import Region
from hepsafe.data.sample import SAMPLE_FILE
from hepsafe.exceptions import ConfigError
from hepsafe.fit.workspace import WorkspaceConfig
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.shifts import AttackShift, PhysicsShift
from hepsafe.pipeline import config as config
from hepsafe.validation.config import GateConfig

GOOD = {
    "samples": [
        {"name": "W", "role": "signal", "files": [str(SAMPLE_FILE)], "label": 1},
        {"name": "QCD", "role": "background", "files": [str(SAMPLE_FILE)], "label": 0},
    ],
    "tagger": {"model": "pfn"},
    "variations": [{"type": "scale_all", "name": "escale"}],
    "output": "out",
}


def _write(tmp_path: Path, doc: object, name: str = "run.yaml") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return p


def test_good_config_fills_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config.load(_write(tmp_path, GOOD))
    assert cfg["seed"] == 1 and cfg["control"] == "QCD"
    assert cfg["envelope"] == {"pt": 0.02, "eta": 0.02, "phi": 0.02}
    assert Path(cfg["tagger"]["model"]).name == "pfn.onnx"
    assert cfg.output == tmp_path / "out"


def test_demo_config_is_valid():
    cfg = config.load(config.DEMO_CONFIG)
    assert {s["role"] for s in cfg["samples"]} == {"signal", "background"}


def _broken(**changes):
    doc = copy.deepcopy(GOOD)
    for path, value in changes.items():
        keys = path.split("__")
        node = doc
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        if value is KeyError:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return doc


BROKEN = [
    ("missing key", _broken(tagger=KeyError), r"'tagger' is a required property"),
    ("wrong type", _broken(seed="one"), r"key 'seed'"),
    ("unknown attack", _broken(attacks=[{"type": "deepfool"}]), r"key 'attacks/0/type'"),
    ("missing tagger file", _broken(tagger={"model": "nope/missing.onnx"}),
     r"key 'tagger/model': no such file"),
    ("missing input file", _broken(samples__1__files=["missing.root"]),
     r"key 'samples/1/files/0': no such file"),
    ("bad role", _broken(samples__0__role="data"), r"key 'samples/0/role'"),
    ("no signal", _broken(samples__0__role="background"), r"no sample with role 'signal'"),
    ("duplicate names", _broken(samples__1__name="W"), r"duplicate sample name"),
    ("unknown control", _broken(control="ttbar"), r"key 'control'"),
    ("epsilon out of range", _broken(attacks=[{"type": "pgd", "epsilon": 2.0}]),
     r"key 'attacks/0/epsilon'"),
    ("unknown top-level key", _broken(outptu="x"), r"outptu"),
    ("bad range", _broken(observable={"bins": 10, "range": [1.0, 0.0]}),
     r"key 'observable/range'"),
    ("duplicate variation names",
     _broken(variations=[{"type": "scale_all"}, {"type": "scale_all"}]),
     r"key 'variations/1/name'"),
    ("missing card file", _broken(tagger={"model": "pfn", "card": "nope.json"}),
     r"key 'tagger/card': no such file"),
    ("empty region box", _broken(region={"jet_mass": [105.0, 55.0]}),
     r"key 'region': region 'jet_mass': need low < high"),
    ("unknown region cut", _broken(region={"jet_eta": [-2.0, 2.0]}), r"jet_eta"),
    ("region box of three", _broken(region={"jet_pt": [1.0, 2.0, 3.0]}), r"key 'region/jet_pt'"),
    ("nothing to fit", _broken(variations=[]), r"'variations' and 'attacks' are both empty"),
    ("unknown variation type", _broken(variations=[{"type": "jes_magic"}]),
     r"key 'variations/0': unknown variation type 'jes_magic'"),
    ("unknown variation option", _broken(variations=[{"type": "smear_energy", "sgima": 0.1}]),
     r"key 'variations/0': variation type 'smear_energy': unknown option\(s\) \['sgima'\]"),
    ("negative two-sided shift", _broken(variations=[{"type": "scale_all", "shift": -0.01}]),
     r"key 'variations/0': .*'shift'"),
    ("bad variation name", _broken(variations=[{"type": "scale_all", "name": "e scale"}]),
     r"key 'variations/0': variation name 'e scale'"),
    ("variation option not a number",
     _broken(variations=[{"type": "smear_angle", "sigma": "wide"}]),
     r"key 'variations/0': variation type 'smear_angle': option 'sigma' must be a number"),
    ("truth label on PFNano", _broken(format="pfnano"),
     r"key 'samples/0/label': PFNano jets carry no truth label"),
    ("unknown gate option", _broken(gate={"ks_maximum": 0.1}), r"key 'gate': .*ks_maximum"),
    ("refuse with a one-sided variation",
     _broken(variations=[{"type": "smear_energy", "name": "smear"}],
             fit={"missing_side": "refuse"}),
     r"key 'fit/missing_side': 'refuse', but \['smear'\] are one-sided"),
    ("refuse with a gaussian attack",
     _broken(attacks=[{"type": "pgd"}],
             fit={"missing_side": "refuse", "treatment": {"pgd": "gaussian"}}),
     r"key 'fit/missing_side': 'refuse', but \['pgd'\]"),
    ("treatment of an unknown variation", _broken(fit={"treatment": {"nope": "adversarial"}}),
     r"key 'fit/treatment' names \['nope'\]"),
    ("symmetrize and missing_side disagree",
     _broken(fit={"symmetrize": True, "missing_side": "nominal"}),
     r"keys 'fit/symmetrize' and 'fit/missing_side' disagree"),
    ("unknown missing side", _broken(fit={"missing_side": "zero"}), r"key 'fit/missing_side'"),
    ("skip not a boolean", _broken(fit={"skip": "yes"}), r"key 'fit/skip'"),
]


@pytest.mark.parametrize("what,doc,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_configs(tmp_path, what, doc, message):
    with pytest.raises(ConfigError, match=message) as exc:
        config.load(_write(tmp_path, doc))
    assert "\n" not in str(exc.value)
    assert "run.yaml" in str(exc.value)


def test_not_yaml_empty_and_missing(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        config.load(_write(tmp_path, "samples: [\n  - {name: W\n"))
    with pytest.raises(ConfigError, match="empty"):
        config.load(_write(tmp_path, ""))
    with pytest.raises(ConfigError, match="no such configuration file"):
        config.load(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        config.load(_write(tmp_path, "- a\n- b\n"))


def test_duplicate_keys_are_an_error(tmp_path):
    """PyYAML keeps the last of two equal keys; a run configuration refuses them, naming the
    key and both lines, at any depth."""
    text = ("seed: 1\nsamples: []\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"run.yaml: key 'seed' is given twice \(lines 1 and "
                                          r"3\); keep one") as exc:
        config.load(_write(tmp_path, text))
    assert "\n" not in str(exc.value)
    nested = yaml.safe_dump(GOOD, sort_keys=False).replace(
        "  model: pfn\n", "  model: pfn\n  model: hl\n")
    assert nested.count("model:") == 2
    line = nested.splitlines().index("  model: hl") + 1
    with pytest.raises(ConfigError, match=rf"key 'model' is given twice \(lines {line - 1} and "
                                          rf"{line}\)"):
        config.load(_write(tmp_path, nested))
    # equal keys in different mappings, and keys overriding a YAML merge, are fine
    merged = (f"samples:\n  - &w {{name: W, role: signal, files: [{SAMPLE_FILE}], label: 1}}\n"
              "  - <<: *w\n    name: QCD\n    role: background\n    label: 0\n"
              "tagger: {model: pfn}\nvariations: [{type: scale_all}]\noutput: out\n")
    qcd = config.load(_write(tmp_path, merged))["samples"][1]
    assert (qcd["name"], qcd["role"], qcd["label"]) == ("QCD", "background", 0)


def test_fit_keys_fold_symmetrize(tmp_path):
    """fit/symmetrize, the older key, becomes fit/missing_side; skip and merge_empty_bins
    default to false."""
    cfg = config.load(_write(tmp_path, {**GOOD, "fit": {"symmetrize": False}}))
    assert cfg["fit"] == {"lumi_uncertainty": 0.0, "missing_side": "nominal",
                          "merge_empty_bins": False, "skip": False, "include_failed": False,
                          "treatment": {}, "control_region": None}
    assert cfg.fit.workspace.control_region is None
    cfg = config.load(_write(tmp_path, {**GOOD, "fit": {"skip": True, "merge_empty_bins": True}}))
    assert cfg["fit"]["skip"] is True and cfg["fit"]["merge_empty_bins"] is True
    assert cfg["fit"]["missing_side"] == "mirror"


def test_control_region_key(tmp_path):
    cfg = config.load(_write(tmp_path, {**GOOD, "fit": {"control_region": {"events": 5000}}}))
    crc = cfg.fit.workspace.control_region
    assert crc is not None and crc.events == 5000 and crc.variables == ("score", "jet_mass")
    with pytest.raises(ConfigError, match="key 'fit/control_region/variables'"):
        config.load(_write(tmp_path, {**GOOD, "fit": {"control_region": {
            "variables": ["score", "score"]}}}))
    with pytest.raises(ConfigError, match="control_region"):  # the schema: an unknown key
        config.load(_write(tmp_path, {**GOOD, "fit": {"control_region": {"evnts": 5}}}))


def test_tree_default_follows_the_format(tmp_path):
    assert config.load(_write(tmp_path, GOOD))["tree"] == "jets"
    nano = {**GOOD, "format": "pfnano",
            "samples": [{k: v for k, v in s.items() if k != "label"} for s in GOOD["samples"]]}
    assert config.load(_write(tmp_path, nano))["tree"] == "Events"
    assert config.load(_write(tmp_path, {**nano, "tree": "T"}))["tree"] == "T"
    assert config.load(_write(tmp_path, GOOD))["fit"]["missing_side"] == "mirror"


def test_run_md_example_loads(tmp_path):
    """The annotated example of docs/RUN.md is a valid configuration."""
    import re
    import shutil

    text = (Path(__file__).resolve().parent.parent / "docs" / "RUN.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    (tmp_path / "data").mkdir()
    shutil.copy(SAMPLE_FILE, tmp_path / "data" / "sample.root")
    cfg = config.load(_write(tmp_path, block))
    assert {a["type"] for a in cfg["attacks"]} == {"fgsm", "pgd", "spsa", "greedy", "learned"}
    assert cfg["region"] == {"jet_mass": [55.0, 105.0]}
    assert cfg["fit"]["missing_side"] == "mirror" and cfg["fit"]["skip"] is False


def test_region_demo_example_loads():
    cfg = config.load(Path(__file__).resolve().parent.parent / "examples" / "region_demo.yaml")
    assert cfg["region"] == {"jet_mass": [55.0, 105.0]}
    assert Path(cfg["samples"][0]["files"][0]).resolve() == SAMPLE_FILE.resolve()


def test_typed_parts_are_built_at_load(tmp_path, monkeypatch):
    """The loader builds every typed part once: tagger, samples, read options, region, gate,
    binning, working point, fit and the systematics (physics variations with their sides,
    attacks with their envelope, seed and options), and each systematic's key."""
    monkeypatch.chdir(tmp_path)
    doc = {**GOOD, "seed": 7, "region": {"jet_mass": [55, 105]},
           "gate": {"corr_frobenius_max": 0.05}, "observable": {"bins": 4, "range": [0, 1]},
           "working_point": {"signal_efficiency": 0.3}, "fit": {"lumi_uncertainty": 0.02},
           "variations": [{"type": "scale_all", "name": "escale", "shift": 0.03},
                          {"type": "smear_energy", "name": "smear", "sigma": 0.05}],
           "attacks": [{"type": "pgd", "epsilon": 0.01, "steps": 3, "target": "up"},
                       {"type": "spsa", "name": "black", "seed": 4},
                       {"type": "learned"}]}
    cfg = config.load(_write(tmp_path, doc))
    assert cfg.tagger == config.TaggerSpec(MODELS_DIR / "pfn.onnx", None, "auto", None)
    assert cfg.samples[1] == config.SampleSpec("QCD", "background", (str(SAMPLE_FILE),), 0)
    assert cfg.read == config.ReadOptions("hepsafe", "jets", "FatJet", False, 20_000)
    assert (cfg.seed, cfg.control, cfg.signal, cfg.output) == (7, "QCD", ("W",), tmp_path / "out")
    assert cfg.region == Region(jet_mass=(55.0, 105.0))
    assert cfg.gate == GateConfig(corr_frobenius_max=0.05)
    assert list(cfg.observable.edges()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert cfg.working_point == 0.3 and cfg.envelope == Envelope(pt=0.02, eta=0.02, phi=0.02)
    assert cfg.fit.workspace == WorkspaceConfig(  # attacks: the adversarial treatment
        signal=("W",), lumi=0.02, missing_side="mirror",
        treatment={"pgd": "adversarial", "black": "adversarial", "learned": "adversarial"})
    assert cfg.fit.skip is False and cfg.fit.include_failed is False
    escale, smear, pgd, black, learned = cfg.systematics
    assert (escale.up, escale.down) == (PhysicsShift("scale_all_up", 7, {"shift": 0.03}),
                                        PhysicsShift("scale_all_down", 7, {"shift": -0.03}))
    assert (smear.up, smear.down) == (PhysicsShift("smear_energy", 7, {"sigma": 0.05}), None)
    assert pgd.up == AttackShift("pgd", "up", Envelope.uniform(0.01), steps=3, seed=7)
    # the default target: signal down, background up, the signal samples' labels as signal
    assert black.up == AttackShift("spsa", "signal_down_background_up", cfg.envelope, seed=4,
                                   signal_labels=[1])
    assert learned.up == AttackShift("learned", "down", None)  # its own envelope, no seed
    assert [s.kind for s in cfg.systematics] == ["variation"] * 2 + ["attack"] * 3
    assert [cfg.key_of(s.name) for s in cfg.systematics] == [
        "variations/0", "variations/1", "attacks/0", "attacks/1", "attacks/2"]
    assert cfg.attack_models == (MODELS_DIR / "adversary_pfn.onnx",)
    # the dict recorded in provenance.json: the file with defaults and resolved paths only
    assert cfg["attacks"][0] == {"type": "pgd", "name": "pgd", "epsilon": 0.01, "steps": 3,
                                 "target": "up"}
    assert cfg["variations"][0] == {"type": "scale_all", "name": "escale", "shift": 0.03}


def test_with_output_and_attack_models(tmp_path):
    """with_output changes the output of a copy (and what provenance records); an attack's
    model is a file next to the configuration or a shipped name."""
    import shutil

    shutil.copy(MODELS_DIR / "adversary_pfn.onnx", tmp_path / "adv.onnx")
    doc = {**GOOD, "attacks": [{"type": "learned", "name": "a", "model": "adv.onnx"},
                               {"type": "learned", "name": "b", "model": "adversary_pfn"}]}
    cfg = config.load(_write(tmp_path, doc))
    assert cfg.attack_models == (tmp_path / "adv.onnx", MODELS_DIR / "adversary_pfn.onnx")
    assert cfg.systematics[1].up.options == {"model": str(tmp_path / "adv.onnx")}
    moved = cfg.with_output(tmp_path / "elsewhere")
    assert moved.output == tmp_path / "elsewhere" and moved["output"] == str(moved.output)
    assert cfg["output"] != moved["output"] and moved.systematics == cfg.systematics
