"""Bring your own tagger: a weaver-core export, from its files to an adversarial attack.

A user with ``model.onnx`` and ``preprocess.json`` (what ``weaver --export-onnx`` writes)
makes a model card, opens the tagger with it, scores jets and attacks them. Here the files
are the test exports (weaver-core's ParticleNet with random weights, so its scores stay near
0.5); point MODEL and PREPROCESS at your own. The same card from the command line:

    hepsafe card from-weaver model.onnx preprocess.json --signal Wqq --background QCD \\
        -o particlenet.json

Run from the repository root (a few seconds on one CPU core):

    OMP_NUM_THREADS=1 python examples/weaver_tagger.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from hepsafe.attacks.registry import make_attack
from hepsafe.data import load_sample
from hepsafe.perturbation.envelope import Envelope
from hepsafe.tagger import OnnxTagger, card_from_weaver

WEAVER = Path(__file__).resolve().parent.parent / "tests" / "data" / "weaver" / "particlenet"
MODEL, PREPROCESS = WEAVER / "model.onnx", WEAVER / "preprocess.json"


def main() -> None:
    # 1. the card: weaver's variables mapped to hepsafe features, standardisation, pad
    #    length, channels-first layout; score = p(Wqq) / (p(Wqq) + p(QCD))
    out = Path(tempfile.mkdtemp()) / "particlenet.json"
    card = card_from_weaver(MODEL, PREPROCESS, signal=["Wqq"], background=["QCD"],
                            license="CC-BY-4.0", card_dir=out.parent)
    out.write_text(json.dumps(card, indent=1))
    for d in card["inputs"]:
        names = [f.get("feature", f.get("field")) for f in d.get("features", [])]
        print(f"{d['name']:12s} {d['kind']:11s} n_max {d['n_max']} {d.get('layout', '')} "
              f"{names}")

    # 2. the tagger, with the card written elsewhere than the ONNX file
    tagger = OnnxTagger(MODEL, card=out, providers="cpu", intra_op_threads=1, batch_size=64)
    print(tagger)
    print("inputs the exporter dropped (ignored):", tagger.ignored_inputs)

    # 3. scores on W jets of the shipped sample
    sample = load_sample("test")
    w_jets = sample[sample.label == 1][:50]
    before = tagger.predict(w_jets)
    print(f"score of {len(w_jets)} W jets: mean {before.mean():.5f}")

    # 4. PGD through the torch twin (onnx2torch after hepsafe's graph normalisation)
    attack = make_attack("pgd", tagger, Envelope.uniform(0.05), steps=8)
    after = tagger.predict(attack(w_jets, "down").jets)
    print(f"after PGD: mean {after.mean():.5f}; lowered for "
          f"{np.mean(after < before):.0%} of the jets")


if __name__ == "__main__":
    main()
