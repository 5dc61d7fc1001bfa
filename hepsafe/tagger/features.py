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

import dataclasses
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
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def field(self, name: str) -> Any:
        """A padded constituent field beyond the kinematics (``pid``, ``d0`` ...), masked."""
        if name not in self.extra or self.extra[name] is None:
            raise InputError(f"constituent feature needs the padded field '{name}', which the "
                             f"padded constituents lack (have {sorted(self.extra)})")
        return self._masked(self.xp.astype(self.extra[name], self.dtype))

    def in_dtype(self, x: Any) -> Any:
        """A float64 per-constituent quantity, masked, in the input dtype."""
        return self._masked(self.xp.astype(x, self.dtype))

    def pid_in(self, codes: Sequence[int]) -> Any:
        """1.0 where |pid| is one of ``codes``, else 0 (padding 0)."""
        apid = self.xp.abs(self.field("pid"))
        hit = apid == float(codes[0])
        for c in codes[1:]:
            hit = hit | (apid == float(c))
        return self._masked(self.xp.astype(self.xp.where(hit, 1.0, 0.0), self.dtype))

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
    Feature("px", "constituent px = pT cos(phi) [GeV]",
            lambda j: j.in_dtype(j.f64["pt"] * j.xp.cos(j.f64["phi"]))),
    Feature("py", "constituent py = pT sin(phi) [GeV]",
            lambda j: j.in_dtype(j.f64["pt"] * j.xp.sin(j.f64["phi"]))),
    Feature("pz", "constituent pz = pT sinh(eta) [GeV]",
            lambda j: j.in_dtype(j.f64["pt"] * j.xp.sinh(j.f64["eta"]))),
    Feature("eta", "constituent pseudorapidity", lambda j: j._masked(j.eta)),
    Feature("abs_eta", "|eta| of the constituent", lambda j: j._masked(j.xp.abs(j.eta))),
    Feature("phi", "constituent phi [rad]", lambda j: j._masked(j.phi)),
    Feature("is_charged_hadron", "1 for |pid| 211, 321, 2212 (field pid)",
            lambda j: j.pid_in((211, 321, 2212))),
    Feature("is_neutral_hadron", "1 for |pid| 130, 310, 2112, 1 (field pid)",
            lambda j: j.pid_in((130, 310, 2112, 1))),
    Feature("is_photon", "1 for pid 22 or 2 (field pid)", lambda j: j.pid_in((22, 2))),
    Feature("is_electron", "1 for |pid| 11 (field pid)", lambda j: j.pid_in((11,))),
    Feature("is_muon", "1 for |pid| 13 (field pid)", lambda j: j.pid_in((13,))),
]

#: constituent features that read a padded field beyond the kinematics, and that field
FEATURE_FIELDS: Mapping[str, str] = {n: "pid" for n in (
    "is_charged_hadron", "is_neutral_hadron", "is_photon", "is_electron", "is_muon")}

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


def _check_names(names: Sequence[str], known: Mapping[str, Feature], kind: str,
                 fields: bool = False) -> list[str]:
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise InputError(f"{kind} feature list is empty")
    unknown = [n for n in names if n not in known and not (fields and n.startswith("field:"))]
    if unknown:
        raise InputError(f"unknown {kind} feature(s) {unknown}; known: {list(known)}"
                         + (" or field:NAME (a padded constituent field)" if fields else ""))
    return names


def _make_jet(xp: Any, pt: Any, eta: Any, phi: Any, energy: Any, charge: Any,
              mask: Any, extra: Mapping[str, Any] | None = None) -> _Jet:
    ns = _resolve(xp, [pt, eta, phi, energy, mask])
    shape = ns.shape(pt)
    if len(shape) != 2:
        raise InputError(f"padded 'pt' must have shape (n_jets, n_max), got {shape}")
    extra = dict(extra or {})
    for name, a in (("eta", eta), ("phi", phi), ("energy", energy), ("mask", mask),
                    ("charge", charge), *extra.items()):
        if a is not None and ns.shape(a) != shape:
            raise InputError(f"padded '{name}' has shape {ns.shape(a)}, expected {shape} "
                             "like 'pt'")
    if not ns.is_bool(mask):
        mask = mask != 0
    return _Jet(ns, pt, eta, phi, energy, charge, mask, extra)


def constituent_features(
    xp: Any,
    names: Sequence[str],
    pt: Any,
    eta: Any,
    phi: Any,
    energy: Any,
    charge: Any,
    mask: Any,
    fields: Mapping[str, Any] | None = None,
) -> Any:
    """Constituent features, shape ``(n_jets, n_max, len(names))``, dtype of ``pt``.

    ``xp``: numpy, torch, a :class:`Namespace` or None (from the arrays). Inputs are padded
    arrays ``(n_jets, n_max)`` (GeV, rad; ``charge`` may be None unless ``"charge"`` is
    requested) and a boolean ``mask``; padding gives exactly 0. Names from
    :data:`CONSTITUENT_FEATURES`, or ``field:NAME`` for the padded array ``fields[NAME]``
    as it is (``fields``: further padded constituent fields, e.g. ``pid`` for the
    particle-type flags, ``d0``).
    """
    names = _check_names(names, CONSTITUENT_FEATURES, "constituent", fields=True)
    if "charge" in names and charge is None:
        raise InputError("constituent feature 'charge' needs the padded field 'charge'")
    j = _make_jet(xp, pt, eta, phi, energy, charge, mask, fields)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cols = [j.field(n[6:]) if n.startswith("field:") else CONSTITUENT_FEATURES[n].compute(j)
                for n in names]
        return j.xp.stack(cols, axis=-1)


def standardise(xp: Any, x: Any, centre: Sequence[float], scale: Sequence[float],
                lo: Sequence[float], hi: Sequence[float], pad: Sequence[float] | None = None,
                mask: Any = None) -> Any:
    """``(x - centre) * scale`` clipped to ``[lo, hi]``, per feature (last axis).

    ``x``: ``(n, m, C)`` constituent or ``(n, C)`` jet features (numpy or torch, its dtype);
    ``centre``, ``scale``, ``lo``, ``hi``, ``pad``: one number per feature. With ``mask``
    (bool ``(n, m)``), padding slots hold ``pad`` (default 0). Differentiable in torch
    (gradient 0 where clipped).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[[1.0, 10.0], [0.0, 0.0]]])
    >>> standardise(np, x, [1.0, 0.0], [2.0, 1.0], [-5.0, -1.0], [5.0, 1.0], [0.0, 9.0],
    ...             np.array([[True, False]])).tolist()
    [[[0.0, 1.0], [0.0, 9.0]]]
    """
    ns = _resolve(xp, [x])
    y = (x - ns.like(centre, x)) * ns.like(scale, x)
    lo_a, hi_a = ns.like(lo, x), ns.like(hi, x)
    y = ns.where(y < lo_a, lo_a, ns.where(y > hi_a, hi_a, y))
    if mask is not None:
        m = mask if ns.is_bool(mask) else mask != 0
        y = ns.where(m[..., None], y, ns.like(pad if pad is not None else [0.0] * len(centre), x))
    return y


def wrap_index(mask: Any) -> np.ndarray:
    """Slot index of weaver's wrap padding, int64 ``(n, m)``: slot ``k`` of a jet with ``c``
    real constituents (the first ``c`` slots) reads slot ``k mod c`` (0 for empty jets)."""
    m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask) != 0
    count = m.sum(axis=1)
    k = np.arange(m.shape[1])[None, :]
    return np.where(count[:, None] > 0, k % np.maximum(count[:, None], 1), 0).astype(np.int64)


def wrap_pad(xp: Any, x: Any, mask: Any) -> Any:
    """``x`` ``(n, m, C)`` with its padding slots filled by repeating each jet's real
    constituents cyclically (weaver's ``pad_mode: wrap``); ``mask`` bool ``(n, m)``, real
    constituents first. Differentiable in torch (the copies share the gradient)."""
    ns = _resolve(xp, [x])
    return ns.take_rows(x, wrap_index(mask))


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


def padded_constituents(jets: JetBatch, n_max: int,
                        extra: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Constituents of ``jets`` padded to ``n_max``, ordered by decreasing pT.

    Returns float32 arrays ``pt, eta, phi, energy`` (and ``charge`` when the batch has it,
    and the constituent fields named in ``extra``) of shape ``(n_jets, n_max)`` and a
    boolean ``mask`` of the same shape. Constituents masked out in the batch (field
    ``mask`` False) are dropped; padding slots hold 0 (the order of
    :mod:`hepsafe.data.layout`). A field of ``extra`` the batch lacks is an
    :class:`InputError` naming it.
    """
    missing = [f for f in extra if f not in jets.parts.fields]
    if missing:
        raise InputError(f"the tagger reads constituent field(s) {missing}, which the jets lack "
                         f"(fields: {list(jets.parts.fields)})")
    fields = [f for f in PADDED_FIELDS if f in jets.parts.fields]
    fields += [f for f in extra if f not in fields]
    return layout.padded_fields(jets, n_max, fields, sort_by="pt", dtype=np.float32)
