"""Anomaly scores from a classifier: the scores' definitions, the Mahalanobis distance on the
reference PFN's representation, and the shipped out-of-distribution sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepsafe import anomaly
from hepsafe._schemas import validate
from hepsafe.data.jets import CLASS_NAMES, JetBatch, read_root
from hepsafe.data.sample import DATA_DIR
from hepsafe.exceptions import InputError
from hepsafe.tagger.onnx import OnnxTagger

OOD_FILE = DATA_DIR / "ood.root"


def test_logit_scores_follow_their_definitions() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 3, (200, 3))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert np.allclose(anomaly.msp(z), 1 - p.max(axis=1))
    assert np.allclose(anomaly.entropy(z), -(p * np.log(p)).sum(axis=1))
    assert np.allclose(anomaly.energy(z), -np.log(np.exp(z).sum(axis=1)))
    assert np.allclose(anomaly.max_logit(z), -z.max(axis=1))
    # msp and entropy depend on the logits only through differences; energy does not
    assert np.allclose(anomaly.msp(z + 5), anomaly.msp(z))
    assert np.allclose(anomaly.energy(z + 5), anomaly.energy(z) - 5)
    # the uniform prediction is the most anomalous for msp and entropy
    flat = np.zeros((1, 3))
    assert anomaly.entropy(flat)[0] == pytest.approx(np.log(3))
    assert anomaly.msp(flat)[0] >= anomaly.msp(z).max()
    with pytest.raises(InputError, match="n_classes >= 2"):
        anomaly.msp(np.zeros(5))
    with pytest.raises(InputError, match="temperature"):
        anomaly.energy(z, temperature=0)


def test_binary_logits_reproduce_the_sigmoid() -> None:
    l = np.linspace(-6, 6, 13)
    p = np.exp(anomaly.log_softmax(anomaly.binary_logits(l)))
    assert np.allclose(p[:, 1], 1 / (1 + np.exp(-l)))


def test_mahalanobis_on_the_reference_representation(
        sample: JetBatch, test_split: JetBatch, pfn: OnnxTagger) -> None:
    from hepsafe.data.sample import is_test

    train = sample[~is_test(sample.event)]
    train = train[train.label <= 1][::4]
    m = anomaly.Mahalanobis.fit(pfn.represent(train), train.label)
    assert m.classes == (0, 1)
    qcd, top = test_split[test_split.label == 0], test_split[test_split.label == 2]
    d_qcd, d_top = m.score(pfn.represent(qcd)), m.score(pfn.represent(top))
    assert np.all(d_qcd >= 0)
    # top jets, unseen in training, lie further from both class means than QCD jets
    res = anomaly.anomaly_metrics(d_top, d_qcd)
    assert res.auc > 0.75
    assert res.rejection > 1 and res.n_ood == len(top) and res.n_qcd == len(qcd)
    with pytest.raises(InputError, match="features"):
        m.score(np.zeros((3, m.means.shape[1] + 1)))


def test_the_ood_sample_and_its_card() -> None:
    jets = read_root(OOD_FILE)
    card = json.loads(OOD_FILE.with_suffix(".json").read_text())
    validate(card, "dataset", "ood.json")
    counts = jets.class_counts()
    assert {CLASS_NAMES[k]: v for k, v in counts.items()} == card["class_counts"]
    assert set(counts) == {3, 4, 5} and min(counts.values()) >= 2000
    assert np.all((jets.pt >= 500) & (jets.pt <= 700))
    for label in (3, 4, 5):  # the heavy resonance (174 GeV) is mostly contained in the jet
        assert 140 < float(np.median(jets.mass[jets.label == label])) < 185


def test_scores_of_the_shipped_three_class_classifier(test_split: JetBatch) -> None:
    from hepsafe.models import MODELS_DIR

    tagger = OnnxTagger(MODELS_DIR / "pfn3.onnx", providers="cpu", intra_op_threads=1)
    assert list(tagger.output.classes) == ["QCD", "W", "top"]
    qcd = test_split[test_split.label == 0][::3]
    hh80 = read_root(OOD_FILE)
    hh80 = hh80[hh80.label == 4][::3]
    z_qcd, z_ood = anomaly.class_logits(tagger, qcd), anomaly.class_logits(tagger, hh80)
    assert z_qcd.shape == (len(qcd), 3)
    # the logits reproduce the card's probabilities
    p = np.exp(anomaly.log_softmax(z_qcd))
    assert np.allclose(p, tagger.predict_proba(qcd), atol=1e-5)
    # the energy score separates the 4-prong H -> hh jets from QCD (measured AUC 0.82)
    auc = anomaly.anomaly_metrics(anomaly.energy(z_ood), anomaly.energy(z_qcd)).auc
    assert auc > 0.7
