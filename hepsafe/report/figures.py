"""The figures of a run's report: the report's style (mplhep CMS, headless Agg backend),
atomic PNG files (:func:`hepsafe._files.atomic_path`) and their captions. The drawing itself
is :mod:`hepsafe.report.plots`. Needs the ``plot`` extra (matplotlib, mplhep)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepsafe._files import atomic_path
from hepsafe.report import plots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hepsafe.validation.report import GateReport

#: figure file -> caption (in the order they appear in the report)
CAPTIONS = {
    "roc.png": "ROC curves, nominal and under each variation/attack (signal vs background).",
    "scores.png": "Tagger score per sample: nominal (filled) and varied (lines).",
    "control.png": "Control sample: nominal vs perturbed jet pT, jet mass and score, with the "
                   "gate's KS statistic.",
    "impacts.png": "Pulls and impacts of the nuisance parameters on mu (Asimov fit).",
    "pulls.png": "Post-fit pulls of the Gaussian parameters (left) and each adversarial theta "
                 "on its [0, 1] range with its profiled 68 % upper edge (right).",
    "ranking.png": "Ranking of the parameters by their impact on mu; an adversarial theta by "
                   "its worst-case shift (theta fixed at 0 and at 1).",
}

#: the report's settings on top of mplhep's CMS style
STYLE = {"font.size": 12, "axes.titlesize": 12, "axes.labelsize": 12, "legend.fontsize": 9,
         "figure.dpi": 80}


@contextlib.contextmanager
def report_style() -> Iterator[None]:
    """Within the block: the Agg backend (no display needed) and the report's style, mplhep's
    CMS style with :data:`STYLE` on top; the previous style comes back after it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    with plt.style.context([mplhep.style.CMS, STYLE]):
        yield


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Lay out ``fig``, write it to ``path`` atomically (the format from the file's suffix)
    and close it; return the path."""
    import matplotlib.pyplot as plt

    target = Path(path)
    if fig.get_layout_engine() is None:  # a figure made with its own layout keeps it
        fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".") or None)
    plt.close(fig)
    return target


def write_figures(out: Path, samples: Mapping[str, plots.SampleLike],
                  nominal: Mapping[str, np.ndarray], varied: Sequence[plots.VariedLike],
                  gates: Mapping[str, GateReport], fit: Mapping[str, Any], threshold: float,
                  control_name: str, region: tuple[Any, Any, Any] | None = None) -> list[str]:
    """Every figure of a run into ``out`` (``roc.png``, ``scores.png``, ``control.png`` with
    variations, ``impacts.png`` with a fit), in the report's style; returns the file names
    (empty without the ``plot`` extra). ``region``: ``(samples, nominal, varied)`` restricted
    to the signal region, for the ROC and score plots (the control plot shows all control
    jets, as the gate sees them)."""
    try:
        import matplotlib  # noqa: F401
        import mplhep  # noqa: F401
    except ImportError:
        return []
    sr_samples, sr_nominal, sr_varied = region or (samples, nominal, varied)
    with report_style():
        files = [save_figure(plots.roc(sr_samples, sr_nominal, sr_varied), out / "roc.png"),
                 save_figure(plots.scores(sr_samples, sr_nominal, sr_varied, threshold),
                             out / "scores.png")]
        if varied:
            files.append(save_figure(
                plots.control(samples[control_name].jets, nominal[control_name], varied,
                              control_name, gates),
                out / "control.png"))
        if fit.get("impacts"):
            files.append(save_figure(plots.impacts(fit), out / "impacts.png"))
        if fit.get("pulls"):
            from hepsafe.report import fit_figures

            files.append(save_figure(fit_figures.pulls_figure(fit), out / "pulls.png"))
            files.append(save_figure(fit_figures.ranking_figure(fit), out / "ranking.png"))
    return [f.name for f in files]
