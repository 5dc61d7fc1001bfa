"""Kernels on whole jets: projection of a delta onto the envelope box, jet four-vectors from
the kept constituents, and the rescaling of the input jets by varied / nominal sums."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from hepsafe.perturbation._scalar import _clip, _phi32, _sincos


# ---------------------------------------------------------------------- box projection
@nb.njit(cache=True, error_model="numpy")
def _clip_kernel(delta: np.ndarray, cls: np.ndarray, bounds: np.ndarray,
                 out: np.ndarray) -> int:
    for k in range(delta.shape[0]):
        c = cls[k]
        for q in range(3):
            x = delta[k, q]
            if not math.isfinite(x):
                return k
            out[k, q] = _clip(np.float64(x), bounds[c, q])
    return -1


def clip_delta(
    delta: np.ndarray, cls: np.ndarray, bounds: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Clip a delta ``(n_constituents, 3)`` float32 to the box ``|delta| <= bounds[cls]``.

    ``cls`` int8 class codes ``(n_constituents,)``, ``bounds`` float64 ``(n_classes, 3)``.
    Returns ``(clipped, first_bad)``: ``first_bad`` is the flat index of the first constituent
    with a non-finite delta, or -1. ``out`` (float32, same shape) may be the caller's own
    buffer, ``delta`` included, to avoid an allocation.
    """
    if out is None:
        out = np.empty(delta.shape, dtype=np.float32)
    bad = _clip_kernel(delta, cls, bounds, out)
    return out, int(bad)


# ---------------------------------------------------------------------- jet observables
@nb.njit(cache=True, error_model="numpy")
def _jet_kernel(offsets: np.ndarray, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
                energy: np.ndarray, mask: np.ndarray, out: np.ndarray) -> None:
    for j in range(offsets.shape[0] - 1):
        e = px = py = pz = 0.0
        for k in range(offsets[j], offsets[j + 1]):
            if mask[k]:
                p = np.float64(pt[k])
                sf, cf = _sincos(np.float64(phi[k]))
                e += energy[k]
                px += p * cf
                py += p * sf
                pz += p * math.sinh(np.float64(eta[k]))
        _store_jet(j, e, px, py, pz, out)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _store_jet(j: int, e: float, px: float, py: float, pz: float, out: np.ndarray) -> None:
    ptj = math.sqrt(px * px + py * py)
    out[0, j] = ptj
    out[1, j] = math.asinh(pz / ptj) if ptj > 0 else 0.0
    out[2, j] = _phi32(math.atan2(py, px)) if ptj > 0 else 0.0
    out[3, j] = math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))


def jet_observables(
    offsets: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    energy: np.ndarray,
    mask: np.ndarray,
) -> np.ndarray:
    """Jet (pT [GeV], eta, phi [rad], mass [GeV]) from kept constituents, E-scheme sum.

    Returns float32 of shape ``(4, n_jets)``. A jet without kept constituents, or with zero
    transverse momentum, has eta = phi = 0.
    """
    out = np.empty((4, len(offsets) - 1), dtype=np.float32)
    _jet_kernel(offsets, pt, eta, phi, energy, mask, out)
    return out


# ---------------------------------------------------------------------- the analysis' jets
@nb.njit(cache=True, inline="always", error_model="numpy")
def _scaled(x: np.float32, r: float, add: float) -> np.float32:
    """float32 ``x * r + add``, where r == 1 and add == 0 return ``x`` itself (bit for bit,
    signed zeros included)."""
    if r == 1.0 and add == 0.0:
        return x
    return np.float32(np.float64(x) * r + add)


@nb.njit(cache=True, error_model="numpy")
def _rescale_kernel(jet: np.ndarray, nominal: np.ndarray, varied: np.ndarray, msd: np.ndarray,
                    out: np.ndarray, msd_out: np.ndarray) -> None:
    for j in range(jet.shape[1]):
        pt0 = np.float64(nominal[0, j])
        pt1 = np.float64(varied[0, j])
        m0 = np.float64(nominal[3, j])
        m1 = np.float64(varied[3, j])
        keep = pt0 == 0.0  # no nominal constituent sum: the jet is left as it is
        lost = pt1 == 0.0  # every constituent masked: no jet momentum left
        r_pt = 1.0 if keep else pt1 / pt0
        # a massless nominal sum: its mass change is added rather than scaled
        r_m = 0.0 if lost and not keep else (m1 / m0 if m0 > 0.0 and not keep else 1.0)
        add_m = m1 if m0 == 0.0 and not (keep or lost) else 0.0
        d_eta = 0.0 if keep or lost else np.float64(varied[1, j]) - np.float64(nominal[1, j])
        d_phi = 0.0 if keep or lost else np.float64(varied[2, j]) - np.float64(nominal[2, j])
        out[0, j] = _scaled(jet[0, j], r_pt, 0.0)
        out[1, j] = _scaled(jet[1, j], 1.0, d_eta)
        out[2, j] = jet[2, j] if d_phi == 0.0 else _phi32(np.float64(jet[2, j]) + d_phi)
        out[3, j] = _scaled(jet[3, j], r_m, add_m)
        if msd.shape[0]:
            msd_out[j] = _scaled(msd[j], r_m, add_m)


def rescale_jets(
    jet: np.ndarray,
    nominal: np.ndarray,
    varied: np.ndarray,
    msoftdrop: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The analysis' jets moved as their constituent sums moved.

    ``jet``, ``nominal``, ``varied``: float32 ``(4, n_jets)`` rows (pT [GeV], eta, phi [rad],
    mass [GeV]): the input jets, the constituent sums before and after a perturbation.
    pT and mass are the input's times ``varied / nominal``; eta and phi are shifted by the
    change of the sums' eta and phi (phi wrapped to (-pi, pi]). ``msoftdrop`` [GeV]
    ``(n_jets,)`` is scaled by the mass ratio. A zero change leaves a jet bit for bit
    (``x / x == 1``). A jet whose nominal sum has zero pT (no kept constituents) is left as
    it is; one whose varied sum has zero pT (every constituent masked) gets pT = mass =
    soft-drop mass = 0 and keeps its eta and phi; where the nominal sum is massless the
    mass change is added instead of scaled. Returns ``(jet_out (4, n_jets) float32,
    msoftdrop_out (n_jets,) float32 or None)``.
    """
    jet = np.ascontiguousarray(jet, dtype=np.float32)
    out = np.empty_like(jet)
    msd = (np.zeros(0, dtype=np.float32) if msoftdrop is None
           else np.ascontiguousarray(msoftdrop, dtype=np.float32))
    msd_out = np.empty_like(msd)
    _rescale_kernel(jet, np.ascontiguousarray(nominal, dtype=np.float32),
                    np.ascontiguousarray(varied, dtype=np.float32), msd, out, msd_out)
    return out, (None if msoftdrop is None else msd_out)
