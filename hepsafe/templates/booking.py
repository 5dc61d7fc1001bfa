"""Histogram templates (region x sample x variation): names, booking and filling, the
:class:`Templates` container, assembly from arrays or 1-d histograms, yield tables.

One region holds one :class:`hist.Hist` with three axes: the observable (a tagger score or
any analysis variable; a ``Variable`` axis without flow bins), ``sample`` (``StrCategory``)
and ``variation`` (growable ``StrCategory``: ``nominal``, ``<name>_up``, ``<name>_down``),
with ``Weight`` storage (sum of weights and sum of squared weights per bin).

A cell (region, sample, variation) is *present* when any of its values or variances is
non-zero; a variation that was never filled for a sample has no effect on it.

Files: :mod:`hepsafe.templates.files`; hygiene before a fit: :mod:`hepsafe.templates.hygiene`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import boost_histogram as bh
import hist
import numpy as np

from hepsafe.exceptions import TemplateError
from hepsafe.report.tables import format_table

NOMINAL = "nominal"
UP, DOWN = "up", "down"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

#: a template histogram: ``Weight`` storage (sum of weights and of squared weights per bin)
WeightHist = hist.Hist[bh.storage.Weight]


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
def new_hist(
    edges: np.ndarray,
    observable: str,
    label: str | None,
    samples: Sequence[str] = (),
    variations: Sequence[str] = (NOMINAL,),
) -> WeightHist:
    """An empty template histogram with the given sample and variation categories.

    ``edges`` (shape ``(n_bins + 1,)``) are taken as they are; :func:`book` checks them.
    """
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


def check_edges(edges: Any, what: str) -> np.ndarray:
    """``edges`` as float64, shape ``(n_bins + 1,)``; raise TemplateError naming ``what``
    unless they are at least two finite, increasing numbers."""
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise TemplateError(f"{what}: bin edges must be >= 2 finite, increasing numbers, got {e}")
    return e


def book(
    edges: Sequence[float] | np.ndarray,
    observable: str = "observable",
    label: str | None = None,
) -> WeightHist:
    """An empty template histogram: observable (bins ``edges``) x sample x variation.

    ``edges`` has shape ``(n_bins + 1,)`` in the observable's unit (GeV for a mass, none
    for a score); ``label`` is the axis title (defaults to ``observable``).
    """
    return new_hist(check_edges(edges, f"book({observable!r})"), observable, label)


def fill(
    h: WeightHist,
    values: np.ndarray,
    sample: str,
    variation: str = NOMINAL,
    weight: np.ndarray | float | None = None,
    clip: bool = False,
) -> WeightHist:
    """A copy of ``h`` with ``values`` (shape ``(n,)``) added to cell (sample, variation).

    ``weight`` is a scalar or shape ``(n,)``; default 1. Values outside the edges are
    dropped, except with ``clip=True`` where they go into the first/last bin. A value equal
    to the last edge counts in the last bin. ``h`` itself is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> from hepsafe.templates import booking as T
    >>> h = T.book([0.0, 0.5, 1.0], observable="score")
    >>> h = T.fill(h, np.array([0.1, 0.7, 1.0]), "W")
    >>> h = T.fill(h, np.array([0.2]), "W", "jes_up", weight=2.0)
    >>> t = T.Templates({"SR": h})
    >>> t.values("SR", "W"), t.variances("SR", "W", "jes_up")
    (array([1., 2.]), array([4., 0.]))
    >>> t.variations("SR", "W"), t.systematics()
    (['nominal', 'jes_up'], ['jes'])
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

    hists: Mapping[str, WeightHist]

    def __post_init__(self) -> None:
        if not self.hists:
            raise TemplateError("templates need at least one region")
        out: dict[str, WeightHist] = {}
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

    def hist1d(self, region: str, sample: str, variation: str = NOMINAL) -> WeightHist:
        """The 1-d histogram of one present cell (a copy)."""
        self._get(region, sample, variation)
        return cast(WeightHist, self._hist(region)[:, sample, variation]).copy()

    # ---------------------------------------------------------------- helpers
    def _hist(self, region: str) -> WeightHist:
        if region not in self.hists:
            raise TemplateError(f"no region {region!r} in the templates (have {self.regions})")
        return self.hists[region]

    @staticmethod
    def _cell(h: WeightHist, sample: str, variation: str) -> tuple[np.ndarray, np.ndarray]:
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


def _normalise_hist(region: str, h: hist.Hist[Any]) -> WeightHist:
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
    view = cast(WeightHist, h).view(flow=True)
    flow = obs.traits.underflow, obs.traits.overflow
    if any(flow):
        inner = cast(bh.view.WeightedSumView, view[int(flow[0]) : view.shape[0] - int(flow[1])])
        lost = float(np.abs(view.value).sum() - np.abs(inner.value).sum())
        if lost != 0:
            raise TemplateError(
                f"region {region!r}: the observable axis has filled flow bins; book the "
                "templates with hepsafe.templates.booking.book (no flow bins) or clip the values"
            )
    samples = [str(s) for s in samp]
    variations = [str(v) for v in var]
    for s in samples:
        check_name(s, "sample")
    for v in variations:
        split_variation(v)
    edges = check_edges(obs.edges, f"region {region!r}")
    out = new_hist(edges, str(obs.name or "observable"), str(obs.label), samples, variations)
    src = cast(WeightHist, h).view(flow=False)
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
        e = check_edges(edges, name)
        val = np.asarray(values, dtype=np.float64)
        var = np.asarray(variances, dtype=np.float64)
        if val.shape != (len(e) - 1,) or var.shape != val.shape:
            raise TemplateError(
                f"{name}: values {val.shape} and variances {var.shape} must both have shape "
                f"({len(e) - 1},) for {len(e)} edges"
            )
        regions.setdefault(region, {})[(sample, variation)] = (e, val, var)
    hists: dict[str, WeightHist] = {}
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
        h = new_hist(ref[1], name, label, samples, variations)
        view = h.view(flow=False)
        for (s, v), (_, vals, var) in rc.items():
            i, j = samples.index(s), variations.index(v)
            view.value[:, i, j] = vals
            view.variance[:, i, j] = var
        hists[region] = h
    return Templates(hists)


def from_cells(
    cells: Mapping[Cell, hist.Hist[Any]],
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


def with_cell_contents(
    t: Templates,
    region_cells: Mapping[str, Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]]],
    edges: Mapping[str, np.ndarray] | None = None,
) -> Templates:
    """New templates with the same axes as ``t`` and cell contents from ``region_cells``
    (as :func:`cell_contents` returns them); ``edges`` replaces the binning of some regions,
    and variations absent from ``t``'s axis are added to it."""
    hists = {}
    for region in t.regions:
        name, label = t.observable(region)
        e = t.edges(region) if edges is None or region not in edges else edges[region]
        samples = t.sample_axis(region)
        variations = t.variation_axis(region)
        extra = [v for _, v in region_cells[region] if v not in variations]
        variations = _canonical(variations + list(dict.fromkeys(extra)))
        h = new_hist(e, name, label, samples, variations)
        view = h.view(flow=False)
        for (s, v), (vals, var) in region_cells[region].items():
            view.value[:, samples.index(s), variations.index(v)] = vals
            view.variance[:, samples.index(s), variations.index(v)] = var
        hists[region] = h
    return Templates(hists)


def cell_contents(t: Templates) -> dict[str, dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]]:
    """Every present cell as ``{region: {(sample, variation): (values, variances)}}``, each
    array of shape ``(n_bins,)`` (copies)."""
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
