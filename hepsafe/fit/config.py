"""How templates become a pyhf model: :class:`WorkspaceConfig`, read once from a JSON file
(``schemas/workspace_config.schema.json``), and the nuisance-parameter names it gives."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hepsafe._files import read_json
from hepsafe._schemas import validate
from hepsafe.exceptions import TemplateError, WorkspaceError
from hepsafe.templates.control import ControlRegionConfig

MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
_DECORRELATE = ("sample", "region", "sample+region")
_MISSING_SIDE = ("mirror", "nominal", "refuse")
#: fit treatments of a variation: Gaussian +-1 sigma normsys + histosys, or a bounded
#: one-sided theta in [0, 1] with a flat prior (docs/STATISTICS.md)
TREATMENTS = ("gaussian", "adversarial")


@dataclass(frozen=True)
class WorkspaceConfig:
    """How templates become a pyhf model.

    ``signal``: samples scaled by the POI; ``lumi``: relative luminosity uncertainty (None:
    no lumi modifier); ``data_sample``: template sample holding observed data (absent: the
    observations are the Asimov sum of nominals at POI = 1); ``systematics``: names to use
    (None: all); ``decorrelate``: ``{name: "sample" | "region" | "sample+region"}`` gives a
    systematic one parameter per sample and/or region (default: one shared parameter);
    ``missing_side``: the missing side of a one-sided variation: "mirror" (``2 * nominal -
    present``, with a MirrorWarning naming sample and variation), "nominal", or "refuse"
    (FitError); ``merge_empty_bins``: merge bins whose summed background nominal is not
    positive with a neighbour (else such a bin is a FitError);
    ``smooth``: smooth every variation's ratio to nominal (``smooth_passes`` times);
    ``merge_rel_stat``: merge bins until the summed nominal has at most this relative
    statistical error; ``negative``: "clip" (warn) or "error" for negative yields;
    ``treatment``: ``{name: "gaussian" | "adversarial"}`` (default "gaussian"): an
    adversarial variation is one parameter theta in [0, 1], unconstrained, moving each
    affected sample linearly from its nominal (theta = 0) to the varied template (theta = 1)
    through a delta sample, never mirrored;
    ``control_region``: the control region as a channel of the fit
    (:class:`hepsafe.templates.control.ControlRegionConfig`; its templates are the region
    ``control_region.region`` of the templates): the control sample's normalisation is a
    free normfactor shared by every channel, and the channel may go without staterror;
    ``channels`` / ``samples``: region -> channel and template sample -> workspace sample
    names when patching a user's workspace.
    """

    signal: tuple[str, ...] = ("signal",)
    poi: str = "mu"
    poi_bounds: tuple[float, float] = (0.0, 10.0)
    staterror: bool = True
    lumi: float | None = None
    data_sample: str | None = "data"
    systematics: tuple[str, ...] | None = None
    decorrelate: Mapping[str, str] = field(default_factory=dict)
    missing_side: str = "mirror"
    merge_empty_bins: bool = False
    smooth: bool = False
    smooth_passes: int = 1
    merge_rel_stat: float | None = None
    negative: str = "clip"
    measurement: str = "meas"
    channels: Mapping[str, str] = field(default_factory=dict)
    samples: Mapping[str, str] = field(default_factory=dict)
    treatment: Mapping[str, str] = field(default_factory=dict)
    control_region: ControlRegionConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.control_region, Mapping):
            object.__setattr__(self, "control_region",
                               _control_region(self.control_region, "control_region"))
        for name, how in self.treatment.items():
            if how not in TREATMENTS:
                raise WorkspaceError(
                    f"treatment[{name!r}] = {how!r}; expected one of {list(TREATMENTS)}"
                )
        for name, mode in self.decorrelate.items():
            if mode not in _DECORRELATE:
                raise WorkspaceError(
                    f"decorrelate[{name!r}] = {mode!r}; expected one of {list(_DECORRELATE)}"
                )
        if self.missing_side not in _MISSING_SIDE:
            raise WorkspaceError(f"missing_side = {self.missing_side!r}; expected one of "
                                 f"{list(_MISSING_SIDE)}")
        if self.negative not in ("clip", "error"):
            raise WorkspaceError(f"negative = {self.negative!r}; expected 'clip' or 'error'")
        lo, hi = self.poi_bounds
        if not lo < hi:
            raise WorkspaceError(f"poi_bounds = {self.poi_bounds}; expected low < high")
        if isinstance(self.signal, str):
            object.__setattr__(self, "signal", (self.signal,))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> WorkspaceConfig:
        """A configuration from a JSON-like dict (validated against
        ``schemas/workspace_config.schema.json``). The older key ``symmetrize`` is read as
        ``missing_side`` (true: "mirror", false: "nominal"). ``control_region`` is read by
        :meth:`ControlRegionConfig.from_dict` (an error names its key)."""
        kw: dict[str, Any] = dict(d)
        control = kw.pop("control_region", None)
        validate(kw, "workspace_config", what=source, error=WorkspaceError)
        if control is not None:
            kw["control_region"] = _control_region(control, source)
        if "symmetrize" in kw:
            side = "mirror" if kw.pop("symmetrize") else "nominal"
            if kw.setdefault("missing_side", side) != side:
                raise WorkspaceError(f"{source}: keys 'symmetrize' and 'missing_side' "
                                     "disagree; give 'missing_side' alone")
        if "treatment" in kw:  # {name: "adversarial"} or {name: {"name": "adversarial"}}
            kw["treatment"] = {k: v["name"] if isinstance(v, Mapping) else v
                               for k, v in kw["treatment"].items()}
        for k in ("signal", "poi_bounds", "systematics"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def adversarial(self, name: str) -> bool:
        """Whether systematic ``name`` takes the adversarial (bounded theta) treatment."""
        return self.treatment.get(name) == "adversarial"

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, ControlRegionConfig):
                out[f.name] = v.to_dict()
                continue
            out[f.name] = (
                list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v
            )
        return out


def _control_region(d: Mapping[str, Any], source: str) -> ControlRegionConfig:
    try:
        return ControlRegionConfig.from_dict(d)
    except TemplateError as exc:
        raise WorkspaceError(f"{source}: {exc}") from exc


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> WorkspaceConfig:
    """A configuration from a JSON file (or the defaults), with ``overrides`` that are not
    None applied on top (e.g. ``signal=["W"]``, ``lumi=0.017``); validated."""
    d: dict[str, Any] = {}
    if path is not None:
        d = read_json(path, WorkspaceError, missing="no such configuration file")
    d.update({k: v for k, v in overrides.items() if v is not None})
    return WorkspaceConfig.from_dict(d, source=str(path or "configuration"))


def parameter_name(systematic: str, region: str, sample: str, config: WorkspaceConfig) -> str:
    """Nuisance-parameter name of ``systematic`` for (region, sample) under ``config``."""
    mode = config.decorrelate.get(systematic)
    if mode == "sample":
        return f"{systematic}_{sample}"
    if mode == "region":
        return f"{systematic}_{region}"
    if mode == "sample+region":
        return f"{systematic}_{region}_{sample}"
    return systematic


