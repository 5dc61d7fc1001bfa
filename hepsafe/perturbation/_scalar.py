"""Constants, flag bits and inlined scalar helpers shared by the Numba kernels (phi wrapping
to (-pi, pi] in float32, clipping, sin/cos and cosh/sinh in float64)."""

from __future__ import annotations

import math

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
