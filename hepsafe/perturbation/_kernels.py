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
_INV_TWO_PI = 1.0 / _TWO_PI
_PI32 = float(np.float32(np.pi))  # float32 pi as a float64 value (slightly above pi)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_ONE, _TWO, _THREE = np.uint64(1), np.uint64(2), np.uint64(3)
_MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------- scalar helpers
@nb.njit(cache=True, inline="always", error_model="numpy")
def _phi32(x: float) -> np.float32:
    """float32 angle in (-float32(pi), float32(pi)]; x already inside is only rounded
    (branch-free)."""
    inside = (x > -_PI32) & (x <= _PI32)
    y = np.float32(x if inside else x - _TWO_PI * np.floor((x + _PI) * _INV_TWO_PI))
    y = np.float32(np.float64(y) - _TWO_PI) if y > _PI32 else y
    y = np.float32(np.float64(y) + _TWO_PI) if y <= -_PI32 else y
    return y


@nb.njit(cache=True, inline="always", error_model="numpy")
def _clip(x: float, b: float) -> float:
    return min(max(x, -b), b)


# sin/cos on [-pi/4, pi/4] (fdlibm kernel coefficients) after a Cody-Waite reduction by pi/2;
# within an ulp or two of libm's over the (-2pi, 2pi) used here, and several times faster.
_INV_PIO2 = 6.36619772367581382433e-01
_PIO2_1 = 1.57079632673412561417e00
_PIO2_1T = 6.07710050650619224932e-11
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1, _C2, _C3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4, _C5, _C6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11


@nb.njit(cache=True, inline="always", error_model="numpy")
def _sincos(x: float) -> tuple[float, float]:
    """(sin x, cos x) for |x| up to a few pi (float64); branch-free, so loops vectorise."""
    k = np.floor(x * _INV_PIO2 + 0.5)
    r = (x - k * _PIO2_1) - k * _PIO2_1T
    z = r * r
    sr = r + r * z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    cr = 1.0 - 0.5 * z + z * z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))
    q = np.int64(k)
    odd = (q & 1) != 0
    sn = cr if odd else sr
    cs = sr if odd else cr
    sn = -sn if (q & 2) != 0 else sn
    cs = -cs if ((q + 1) & 2) != 0 else cs
    return sn, cs


@nb.njit(cache=True, inline="always", error_model="numpy")
def _coshsinh(x: float) -> tuple[float, float]:
    """(cosh x, sinh x) from one exponential (float64)."""
    ex = math.exp(x)
    ix = 1.0 / ex
    return 0.5 * (ex + ix), 0.5 * (ex - ix)


# ---------------------------------------------------------------------- counter-based RNG
@nb.njit(cache=True, inline="always", error_model="numpy")
def _mix(z: np.uint64) -> np.uint64:
    """SplitMix64 step: a bijective, well-mixed hash of a 64-bit word."""
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _key(seed: np.uint64, stream: np.uint64, event: np.uint64, jet: np.uint64,
         part: np.uint64) -> np.uint64:
    h = _mix(seed)
    h = _mix(h ^ stream)
    h = _mix(h ^ event)
    h = _mix(h ^ jet)
    return _mix(h ^ part)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _unit(h: np.uint64) -> float:
    """Uniform in (0, 1) from the top 53 bits of ``h``."""
    return (np.float64(h >> _S11) + 0.5) * (1.0 / 9007199254740992.0)


@nb.njit(cache=True, error_model="numpy")
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
@nb.njit(cache=True, error_model="numpy")
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
@nb.njit(cache=True, error_model="numpy")
def _jet_kernel(offsets, pt, eta, phi, energy, mask, out):
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


# ---------------------------------------------------------------------- the analysis' jets
@nb.njit(cache=True, inline="always", error_model="numpy")
def _scaled(x, r, add):
    """float32 ``x * r + add``, where r == 1 and add == 0 return ``x`` itself (bit for bit,
    signed zeros included)."""
    if r == 1.0 and add == 0.0:
        return x
    return np.float32(np.float64(x) * r + add)


@nb.njit(cache=True, error_model="numpy")
def _rescale_kernel(jet, nominal, varied, msd, out, msd_out):
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


# ---------------------------------------------------------------------- apply + restore
# Jets are processed in blocks of consecutive jets (about _BLOCK constituents): elementwise
# work runs over the block's flat range in branch-free loops that LLVM vectorises (indices
# are unsigned, so no wraparound checks get in the way); jet sums are sequential loops over
# each jet's slice, so their order, and result, never depend on the blocking or the threads.
# The scratch state is one 2D array ``w`` (rows below, columns = flat index - block start).
_BLOCK = 2048
_EXP_MAX = 5.5  #: |x| up to which _exp_small is used (beyond: libm exp, in a scalar pass)
_SMALL_T = 0.0625  #: |eta shift| up to which cosh/sinh come from the addition theorem
_NJIT = {"cache": True, "error_model": "numpy"}
_INLINE = {"cache": True, "error_model": "numpy", "inline": "always"}
# scratch rows: delta (pt, eta, phi), its bounds, m^2, input cosh/sinh eta, perturbed
# eta/phi and their cosh/sinh/sin/cos, perturbed pT/energy, kept (1/0), four-momentum
# terms (E, px, py, pz), gradients (m^2: pt, eta, phi; pT: pt, phi), reference terms,
# Gram matrix terms (a11, a12, a22)
_D0, _D1, _D2, _B0, _B1, _B2, _M2, _CH0, _SH0 = 0, 1, 2, 3, 4, 5, 6, 7, 8
_ETA, _PHI, _CETA, _SETA, _CPHI, _SPHI, _PT, _E, _KEEP = 9, 10, 11, 12, 13, 14, 15, 16, 17
_T, _GM0, _GM1, _GM2, _GP0, _GP2, _R, _A, _NROWS = 18, 22, 23, 24, 25, 26, 27, 31, 34


@nb.njit(inline="always", **_NJIT)
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


@nb.njit(inline="always", **_NJIT)
def _pick(c, x0, x1, x2, x3):
    return x0 if c == 0 else (x1 if c == 1 else (x2 if c == 2 else x3))


@nb.njit(**_NJIT)
def _load(lo, hi, pt, eta, phi, energy, cls, dflat, bnd, w):
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
def _bad_flags(s, e, pt, eta, phi, energy, dflat):
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
def _trig(lo, hi, base, eta, phi, w):
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


@nb.njit(**_INLINE)
def _terms(lo, hi, base, pt, mask, min_pt, w):
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
def _ref_terms(lo, hi, pt, phi, mask, w):
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
def _sum4(lo, hi, base, w, row):
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
def _sum3(lo, hi, base, w, row):
    """Sequential sums of rows row..row+2 over [lo, hi)."""
    x = y = z = 0.0
    for j in range(lo - base, hi - base):
        i = np.uint64(j)
        x += w[row, i]
        y += w[row + 1, i]
        z += w[row + 2, i]
    return x, y, z


@nb.njit(**_INLINE)
def _solve(a11, a12, a22, use_m, use_pt, rm, rp):
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
def _free(d, b, x):
    """1.0 if a coordinate may move, else 0.0: it may not when its bound is zero or when it
    sits at a bound and ``x`` points outwards (branch-free)."""
    lim = b * (1.0 - 1e-12)
    out = ((d >= lim) & (x > 0.0)) | ((d <= -lim) & (x < 0.0))
    return 1.0 if (b > 0.0) & (not out) else 0.0


@nb.njit(**_INLINE)
def _gram(w, i, f0, f1, f2, gm0, gm1, gm2, gp0, gp2):
    """One constituent's terms of the Gram matrix of the gradients gm (jet m^2) and gp (jet
    pT) into rows _A.._A+2 (a11, a12, a22), coordinate k counted when its flag fk is 1.0."""
    w[_A, i] = f0 * gm0 * gm0 + f1 * gm1 * gm1 + f2 * gm2 * gm2
    w[_A + 1, i] = f0 * gm0 * gp0 + f2 * gm2 * gp2
    w[_A + 2, i] = f0 * gp0 * gp0 + f2 * gp2 * gp2


@nb.njit(**_INLINE)
def _moved(d, b, du, x):
    """Coordinate ``d`` (bound ``b``) moved by ``du`` bounds and clipped to [-b, b], or left
    at ``d`` when it is not free to move along the first-pass step ``x`` (see _free)."""
    u = min(max(d / b + du, -1.0), 1.0) * b
    return u if _free(d, b, x) != 0.0 else d


@nb.njit(**_INLINE)
def _newton_step(lo, hi, base, w, e, px, py, pz, use_m, rm, use_pt, rp):
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
def _restore(lo, hi, base, pt, eta, phi, mask, min_pt, pt_ref, m_ref, preserve_pt,
             preserve_mass, pt_tol, mass_tol, mass_atol, max_iter, e, px, py, pz, w):
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


@nb.njit(**_NJIT)
def _store(lo, hi, w, pt_out, eta_out, phi_out, e_out, mask_out, d_out):
    """Write a block's scratch state [lo, hi) to the float32 outputs."""
    ulo = np.uint64(lo)
    for j in range(hi - lo):
        i = np.uint64(j)
        k = i + ulo
        pt_out[k] = w[_PT, i]
        eta_out[k] = w[_ETA, i]
        phi_out[k] = w[_PHI, i]
        e_out[k] = w[_E, i]
        mask_out[k] = w[_KEEP, i] != 0.0
        d_out[_THREE * k] = w[_D0, i]
        d_out[_THREE * k + _ONE] = w[_D1, i]
        d_out[_THREE * k + _TWO] = w[_D2, i]


@nb.njit(**_NJIT)
def _blocks(offsets):
    """Jet indices splitting the jets into blocks of about _BLOCK constituents (at least one
    jet each): block b holds jets [blocks[b], blocks[b + 1])."""
    n_jets = offsets.shape[0] - 1
    out = np.empty(n_jets + 1, dtype=np.int64)
    nb_ = 0
    j0 = 0
    out[0] = 0
    while j0 < n_jets:
        j1 = j0 + 1
        while j1 < n_jets and offsets[j1 + 1] - offsets[j0] <= _BLOCK:
            j1 += 1
        nb_ += 1
        out[nb_] = j1
        j0 = j1
    return out[: nb_ + 1]


@nb.njit(**_NJIT)
def _apply_block(j0, j1, offsets, pt, eta, phi, energy, mask, cls, dflat, bnd, min_pt,
                 preserve_pt, preserve_mass, tol, max_iter, pt_out, eta_out, phi_out, e_out,
                 mask_out, d_out, jet_out, flags, w):
    """Jets [j0, j1): apply, restore, write outputs. ``tol`` = (pt_tol, mass_tol, mass_atol);
    ``w`` is this worker's scratch."""
    pt_tol, mass_tol, mass_atol = tol
    restore = preserve_pt or preserve_mass
    lo, hi = offsets[j0], offsets[j1]
    if _load(lo, hi, pt, eta, phi, energy, cls, dflat, bnd, w) > 0:
        for j in range(j0, j1):
            flags[j] = _bad_flags(offsets[j], offsets[j + 1], pt, eta, phi, energy, dflat)
    # the perturbed constituents, exactly as they will be stored (float32)
    _trig(lo, hi, lo, eta, phi, w)
    _terms(lo, hi, lo, pt, mask, min_pt, w)
    if restore:
        _ref_terms(lo, hi, pt, phi, mask, w)
    for j in range(j0, j1):
        if flags[j] != 0:
            continue
        s, t = offsets[j], offsets[j + 1]
        e, px, py, pz = _sum4(s, t, lo, w, _T)
        if restore and t > s:
            e0, px0, py0, pz0 = _sum4(s, t, lo, w, _R)
            pt_ref = math.sqrt(px0 * px0 + py0 * py0)
            m_ref = math.sqrt(max(e0 * e0 - px0 * px0 - py0 * py0 - pz0 * pz0, 0.0))
            e, px, py, pz = _restore(s, t, lo, pt, eta, phi, mask, min_pt, pt_ref, m_ref,
                                     preserve_pt, preserve_mass, pt_tol, mass_tol, mass_atol,
                                     max_iter, e, px, py, pz, w)
            ptj = math.sqrt(px * px + py * py)
            m = math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))
            fl = 0
            if preserve_pt and abs(ptj - pt_ref) > (pt_tol + _SLACK) * pt_ref:
                fl |= FLAG_PT
            if preserve_mass and abs(m - m_ref) > (mass_tol + _SLACK) * m_ref + mass_atol:
                fl |= FLAG_MASS
            flags[j] = fl
        _store_jet(j, e, px, py, pz, jet_out)
    _store(lo, hi, w, pt_out, eta_out, phi_out, e_out, mask_out, d_out)


@nb.njit(**_NJIT)
def _scratch(offsets, n_workers):
    """Zeroed scratch, one (rows, size) slab per worker."""
    size = _BLOCK
    for j in range(offsets.shape[0] - 1):
        size = max(size, offsets[j + 1] - offsets[j])
    return np.zeros((n_workers, _NROWS, size))


@nb.njit(**_NJIT)
def _apply_kernel(blocks, offsets, pt, eta, phi, energy, mask, cls, dflat, bnd, min_pt,
                  preserve_pt, preserve_mass, tol, max_iter, pt_out, eta_out, phi_out, e_out,
                  mask_out, d_out, jet_out, flags):
    w = _scratch(offsets, 1)[0]
    for b in range(blocks.shape[0] - 1):
        _apply_block(blocks[b], blocks[b + 1], offsets, pt, eta, phi, energy, mask, cls,
                     dflat, bnd, min_pt, preserve_pt, preserve_mass, tol, max_iter, pt_out,
                     eta_out, phi_out, e_out, mask_out, d_out, jet_out, flags, w)


@nb.njit(parallel=True, **_NJIT)
def _apply_kernel_parallel(blocks, offsets, pt, eta, phi, energy, mask, cls, dflat, bnd,
                           min_pt, preserve_pt, preserve_mass, tol, max_iter, pt_out, eta_out,
                           phi_out, e_out, mask_out, d_out, jet_out, flags, n_workers):
    """As _apply_kernel, the blocks dealt round-robin to ``n_workers`` threads. Each jet's
    result is the same whichever worker computes it."""
    n_blocks = blocks.shape[0] - 1
    ws = _scratch(offsets, n_workers)
    for t in nb.prange(n_workers):
        w = ws[t]
        for b in range(t, n_blocks, n_workers):
            _apply_block(blocks[b], blocks[b + 1], offsets, pt, eta, phi, energy, mask, cls,
                         dflat, bnd, min_pt, preserve_pt, preserve_mass, tol, max_iter,
                         pt_out, eta_out, phi_out, e_out, mask_out, d_out, jet_out, flags, w)


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
    threads: int | None = 1,
) -> Applied:
    """Apply a per-constituent delta, clipped to the envelope box, in one pass over the jets.

    Shapes: ``offsets`` ``(n_jets + 1,)`` int64 from 0; ``pt``, ``eta``, ``phi``, ``energy``
    ``(n_constituents,)`` float32; ``mask`` bool and ``cls`` int8 ``(n_constituents,)``;
    ``delta`` ``(n_constituents, 3)`` float32 (d_pt relative, d_eta, d_phi [rad]);
    ``bounds`` float64 ``(4, 3)`` (particle class x coordinate), indexed by ``cls``.

    For each constituent: ``pT * (1 + d_pt)``, ``eta + d_eta``, ``phi + d_phi`` wrapped,
    energy recomputed at the constituent's input mass (``m^2 = E^2 - p^2``, clipped at 0).
    A kept constituent whose new pT falls below ``min_pt`` [GeV] is masked. With
    ``preserve_pt``/``preserve_mass`` the jet pT is restored by a coherent constituent pT scale
    and the jet mass by minimal-norm steps inside the box, towards the reference jet summed
    from the input's kept constituents; a jet that cannot be brought within
    ``|dpT| <= pt_tol * pT`` / ``|dm| <= mass_tol * m + mass_atol`` gets FLAG_PT / FLAG_MASS.
    Jets with non-finite inputs or deltas get FLAG_BAD_INPUT / FLAG_BAD_DELTA (their outputs
    are undefined); the callers raise on them. ``threads``: worker threads (None: Numba's
    thread count); the result is bit-identical for any number.
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
    blocks = _blocks(offsets)
    args = (blocks, offsets, pt, eta, phi, energy, mask, cls, delta.reshape(-1),
            np.ascontiguousarray(bounds, dtype=np.float64).reshape(-1), float(min_pt),
            bool(preserve_pt), bool(preserve_mass),
            (float(pt_tol), float(mass_tol), float(mass_atol)), int(max_iter), out.pt, out.eta,
            out.phi, out.energy, out.mask, out.delta.reshape(-1), out.jet, out.flags)
    workers = min(nb.get_num_threads() if threads is None else int(threads), len(blocks) - 1)
    if workers > 1:
        _apply_kernel_parallel(*args, workers)
    else:
        _apply_kernel(*args)
    return out
