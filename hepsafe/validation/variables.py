"""Control-region variables from a JetBatch: jet-level observables, constituent marginals and
the tagger score as named weighted arrays."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import awkward as ak
import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError, InputError
from hepsafe.validation.twosample import Observed

# =========================================================================== from jets
ConstituentFeatures = Callable[[JetBatch], Mapping[str, np.ndarray]]


def _kept(jets: JetBatch) -> np.ndarray | None:
    """Flat boolean mask of kept constituents, or None when ``parts`` has no ``mask`` field."""
    if "mask" not in jets.parts.fields:
        return None
    return jets.flat("mask").astype(bool)


def default_constituent_features(jets: JetBatch) -> dict[str, np.ndarray]:
    """Constituent marginals, flat over kept constituents, shape ``(n_kept,)`` each.

    ``part_pt`` [GeV], ``part_deta`` = eta - jet eta, ``part_dphi`` = phi - jet phi wrapped
    to (-pi, pi] [rad], ``part_energy`` [GeV]. Constituents whose ``mask`` is False are
    left out.
    """
    counts = jets.n_parts
    jet_eta = np.repeat(np.asarray(jets.eta, dtype=np.float64), counts)
    jet_phi = np.repeat(np.asarray(jets.phi, dtype=np.float64), counts)
    dphi = np.asarray(jets.flat("phi"), dtype=np.float64) - jet_phi
    dphi = np.where(dphi > np.pi, dphi - 2 * np.pi, dphi)
    dphi = np.where(dphi <= -np.pi, dphi + 2 * np.pi, dphi)
    out = {
        "part_pt": jets.flat("pt").astype(np.float64),
        "part_deta": jets.flat("eta").astype(np.float64) - jet_eta,
        "part_dphi": dphi,
        "part_energy": jets.flat("energy").astype(np.float64),
    }
    keep = _kept(jets)
    return out if keep is None else {k: v[keep] for k, v in out.items()}


def control_variables(
    jets: JetBatch,
    scores: np.ndarray | None = None,
    constituent_features: ConstituentFeatures | None = None,
) -> dict[str, Observed]:
    """The gate's variables of a batch: ``{name: Observed(values, weights)}``.

    Jet level (one entry per jet, weighted by ``jets.weight``): ``jet_pt``, ``jet_mass``,
    ``jet_eta``, ``n_constituents`` (kept constituents only). Constituent marginals from
    ``constituent_features`` (default :func:`default_constituent_features`; a callable
    ``jets -> {name: flat values over kept constituents}``), each constituent weighted by
    its jet's weight. ``score``: the tagger score per jet, shape ``(n_jets,)``, if given.

    Any feature set can be plugged in through ``constituent_features``; e.g. with the
    padded features of :mod:`hepsafe.tagger.features` (constituents in jet order, as required)::

        def named(jets, names=("log_pt", "deta", "dphi")):
            p = features.padded_constituents(jets, n_max=max(1, int(jets.n_parts.max())))
            x = features.constituent_features(np, names, **p)
            return {f"part_{n}": x[..., i][p["mask"]] for i, n in enumerate(names)}

        validate.gate(nominal, perturbed, constituent_features=named)
    """
    w = np.asarray(jets.weight, dtype=np.float64)
    keep = _kept(jets)
    if keep is None:
        n_const = jets.n_parts
    else:
        n_const = ak.to_numpy(ak.sum(jets.parts["mask"], axis=1)).astype(np.int64)
    out = {
        "jet_pt": Observed(np.asarray(jets.pt, dtype=np.float64), w),
        "jet_mass": Observed(np.asarray(jets.mass, dtype=np.float64), w),
        "jet_eta": Observed(np.asarray(jets.eta, dtype=np.float64), w),
        "n_constituents": Observed(n_const.astype(np.float64), w),
    }
    feats = (constituent_features or default_constituent_features)(jets)
    w_const = np.repeat(w, jets.n_parts)
    if keep is not None:
        w_const = w_const[keep]
    for name, values in feats.items():
        v = np.asarray(values, dtype=np.float64)
        if v.shape != w_const.shape:
            raise InputError(
                f"constituent feature '{name}' has shape {v.shape}, expected {w_const.shape} "
                "(one value per kept constituent)"
            )
        out[name] = Observed(v, w_const)
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (len(jets),):
            raise InputError(f"scores have shape {s.shape}, expected ({len(jets)},) (one per jet)")
        out["score"] = Observed(s, w)
    return out


def _select(
    select: np.ndarray | tuple[np.ndarray, np.ndarray] | None, n_nom: int, n_per: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if select is None:
        return None, None
    if isinstance(select, tuple):
        if len(select) != 2:
            raise ConfigError("'select' must be a mask or a pair (nominal mask, perturbed mask)")
        masks = select
    else:
        if n_nom != n_per:
            raise ConfigError(
                f"'select' is one mask but the samples differ in size ({n_nom} vs {n_per} jets);"
                " pass a pair (nominal mask, perturbed mask)"
            )
        masks = (select, select)
    out = []
    for m, n, which in zip(masks, (n_nom, n_per), ("nominal", "perturbed"), strict=True):
        a = np.asarray(m)
        if a.dtype != bool or a.shape != (n,):
            raise ConfigError(
                f"'select' ({which}) must be a boolean mask of shape ({n},), got "
                f"{a.dtype} {a.shape}"
            )
        if not a.any():
            raise InputError(f"'select' ({which}) keeps no jets: the control sample is empty")
        out.append(a)
    return out[0], out[1]
