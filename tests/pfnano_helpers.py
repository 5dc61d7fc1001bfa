"""A PFNano-like batch with PUPPI weights, pileup candidates and jet corrections."""

from __future__ import annotations

import awkward as ak
import numpy as np

from hepsafe.data.jets import JetBatch
from hepsafe.perturbation import _kernels as kernels

#: pion mass [GeV], for charged pileup candidates
M_PI = 0.13957


def puppi_batch(jets: JetBatch, seed: int = 0) -> tuple[JetBatch, np.ndarray, np.ndarray]:
    """``(batch, puppi_weight, raw_factor)`` for :func:`hepsafe.data.nanoaod.write_pfnano`.

    The jets' own constituents get PUPPI weights (1 for charged and for 98 % of the
    neutral ones, the others uniform in [0.5, 1]); each jet gains Poisson(4) soft pileup
    candidates (pT 0.5 GeV + exponential of mean 0.7 GeV) within dR < 0.8, 70 % of them of
    weight 0, the others of weight below 0.3. The batch's constituents are the weighted
    candidates (weight-0 ones unweighted), its jet values the E-scheme sum of the candidates
    of non-zero weight (the raw PUPPI jet), its ``msoftdrop`` 0.6 to 1 times that mass;
    ``raw_factor`` is uniform in [-0.05, 0.15] per jet.
    """
    rng = np.random.default_rng(seed)
    n = len(jets)
    charge0 = jets.flat("charge")
    w0 = np.where((charge0 != 0) | (rng.uniform(0, 1, len(charge0)) < 0.98), 1.0,
                  rng.uniform(0.5, 1.0, len(charge0)))
    n_pu = rng.poisson(4.0, n)
    k = int(n_pu.sum())
    jet_of_pu = np.repeat(np.arange(n), n_pu)
    r = 0.8 * np.sqrt(rng.uniform(0, 1, k))
    a = rng.uniform(-np.pi, np.pi, k)
    pu_pt = 0.5 + rng.exponential(0.7, k)
    pu_eta = jets.eta[jet_of_pu] + r * np.cos(a)
    pu_phi = (jets.phi[jet_of_pu] + r * np.sin(a) + np.pi) % (2 * np.pi) - np.pi
    pu_pid = rng.choice(np.array([22, 130, 211, -211], dtype=np.int32), k)
    pu_charge = np.sign(pu_pid) * (np.abs(pu_pid) == 211)
    pu_w = np.where(rng.uniform(0, 1, k) < 0.7, 0.0, rng.uniform(0.01, 0.3, k))
    # weighted four-momenta of the pileup candidates (weight-0 ones unweighted)
    scale = np.where(pu_w > 0, pu_w, 1.0)
    pu_m = np.where(pu_charge != 0, M_PI, 0.0) * scale
    pu_pt = pu_pt * scale
    pu_e = np.sqrt((pu_pt * np.cosh(pu_eta)) ** 2 + pu_m**2)

    jet_of = np.concatenate([np.repeat(np.arange(n), jets.n_parts), jet_of_pu])
    flat = {
        "pt": np.concatenate([jets.flat("pt"), pu_pt]).astype(np.float32),
        "eta": np.concatenate([jets.flat("eta"), pu_eta]).astype(np.float32),
        "phi": np.concatenate([jets.flat("phi"), pu_phi]).astype(np.float32),
        "energy": np.concatenate([jets.flat("energy"), pu_e]).astype(np.float32),
        "charge": np.concatenate([charge0, pu_charge]).astype(np.int8),
        "pid": np.concatenate([jets.flat("pid"), pu_pid]).astype(np.int32),
    }
    weight = np.concatenate([w0, pu_w])
    order = np.lexsort((-flat["pt"], jet_of))
    flat = {f: v[order] for f, v in flat.items()}
    weight = weight[order]
    counts = np.bincount(jet_of, minlength=n).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    raw = kernels.jet_observables(offsets, flat["pt"], flat["eta"], flat["phi"],
                                  flat["energy"], weight > 0)
    batch = jets.replace(
        pt=raw[0], eta=raw[1], phi=raw[2], mass=raw[3],
        msoftdrop=(raw[3] * rng.uniform(0.6, 1.0, n)).astype(np.float32),
        parts=ak.unflatten(ak.zip(flat, depth_limit=1), counts),
    )
    return batch, weight.astype(np.float32), rng.uniform(-0.05, 0.15, n)
