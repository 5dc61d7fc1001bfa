"""The block scratch layout of the apply kernel and the loading of a block: deltas clipped to
the envelope, the perturbed kinematics and their trigonometry."""

from __future__ import annotations

import math
from typing import Literal, TypedDict

import numba as nb
import numpy as np

from hepsafe.perturbation._scalar import (
    _ONE,
    _THREE,
    _TWO,
    FLAG_BAD_DELTA,
    FLAG_BAD_INPUT,
    _coshsinh,
    _phi32,
    _sincos,
)

# ---------------------------------------------------------------------- apply + restore
# Jets are processed in blocks of consecutive jets (about _BLOCK constituents): elementwise
# work runs over the block's flat range in branch-free loops that LLVM vectorises (indices
# are unsigned, so no wraparound checks get in the way); jet sums are sequential loops over
# each jet's slice, so their order, and result, never depend on the blocking or the threads.
# The scratch state is one 2D array ``w`` (rows below, columns = flat index - block start).
_BLOCK = 2048
_EXP_MAX = 5.5  #: |x| up to which _exp_small is used (beyond: libm exp, in a scalar pass)
_SMALL_T = 0.0625  #: |eta shift| up to which cosh/sinh come from the addition theorem


class _JitOptions(TypedDict, total=False):
    """Options of ``numba.njit`` shared by the kernels."""

    cache: bool
    error_model: Literal["python", "numpy"]
    inline: Literal["never", "always"]


_NJIT: _JitOptions = {"cache": True, "error_model": "numpy"}
_INLINE: _JitOptions = {"cache": True, "error_model": "numpy", "inline": "always"}
# scratch rows: delta (pt, eta, phi), its bounds, m^2, input cosh/sinh eta, perturbed
# eta/phi and their cosh/sinh/sin/cos, perturbed pT/energy, kept (1/0), four-momentum
# terms (E, px, py, pz), gradients (m^2: pt, eta, phi; pT: pt, phi), reference terms,
# Gram matrix terms (a11, a12, a22)
_D0, _D1, _D2, _B0, _B1, _B2, _M2, _CH0, _SH0 = 0, 1, 2, 3, 4, 5, 6, 7, 8
_ETA, _PHI, _CETA, _SETA, _CPHI, _SPHI, _PT, _E, _KEEP = 9, 10, 11, 12, 13, 14, 15, 16, 17
_T, _GM0, _GM1, _GM2, _GP0, _GP2, _R, _A, _NROWS = 18, 22, 23, 24, 25, 26, 27, 31, 34


@nb.njit(**_INLINE)
def _exp_small(x: float) -> float:
    """exp(x) for |x| <= _EXP_MAX, branch-free: Taylor series of exp(x/8), cubed-squared."""
    y = x * 0.125
    p = 1.0 + y * (1.0 / 16.0)
    p = 1.0 + y * (1.0 / 15.0) * p
    p = 1.0 + y * (1.0 / 14.0) * p
    p = 1.0 + y * (1.0 / 13.0) * p
    p = 1.0 + y * (1.0 / 12.0) * p
    p = 1.0 + y * (1.0 / 11.0) * p
    p = 1.0 + y * (1.0 / 10.0) * p
    p = 1.0 + y * (1.0 / 9.0) * p
    p = 1.0 + y * (1.0 / 8.0) * p
    p = 1.0 + y * (1.0 / 7.0) * p
    p = 1.0 + y * (1.0 / 6.0) * p
    p = 1.0 + y * (1.0 / 5.0) * p
    p = 1.0 + y * (1.0 / 4.0) * p
    p = 1.0 + y * (1.0 / 3.0) * p
    p = 1.0 + y * 0.5 * p
    p = 1.0 + y * p
    p = p * p
    p = p * p
    return p * p


@nb.njit(**_INLINE)
def _pick(c: int, x0: float, x1: float, x2: float, x3: float) -> float:
    return x0 if c == 0 else (x1 if c == 1 else (x2 if c == 2 else x3))


@nb.njit(**_NJIT)
def _load(lo: int, hi: int, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
          energy: np.ndarray, cls: np.ndarray, dflat: np.ndarray, bnd: np.ndarray,
          w: np.ndarray) -> int:
    """Flat range [lo, hi): deltas clipped to the box (bounds ``bnd``, 12 values class x
    coordinate), constituent masses squared and cosh/sinh of the input eta. Returns the
    number of constituents with a non-finite input or delta."""
    bp0, be0, bf0, bp1, be1, bf1 = bnd[0], bnd[1], bnd[2], bnd[3], bnd[4], bnd[5]
    bp2, be2, bf2, bp3, be3, bf3 = bnd[6], bnd[7], bnd[8], bnd[9], bnd[10], bnd[11]
    bad = 0
    big = 0
    ulo = np.uint64(lo)
    for j in range(hi - lo):
        i = np.uint64(j)  # unsigned indices: no wraparound checks, so the loop vectorises
        k = i + ulo
        p = np.float64(pt[k])
        x = np.float64(eta[k])
        en = np.float64(energy[k])
        v0 = np.float64(dflat[_THREE * k])
        v1 = np.float64(dflat[_THREE * k + _ONE])
        v2 = np.float64(dflat[_THREE * k + _TWO])
        v = p + x + np.float64(phi[k]) + en + v0 + v1 + v2
        bad += 0 if v - v == 0.0 else 1  # NaN or inf somewhere
        big += 1 if abs(x) > _EXP_MAX else 0
        c = cls[k]
        bp = _pick(c, bp0, bp1, bp2, bp3)
        be = _pick(c, be0, be1, be2, be3)
        bf = _pick(c, bf0, bf1, bf2, bf3)
        w[_B0, i] = bp
        w[_B1, i] = be
        w[_B2, i] = bf
        w[_D0, i] = min(max(v0, -bp), bp)
        w[_D1, i] = min(max(v1, -be), be)
        w[_D2, i] = min(max(v2, -bf), bf)
        ex = _exp_small(x)
        ix = 1.0 / ex
        ch = 0.5 * (ex + ix)
        w[_CH0, i] = ch
        w[_SH0, i] = 0.5 * (ex - ix)
        pa = p * ch
        w[_M2, i] = max(en * en - pa * pa, 0.0)
    if big > 0:
        for j in range(hi - lo):
            i = np.uint64(j)
            k = i + ulo
            x = np.float64(eta[k])
            if abs(x) > _EXP_MAX:
                ch, sh = _coshsinh(x)
                w[_CH0, i] = ch
                w[_SH0, i] = sh
                en = np.float64(energy[k])
                pa = np.float64(pt[k]) * ch
                w[_M2, i] = max(en * en - pa * pa, 0.0)
    return bad


@nb.njit(**_NJIT)
def _bad_flags(s: int, e: int, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray,
               energy: np.ndarray, dflat: np.ndarray) -> int:
    """FLAG_BAD_* bits of the constituents [s, e)."""
    fl = 0
    for k in range(s, e):
        v = np.float64(pt[k]) + np.float64(eta[k]) + np.float64(phi[k]) + np.float64(energy[k])
        if not math.isfinite(v):
            fl |= FLAG_BAD_INPUT
        v = np.float64(dflat[3 * k]) + np.float64(dflat[3 * k + 1]) + np.float64(dflat[3 * k + 2])
        if not math.isfinite(v):
            fl |= FLAG_BAD_DELTA
    return fl


@nb.njit(**_INLINE)
def _trig(lo: int, hi: int, base: int, eta: np.ndarray, phi: np.ndarray,
          w: np.ndarray) -> None:
    """Perturbed eta and phi of constituents [lo, hi), rounded to float32 as they will be
    stored, and their hyperbolic/trigonometric functions (cosh/sinh by the addition theorem
    from the input's when the eta shift is small)."""
    big = 0
    ub = np.uint64(base)
    for j in range(lo - base, hi - base):
        i = np.uint64(j)
        k = i + ub
        x0 = np.float64(eta[k])
        x = np.float64(np.float32(x0 + w[_D1, i]))
        f = np.float64(_phi32(np.float64(phi[k]) + w[_D2, i]))
        w[_ETA, i] = x
        w[_PHI, i] = f
        t = x - x0
        big += 1 if abs(t) >= _SMALL_T else 0
        t2 = t * t
        cht = 1.0 + t2 * (0.5 + t2 * (1 / 24 + t2 * (1 / 720 + t2 * (1 / 40320))))
        sht = t * (1.0 + t2 * (1 / 6 + t2 * (1 / 120 + t2 * (1 / 5040 + t2 * (1 / 362880)))))
        w[_CETA, i] = w[_CH0, i] * cht + w[_SH0, i] * sht
        w[_SETA, i] = w[_SH0, i] * cht + w[_CH0, i] * sht
        sn, cs = _sincos(f)
        w[_SPHI, i] = sn
        w[_CPHI, i] = cs
    if big > 0:
        for j in range(lo - base, hi - base):
            i = np.uint64(j)
            if abs(w[_ETA, i] - np.float64(eta[i + ub])) >= _SMALL_T:
                ch, sh = _coshsinh(w[_ETA, i])
                w[_CETA, i] = ch
                w[_SETA, i] = sh
