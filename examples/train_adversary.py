"""Train the reference learned adversary g(J) against the reference PFN, export it, measure it.

    # the shipped adversary: a scan of lambda_cls, train, export, evaluate (~2.5 min, 1 core)
    python examples/train_adversary.py --threads 1 --lambda-scan 10 30 100 300
    python examples/train_adversary.py --evaluate-only  # evaluate the committed graph
    python examples/train_adversary.py --rebuild-graph  # same network, current graph layout

Training: the shipped sample's train split, W (signal) against QCD (background), target
"down" (lower the W score), the default envelope (2 % relative pT, 0.02 in eta and phi) with
jet pT and mass preserved, default :class:`~hepsafe.attacks.LearnedConfig`: the background
term on the probability (Shimmin & Nachman); the gate (:func:`default_gate_config`) on a
selection hold-out (a fifth of the train split) stops it at the gate boundary, and a
disjoint report hold-out (another fifth) gives the gate stored in the card. With
``--lambda-scan``, one training per ``lambda_cls``, the strongest inside the selection gate
kept. Writes ``hepsafe/models/adversary_pfn.onnx`` and its card ``adversary_pfn.json`` (or
``-o PATH``).

Evaluation (with ONNX Runtime alone, :class:`~hepsafe.attacks.OnnxAdversary`, as a
processor step would run it): on the test split, the W efficiency at the working point that
keeps 50 % of the nominal W jets, nominal and attacked (the adversary is applied to W and
QCD alike), the QCD efficiency there, and the control-region gate on QCD, nominal vs
attacked, with the training gate (by default KS of jet pT, jet mass <= 0.04 and of the PFN
score <= 0.02), and with the package's default gate. The numbers go into the card's
``evaluation`` key together with this command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe import Envelope, metrics
from hepsafe import data as datasets
from hepsafe import validation as validate
from hepsafe.attacks import LearnedAdversary, LearnedConfig, OnnxAdversary
from hepsafe.attacks.adversary import default_gate_config, rebuild_graph
from hepsafe.models import MODELS_DIR
from hepsafe.report import write_json
from hepsafe.tagger import OnnxTagger, reference

WP = 0.5


def evaluate(path: Path, tagger: OnnxTagger, gate_config: validate.GateConfig,
             every: int = 1) -> tuple[dict[str, Any], float]:
    """Signal efficiency at the nominal 50 % working point, nominal vs attacked, and the gate
    on QCD (``gate_config``, the training gate), for the exported adversary at ``path`` on
    the test split (every k-th jet); and the seconds the adversary took."""
    test = datasets.load_sample("test")
    test = test[np.isin(test.label, [0, 1])][::every]
    sig = test.label == 1
    adv = OnnxAdversary(path, tagger=tagger)
    t0 = time.perf_counter()
    pert = adv(test, "down")
    seconds = time.perf_counter() - t0
    s0, s1 = tagger.predict(test), tagger.predict(pert.jets)
    thr = metrics.threshold_at_efficiency(s0[sig], WP)
    report = validate.gate(test[~sig], pert.jets[~sig], s0[~sig], s1[~sig], gate_config)
    full = validate.gate(test[~sig], pert.jets[~sig], s0[~sig], s1[~sig])
    return {
        "split": "test" if every == 1 else f"test[::{every}]",
        "n_signal": int(sig.sum()),
        "n_background": int((~sig).sum()),
        "working_point": WP,
        "threshold": thr,
        "eff_signal": {"nominal": metrics.efficiency(s0[sig], thr),
                       "attacked": metrics.efficiency(s1[sig], thr)},
        "eff_background": {"nominal": metrics.efficiency(s0[~sig], thr),
                           "attacked": metrics.efficiency(s1[~sig], thr)},
        "auc": {"nominal": metrics.roc_auc(s0[sig], s0[~sig]),
                "attacked": metrics.roc_auc(s1[sig], s1[~sig])},
        "gate": {"config": gate_config.to_dict(),
                 "passed": bool(report.passed), "failed": report.failed,
                 "ks": {v.variable: v.ks for v in report.variables},
                 "jsd": {v.variable: v.jsd for v in report.variables}},
        "default_gate": {"passed": bool(full.passed), "failed": full.failed},
        "flagged_jets": int(pert.flagged.sum()),
    }, seconds


def summary(ev: dict[str, Any]) -> str:
    """A few lines of text with the evaluation's numbers."""
    es, eb, ks = ev["eff_signal"], ev["eff_background"], ev["gate"]["ks"]
    full = ev["default_gate"]
    return "\n".join([
        f"{ev['split']}: {ev['n_signal']} W, {ev['n_background']} QCD jets; working point "
        f"score >= {ev['threshold']:.4f} (50 % of nominal W)",
        f"  W efficiency   {es['nominal']:.4f} -> {es['attacked']:.4f}",
        f"  QCD efficiency {eb['nominal']:.4f} -> {eb['attacked']:.4f}",
        f"  AUC            {ev['auc']['nominal']:.4f} -> {ev['auc']['attacked']:.4f}",
        f"  training gate on QCD ({ev['gate']['config'].get('mode') or 'fixed'}): "
        f"{'PASS' if ev['gate']['passed'] else 'FAIL ' + str(ev['gate']['failed'])}: KS "
        f"jet pT {ks['jet_pt']:.4f}, jet mass {ks['jet_mass']:.4f}, score {ks['score']:.4f}",
        f"  the package's default gate: "
        f"{'PASS' if full['passed'] else 'FAIL ' + str(full['failed'])}",
        f"  {ev['flagged_jets']} jets flagged by the restoration",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=MODELS_DIR / "adversary_pfn.onnx")
    ap.add_argument("--tagger", default="pfn", help="reference tagger name (default pfn)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--gate", type=json.loads, default=None, metavar="JSON",
                    help="the training gate as GateConfig.from_dict JSON (default: "
                         "default_gate_config(), the fixed KS limits)")
    ap.add_argument("--lambda-scan", type=float, nargs="+", default=None, metavar="LAMBDA",
                    help="train once per lambda_cls value, keep the strongest inside the "
                         "selection gate (LearnedConfig.lambda_scan)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="only evaluate the graph at --output on the test split")
    ap.add_argument("--rebuild-graph", action="store_true",
                    help="rewrite the graph at --output in the current (faster) layout from "
                         "its own weights, then evaluate it")
    args = ap.parse_args(argv)
    tagger = reference(args.tagger, providers="cpu")
    out: Path = args.output
    command = "python examples/train_adversary.py" + "".join(
        f" --{k} {v}" for k, v in (("tagger", args.tagger), ("epochs", args.epochs),
                                   ("seed", args.seed), ("threads", args.threads))
        if v is not None and not (k == "tagger" and v == "pfn"))
    if args.lambda_scan:
        command += " --lambda-scan " + " ".join(f"{v:g}" for v in args.lambda_scan)
    if args.gate is not None:
        command += f" --gate '{json.dumps(args.gate)}'"
    if out != MODELS_DIR / "adversary_pfn.onnx":
        command += f" -o {out}"
    gate = (validate.GateConfig.from_dict(args.gate) if args.gate is not None
            else default_gate_config())
    if args.rebuild_graph:
        diff = rebuild_graph(out)
        print(f"rebuilt {out} in the current graph layout (max |delta difference| {diff:.1e})")
    elif not args.evaluate_only:
        changes = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed),
                                     ("threads", args.threads),
                                     ("lambda_scan", args.lambda_scan)) if v is not None}
        adv = LearnedAdversary(tagger, Envelope(), LearnedConfig(**changes), gate_config=gate)
        t0 = time.perf_counter()
        adv.fit(datasets.load_sample("train"), target="down", log=print)
        print(f"trained in {time.perf_counter() - t0:.0f} s; kept epoch "
              f"{adv.record['epoch_kept']} of {adv.record['epochs_run']} (stopped by "
              f"{adv.record['stopped_by']}); report hold-out gate "
              f"{'pass' if adv.gate_report is not None and adv.gate_report.passed else 'FAIL'}")
        adv.export(out, command=command)
        print(f"wrote {out} ({out.stat().st_size} bytes) and {out.with_suffix('.json')}")
    ev, seconds = evaluate(out, tagger, gate)
    ev["command"] = command + " --evaluate-only"  # the evaluation of the committed graph
    print(summary(ev))
    print(f"  adversary applied to {ev['n_signal'] + ev['n_background']} jets in {seconds:.2f} s "
          "(ONNX Runtime + kernels)")
    card_file = out.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["evaluation"] = ev
    write_json(card_file, card)
    return 0 if ev["gate"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
