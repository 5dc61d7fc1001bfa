"""The control region as a channel of the fit: templates of the control sample (the jets
the control-region gate looks at) for the nominal and every variation and attack.

The control jets' chosen variables (default the tagger score and the jet mass) are binned
jointly and the joint bins flattened into one observable, so every jet enters the channel
once: the histograms of jet pT, jet mass and score filled from the same jets are not
independent and must not be three channels. Joint bins where the nominal template is empty
are merged with the next bin in flattened order (the last with the previous one), so no
bin of the channel has a zero nominal yield; every jet stays in the channel. The templates
are normalised to the analysis' expected control-region yield: ``events`` (the nominal
totals that many events) or ``lumi`` (luminosity x weights); the same factor scales every
variation, so an attack's change of the control yield is kept (docs/STATISTICS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hepsafe.exceptions import TemplateError
from hepsafe.templates.booking import (
    NOMINAL,
    Templates,
    check_edges,
    check_name,
    from_arrays,
    split_variation,
)
from hepsafe.templates.hygiene import positive_plan

#: variables a control-region channel may bin: the tagger score, jet pT [GeV], jet mass [GeV]
CONTROL_VARIABLES = ("score", "jet_pt", "jet_mass")
#: default edges per variable (coarse; the score's last bins hold the working point's tail)
DEFAULT_BINS: Mapping[str, tuple[float, ...]] = {
    "score": (0.0, 0.1, 0.2, 0.35, 0.6, 0.9, 1.0),
    "jet_pt": (500.0, 550.0, 600.0, 700.0, 1000.0),
    "jet_mass": (0.0, 40.0, 70.0, 100.0, 150.0, 300.0),
}
#: the observable name of the flattened joint bins
OBSERVABLE = "control_bin"
_KEYS = ("region", "variables", "bins", "events", "lumi", "free_norm", "norm_bounds",
         "staterror")


def _error(key: str, msg: str) -> TemplateError:
    return TemplateError(f"control_region/{key}: {msg}")


@dataclass(frozen=True)
class ControlRegionConfig:
    """How the control sample becomes a channel of the fit.

    ``region``: the channel's name; ``variables``: one or more of :data:`CONTROL_VARIABLES`,
    binned jointly (``bins[variable]``: edges, default :data:`DEFAULT_BINS`; values outside
    go into the first / last bin); ``events``: the expected control-region yield in events
    (the nominal is scaled to it), or ``lumi``: the luminosity multiplying the jets' weights
    (in the weights' inverse unit); neither: the weights as they are; ``free_norm``: the
    control sample's normalisation is a free normfactor ``norm_<sample>`` (bounds
    ``norm_bounds``) shared by every channel; ``staterror``: the channel gets the templates'
    statistical uncertainty (Barlow-Beeston lite), as the other channels.
    """

    region: str = "control"
    variables: tuple[str, ...] = ("score", "jet_mass")
    bins: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    events: float | None = None
    lumi: float | None = None
    free_norm: bool = True
    norm_bounds: tuple[float, float] = (0.0, 10.0)
    staterror: bool = True

    def __post_init__(self) -> None:
        try:
            check_name(self.region, "region")
        except TemplateError as exc:
            raise _error("region", str(exc)) from exc
        variables = (self.variables,) if isinstance(self.variables, str) else self.variables
        object.__setattr__(self, "variables", tuple(variables))
        if not self.variables:
            raise _error("variables", "give at least one of " + str(list(CONTROL_VARIABLES)))
        for v in self.variables:
            if v not in CONTROL_VARIABLES:
                raise _error("variables", f"{v!r} is not one of {list(CONTROL_VARIABLES)}")
        if len(set(self.variables)) != len(self.variables):
            raise _error("variables", f"{list(self.variables)} names a variable twice")
        bins = {}
        for v, e in self.bins.items():
            if v not in CONTROL_VARIABLES:
                raise _error(f"bins/{v}", f"not one of {list(CONTROL_VARIABLES)}")
            try:
                bins[v] = tuple(float(x) for x in check_edges(e, v))
            except (TemplateError, TypeError, ValueError) as exc:
                raise _error(f"bins/{v}", f"expected >= 2 finite, increasing edges, "
                                          f"got {e!r}") from exc
        object.__setattr__(self, "bins", bins)
        if self.events is not None and self.lumi is not None:
            raise _error("events", "give 'events' or 'lumi', not both")
        for key in ("events", "lumi"):
            x = getattr(self, key)
            ok = isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x)
            if x is not None and not (ok and x > 0):
                raise _error(key, f"expected a positive number, got {x!r}")
        lo, hi = (float(x) for x in self.norm_bounds)
        if not 0 <= lo < 1 < hi:
            raise _error("norm_bounds", f"{list(self.norm_bounds)}; expected 0 <= low < 1 "
                                        "< high")
        object.__setattr__(self, "norm_bounds", (lo, hi))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ControlRegionConfig:
        """A configuration from a JSON/YAML-like dict (the keys of the dataclass); an
        unknown key is a TemplateError naming it."""
        if not isinstance(d, Mapping):
            raise TemplateError(f"control_region: expected a mapping, got {d!r}")
        unknown = [k for k in d if k not in _KEYS]
        if unknown:
            raise _error(str(unknown[0]), f"unknown key; expected some of {list(_KEYS)}")
        kw: dict[str, Any] = dict(d)
        for k in ("variables", "norm_bounds"):
            if k in kw and not isinstance(kw[k], str):
                kw[k] = tuple(kw[k])
        if "bins" in kw and not isinstance(kw["bins"], Mapping):
            raise _error("bins", f"expected {{variable: edges}}, got {kw['bins']!r}")
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        return {"region": self.region, "variables": list(self.variables),
                "bins": {v: list(e) for v, e in self.bins.items()}, "events": self.events,
                "lumi": self.lumi, "free_norm": self.free_norm,
                "norm_bounds": list(self.norm_bounds), "staterror": self.staterror}

    def edges(self, variable: str) -> np.ndarray:
        """Bin edges of ``variable``, shape ``(n + 1,)`` (its unit: GeV for pT and mass)."""
        return np.asarray(self.bins.get(variable, DEFAULT_BINS[variable]), np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of bins per variable, in ``variables`` order (before merging)."""
        return tuple(len(self.edges(v)) - 1 for v in self.variables)


def norm_parameter(sample: str) -> str:
    """The free normfactor of a control sample ``sample``: ``norm_<sample>``."""
    return f"norm_{sample}"


def joint_bin(values: Mapping[str, np.ndarray], config: ControlRegionConfig) -> np.ndarray:
    """The flattened joint bin of each jet, int64 ``(n_jets,)`` in ``[0, prod(shape))``
    (C order over ``config.variables``); values outside a variable's edges count in its
    first / last bin. ``values[variable]``: shape ``(n_jets,)``."""
    missing = [v for v in config.variables if v not in values]
    if missing:
        raise TemplateError(f"control region: no values for variable(s) {missing} (have "
                            f"{sorted(values)})")
    arrays = [np.asarray(values[v], np.float64) for v in config.variables]
    n = len(arrays[0])
    index = []
    for v, x in zip(config.variables, arrays, strict=True):
        if x.shape != (n,):
            raise TemplateError(f"control region: {v!r} has shape {x.shape}, expected ({n},)")
        if not np.all(np.isfinite(x)):
            raise TemplateError(f"control region: {v!r} has non-finite values")
        e = config.edges(v)
        index.append(np.clip(np.searchsorted(e, x, side="right") - 1, 0, len(e) - 2))
    return np.ravel_multi_index(tuple(index), config.shape).astype(np.int64)


def _counts(index: np.ndarray, weight: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.bincount(index, weight, minlength=n),
            np.bincount(index, weight * weight, minlength=n))


def _weights(w: np.ndarray | float | None, n: int, what: str) -> np.ndarray:
    out = np.broadcast_to(np.asarray(1.0 if w is None else w, np.float64), (n,))
    if not np.all(np.isfinite(out)):
        raise TemplateError(f"control region: {what} has non-finite weights")
    return out


def control_groups(nominal: np.ndarray) -> list[np.ndarray]:
    """The joint bins merged into each channel bin: a bin whose nominal yield (shape
    ``(n_joint,)``) is not positive joins the next bin in flattened order (the last such run
    the previous one). Returns one array of joint-bin indices per channel bin."""
    keep = positive_plan(np.asarray(nominal, np.float64))
    return [np.arange(a, b) for a, b in zip(keep[:-1], keep[1:], strict=True)]


def book_control(
    nominal: Mapping[str, np.ndarray],
    varied: Mapping[str, Mapping[str, np.ndarray]],
    weights: np.ndarray | float | None,
    config: ControlRegionConfig,
    sample: str,
    varied_weights: Mapping[str, np.ndarray] | None = None,
    data: Mapping[str, np.ndarray] | None = None,
    data_sample: str = "data",
) -> Templates:
    """The control-region channel of sample ``sample``: one region ``config.region``, whose
    bins are the joint bins of ``config.variables`` flattened (empty nominal bins merged).

    ``nominal[variable]``: the control jets' values, shape ``(n_jets,)`` (``score``, and
    ``jet_pt`` / ``jet_mass`` in GeV); ``varied[<name>_up | <name>_down][variable]``: the
    same jets after each variation or attack (any length); ``weights``: the nominal jets'
    weights (``varied_weights[label]`` those of a variation, default ``weights`` when the
    lengths agree); all are scaled by one factor, ``events / sum(weights)``, ``lumi``, or 1.
    Values are yields in events, variances the sums of squared scaled weights.
    ``data[variable]``: observed control-region jets, booked unscaled (one event each) as
    sample ``data_sample`` in the same merged bins (the fit's ``data_sample``).
    """
    check_name(sample, "sample")
    idx = joint_bin(nominal, config)
    n_joint = int(np.prod(config.shape))
    w = _weights(weights, len(idx), "the nominal")
    total = float(w.sum())
    if not total > 0:
        raise TemplateError(f"control region: the nominal sample {sample!r} has no positive "
                            f"total weight ({total})")
    scale = (config.events / total if config.events is not None
             else config.lumi if config.lumi is not None else 1.0)
    cells = {NOMINAL: _counts(idx, w, n_joint)}
    for label, values in varied.items():
        split_variation(label)
        if label == NOMINAL:
            raise TemplateError("control region: 'nominal' given as a variation")
        v_idx = joint_bin(values, config)
        given = (varied_weights or {}).get(label)
        if given is None and len(v_idx) != len(idx) and isinstance(weights, np.ndarray):
            raise TemplateError(f"control region: {label!r} has {len(v_idx)} jets, the "
                                f"nominal {len(idx)}; give its weights in varied_weights")
        v_w = _weights(weights if given is None else given, len(v_idx), repr(label))
        cells[label] = _counts(v_idx, v_w, n_joint)
    groups = control_groups(cells[NOMINAL][0])
    edges = np.arange(len(groups) + 1, dtype=np.float64)
    arrays = {}

    def merged(x: np.ndarray, factor: float) -> np.ndarray:
        return np.array([x[g].sum() for g in groups]) * factor

    for label, (val, var) in cells.items():
        arrays[(config.region, sample, label)] = (edges, merged(val, scale),
                                                  merged(var, scale * scale))
    if data is not None:
        check_name(data_sample, "sample")
        d_idx = joint_bin(data, config)
        d_val, d_var = _counts(d_idx, np.ones(len(d_idx)), n_joint)
        arrays[(config.region, data_sample, NOMINAL)] = (edges, merged(d_val, 1.0),
                                                         merged(d_var, 1.0))
    label_text = " x ".join(config.variables) + " (joint bin)"
    return from_arrays(arrays, {config.region: (OBSERVABLE, label_text)})


def combine(*templates: Templates) -> Templates:
    """One :class:`Templates` with the regions of each argument (e.g. the signal region's
    and the control region's); a region given twice is a TemplateError."""
    hists: dict[str, Any] = {}
    for t in templates:
        for r in t.regions:
            if r in hists:
                raise TemplateError(f"region {r!r} is in more than one of the templates "
                                    "combined")
            hists[r] = t.hists[r]
    return Templates(hists)


def control_samples(t: Templates, config: ControlRegionConfig) -> Sequence[str]:
    """The samples of the control region ``config.region`` of ``t`` (empty when ``t`` has no
    such region)."""
    return t.samples(config.region) if config.region in t.regions else []
