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

from hepsafe.perturbation._block import (
    _BLOCK,
    _D0,
    _D1,
    _D2,
    _E,
    _ETA,
    _KEEP,
    _NJIT,
    _NROWS,
    _PHI,
    _PT,
    _R,
    _T,
    _bad_flags,
    _load,
    _trig,
)

# the kernel API in one namespace: projection, jet sums and rescaling, random numbers, flags
from hepsafe.perturbation._jets import _store_jet
from hepsafe.perturbation._jets import clip_delta as clip_delta
from hepsafe.perturbation._jets import jet_observables as jet_observables
from hepsafe.perturbation._jets import rescale_jets as rescale_jets
from hepsafe.perturbation._restore import _ref_terms, _restore, _sum4, _terms
from hepsafe.perturbation._rng import random_normal as random_normal
from hepsafe.perturbation._rng import random_uniform as random_uniform
from hepsafe.perturbation._scalar import (
    _ONE,
    _SLACK,
    _THREE,
    _TWO,
)
from hepsafe.perturbation._scalar import FLAG_BAD_DELTA as FLAG_BAD_DELTA
from hepsafe.perturbation._scalar import FLAG_BAD_INPUT as FLAG_BAD_INPUT
from hepsafe.perturbation._scalar import FLAG_MASS as FLAG_MASS
from hepsafe.perturbation._scalar import FLAG_PT as FLAG_PT


@nb.njit(**_NJIT)
def _store(lo: int, hi: int, w: np.ndarray, pt_out: np.ndarray, eta_out: np.ndarray,
           phi_out: np.ndarray, e_out: np.ndarray, mask_out: np.ndarray,
           d_out: np.ndarray) -> None:
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
def _blocks(offsets: np.ndarray) -> np.ndarray:
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
def _apply_block(j0: int, j1: int, offsets: np.ndarray, pt: np.ndarray, eta: np.ndarray,
                 phi: np.ndarray, energy: np.ndarray, mask: np.ndarray, cls: np.ndarray,
                 dflat: np.ndarray, bnd: np.ndarray, min_pt: float, preserve_pt: bool,
                 preserve_mass: bool, tol: tuple[float, float, float], max_iter: int,
                 pt_out: np.ndarray, eta_out: np.ndarray, phi_out: np.ndarray,
                 e_out: np.ndarray, mask_out: np.ndarray, d_out: np.ndarray,
                 jet_out: np.ndarray, flags: np.ndarray, w: np.ndarray) -> None:
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
def _scratch(offsets: np.ndarray, n_workers: int) -> np.ndarray:
    """Zeroed scratch, one (rows, size) slab per worker."""
    size = _BLOCK
    for j in range(offsets.shape[0] - 1):
        size = max(size, offsets[j + 1] - offsets[j])
    return np.zeros((n_workers, _NROWS, size))


@nb.njit(**_NJIT)
def _apply_kernel(blocks: np.ndarray, offsets: np.ndarray, pt: np.ndarray, eta: np.ndarray,
                  phi: np.ndarray, energy: np.ndarray, mask: np.ndarray, cls: np.ndarray,
                  dflat: np.ndarray, bnd: np.ndarray, min_pt: float, preserve_pt: bool,
                  preserve_mass: bool, tol: tuple[float, float, float], max_iter: int,
                  pt_out: np.ndarray, eta_out: np.ndarray, phi_out: np.ndarray,
                  e_out: np.ndarray, mask_out: np.ndarray, d_out: np.ndarray,
                  jet_out: np.ndarray, flags: np.ndarray) -> None:
    w = _scratch(offsets, 1)[0]
    for b in range(blocks.shape[0] - 1):
        _apply_block(blocks[b], blocks[b + 1], offsets, pt, eta, phi, energy, mask, cls,
                     dflat, bnd, min_pt, preserve_pt, preserve_mass, tol, max_iter, pt_out,
                     eta_out, phi_out, e_out, mask_out, d_out, jet_out, flags, w)


@nb.njit(parallel=True, **_NJIT)
def _apply_kernel_parallel(blocks: np.ndarray, offsets: np.ndarray, pt: np.ndarray,
                           eta: np.ndarray, phi: np.ndarray, energy: np.ndarray,
                           mask: np.ndarray, cls: np.ndarray, dflat: np.ndarray,
                           bnd: np.ndarray, min_pt: float, preserve_pt: bool,
                           preserve_mass: bool, tol: tuple[float, float, float],
                           max_iter: int, pt_out: np.ndarray, eta_out: np.ndarray,
                           phi_out: np.ndarray, e_out: np.ndarray, mask_out: np.ndarray,
                           d_out: np.ndarray, jet_out: np.ndarray, flags: np.ndarray,
                           n_workers: int) -> None:
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
