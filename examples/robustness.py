"""Robustness table: the reference PFN beside the adversarially trained ones.

    python examples/robustness.py [-o out/robustness] [--max-jets 1000] [--spsa-jets 200]

For each model (default: ``pfn`` and every shipped ``pfn_adv_*``): the clean test AUC and
the QCD rejection at 50 % W efficiency on the whole test split of the shipped sample; the
working point is the score threshold that keeps 50 % of the clean W jets of the test split.
At that threshold, eps_S (and eps_B) under attack, each attack made with
``hepsafe.attacks.make_attack`` against the model's own OnnxTagger in
``Envelope.uniform(epsilon)`` (jet pT and mass restored within 1 %):

- FGSM and PGD (10 steps) at epsilon 0.005, 0.01, 0.02. Targets ``down`` and
  ``signal_down_background_up`` give every W jet the same direction (down), so the W jets
  are attacked once and eps_S is that of both targets; the QCD jets are attacked ``up``
  (``signal_down_background_up``) for eps_B and the AUC under attack.
- SPSA (20 steps, 8 samples) at epsilon 0.02, on ``--spsa-jets`` jets per class (it is slow).
- With ``--learned``: a learned adversary trained against each model (about a minute each;
  LearnedConfig defaults, the default gate, epsilon 0.02, target down).
- The physics variations (scale_all_up / down, smear_energy, smear_angle, tracking_loss) and
  the alternative-physics samples ``hepsafe/data/alt_fsr_low.root`` (FSR alpha_S 0.120),
  ``alt_fsr_high.root`` (0.150) and ``alt_lund.root`` (Lund a, b), all their W and QCD jets:
  a real mismodelling, at the nominal working point.

The attacks run on every k-th W and QCD jet of the test split (``--max-jets`` per class);
eps_S carries its binomial standard error, and the relative drop is against the clean eps_S
of the same jets. The seed (Stein et al.) reports AUC 0.947 clean and, under attack at
epsilon 0.01, 0.887 without and 0.936 with adversarial training: printed beside the AUC
under FGSM / PGD at epsilon 0.01. A few minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hepsafe import Envelope, metrics
from hepsafe import data as datasets
from hepsafe.attacks import LearnedAdversary, LearnedConfig, make_attack
from hepsafe.attacks.adversary import default_gate_config
from hepsafe.data import JetBatch, read_root
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation.variations import VARIATIONS
from hepsafe.report import markdown_table, write_json, write_text
from hepsafe.tagger import OnnxTagger

EPSILONS = (0.005, 0.01, 0.02)
WP = 0.5
SEED = 1
VARIATION_NAMES = ("scale_all_up", "scale_all_down", "smear_energy", "smear_angle",
                   "tracking_loss")
ALT_SAMPLES = ("alt_fsr_low", "alt_fsr_high", "alt_lund")
SEED_AUC = {"clean": 0.947, "attacked_standard": 0.887, "attacked_adversarial": 0.936}


def thin(jets: JetBatch, n: int | None) -> JetBatch:
    """Every k-th jet so that at most ``n`` remain (all when ``n`` is None)."""
    if n is None or len(jets) <= n:
        return jets
    return jets[:: int(np.ceil(len(jets) / n))][:n]


def binomial(p: float, n: int) -> float:
    """Standard error of an efficiency ``p`` measured on ``n`` jets."""
    return float(np.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1)))


def attacked(tagger: OnnxTagger, kind: str, eps: float, sig: JetBatch, bkg: JetBatch,
             thr: float) -> dict[str, Any]:
    """eps_S (W attacked down), eps_B (QCD attacked up) and the AUC under the attack."""
    opts: dict[str, Any] = {"steps": 10} if kind == "pgd" else {}
    attack = make_attack(kind, tagger, Envelope.uniform(eps), seed=SEED, **opts)
    s1 = tagger.predict(attack(sig, "signal_down_background_up").jets)
    b1 = tagger.predict(attack(bkg, "signal_down_background_up").jets)
    es = metrics.efficiency(s1, thr)
    return {"eff_sig": es, "eff_sig_err": binomial(es, len(s1)),
            "eff_bkg": metrics.efficiency(b1, thr), "auc": metrics.roc_auc(s1, b1)}


def on_sample(tagger: OnnxTagger, sig: JetBatch, bkg: JetBatch, thr: float) -> dict[str, Any]:
    """eps_S, eps_B and AUC of the tagger on given W and QCD jets at the threshold."""
    s, b = tagger.predict(sig), tagger.predict(bkg)
    es = metrics.efficiency(s, thr)
    return {"eff_sig": es, "eff_sig_err": binomial(es, len(s)),
            "eff_bkg": metrics.efficiency(b, thr),
            "auc": metrics.roc_auc(s, b)}


def learned(tagger: OnnxTagger, sig: JetBatch, bkg: JetBatch, thr: float) -> dict[str, Any]:
    """A learned adversary trained against ``tagger`` (LearnedConfig defaults, one thread,
    seed 0, the default gate, Envelope(): epsilon 0.02) on the train split, applied with
    target "down" to the W jets and with its own objective to the QCD jets."""
    t0 = time.perf_counter()
    adv = LearnedAdversary(tagger, Envelope(), LearnedConfig(threads=1),
                           gate_config=default_gate_config())
    adv.fit(datasets.load_sample("train"), target="down")
    s1 = tagger.predict(adv(sig, "down").jets)
    b1 = tagger.predict(adv(bkg, "down").jets)
    es = metrics.efficiency(s1, thr)
    return {"attack": "learned (own)", "epsilon": 0.02, "eff_sig": es,
            "eff_sig_err": binomial(es, len(s1)), "eff_bkg": metrics.efficiency(b1, thr),
            "auc": metrics.roc_auc(s1, b1), "epoch_kept": adv.record.get("epoch_kept"),
            "seconds": round(time.perf_counter() - t0, 1)}


def evaluate(name: str, max_jets: int | None, spsa_jets: int,
             with_learned: bool = False) -> dict[str, Any]:
    """Every number of one model's column."""
    t0 = time.perf_counter()
    tagger = OnnxTagger(MODELS_DIR / f"{name}.onnx", providers="cpu", intra_op_threads=1)
    test = datasets.load_sample("test")
    sig, bkg = test[test.label == 1], test[test.label == 0]
    s0, b0 = tagger.predict(sig), tagger.predict(bkg)
    thr = metrics.threshold_at_efficiency(s0, WP)
    out: dict[str, Any] = {
        "model": name, "threshold": thr, "auc": metrics.roc_auc(s0, b0),
        "rejection": metrics.rejection_at_efficiency(s0, b0, WP),
        "eff_bkg": metrics.efficiency(b0, thr), "n_sig": len(sig), "n_bkg": len(bkg),
        "training": json.loads((MODELS_DIR / f"{name}.json").read_text())["training"].get(
            "adversarial"),
        "attacks": [], "physics": []}
    sub_s, sub_b = thin(sig, max_jets), thin(bkg, max_jets)
    out["clean_subset"] = on_sample(tagger, sub_s, sub_b, thr)
    out["n_attacked"] = len(sub_s)
    for kind in ("fgsm", "pgd"):
        for eps in EPSILONS:
            r = attacked(tagger, kind, eps, sub_s, sub_b, thr)
            out["attacks"].append({"attack": kind, "epsilon": eps, **r})
    sp_s, sp_b = thin(sig, spsa_jets), thin(bkg, spsa_jets)
    clean_sp = on_sample(tagger, sp_s, sp_b, thr)
    r = attacked(tagger, "spsa", 0.02, sp_s, sp_b, thr)
    out["attacks"].append({"attack": "spsa", "epsilon": 0.02, **r,
                           "clean_eff_sig": clean_sp["eff_sig"], "n": len(sp_s)})
    if with_learned:
        out["attacks"].append(learned(tagger, sub_s, sub_b, thr))
    for v in VARIATION_NAMES:
        r = on_sample(tagger, VARIATIONS[v](sig, seed=SEED), VARIATIONS[v](bkg, seed=SEED), thr)
        out["physics"].append({"name": v, **r})
    for alt in ALT_SAMPLES:
        path = datasets.SAMPLE_FILE.parent / f"{alt}.root"
        if not path.exists():
            continue
        jets = read_root(path)
        r = on_sample(tagger, jets[jets.label == 1], jets[jets.label == 0], thr)
        out["physics"].append({"name": alt, **r, "n_sig": int((jets.label == 1).sum())})
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _drop(eff: float, clean: float) -> str:
    return f"{100 * (1 - eff / clean):.1f} %" if clean > 0 else "-"


def tables(res: list[dict[str, Any]], command: str) -> str:
    """The markdown section: clean performance, attacks, physics, the seed beside."""
    names = [r["model"] for r in res]
    clean = [["clean test AUC", *[f"{r['auc']:.4f}" for r in res], "0.947 (Stein et al.)"],
             ["QCD rejection at eps_S = 0.5", *[f"{r['rejection']:.1f}" for r in res], ""]]
    att = [["none (clean, same jets)", "-",
            *[f"{r['clean_subset']['eff_sig']:.3f} ± {r['clean_subset']['eff_sig_err']:.3f}; "
              f"AUC {r['clean_subset']['auc']:.3f}" for r in res], ""]]
    for i, a in enumerate(res[0]["attacks"]):
        cells = []
        for r in res:
            x = r["attacks"][i]
            base = x.get("clean_eff_sig", r["clean_subset"]["eff_sig"])
            kept = (f"; kept epoch {x['epoch_kept']}" if x.get("epoch_kept") is not None
                    else "")
            cells.append(f"{x['eff_sig']:.3f} ± {x['eff_sig_err']:.3f} "
                         f"({_drop(x['eff_sig'], base)}); AUC {x['auc']:.3f}{kept}")
        seed = ""
        if a["epsilon"] == 0.01 and a["attack"] in ("fgsm", "pgd"):
            seed = "AUC 0.887 standard, 0.936 adversarially trained"
        att.append([a["attack"], a["epsilon"], *cells, seed])
    phys = []
    for i, p in enumerate(res[0]["physics"]):
        phys.append([p["name"], *[f"{r['physics'][i]['eff_sig']:.3f} ± "
                                  f"{r['physics'][i]['eff_sig_err']:.3f}; eps_B "
                                  f"{r['physics'][i]['eff_bkg']:.4f}; AUC "
                                  f"{r['physics'][i]['auc']:.3f}" for r in res]])
    n_att = res[0]["n_attacked"]
    n_spsa = next(a["n"] for a in res[0]["attacks"] if a["attack"] == "spsa")
    return "\n".join([
        "## Robustness of the adversarially trained PFNs",
        "",
        f"Regenerate (minutes on one core): `{command}`",
        "",
        f"Test split of the shipped sample ({res[0]['n_sig']} W, {res[0]['n_bkg']} QCD "
        "jets); working point: the score that keeps 50 % of each model's clean W jets. "
        "Models: " + ", ".join(f"`{n}`" for n in names) + ".",
        "",
        markdown_table(["", *names, "seed"], clean),
        "",
        f"eps_S under attack (W jets down; the same for targets `down` and "
        f"`signal_down_background_up`) on {n_att} W and {n_att} QCD jets (SPSA: {n_spsa}), "
        "± binomial error, (relative drop from the clean eps_S of the same jets); AUC with "
        "the QCD jets attacked up. Envelope.uniform(epsilon), jet pT and mass restored "
        "within 1 %, PGD 10 steps, SPSA 20 steps x 8 samples."
        + (" `learned (own)`: a learned adversary g(J) trained against that model on the "
           "train split (LearnedConfig defaults, the default gate, Envelope(): epsilon 0.02, "
           "target down), applied to the W and the QCD jets."
           if any(a["attack"] == "learned (own)" for a in res[0]["attacks"]) else ""),
        "",
        markdown_table(["attack", "epsilon", *names, "seed"], att),
        "",
        "Physics variations and the alternative-physics samples (a real mismodelling) at "
        "the nominal working point: eps_S ± binomial error, eps_B, AUC. Nominal eps_S is "
        "0.500, eps_B " + ", ".join(f"{r['eff_bkg']:.4f}" for r in res) + ".",
        "",
        markdown_table(["sample", *names], phys),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output-dir", type=Path, default=None,
                    help="also write robustness.json and results_section.md there")
    ap.add_argument("--models", nargs="+", default=None,
                    help="shipped models (default pfn and every pfn_adv_*)")
    ap.add_argument("--max-jets", type=int, default=1000,
                    help="W and QCD jets each attacked by FGSM / PGD (default 1000)")
    ap.add_argument("--spsa-jets", type=int, default=200,
                    help="W and QCD jets each attacked by SPSA (default 200)")
    ap.add_argument("--learned", action="store_true",
                    help="also train a learned adversary against each model (about a "
                         "minute each) and attack with it")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = args.models or ["pfn", *sorted(p.stem for p in MODELS_DIR.glob("pfn_adv_*.onnx"))]
    res = []
    for m in models:
        r = evaluate(m, args.max_jets, args.spsa_jets, args.learned)
        res.append(r)
        pgd = next(a for a in r["attacks"] if a["attack"] == "pgd" and a["epsilon"] == 0.02)
        print(f"{m}: AUC {r['auc']:.4f}, rejection {r['rejection']:.1f}; PGD eps 0.02 eps_S "
              f"{pgd['eff_sig']:.3f} ({r['seconds']} s)", flush=True)
    command = "python examples/robustness.py" + (
        f" -o {args.output_dir}" if args.output_dir is not None else "") + (
        f" --max-jets {args.max_jets}" if args.max_jets != 1000 else "") + (
        f" --spsa-jets {args.spsa_jets}" if args.spsa_jets != 200 else "") + (
        f" --models {' '.join(args.models)}" if args.models else "") + (
        " --learned" if args.learned else "")
    text = tables(res, command)
    print(text)
    if args.output_dir is not None:
        write_json(args.output_dir / "robustness.json", {"models": res, "seed": SEED_AUC})
        write_text(args.output_dir / "results_section.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
