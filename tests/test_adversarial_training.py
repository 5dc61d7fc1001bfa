"""Adversarial training (hepsafe.tagger.adversarial, hepsafe train --adversarial): the
in-training attack on the shipped sample's constituents, tiny trainings and option errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hepsafe
from hepsafe.cli import main
from hepsafe.data import layout
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError
from hepsafe.tagger import adversarial as adv
from hepsafe.tagger import features as F
from hepsafe.tagger import training as T

EPS = 0.02


@pytest.fixture(scope="module")
def jets(sample: JetBatch) -> JetBatch:
    """256 W and QCD jets of the shipped sample."""
    wq = sample[sample.label <= 1]
    return wq[:: max(1, len(wq) // 256)][:256]


@pytest.fixture(scope="module")
def setup(jets: JetBatch):
    """A tiny PFN trained for a second on ``jets``, its standardised inputs, padded
    constituents and the settings' config."""
    torch.manual_seed(0)
    cfg = T.default_config("pfn", tiny=True, epochs=3, threads=1)
    xs = T._arrays(jets, cfg)
    mean, std = T._standardisation(xs[0], xs[1])
    x = ((xs[0] - mean) / std).astype(np.float32)
    y = (jets.label == 1).astype(np.float32)
    net = T._build(cfg, x.shape[-1])
    T._fit(net, [x, xs[1]], y, cfg, lambda s: None)
    padded = F.padded_constituents(jets, cfg.n_max)
    return cfg, net, torch.from_numpy(x), torch.from_numpy(xs[1]), torch.from_numpy(y), \
        padded, mean, std


def _attack(setup, attack: str, steps: int | None = None, fraction: float = 0.5):
    cfg, _, _, _, _, padded, mean, std = setup
    s = adv.AdversarialSettings.of(attack, EPS, fraction, steps)
    return adv.InTrainingAttack(padded, cfg.features, mean, std, s, seed=3)


def _bce(net, x, mask, y) -> float:
    with torch.no_grad():
        out = net(x, mask)[0]
        return float(torch.nn.functional.binary_cross_entropy_with_logits(out, y))


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_attack_inside_envelope_and_raises_loss(setup, attack):
    _, net, x, mask, y, padded, _, _ = setup
    a = _attack(setup, attack, steps=None if attack == "fgsm" else 4)
    idx = torch.arange(len(y))
    d = a.delta(net, idx, y)
    m = torch.from_numpy(padded["mask"])
    assert d.shape == (len(y), padded["pt"].shape[1], 3)
    assert float(d.abs().max()) <= EPS + 1e-12
    assert float(d[~m].abs().max()) == 0.0
    assert float(d[m].abs().mean()) > 0.5 * EPS  # the attack moves the constituents
    xa = a.standardised({k: torch.as_tensor(np.asarray(v, np.float64)) if k != "mask"
                         else torch.as_tensor(v) for k, v in padded.items()}, d)
    clean, attacked = _bce(net, x, mask, y), _bce(net, xa, mask, y)
    assert attacked > clean + 0.01, (clean, attacked)
    # mixing replaces exactly the chosen fraction of the batch and keeps the others
    mixed = a.mix(net, idx, x, y, batch_no=0)
    changed = (mixed != x).flatten(1).any(dim=1).numpy()
    chosen = a.chosen(len(y), 0)
    assert len(chosen) == round(0.5 * len(y))
    assert set(np.flatnonzero(changed)) <= set(chosen.tolist())
    assert changed.sum() >= 0.9 * len(chosen)


def test_perturbed_features_match_shared_feature_code(setup, jets):
    cfg, net, _, _, y, padded, mean, std = setup
    a = _attack(setup, "pgd", steps=3)
    d = a.delta(net, torch.arange(len(y)), y)
    torch_x = a.standardised({k: torch.as_tensor(np.asarray(v, np.float64)) if k != "mask"
                              else torch.as_tensor(v) for k, v in padded.items()}, d).numpy()
    # the same constituents moved by the perturbation kernels (no restoration) ...
    index = layout.padded_index(jets, cfg.n_max)
    flat = np.zeros((int(jets.n_parts.sum()), 3), dtype=np.float32)
    flat[index[index >= 0]] = d.numpy()[index >= 0]
    moved = hepsafe.perturb(jets, flat, hepsafe.Envelope.uniform(EPS), preserve=()).jets
    slot = index >= 0
    for name in ("pt", "eta", "phi", "energy"):
        ref = np.zeros(index.shape, np.float64)
        ref[slot] = moved.flat(name)[index[slot]]
        mine = adv.perturbed_constituents(np, {k: np.asarray(v, np.float64) if k != "mask"
                                               else v for k, v in padded.items()},
                                          d.numpy())[name]
        np.testing.assert_allclose(mine, ref, rtol=2e-6, atol=2e-5, err_msg=name)
    # ... give, through features.constituent_features on numpy, the features trained on
    p = {k: np.zeros(index.shape, np.float32) for k in ("pt", "eta", "phi", "energy", "charge")}
    for name in p:
        p[name][slot] = moved.flat(name)[index[slot]]
    x = F.constituent_features(np, cfg.features, p["pt"], p["eta"], p["phi"], p["energy"],
                               p["charge"], slot)
    want = (x - mean) / std
    np.testing.assert_allclose(torch_x[slot], want[slot], atol=2e-4)


def test_learned_deltas_inside_envelope(jets):
    padded = F.padded_constituents(jets, 32)
    d = adv.learned_deltas(padded, 0.01)
    assert d.shape == (len(jets), 32, 3)
    assert np.abs(d).max() <= 0.01 + 1e-7
    assert np.abs(d[~padded["mask"]]).max() == 0.0
    assert np.abs(d[padded["mask"]]).mean() > 1e-4


def _card(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_tiny_adversarial_training_records_attack_and_is_deterministic(tmp_path, capsys):
    args = ["train", "--model", "pfn", "--tiny", "--threads", "1", "--adversarial", "pgd",
            "--adv-steps", "2", "--adv-fraction", "0.25", "--adv-epsilon", "0.01"]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert main([*args, "-o", str(tmp_path / "b")]) == 0
    assert "pfn_adv_pgd.onnx" in capsys.readouterr().out
    card = _card(tmp_path / "a", "pfn_adv_pgd")
    rec = card["training"]["adversarial"]
    assert (rec["attack"], rec["epsilon"], rec["fraction"], rec["steps"]) == ("pgd", 0.01,
                                                                              0.25, 2)
    assert card["training"]["config"]["adversarial"] == "pgd"
    assert "--adversarial pgd" in card["training"]["command"]
    assert 0.5 < card["training"]["test_auc"] <= 1.0
    a = (tmp_path / "a" / "pfn_adv_pgd.onnx").read_bytes()
    assert a == (tmp_path / "b" / "pfn_adv_pgd.onnx").read_bytes()
    # another seed, another network; the same seed without the attack, another network
    assert main([*args, "-o", str(tmp_path / "c"), "--seed", "2"]) == 0
    assert (tmp_path / "c" / "pfn_adv_pgd.onnx").read_bytes() != a
    plain = T.train_reference(tmp_path / "d", models=["pfn"], tiny=True, threads=1)
    assert plain["pfn"].model_path.read_bytes() != a


def test_learned_training_runs_with_checkpoints(tmp_path):
    res = T.train_reference(tmp_path, models=["pfn"], tiny=True, threads=1,
                            adversarial="learned", epochs=2, checkpoints=[1])
    assert res["pfn"].model_path.name == "pfn_adv_learned.onnx"
    assert res["pfn"].card["training"]["adversarial"]["attack"] == "learned"
    from hepsafe._files import sha256sum
    from hepsafe.perturbation.shifts import ADVERSARY_MODEL

    assert res["pfn"].card["training"]["adversarial"]["adversary"]["sha256"] == \
        sha256sum(ADVERSARY_MODEL)
    first = res["pfn"].checkpoints[1]
    assert first.model_path.name == "pfn_adv_learned_epoch1.onnx"
    card = _card(tmp_path, "pfn_adv_learned_epoch1")
    assert card["training"]["checkpoint"]["epochs_trained"] == 1
    assert card["training"]["test_auc"] == round(first.test_auc, 6)
    assert first.model_path.read_bytes() != res["pfn"].model_path.read_bytes()
    with pytest.raises(ConfigError, match="'checkpoints'"):
        T.train(T.default_config("pfn", tiny=True), tmp_path / "x.onnx", checkpoints=[2])


@pytest.mark.parametrize(("option", "value", "named"), [
    ("--adversarial", "foo", "'adversarial'"),
    ("--adv-epsilon", "0", "'adv_epsilon'"),
    ("--adv-epsilon", "-0.01", "'adv_epsilon'"),
    ("--adv-fraction", "0", "'adv_fraction'"),
    ("--adv-fraction", "1.5", "'adv_fraction'"),
    ("--adv-steps", "0", "'adv_steps'"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, option, value, named):
    extra = [] if option == "--adversarial" else ["--adversarial", "pgd"]
    rc = main(["train", "-o", str(tmp_path), "--model", "pfn", "--tiny", *extra, option, value])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and named in err, err
    assert not list(tmp_path.iterdir())


def test_adversarial_needs_pfn():
    with pytest.raises(ConfigError, match="'adversarial' needs the pfn"):
        T.default_config("hl", adversarial="fgsm")
    with pytest.raises(ConfigError, match="'adv_steps'"):
        T.default_config("pfn", adversarial="fgsm", adv_steps=3)
