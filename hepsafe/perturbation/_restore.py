"""Restoration of preserved jet observables (pT, mass): Newton steps on the block's
four-momentum terms, projected onto the envelope box."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from hepsafe.perturbation._block import (
    _A,
    _B0,
    _B1,
    _B2,
    _CETA,
    _CH0,
    _CPHI,
    _D0,
    _D1,
    _D2,
    _E,
    _GM0,
    _GM1,
    _GM2,
    _GP0,
    _GP2,
    _INLINE,
    _KEEP,
    _M2,
    _NJIT,
    _PT,
    _R,
    _SETA,
    _SH0,
    _SPHI,
    _T,
    _trig,
)
from hepsafe.perturbation._scalar import (
    _ACCEPT,
    _TARGET,
    _clip,
    _sincos,
)


@nb.njit(**_INLINE)
def _terms(lo: int, hi: int, base: int, pt: np.ndarray, mask: np.ndarray, min_pt: float,
           w: np.ndarray) -> None:
    """Perturbed constituent pT and energy (float32-rounded), kept status (1/0), and each
    kept constituent's four-momentum (E, px, py, pz) in rows _T.._T+3 (zero if not kept)."""
    ub = np.uint64(base)
    for j in range(lo - base, hi - base):
        i = np.uint64(j)
        k = i + ub
        p = np.float64(np.float32(np.float64(pt[k]) * (1.0 + w[_D0, i])))
        kp = 1.0 if mask[k] & (p >= min_pt) else 0.0
        pa = p * w[_CETA, i]
        en = np.float64(np.float32(math.sqrt(w[_M2, i] + pa * pa)))
        w[_KEEP, i] = kp
        w[_PT, i] = p
        w[_E, i] = en
        w[_T, i] = kp * en
        w[_T + 1, i] = kp * p * w[_CPHI, i]
        w[_T + 2, i] = kp * p * w[_SPHI, i]
        w[_T + 3, i] = kp * p * w[_SETA, i]


@nb.njit(**_NJIT)
def _ref_terms(lo: int, hi: int, pt: np.ndarray, phi: np.ndarray, mask: np.ndarray,
               w: np.ndarray) -> None:
    """Four-momentum of each kept input constituent (energy at its clipped mass)."""
    ulo = np.uint64(lo)
    for j in range(hi - lo):
        i = np.uint64(j)
        k = i + ulo
        p = np.float64(pt[k])
        sf, cf = _sincos(np.float64(phi[k]))
        kp = 1.0 if mask[k] else 0.0
        pa = p * w[_CH0, i]
        w[_R, i] = kp * math.sqrt(w[_M2, i] + pa * pa)
        w[_R + 1, i] = kp * p * cf
        w[_R + 2, i] = kp * p * sf
        w[_R + 3, i] = kp * p * w[_SH0, i]


@nb.njit(**_INLINE)
def _sum4(lo: int, hi: int, base: int, w: np.ndarray,
          row: int) -> tuple[float, float, float, float]:
    """Sequential sums of rows row..row+3 over [lo, hi): a jet's (E, px, py, pz)."""
    e = px = py = pz = 0.0
    for j in range(lo - base, hi - base):
        i = np.uint64(j)
        e += w[row, i]
        px += w[row + 1, i]
        py += w[row + 2, i]
        pz += w[row + 3, i]
    return e, px, py, pz


@nb.njit(**_INLINE)
def _sum3(lo: int, hi: int, base: int, w: np.ndarray, row: int) -> tuple[float, float, float]:
    """Sequential sums of rows row..row+2 over [lo, hi)."""
    x = y = z = 0.0
    for j in range(lo - base, hi - base):
        i = np.uint64(j)
        x += w[row, i]
        y += w[row + 1, i]
        z += w[row + 2, i]
    return x, y, z


@nb.njit(**_INLINE)
def _solve(a11: float, a12: float, a22: float, use_m: bool, use_pt: bool, rm: float,
           rp: float) -> tuple[float, float]:
    """Coefficients (a, c) of the minimal-norm step x = a*gm + c*gp with gm.x = rm (when
    ``use_m``) and gp.x = rp (when ``use_pt``), from the Gram matrix of gm and gp."""
    if use_m and use_pt and a11 > 0.0 and a22 > 0.0:
        det = a11 * a22 - a12 * a12
        if det > 1e-12 * a11 * a22:
            return (rm * a22 - rp * a12) / det, (rp * a11 - rm * a12) / det
    if use_m and a11 > 0.0 and (rm != 0.0 or not use_pt):
        return rm / a11, 0.0
    if use_pt and a22 > 0.0:
        return 0.0, rp / a22
    return 0.0, 0.0


@nb.njit(**_INLINE)
def _free(d: float, b: float, x: float) -> float:
    """1.0 if a coordinate may move, else 0.0: it may not when its bound is zero or when it
    sits at a bound and ``x`` points outwards (branch-free)."""
    lim = b * (1.0 - 1e-12)
    out = ((d >= lim) & (x > 0.0)) | ((d <= -lim) & (x < 0.0))
    return 1.0 if (b > 0.0) & (not out) else 0.0


@nb.njit(**_INLINE)
def _gram(w: np.ndarray, i: np.uint64, f0: float, f1: float, f2: float, gm0: float, gm1: float,
          gm2: float, gp0: float, gp2: float) -> None:
    """One constituent's terms of the Gram matrix of the gradients gm (jet m^2) and gp (jet
    pT) into rows _A.._A+2 (a11, a12, a22), coordinate k counted when its flag fk is 1.0."""
    w[_A, i] = f0 * gm0 * gm0 + f1 * gm1 * gm1 + f2 * gm2 * gm2
    w[_A + 1, i] = f0 * gm0 * gp0 + f2 * gm2 * gp2
    w[_A + 2, i] = f0 * gp0 * gp0 + f2 * gp2 * gp2


@nb.njit(**_INLINE)
def _moved(d: float, b: float, du: float, x: float) -> float:
    """Coordinate ``d`` (bound ``b``) moved by ``du`` bounds and clipped to [-b, b], or left
    at ``d`` when it is not free to move along the first-pass step ``x`` (see _free)."""
    u = min(max(d / b + du, -1.0), 1.0) * b
    return u if _free(d, b, x) != 0.0 else d


@nb.njit(**_INLINE)
def _newton_step(lo: int, hi: int, base: int, w: np.ndarray, e: float, px: float, py: float,
                 pz: float, use_m: bool, rm: float, use_pt: bool, rp: float) -> bool:
    """One Gauss-Newton step for the jet [lo, hi) in the envelope-normalised coordinates
    u = delta / bound: change the jet mass squared by ``rm`` [GeV^2] and the jet pT by ``rp``
    [GeV] (a constraint not used is left free; a zero residual holds it to first order),
    with the smallest step that keeps every coordinate inside [-1, 1]. Returns False when no
    coordinate can move."""
    ptj = math.sqrt(px * px + py * py)
    use_pt = use_pt and ptj > 0.0
    iptj = 1.0 / ptj if ptj > 0.0 else 0.0
    for j in range(lo - base, hi - base):
        i = np.uint64(j)
        kp = w[_KEEP, i]
        p = w[_PT, i]
        pxi = p * w[_CPHI, i]
        pyi = p * w[_SPHI, i]
        pzi = p * w[_SETA, i]
        pa = p * w[_CETA, i]
        ie = 1.0 / max(w[_E, i], 1e-300)
        wpt = kp * w[_B0, i] / (1.0 + w[_D0, i])  # d/du_pt = (b / (1 + d)) * d/dln(pt)
        gm0 = wpt * 2.0 * (e * pa * pa * ie - (px * pxi + py * pyi + pz * pzi))
        gm1 = kp * w[_B1, i] * 2.0 * pa * (e * pzi * ie - pz)
        gm2 = kp * w[_B2, i] * 2.0 * (px * pyi - py * pxi)
        gp0 = wpt * (px * pxi + py * pyi) * iptj  # jet pT does not depend on eta
        gp2 = kp * w[_B2, i] * (py * pxi - px * pyi) * iptj
        w[_GM0, i] = gm0
        w[_GM1, i] = gm1
        w[_GM2, i] = gm2
        w[_GP0, i] = gp0
        w[_GP2, i] = gp2
        # pass 1: every coordinate is free (a zero bound has a zero gradient)
        _gram(w, i, 1.0, 1.0, 1.0, gm0, gm1, gm2, gp0, gp2)
    a11, a12, a22 = _sum3(lo, hi, base, w, _A)
    a, c = _solve(a11, a12, a22, use_m, use_pt, rm, rp)
    if a == 0.0 and c == 0.0:
        return False
    # pass 2: coordinates at a bound whose step points outwards are held fixed
    for j in range(lo - base, hi - base):
        i = np.uint64(j)
        gm0, gm1, gm2, gp0, gp2 = w[_GM0, i], w[_GM1, i], w[_GM2, i], w[_GP0, i], w[_GP2, i]
        f0 = _free(w[_D0, i], w[_B0, i], a * gm0 + c * gp0)
        f1 = _free(w[_D1, i], w[_B1, i], a * gm1)
        f2 = _free(w[_D2, i], w[_B2, i], a * gm2 + c * gp2)
        _gram(w, i, f0, f1, f2, gm0, gm1, gm2, gp0, gp2)
    a11, a12, a22 = _sum3(lo, hi, base, w, _A)
    a2, c2 = _solve(a11, a12, a22, use_m, use_pt, rm, rp)
    if a2 == 0.0 and c2 == 0.0:
        return False
    for j in range(lo - base, hi - base):
        i = np.uint64(j)
        gm0, gm1, gm2, gp0, gp2 = w[_GM0, i], w[_GM1, i], w[_GM2, i], w[_GP0, i], w[_GP2, i]
        w[_D0, i] = _moved(w[_D0, i], w[_B0, i], a2 * gm0 + c2 * gp0, a * gm0 + c * gp0)
        w[_D1, i] = _moved(w[_D1, i], w[_B1, i], a2 * gm1, a * gm1)
        w[_D2, i] = _moved(w[_D2, i], w[_B2, i], a2 * gm2 + c2 * gp2, a * gm2 + c * gp2)
    return True


@nb.njit(**_NJIT)
def _restore(lo: int, hi: int, base: int, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
             mask: np.ndarray, min_pt: float, pt_ref: float, m_ref: float, preserve_pt: bool,
             preserve_mass: bool, pt_tol: float, mass_tol: float, mass_atol: float,
             max_iter: int, e: float, px: float, py: float, pz: float,
             w: np.ndarray) -> tuple[float, float, float, float]:
    """Bring the jet [lo, hi) back within tolerance of (pt_ref, m_ref) without leaving the
    envelope: a coherent constituent pT scale (each constituent clipped to its bound), then,
    where that is not enough, Gauss-Newton steps on pT and mass. Starts from the jet sums
    ``e, px, py, pz`` of the scratch state ``w``; updates the deltas and the scratch state
    consistently and returns the final jet sums."""
    band_pt = pt_tol * pt_ref
    band_m = mass_tol * m_ref + mass_atol
    pt_lo, pt_hi = pt_ref - _TARGET * band_pt, pt_ref + _TARGET * band_pt
    m_lo, m_hi = max(m_ref - _TARGET * band_m, 0.0), m_ref + _TARGET * band_m
    for _ in range(max_iter):
        ptj = math.sqrt(px * px + py * py)
        if preserve_pt and ptj > 0.0 and abs(ptj - pt_ref) > _ACCEPT * band_pt:
            f = min(max(ptj, pt_lo), pt_hi) / ptj
            for j in range(lo - base, hi - base):
                i = np.uint64(j)
                scaled = _clip((1.0 + w[_D0, i]) * f - 1.0, w[_B0, i])
                w[_D0, i] = scaled if w[_KEEP, i] != 0.0 else w[_D0, i]
            _terms(lo, hi, base, pt, mask, min_pt, w)
            e, px, py, pz = _sum4(lo, hi, base, w, _T)
            ptj = math.sqrt(px * px + py * py)
        m2j = max(e * e - px * px - py * py - pz * pz, 0.0)
        m = math.sqrt(m2j)
        ok_pt = not preserve_pt or abs(ptj - pt_ref) <= _ACCEPT * band_pt
        ok_m = not preserve_mass or abs(m - m_ref) <= _ACCEPT * band_m
        if ok_pt and ok_m:
            break
        mt = min(max(m, m_lo), m_hi)
        rm = mt * mt - m2j
        rp = min(max(ptj, pt_lo), pt_hi) - ptj
        if not _newton_step(lo, hi, base, w, e, px, py, pz, preserve_mass, rm, preserve_pt, rp):
            break
        _trig(lo, hi, base, eta, phi, w)
        _terms(lo, hi, base, pt, mask, min_pt, w)
        e, px, py, pz = _sum4(lo, hi, base, w, _T)
    return e, px, py, pz
