"""One-line errors instead of tracebacks: fit problems (the run keeps its other outputs),
missing variation sides, and the small things of the command line (--version, help)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from hepsafe import _files as io
from hepsafe import cli
from hepsafe.exceptions import FitError, MirrorWarning, ModelError
from hepsafe.fit import workspace as W
from hepsafe.models import MODELS_DIR, model_path
from hepsafe.pipeline import config as config
from hepsafe.pipeline import runner as pipeline
from hepsafe.tagger.onnx import reference
from hepsafe.templates import booking as T
from hepsafe.templates import files as templates_io

ROOT = Path(__file__).resolve().parent.parent
EDGES = [0.0, 1.0, 2.0, 3.0]


def write_templates(path: Path, b_nominal, b_up, b_down=None) -> Path:
    """Three-bin templates: signal W, background B with ``jes`` (down side optional)."""
    cells = {
        ("SR", "W", "nominal"): (EDGES, [1.0, 2.0, 4.0], [1.0, 2.0, 4.0]),
        ("SR", "B", "nominal"): (EDGES, b_nominal, b_nominal),
        ("SR", "B", "jes_up"): (EDGES, b_up, b_up),
    }
    if b_down is not None:
        cells[("SR", "B", "jes_down")] = (EDGES, b_down, b_down)
    return templates_io.write_templates(T.from_arrays(cells), path)


def fit(templates: Path, out: Path, cfg: dict | None = None) -> int:
    args = ["fit", str(templates), "-o", str(out), "--signal", "W", "--asimov", "--no-limit"]
    if cfg is not None:
        (out.parent / "cfg.json").write_text(json.dumps(cfg))
        args += ["--config", str(out.parent / "cfg.json")]
    return cli.main(args)


def stderr_line(capsys, prefix: str, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(prefix) and "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


# ------------------------------------------------------------------ fit problems in a run
@pytest.fixture(scope="module")
def hundred_bins(tmp_path_factory, run_doc):
    """A small run with 100 score bins: some bins hold no background jet."""
    d = tmp_path_factory.mktemp("bins")
    doc = run_doc(max_jets=300, scale=0.05, observable={"bins": 100}, output=str(d / "out"))
    (d / "run.yaml").write_text(yaml.safe_dump(doc))
    return d


def test_empty_background_bins_keep_the_run(hundred_bins, capsys):
    """The run writes templates, gate, summary, report and plots, then reports the fit
    problem in one line with its remedies; exit status 4."""
    out = hundred_bins / "out"
    assert cli.main(["run", str(hundred_bins / "run.yaml"), "-q"]) == 4
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("hepsafe: fit not done: ") and "\n" not in err, err
    for word in ("region 'SR': bins", "of 100", "merge_empty_bins", "skip the fit", str(out)):
        assert word in err, word
    assert "nominal" in captured.out  # the summary table is printed
    files = set(p.name for p in out.iterdir())
    assert {"templates.root", "templates.json", "gate.json", "summary.json", "report.md",
            "report.html", "provenance.json", io.OUTPUT_MARKER} <= files
    assert not files & {"fit.json", "workspace.json", "patch.json"}
    assert set(io.read_marker(out)["files"]) == files - {io.OUTPUT_MARKER}
    assert "The fit was not done: region 'SR'" in (out / "report.md").read_text()
    # the templates really have background-free bins, the fit's reason
    t = templates_io.read_templates(out / "templates.json")
    assert np.any(t.values("SR", "QCD") <= 0)


def test_remedies_merge_or_skip(hundred_bins, tmp_path, capsys):
    """fit: {merge_empty_bins: true} gives the same templates a model whose every bin has
    background (its fit: test_fit_command_empty_background_bin); skip writes no fit;
    hepsafe fit on the run's templates stops as the run did."""
    t = templates_io.read_templates(hundred_bins / "out" / "templates.json")
    doc = yaml.safe_load((hundred_bins / "run.yaml").read_text())
    merged = config.from_dict({**doc, "fit": {"merge_empty_bins": True}}, "run.yaml")
    wcfg = pipeline.workspace_config(merged, ("W",))
    assert wcfg.merge_empty_bins and wcfg.missing_side == "mirror" and wcfg.lumi is None
    ws = W.build_workspace(t, wcfg)  # validated by pyhf
    qcd = np.array(next(s["data"] for s in ws["channels"][0]["samples"] if s["name"] == "QCD"))
    assert 1 < len(qcd) < 100 and np.all(qcd > 0)
    assert qcd.sum() == pytest.approx(t.values("SR", "QCD").sum())
    skipped = config.from_dict({**doc, "fit": {"skip": True}}, "run.yaml")
    assert pipeline.fit_run(t, skipped, ("W",)) == (None, "skipped (fit: {skip: true})")
    fitted, note = pipeline.fit_run(t, config.from_dict(doc, "run.yaml"), ("W",))
    assert fitted is None and "merge_empty_bins" in note

    out = tmp_path / "f"
    assert cli.main(["fit", str(hundred_bins / "out" / "templates.json"), "-o", str(out),
                     "--signal", "W", "--asimov", "--no-limit"]) == 4
    stderr_line(capsys, "hepsafe: fit not done: ", "merge_empty_bins")
    assert not out.exists()


def test_fit_command_empty_background_bin(tmp_path, capsys):
    """A bin with signal but no background: one line, exit 4, nothing written; merged on
    request into a neighbour."""
    tpl = write_templates(tmp_path / "t.json", [20.0, 0.0, 5.0], [21.0, 0.0, 5.5],
                          [19.0, 0.0, 4.5])
    assert fit(tpl, tmp_path / "a") == 4
    stderr_line(capsys, "hepsafe: fit not done: ", "bins [1] of 3 have no background",
                "['B']", "merge_empty_bins")
    assert not (tmp_path / "a").exists()
    assert fit(tpl, tmp_path / "a", {"merge_empty_bins": True}) == 0
    ws = json.loads((tmp_path / "a" / "workspace.json").read_text())
    b = next(s for s in ws["channels"][0]["samples"] if s["name"] == "B")
    assert b["data"] == [20.0, 5.0]  # the empty bin 1 joins bin 2; the signal too
    w = next(s for s in ws["channels"][0]["samples"] if s["name"] == "W")
    assert w["data"] == [1.0, 6.0]


def test_hygiene_positive_plan():
    from hepsafe.templates.hygiene import positive_plan

    assert positive_plan(np.array([1.0, 2.0])) == [0, 1, 2]
    assert positive_plan(np.array([0.0, 0.0, 1.0, 0.0, 2.0, 0.0])) == [0, 3, 6]
    assert positive_plan(np.array([1.0, -2.0, 3.0])) == [0, 1, 3]
    assert positive_plan(np.array([0.0, 0.0])) == [0, 2]


# ------------------------------------------------------------------ missing variation sides
def test_missing_side_mirror_warns_nominal_refuse(tmp_path, capsys):
    """Only jes_up given: mirrored with a one-line warning naming sample and variation (the
    default, as before), the nominal on request, or refused."""
    nom, up = [20.0, 10.0, 5.0], [22.0, 10.5, 5.5]
    tpl = write_templates(tmp_path / "t.json", nom, up)
    assert fit(tpl, tmp_path / "mirror") == 0
    stderr_line(capsys, "hepsafe: warning: mirrored one-sided variation(s)", "SR/B jes_up")
    ws = json.loads((tmp_path / "mirror" / "workspace.json").read_text())
    mods = {m["type"]: m["data"] for s in ws["channels"][0]["samples"] if s["name"] == "B"
            for m in s["modifiers"] if m["name"] == "jes"}
    hi = sum(up) / sum(nom)
    assert mods["normsys"] == pytest.approx({"hi": hi, "lo": 2 - hi})  # down = 2 nom - up

    assert fit(tpl, tmp_path / "nominal", {"missing_side": "nominal"}) == 0
    assert capsys.readouterr().err == ""
    ws = json.loads((tmp_path / "nominal" / "workspace.json").read_text())
    b = next(s for s in ws["channels"][0]["samples"] if s["name"] == "B")
    norm = next(m["data"] for m in b["modifiers"] if m["type"] == "normsys")
    assert norm == pytest.approx({"hi": hi, "lo": 1.0})

    assert fit(tpl, tmp_path / "refuse", {"missing_side": "refuse"}) == 4
    stderr_line(capsys, "hepsafe: fit not done: ", "SR/B jes_up", "'refuse'")
    assert not (tmp_path / "refuse").exists()
    # the older key still reads, and a disagreement is an error naming both keys
    assert W.WorkspaceConfig.from_dict({"symmetrize": False}).missing_side == "nominal"
    assert fit(tpl, tmp_path / "x", {"symmetrize": True, "missing_side": "refuse"}) == 2
    stderr_line(capsys, "hepsafe: error: ", "'symmetrize' and 'missing_side' disagree")


def test_library_mirror_warning_and_two_sided_silence():
    t = T.from_arrays({("SR", "W", "nominal"): (EDGES, [1, 2, 3], [1, 2, 3]),
                       ("SR", "B", "nominal"): (EDGES, [9, 9, 9], [9, 9, 9]),
                       ("SR", "B", "a_down"): (EDGES, [8, 9, 9], [8, 9, 9])})
    with pytest.warns(MirrorWarning, match=r"SR/B a_down"):
        W.build_workspace(t, W.WorkspaceConfig(signal=("W",)))
    with pytest.raises(FitError, match="SR/B a_down"):
        W.build_workspace(t, W.WorkspaceConfig(signal=("W",), missing_side="refuse"))


# ------------------------------------------------------------------ command line
def test_version_and_help_of_every_option(capsys):
    from hepsafe import __version__

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"hepsafe {__version__}"
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"generate", "info", "train", "demo", "run", "fit", "card",
                                 "bundle", "score-bundle"}

    def every(name: str, sub: argparse.ArgumentParser) -> None:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                for n, s in action.choices.items():
                    every(f"{name} {n}", s)
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)

    for name, sub in subs.choices.items():
        every(name, sub)
    fit_help = subs.choices["fit"].format_help()
    assert re.search(r"--signal.*\(default:", fit_help, re.S)
    assert "FILE" in subs.choices["info"].format_help()


def test_shipped_models_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_path("adversary_pfn") == MODELS_DIR / "adversary_pfn.onnx"
    assert model_path("adversary_pfn").is_file()
    assert model_path("pfn.onnx") == Path("pfn.onnx")  # a file name is a path, not a name
    assert config.resolve_model("hl", tmp_path) == MODELS_DIR / "hl.onnx"
    assert config.resolve_model("my.onnx", tmp_path) == tmp_path / "my.onnx"
    assert reference("hl").path == MODELS_DIR / "hl.onnx"
    with pytest.raises(ModelError, match="no reference tagger named 'nope'"):
        reference("nope")


def test_readme_library_snippet_runs_from_any_directory(tmp_path, monkeypatch):
    """The README's library block, run from an empty directory (on 100 jets)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The library in a few lines\n\n```python\n(.*?)```", text, re.S)
    code = block.group(1)
    line = 'jets = hepsafe.data.load_sample("test")'
    assert line in code and "LearnedAdversary.load(\"adversary_pfn\"" in code
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code.replace(line, line + "[::75]"), "README.md", "exec"), scope)
    assert scope["report"].to_text() and len(scope["attacked"]) == len(scope["jets"])
    assert list(tmp_path.iterdir()) == []


def test_region_that_selects_no_jet_names_the_key(run_doc, tmp_path, capsys):
    """A region outside every jet of a sample is a one-line error naming 'region' and the
    sample, before any output is written."""
    doc = run_doc(max_jets=50, output=str(tmp_path / "out"))
    doc["region"] = {"jet_mass": [1000, 2000]}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(doc))
    assert cli.main(["run", str(tmp_path / "run.yaml"), "-q"]) == 2
    stderr_line(capsys, "hepsafe: error: ", "key 'region'", "selects no jet of sample",
                "1000 < jet mass < 2000 GeV")
    assert not (tmp_path / "out").exists()
