"""pyhf workspaces from templates, and JSON patches that add the templates' systematics to a
user's workspace.

Every systematic ``<name>`` of the templates (variations ``<name>_up`` / ``<name>_down``)
becomes one nuisance parameter acting through a ``normsys`` (the change of the sample's
total yield) and a ``histosys`` (the change of its shape at fixed total) of the same name,
as HistFactory's OverallSys + HistoSys pair. The interpolation is ``code4`` (normsys) and
``code4p`` (histosys). A systematic with the adversarial treatment (``config.treatment``)
becomes instead one bounded parameter theta in [0, 1] acting through delta samples
(:mod:`hepsafe.fit.adversarial`); it is never mirrored.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from hepsafe._files import read_json
from hepsafe.exceptions import FitError, MirrorWarning, TemplateError, WorkspaceError
from hepsafe.fit import adversarial as adv
from hepsafe.fit.config import MODIFIER_SETTINGS as MODIFIER_SETTINGS
from hepsafe.fit.config import WorkspaceConfig as WorkspaceConfig
from hepsafe.fit.config import load_config as load_config
from hepsafe.fit.config import parameter_name as parameter_name
from hepsafe.templates import booking as tpl
from hepsafe.templates import hygiene as hygiene
from hepsafe.templates.booking import Templates
from hepsafe.templates.control import norm_parameter


# --------------------------------------------------------------------------- control region
def control_normfactors(t: Templates, config: WorkspaceConfig) -> dict[str, str]:
    """``{sample: normfactor}`` for the control samples whose normalisation is free: the
    non-signal samples of the control region (``config.control_region``), each with one
    normfactor ``norm_<sample>`` shared by every channel. TemplateError when the control
    region is configured but not a region of ``t``."""
    cr = config.control_region
    if cr is None:
        return {}
    if cr.region not in t.regions:
        raise TemplateError(f"control_region/region: {cr.region!r} is not a region of the "
                            f"templates (regions: {t.regions}); book it with "
                            "hepsafe.templates.control.book_control")
    if not cr.free_norm:
        return {}
    return {s: norm_parameter(s) for s in _fit_samples(t, cr.region, config)
            if s not in config.signal}


def _staterror(region: str, config: WorkspaceConfig) -> bool:
    cr = config.control_region
    return config.staterror and (cr is None or cr.region != region or cr.staterror)


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


def _systematic(variation: str) -> str:
    return (tpl.split_variation(variation) or (variation, ""))[0]


def _missing_sides(t: Templates, config: WorkspaceConfig) -> Templates:
    one = [(r, s, v) for r, s, v in hygiene.one_sided(t)
           if s != config.data_sample and not config.adversarial(_systematic(v))]
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
    names = {n for r in t.regions for n in t.systematics(r) if not config.adversarial(n)}
    return hygiene.symmetrize(t, sorted(names))


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
        if config.adversarial(systematic):
            continue  # a delta sample (adversarial.delta_samples), not a modifier
        nom, up, down = _sides(t, region, sample, systematic)
        par = parameter_name(systematic, region, sample, config)
        mods += _variation_modifiers(par, nom, up, down, target)
    return mods


# --------------------------------------------------------------------------- workspace
def build_workspace(t: Templates, config: WorkspaceConfig | None = None) -> dict[str, Any]:
    """A complete pyhf workspace (a JSON-ready dict, validated) from templates.

    One channel per region, one pyhf sample per template sample: the signal samples carry
    the normfactor ``config.poi``; with ``config.control_region``, the control region's
    background samples carry a free normfactor ``norm_<sample>`` in every channel
    (:func:`control_normfactors`); every sample a ``staterror`` (from the template's sum of
    squared weights), an optional ``lumi``, and per systematic a normsys + histosys pair;
    an adversarial systematic adds a delta sample per affected sample and a parameter
    bounded to [0, 1].
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
    norms = control_normfactors(t, config)
    channels, observations, thetas = [], [], []
    for r in t.regions:
        samples, deltas = [], []
        expected = np.zeros(len(t.edges(r)) - 1)
        for s in _fit_samples(t, r, config):
            nom = t.values(r, s)
            expected += nom
            mods: list[dict[str, Any]] = []
            if s in config.signal:
                mods.append({"name": config.poi, "type": "normfactor", "data": None})
            if s in norms:
                mods.append({"name": norms[s], "type": "normfactor", "data": None})
            if _staterror(r, config):
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
            deltas += adv.delta_samples(t, r, s, config, nom, mods)
        samples += deltas
        thetas += adv.theta_names(deltas)
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
    parameters += adv.theta_parameters(thetas)
    if config.control_region is not None:
        bounds = [list(config.control_region.norm_bounds)]
        parameters += [{"name": n, "bounds": bounds, "inits": [1.0]} for n in norms.values()]
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
    sample's own nominal. An adversarial systematic adds its delta samples at the end of the
    channel and its theta parameter (bounds [0, 1]) to every measurement. Every original
    modifier is kept. Raises WorkspaceError for a
    channel or sample absent from the workspace, a bin-count mismatch, or a modifier that
    already exists on the sample with the same name and type.
    """
    config = config or WorkspaceConfig()
    validate_workspace(workspace, "user workspace")
    t = prepare_templates(t, config)
    channel_index = {c["name"]: i for i, c in enumerate(workspace["channels"])}
    ops: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
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
            for delta in adv.delta_samples(t, r, s, config, target, ws_sample["modifiers"],
                                           target_name):
                if delta["name"] in sample_index:
                    raise WorkspaceError(f"channel {channel!r} already has a sample named "
                                         f"{delta['name']!r}")
                added.append(delta)
                ops.append({"op": "add", "path": f"/channels/{ci}/samples/-", "value": delta})
    ops += _theta_ops(workspace, adv.theta_names(added))
    if not ops:
        raise WorkspaceError("the templates have no systematic variation to patch in")
    return ops


def _theta_ops(workspace: Mapping[str, Any], thetas: Sequence[str]) -> list[dict[str, Any]]:
    """Patch operations adding the theta parameters' settings to every measurement."""
    ops: list[dict[str, Any]] = []
    if not thetas:
        return ops
    for mi, meas in enumerate(workspace["measurements"]):
        have = {p["name"] for p in meas["config"].get("parameters", [])}
        clash = [n for n in thetas if n in have]
        if clash:
            raise WorkspaceError(f"measurement {meas['name']!r} already sets parameter(s) "
                                 f"{clash}")
        if "parameters" not in meas["config"]:
            ops.append({"op": "add", "path": f"/measurements/{mi}/config/parameters",
                        "value": []})
        ops += [{"op": "add", "path": f"/measurements/{mi}/config/parameters/-", "value": p}
                for p in adv.theta_parameters(thetas)]
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
    """Names of the normsys/histosys parameters and of the adversarial theta parameters in
    a patch (list) or a workspace (dict)."""
    if isinstance(modifiers, Mapping):
        mods = [m for c in modifiers["channels"] for s in c["samples"] for m in s["modifiers"]]
    else:
        mods = [op["value"] for op in modifiers if isinstance(op.get("value"), Mapping)]
    names = [m["name"] for m in mods if m.get("type") in ("normsys", "histosys")]
    return list(dict.fromkeys(names + adv.adversarial_parameters(modifiers)))
