"""Histogram templates (region x sample x variation), yield tables, ROOT/JSON I/O, hygiene.

One region holds one :class:`hist.Hist` with three axes: the observable (a tagger score or
any analysis variable; a ``Variable`` axis without flow bins), ``sample`` (``StrCategory``)
and ``variation`` (growable ``StrCategory``: ``nominal``, ``<name>_up``, ``<name>_down``),
with ``Weight`` storage (sum of weights and sum of squared weights per bin).

A cell (region, sample, variation) is *present* when any of its values or variances is
non-zero; a variation that was never filled for a sample has no effect on it.

On disk the templates are either a ROOT file, one ``TH1D`` per present cell named
``{region}_{sample}_{variation}`` (cabinetry's convention) plus a ``TObjString``
``hepsafe_templates`` describing the axes, or a JSON file of format ``hepsafe-templates/1``.
Both round-trip exactly (float64 values, variances and edges).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boost_histogram as bh
import hist
import jsonschema
import numpy as np

from .exceptions import TemplateError, TemplateWarning
from .io import atomic_path, write_json
from .report_tables import format_table

NOMINAL = "nominal"
UP, DOWN = "up", "down"
FORMAT = "hepsafe-templates/1"
#: name of the TObjString that describes the axes inside a templates ROOT file
ROOT_META_KEY = "hepsafe_templates"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

#: JSON schema of the templates file (validated when reading)
TEMPLATES_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format", "regions"],
    "properties": {
        "format": {"const": FORMAT},
        "regions": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "observable", "edges", "samples", "variations", "cells"],
                "properties": {
                    "name": {"type": "string"},
                    "observable": {"type": "string"},
                    "label": {"type": ["string", "null"]},
                    "edges": {"type": "array", "items": {"type": "number"}, "minItems": 2},
                    "samples": {"type": "array", "items": {"type": "string"}},
                    "variations": {"type": "array", "items": {"type": "string"}},
                    "cells": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["sample", "variation", "values", "variances"],
                            "properties": {
                                "sample": {"type": "string"},
                                "variation": {"type": "string"},
                                "values": {"type": "array", "items": {"type": "number"}},
                                "variances": {"type": "array", "items": {"type": "number"}},
                            },
                            "additionalProperties": False,
                        },
                    },
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


# --------------------------------------------------------------------------- names
def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is usable as a region/sample/variation name, else raise.

    Allowed: letters, digits and ``_ . + -``, starting with a letter or digit (these names
    become ROOT keys and pyhf channel, sample and modifier names).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise TemplateError(
            f"{what} name {name!r} is not allowed: use letters, digits and '_.+-', "
            "starting with a letter or digit"
        )
    return name


def variation_name(name: str, direction: str) -> str:
    """The variation label of systematic ``name`` in ``direction`` ("up" or "down")."""
    if direction not in (UP, DOWN):
        raise TemplateError(f"variation direction must be 'up' or 'down', got {direction!r}")
    return f"{check_name(name, 'systematic')}_{direction}"


def split_variation(variation: str) -> tuple[str, str] | None:
    """``"jes_up"`` -> ``("jes", "up")``; ``"nominal"`` -> None; anything else raises."""
    if variation == NOMINAL:
        return None
    for direction in (UP, DOWN):
        suffix = f"_{direction}"
        if variation.endswith(suffix) and len(variation) > len(suffix):
            return check_name(variation[: -len(suffix)], "systematic"), direction
    raise TemplateError(
        f"variation {variation!r} is neither 'nominal' nor '<name>_up' / '<name>_down'"
    )


# --------------------------------------------------------------------------- booking
def _new_hist(
    edges: np.ndarray,
    observable: str,
    label: str | None,
    samples: Sequence[str] = (),
    variations: Sequence[str] = (NOMINAL,),
) -> hist.Hist:
    with warnings.catch_warnings():
        # hist warns that "sample" is a keyword of fill(); the axes are filled by position
        warnings.filterwarnings("ignore", message=".*protected keyword.*")
        return hist.Hist(
            hist.axis.Variable(
                edges,
                name=observable,
                label=label or observable,
                underflow=False,
                overflow=False,
            ),
            hist.axis.StrCategory(list(samples), name="sample", growth=True),
            hist.axis.StrCategory(list(variations), name="variation", growth=True),
            storage=hist.storage.Weight(),
        )


def _check_edges(edges: Any, what: str) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise TemplateError(f"{what}: bin edges must be >= 2 finite, increasing numbers, got {e}")
    return e


def book(
    edges: Sequence[float] | np.ndarray,
    observable: str = "observable",
    label: str | None = None,
) -> hist.Hist:
    """An empty template histogram: observable (bins ``edges``) x sample x variation.

    ``edges`` has shape ``(n_bins + 1,)`` in the observable's unit (GeV for a mass, none
    for a score); ``label`` is the axis title (defaults to ``observable``).
    """
    return _new_hist(_check_edges(edges, f"book({observable!r})"), observable, label)


def fill(
    h: hist.Hist,
    values: np.ndarray,
    sample: str,
    variation: str = NOMINAL,
    weight: np.ndarray | float | None = None,
    clip: bool = False,
) -> hist.Hist:
    """A copy of ``h`` with ``values`` (shape ``(n,)``) added to cell (sample, variation).

    ``weight`` is a scalar or shape ``(n,)``; default 1. Values outside the edges are
    dropped, except with ``clip=True`` where they go into the first/last bin. A value equal
    to the last edge counts in the last bin. ``h`` itself is not modified.
    """
    check_name(sample, "sample")
    split_variation(variation)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise TemplateError(f"fill({sample}, {variation}): values must be 1-d, got {x.shape}")
    w = np.broadcast_to(np.asarray(1.0 if weight is None else weight, np.float64), x.shape)
    bad = ~np.isfinite(x) | ~np.isfinite(w)
    if bad.any():
        raise TemplateError(
            f"fill({sample}, {variation}): {int(bad.sum())} non-finite value(s) or weight(s)"
        )
    edges = h.axes[0].edges
    if clip:
        x = np.clip(x, edges[0], edges[-1])
    keep = (x >= edges[0]) & (x <= edges[-1])
    out = h.copy()
    out.fill(x[keep], sample, variation, weight=w[keep])
    return out


# --------------------------------------------------------------------------- container
def _present(values: np.ndarray, variances: np.ndarray) -> bool:
    return bool(np.any(values != 0) or np.any(variances != 0))


@dataclass(frozen=True, eq=False)
class Templates:
    """Templates of every region: ``hists[region]`` is observable x sample x variation.

    The histograms are copied on construction (the caller's are never modified) and their
    axes checked; use :func:`from_cells` to assemble templates from separate 1-d histograms.
    """

    hists: Mapping[str, hist.Hist]

    def __post_init__(self) -> None:
        if not self.hists:
            raise TemplateError("templates need at least one region")
        out: dict[str, hist.Hist] = {}
        for region, h in self.hists.items():
            check_name(region, "region")
            out[region] = _normalise_hist(region, h)
        object.__setattr__(self, "hists", out)

    # ---------------------------------------------------------------- queries
    @property
    def regions(self) -> list[str]:
        """Region names, in order."""
        return list(self.hists)

    def edges(self, region: str) -> np.ndarray:
        """Bin edges of ``region``, shape ``(n_bins + 1,)``."""
        return np.asarray(self._hist(region).axes[0].edges, dtype=np.float64).copy()

    def observable(self, region: str) -> tuple[str, str]:
        """``(name, label)`` of the observable axis of ``region``."""
        ax = self._hist(region).axes[0]
        return str(ax.name), str(ax.label)

    def sample_axis(self, region: str) -> list[str]:
        """All categories of the sample axis of ``region`` (present or not)."""
        return [str(s) for s in self._hist(region).axes[1]]

    def variation_axis(self, region: str) -> list[str]:
        """All categories of the variation axis of ``region`` (present or not)."""
        return [str(v) for v in self._hist(region).axes[2]]

    def samples(self, region: str) -> list[str]:
        """Samples of ``region`` with at least one present cell."""
        return [s for s in self.sample_axis(region) if self.variations(region, s)]

    def variations(self, region: str, sample: str) -> list[str]:
        """Present variations of (region, sample), in axis order."""
        return [v for v in self.variation_axis(region) if self.has(region, sample, v)]

    def systematics(self, region: str | None = None) -> list[str]:
        """Names of the systematics (``<name>`` of ``<name>_up/_down``), sorted."""
        names = set()
        for r in [region] if region is not None else self.regions:
            for s in self.samples(r):
                for v in self.variations(r, s):
                    parsed = split_variation(v)
                    if parsed:
                        names.add(parsed[0])
        return sorted(names)

    def has(self, region: str, sample: str, variation: str) -> bool:
        """True when cell (region, sample, variation) is present."""
        h = self._hist(region)
        if sample not in self.sample_axis(region) or variation not in self.variation_axis(region):
            return False
        return _present(*self._cell(h, sample, variation))

    def values(self, region: str, sample: str, variation: str = NOMINAL) -> np.ndarray:
        """Sum of weights per bin of a present cell, shape ``(n_bins,)`` (a copy)."""
        return self._get(region, sample, variation)[0]

    def variances(self, region: str, sample: str, variation: str = NOMINAL) -> np.ndarray:
        """Sum of squared weights per bin of a present cell, shape ``(n_bins,)`` (a copy)."""
        return self._get(region, sample, variation)[1]

    def cells(self) -> Iterator[tuple[str, str, str]]:
        """Every present cell as ``(region, sample, variation)``."""
        for r in self.regions:
            for s in self.samples(r):
                for v in self.variations(r, s):
                    yield r, s, v

    def hist1d(self, region: str, sample: str, variation: str = NOMINAL) -> hist.Hist:
        """The 1-d histogram of one present cell (a copy)."""
        self._get(region, sample, variation)
        return self._hist(region)[:, sample, variation].copy()

    # ---------------------------------------------------------------- helpers
    def _hist(self, region: str) -> hist.Hist:
        if region not in self.hists:
            raise TemplateError(f"no region {region!r} in the templates (have {self.regions})")
        return self.hists[region]

    @staticmethod
    def _cell(h: hist.Hist, sample: str, variation: str) -> tuple[np.ndarray, np.ndarray]:
        i = h.axes[1].index(sample)
        j = h.axes[2].index(variation)
        view = h.view(flow=False)
        return (
            np.array(view.value[:, i, j], dtype=np.float64),
            np.array(view.variance[:, i, j], dtype=np.float64),
        )

    def _get(self, region: str, sample: str, variation: str) -> tuple[np.ndarray, np.ndarray]:
        if not self.has(region, sample, variation):
            have = self.variations(region, sample) if sample in self.sample_axis(region) else []
            raise TemplateError(
                f"no template {region}_{sample}_{variation} (region {region!r}, sample "
                f"{sample!r} has variations {have})"
            )
        return self._cell(self._hist(region), sample, variation)


def _normalise_hist(region: str, h: hist.Hist) -> hist.Hist:
    """A fresh copy of ``h`` with a Variable observable axis, after checking its axes."""
    if not isinstance(h, hist.Hist) or h.ndim != 3:
        raise TemplateError(f"region {region!r}: expected a 3-d hist.Hist, got {type(h)}")
    obs, samp, var = h.axes
    if not isinstance(samp, hist.axis.StrCategory) or samp.name != "sample":
        raise TemplateError(f"region {region!r}: axis 1 must be StrCategory 'sample'")
    if not isinstance(var, hist.axis.StrCategory) or var.name != "variation":
        raise TemplateError(f"region {region!r}: axis 2 must be StrCategory 'variation'")
    if not issubclass(h.storage_type, bh.storage.Weight):
        raise TemplateError(f"region {region!r}: storage must be hist.storage.Weight")
    if not obs.traits.continuous:
        raise TemplateError(f"region {region!r}: axis 0 (observable) must be continuous")
    view = h.view(flow=True)
    flow = obs.traits.underflow, obs.traits.overflow
    if any(flow):
        inner = view[int(flow[0]) : view.shape[0] - int(flow[1])]
        lost = float(np.abs(view.value).sum() - np.abs(inner.value).sum())
        if lost != 0:
            raise TemplateError(
                f"region {region!r}: the observable axis has filled flow bins; book the "
                "templates with hepsafe.templates.book (no flow bins) or clip the values"
            )
    samples = [str(s) for s in samp]
    variations = [str(v) for v in var]
    for s in samples:
        check_name(s, "sample")
    for v in variations:
        split_variation(v)
    edges = _check_edges(obs.edges, f"region {region!r}")
    out = _new_hist(edges, str(obs.name or "observable"), str(obs.label), samples, variations)
    src = h.view(flow=False)
    dst = out.view(flow=False)
    n_s, n_v = len(samples), len(variations)
    dst.value[...] = np.asarray(src.value)[:, :n_s, :n_v]
    dst.variance[...] = np.asarray(src.variance)[:, :n_s, :n_v]
    if not (np.all(np.isfinite(dst.value)) and np.all(np.isfinite(dst.variance))):
        raise TemplateError(f"region {region!r}: non-finite values or variances")
    return out


# --------------------------------------------------------------------------- assembly
Cell = tuple[str, str, str]


def from_arrays(
    cells: Mapping[Cell, tuple[Any, Any, Any]],
    observables: Mapping[str, tuple[str, str | None]] | None = None,
) -> Templates:
    """Templates from ``{(region, sample, variation): (edges, values, variances)}``.

    ``edges`` has shape ``(n_bins + 1,)``, ``values`` and ``variances`` shape ``(n_bins,)``.
    Every cell of a region must have the nominal's binning (an error names both cells), and
    every sample with a variation needs a nominal. ``observables`` maps region to
    ``(name, label)``.
    """
    regions: dict[str, dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for (region, sample, variation), (edges, values, variances) in cells.items():
        check_name(region, "region")
        check_name(sample, "sample")
        split_variation(variation)
        name = f"{region}_{sample}_{variation}"
        e = _check_edges(edges, name)
        v = np.asarray(values, dtype=np.float64)
        var = np.asarray(variances, dtype=np.float64)
        if v.shape != (len(e) - 1,) or var.shape != v.shape:
            raise TemplateError(
                f"{name}: values {v.shape} and variances {var.shape} must both have shape "
                f"({len(e) - 1},) for {len(e)} edges"
            )
        regions.setdefault(region, {})[(sample, variation)] = (e, v, var)
    hists: dict[str, hist.Hist] = {}
    for region, rc in regions.items():
        samples = list(dict.fromkeys(s for s, _ in rc))
        variations = [NOMINAL] + [v for v in dict.fromkeys(v for _, v in rc) if v != NOMINAL]
        ref: tuple[str, np.ndarray] | None = None
        for s in samples:
            if (s, NOMINAL) not in rc:
                others = [v for ss, v in rc if ss == s]
                raise TemplateError(
                    f"missing nominal: no template {region}_{s}_{NOMINAL} "
                    f"(region {region!r}, sample {s!r} has only {others})"
                )
            if ref is None:
                ref = (f"{region}_{s}_{NOMINAL}", rc[(s, NOMINAL)][0])
        assert ref is not None
        for (s, v), (e, _, _) in rc.items():
            if len(e) != len(ref[1]) or not np.array_equal(e, ref[1]):
                raise TemplateError(
                    f"binning of {region}_{s}_{v} (edges {e.tolist()}) differs from "
                    f"{ref[0]} (edges {ref[1].tolist()})"
                )
        name, label = (observables or {}).get(region, ("observable", None))
        h = _new_hist(ref[1], name, label, samples, variations)
        view = h.view(flow=False)
        for (s, v), (_, vals, var) in rc.items():
            i, j = samples.index(s), variations.index(v)
            view.value[:, i, j] = vals
            view.variance[:, i, j] = var
        hists[region] = h
    return Templates(hists)


def from_cells(
    cells: Mapping[Cell, hist.Hist],
    observables: Mapping[str, tuple[str, str | None]] | None = None,
) -> Templates:
    """Templates from 1-d histograms ``{(region, sample, variation): hist.Hist}``.

    Each histogram needs Weight storage (or plain values, taken as their own variances).
    """
    arrays: dict[Cell, tuple[Any, Any, Any]] = {}
    for key, h in cells.items():
        if h.ndim != 1:
            raise TemplateError(f"{'_'.join(key)}: expected a 1-d histogram, got {h.ndim}-d")
        values = np.asarray(h.values(flow=False), dtype=np.float64)
        variances = h.variances(flow=False)
        arrays[key] = (
            h.axes[0].edges,
            values,
            values.copy() if variances is None else np.asarray(variances, np.float64),
        )
    return from_arrays(arrays, observables)


def _canonical(variations: Sequence[str]) -> list[str]:
    """Variations ordered nominal first, then per systematic (first seen) up before down."""
    names = [p[0] for v in variations if (p := split_variation(v))]
    ordered = [NOMINAL] if NOMINAL in variations else []
    for n in dict.fromkeys(names):
        ordered += [v for v in (variation_name(n, UP), variation_name(n, DOWN)) if v in variations]
    return ordered


def _rebuilt(
    t: Templates,
    region_cells: Mapping[str, Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]]],
    edges: Mapping[str, np.ndarray] | None = None,
) -> Templates:
    """New templates with the same axes as ``t`` and cell contents from ``region_cells``."""
    hists = {}
    for region in t.regions:
        name, label = t.observable(region)
        e = t.edges(region) if edges is None or region not in edges else edges[region]
        samples = t.sample_axis(region)
        variations = t.variation_axis(region)
        extra = [v for _, v in region_cells[region] if v not in variations]
        variations = _canonical(variations + list(dict.fromkeys(extra)))
        h = _new_hist(e, name, label, samples, variations)
        view = h.view(flow=False)
        for (s, v), (vals, var) in region_cells[region].items():
            view.value[:, samples.index(s), variations.index(v)] = vals
            view.variance[:, samples.index(s), variations.index(v)] = var
        hists[region] = h
    return Templates(hists)


def _contents(t: Templates) -> dict[str, dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]]:
    out: dict[str, dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]] = {}
    for r in t.regions:
        out[r] = {}
        for s in t.samples(r):
            for v in t.variations(r, s):
                out[r][(s, v)] = (t.values(r, s, v), t.variances(r, s, v))
    return out


# --------------------------------------------------------------------------- yields
def yields_table(t: Templates) -> list[dict[str, Any]]:
    """Yield and statistical error of every present cell.

    Rows ``{"region", "sample", "variation", "yield", "stat_error"}``: the sum of weights
    and the square root of the sum of squared weights over the bins.
    """
    return [
        {
            "region": r,
            "sample": s,
            "variation": v,
            "yield": float(t.values(r, s, v).sum()),
            "stat_error": float(np.sqrt(t.variances(r, s, v).sum())),
        }
        for r, s, v in t.cells()
    ]


def format_yields(t: Templates) -> str:
    """The yields table as text; variations also as a percentage of the nominal."""
    rows = []
    for row in yields_table(t):
        nom = float(t.values(row["region"], row["sample"]).sum())
        rel = None if nom == 0 else 100.0 * (row["yield"] / nom - 1.0)
        rows.append(
            [row["region"], row["sample"], row["variation"], row["yield"], row["stat_error"], rel]
        )
    return format_table(
        ["region", "sample", "variation", "yield", "stat error", "vs nominal [%]"],
        rows,
        floatfmt=".2f",
    )


# --------------------------------------------------------------------------- JSON
def to_dict(t: Templates) -> dict[str, Any]:
    """The templates as a JSON-ready dict (format ``hepsafe-templates/1``)."""
    regions = []
    for r in t.regions:
        name, label = t.observable(r)
        regions.append(
            {
                "name": r,
                "observable": name,
                "label": label,
                "edges": t.edges(r).tolist(),
                "samples": t.sample_axis(r),
                "variations": t.variation_axis(r),
                "cells": [
                    {
                        "sample": s,
                        "variation": v,
                        "values": t.values(r, s, v).tolist(),
                        "variances": t.variances(r, s, v).tolist(),
                    }
                    for s in t.samples(r)
                    for v in t.variations(r, s)
                ],
            }
        )
    return {"format": FORMAT, "regions": regions}


def from_dict(d: Mapping[str, Any], source: str = "templates") -> Templates:
    """Templates from a dict of format ``hepsafe-templates/1`` (validated first)."""
    errors = sorted(
        jsonschema.Draft202012Validator(TEMPLATES_SCHEMA).iter_errors(d),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        e = errors[0]
        key = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise TemplateError(f"{source}: key '{key}': {e.message}")
    hists = {}
    for rd in d["regions"]:
        region = check_name(rd["name"], "region")
        if region in hists:
            raise TemplateError(f"{source}: region {region!r} appears twice")
        edges = _check_edges(rd["edges"], f"{source}: region {region!r}")
        samples, variations = list(rd["samples"]), list(rd["variations"])
        h = _new_hist(edges, rd["observable"], rd.get("label"), samples, variations)
        view = h.view(flow=False)
        for cell in rd["cells"]:
            s, v = cell["sample"], cell["variation"]
            where = f"{source}: {region}_{s}_{v}"
            if s not in samples or v not in variations:
                raise TemplateError(f"{where}: sample or variation not listed on the axes")
            vals = np.asarray(cell["values"], np.float64)
            var = np.asarray(cell["variances"], np.float64)
            if vals.shape != (len(edges) - 1,) or var.shape != vals.shape:
                raise TemplateError(
                    f"{where}: {len(vals)} values and {len(var)} variances, expected "
                    f"{len(edges) - 1} (binning differs from the region's edges)"
                )
            view.value[:, samples.index(s), variations.index(v)] = vals
            view.variance[:, samples.index(s), variations.index(v)] = var
        hists[region] = h
    return Templates(hists)


def write_json_templates(t: Templates, path: str | os.PathLike[str]) -> Path:
    """Write the templates to a JSON file, atomically."""
    return write_json(path, to_dict(t))


def read_json_templates(path: str | os.PathLike[str]) -> Templates:
    """Read templates written by :func:`write_json_templates`."""
    p = Path(path)
    if not p.exists():
        raise TemplateError(f"{path}: no such file")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{path}: not valid JSON ({exc})") from exc
    return from_dict(d, source=str(path))


# --------------------------------------------------------------------------- ROOT
def root_name(region: str, sample: str, variation: str) -> str:
    """ROOT key of a template: ``{region}_{sample}_{variation}``."""
    return f"{region}_{sample}_{variation}"


def write_root_templates(t: Templates, path: str | os.PathLike[str]) -> Path:
    """Write one ``TH1D`` per present cell (``{region}_{sample}_{variation}``), atomically.

    A ``TObjString`` named ``hepsafe_templates`` records the axes, so reading back is exact.
    """
    import uproot

    meta: dict[str, Any] = {"format": FORMAT, "regions": []}
    for r in t.regions:
        name, label = t.observable(r)
        meta["regions"].append(
            {
                "name": r,
                "observable": name,
                "label": label,
                "samples": t.sample_axis(r),
                "variations": t.variation_axis(r),
                "cells": [
                    [s, v, root_name(r, s, v)] for s in t.samples(r) for v in t.variations(r, s)
                ],
            }
        )
    with atomic_path(path) as tmp:
        with uproot.recreate(tmp) as f:
            for r, s, v in t.cells():
                f[root_name(r, s, v)] = t.hist1d(r, s, v)
            f[ROOT_META_KEY] = json.dumps(meta, sort_keys=True)
    return Path(path)


def read_root_templates(
    path: str | os.PathLike[str],
    regions: Sequence[str] | None = None,
    samples: Sequence[str] | None = None,
) -> Templates:
    """Read templates from a ROOT file.

    A file written by :func:`write_root_templates` is read exactly. Any other file is read
    by name, ``{region}_{sample}_{variation}``, for the given ``regions`` and ``samples``
    (both needed then, since names may contain underscores).
    """
    import uproot

    p = Path(path)
    if not p.exists():
        raise TemplateError(f"{path}: no such file")
    try:
        f = uproot.open(p)
    except Exception as exc:  # uproot raises many kinds on a corrupt file
        raise TemplateError(f"{path}: not a readable ROOT file ({exc})") from exc
    with f:
        if ROOT_META_KEY in f:
            return _read_root_meta(f, str(path), json.loads(str(f[ROOT_META_KEY])))
        if not regions or not samples:
            raise TemplateError(
                f"{path}: no '{ROOT_META_KEY}' description; pass the region and sample names "
                "to read histograms named {region}_{sample}_{variation}"
            )
        cells: dict[Cell, tuple[Any, Any, Any]] = {}
        observables: dict[str, tuple[str, str | None]] = {}
        for key, cls in f.classnames(recursive=False, cycle=False).items():
            if not cls.startswith("TH1"):
                continue
            # the longest matching (region, sample) prefix wins: "SR_W_x_nominal" is sample
            # "W_x" when both "W" and "W_x" are given
            pairs = sorted(
                ((r, s) for r in regions for s in samples), key=lambda rs: -len(rs[0] + rs[1])
            )
            for r, s in pairs:
                prefix = f"{r}_{s}_"
                if key.startswith(prefix):
                    obj = f[key]
                    cells[(r, s, key[len(prefix) :])] = _th1_arrays(obj)
                    title = str(obj.member("fTitle") or "") or None
                    observables.setdefault(r, ("observable", title))
                    break
        if not cells:
            raise TemplateError(
                f"{path}: no TH1 named {{region}}_{{sample}}_{{variation}} for regions "
                f"{list(regions)} and samples {list(samples)}"
            )
        return from_arrays(cells, observables)


def _th1_arrays(obj: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.asarray(obj.values(flow=False), np.float64)
    variances = obj.variances(flow=False)
    return (
        np.asarray(obj.axis().edges(), np.float64),
        values,
        values.copy() if variances is None else np.asarray(variances, np.float64),
    )


def _read_root_meta(f: Any, source: str, meta: Mapping[str, Any]) -> Templates:
    if meta.get("format") != FORMAT:
        raise TemplateError(f"{source}: '{ROOT_META_KEY}' has format {meta.get('format')!r}")
    hists = {}
    for rd in meta["regions"]:
        region = rd["name"]
        cells: dict[Cell, tuple[Any, Any, Any]] = {}
        for s, v, key in rd["cells"]:
            if key not in f:
                raise TemplateError(f"{source}: histogram {key!r} listed but absent")
            cells[(region, s, v)] = _th1_arrays(f[key])
        single = from_arrays(cells, {region: (rd["observable"], rd["label"])})
        name, label = single.observable(region)
        full = _new_hist(single.edges(region), name, label, rd["samples"], rd["variations"])
        view = full.view(flow=False)
        for s in single.samples(region):
            for v in single.variations(region, s):
                i, j = rd["samples"].index(s), rd["variations"].index(v)
                view.value[:, i, j] = single.values(region, s, v)
                view.variance[:, i, j] = single.variances(region, s, v)
        hists[region] = full
    return Templates(hists)


# --------------------------------------------------------------------------- any format
def write_templates(t: Templates, path: str | os.PathLike[str]) -> Path:
    """Write templates to ``path``: ROOT for ``.root``, JSON for ``.json``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".root":
        return write_root_templates(t, path)
    if suffix == ".json":
        return write_json_templates(t, path)
    raise TemplateError(f"{path}: templates are written as .root or .json, not {suffix!r}")


def read_templates(path: str | os.PathLike[str], **kwargs: Any) -> Templates:
    """Read templates from ``path``: ROOT for ``.root``, JSON for ``.json``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".root":
        return read_root_templates(path, **kwargs)
    if suffix == ".json":
        return read_json_templates(path)
    raise TemplateError(f"{path}: templates are read from .root or .json, not {suffix!r}")


# --------------------------------------------------------------------------- hygiene
def check(t: Templates, exclude: Sequence[str] = ()) -> None:
    """Raise TemplateError for templates a fit cannot use.

    Every sample on a region's axis (except those in ``exclude``, e.g. observed data) needs
    a nominal with a positive total yield, and every variation a positive total yield.
    """
    for r in t.regions:
        for s in t.sample_axis(r):
            if s in exclude:
                continue
            present = t.variations(r, s)
            if not present:
                raise TemplateError(
                    f"template {r}_{s}_{NOMINAL} has total yield 0 (sample {s!r} is on the "
                    f"axis of region {r!r} but every bin is empty)"
                )
            if NOMINAL not in present:
                raise TemplateError(
                    f"missing nominal: no template {r}_{s}_{NOMINAL} (region {r!r}, sample "
                    f"{s!r} has only {present})"
                )
            for v in present:
                total = float(t.values(r, s, v).sum())
                if not total > 0:
                    raise TemplateError(
                        f"template {r}_{s}_{v} has total yield {total:g}; a fit needs a "
                        "positive yield for every sample and variation"
                    )


def select_systematics(t: Templates, names: Sequence[str]) -> Templates:
    """New templates keeping only the nominals and the systematics ``names``."""
    have = t.systematics()
    missing = [n for n in names if n not in have]
    if missing:
        raise TemplateError(f"systematics {missing} not in the templates (have {have})")
    contents = _contents(t)
    for rc in contents.values():
        for s, v in list(rc):
            parsed = split_variation(v)
            if parsed and parsed[0] not in names:
                del rc[(s, v)]
    return _rebuilt(t, contents)


def clip_negative(t: Templates, floor: float = 0.0, exclude: Sequence[str] = ()) -> Templates:
    """New templates with bin values below ``floor`` set to ``floor``, with a TemplateWarning.

    The warning names every clipped template and its bins. Samples in ``exclude`` are kept.
    """
    contents = _contents(t)
    clipped = []
    for r, rc in contents.items():
        for (s, v), (vals, var) in rc.items():
            bad = np.nonzero(vals < floor)[0]
            if len(bad) and s not in exclude:
                clipped.append(f"{r}_{s}_{v} bins {bad.tolist()}")
                rc[(s, v)] = (np.where(vals < floor, floor, vals), var)
    if clipped:
        warnings.warn(
            f"clipped yields below {floor:g} to {floor:g} in: {'; '.join(clipped)}",
            TemplateWarning,
            stacklevel=2,
        )
    return _rebuilt(t, contents)


def symmetrize(t: Templates, names: Sequence[str] | None = None) -> Templates:
    """New templates where a one-sided systematic gets its mirror image.

    For a systematic with only ``<name>_up`` the down template is ``2 * nominal - up`` (and
    vice versa), with the same variances. ``names`` restricts which systematics (default
    all). Mirrors may be negative in some bins; :func:`clip_negative` handles them.
    """
    contents = _contents(t)
    for r, rc in contents.items():
        for s in t.samples(r):
            present = t.variations(r, s)
            for name in t.systematics(r):
                if names is not None and name not in names:
                    continue
                up, down = variation_name(name, UP), variation_name(name, DOWN)
                if (up in present) == (down in present):
                    continue
                have, want = (up, down) if up in present else (down, up)
                nom = rc[(s, NOMINAL)][0]
                vals, var = rc[(s, have)]
                rc[(s, want)] = (2.0 * nom - vals, var.copy())
    return _rebuilt(t, contents)


def smooth_ratio(nominal: np.ndarray, varied: np.ndarray, passes: int = 1) -> np.ndarray:
    """Smooth a variation: its ratio to nominal is smoothed with a (1, 2, 1) kernel.

    ``nominal`` and ``varied`` have shape ``(n_bins,)``; the result has the varied total
    (normalisation kept, shape smoothed). Bins with zero nominal keep ratio 1.
    """
    nom = np.asarray(nominal, np.float64)
    var = np.asarray(varied, np.float64)
    if len(nom) < 3 or passes < 1:
        return var.copy()
    ratio = np.divide(var, nom, out=np.ones_like(nom), where=nom != 0)
    delta = ratio - 1.0
    for _ in range(passes):
        padded = np.concatenate([delta[:1], delta, delta[-1:]])
        delta = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    out = nom * (1.0 + delta)
    total, new_total = var.sum(), out.sum()
    if new_total != 0:
        out = out * (total / new_total)
    return out


def smooth(t: Templates, names: Sequence[str] | None = None, passes: int = 1) -> Templates:
    """New templates whose variations (``names``, default all) are smoothed per bin.

    See :func:`smooth_ratio`; variances are kept.
    """
    contents = _contents(t)
    for rc in contents.values():
        for (s, v), (vals, var) in list(rc.items()):
            parsed = split_variation(v)
            if parsed is None or (names is not None and parsed[0] not in names):
                continue
            rc[(s, v)] = (smooth_ratio(rc[(s, NOMINAL)][0], vals, passes), var)
    return _rebuilt(t, contents)


def merge_plan(values: np.ndarray, variances: np.ndarray, max_rel_error: float) -> list[int]:
    """Indices of the edges to keep so that every merged bin has rel. stat. error <= max.

    ``values`` and ``variances`` (shape ``(n_bins,)``) are the total to judge (for example
    the summed background). Bins are merged left to right; a short last group joins the
    previous one. Returns edge indices, shape ``(n_merged + 1,)``, first 0 and last n_bins.
    """
    if not max_rel_error > 0:
        raise TemplateError(f"merge: max_rel_error must be > 0, got {max_rel_error}")
    keep = [0]
    acc_v = acc_var = 0.0
    n = len(values)
    for i in range(n):
        acc_v += float(values[i])
        acc_var += float(variances[i])
        if acc_v > 0 and np.sqrt(acc_var) <= max_rel_error * acc_v:
            keep.append(i + 1)
            acc_v = acc_var = 0.0
    if keep[-1] != n:
        if len(keep) > 1:
            keep[-1] = n
        else:
            keep.append(n)
    return keep


def rebin(t: Templates, region: str, keep: Sequence[int]) -> Templates:
    """New templates where ``region`` keeps only edges ``keep`` (indices into its edges).

    Values and variances of merged bins are summed; other regions are unchanged.
    """
    edges = t.edges(region)
    k = np.asarray(keep, dtype=np.int64)
    if len(k) < 2 or k[0] != 0 or k[-1] != len(edges) - 1 or np.any(np.diff(k) <= 0):
        raise TemplateError(
            f"rebin({region!r}): keep must increase from 0 to {len(edges) - 1}, got {list(keep)}"
        )
    contents = _contents(t)
    contents[region] = {
        key: (np.add.reduceat(vals, k[:-1]), np.add.reduceat(var, k[:-1]))
        for key, (vals, var) in contents[region].items()
    }
    return _rebuilt(t, contents, edges={region: edges[k]})


def merge_low_stat(
    t: Templates, max_rel_error: float = 0.2, samples: Sequence[str] | None = None
) -> Templates:
    """New templates whose bins are merged until the nominal total of ``samples`` (default:
    every sample) has a relative statistical error <= ``max_rel_error`` in every bin."""
    out = t
    for r in t.regions:
        names = [s for s in t.samples(r) if samples is None or s in samples]
        if not names:
            continue
        vals = sum(t.values(r, s) for s in names)
        var = sum(t.variances(r, s) for s in names)
        keep = merge_plan(np.asarray(vals), np.asarray(var), max_rel_error)
        if len(keep) != len(t.edges(r)):
            out = rebin(out, r, keep)
    return out
