"""The adversarial fit treatment: a one-sided variation as one bounded parameter.

A variation with ``treatment: adversarial`` becomes, per affected sample, a *delta sample*
``<sample>_<parameter>_delta`` with yields ``adversarial - nominal`` (relative change applied
to the workspace sample's own nominal when patching) and a ``normfactor`` theta bounded to
[0, 1] with a flat prior (no constraint term). The sample's expected yield is
``nominal + theta * (adversarial - nominal)``: the nominal at theta = 0, the adversarial
template at theta = 1, a convex combination of two non-negative templates in between. The
delta sample carries the sample's other normfactors (the POI for a signal sample, so the
delta scales with mu) and its lumi modifier, but no staterror: the statistical uncertainty
of the templates stays on the nominal sample (docs/STATISTICS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepsafe.exceptions import FitError
from hepsafe.fit.config import TREATMENTS as TREATMENTS
from hepsafe.fit.config import WorkspaceConfig, parameter_name
from hepsafe.templates import booking as tpl
from hepsafe.templates.booking import Templates

#: pyhf bounds and initial value of a theta parameter
THETA_BOUNDS = (0.0, 1.0)
THETA_INIT = 0.0
#: the name suffix of a delta sample
DELTA_SUFFIX = "_delta"
#: modifier types a delta sample copies from its sample
_CARRIED = ("normfactor", "lumi")


def adversarial_systematics(t: Templates, config: WorkspaceConfig) -> list[str]:
    """The systematics of ``t`` that take the adversarial treatment under ``config``."""
    names = {n for r in t.regions for n in t.systematics(r)}
    return sorted(n for n in names if config.adversarial(n))


def adversarial_template(t: Templates, region: str, sample: str, name: str) -> np.ndarray | None:
    """The one side present of systematic ``name`` for (region, sample), or None when the
    sample has no such variation. FitError when both sides are present."""
    present = t.variations(region, sample)
    up, down = tpl.variation_name(name, tpl.UP), tpl.variation_name(name, tpl.DOWN)
    if up in present and down in present:
        raise FitError(f"{region}/{sample} {name}: the adversarial treatment takes one side, "
                       f"but both {up!r} and {down!r} are present; give one, or use the "
                       "gaussian treatment")
    side = up if up in present else down if down in present else None
    return None if side is None else np.asarray(t.values(region, sample, side), np.float64)


def delta_samples(
    t: Templates, region: str, sample: str, config: WorkspaceConfig, target: np.ndarray,
    sample_modifiers: Sequence[Mapping[str, Any]], target_name: str | None = None,
) -> list[dict[str, Any]]:
    """The delta samples of ``sample`` in ``region``, one per adversarial systematic.

    ``target``: the workspace sample's nominal yields (the template's relative change
    ``adversarial / nominal - 1`` is applied to it); ``sample_modifiers``: that sample's
    modifiers (its normfactors and lumi are carried over).
    """
    nom = np.asarray(t.values(region, sample), np.float64)
    carried = [dict(m) for m in sample_modifiers if m.get("type") in _CARRIED]
    out = []
    for name in adversarial_systematics(t, config):
        adv = adversarial_template(t, region, sample, name)
        if adv is None:
            continue
        rel = np.divide(adv - nom, nom, out=np.zeros_like(nom), where=nom > 0)
        delta = np.where(nom > 0, target * rel, adv - nom)
        par = parameter_name(name, region, sample, config)
        mods = [{"name": par, "type": "normfactor", "data": None}, *carried]
        out.append({"name": f"{target_name or sample}_{par}{DELTA_SUFFIX}",
                    "data": delta.tolist(), "modifiers": mods})
    return out


def theta_parameters(names: Sequence[str]) -> list[dict[str, Any]]:
    """Measurement parameter settings of the theta parameters ``names``: bounds [0, 1],
    initial value 0, no auxiliary data (a flat prior)."""
    return [{"name": n, "bounds": [list(THETA_BOUNDS)], "inits": [THETA_INIT]}
            for n in dict.fromkeys(names)]


def theta_names(samples: Sequence[Mapping[str, Any]]) -> list[str]:
    """The theta parameters of delta samples (each one's first normfactor)."""
    return list(dict.fromkeys(s["modifiers"][0]["name"] for s in samples))


def adversarial_parameters(spec: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[str]:
    """Names of the theta parameters in a patch (list) or a workspace (dict): the first
    normfactor of every delta sample."""
    if isinstance(spec, Mapping):
        samples = [s for c in spec["channels"] for s in c["samples"]]
    else:
        samples = [op["value"] for op in spec
                   if isinstance(op.get("value"), Mapping) and "modifiers" in op["value"]]
    return theta_names([s for s in samples if str(s["name"]).endswith(DELTA_SUFFIX)
                        and s["modifiers"] and s["modifiers"][0]["type"] == "normfactor"])
