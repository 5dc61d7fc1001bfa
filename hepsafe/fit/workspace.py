"""pyhf workspaces from templates, and JSON patches that add the templates' systematics to a
user's workspace.

Every systematic ``<name>`` of the templates (variations ``<name>_up`` / ``<name>_down``)
becomes one nuisance parameter acting through a ``normsys`` (the change of the sample's
total yield) and a ``histosys`` (the change of its shape at fixed total) of the same name,
as HistFactory's OverallSys + HistoSys pair. The interpolation is ``code4`` (normsys) and
``code4p`` (histosys).
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, cast

import numpy as np

from hepsafe._files import read_json
from hepsafe._schemas import validate
from hepsafe.exceptions import FitError, MirrorWarning, TemplateError, WorkspaceError
from hepsafe.templates import booking as tpl
from hepsafe.templates import hygiene as hygiene
from hepsafe.templates.booking import Templates

MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
_DECORRELATE = ("sample", "region", "sample+region")
_MISSING_SIDE = ("mirror", "nominal", "refuse")


# --------------------------------------------------------------------------- configuration
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

    def __post_init__(self) -> None:
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
        ``missing_side`` (true: "mirror", false: "nominal")."""
        validate(d, "workspace_config", what=source, error=WorkspaceError)
        kw: dict[str, Any] = dict(d)
        if "symmetrize" in kw:
            side = "mirror" if kw.pop("symmetrize") else "nominal"
            if kw.setdefault("missing_side", side) != side:
                raise WorkspaceError(f"{source}: keys 'symmetrize' and 'missing_side' "
                                     "disagree; give 'missing_side' alone")
        for k in ("signal", "poi_bounds", "systematics"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = (
                list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v
            )
        return out


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


# --------------------------------------------------------------------------- hygiene
def _fit_samples(t: Templates, region: str, config: WorkspaceConfig) -> list[str]:
    return [s for s in t.samples(region) if s != config.data_sample]


def _backgrounds(t: Templates, config: WorkspaceConfig) -> list[str]:
    """The fit samples not scaled by the POI (all fit samples when every one is signal)."""
    fit = sorted({s for r in t.regions for s in _fit_samples(t, r, config)})
    return [s for s in fit if s not in config.signal] or fit


def _bins(bins: np.ndarray) -> str:
    """Bin indices as ``[0, 4, 7]``, or ``[0, 4, ..., 99] (12 bins)`` when there are many."""
    if len(bins) <= 8:
        return str(bins.tolist())
    head = ", ".join(str(int(i)) for i in bins[:6])
    return f"[{head}, ..., {int(bins[-1])}] ({len(bins)} bins)"


def _missing_sides(t: Templates, config: WorkspaceConfig) -> Templates:
    one = [(r, s, v) for r, s, v in hygiene.one_sided(t) if s != config.data_sample]
    if not one or config.missing_side == "nominal":
        return t
    listed = ", ".join(f"{r}/{s} {v}" for r, s, v in one)
    if config.missing_side == "refuse":
        raise FitError(f"one-sided variation(s) {listed}: the other side is missing and "
                       "missing_side is 'refuse'; give both sides, or set missing_side to "
                       "'mirror' or 'nominal'")
    warnings.warn(f"mirrored one-sided variation(s) (missing side = 2 x nominal - present "
                  f"side; missing_side 'nominal' or 'refuse' changes this): {listed}",
                  MirrorWarning, stacklevel=3)
    return hygiene.symmetrize(t)


def _check_bins(t: Templates, config: WorkspaceConfig) -> None:
    """Raise FitError for a bin without positive background (or total) nominal yield."""
    remedy = ("use fewer bins, set merge_empty_bins (merges such a bin with a neighbour), "
              "or skip the fit")
    backgrounds = _backgrounds(t, config)
    for r in t.regions:
        samples = _fit_samples(t, r, config)
        if not samples:
            raise TemplateError(f"region {r!r} has no sample to fit (only {t.samples(r)})")
        n = len(t.edges(r)) - 1
        total = np.asarray(sum(t.values(r, s) for s in samples))
        zero = np.nonzero(total <= 0)[0]
        if len(zero):
            raise FitError(f"region {r!r}: bins {_bins(zero)} of {n} have zero total nominal "
                           f"yield over samples {samples}; {remedy}")
        bkg = [s for s in samples if s in backgrounds]
        if bkg and bkg != samples:
            empty = np.nonzero(np.asarray(sum(t.values(r, s) for s in bkg)) <= 0)[0]
            if len(empty):
                raise FitError(f"region {r!r}: bins {_bins(empty)} of {n} have no background "
                               f"(summed nominal of {bkg} <= 0), so the fit cannot describe "
                               f"them at mu = 0; {remedy}")


def prepare_templates(t: Templates, config: WorkspaceConfig) -> Templates:
    """Templates ready for a fit: selected, merged, sides completed, smoothed, clipped,
    checked.

    Raises TemplateError for a missing nominal, a non-positive total yield or a negative
    yield with ``negative="error"``; FitError for a bin where the summed nominal of the
    backgrounds (or of all samples) is not positive, or a one-sided variation with
    ``missing_side="refuse"``. Warns (MirrorWarning) when it mirrors one.
    """
    if config.systematics is not None:
        t = hygiene.select_systematics(t, config.systematics)
    exclude = [config.data_sample] if config.data_sample else []
    hygiene.check(t, exclude=exclude)
    if config.merge_rel_stat is not None:
        samples = sorted({s for r in t.regions for s in _fit_samples(t, r, config)})
        t = hygiene.merge_low_stat(t, config.merge_rel_stat, samples=samples)
    if config.merge_empty_bins:
        t = hygiene.merge_empty_bins(t, _backgrounds(t, config))
    t = _missing_sides(t, config)
    if config.smooth:
        t = hygiene.smooth(t, passes=config.smooth_passes)
    negative = [
        f"{r}_{s}_{v} bins {np.nonzero(t.values(r, s, v) < 0)[0].tolist()}"
        for r, s, v in t.cells()
        if s not in exclude and np.any(t.values(r, s, v) < 0)
    ]
    if negative:
        if config.negative == "error":
            raise TemplateError(f"negative yields in {'; '.join(negative)}")
        t = hygiene.clip_negative(t, exclude=exclude)
    hygiene.check(t, exclude=exclude)
    _check_bins(t, config)
    return t


def _sides(t: Templates, region: str, sample: str, systematic: str) -> tuple[np.ndarray, ...]:
    nom = t.values(region, sample)
    present = t.variations(region, sample)
    up_name = tpl.variation_name(systematic, tpl.UP)
    down_name = tpl.variation_name(systematic, tpl.DOWN)
    up = t.values(region, sample, up_name) if up_name in present else nom
    down = t.values(region, sample, down_name) if down_name in present else nom
    return nom, up, down


def _variation_modifiers(
    name: str, nom: np.ndarray, up: np.ndarray, down: np.ndarray, target: np.ndarray
) -> list[dict[str, Any]]:
    """normsys + histosys of one variation, relative to ``nom``, applied to ``target``."""
    n_tot, u_tot, d_tot = float(nom.sum()), float(up.sum()), float(down.sum())
    ratio_up = np.divide(up * (n_tot / u_tot), nom, out=np.ones_like(nom), where=nom > 0)
    ratio_down = np.divide(down * (n_tot / d_tot), nom, out=np.ones_like(nom), where=nom > 0)
    return [
        {"name": name, "type": "normsys", "data": {"hi": u_tot / n_tot, "lo": d_tot / n_tot}},
        {
            "name": name,
            "type": "histosys",
            "data": {
                "hi_data": (target * ratio_up).tolist(),
                "lo_data": (target * ratio_down).tolist(),
            },
        },
    ]


def _systematic_modifiers(
    t: Templates, region: str, sample: str, config: WorkspaceConfig, target: np.ndarray
) -> list[dict[str, Any]]:
    mods: list[dict[str, Any]] = []
    names = sorted({p[0] for v in t.variations(region, sample) if (p := tpl.split_variation(v))})
    for systematic in names:
        nom, up, down = _sides(t, region, sample, systematic)
        par = parameter_name(systematic, region, sample, config)
        mods += _variation_modifiers(par, nom, up, down, target)
    return mods


# --------------------------------------------------------------------------- workspace
def build_workspace(t: Templates, config: WorkspaceConfig | None = None) -> dict[str, Any]:
    """A complete pyhf workspace (a JSON-ready dict, validated) from templates.

    One channel per region, one pyhf sample per template sample: the signal samples carry
    the normfactor ``config.poi``; every sample a ``staterror`` (from the template's sum of
    squared weights), an optional ``lumi``, and per systematic a normsys + histosys pair.
    """
    config = config or WorkspaceConfig()
    t = prepare_templates(t, config)
    all_samples = {s for r in t.regions for s in t.samples(r)}
    missing = [s for s in config.signal if s not in all_samples]
    if missing:
        raise TemplateError(
            f"signal sample(s) {missing} not in the templates (samples: {sorted(all_samples)})"
        )
    with_data = [r for r in t.regions if config.data_sample in t.samples(r)]
    if with_data and len(with_data) != len(t.regions):
        raise TemplateError(
            f"data sample {config.data_sample!r} is in regions {with_data} but not in "
            f"{[r for r in t.regions if r not in with_data]}"
        )
    channels, observations = [], []
    for r in t.regions:
        samples = []
        expected = np.zeros(len(t.edges(r)) - 1)
        for s in _fit_samples(t, r, config):
            nom = t.values(r, s)
            expected += nom
            mods: list[dict[str, Any]] = []
            if s in config.signal:
                mods.append({"name": config.poi, "type": "normfactor", "data": None})
            if config.staterror:
                mods.append(
                    {
                        "name": f"staterror_{r}",
                        "type": "staterror",
                        "data": np.sqrt(t.variances(r, s)).tolist(),
                    }
                )
            if config.lumi is not None:
                mods.append({"name": "lumi", "type": "lumi", "data": None})
            mods += _systematic_modifiers(t, r, s, config, nom)
            samples.append({"name": s, "data": nom.tolist(), "modifiers": mods})
        channels.append({"name": r, "samples": samples})
        obs = t.values(r, cast(str, config.data_sample)) if with_data else expected
        observations.append({"name": r, "data": obs.tolist()})
    parameters: list[dict[str, Any]] = [
        {"name": config.poi, "bounds": [list(config.poi_bounds)], "inits": [1.0]}
    ]
    if config.lumi is not None:
        lo = max(1e-3, 1.0 - 5.0 * config.lumi)
        parameters.append(
            {
                "name": "lumi",
                "auxdata": [1.0],
                "sigmas": [config.lumi],
                "bounds": [[lo, 1.0 + 5.0 * config.lumi]],
                "inits": [1.0],
            }
        )
    spec = {
        "channels": channels,
        "observations": observations,
        "measurements": [
            {"name": config.measurement, "config": {"poi": config.poi, "parameters": parameters}}
        ],
        "version": "1.0.0",
    }
    validate_workspace(spec, "built workspace")
    return spec


def validate_workspace(spec: Mapping[str, Any], what: str = "workspace") -> Any:
    """Check ``spec`` against pyhf's workspace schema and build its model; return the
    ``pyhf.Workspace``. Raises WorkspaceError with pyhf's reason."""
    import pyhf

    try:
        ws = pyhf.Workspace(dict(spec))
        ws.model(modifier_settings=MODIFIER_SETTINGS)
    except Exception as exc:  # pyhf raises schema, model and value errors
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkspaceError(f"{what} is not a valid pyhf workspace: {msg}") from exc
    return ws


def read_workspace(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a pyhf workspace JSON file."""
    spec: dict[str, Any] = read_json(path, WorkspaceError)
    validate_workspace(spec, str(path))
    return spec


# --------------------------------------------------------------------------- patching
def build_patch(
    t: Templates, workspace: Mapping[str, Any], config: WorkspaceConfig | None = None
) -> list[dict[str, Any]]:
    """An RFC 6902 JSON patch adding the templates' systematics to a user's workspace.

    Each template region maps to a channel (``config.channels``, default same name) and
    each template sample with variations to a workspace sample (``config.samples``). The
    histosys data are the template's relative shape change applied to the workspace
    sample's own nominal. Every original modifier is kept. Raises WorkspaceError for a
    channel or sample absent from the workspace, a bin-count mismatch, or a modifier that
    already exists on the sample with the same name and type.
    """
    config = config or WorkspaceConfig()
    validate_workspace(workspace, "user workspace")
    t = prepare_templates(t, config)
    channel_index = {c["name"]: i for i, c in enumerate(workspace["channels"])}
    ops: list[dict[str, Any]] = []
    for r in t.regions:
        with_syst = [s for s in _fit_samples(t, r, config) if len(t.variations(r, s)) > 1]
        if not with_syst:
            continue
        channel = config.channels.get(r, r)
        if channel not in channel_index:
            raise WorkspaceError(
                f"channel {channel!r} (templates region {r!r}) is not in the workspace "
                f"(channels: {list(channel_index)})"
            )
        ci = channel_index[channel]
        ws_samples = workspace["channels"][ci]["samples"]
        sample_index = {s["name"]: j for j, s in enumerate(ws_samples)}
        for s in with_syst:
            target_name = config.samples.get(s, s)
            if target_name not in sample_index:
                raise WorkspaceError(
                    f"sample {target_name!r} (templates sample {s!r}) is not in channel "
                    f"{channel!r} of the workspace (samples: {list(sample_index)})"
                )
            sj = sample_index[target_name]
            ws_sample = ws_samples[sj]
            target = np.asarray(ws_sample["data"], dtype=np.float64)
            n_bins = len(t.edges(r)) - 1
            if len(target) != n_bins:
                raise WorkspaceError(
                    f"channel {channel!r} sample {target_name!r} has {len(target)} bins, the "
                    f"templates of region {r!r} have {n_bins}"
                )
            existing = {(m["name"], m["type"]) for m in ws_sample["modifiers"]}
            for mod in _systematic_modifiers(t, r, s, config, target):
                if (mod["name"], mod["type"]) in existing:
                    raise WorkspaceError(
                        f"channel {channel!r} sample {target_name!r} already has a "
                        f"{mod['type']} modifier named {mod['name']!r}"
                    )
                ops.append(
                    {"op": "add", "path": f"/channels/{ci}/samples/{sj}/modifiers/-", "value": mod}
                )
    if not ops:
        raise WorkspaceError("the templates have no systematic variation to patch in")
    return ops


def as_patchset(
    patch: Sequence[Mapping[str, Any]],
    workspace: Mapping[str, Any],
    hepdata: str,
    name: str = "hepsafe_variations",
    description: str = "systematic variations from hepsafe templates",
) -> dict[str, Any]:
    """A pyhf PatchSet holding ``patch``, bound to ``workspace`` by its sha256 digest.

    pyhf's PatchSet schema requires the analysis' HEPData record, ``hepdata`` (e.g.
    ``"ins1234567"``).
    """
    import pyhf

    ps = {
        "metadata": {
            "description": description,
            "digests": {"sha256": pyhf.utils.digest(dict(workspace))},
            "labels": ["variations"],
            "references": {"hepdata": hepdata},
        },
        "patches": [{"metadata": {"name": name, "values": [name]}, "patch": list(patch)}],
        "version": "1.0.0",
    }
    try:
        pyhf.PatchSet(ps)
    except Exception as exc:  # pyhf raises schema and patchset errors
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkspaceError(f"patchset is invalid: {msg}") from exc
    return ps


def apply_patch(
    workspace: Mapping[str, Any],
    patch: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    name: str | None = None,
) -> dict[str, Any]:
    """A new workspace: ``workspace`` with an RFC 6902 ``patch`` (list) or the patch
    ``name`` of a pyhf PatchSet (dict; default its first) applied; validated."""
    import jsonpatch
    import pyhf

    try:
        if isinstance(patch, Mapping):
            ps = pyhf.PatchSet(dict(patch))
            key = name or ps.patches[0].name
            out = ps.apply(pyhf.Workspace(copy.deepcopy(dict(workspace))), key)
            spec: dict[str, Any] = json.loads(json.dumps(dict(out)))
        else:
            spec = jsonpatch.apply_patch(copy.deepcopy(dict(workspace)), list(patch))
    except WorkspaceError:
        raise
    except Exception as exc:  # jsonpatch and pyhf raise their own kinds
        raise WorkspaceError(f"patch cannot be applied: {exc}") from exc
    validate_workspace(spec, "patched workspace")
    return spec


def systematic_parameters(modifiers: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[str]:
    """Names of the normsys/histosys parameters in a patch (list) or a workspace (dict)."""
    if isinstance(modifiers, Mapping):
        mods = [m for c in modifiers["channels"] for s in c["samples"] for m in s["modifiers"]]
    else:
        mods = [op["value"] for op in modifiers if isinstance(op.get("value"), Mapping)]
    names = [m["name"] for m in mods if m.get("type") in ("normsys", "histosys")]
    return list(dict.fromkeys(names))
