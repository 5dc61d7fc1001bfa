"""Numba kernels on flat awkward buffers: apply and project perturbations, jet observables,
restoration of preserved observables, and a counter-based random number generator.

Every kernel works on the flat constituent buffers of a jagged array: ``offsets`` (int64,
shape ``(n_jets + 1,)``, from 0) and contiguous per-constituent content (float32 kinematics
``pt`` [GeV], ``eta``, ``phi`` [rad], ``energy`` [GeV]; bool ``mask``; int8 particle class
codes). Per-constituent deltas are float32 arrays of shape ``(n_constituents, 3)`` with
columns ``(d_pt relative, d_eta, d_phi [rad])``. Kernels never modify their inputs: the
Python wrappers here allocate fresh outputs (or write into a caller's ``out``). Loops over jets
live only inside the kernels; arithmetic is float64, outputs float32.

Phi is wrapped to (-pi, pi] as float32 values: ``-float32(pi) < phi <= float32(pi)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

#: flag bits per jet (``flags`` array, uint8)
FLAG_PT = 1  #: preserved jet pT could not be brought within tolerance inside the envelope
FLAG_MASS = 2  #: preserved jet mass could not be brought within tolerance inside the envelope
FLAG_BAD_INPUT = 4  #: a constituent input (pt, eta, phi, energy) is NaN or infinite
FLAG_BAD_DELTA = 8  #: a delta is NaN or infinite

#: restoration aims this fraction of the tolerance band inside its edge...
_TARGET = 0.8
#: ... and stops once the observables lie within this fraction of it
_ACCEPT = 0.95
#: relative slack on the final tolerance check (float32 rounding of the outputs)
_SLACK = 2e-6
_PI = math.pi
_TWO_PI = 2.0 * math.pi
_PI32 = float(np.float32(np.pi))  # float32 pi as a float64 value (slightly above pi)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_ONE, _TWO = np.uint64(1), np.uint64(2)
_MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------- scalar helpers
@nb.njit(cache=True, inline="always")
def _wrap(x: float) -> float:
    """Angle wrapped to [-pi, pi] (float64)."""
    if x > _PI or x <= -_PI:
        x = x - _TWO_PI * math.floor((x + _PI) / _TWO_PI)
    return x


@nb.njit(cache=True, inline="always")
def _phi32(x: float) -> np.float32:
    """float32 angle in (-float32(pi), float32(pi)]."""
    y = np.float32(_wrap(x))
    if y > _PI32:
        y = np.float32(np.float64(y) - _TWO_PI)
    elif y <= -_PI32:
        y = np.float32(np.float64(y) + _TWO_PI)
    return y


@nb.njit(cache=True, inline="always")
def _clip(x: float, b: float) -> float:
    return min(max(x, -b), b)


# ---------------------------------------------------------------------- counter-based RNG
@nb.njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    """SplitMix64 step: a bijective, well-mixed hash of a 64-bit word."""
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@nb.njit(cache=True, inline="always")
def _key(seed: np.uint64, stream: np.uint64, event: np.uint64, jet: np.uint64,
         part: np.uint64) -> np.uint64:
    h = _mix(seed)
    h = _mix(h ^ stream)
    h = _mix(h ^ event)
    h = _mix(h ^ jet)
    return _mix(h ^ part)


@nb.njit(cache=True, inline="always")
def _unit(h: np.uint64) -> float:
    """Uniform in (0, 1) from the top 53 bits of ``h``."""
    return (np.float64(h >> _S11) + 0.5) * (1.0 / 9007199254740992.0)


@nb.njit(cache=True)
def _random_kernel(seed, stream, event, jet_index, offsets, normal, out):
    n_jets = offsets.shape[0] - 1
    for j in range(n_jets):
        ev = np.uint64(event[j])
        jt = np.uint64(jet_index[j])
        s = offsets[j]
        for i in range(offsets[j + 1] - s):
            h = _key(seed, stream, ev, jt, np.uint64(i))
            u1 = _unit(_mix(h ^ _ONE))
            if normal:
                u2 = _unit(_mix(h ^ _TWO))
                out[s + i] = math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)
            else:
                out[s + i] = u1


def _u64(x: int) -> np.uint64:
    return np.uint64(int(x) & _MASK64)


def random_uniform(
    seed: int, stream: int, event: np.ndarray, jet_index: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Uniform numbers in (0, 1), one per constituent, shape ``(n_constituents,)``, float64.

    Each value is a pure function of ``(seed, stream, event, jet_index, constituent index
    within the jet)``, so it does not depend on chunking, batch size or worker count.
    """
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    out = np.empty(int(offsets[-1]), dtype=np.float64)
    _random_kernel(_u64(seed), _u64(stream), np.ascontiguousarray(event, dtype=np.int64),
                   np.ascontiguousarray(jet_index, dtype=np.int64), offsets, False, out)
    return out


def random_normal(
    seed: int, stream: int, event: np.ndarray, jet_index: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Standard normal numbers (Box-Muller), one per constituent, shape ``(n_constituents,)``.

    Keyed like :func:`random_uniform`.
    """
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    out = np.empty(int(offsets[-1]), dtype=np.float64)
    _random_kernel(_u64(seed), _u64(stream), np.ascontiguousarray(event, dtype=np.int64),
                   np.ascontiguousarray(jet_index, dtype=np.int64), offsets, True, out)
    return out


# ---------------------------------------------------------------------- box projection
@nb.njit(cache=True)
def _clip_kernel(delta, cls, bounds, out):
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
@nb.njit(cache=True)
def _jet_kernel(offsets, pt, eta, phi, energy, mask, out):
    for j in range(offsets.shape[0] - 1):
        e = px = py = pz = 0.0
        for k in range(offsets[j], offsets[j + 1]):
            if mask[k]:
                p = np.float64(pt[k])
                f = np.float64(phi[k])
                e += energy[k]
                px += p * math.cos(f)
                py += p * math.sin(f)
                pz += p * math.sinh(np.float64(eta[k]))
        _store_jet(j, e, px, py, pz, out)


@nb.njit(cache=True, inline="always")
def _store_jet(j, e, px, py, pz, out):
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


# ---------------------------------------------------------------------- apply + restore
@nb.njit(cache=True)
def _trig(s, n, eta, phi, d, ceta, seta, cphi, sphi):
    for i in range(n):
        e = np.float64(eta[s + i]) + d[i, 1]
        f = np.float64(phi[s + i]) + d[i, 2]
        ceta[i] = math.cosh(e)
        seta[i] = math.sinh(e)
        cphi[i] = math.cos(f)
        sphi[i] = math.sin(f)


@nb.njit(cache=True)
def _sums(s, n, pt, mask, d, m2, min_pt, ceta, seta, cphi, sphi, ptc, ec, keep):
    """Current constituent pT/energy/kept status and the jet four-vector sum."""
    e = px = py = pz = 0.0
    for i in range(n):
        p = np.float64(pt[s + i]) * (1.0 + d[i, 0])
        ptc[i] = p
        k = mask[s + i] and p >= min_pt
        keep[i] = k
        pa = p * ceta[i]
        ec[i] = math.sqrt(m2[i] + pa * pa)
        if k:
            e += ec[i]
            px += p * cphi[i]
            py += p * sphi[i]
            pz += p * seta[i]
    return e, px, py, pz


@nb.njit(cache=True)
def _solve(n, keep, free, gm, gp, use_m, use_pt, rm, rp):
    """Minimal-norm step coefficients over the free coordinates: x = a*gm + c*gp with
    gm.x = rm (when ``use_m``) and gp.x = rp (when ``use_pt``)."""
    a11 = a12 = a22 = 0.0
    for i in range(n):
        if not keep[i]:
            continue
        for q in range(3):
            if free[i, q]:
                a11 += gm[i, q] * gm[i, q]
                a12 += gm[i, q] * gp[i, q]
                a22 += gp[i, q] * gp[i, q]
    if use_m and use_pt and a11 > 0.0 and a22 > 0.0:
        det = a11 * a22 - a12 * a12
        if det > 1e-12 * a11 * a22:
            return (rm * a22 - rp * a12) / det, (rp * a11 - rm * a12) / det
    if use_m and a11 > 0.0 and (rm != 0.0 or not use_pt):
        return rm / a11, 0.0
    if use_pt and a22 > 0.0:
        return 0.0, rp / a22
    return 0.0, 0.0


@nb.njit(cache=True)
def _newton_step(n, d, b, keep, ptc, ec, ceta, seta, cphi, sphi, e, px, py, pz, use_m, rm,
                 use_pt, rp, gm, gp, free):
    """One Gauss-Newton step in the envelope-normalised coordinates u = delta / bound: change
    the jet mass squared by ``rm`` [GeV^2] and the jet pT by ``rp`` [GeV] (a constraint not
    used is left free; a zero residual holds it to first order), with the smallest step that
    keeps every coordinate inside [-1, 1]. Returns False when no coordinate can move."""
    ptj = math.sqrt(px * px + py * py)
    for i in range(n):
        for q in range(3):
            gm[i, q] = 0.0
            gp[i, q] = 0.0
        if not keep[i] or ec[i] <= 0.0:
            continue
        p = ptc[i]
        pxi = p * cphi[i]
        pyi = p * sphi[i]
        pzi = p * seta[i]
        pa = p * ceta[i]
        w = b[i, 0] / (1.0 + d[i, 0])  # d/du_pt = w * d/dln(pt)
        gm[i, 0] = w * 2.0 * (e * pa * pa / ec[i] - (px * pxi + py * pyi + pz * pzi))
        gm[i, 1] = b[i, 1] * 2.0 * pa * (e * pzi / ec[i] - pz)
        gm[i, 2] = b[i, 2] * 2.0 * (px * pyi - py * pxi)
        if ptj > 0.0:
            gp[i, 0] = w * (px * pxi + py * pyi) / ptj
            gp[i, 2] = b[i, 2] * (py * pxi - px * pyi) / ptj
    use_pt = use_pt and ptj > 0.0
    # pass 1: every coordinate with a non-zero bound is free
    for i in range(n):
        for q in range(3):
            free[i, q] = b[i, q] > 0.0
    a, c = _solve(n, keep, free, gm, gp, use_m, use_pt, rm, rp)
    if a == 0.0 and c == 0.0:
        return False
    # pass 2: coordinates at a bound whose step points outwards are held fixed
    for i in range(n):
        for q in range(3):
            if b[i, q] > 0.0:
                u = d[i, q] / b[i, q]
                x = a * gm[i, q] + c * gp[i, q]
                free[i, q] = not ((u >= 1.0 - 1e-12 and x > 0.0)
                                  or (u <= -1.0 + 1e-12 and x < 0.0))
    a, c = _solve(n, keep, free, gm, gp, use_m, use_pt, rm, rp)
    if a == 0.0 and c == 0.0:
        return False
    for i in range(n):
        if not keep[i]:
            continue
        for q in range(3):
            if free[i, q]:
                u = d[i, q] / b[i, q] + a * gm[i, q] + c * gp[i, q]
                d[i, q] = min(max(u, -1.0), 1.0) * b[i, q]
    return True


@nb.njit(cache=True)
def _restore(s, n, pt, eta, phi, mask, d, b, m2, min_pt, pt_ref, m_ref, preserve_pt,
             preserve_mass, pt_tol, mass_tol, mass_atol, max_iter,
             ceta, seta, cphi, sphi, ptc, ec, keep, gm, gp, free):
    """Bring jet pT and mass back within tolerance without leaving the envelope: a coherent
    constituent pT scale (each constituent clipped to its bound), then, where that is not
    enough, Gauss-Newton steps on pT and mass. Modifies the scratch ``d`` only."""
    band_pt = pt_tol * pt_ref
    band_m = mass_tol * m_ref + mass_atol
    pt_lo, pt_hi = pt_ref - _TARGET * band_pt, pt_ref + _TARGET * band_pt
    m_lo, m_hi = max(m_ref - _TARGET * band_m, 0.0), m_ref + _TARGET * band_m
    _trig(s, n, eta, phi, d, ceta, seta, cphi, sphi)
    e, px, py, pz = _sums(s, n, pt, mask, d, m2, min_pt, ceta, seta, cphi, sphi, ptc, ec, keep)
    for _ in range(max_iter):
        ptj = math.sqrt(px * px + py * py)
        if preserve_pt and ptj > 0.0 and abs(ptj - pt_ref) > _ACCEPT * band_pt:
            f = min(max(ptj, pt_lo), pt_hi) / ptj
            for i in range(n):
                if keep[i]:
                    d[i, 0] = _clip((1.0 + d[i, 0]) * f - 1.0, b[i, 0])
            e, px, py, pz = _sums(s, n, pt, mask, d, m2, min_pt, ceta, seta, cphi, sphi,
                                  ptc, ec, keep)
            ptj = math.sqrt(px * px + py * py)
        m2j = max(e * e - px * px - py * py - pz * pz, 0.0)
        m = math.sqrt(m2j)
        ok_pt = not preserve_pt or abs(ptj - pt_ref) <= _ACCEPT * band_pt
        ok_m = not preserve_mass or abs(m - m_ref) <= _ACCEPT * band_m
        if ok_pt and ok_m:
            return
        mt = min(max(m, m_lo), m_hi)
        rm = mt * mt - m2j
        rp = min(max(ptj, pt_lo), pt_hi) - ptj
        if not _newton_step(n, d, b, keep, ptc, ec, ceta, seta, cphi, sphi, e, px, py, pz,
                            preserve_mass, rm, preserve_pt, rp, gm, gp, free):
            return
        _trig(s, n, eta, phi, d, ceta, seta, cphi, sphi)
        e, px, py, pz = _sums(s, n, pt, mask, d, m2, min_pt, ceta, seta, cphi, sphi, ptc, ec,
                              keep)


@nb.njit(cache=True)
def _apply_kernel(offsets, pt, eta, phi, energy, mask, cls, delta, bounds, min_pt,
                  preserve_pt, preserve_mass, pt_tol, mass_tol, mass_atol, max_iter,
                  pt_out, eta_out, phi_out, e_out, mask_out, d_out, jet_out, flags):
    n_jets = offsets.shape[0] - 1
    nmax = 0
    for j in range(n_jets):
        nmax = max(nmax, offsets[j + 1] - offsets[j])
    d = np.zeros((nmax, 3))
    b = np.zeros((nmax, 3))
    gm = np.zeros((nmax, 3))
    gp = np.zeros((nmax, 3))
    free = np.zeros((nmax, 3), dtype=np.bool_)
    m2 = np.zeros(nmax)
    ceta = np.zeros(nmax)
    seta = np.zeros(nmax)
    cphi = np.zeros(nmax)
    sphi = np.zeros(nmax)
    ptc = np.zeros(nmax)
    ec = np.zeros(nmax)
    keep = np.zeros(nmax, dtype=np.bool_)
    restore = preserve_pt or preserve_mass
    for j in range(n_jets):
        s = offsets[j]
        n = offsets[j + 1] - s
        fl = 0
        for k in range(s, s + n):
            if not (math.isfinite(pt[k]) and math.isfinite(eta[k]) and math.isfinite(phi[k])
                    and math.isfinite(energy[k])):
                fl |= FLAG_BAD_INPUT
            if not (math.isfinite(delta[k, 0]) and math.isfinite(delta[k, 1])
                    and math.isfinite(delta[k, 2])):
                fl |= FLAG_BAD_DELTA
        if fl != 0:
            flags[j] = fl
            continue
        # clip to the envelope; constituent masses and the reference jet from the input
        e0 = px0 = py0 = pz0 = 0.0
        for i in range(n):
            k = s + i
            c = cls[k]
            for q in range(3):
                b[i, q] = bounds[c, q]
                d[i, q] = _clip(np.float64(delta[k, q]), b[i, q])
            p = np.float64(pt[k])
            x = np.float64(eta[k])
            en = np.float64(energy[k])
            pa = p * math.cosh(x)
            m2[i] = max(en * en - pa * pa, 0.0)
            if restore and mask[k]:
                f = np.float64(phi[k])
                e0 += math.sqrt(m2[i] + pa * pa)
                px0 += p * math.cos(f)
                py0 += p * math.sin(f)
                pz0 += p * math.sinh(x)
        pt_ref = math.sqrt(px0 * px0 + py0 * py0)
        m_ref = math.sqrt(max(e0 * e0 - px0 * px0 - py0 * py0 - pz0 * pz0, 0.0))
        if restore and n > 0:
            _restore(s, n, pt, eta, phi, mask, d, b, m2, min_pt, pt_ref, m_ref, preserve_pt,
                     preserve_mass, pt_tol, mass_tol, mass_atol, max_iter,
                     ceta, seta, cphi, sphi, ptc, ec, keep, gm, gp, free)
        # outputs (float32) and the jet four-vector from the float32 outputs
        e = px = py = pz = 0.0
        for i in range(n):
            k = s + i
            p32 = np.float32(np.float64(pt[k]) * (1.0 + d[i, 0]))
            x32 = np.float32(np.float64(eta[k]) + d[i, 1])
            f32 = _phi32(np.float64(phi[k]) + d[i, 2])
            p = np.float64(p32)
            x = np.float64(x32)
            f = np.float64(f32)
            pa = p * math.cosh(x)
            e32 = np.float32(math.sqrt(m2[i] + pa * pa))
            kept = mask[k] and p >= min_pt
            pt_out[k] = p32
            eta_out[k] = x32
            phi_out[k] = f32
            e_out[k] = e32
            mask_out[k] = kept
            for q in range(3):
                d_out[k, q] = d[i, q]
            if kept:
                e += np.float64(e32)
                px += p * math.cos(f)
                py += p * math.sin(f)
                pz += p * math.sinh(x)
        _store_jet(j, e, px, py, pz, jet_out)
        if restore:
            ptj = math.sqrt(px * px + py * py)
            m = math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))
            if preserve_pt and abs(ptj - pt_ref) > (pt_tol + _SLACK) * pt_ref:
                fl |= FLAG_PT
            if preserve_mass and abs(m - m_ref) > (mass_tol + _SLACK) * m_ref + mass_atol:
                fl |= FLAG_MASS
        flags[j] = fl


class Applied(NamedTuple):
    """Outputs of :func:`apply_delta` (all fresh arrays)."""

    pt: np.ndarray  #: (n_constituents,) float32 [GeV]
    eta: np.ndarray  #: (n_constituents,) float32
    phi: np.ndarray  #: (n_constituents,) float32 [rad], in (-pi, pi]
    energy: np.ndarray  #: (n_constituents,) float32 [GeV], constituent mass kept
    mask: np.ndarray  #: (n_constituents,) bool, kept constituents
    delta: np.ndarray  #: (n_constituents, 3) float32, the delta actually applied
    jet: np.ndarray  #: (4, n_jets) float32: jet pT [GeV], eta, phi [rad], mass [GeV]
    flags: np.ndarray  #: (n_jets,) uint8, FLAG_* bits


def apply_delta(
    offsets: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    energy: np.ndarray,
    mask: np.ndarray,
    cls: np.ndarray,
    delta: np.ndarray,
    bounds: np.ndarray,
    *,
    min_pt: float = 0.0,
    preserve_pt: bool = False,
    preserve_mass: bool = False,
    pt_tol: float = 0.01,
    mass_tol: float = 0.01,
    mass_atol: float = 0.1,
    max_iter: int = 8,
) -> Applied:
    """Apply a per-constituent delta, clipped to the envelope box, in one pass over the jets.

    Shapes: ``offsets`` ``(n_jets + 1,)`` int64 from 0; ``pt``, ``eta``, ``phi``, ``energy``
    ``(n_constituents,)`` float32; ``mask`` bool and ``cls`` int8 ``(n_constituents,)``;
    ``delta`` ``(n_constituents, 3)`` float32 (d_pt relative, d_eta, d_phi [rad]);
    ``bounds`` float64 ``(n_classes, 3)``, indexed by ``cls``.

    For each constituent: ``pT * (1 + d_pt)``, ``eta + d_eta``, ``phi + d_phi`` wrapped,
    energy recomputed at the constituent's input mass (``m^2 = E^2 - p^2``, clipped at 0).
    A kept constituent whose new pT falls below ``min_pt`` [GeV] is masked. With
    ``preserve_pt``/``preserve_mass`` the jet pT is restored by a coherent constituent pT scale
    and the jet mass by minimal-norm steps inside the box, towards the reference jet summed
    from the input's kept constituents; a jet that cannot be brought within
    ``|dpT| <= pt_tol * pT`` / ``|dm| <= mass_tol * m + mass_atol`` gets FLAG_PT / FLAG_MASS.
    Jets with non-finite inputs or deltas get FLAG_BAD_INPUT / FLAG_BAD_DELTA (their outputs
    are undefined); the callers raise on them.
    """
    n = int(offsets[-1]) if len(offsets) else 0
    n_jets = len(offsets) - 1
    out = Applied(
        pt=np.empty(n, dtype=np.float32),
        eta=np.empty(n, dtype=np.float32),
        phi=np.empty(n, dtype=np.float32),
        energy=np.empty(n, dtype=np.float32),
        mask=np.empty(n, dtype=np.bool_),
        delta=np.empty((n, 3), dtype=np.float32),
        jet=np.zeros((4, n_jets), dtype=np.float32),
        flags=np.zeros(n_jets, dtype=np.uint8),
    )
    _apply_kernel(offsets, pt, eta, phi, energy, mask, cls, delta, bounds, float(min_pt),
                  bool(preserve_pt), bool(preserve_mass), float(pt_tol), float(mass_tol),
                  float(mass_atol), int(max_iter), out.pt, out.eta, out.phi, out.energy,
                  out.mask, out.delta, out.jet, out.flags)
    return out
