"""Anomaly scores from the QCD / W / top classifier on the shipped out-of-distribution jets.

    python examples/anomaly.py [--json OUT.json]

For the classifier trained as is (``pfn3``) and on mass-decorrelated data (``pfn3_md``):
every score of :mod:`hepsafe.anomaly` (``msp``, ``entropy``, ``max_logit``, ``energy`` from
the logits; ``mahalanobis`` in the latent representation, class means and shared covariance
fitted on the train split's QCD, W and top jets) on each OOD class of ``hepsafe/data/ood.root``
(H(174) -> hh with h at 20 / 80 GeV, top with a 20 GeV W) against the shipped sample's QCD
test jets: AUC, QCD rejection and SIC at 50 % OOD efficiency, beside the jet mass alone.

Then the false-alarm side: the demo's envelope attacks (PGD at eps = 0.02 pushing the W score of
the QCD jets up, the label-aware default; FGSM the same) and the shipped learned adversary
(trained against the binary PFN, applied as it is) perturb the QCD test jets; for each, the
control-region gate's verdict on those QCD jets, and the fraction of QCD jets above the
anomaly threshold that keeps 50 % of the hh20 jets, before and after.

About a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hepsafe import anomaly, metrics
from hepsafe import data as datasets
from hepsafe import validation as validate
from hepsafe.attacks.registry import make_attack
from hepsafe.data.jets import CLASS_NAMES, read_root
from hepsafe.data.sample import DATA_DIR
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.shifts import ADVERSARY_MODEL, LearnedShift, apply_shift
from hepsafe.tagger.onnx import OnnxTagger, reference

OOD_LABELS = (3, 4, 5)
SCORES = ("msp", "entropy", "max_logit", "energy", "mahalanobis")
SEED_FIGURES = "Cheng & Courville: QCD rejection about 51, SIC about 3.6 at 50 % efficiency"


def anomaly_scores(tagger: OnnxTagger, maha: anomaly.Mahalanobis, jets) -> dict[str, np.ndarray]:
    """Every anomaly score of ``jets`` (larger = more anomalous), by name."""
    z = anomaly.class_logits(tagger, jets)
    out = {name: f(z) for name, f in anomaly.LOGIT_SCORES.items()}
    out["mahalanobis"] = maha.score(tagger.represent(jets))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--train-jets", type=int, default=6000,
                   help="train-split jets (QCD, W, top, evenly thinned) for the Mahalanobis fit")
    args = p.parse_args(argv)
    sample = datasets.load_sample()
    test = sample[datasets.is_test(sample.event)]
    train = sample[~datasets.is_test(sample.event)]
    train = train[train.label <= 2]
    train = train[:: max(1, len(train) // args.train_jets)]
    qcd = test[test.label == 0]
    ood = read_root(DATA_DIR / "ood.root")
    figures: dict = {"seed": SEED_FIGURES, "classifiers": {}, "attacks": {}}
    print(f"QCD test jets: {len(qcd)}; OOD: "
          + ", ".join(f"{CLASS_NAMES[k]} {int((ood.label == k).sum())}" for k in OOD_LABELS))
    print(f"seed: {SEED_FIGURES}")
    header = (f"{'classifier':<9} {'score':<12} " + " ".join(
        f"{CLASS_NAMES[k]:>22}" for k in OOD_LABELS))
    print("\nAUC / QCD rejection / SIC at 50 % OOD efficiency")
    print(header)
    base = {}
    for k in OOD_LABELS:
        o = ood[ood.label == k]
        base[k] = anomaly.anomaly_metrics(o.mass, qcd.mass)
    print(f"{'-':<9} {'jet mass':<12} " + " ".join(
        f"{b.auc:6.3f} {b.rejection:7.1f} {b.sic:5.2f}  " for b in base.values()))
    figures["jet_mass"] = {CLASS_NAMES[k]: b._asdict() for k, b in base.items()}
    taggers = {}
    for name in ("pfn3", "pfn3_md"):
        tagger = OnnxTagger(MODELS_DIR / f"{name}.onnx", providers="cpu", intra_op_threads=1)
        maha = anomaly.Mahalanobis.fit(tagger.represent(train), train.label)
        taggers[name] = (tagger, maha)
        s_qcd = anomaly_scores(tagger, maha, qcd)
        s_ood = {k: anomaly_scores(tagger, maha, ood[ood.label == k]) for k in OOD_LABELS}
        figures["classifiers"][name] = {}
        for score in SCORES:
            res = {k: anomaly.anomaly_metrics(s_ood[k][score], s_qcd[score]) for k in OOD_LABELS}
            figures["classifiers"][name][score] = {CLASS_NAMES[k]: r._asdict()
                                                   for k, r in res.items()}
            print(f"{name:<9} {score:<12} " + " ".join(
                f"{r.auc:6.3f} {r.rejection:7.1f} {r.sic:5.2f}  " for r in res.values()))

    # the false-alarm side: perturbations of the QCD jets
    tagger, maha = taggers["pfn3"]
    binary = reference("pfn", providers="cpu", intra_op_threads=1)
    hh20 = ood[ood.label == 3]
    s_hh = anomaly_scores(tagger, maha, hh20)
    s_qcd = anomaly_scores(tagger, maha, qcd)
    thresholds = {s: float(np.quantile(s_hh[s], 0.5)) for s in SCORES}
    env = Envelope.uniform(0.02)
    shifted = {
        "pgd": make_attack("pgd", tagger, env, steps=10, seed=1)(qcd, "up").jets,
        "fgsm": make_attack("fgsm", tagger, env, seed=1)(qcd, "up").jets,
        "learned": apply_shift(LearnedShift(ADVERSARY_MODEL), qcd, binary)[0],
    }
    print("\nQCD jets above the anomaly threshold of 50 % hh20 efficiency (pfn3), nominal -> "
          "perturbed; the gate on the same QCD jets (pfn3 score)")
    print(f"{'perturbation':<13} {'gate':<5} " + " ".join(f"{s:>19}" for s in SCORES))
    nominal_score = tagger.predict(qcd)
    for name, jets in shifted.items():
        rep = validate.gate(qcd, jets, nominal_score, tagger.predict(jets))
        s_new = anomaly_scores(tagger, maha, jets)
        rates = {s: (float(np.mean(s_qcd[s] > thresholds[s])),
                     float(np.mean(s_new[s] > thresholds[s]))) for s in SCORES}
        figures["attacks"][name] = {"gate_passed": bool(rep.passed),
                                    "false_alarm": rates}
        print(f"{name:<13} {'pass' if rep.passed else 'FAIL':<5} " + " ".join(
            f"{a:8.4f} -> {b:7.4f}" for a, b in rates.values()))
    auc = metrics.roc_auc(tagger.predict(test[test.label == 1]), nominal_score)
    print(f"\npfn3 W-vs-QCD AUC of p(W) on the test split: {auc:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
