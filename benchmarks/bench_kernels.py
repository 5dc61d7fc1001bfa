"""Perturbation kernels at scale: the shipped sample tiled to >= 1M jets (~42 constituents each).

One run measures, on the same flat float32 buffers and the same random delta:

- kernel: ``hepsafe.perturbation._kernels.apply_delta`` (clip to the envelope, apply, wrap phi,
  constituent
  energy at fixed mass, jet four-vector), without restoration and with restoration of jet pT
  and mass (``preserve=("pt", "mass")``), and the box projection alone (``clip_delta``);
- awkward: the same computations written as vectorised awkward-array operations (the
  restoration as the same algorithm run for all jets in lock step, converged jets frozen),
  in chunks of ``--chunk`` jets to bound memory;
- copy: a plain copy of the bytes the kernel reads (kinematics, mask, classes, delta);
- ONNX: ``OnnxTagger(hepsafe/models/pfn.onnx).predict`` per jet (padding + features + ONNX
  Runtime, one intra-op thread like the kernel unless ``--onnx-threads``) and ONNX Runtime
  alone on ready inputs, when the model file exists (otherwise the run says so).

Times are the best of ``--repeat`` runs: wall clock and process CPU time (the machine is shared,
so CPU time is the steadier figure). Run from the repository root:

    python benchmarks/bench_kernels.py
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import awkward as ak
import numba
import numpy as np

from hepsafe import data as datasets
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation import _kernels as kernels
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturber

PI32 = float(np.float32(np.pi))
MODEL = MODELS_DIR / "pfn.onnx"


# --------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any], repeat: int, warm: bool = True) -> tuple[float, float, Any]:
    """Best wall and CPU seconds of ``repeat`` calls (after a warm-up call), last result."""
    out = fn() if warm else None
    walls, cpus = [], []
    for _ in range(repeat):
        out = None
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


# --------------------------------------------------------------------------- the data
def tiled(n_tiles: int) -> tuple[Perturber, np.ndarray, np.ndarray]:
    """Flat buffers of the sample repeated ``n_tiles`` times (events renumbered per tile)."""
    base = Perturber(datasets.load_sample(), Envelope())
    counts = np.diff(base.offsets)
    p = object.__new__(Perturber)  # the same fields, tiled, without building a JetBatch
    p.envelope, p.preserve, p.max_iter, p.threads = base.envelope, base.preserve, 8, 1
    p.bounds = base.bounds
    for name in ("pt", "eta", "phi", "energy", "mask", "classes"):
        setattr(p, name, np.tile(getattr(base, name), n_tiles))
    all_counts = np.tile(counts, n_tiles)
    p.offsets = np.zeros(len(all_counts) + 1, dtype=np.int64)
    np.cumsum(all_counts, out=p.offsets[1:])
    rng = np.random.default_rng(12345)
    delta = rng.random((len(p.pt), 3), dtype=np.float32)
    delta *= np.float32(0.06)
    delta -= np.float32(0.03)  # uniform in [-0.03, 0.03): beyond the 0.02 envelope
    return p, all_counts, delta


# --------------------------------------------------------------------------- awkward
def _f32(x: ak.Array) -> ak.Array:
    return ak.values_astype(ak.values_astype(x, np.float32), np.float64)


def _wrap32(x: ak.Array) -> ak.Array:
    inside = (x > -PI32) & (x <= PI32)
    y = _f32(ak.where(inside, x, x - 2 * np.pi * np.floor((x + np.pi) / (2 * np.pi))))
    y = ak.where(y > PI32, _f32(y - 2 * np.pi), y)
    return ak.where(y <= -PI32, _f32(y + 2 * np.pi), y)


def _state(pt0, eta0, phi0, m2, mask, d, min_pt):
    pt = _f32(pt0 * (1 + d[0]))
    eta = _f32(eta0 + d[1])
    phi = _wrap32(phi0 + d[2])
    ce, se, cp, sp = np.cosh(eta), np.sinh(eta), np.cos(phi), np.sin(phi)
    en = _f32(np.sqrt(m2 + (pt * ce) ** 2))
    keep = mask & (pt >= min_pt)
    w = ak.where(keep, 1.0, 0.0)
    jet = [ak.to_numpy(ak.sum(x, axis=1)) for x in (w * en, w * pt * cp, w * pt * sp,
                                                     w * pt * se)]
    return {"pt": pt, "eta": eta, "phi": phi, "e": en, "keep": keep, "w": w, "ce": ce, "se": se,
            "cp": cp, "sp": sp, "jet": jet}


def _solve(a11, a12, a22, use_m, use_pt, rm, rp):
    with np.errstate(divide="ignore", invalid="ignore"):
        det = a11 * a22 - a12 * a12
        both = use_m & use_pt & (a11 > 0) & (a22 > 0) & (det > 1e-12 * a11 * a22)
        only_m = ~both & use_m & (a11 > 0) & ((rm != 0) | ~use_pt)
        only_p = ~both & ~only_m & use_pt & (a22 > 0)
        a = np.where(both, (rm * a22 - rp * a12) / det, np.where(only_m, rm / a11, 0.0))
        c = np.where(both, (rp * a11 - rm * a12) / det, np.where(only_p, rp / a22, 0.0))
    return np.nan_to_num(a), np.nan_to_num(c)


def awkward_apply(chunk: dict[str, np.ndarray], counts: np.ndarray, bounds: np.ndarray,
                  env: Envelope, preserve: tuple[str, ...], max_iter: int = 8) -> dict[str, Any]:
    """The kernel's computation with awkward/numpy array operations only (float64 inside)."""
    def jag(x):
        return ak.unflatten(x, counts)

    pt0, eta0, phi0, e0 = (jag(chunk[k].astype(np.float64)) for k in ("pt", "eta", "phi",
                                                                        "energy"))
    mask, cls = jag(chunk["mask"]), jag(chunk["classes"])
    b = [ak.where(cls == 0, bounds[0, q], ak.where(cls == 1, bounds[1, q],
                  ak.where(cls == 2, bounds[2, q], bounds[3, q]))) for q in range(3)]
    d = [np.minimum(np.maximum(jag(chunk["delta"][:, q].astype(np.float64)), -b[q]), b[q])
         for q in range(3)]
    ch0 = np.cosh(eta0)
    m2 = np.maximum(e0**2 - (pt0 * ch0) ** 2, 0.0)
    st = _state(pt0, eta0, phi0, m2, mask, d, env.min_pt)
    flags = np.zeros(len(counts), dtype=np.uint8)
    if preserve:
        use_pt, use_m = np.bool_("pt" in preserve), np.bool_("mass" in preserve)
        w0 = ak.where(mask, 1.0, 0.0)
        ref = [ak.to_numpy(ak.sum(x, axis=1)) for x in (
            w0 * np.sqrt(m2 + (pt0 * ch0) ** 2), w0 * pt0 * np.cos(phi0),
            w0 * pt0 * np.sin(phi0), w0 * pt0 * np.sinh(eta0))]
        pt_ref = np.hypot(ref[1], ref[2])
        m_ref = np.sqrt(np.maximum(ref[0] ** 2 - ref[1] ** 2 - ref[2] ** 2 - ref[3] ** 2, 0))
        band_pt, band_m = env.pt_tol * pt_ref, env.mass_tol * m_ref + env.mass_atol
        pt_lo, pt_hi = pt_ref - 0.8 * band_pt, pt_ref + 0.8 * band_pt
        m_lo, m_hi = np.maximum(m_ref - 0.8 * band_m, 0), m_ref + 0.8 * band_m
        active = counts > 0
        for _ in range(max_iter):
            e, px, py, pz = st["jet"]
            ptj = np.hypot(px, py)
            need = active & use_pt & (ptj > 0) & (np.abs(ptj - pt_ref) > 0.95 * band_pt)
            if need.any():
                with np.errstate(divide="ignore", invalid="ignore"):
                    f = np.where(need, np.clip(ptj, pt_lo, pt_hi) / ptj, 1.0)
                scaled = np.minimum(np.maximum((1 + d[0]) * f - 1, -b[0]), b[0])
                d[0] = ak.where(st["keep"] & need, scaled, d[0])
                st = _state(pt0, eta0, phi0, m2, mask, d, env.min_pt)
                e, px, py, pz = st["jet"]
                ptj = np.hypot(px, py)
            m2j = np.maximum(e**2 - px**2 - py**2 - pz**2, 0)
            ok = (~use_pt | (np.abs(ptj - pt_ref) <= 0.95 * band_pt)) & (
                ~use_m | (np.abs(np.sqrt(m2j) - m_ref) <= 0.95 * band_m))
            active &= ~ok
            if not active.any():
                break
            rm = np.clip(np.sqrt(m2j), m_lo, m_hi) ** 2 - m2j
            rp = np.clip(ptj, pt_lo, pt_hi) - ptj
            p, w = st["pt"], st["w"]
            pxi, pyi, pzi, pa = p * st["cp"], p * st["sp"], p * st["se"], p * st["ce"]
            iptj = np.where(ptj > 0, 1 / np.where(ptj > 0, ptj, 1), 0.0)
            wpt = w * b[0] / (1 + d[0])
            gm = [wpt * 2 * (e * pa * pa / st["e"] - (px * pxi + py * pyi + pz * pzi)),
                  w * b[1] * 2 * pa * (e * pzi / st["e"] - pz),
                  w * b[2] * 2 * (px * pyi - py * pxi)]
            gp = [wpt * (px * pxi + py * pyi) * iptj, 0.0, w * b[2] * (py * pxi - px * pyi) * iptj]
            usep = use_pt & (ptj > 0)

            def gram(fr, gm=gm, gp=gp):
                a11 = sum(ak.to_numpy(ak.sum(fr[q] * gm[q] * gm[q], axis=1)) for q in range(3))
                a12 = sum(ak.to_numpy(ak.sum(fr[q] * gm[q] * gp[q], axis=1)) for q in (0, 2))
                a22 = sum(ak.to_numpy(ak.sum(fr[q] * gp[q] * gp[q], axis=1)) for q in (0, 2))
                return a11, a12, a22

            a, c = _solve(*gram([1.0, 1.0, 1.0]), use_m, usep, rm, rp)
            fr = []
            for q in range(3):
                x = a * gm[q] + c * gp[q]
                lim = b[q] * (1 - 1e-12)
                out = ((d[q] >= lim) & (x > 0)) | ((d[q] <= -lim) & (x < 0))
                fr.append(ak.where((b[q] > 0) & ~out, 1.0, 0.0))
            a2, c2 = _solve(*gram(fr), use_m, usep, rm, rp)
            move = active & ((a2 != 0) | (c2 != 0))
            active &= move
            for q in range(3):
                with np.errstate(divide="ignore", invalid="ignore"):
                    u = np.minimum(np.maximum(d[q] / b[q] + a2 * gm[q] + c2 * gp[q], -1), 1) * b[q]
                d[q] = ak.where((fr[q] > 0) & move, u, d[q])
            st = _state(pt0, eta0, phi0, m2, mask, d, env.min_pt)
        e, px, py, pz = st["jet"]
        ptj = np.hypot(px, py)
        mj = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0))
        flags |= np.where(use_pt & (np.abs(ptj - pt_ref) > (env.pt_tol + 2e-6) * pt_ref), 1, 0
                          ).astype(np.uint8)
        flags |= np.where(use_m & (np.abs(mj - m_ref) > (env.mass_tol + 2e-6) * m_ref
                                   + env.mass_atol), 2, 0).astype(np.uint8)
    e, px, py, pz = st["jet"]
    ptj = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        jet = np.stack([ptj, np.where(ptj > 0, np.arcsinh(pz / ptj), 0.0),
                        np.arctan2(py, px), np.sqrt(np.maximum(e**2 - ptj**2 - pz**2, 0))])
    return {"pt": ak.flatten(st["pt"]), "eta": ak.flatten(st["eta"]),
            "phi": ak.flatten(st["phi"]), "energy": ak.flatten(st["e"]),
            "mask": ak.flatten(st["keep"]), "jet": jet.astype(np.float32), "flags": flags}


def awkward_chunks(p: Perturber, counts: np.ndarray, delta: np.ndarray, chunk_jets: int,
                   preserve: tuple[str, ...]) -> list[dict[str, Any]]:
    """``awkward_apply`` chunk by chunk; constituent outputs are kept for the first chunk only
    (memory), jet outputs and flags for all."""
    out = []
    for j0 in range(0, len(counts), chunk_jets):
        j1 = min(j0 + chunk_jets, len(counts))
        s, e = p.offsets[j0], p.offsets[j1]
        chunk = {k: getattr(p, k)[s:e] for k in ("pt", "eta", "phi", "energy", "mask",
                                                  "classes")}
        chunk["delta"] = delta[s:e]
        res = awkward_apply(chunk, counts[j0:j1], p.bounds, p.envelope, preserve)
        out.append(res if j0 == 0 else {"jet": res["jet"], "flags": res["flags"]})
    return out


def _digest(res: kernels.Applied) -> str:
    h = hashlib.sha256()
    for name in res._fields:
        h.update(np.ascontiguousarray(getattr(res, name)).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- ONNX
def onnx_per_jet(n_jets: int, repeat: int, threads: int) -> dict[str, float] | str:
    if not MODEL.exists():
        return f"{MODEL} not present: ONNX comparison skipped"
    try:
        from hepsafe.tagger.onnx import OnnxTagger
    except ImportError as exc:
        return f"hepsafe.tagger.onnx not importable ({exc}): ONNX comparison skipped"
    tagger = OnnxTagger(MODEL, intra_op_threads=threads)
    jets = datasets.load_sample()[:n_jets]
    wall, cpu, _ = timed(lambda: tagger.predict(jets), repeat)
    batches = []
    for s in range(0, len(jets), tagger.batch_size):
        padded = tagger.padded(jets[s:s + tagger.batch_size])
        batches.append(tagger.inputs_from_padded(np, padded))
    rwall, rcpu, _ = timed(lambda: [tagger.run(b) for b in batches], repeat)
    return {"predict_wall": wall / n_jets, "predict_cpu": cpu / n_jets,
            "run_wall": rwall / n_jets, "run_cpu": rcpu / n_jets, "provider": tagger.provider,
            "n_max": tagger.n_max, "batch_size": tagger.batch_size, "threads": threads}


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=48, help="copies of the 25k-jet sample")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    ap.add_argument("--chunk", type=int, default=100_000, help="jets per awkward chunk")
    ap.add_argument("--awkward-restore-jets", type=int, default=None,
                    help="jets for the awkward restoration (default: all)")
    ap.add_argument("--onnx-jets", type=int, default=25_000)
    ap.add_argument("--onnx-threads", type=int, default=1,
                    help="ONNX Runtime intra-op threads (1: the same single core as the kernel)")
    ap.add_argument("--threads", type=int, default=2, help="also time the kernel on N threads")
    args = ap.parse_args(argv)

    print(f"# {' '.join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])])}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, awkward {ak.__version__}, numba {numba.__version__}")
    p, counts, delta = tiled(args.tiles)
    n_jets, n = len(counts), len(p.pt)
    print(f"jets {n_jets:,}, constituents {n:,} ({n / n_jets:.1f}/jet), delta U(-0.03, 0.03), "
          f"envelope {Envelope().to_dict()['bounds']}")
    rows: list[tuple[str, float, float, str]] = []

    def add(name, wall, cpu, jets=n_jets, note=""):
        rows.append((name, wall / jets * 1e6, cpu / jets * 1e6, note))
        print(f"  {name:44s} {wall / jets * 1e6:8.3f} us/jet wall {cpu / jets * 1e6:8.3f} "
              f"us/jet cpu  {note}")

    kargs = (p.offsets, p.pt, p.eta, p.phi, p.energy, p.mask, p.classes, delta, p.bounds)
    env = p.envelope
    rkw = dict(preserve_pt=True, preserve_mass=True, pt_tol=env.pt_tol, mass_tol=env.mass_tol,
               mass_atol=env.mass_atol)
    w, c, _ = timed(lambda: [x.copy() for x in (p.pt, p.eta, p.phi, p.energy, p.mask,
                                                 p.classes, delta)], args.repeat)
    add("copy of the bytes the kernel reads", w, c)
    t_copy = (w, c)
    w, c, _ = timed(lambda: kernels.clip_delta(delta, p.classes, p.bounds), args.repeat)
    add("kernel: box projection (clip_delta)", w, c)
    w, c, k0 = timed(lambda: kernels.apply_delta(*kargs), args.repeat)
    add("kernel: apply, no restoration", w, c)
    t_apply = (w, c)
    del k0
    w, c, k1 = timed(lambda: kernels.apply_delta(*kargs, **rkw), args.repeat)
    add("kernel: apply + restore pt, mass", w, c, note=f"flagged {np.mean(k1.flags != 0):.2e}")
    t_restore = (w, c)
    digest1 = _digest(k1)
    k1_jet, k1_flags = k1.jet.copy(), k1.flags.copy()
    del k1
    if args.threads > 1:
        wt, ct, kt = timed(lambda: kernels.apply_delta(*kargs, **rkw, threads=args.threads),
                           args.repeat)
        add(f"kernel: apply + restore, {args.threads} threads", wt, ct,
            note=f"bit-identical to 1 thread: {_digest(kt) == digest1}")
        del kt

    w, c, a0 = timed(lambda: awkward_chunks(p, counts, delta, args.chunk, ()), 1, warm=False)
    add("awkward: apply, no restoration", w, c)
    a_apply = (w, c)
    del a0
    n_r = min(args.awkward_restore_jets or n_jets, n_jets)
    sub = slice(0, n_r)
    w, c, a1 = timed(lambda: awkward_chunks(p, counts[sub], delta, args.chunk, ("pt", "mass")),
                     1, warm=False)
    add("awkward: apply + restore pt, mass", w, c, jets=n_r)
    a_restore = (w * n_jets / n_r, c * n_jets / n_r)
    a_jet = np.concatenate([x["jet"] for x in a1], axis=1)
    a_flags = np.concatenate([x["flags"] for x in a1])
    dpt = np.abs(a_jet[0] - k1_jet[0, sub]) / np.maximum(k1_jet[0, sub], 1e-30)
    dm = np.abs(a_jet[3] - k1_jet[3, sub])
    j1 = min(args.chunk, n_r)
    first = kernels.apply_delta(p.offsets[: j1 + 1], p.pt, p.eta, p.phi, p.energy, p.mask,
                                p.classes, delta, p.bounds, **rkw)
    dcon = max(float(np.max(np.abs(ak.to_numpy(a1[0][f]) - getattr(first, f)[: len(a1[0][f])])))
               for f in ("pt", "eta", "energy"))
    print(f"  check, awkward vs kernel after restoration: jets |dpT/pT| median "
          f"{np.median(dpt):.1e} max {dpt.max():.1e}; |dm| median {np.median(dm):.1e} max "
          f"{dm.max():.1e} GeV; constituents (first chunk) max |d(pt, eta, E)| {dcon:.1e}; "
          f"flagged {np.mean(a_flags != 0):.2e} vs {np.mean(k1_flags[sub] != 0):.2e}")
    del a1

    onnx = onnx_per_jet(args.onnx_jets, args.repeat, args.onnx_threads)
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} "
          "GiB")
    print("\nratios (wall; cpu)")
    print(f"  awkward / kernel, apply:            {a_apply[0] / t_apply[0]:6.1f}; "
          f"{a_apply[1] / t_apply[1]:6.1f}")
    print(f"  awkward / kernel, apply + restore:  {a_restore[0] / t_restore[0]:6.1f}; "
          f"{a_restore[1] / t_restore[1]:6.1f}")
    print(f"  kernel / copy, apply:               {t_apply[0] / t_copy[0]:6.1f}; "
          f"{t_apply[1] / t_copy[1]:6.1f}")
    print(f"  kernel / copy, apply + restore:     {t_restore[0] / t_copy[0]:6.1f}; "
          f"{t_restore[1] / t_copy[1]:6.1f}")
    if isinstance(onnx, str):
        print(f"  ONNX: {onnx}")
    else:
        print(f"  ONNX PFN ({onnx['provider']}, {onnx['threads']} thread(s), n_max "
              f"{onnx['n_max']}, batch {onnx['batch_size']}): predict "
              f"{onnx['predict_wall'] * 1e6:.2f} us/jet wall, "
              f"{onnx['predict_cpu'] * 1e6:.2f} cpu; ONNX Runtime alone "
              f"{onnx['run_wall'] * 1e6:.2f} wall, {onnx['run_cpu'] * 1e6:.2f} cpu")
        for name, (kw, kc) in (("apply", t_apply), ("apply + restore", t_restore)):
            kw, kc = kw / n_jets, kc / n_jets
            print(f"  kernel {name} / ONNX predict: {kw / onnx['predict_wall']:6.1%} wall, "
                  f"{kc / onnx['predict_cpu']:6.1%} cpu; / ONNX Runtime alone: "
                  f"{kw / onnx['run_wall']:6.1%} wall, {kc / onnx['run_cpu']:6.1%} cpu")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
