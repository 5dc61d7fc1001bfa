"""The multi-class reference classifier (QCD / W / top) and the mass decorrelation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError
from hepsafe.tagger import training as train
from hepsafe.tagger.onnx import OnnxTagger
from hepsafe.validation.twosample import ks_2samp_weighted


def test_mass_decorrelation_gives_the_classes_one_mass_distribution(sample: JetBatch) -> None:
    from hepsafe.data.sample import is_test

    jets = sample[~is_test(sample.event)][::2]
    md = train.mass_decorrelated(jets, seed=3)
    assert md.class_counts() == jets.class_counts()
    before = ks_2samp_weighted(jets.mass[jets.label == 1], jets.mass[jets.label == 2])[0]
    after = ks_2samp_weighted(md.mass[md.label == 1], md.mass[md.label == 2])[0]
    assert before > 0.7  # W (80 GeV) and top (175 GeV) jets: mostly disjoint masses
    assert after < 0.3 * before
    again = train.mass_decorrelated(jets, seed=3)
    assert np.array_equal(again.event, md.event)  # seeded


def test_tiny_three_class_classifier(tmp_path: Path, test_split: JetBatch) -> None:
    cfg = train.default_config("pfn3", tiny=True)
    assert cfg.classes == (0, 1, 2) and cfg.multiclass and not cfg.mass_decorrelation
    res = train.train(cfg, tmp_path / "pfn3.onnx", test_jets=test_split[::10])
    card = json.loads((tmp_path / "pfn3.json").read_text())
    assert card["output"]["activation"] == "logits"
    assert card["output"]["classes"] == ["QCD", "W", "top"]
    tagger = OnnxTagger(tmp_path / "pfn3.onnx", providers="cpu")
    jets = test_split[::25]
    p = tagger.predict_proba(jets)
    assert p.shape == (len(jets), 3) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(tagger.predict(jets), p[:, 1])
    assert tagger.represent(jets).shape == (len(jets), cfg.phi_sizes[-1])
    assert 0 <= res.test_auc <= 1


def test_bad_classes_are_refused() -> None:
    with pytest.raises(ConfigError, match="option 'classes'"):
        train.default_config("pfn", classes=(1, 2))
    with pytest.raises(ConfigError, match="need the pfn model"):
        train.default_config("hl", classes=(0, 1, 2))
