"""Templates on disk: ROOT files and JSON files, both round-tripping exactly.

A ROOT file holds one ``TH1D`` per present cell named ``{region}_{sample}_{variation}``
(cabinetry's convention) plus a ``TObjString`` ``hepsafe_templates`` describing the axes; a
JSON file has format ``hepsafe-templates/1``. Both keep float64 values, variances and edges.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe._files import atomic_path, open_root, read_json, write_json
from hepsafe._schemas import validate
from hepsafe.exceptions import TemplateError
from hepsafe.templates.booking import (
    Cell,
    Templates,
    check_edges,
    check_name,
    from_arrays,
    new_hist,
)

FORMAT = "hepsafe-templates/1"
#: name of the TObjString that describes the axes inside a templates ROOT file
ROOT_META_KEY = "hepsafe_templates"


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
    validate(d, "templates", what=source, error=TemplateError)
    hists = {}
    for rd in d["regions"]:
        region = check_name(rd["name"], "region")
        if region in hists:
            raise TemplateError(f"{source}: region {region!r} appears twice")
        edges = check_edges(rd["edges"], f"{source}: region {region!r}")
        samples, variations = list(rd["samples"]), list(rd["variations"])
        h = new_hist(edges, rd["observable"], rd.get("label"), samples, variations)
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
    return from_dict(read_json(path, TemplateError), source=str(path))


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
    with open_root(path, TemplateError) as f:
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
        full = new_hist(single.edges(region), name, label, rd["samples"], rd["variations"])
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
