"""``AdversarialProcessor``: a complete coffea processor around the step, and its outputs.

``process(events)`` returns the accumulator::

    {"templates": {region: hist (observable x sample x variation)},
     "cutflow": {dataset: {"events": n, "jets": n, "jets_selected": n}}}

(``jets_selected``: nominal jets filled into the templates.) With eager or virtual arrays
(coffea ``Runner``) the values are filled histograms and ints; with dask-awkward events
(``apply_to_fileset``) they are dask collections to compute. :func:`to_templates` turns the
accumulated histograms into :class:`~hepsafe.templates.booking.Templates` for
:func:`hepsafe.fit.results.fit_templates`; :func:`scale_samples` normalises samples afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor

from hepsafe.coffea.step import AdversarialSystematics
from hepsafe.exceptions import TemplateError
from hepsafe.templates import booking as T


def _where(metadata: Mapping[str, Any]) -> str:
    name = metadata.get("filename", metadata.get("dataset", "events"))
    start, stop = metadata.get("entrystart"), metadata.get("entrystop")
    return f"{name} [entries {start}:{stop}]" if start is not None else str(name)


class AdversarialProcessor(processor.ProcessorABC):
    """Runs :class:`AdversarialSystematics` on each chunk; ``region`` names the templates'
    region. Pickles light (the step holds paths and options, no ONNX session)."""

    def __init__(self, step: AdversarialSystematics | None = None, region: str = "SR") -> None:
        self.step = step if step is not None else AdversarialSystematics()
        self.region = T.check_name(region, "region")

    def process(self, events: Any) -> dict[str, Any]:
        """Score, attach and fill one chunk; returns the accumulator of the module docstring."""
        meta = dict(getattr(events, "metadata", None) or {})
        dataset = str(meta.get("dataset", "dataset"))
        step = self.step
        table = step.table_of(events, where=_where(meta))
        # the varied scores, attached as coffea users expect (jets.hepsafe_systematics...);
        # a processor of one's own would go on from here with more selections
        jets = step.attach(step.source_of(events).jets(events), table)
        samples = step.sample_names(dataset)
        nominal = [score for _, v, score, _ in step.selections(table, dataset)
                   if v == T.NOMINAL]
        if isinstance(table, ak.Array):
            h = step.fill(step.book(samples), table, dataset)
            cutflow = {
                "events": len(events),
                "jets": int(ak.count(jets[f"{step.prefix}_score"], axis=None)),
                "jets_selected": int(sum(len(x) for x in nominal)),
            }
        else:
            import dask_awkward as dak

            h = step.fill(step.book_dask(samples), table, dataset)
            cutflow = {
                "events": dak.num(events, axis=0),
                "jets": dak.count(jets[f"{step.prefix}_score"], axis=None),
                "jets_selected": sum(dak.num(x, axis=0) for x in nominal),
            }
        return {"templates": {self.region: h}, "cutflow": {dataset: cutflow}}

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        """Put the histograms' categories in canonical order (samples sorted, variations as
        configured), so the output does not depend on the order chunks were merged."""
        if "templates" in accumulator:
            accumulator["templates"] = {
                r: canonical(h, self.step.variations) if isinstance(h, hist.Hist) else h
                for r, h in accumulator["templates"].items()
            }
        return accumulator


def canonical(h: T.WeightHist, variations: list[str] | None = None) -> T.WeightHist:
    """A copy of a template histogram with samples sorted and variations in the order
    ``variations`` (others after them, in their order)."""
    samples = sorted(str(s) for s in h.axes[1])
    have = [str(v) for v in h.axes[2]]
    order = [v for v in (variations or []) if v in have] + [
        v for v in have if v not in (variations or [])]
    out = T.new_hist(np.asarray(h.axes[0].edges), str(h.axes[0].name), str(h.axes[0].label),
                      samples, order)
    src = h.view(flow=False)
    dst = out.view(flow=False)
    for i, s in enumerate(samples):
        si = h.axes[1].index(s)
        for j, v in enumerate(order):
            vj = h.axes[2].index(v)
            dst.value[:, i, j] = src.value[:, si, vj]
            dst.variance[:, i, j] = src.variance[:, si, vj]
    return out


def to_templates(output: Mapping[str, Any]) -> T.Templates:
    """The processor output's histograms as :class:`~hepsafe.templates.booking.Templates`."""
    if "templates" not in output:
        raise TemplateError("processor output has no 'templates' (keys: "
                            f"{sorted(output)}); expected AdversarialProcessor's output")
    return T.Templates(dict(output["templates"]))


def scale_samples(t: T.Templates, factors: Mapping[str, float]) -> T.Templates:
    """Templates with each sample's values scaled by ``factors[sample]`` (variances by its
    square), e.g. cross section x luminosity / sum of weights; other samples unchanged."""
    unknown = sorted(set(factors) - {s for r in t.regions for s in t.sample_axis(r)})
    if unknown:
        raise TemplateError(f"scale_samples: sample(s) {unknown} not in the templates")
    out = {}
    for r in t.regions:
        h = t.hists[r].copy()
        view = h.view(flow=False)
        for s, f in factors.items():
            if s in t.sample_axis(r):
                i = h.axes[1].index(s)
                view.value[:, i, :] *= float(f)
                view.variance[:, i, :] *= float(f) ** 2
        out[r] = h
    return T.Templates(out)
