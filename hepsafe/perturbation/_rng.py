"""Counter-based random numbers: each value a pure function of (seed, stream, event, jet,
constituent), so a random variation never depends on chunking, batch size or workers."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from hepsafe.perturbation._scalar import (
    _GOLDEN,
    _MASK64,
    _MUL1,
    _MUL2,
    _ONE,
    _S11,
    _S27,
    _S30,
    _S31,
    _TWO,
    _TWO_PI,
)


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
def _random_kernel(seed: np.uint64, stream: np.uint64, event: np.ndarray,
                   jet_index: np.ndarray, offsets: np.ndarray, normal: bool,
                   out: np.ndarray) -> None:
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
