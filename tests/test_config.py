"""Run configurations: valid ones load, broken ones give one-line errors naming the key/file."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hepsafe.data.sample import SAMPLE_FILE
from hepsafe.exceptions import ConfigError
from hepsafe.pipeline import config as config

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
    ("refuse with an attack", _broken(attacks=[{"type": "pgd"}], fit={"missing_side": "refuse"}),
     r"key 'fit/missing_side': 'refuse', but \['pgd'\]"),
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
                          "merge_empty_bins": False, "skip": False}
    cfg = config.load(_write(tmp_path, {**GOOD, "fit": {"skip": True, "merge_empty_bins": True}}))
    assert cfg["fit"]["skip"] is True and cfg["fit"]["merge_empty_bins"] is True
    assert cfg["fit"]["missing_side"] == "mirror"


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
