"""Report figures: the plotting functions draw into the axes they are given (or a new figure)
and return the figure without writing anything; the report stage styles and saves them
atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("mplhep")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hepsafe import metrics  # noqa: E402
from hepsafe.data.jets import JetBatch  # noqa: E402
from hepsafe.perturbation.variations import apply_variation  # noqa: E402
from hepsafe.report import figures, plots  # noqa: E402
from hepsafe.tagger.onnx import OnnxTagger  # noqa: E402
from hepsafe.validation.checks import gate  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Sample:
    name: str
    role: str
    jets: JetBatch


@dataclass
class Varied:
    key: str
    jets: dict[str, JetBatch]
    scores: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def run(wq_test: JetBatch, pfn: OnnxTagger):
    """A small run's figure inputs: 150 W and 300 QCD test jets, the energy scale up."""
    jets = {"W": wq_test[wq_test.label == 1][:150], "QCD": wq_test[wq_test.label == 0][:300]}
    samples = {"W": Sample("W", "signal", jets["W"]), "QCD": Sample("QCD", "background",
                                                                   jets["QCD"])}
    nominal = {n: pfn.predict(j) for n, j in jets.items()}
    up = {n: apply_variation("scale_all_up", j) for n, j in jets.items()}
    varied = [Varied("escale_up", up, {n: pfn.predict(j) for n, j in up.items()})]
    gates = {"escale_up": gate(jets["QCD"], up["QCD"], nominal["QCD"],
                               varied[0].scores["QCD"])}
    fit = {"impacts": [{"name": "escale", "up": 0.1, "down": -0.08},
                       {"name": "lumi", "up": 0.02, "down": -0.02}],
           "pulls": [{"name": "escale", "pull": 0.3, "value": 0.3, "error": 0.9, "prefit": 0.0,
                      "prefit_error": 1.0, "constraint": "constrained_by_normal"}]}
    return samples, nominal, varied, gates, fit


def _figures(run) -> dict[str, object]:
    samples, nominal, varied, gates, fit = run
    return {
        "roc": plots.roc(samples, nominal, varied),
        "scores": plots.scores(samples, nominal, varied, 0.5),
        "control": plots.control(samples["QCD"].jets, nominal["QCD"], varied, "QCD", gates),
        "impacts": plots.impacts(fit),
    }


def test_plots_return_new_figures_and_write_nothing(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(plt.get_fignums())
    figs = _figures(run)
    try:
        assert {k: len(f.axes) for k, f in figs.items()} == {
            "roc": 1, "scores": 2, "control": 3, "impacts": 2}
        assert len(set(plt.get_fignums()) - before) == 4
        assert os.listdir(tmp_path) == []
    finally:
        for f in figs.values():
            plt.close(f)


def test_plots_draw_into_the_given_axes(run):
    samples, nominal, varied, gates, fit = run
    fig, axes = plt.subplots(2, 4)
    try:
        assert plots.roc(samples, nominal, varied, ax=axes[0][0]) is fig
        assert plots.scores(samples, nominal, varied, 0.5, ax=axes[0][1:3]) is fig
        assert plots.control(samples["QCD"].jets, nominal["QCD"], varied, "QCD", gates,
                             ax=axes[1][:3]) is fig
        assert plots.impacts(fit, ax=[axes[0][3], axes[1][3]]) is fig
        # the ROC legend quotes the AUC of each curve
        labels = [line.get_label() for line in axes[0][0].get_lines()]
        auc = metrics.roc_auc(nominal["W"], nominal["QCD"], samples["W"].jets.weight,
                              samples["QCD"].jets.weight)
        assert labels[0] == f"nominal (AUC {auc:.3f})" and labels[1].startswith("escale_up")
        # the control panels quote the gate's KS statistic
        ks = gates["escale_up"].stats("jet_mass").ks
        legend = [t.get_text() for t in axes[1][1].get_legend().get_texts()]
        assert legend == ["nominal", f"escale_up (KS {ks:.3f})"]
        assert [t.get_text() for t in axes[0][3].get_yticklabels()] == ["lumi", "escale"]
        with pytest.raises(ValueError, match="expected 3 axes, got 2"):
            plots.control(samples["QCD"].jets, nominal["QCD"], varied, "QCD", gates,
                          ax=axes[1][:2])
    finally:
        plt.close(fig)


def test_save_figure_is_atomic_and_closes(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = figures.save_figure(fig, tmp_path / "line.png")
    assert path == tmp_path / "line.png" and path.read_bytes().startswith(PNG)
    assert not plt.fignum_exists(fig.number)
    assert os.listdir(tmp_path) == ["line.png"]
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="not-a-format"):
        figures.save_figure(fig, tmp_path / "bad.not-a-format")
    plt.close(fig)
    assert os.listdir(tmp_path) == ["line.png"]  # no partial file, no temporary left


def test_write_figures_styles_only_within_and_names_the_files(run, tmp_path):
    samples, nominal, varied, gates, fit = run
    size = matplotlib.rcParams["font.size"]
    with figures.report_style():
        assert matplotlib.rcParams["font.size"] == figures.STYLE["font.size"]
    names = figures.write_figures(tmp_path, samples, nominal, varied, gates, fit, 0.5, "QCD")
    assert names == ["roc.png", "scores.png", "control.png", "impacts.png", "pulls.png",
                     "ranking.png"]
    assert set(names) == set(figures.CAPTIONS)
    for n in names:
        assert (tmp_path / n).read_bytes().startswith(PNG)
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    assert matplotlib.rcParams["font.size"] == size
    # without variations and fit: no control plot, no impacts
    assert figures.write_figures(Path(tmp_path / "bare"), samples, nominal, [], {}, {}, 0.5,
                                 "QCD") == ["roc.png", "scores.png"]
