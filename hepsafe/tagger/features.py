"""Named constituent and jet features, written once against an array namespace.

Every feature is computed from PADDED per-constituent arrays of shape ``(n_jets, n_max)``:
``pt`` [GeV], ``eta``, ``phi`` [rad], ``energy`` [GeV], ``charge`` [e] and a boolean
``mask`` (True for a real constituent). The jet four-vector and axis are summed from the
masked constituents inside the same call (E-scheme), so features stay consistent when the
constituents are perturbed, and, on torch tensors, differentiable end to end.

The same code runs on numpy arrays (inference) and torch tensors (gradients for attacks):
:func:`namespace` picks the backend from the array type. Masked slots always give exactly
0, and every ``log``/``sqrt``/``atan2``/division sees a safe argument (``where`` on the
input, not only on the output), so torch gradients are finite everywhere, also for
padding, empty jets and single-constituent jets. NaN in a real constituent is never
hidden by these guards: it propagates to the features, where the tagger reports it.
Jet-level sums, the jet mass and the energy-correlation functions are accumulated in
float64 and returned in the input dtype.

The one exception to "written once" is D2 on numpy, which uses a Numba kernel over the
real constituents only (O(n^3/6) per jet instead of an ``n_max^3`` matrix product); the
torch path uses ``e3 = trace((Z R)^3) / 6`` and agrees to float64 rounding.

"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numba
import numpy as np

from hepsafe.data import layout
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import InputError
from hepsafe.tagger._namespace import Namespace, _nan_or_zero, _resolve, _safe_sqrt, _wrap

# re-exported: the feature code's array namespaces
from hepsafe.tagger._namespace import as_namespace as as_namespace
from hepsafe.tagger._namespace import namespace as namespace

#: the per-constituent arrays a padded dict carries (plus ``mask``)
PADDED_FIELDS = ("pt", "eta", "phi", "energy", "charge")

_TWO_PI = 2.0 * math.pi


# --------------------------------------------------------------------------- the jet
@dataclass(frozen=True)
class _Jet:
    """Padded constituents of a batch of jets and quantities derived from them (cached)."""

    xp: Namespace
    pt: Any
    eta: Any
    phi: Any
    energy: Any
    charge: Any
    mask: Any

    @cached_property
    def f64(self) -> dict[str, Any]:
        xp = self.xp
        return {k: xp.astype(getattr(self, k), xp.float64) for k in ("pt", "eta", "phi", "energy")}

    def _masked(self, x: Any) -> Any:
        return self.xp.where(self.mask, x, 0.0)

    @cached_property
    def four_vector(self) -> dict[str, Any]:
        """Jet px, py, pz, E, pT, pT-sum [GeV], float64, shape (n,)."""
        xp, v = self.xp, self.f64
        m = self._masked
        px = xp.sum(m(v["pt"] * xp.cos(v["phi"])), axis=1)
        py = xp.sum(m(v["pt"] * xp.sin(v["phi"])), axis=1)
        pz = xp.sum(m(v["pt"] * xp.sinh(v["eta"])), axis=1)
        e = xp.sum(m(v["energy"]), axis=1)
        pt_sum = xp.sum(m(v["pt"]), axis=1)
        return {"px": px, "py": py, "pz": pz, "e": e, "pt": _safe_sqrt(xp, px * px + py * py),
                "pt_sum": pt_sum}

    @cached_property
    def axis(self) -> tuple[Any, Any]:
        """Jet (eta, phi), float64, shape (n,); (0, 0) for a jet with zero pT."""
        xp, fv = self.xp, self.four_vector
        ok = fv["pt"] > 0
        pt_safe = xp.where(ok, fv["pt"], 1.0)
        bad = _nan_or_zero(xp, fv["pt"] + fv["pz"])
        eta = xp.where(ok, xp.arcsinh(fv["pz"] / pt_safe), bad)
        phi = xp.where(ok, xp.arctan2(xp.where(ok, fv["py"], 0.0), xp.where(ok, fv["px"], 1.0)),
                       bad)
        return eta, phi

    @cached_property
    def mass(self) -> Any:
        """Jet mass [GeV], float64, shape (n,) (0 where E^2 - p^2 <= 0)."""
        fv = self.four_vector
        m2 = fv["e"] * fv["e"] - fv["px"] * fv["px"] - fv["py"] * fv["py"] - fv["pz"] * fv["pz"]
        return _safe_sqrt(self.xp, m2)

    @cached_property
    def dtype(self) -> Any:
        return self.xp.dtype(self.pt)

    @cached_property
    def deta(self) -> Any:
        """eta - eta_jet, shape (n, n_max), input dtype; 0 on padding."""
        jeta = self.xp.astype(self.axis[0], self.dtype)
        return self._masked(self.eta - jeta[:, None])

    @cached_property
    def dphi(self) -> Any:
        """phi - phi_jet wrapped to (-pi, pi], shape (n, n_max), input dtype; 0 on padding."""
        jphi = self.xp.astype(self.axis[1], self.dtype)
        return self._masked(_wrap(self.xp, self.phi - jphi[:, None]))

    def safe_log(self, x: Any) -> Any:
        """log(x) on real constituents, 0 on padding (log never sees padding values)."""
        xp = self.xp
        return self._masked(xp.log(xp.where(self.mask, x, 1.0)))

    def relative(self, x: Any, jet_total: Any) -> Any:
        """x / jet_total per constituent (0 on padding and where the total is 0)."""
        xp = self.xp
        tot = xp.astype(jet_total, self.dtype)[:, None]
        ok = self.mask & (tot > 0)
        return xp.where(ok, x / xp.where(ok, tot, 1.0),
                        xp.where(self.mask, _nan_or_zero(xp, tot + x), 0.0))

    @cached_property
    def ecf(self) -> tuple[Any, Any]:
        """Energy-correlation functions (e2, e3) with beta=1 and z_i = pT_i / sum pT."""
        xp = self.xp
        deta = xp.astype(self.deta, xp.float64)
        dphi = xp.astype(self.dphi, xp.float64)
        pt_sum = self.four_vector["pt_sum"]
        ok = pt_sum > 0
        z = xp.where(self.mask, self.f64["pt"], 0.0) / xp.where(ok, pt_sum, 1.0)[:, None]
        if xp.name == "numpy":
            return _ecf_kernel(z, deta, dphi, np.ascontiguousarray(self.mask))
        return _ecf_matmul(xp, z, deta, dphi, self.mask)


def _pair_distance(xp: Namespace, deta: Any, dphi: Any, mask: Any) -> Any:
    """Pairwise Delta R_ij, shape (n, n_max, n_max), 0 on the diagonal and for padding."""
    de = deta[:, :, None] - deta[:, None, :]
    dp = dphi[:, :, None] - dphi[:, None, :]
    dp = dp - _TWO_PI * xp.floor(dp / _TWO_PI + 0.5)
    pair = mask[:, :, None] & mask[:, None, :]
    return xp.where(pair, _safe_sqrt(xp, de * de + dp * dp), 0.0)


def _ecf_matmul(xp: Namespace, z: Any, deta: Any, dphi: Any, mask: Any) -> tuple[Any, Any]:
    """(e2, e3) by matrix products: e2 = z^T R z / 2, e3 = trace((Z R)^3) / 6."""
    r = _pair_distance(xp, deta, dphi, mask)
    zr = z[:, :, None] * r
    e2 = 0.5 * xp.sum(xp.sum(zr * z[:, None, :], axis=2), axis=1)
    e3 = xp.sum(xp.sum(xp.matmul(zr, zr) * xp.swap_last(zr), axis=2), axis=1) / 6.0
    return e2, e3


@numba.njit(cache=True, nogil=True)
def _ecf_kernel(
    z: np.ndarray, deta: np.ndarray, dphi: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """(e2, e3) per jet by explicit sums over real constituent pairs/triples (float64)."""
    n, m = z.shape
    e2 = np.zeros(n)
    e3 = np.zeros(n)
    idx = np.empty(m, dtype=np.int64)
    r = np.zeros((m, m))
    zz = np.empty(m)
    for j in range(n):
        k = 0
        for i in range(m):
            if mask[j, i]:
                idx[k] = i
                zz[k] = z[j, i]
                k += 1
        for a in range(k):
            for b in range(a + 1, k):
                de = deta[j, idx[a]] - deta[j, idx[b]]
                dp = dphi[j, idx[a]] - dphi[j, idx[b]]
                dp = dp - _TWO_PI * np.floor(dp / _TWO_PI + 0.5)
                r[a, b] = np.sqrt(de * de + dp * dp)
        s2 = 0.0
        s3 = 0.0
        for a in range(k):
            for b in range(a + 1, k):
                zab = zz[a] * zz[b]
                rab = r[a, b]
                s2 += zab * rab
                acc = 0.0
                for c in range(b + 1, k):
                    acc += zz[c] * r[a, c] * r[b, c]
                s3 += zab * rab * acc
        e2[j] = s2
        e3[j] = s3
    return e2, e3


# --------------------------------------------------------------------------- registries
@dataclass(frozen=True)
class Feature:
    """A named feature: how to compute it from a :class:`_Jet`, and what it means."""

    name: str
    description: str
    compute: Callable[[_Jet], Any]


def _d2(j: _Jet) -> Any:
    xp = j.xp
    e2, e3 = j.ecf
    ok = e2 > 0
    e2s = xp.where(ok, e2, 1.0)
    return xp.where(ok, e3 / (e2s * e2s * e2s), _nan_or_zero(xp, e2 + e3))


_CONSTITUENT: list[Feature] = [
    Feature("pt", "constituent pT [GeV]", lambda j: j._masked(j.pt)),
    Feature("energy", "constituent energy [GeV]", lambda j: j._masked(j.energy)),
    Feature("log_pt", "ln(pT / GeV)", lambda j: j.safe_log(j.pt)),
    Feature("log_e", "ln(E / GeV)", lambda j: j.safe_log(j.energy)),
    Feature("ptrel", "pT / jet pT", lambda j: j.relative(j.pt, j.four_vector["pt"])),
    Feature("erel", "E / jet E", lambda j: j.relative(j.energy, j.four_vector["e"])),
    Feature("log_ptrel", "ln(pT / jet pT)",
            lambda j: j.safe_log(j.relative(j.pt, j.four_vector["pt"]))),
    Feature("log_erel", "ln(E / jet E)",
            lambda j: j.safe_log(j.relative(j.energy, j.four_vector["e"]))),
    Feature("deta", "eta - jet eta", lambda j: j.deta),
    Feature("dphi", "phi - jet phi, wrapped to (-pi, pi] [rad]", lambda j: j.dphi),
    Feature("dr", "sqrt(deta^2 + dphi^2) to the jet axis",
            lambda j: j._masked(_safe_sqrt(j.xp, j.deta * j.deta + j.dphi * j.dphi))),
    Feature("charge", "electric charge [e]", lambda j: j._masked(j.charge)),
]

_JET: list[Feature] = [
    Feature("pt", "jet pT from the constituents [GeV]", lambda j: j.four_vector["pt"]),
    Feature("eta", "jet pseudorapidity from the constituents", lambda j: j.axis[0]),
    Feature("phi", "jet phi from the constituents [rad]", lambda j: j.axis[1]),
    Feature("mass", "jet mass from the constituents [GeV]", lambda j: j.mass),
    Feature("energy", "jet energy from the constituents [GeV]", lambda j: j.four_vector["e"]),
    Feature("n_constituents", "number of (unmasked, padded-in) constituents",
            lambda j: j.xp.sum(j.xp.where(j.mask, 1.0, 0.0), axis=1)),
    Feature("e2", "energy correlation e2 (beta=1, z = pT / sum pT, Delta R in eta-phi)",
            lambda j: j.ecf[0]),
    Feature("e3", "energy correlation e3 (beta=1)", lambda j: j.ecf[1]),
    Feature("d2", "D2 = e3 / e2^3 (beta=1); 0 when e2 = 0", _d2),
]

#: constituent features by name (each gives shape ``(n_jets, n_max)``)
CONSTITUENT_FEATURES: Mapping[str, Feature] = {f.name: f for f in _CONSTITUENT}
#: jet features by name (each gives shape ``(n_jets,)``)
JET_FEATURES: Mapping[str, Feature] = {f.name: f for f in _JET}


def _check_names(names: Sequence[str], known: Mapping[str, Feature], kind: str) -> list[str]:
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise InputError(f"{kind} feature list is empty")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown {kind} feature(s) {unknown}; known: {list(known)}")
    return names


def _make_jet(xp: Any, pt: Any, eta: Any, phi: Any, energy: Any, charge: Any,
              mask: Any) -> _Jet:
    ns = _resolve(xp, [pt, eta, phi, energy, mask])
    shape = ns.shape(pt)
    if len(shape) != 2:
        raise InputError(f"padded 'pt' must have shape (n_jets, n_max), got {shape}")
    for name, a in (("eta", eta), ("phi", phi), ("energy", energy), ("mask", mask),
                    ("charge", charge)):
        if a is not None and ns.shape(a) != shape:
            raise InputError(f"padded '{name}' has shape {ns.shape(a)}, expected {shape} "
                             "like 'pt'")
    if not ns.is_bool(mask):
        mask = mask != 0
    return _Jet(ns, pt, eta, phi, energy, charge, mask)


def constituent_features(
    xp: Any,
    names: Sequence[str],
    pt: Any,
    eta: Any,
    phi: Any,
    energy: Any,
    charge: Any,
    mask: Any,
) -> Any:
    """Constituent features, shape ``(n_jets, n_max, len(names))``, dtype of ``pt``.

    ``xp``: numpy, torch, a :class:`Namespace` or None (from the arrays). Inputs are padded
    arrays ``(n_jets, n_max)`` (GeV, rad; ``charge`` may be None unless ``"charge"`` is
    requested) and a boolean ``mask``; padding gives exactly 0. Names from
    :data:`CONSTITUENT_FEATURES`.
    """
    names = _check_names(names, CONSTITUENT_FEATURES, "constituent")
    if "charge" in names and charge is None:
        raise InputError("constituent feature 'charge' needs the padded field 'charge'")
    j = _make_jet(xp, pt, eta, phi, energy, charge, mask)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return j.xp.stack([CONSTITUENT_FEATURES[n].compute(j) for n in names], axis=-1)


def jet_features(
    xp: Any,
    names: Sequence[str],
    pt: Any,
    eta: Any,
    phi: Any,
    energy: Any,
    mask: Any,
) -> Any:
    """Jet features from padded constituents, shape ``(n_jets, len(names))``, dtype of ``pt``.

    Inputs as in :func:`constituent_features`. Names from :data:`JET_FEATURES`; the jet
    four-vector is the E-scheme sum of the masked constituents (computed in float64).
    """
    names = _check_names(names, JET_FEATURES, "jet")
    j = _make_jet(xp, pt, eta, phi, energy, None, mask)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cols = [j.xp.astype(JET_FEATURES[n].compute(j), j.dtype) for n in names]
        return j.xp.stack(cols, axis=-1)


def padded_constituents(jets: JetBatch, n_max: int) -> dict[str, np.ndarray]:
    """Constituents of ``jets`` padded to ``n_max``, ordered by decreasing pT.

    Returns float32 arrays ``pt, eta, phi, energy`` (and ``charge`` when the batch has it)
    of shape ``(n_jets, n_max)`` and a boolean ``mask`` of the same shape. Constituents
    masked out in the batch (field ``mask`` False) are dropped; padding slots hold 0 (the
    order of :mod:`hepsafe.data.layout`).
    """
    fields = [f for f in PADDED_FIELDS if f in jets.parts.fields]
    return layout.padded_fields(jets, n_max, fields, sort_by="pt", dtype=np.float32)
