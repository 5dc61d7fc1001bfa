"""OnnxTagger on the committed reference taggers; cards, graph checks, torch twin, training."""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from hepsafe import data as datasets
from hepsafe import metrics
from hepsafe._files import sha256sum
from hepsafe.cli import main
from hepsafe.exceptions import CardError, ConversionError, InputError, ModelError
from hepsafe.models import MODELS_DIR
from hepsafe.tagger import training as T
from hepsafe.tagger.card import card_path, load_card
from hepsafe.tagger.onnx import OnnxTagger, reference


# --------------------------------------------------------------------------- committed models
def test_committed_models_and_cards():
    for name in ("pfn", "hl"):
        path = MODELS_DIR / f"{name}.onnx"
        assert path.stat().st_size < 1_000_000
        card = load_card(card_path(path))
        assert card["model"]["sha256"] == sha256sum(path)
        assert card["training"]["dataset"]["sha256"] == datasets.sample_card()["sha256"]
        assert card["training"]["command"].startswith("hepsafe train")
        assert card["output"]["signal"] == "W"
    pfn_card = load_card(MODELS_DIR / "pfn.json")
    const = [i for i in pfn_card["inputs"] if i["kind"] == "constituent"][0]
    assert const["n_max"] >= 64 and len(const["features"]) >= 4


def test_auc_on_test_split(pfn, hl, wq_test):
    sig = wq_test.label == 1
    aucs = {}
    for t in (pfn, hl):
        s = t.predict(wq_test)
        assert s.shape == (len(wq_test),) and s.dtype == np.float32
        assert np.all((s >= 0) & (s <= 1))
        aucs[t.name] = metrics.roc_auc(s[sig], s[~sig])
        # the card's figure is reproduced by the inference path
        assert aucs[t.name] == pytest.approx(t.card["training"]["test_auc"], abs=1e-5)
        rej = metrics.rejection_at_efficiency(s[sig], s[~sig], 0.5)
        assert rej == pytest.approx(t.card["training"]["test_rejection_at_50"], rel=1e-3)
    assert aucs["pfn"] >= 0.90
    assert aucs["hl"] < aucs["pfn"]


# --------------------------------------------------------------------------- torch twin
def test_onnx_runtime_and_torch_agree(pfn, hl, small):
    for t in (pfn, hl):
        inputs = t.inputs_from_padded(np, t.padded(small))
        ref = t.run(inputs)
        module = t.as_torch()
        with torch.no_grad():
            got = module(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        assert set(got) == set(ref)
        for name, r in ref.items():
            np.testing.assert_allclose(got[name].numpy(), r, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{t.name}:{name}")
        # the full differentiable path (torch features + module) matches predict
        padded = {k: torch.from_numpy(v) for k, v in t.padded(small).items()}
        with torch.no_grad():
            p = t.score_torch(padded).numpy()
        np.testing.assert_allclose(p, t.predict(small), atol=1e-5)


@pytest.mark.parametrize("which", ["pfn", "hl"])
def test_gradients_finite_and_nonzero(which, pfn, hl, small):
    t = pfn if which == "pfn" else hl
    jets = small[:64]
    padded = {k: torch.from_numpy(v) for k, v in t.padded(jets).items()}
    for k in ("pt", "eta", "phi"):
        padded[k].requires_grad_(True)
    score = t.score_torch(padded, kind="logit")
    assert score.shape == (len(jets),)
    score.sum().backward()
    mask = padded["mask"]
    for k in ("pt", "eta", "phi"):
        g = padded[k].grad
        assert torch.isfinite(g).all(), k
        assert (g[mask] != 0).float().mean() > 0.5, k
        assert torch.all(g[~mask] == 0), k


# --------------------------------------------------------------------------- predict edge cases
def test_predict_edge_cases(pfn, hl, small):
    empty = small[:0]
    assert pfn.predict(empty).shape == (0,) and pfn.predict(empty).dtype == np.float32
    assert pfn.predict_proba(empty).shape == (0, 2)
    assert pfn.represent(empty).shape == (0, 64)
    assert hl.predict(empty).shape == (0,)
    jets = small[:40]
    proba = pfn.predict_proba(jets)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(proba[:, 1], pfn.predict(jets))
    assert pfn.represent(jets).shape == (40, 64)
    # results do not depend on the batch size
    small_batches = OnnxTagger(pfn.path, providers="cpu", batch_size=7, intra_op_threads=1)
    np.testing.assert_allclose(small_batches.predict(jets), pfn.predict(jets), atol=1e-6)
    # a jet whose constituents are all masked out still gets a finite score
    offsets = jets.offsets
    keep = np.ones(offsets[-1], dtype=bool)
    keep[offsets[2] : offsets[3]] = False
    blank = jets.with_parts(mask=keep)
    for t in (pfn, hl):
        s = t.predict(blank)
        assert np.all(np.isfinite(s))


def test_nan_in_features_names_the_jets(pfn, hl, small):
    jets = small[:10]
    energy = jets.flat("energy")
    before = energy.copy()
    offsets = jets.offsets
    energy[offsets[3]] = np.nan
    energy[offsets[7]] = -1.0  # log of a negative energy
    bad = jets.with_parts(energy=energy)
    with pytest.raises(InputError, match=r"jet\(s\) \[3, 7\]") as exc:
        pfn.predict(bad)
    assert "log_e" in str(exc.value) and "'constituents'" in str(exc.value)
    with pytest.raises(InputError, match=r"'mass'.*jet\(s\) \[3"):
        hl.predict(bad)
    np.testing.assert_array_equal(jets.flat("energy"), before)


def test_padded_path_checks(pfn, small):
    p = pfn.padded(small[:3])
    assert set(p) >= {"pt", "eta", "phi", "energy", "charge", "mask"}
    short = {k: v[:, :10] for k, v in p.items()}
    with pytest.raises(InputError, match="'constituents' needs"):
        pfn.inputs_from_padded(np, short)
    with pytest.raises(InputError, match="'mask'"):
        pfn.inputs_from_padded(np, {k: v for k, v in p.items() if k != "mask"})
    with pytest.raises(InputError, match="torch tensors"):
        pfn.score_torch(p)


# --------------------------------------------------------------------------- providers
def test_providers_are_logged_and_never_silent(caplog):
    path = MODELS_DIR / "hl.onnx"
    with caplog.at_level(logging.INFO, logger="hepsafe.tagger.onnx"):
        t = OnnxTagger(path, providers="auto")
    assert t.provider in ort.get_available_providers()
    assert t.provider in caplog.text
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert t.provider == "CPUExecutionProvider"
        with pytest.raises(ModelError, match="'cuda'"):
            OnnxTagger(path, providers="cuda")
    with pytest.raises(ModelError, match="NoSuchProvider"):
        OnnxTagger(path, providers=["NoSuchProvider"])
    with pytest.raises(ModelError, match="'optimization'"):
        OnnxTagger(path, optimization="fast")


# --------------------------------------------------------------------------- bad graphs and cards
def _toy_card(**changes) -> dict:
    card = {
        "format": "hepsafe-tagger/1",
        "name": "toy",
        "model": {"file": "toy.onnx"},
        "inputs": [{"name": "jet", "kind": "jet", "features": ["pt", "eta", "mass", "d2"],
                    "n_max": 32, "dtype": "float32"}],
        "output": {"name": "logit", "activation": "logit", "classes": ["QCD", "W"],
                   "signal": "W"},
        "training": {"dataset": {"name": "none", "sha256": "0" * 64}, "seed": 0, "epochs": 0,
                     "test_auc": 0.5},
        "license": "CC0-1.0",
    }
    card.update(changes)
    return card


def _toy_model(path, in_name="jet", dims=("n", 4), elem=TensorProto.FLOAT, out_name="logit",
               out_dims=("n",), extra_op=None):
    """A toy tagger graph: (optional op) then a sum over the feature axis."""
    x = helper.make_tensor_value_info(in_name, elem, list(dims))
    y = helper.make_tensor_value_info(out_name, elem, list(out_dims))
    axes = helper.make_tensor("axes", TensorProto.INT64, [len(dims) - 1],
                              list(range(1, len(dims))))
    nodes, src = [], in_name
    if extra_op:
        nodes.append(helper.make_node(extra_op, [in_name], ["h"], name="odd", axis=1))
        src = "h"
    keep = 1 if len(out_dims) == 2 else 0
    nodes.append(helper.make_node("ReduceSum", [src, "axes"], [out_name], keepdims=keep,
                                  name="sum"))
    graph = helper.make_graph(nodes, "toy", [x], [y], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def _write(tmp_path, card, **model_kw):
    path = _toy_model(tmp_path / "toy.onnx", **model_kw)
    card_path(path).write_text(json.dumps(card))
    return path


def test_toy_model_works(tmp_path, small):
    t = OnnxTagger(_write(tmp_path, _toy_card()), providers="cpu")
    jets = small[:5]
    logit = t.run(t.inputs_from_padded(np, t.padded(jets)))["logit"]
    p = t.padded(jets)
    assert t.n_max == 32 and p["pt"].shape == (5, 32)
    assert np.all(np.isfinite(logit)) and t.predict(jets).shape == (5,)
    assert "toy" in repr(t)


@pytest.mark.parametrize(
    "model_kw, match",
    [
        ({"in_name": "jets"}, r"card input\(s\) \['jet'\] not in the graph.*\['jets'\]"),
        ({"dims": ("n", 4, 1)}, r"input 'jet'.*rank 3.*expected rank 2"),
        ({"elem": TensorProto.DOUBLE}, r"input 'jet'.*float64, expected float32"),
        ({"dims": (5, 4)}, r"input 'jet'.*fixed batch size 5.*dynamic batch"),
        ({"dims": ("n", 5)}, r"input 'jet'.*size 5 on axis 1.*expected 4"),
        ({"out_name": "score"}, r"output 'logit' named by the card is not a graph output"),
        ({"out_dims": ("n", 3)}, r"output 'logit' \(logit\).*size 3 on axis 1"),
    ],
)
def test_graph_disagreeing_with_card(tmp_path, model_kw, match):
    with pytest.raises(ModelError, match=match):
        OnnxTagger(_write(tmp_path, _toy_card(), **model_kw), providers="cpu")


def _drop(card, *keys):
    card = copy.deepcopy(card)
    d = card
    for k in keys[:-1]:
        d = d[k]
    del d[keys[-1]]
    return card


@pytest.mark.parametrize(
    "card, match",
    [
        (_drop(_toy_card(), "license"), r"'license' is a required property"),
        (_drop(_toy_card(), "output", "signal"), r"key 'output'.*'signal' is a required"),
        (_drop(_toy_card(), "training", "seed"), r"key 'training'.*'seed'"),
        (_toy_card(inputs=[{"name": "jet", "kind": "jet", "n_max": 32, "dtype": "float32"}]),
         r"key 'inputs/0'.*'features' is a required"),
        (_toy_card(inputs=[{"name": "jet", "kind": "jet", "features": ["pt", "tau21"],
                            "n_max": 32, "dtype": "float32"}]),
         r"key 'inputs/0/features'.*\['tau21'\] in input 'jet'"),
        (_toy_card(inputs=[{"name": "jet", "kind": "jet", "features": ["pt"], "n_max": 32,
                            "dtype": "float64"}]), r"key 'inputs/0/dtype'"),
        (_toy_card(output={"name": "logit", "activation": "logit", "classes": ["QCD", "W"],
                           "signal": "top"}), r"key 'output/signal': 'top'"),
        (_toy_card(model={"file": "toy.onnx", "sha256": "a" * 64}), r"key 'model/sha256'"),
    ],
)
def test_bad_cards_are_named(tmp_path, card, match):
    with pytest.raises(CardError, match=match):
        OnnxTagger(_write(tmp_path, card), providers="cpu")


def test_missing_card_and_mask_reference(tmp_path):
    path = _toy_model(tmp_path / "nocard.onnx")
    with pytest.raises(CardError, match="nocard.json: no such file"):
        OnnxTagger(path)
    card = load_card(MODELS_DIR / "pfn.json")
    card["inputs"][0]["mask"] = "jet"
    with pytest.raises(CardError, match=r"names mask 'jet'"):
        load_card(card)
    with pytest.raises(ModelError, match="no reference tagger named 'bdt'"):
        reference("bdt")


def test_unconvertible_op_raises_conversion_error(tmp_path, small):
    path = _write(tmp_path, _toy_card(), extra_op="Hardmax")
    t = OnnxTagger(path, providers="cpu")
    assert t.predict(small[:3]).shape == (3,)  # ONNX Runtime runs it
    with pytest.raises(ConversionError, match=r"Hardmax .*node\(s\) \['odd'\]"):
        t.as_torch()


# --------------------------------------------------------------------------- training
def test_tiny_training_is_reproducible(tmp_path, sample, capsys):
    assert main(["train", "-o", str(tmp_path / "a"), "--model", "pfn", "--tiny"]) == 0
    assert "pfn: wrote" in capsys.readouterr().out
    cfg = T.default_config("pfn", tiny=True)
    test = datasets.is_test(sample.event)
    res = T.train(cfg, tmp_path / "b" / "pfn.onnx", sample[~test], sample[test])
    a = (tmp_path / "a" / "pfn.onnx").read_bytes()
    assert a == res.model_path.read_bytes()
    card = json.loads((tmp_path / "a" / "pfn.json").read_text())
    assert card["training"]["command"] == f"hepsafe train -o {tmp_path / 'a'} --model pfn --tiny"
    assert card["training"]["test_auc"] == pytest.approx(res.test_auc, abs=1e-6)
    assert 0.5 < res.test_auc < 1.0
    t = OnnxTagger(res.model_path, providers="cpu")
    assert t.inputs[0].n_max == cfg.n_max
    with pytest.raises(Exception, match="'model'"):
        T.default_config("bdt")


@pytest.mark.parametrize("name", ["pfn", "hl"])
def test_scores_do_not_depend_on_chunking(sample, name):
    tagger = reference(name)
    jets = sample[::25]
    whole = tagger.predict(jets)
    chunked = np.concatenate([tagger.predict(jets[i : i + 333]) for i in range(0, len(jets), 333)])
    single = np.concatenate([tagger.predict(jets[i : i + 1]) for i in range(20)])
    assert np.array_equal(whole, chunked)
    assert np.array_equal(whole[:20], single)


def test_v2_card_float64_input_and_jet_standardisation(tmp_path, small):
    from hepsafe.tagger import features as F

    feats = [{"feature": "pt", "centre": 550.0, "scale": 0.01, "min": -1.0, "max": 1.0},
             {"feature": "eta"}, {"feature": "mass", "centre": 80.0, "scale": 0.02},
             {"feature": "d2", "scale": 0.5}]
    card = _toy_card(format="hepsafe-tagger/2")
    card["inputs"][0].update(features=feats, dtype="float64")
    t = OnnxTagger(_write(tmp_path, card, elem=TensorProto.DOUBLE), providers="cpu")
    jets = small[:40]
    x = t.inputs_from_padded(np, t.padded(jets))["jet"]
    assert x.dtype == np.float64 and x.shape == (40, 4)
    p = F.padded_constituents(jets, 32)
    raw = F.jet_features(np, ["pt", "eta", "mass", "d2"], p["pt"], p["eta"], p["phi"],
                         p["energy"], p["mask"]).astype(np.float64)
    want = np.stack([np.clip((raw[:, 0] - 550.0) * 0.01, -1, 1), raw[:, 1],
                     (raw[:, 2] - 80.0) * 0.02, raw[:, 3] * 0.5], axis=1)
    np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)
    assert (np.abs(x[:, 0]) == 1.0).any()  # the clip acts
    np.testing.assert_allclose(t.predict(jets), 1 / (1 + np.exp(-want.sum(axis=1))),
                               rtol=1e-5)
    card["inputs"][0]["dtype"] = "float32"
    with pytest.raises(ModelError, match=r"input 'jet'.*float64, expected float32"):
        OnnxTagger(_write(tmp_path, card, elem=TensorProto.DOUBLE), providers="cpu")
