"""Closure test: do the adversarial and physics bands cover a real mismodelling?

    python examples/closure.py [--toys 500] [--samples alt_fsr_low alt_fsr_high alt_lund]

The model is the demo's (``hepsafe demo``): the reference PFN, the shipped sample's test split
(W scaled by 0.05 as signal, QCD as background and control sample), a 10-bin score template,
the working point at 50 % W efficiency, the physics variations (jet energy scale up/down,
energy smearing: Gaussian +-1 sigma, the one-sided smearing mirrored) and the shipped learned
adversary (theta in [0, 1], flat prior). Each alternative-physics sample
(``hepsafe/data/alt_*.root``, W and QCD jets from Pythia with one shower or fragmentation
setting changed) is treated as data:

(a) the control-region gate (calibrated, independent samples: the alternative QCD jets as
    data, the nominal QCD test jets as simulation), on random subsets of the alternative QCD
    jets of several sizes (the fraction of subsets that fail, and the gate's own estimate of
    the size at which the whole shift becomes visible);
(b) the relative shift of eps_S at the working point and of every template bin (W and QCD,
    shapes: each alternative sample normalised to the nominal yield), with its statistical
    uncertainty, against the learned adversary's shift and the physics variations' band:
    covered or not, bin by bin;
(c) the fit with the adversarial parameter to the pseudo-data (the alternative templates
    scaled to the demo's expected yields: 144 W and 3051 QCD jets), mu-hat, its pull from 1
    and theta-hat, with and without theta;
(d) ``--toys`` Poisson toys of that pseudo-data (auxiliary data at nominal): the bias of
    mu-hat and the coverage of the 68 % interval (mu-hat +- its HESSE error), with and
    without the adversarial parameter.

A few minutes on one core (the toys dominate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe import data as datasets
from hepsafe import metrics
from hepsafe import validation as validate
from hepsafe.data.jets import JetBatch, read_root
from hepsafe.data.sample import DATA_DIR
from hepsafe.exceptions import MirrorWarning
from hepsafe.fit import mle
from hepsafe.fit.config import WorkspaceConfig
from hepsafe.fit.workspace import build_workspace
from hepsafe.perturbation.shifts import LearnedShift, PhysicsShift, apply_shift
from hepsafe.tagger.onnx import OnnxTagger, reference
from hepsafe.templates import booking as T
from hepsafe.templates import control as cr

EDGES = np.linspace(0.0, 1.0, 11)
W_SCALE = 0.05  # the demo's weight of the W jets
SEED = 1
SIZES = (500, 1000, 2000, 5000)
SUBSETS = 20
ALT = ("alt_fsr_low", "alt_fsr_high", "alt_lund")
#: the control channel of the fit (the run's default binning: score x jet mass)
CR_CONFIG = cr.ControlRegionConfig()


def hist(scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted counts and sums of squared weights of ``scores`` in :data:`EDGES`."""
    idx = np.clip(np.digitize(scores, EDGES) - 1, 0, len(EDGES) - 2)
    n = len(EDGES) - 1
    return (np.bincount(idx, weights, n), np.bincount(idx, weights * weights, n))


def variations(jets: dict[str, JetBatch], tagger: OnnxTagger
               ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, JetBatch]]:
    """Scores of every sample under each variation side, ``{variation: {sample: scores}}``,
    and the varied QCD jets, ``{variation: jets}`` (for the control channel)."""
    shifts: dict[str, Any] = {
        "escale_up": PhysicsShift("scale_all_up", SEED),
        "escale_down": PhysicsShift("scale_all_down", SEED),
        "smear_up": PhysicsShift("smear_energy", SEED),
        "learned_up": LearnedShift(),
    }
    out, qcd = {}, {}
    for name, shift in shifts.items():
        varied = {s: apply_shift(shift, j, tagger)[0] for s, j in jets.items()}
        out[name] = {s: tagger.predict(j) for s, j in varied.items()}
        qcd[name] = varied["QCD"]
    return out, qcd


def templates(nominal: dict[str, np.ndarray], varied: dict[str, dict[str, np.ndarray]],
              weights: dict[str, np.ndarray], data: np.ndarray | None) -> T.Templates:
    """The SR templates (and the pseudo-data as sample ``data``)."""
    cells: dict[Any, Any] = {}
    for s, sc in nominal.items():
        v, v2 = hist(sc, weights[s])
        cells[("SR", s, "nominal")] = (EDGES, v, v2)
        for name, scores in varied.items():
            v, v2 = hist(scores[s], weights[s])
            cells[("SR", s, name)] = (EDGES, v, v2)
    if data is not None:
        cells[("SR", "data", "nominal")] = (EDGES, data, data)
    return T.from_arrays(cells)


def control(qcd: JetBatch, s_qcd: np.ndarray, varied: dict[str, JetBatch],
            s_varied: dict[str, dict[str, np.ndarray]], alt: JetBatch, s_alt: np.ndarray
            ) -> T.Templates:
    """The control channel: the nominal QCD jets (and each variation), scaled to the
    alternative sample's QCD count, with the alternative QCD jets as its data."""
    def values(j: JetBatch, sc: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": sc, "jet_pt": j.pt, "jet_mass": j.mass}

    return cr.book_control(values(qcd, s_qcd),
                           {k: values(j, s_varied[k]["QCD"]) for k, j in varied.items()},
                           np.ones(len(qcd)), cr.ControlRegionConfig(events=float(len(alt))),
                           "QCD", data=values(alt, s_alt))


def fit_both(t: T.Templates) -> dict[str, Any]:
    """Workspaces with and without the adversarial parameter, their models and data."""
    out = {}
    for label, keep in (("with theta", None), ("without theta", ("escale", "smear"))):
        cfg = WorkspaceConfig(signal=("W",), treatment={"learned": "adversarial"},
                              systematics=keep,
                              control_region=CR_CONFIG if "control" in t.regions else None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MirrorWarning)
            ws = build_workspace(t, cfg)
        model, data = mle.model_and_data(ws)
        out[label] = (model, data)
    return out


def coverage(model: Any, data: np.ndarray, toys: int, rng: np.random.Generator
             ) -> dict[str, float]:
    """Bias of mu-hat and coverage of mu-hat +- sigma on Poisson toys of ``data``'s main
    part (both channels); the auxiliary data stay at their nominal values."""
    n_main = int(model.config.nmaindata)
    expected = data[:n_main]
    mus, errs = [], []
    for _ in range(toys):
        toy = data.copy()
        toy[:n_main] = rng.poisson(expected)
        try:
            r = mle.fit(model, toy)
        except Exception:  # a toy whose fit fails is left out; "converged" counts the rest
            continue
        mus.append(r.mu)
        errs.append(r.sigma_mu)
    mu, err = np.asarray(mus), np.asarray(errs)
    covered = np.abs(mu - 1.0) <= err
    return {"toys": toys, "converged": len(mu), "bias": float(np.mean(mu - 1.0)),
            "bias_error": float(np.std(mu) / np.sqrt(max(len(mu), 1))),
            "coverage": float(np.mean(covered)),
            "coverage_error": float(np.sqrt(np.mean(covered) * (1 - np.mean(covered))
                                            / max(len(mu), 1))),
            "mean_sigma": float(np.mean(err))}


def gate_sizes(nominal_qcd: JetBatch, alt_qcd: JetBatch, s_nom: np.ndarray, s_alt: np.ndarray,
               thr: float, rng: np.random.Generator) -> dict[str, Any]:
    """(a): failure fraction of the independent-samples gate on random subsets of the
    alternative QCD jets, and the gate's verdicts / flip size on the whole of them."""
    out: dict[str, Any] = {"fail_fraction": {}}
    for n in SIZES:
        if n > len(alt_qcd):
            continue
        fails = 0
        for _ in range(SUBSETS):
            idx = np.sort(rng.choice(len(alt_qcd), n, replace=False))
            rep = validate.gate(nominal_qcd, alt_qcd[idx], s_nom, s_alt[idx], threshold=thr,
                                config=validate.GateConfig(pairing="independent"))
            fails += not rep.passed
        out["fail_fraction"][n] = fails / SUBSETS
    rep = validate.gate(nominal_qcd, alt_qcd, s_nom, s_alt, threshold=thr,
                        config=validate.GateConfig(pairing="independent"))
    out["whole"] = {"passed": bool(rep.passed), "failed": list(rep.failed_variables)}
    cal = getattr(rep, "calibration", None)
    if cal is not None:
        out["whole"]["flip_events"] = cal.combined.flip_events
        out["whole"]["at"] = {f"{a.n_data:.0f}": bool(a.passed) for a in cal.combined.at}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toys", type=int, default=500)
    p.add_argument("--samples", nargs="+", default=list(ALT))
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    p.add_argument("--seed", type=int, default=7, help="seed of the subsets and the toys")
    p.add_argument("--no-control", action="store_true",
                   help="fit the signal region alone (default: with the control channel, the "
                        "alternative QCD jets as its data)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    tagger = reference("pfn", providers="cpu", intra_op_threads=1)
    test = datasets.load_sample("test")
    jets = {"W": test[test.label == 1], "QCD": test[test.label == 0]}
    weights = {"W": np.full(len(jets["W"]), W_SCALE), "QCD": np.ones(len(jets["QCD"]))}
    nominal = {s: tagger.predict(j) for s, j in jets.items()}
    varied, varied_qcd = variations(jets, tagger)
    thr = metrics.threshold_at_efficiency(nominal["W"], 0.5)
    yields = {s: float(w.sum()) for s, w in weights.items()}
    nom_h = {s: hist(nominal[s], weights[s])[0] for s in jets}
    eps0 = metrics.efficiency(nominal["W"], thr)
    print(f"nominal: {len(jets['W'])} W (x {W_SCALE} = {yields['W']:.0f} expected), "
          f"{len(jets['QCD'])} QCD; threshold {thr:.4f} (eps_S 0.5)")
    bands = {}
    for name, sc in varied.items():
        bands[name] = {s: hist(sc[s], weights[s])[0] / nom_h[s] - 1.0 for s in jets}
        bands[name]["eps_s"] = metrics.efficiency(sc["W"], thr) / eps0 - 1.0
    figures: dict[str, Any] = {"threshold": thr, "bands": {
        k: {s: np.asarray(v).tolist() if s != "eps_s" else v for s, v in b.items()}
        for k, b in bands.items()}, "samples": {}}

    for name in args.samples:
        alt = read_root(DATA_DIR / f"{name}.root")
        aj = {"W": alt[alt.label == 1], "QCD": alt[alt.label == 0]}
        asc = {s: tagger.predict(j) for s, j in aj.items()}
        res: dict[str, Any] = {}
        print(f"\n=== {name}: {len(aj['W'])} W, {len(aj['QCD'])} QCD jets")
        # (a) the gate
        res["gate"] = gate_sizes(jets["QCD"], aj["QCD"], nominal["QCD"], asc["QCD"], thr, rng)
        print("(a) gate, independent samples (alternative QCD as data, nominal QCD test jets "
              "as simulation): fail fraction of " + f"{SUBSETS} random subsets: " + ", ".join(
                  f"N={n}: {f:.2f}" for n, f in res["gate"]["fail_fraction"].items()))
        whole = res["gate"]["whole"]
        flip = whole.get("flip_events")
        print(f"    all {len(aj['QCD'])} jets: {'pass' if whole['passed'] else 'FAIL'} "
              f"{whole['failed']}" + (f"; visible from N = {flip:.3g}" if flip else ""))
        # (b) shifts and coverage
        eps_alt = metrics.efficiency(asc["W"], thr)
        d_eps = eps_alt / eps0 - 1.0
        err_eps = np.sqrt(eps_alt * (1 - eps_alt) / len(aj["W"]) / eps_alt**2
                          + eps0 * (1 - eps0) / len(jets["W"]) / eps0**2)
        print(f"(b) eps_S at the working point: {eps0:.4f} -> {eps_alt:.4f} "
              f"({d_eps:+.3f} +- {err_eps:.3f}); learned {bands['learned_up']['eps_s']:+.3f}, "
              f"escale up/down {bands['escale_up']['eps_s']:+.3f} / "
              f"{bands['escale_down']['eps_s']:+.3f}, smear {bands['smear_up']['eps_s']:+.3f}")
        res["eps_s"] = {"nominal": eps0, "alternative": eps_alt, "shift": d_eps,
                        "error": float(err_eps)}
        res["bins"] = {}
        for s in ("W", "QCD"):
            counts = hist(asc[s], np.ones(len(asc[s])))[0]
            n_nom = hist(nominal[s], np.ones(len(nominal[s])))[0]
            frac_alt, frac_nom = counts / counts.sum(), n_nom / n_nom.sum()
            shift = frac_alt / np.maximum(frac_nom, 1e-12) - 1.0
            err = np.sqrt(1 / np.maximum(counts, 1) + 1 / np.maximum(n_nom, 1)) * (1 + shift)
            learned = bands["learned_up"][s]
            lo, hi = np.minimum(learned, 0.0), np.maximum(learned, 0.0)
            by_learned = (shift >= lo - err) & (shift <= hi + err)
            phys = np.sqrt(np.maximum(np.abs(bands["escale_up"][s]),
                                      np.abs(bands["escale_down"][s])) ** 2
                           + bands["smear_up"][s] ** 2)
            by_physics = np.abs(shift) <= phys + err
            res["bins"][s] = {"shift": shift.tolist(), "error": err.tolist(),
                              "learned": learned.tolist(), "physics": phys.tolist(),
                              "covered_learned": by_learned.tolist(),
                              "covered_physics": by_physics.tolist(),
                              "covered_either": (by_learned | by_physics).tolist()}
            print(f"    {s} bins (score 0.0-1.0): shift / +-stat / learned / physics "
                  "/ covered (L: learned, P: physics, -: neither)")
            for b in range(10):
                mark = ("L" if by_learned[b] else "") + ("P" if by_physics[b] else "") or "-"
                print(f"      [{EDGES[b]:.1f},{EDGES[b + 1]:.1f}) {shift[b]:+8.3f} "
                      f"{err[b]:7.3f} {learned[b]:+8.3f} {phys[b]:7.3f}  {mark}")
        # (c) the fit to the pseudo-data, scaled to the nominal's expected yields
        data = sum(hist(asc[s], np.full(len(aj[s]), yields[s] / len(aj[s])))[0]
                   for s in aj)
        t = templates(nominal, varied, weights, data)
        res["fit"] = {}
        res["toys"] = {}
        if not args.no_control:
            t = cr.combine(t, control(jets["QCD"], nominal["QCD"], varied_qcd, varied,
                                      aj["QCD"], asc["QCD"]))
        models = fit_both(t)
        for label, (model, d) in models.items():
            r = mle.fit(model, d)
            theta = r.value("learned") if "learned" in r.labels else None
            res["fit"][label] = {"mu": r.mu, "sigma_mu": r.sigma_mu,
                                 "pull": (r.mu - 1.0) / r.sigma_mu, "theta": theta}
            print(f"(c) fit {label:<13}: mu-hat {r.mu:.3f} +- {r.sigma_mu:.3f}, pull "
                  f"{(r.mu - 1) / r.sigma_mu:+.2f}"
                  + (f", theta-hat {theta:.3f}" if theta is not None else ""))
        # (d) toys
        for label, (model, d) in models.items():
            c = coverage(model, d, args.toys, rng)
            res["toys"][label] = c
            print(f"(d) {args.toys} toys {label:<13}: bias {c['bias']:+.3f} +- "
                  f"{c['bias_error']:.3f}, 68 % coverage {c['coverage']:.3f} +- "
                  f"{c['coverage_error']:.3f} ({c['converged']} converged)")
        figures["samples"][name] = res
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
