"""pyhf workspaces from templates, JSON patches for a user's workspace, fits, impacts, CLs.

Every systematic ``<name>`` of the templates (variations ``<name>_up`` / ``<name>_down``)
becomes one nuisance parameter acting through a ``normsys`` (the change of the sample's
total yield) and a ``histosys`` (the change of its shape at fixed total) of the same name,
as HistFactory's OverallSys + HistoSys pair. Fits run with iminuit (``pyhf.set_backend(
"numpy", minuit)``, restored afterwards); the interpolation is ``code4`` (normsys) and
``code4p`` (histosys).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from . import templates as tpl
from .exceptions import OutputExistsError, TemplateError, WorkspaceError
from .io import write_json, write_text
from .report_tables import format_table
from .templates import Templates

REPORT_FORMAT = "hepsafe-fit/1"
MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
#: minuit's convergence tolerance (EDM < 0.002 * tolerance): mu-hat to ~1e-3 sigma
MINUIT_TOLERANCE = 1e-3
_DECORRELATE = ("sample", "region", "sample+region")

#: JSON schema of a workspace configuration file (``hepsafe fit --config``)
CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "signal": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "poi": {"type": "string", "minLength": 1},
        "poi_bounds": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "staterror": {"type": "boolean"},
        "lumi": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "data_sample": {"type": ["string", "null"]},
        "systematics": {"type": ["array", "null"], "items": {"type": "string"}},
        "decorrelate": {
            "type": "object",
            "additionalProperties": {"enum": list(_DECORRELATE)},
        },
        "symmetrize": {"type": "boolean"},
        "smooth": {"type": "boolean"},
        "smooth_passes": {"type": "integer", "minimum": 1},
        "merge_rel_stat": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "negative": {"enum": ["clip", "error"]},
        "measurement": {"type": "string", "minLength": 1},
        "channels": {"type": "object", "additionalProperties": {"type": "string"}},
        "samples": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class WorkspaceConfig:
    """How templates become a pyhf model.

    ``signal``: samples scaled by the POI; ``lumi``: relative luminosity uncertainty (None:
    no lumi modifier); ``data_sample``: template sample holding observed data (absent: the
    observations are the Asimov sum of nominals at POI = 1); ``systematics``: names to use
    (None: all); ``decorrelate``: ``{name: "sample" | "region" | "sample+region"}`` gives a
    systematic one parameter per sample and/or region (default: one shared parameter);
    ``symmetrize``: mirror one-sided variations (else the missing side is the nominal);
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
    symmetrize: bool = True
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
        if self.negative not in ("clip", "error"):
            raise WorkspaceError(f"negative = {self.negative!r}; expected 'clip' or 'error'")
        lo, hi = self.poi_bounds
        if not lo < hi:
            raise WorkspaceError(f"poi_bounds = {self.poi_bounds}; expected low < high")
        if isinstance(self.signal, str):
            object.__setattr__(self, "signal", (self.signal,))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> WorkspaceConfig:
        """A configuration from a JSON-like dict (validated against ``CONFIG_SCHEMA``)."""
        errors = sorted(
            jsonschema.Draft202012Validator(CONFIG_SCHEMA).iter_errors(d),
            key=lambda e: list(e.absolute_path),
        )
        if errors:
            e = errors[0]
            key = "/".join(str(p) for p in e.absolute_path) or "(top level)"
            raise WorkspaceError(f"{source}: key '{key}': {e.message}")
        kw: dict[str, Any] = dict(d)
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
        p = Path(path)
        if not p.exists():
            raise WorkspaceError(f"{path}: no such configuration file")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise WorkspaceError(f"{path}: not valid JSON ({exc})") from exc
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


def prepare_templates(t: Templates, config: WorkspaceConfig) -> Templates:
    """Templates ready for a fit: selected, merged, symmetrised, smoothed, clipped, checked.

    Raises TemplateError for a missing nominal, a non-positive total yield, a negative yield
    with ``negative="error"``, or a bin where the summed nominal of all samples is zero.
    """
    if config.systematics is not None:
        t = tpl.select_systematics(t, config.systematics)
    exclude = [config.data_sample] if config.data_sample else []
    tpl.check(t, exclude=exclude)
    if config.merge_rel_stat is not None:
        samples = sorted({s for r in t.regions for s in _fit_samples(t, r, config)})
        t = tpl.merge_low_stat(t, config.merge_rel_stat, samples=samples)
    if config.symmetrize:
        t = tpl.symmetrize(t)
    if config.smooth:
        t = tpl.smooth(t, passes=config.smooth_passes)
    negative = [
        f"{r}_{s}_{v} bins {np.nonzero(t.values(r, s, v) < 0)[0].tolist()}"
        for r, s, v in t.cells()
        if s not in exclude and np.any(t.values(r, s, v) < 0)
    ]
    if negative:
        if config.negative == "error":
            raise TemplateError(f"negative yields in {'; '.join(negative)}")
        t = tpl.clip_negative(t, exclude=exclude)
    tpl.check(t, exclude=exclude)
    for r in t.regions:
        samples = _fit_samples(t, r, config)
        if not samples:
            raise TemplateError(f"region {r!r} has no sample to fit (only {t.samples(r)})")
        total = sum(t.values(r, s) for s in samples)
        zero = np.nonzero(np.asarray(total) <= 0)[0]
        if len(zero):
            raise TemplateError(
                f"region {r!r}: bins {zero.tolist()} have zero total nominal yield over samples "
                f"{samples}; merge them (merge_rel_stat) or change the binning"
            )
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
        obs = t.values(r, config.data_sample) if with_data else expected
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
    p = Path(path)
    if not p.exists():
        raise WorkspaceError(f"{path}: no such file")
    try:
        spec = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise WorkspaceError(f"{path}: not valid JSON ({exc})") from exc
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
            spec = json.loads(json.dumps(dict(out)))
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


# --------------------------------------------------------------------------- fitting
@contextlib.contextmanager
def minuit_backend(tolerance: float = MINUIT_TOLERANCE, strategy: int | None = None
                   ) -> Iterator[None]:
    """Run the block with pyhf's numpy backend and the minuit optimizer; restore after."""
    import pyhf

    tensorlib, optimizer = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0, tolerance=tolerance,
                                                             strategy=strategy))
    try:
        yield
    finally:
        pyhf.set_backend(tensorlib, optimizer)


def model_and_data(
    workspace: Mapping[str, Any], asimov: bool = False, poi: float = 1.0
) -> tuple[Any, np.ndarray]:
    """The pyhf model of ``workspace`` and its data (observed, or Asimov at POI = ``poi``
    with every nuisance parameter at its nominal value), shape ``(n_bins + n_aux,)``."""
    ws = validate_workspace(workspace)
    model = ws.model(modifier_settings=MODIFIER_SETTINGS)
    data = asimov_data(model, poi) if asimov else np.asarray(ws.data(model), np.float64)
    return model, data


def asimov_data(model: Any, poi: float = 1.0) -> np.ndarray:
    """Expected main + auxiliary data of ``model`` at POI = ``poi``, nuisances nominal."""
    pars = np.asarray(model.config.suggested_init(), np.float64)
    pars[model.config.poi_index] = poi
    return np.asarray(model.expected_data(pars), np.float64)


@dataclass(frozen=True)
class FitResult:
    """A maximum-likelihood fit: ``labels[i]`` has ``bestfit[i] +- uncertainty[i]``."""

    labels: list[str]
    bestfit: np.ndarray
    uncertainty: np.ndarray
    twice_nll: float
    poi: str
    fixed: dict[str, float]

    def value(self, name: str) -> float:
        """Best-fit value of parameter ``name`` (label such as ``staterror_SR[2]``)."""
        return float(self.bestfit[self._index(name)])

    def error(self, name: str) -> float:
        """Post-fit uncertainty (HESSE) of parameter ``name``."""
        return float(self.uncertainty[self._index(name)])

    @property
    def mu(self) -> float:
        """Best-fit POI."""
        return self.value(self.poi)

    @property
    def sigma_mu(self) -> float:
        """Post-fit uncertainty of the POI."""
        return self.error(self.poi)

    def _index(self, name: str) -> int:
        if name not in self.labels:
            raise WorkspaceError(f"no parameter {name!r} in the model (have {self.labels})")
        return self.labels.index(name)


def _labels(model: Any) -> list[str]:
    return [str(x) for x in model.config.par_names]


def fit(model: Any, data: np.ndarray, fixed: Mapping[str, float] | None = None) -> FitResult:
    """Maximum-likelihood fit of ``model`` to ``data`` with iminuit.

    ``fixed`` maps parameter labels to the values they are held at.
    """
    import pyhf

    labels = _labels(model)
    init = list(model.config.suggested_init())
    mask = list(model.config.suggested_fixed())
    bounds = model.config.suggested_bounds()
    for name, v in (fixed or {}).items():
        if name not in labels:
            raise WorkspaceError(f"cannot fix {name!r}: no such parameter (have {labels})")
        i = labels.index(name)
        init[i] = float(np.clip(v, bounds[i][0], bounds[i][1]))
        mask[i] = True
    # MIGRAD sometimes fails on a hard point of a scan (far from the minimum, with many
    # weakly constrained parameters): retry with the more careful strategy 2, then with
    # scipy's SLSQP (no uncertainties: NaN, with a warning) before giving up
    result = None
    for options in ({}, {"strategy": 2}):
        try:
            with minuit_backend(**options):
                result, twice_nll = pyhf.infer.mle.fit(
                    data, model, init_pars=init, fixed_params=mask,
                    return_uncertainties=True, return_fitted_val=True,
                )
            break
        except pyhf.exceptions.FailedMinimization:
            continue
    if result is None:
        tensorlib, optimizer = pyhf.get_backend()
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
        try:
            values, twice_nll = pyhf.infer.mle.fit(
                data, model, init_pars=init, fixed_params=mask, return_fitted_val=True
            )
        except pyhf.exceptions.FailedMinimization as exc:
            raise WorkspaceError(
                f"the fit did not converge (fixed: {dict(fixed or {})}): {exc}"
            ) from exc
        finally:
            pyhf.set_backend(tensorlib, optimizer)
        warnings.warn(f"MIGRAD failed (fixed: {dict(fixed or {})}); used SLSQP, whose fit "
                      "has no uncertainties", stacklevel=2)
        values = np.asarray(values, np.float64)
        result = np.stack([values, np.full_like(values, np.nan)], axis=1)
    result = np.asarray(result, np.float64)
    return FitResult(
        labels=labels,
        bestfit=result[:, 0],
        uncertainty=np.where(mask, 0.0, result[:, 1]),
        twice_nll=float(twice_nll),
        poi=str(model.config.poi_name),
        fixed=dict(fixed or {}),
    )


def _nominal_values(model: Any, names: Sequence[str]) -> dict[str, float]:
    labels = _labels(model)
    init = model.config.suggested_init()
    return {n: float(init[labels.index(n)]) for n in names}


def _scalar_constrained(model: Any) -> list[str]:
    """Constrained one-component parameters (normsys, histosys, lumi, ...), POI excluded."""
    out = []
    for name in model.config.par_order:
        ps = model.config.param_set(name)
        if name != model.config.poi_name and ps.n_parameters == 1 and ps.constrained:
            out.append(str(name))
    return out


def pulls(model: Any, result: FitResult) -> list[dict[str, Any]]:
    """Pull ``(theta_hat - theta_0) / sigma_prefit`` of every constrained parameter.

    Rows ``{"name", "value", "error", "prefit", "prefit_error", "pull", "constraint"}``.
    """
    rows = []
    labels = _labels(model)
    for name in model.config.par_order:
        ps = model.config.param_set(name)
        if not ps.constrained:
            continue
        width = np.atleast_1d(np.asarray(ps.width(), np.float64))
        init = np.atleast_1d(np.asarray(ps.suggested_init, np.float64))
        sl = model.config.par_slice(name)
        for k, i in enumerate(range(sl.start, sl.stop)):
            rows.append(
                {
                    "name": labels[i],
                    "value": float(result.bestfit[i]),
                    "error": float(result.uncertainty[i]),
                    "prefit": float(init[k]),
                    "prefit_error": float(width[k]),
                    "pull": float((result.bestfit[i] - init[k]) / width[k]),
                    "constraint": type(ps).__name__,
                }
            )
    return rows


def impacts(
    model: Any, data: np.ndarray, result: FitResult, parameters: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Post-fit impacts on the POI, ranked by size.

    Each parameter (default: every constrained one-component parameter) is fixed at its
    post-fit value +- post-fit uncertainty, the model refit, and the POI shift recorded.
    Rows ``{"rank", "name", "up", "down", "size"}`` with ``size = max(|up|, |down|)``.
    """
    names = list(parameters) if parameters is not None else _scalar_constrained(model)
    rows = []
    for name in names:
        theta, sigma = result.value(name), result.error(name)
        up = fit(model, data, {name: theta + sigma}).mu - result.mu
        down = fit(model, data, {name: theta - sigma}).mu - result.mu
        rows.append({"name": name, "up": up, "down": down, "size": max(abs(up), abs(down))})
    rows.sort(key=lambda r: -r["size"])
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


class _Asymptotics:
    """Asymptotic CLs (qtilde) and q0, as pyhf's AsymptoticCalculator ("normal" base
    distribution), with the fits that do not depend on the tested POI run once.

    Per tested POI value only two conditional fits run (to the data and to the
    background-only Asimov data set), instead of five.
    """

    def __init__(self, model: Any, data: np.ndarray) -> None:
        self.model, self.data = model, data
        self.poi = str(model.config.poi_name)
        lo, _ = model.config.suggested_bounds()[model.config.poi_index]
        if lo != 0:
            raise WorkspaceError(
                f"CLs with qtilde needs the POI {self.poi!r} bounded below at 0, not {lo}"
            )
        self.free = fit(model, data)
        bkg = fit(model, data, {self.poi: 0.0})
        self.asimov = np.asarray(model.expected_data(bkg.bestfit), np.float64)
        self.free_asimov = fit(model, self.asimov)
        self._q: dict[float, float] = {}
        self._qa: dict[float, float] = {}

    def _qtilde(self, mu: float, data: np.ndarray, free: FitResult, cache: dict) -> float:
        if mu not in cache:
            if free.mu > mu:
                cache[mu] = 0.0
            else:
                nll = fit(self.model, data, {self.poi: mu}).twice_nll
                cache[mu] = max(nll - free.twice_nll, 0.0)
        return cache[mu]

    def sqrt_qa(self, mu: float) -> float:
        """sqrt(qtilde_mu) on the background-only Asimov data set."""
        return float(np.sqrt(self._qtilde(mu, self.asimov, self.free_asimov, self._qa)))

    def guess(self, sqrt_qa: float) -> float:
        """POI where sqrt(q_A) reaches ``sqrt_qa``, interpolated from the fits run so far."""
        mus = np.array([0.0, *self._qa])
        values = np.array([0.0, *(np.sqrt(v) for v in self._qa.values())])
        order = np.argsort(mus)
        return float(np.interp(sqrt_qa, values[order], mus[order]))

    def cls(self, mu: float) -> tuple[float, list[float]]:
        """Observed CLs and expected CLs at (-2, -1, 0, +1, +2) sigma, at POI = ``mu``."""
        from scipy.stats import norm

        sq = float(np.sqrt(self._qtilde(mu, self.data, self.free, self._q)))
        sqa = self.sqrt_qa(mu)
        if sq <= sqa:
            t = sq - sqa
        else:
            t = (sq**2 - sqa**2) / (2.0 * sqa)
        observed = float(norm.cdf(-(t + sqa)) / norm.cdf(-t))
        expected = [float(norm.cdf(-(n + sqa)) / norm.cdf(-n)) for n in (2, 1, 0, -1, -2)]
        return observed, expected


def cls(model: Any, data: np.ndarray, mu: float) -> dict[str, Any]:
    """Asymptotic CLs (qtilde) at POI = ``mu``: ``{"observed", "expected": [-2 .. +2 sigma]}``.

    The same numbers as ``pyhf.infer.hypotest(mu, data, model, return_expected_set=True)``.
    """
    observed, expected = _Asymptotics(model, data).cls(float(mu))
    return {"poi": float(mu), "observed": observed, "expected": expected}


def upper_limit(model: Any, data: np.ndarray, level: float = 0.05) -> dict[str, Any]:
    """CLs upper limit on the POI (asymptotic, qtilde) at confidence ``1 - level``.

    The observed limit solves CLs(mu) = level; the expected limit of band n solves
    sqrt(q_A(mu)) = s_n, with s_n the asymptotic value where CLs = level. Returns
    ``{"level", "observed", "expected": [-2, -1, 0, +1, +2 sigma]}``.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    asy = _Asymptotics(model, data)
    _, hi_bound = model.config.suggested_bounds()[model.config.poi_index]
    s_n = [-n - float(norm.ppf(level * norm.cdf(-n))) for n in (2, 1, 0, -1, -2)]
    upper = min(hi_bound, max(asy.free.mu, 0.0) + 8.0 * max(asy.free.sigma_mu, 1e-6))
    while asy.cls(upper)[0] >= level or asy.sqrt_qa(upper) <= max(s_n):
        if upper >= hi_bound:
            raise WorkspaceError(
                f"CLs = {level} is not reached for {asy.poi} <= {hi_bound}; widen poi_bounds"
            )
        upper = min(hi_bound, 2.0 * upper)
    xtol = 1e-4 * upper
    observed = brentq(lambda mu: asy.cls(mu)[0] - level, 0.0, upper, xtol=xtol, rtol=1e-4)
    expected = [_solve_increasing(asy.sqrt_qa, s, asy.guess(s), upper, xtol) for s in s_n]
    return {"level": level, "observed": float(observed), "expected": [float(x) for x in expected]}


def _solve_increasing(f: Any, target: float, guess: float, upper: float, xtol: float) -> float:
    """Root of the increasing ``f(x) = target`` in [0, upper]: secant from ``guess``,
    brentq on [0, upper] if the secant fails or leaves the interval."""
    from scipy.optimize import brentq, root_scalar

    try:
        res = root_scalar(
            lambda x: f(x) - target, x0=guess, x1=guess * 1.01, method="secant", xtol=xtol
        )
        if res.converged and 0.0 < res.root <= upper:
            return float(res.root)
    except (ValueError, ArithmeticError):
        pass
    return float(brentq(lambda x: f(x) - target, 0.0, upper, xtol=xtol, rtol=1e-4))


def significance(model: Any, data: np.ndarray) -> dict[str, float]:
    """Discovery significance Z = sqrt(q0) (asymptotic): observed on ``data``, and
    expected on the Asimov data set at POI = 1 with nuisance parameters nominal.

    Returns ``{"observed", "expected", "p0_observed", "p0_expected"}``.
    """
    from scipy.stats import norm

    poi = str(model.config.poi_name)

    def z(d: np.ndarray) -> float:
        free = fit(model, d)
        if free.mu <= 0:
            return 0.0
        return float(np.sqrt(max(fit(model, d, {poi: 0.0}).twice_nll - free.twice_nll, 0.0)))

    z_obs, z_exp = z(data), z(asimov_data(model, 1.0))
    return {
        "observed": z_obs,
        "expected": z_exp,
        "p0_observed": float(norm.sf(z_obs)),
        "p0_expected": float(norm.sf(z_exp)),
    }


def _mu_row(label: str, result: FitResult, free: Sequence[str]) -> dict[str, Any]:
    return {"fit": label, "free": list(free), "mu": result.mu, "sigma_mu": result.sigma_mu}


def fit_report(
    workspace: Mapping[str, Any],
    systematics: Sequence[str] | None = None,
    asimov: bool = False,
    limit: bool = True,
    level: float = 0.05,
) -> dict[str, Any]:
    """Fit ``workspace`` and report (a JSON-ready dict, format ``hepsafe-fit/1``).

    ``systematics``: the nuisance parameters whose effect is studied (default: every
    normsys/histosys parameter). The report holds mu-hat +- sigma with all of them free,
    with none, with each one alone and with all but each one (the others fixed at
    nominal); pulls; post-fit impacts of every constrained one-component parameter; the
    CLs upper limit (``limit``) and the discovery significance. ``asimov``: fit the Asimov
    data set at POI = 1 instead of the observations.
    """
    model, data = model_and_data(workspace, asimov=asimov)
    labels = _labels(model)
    names = list(systematics) if systematics is not None else systematic_parameters(workspace)
    missing = [n for n in names if n not in labels]
    if missing:
        raise WorkspaceError(f"systematics {missing} are not parameters of the model")
    nominal = _nominal_values(model, names)

    def without(keep: Sequence[str]) -> dict[str, float]:
        return {n: v for n, v in nominal.items() if n not in keep}

    full = fit(model, data)
    rows = [
        _mu_row("all variations", full, names),
        _mu_row("no variations", fit(model, data, nominal), []),
    ]
    for n in names:
        rows.append(_mu_row(f"only {n}", fit(model, data, without([n])), [n]))
        others = [m for m in names if m != n]
        rows.append(_mu_row(f"all but {n}", fit(model, data, {n: nominal[n]}), others))
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "poi": full.poi,
        "data": "asimov (poi = 1, nuisance parameters nominal)" if asimov else "observed",
        "systematics": names,
        "interpolation": {k: v["interpcode"] for k, v in MODIFIER_SETTINGS.items()},
        "mu": rows,
        "twice_nll": full.twice_nll,
        "pulls": pulls(model, full),
        "impacts": impacts(model, data, full),
        "significance": significance(model, data),
        "upper_limit": upper_limit(model, data, level) if limit else None,
        "versions": _versions(),
    }
    return report


def _versions() -> dict[str, str]:
    out = {}
    for name in ("hepsafe", "pyhf", "iminuit", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def format_report(report: Mapping[str, Any]) -> str:
    """The fit report as text tables."""
    poi = report["poi"]
    parts = [f"data: {report['data']}"]
    parts.append(
        format_table(
            ["fit", f"{poi}-hat", f"sigma_{poi}"],
            [[r["fit"], r["mu"], r["sigma_mu"]] for r in report["mu"]],
            title=f"\n{poi}-hat with and without the variations (others fixed at nominal)",
            floatfmt=".4f",
        )
    )
    parts.append(
        format_table(
            ["rank", "parameter", f"d{poi} (+1 sigma)", f"d{poi} (-1 sigma)"],
            [[r["rank"], r["name"], r["up"], r["down"]] for r in report["impacts"]],
            title="\nimpacts on the POI (parameter fixed at post-fit +-1 sigma, refit)",
            floatfmt=".4f",
        )
    )
    parts.append(
        format_table(
            ["parameter", "post-fit", "error", "pre-fit", "pre-fit error", "pull"],
            [
                [r["name"], r["value"], r["error"], r["prefit"], r["prefit_error"], r["pull"]]
                for r in report["pulls"]
            ],
            title="\npulls",
            floatfmt=".4f",
        )
    )
    sig = report["significance"]
    lines = [
        f"\ndiscovery significance: observed {sig['observed']:.3f}, expected "
        f"{sig['expected']:.3f} sigma"
    ]
    ul = report.get("upper_limit")
    if ul:
        exp = ", ".join(f"{x:.4g}" for x in ul["expected"])
        lines.append(
            f"CLs upper limit on {poi} ({100 * (1 - ul['level']):.0f}% CL): observed "
            f"{ul['observed']:.4g}; expected [-2, -1, 0, +1, +2 sigma] = [{exp}]"
        )
    parts.append("\n".join(lines))
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- one call
@dataclass(frozen=True)
class FitOutputs:
    """What :func:`fit_templates` produces: the workspace fitted, the patch (when a user
    workspace was given), its PatchSet, the report and its text."""

    workspace: dict[str, Any]
    patch: list[dict[str, Any]] | None
    patchset: dict[str, Any] | None
    report: dict[str, Any]
    text: str
    yields: str


def fit_templates(
    t: Templates,
    config: WorkspaceConfig | None = None,
    user_workspace: Mapping[str, Any] | None = None,
    asimov: bool = False,
    limit: bool = True,
    hepdata: str | None = None,
) -> FitOutputs:
    """Templates (and optionally a user's workspace) -> workspace or patch, fit, report.

    Without ``user_workspace`` a complete workspace is built; with it, a JSON patch adding
    the systematics is built and applied, and the patched workspace is fitted; with
    ``hepdata`` (the analysis' HEPData record) the patch is also wrapped as a PatchSet.
    """
    config = config or WorkspaceConfig()
    patch = patchset = None
    if user_workspace is None:
        ws = build_workspace(t, config)
        names = systematic_parameters(ws)
    else:
        patch = build_patch(t, user_workspace, config)
        if hepdata is not None:
            patchset = as_patchset(patch, user_workspace, hepdata)
        ws = apply_patch(user_workspace, patch)
        names = systematic_parameters(patch)
    report = fit_report(ws, names, asimov=asimov, limit=limit)
    report["config"] = config.to_dict()
    return FitOutputs(
        workspace=ws,
        patch=patch,
        patchset=patchset,
        report=report,
        text=format_report(report),
        yields=tpl.format_yields(prepare_templates(t, config)),
    )


OUTPUT_FILES = (
    "workspace.json",
    "patch.json",
    "patchset.json",
    "fit.json",
    "fit.txt",
    "yields.txt",
)


def write_fit_outputs(
    out: FitOutputs, outdir: str | os.PathLike[str], force: bool = False
) -> list[Path]:
    """Write ``workspace.json``, ``patch.json`` + ``patchset.json`` (when patching),
    ``fit.json``, ``fit.txt`` and ``yields.txt`` into ``outdir``, each atomically."""
    d = Path(outdir)
    existing = [d / f for f in OUTPUT_FILES if (d / f).exists()]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} exists; pass --force (force=True) to overwrite")
    written = [write_json(d / "workspace.json", out.workspace)]
    for name, obj in (("patch.json", out.patch), ("patchset.json", out.patchset)):
        if obj is not None:
            written.append(write_json(d / name, obj))
        else:
            (d / name).unlink(missing_ok=True)  # no stale file from an earlier run
    written.append(write_json(d / "fit.json", out.report))
    written.append(write_text(d / "fit.txt", out.text))
    written.append(write_text(d / "yields.txt", out.yields + "\n"))
    return written
