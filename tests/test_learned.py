"""The learned adversary g(J): training, envelope, ONNX export and ONNX-only application,
the committed reference adversary, determinism and bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hepsafe import data as datasets
from hepsafe import metrics
from hepsafe import validation as validate
from hepsafe._files import sha256sum
from hepsafe.attacks import LearnedAdversary, LearnedConfig, OnnxAdversary
from hepsafe.attacks.adversary.graph import OUTPUT_NAME, adversary_inputs, rebuild_graph
from hepsafe.attacks.adversary.network import default_gate_config
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import CardError, ConfigError, InputError, ModelError
from hepsafe.models import MODELS_DIR
from hepsafe.perturbation.envelope import PARTICLE_CLASSES, Envelope
from hepsafe.perturbation.perturber import Perturber
from hepsafe.tagger.onnx import OnnxTagger, reference

REFERENCE = MODELS_DIR / "adversary_pfn.onnx"
#: an earlier reference adversary (earlier graph layout, trained against an earlier PFN)
OLD_LAYOUT = Path(__file__).parent / "data" / "adversary_pfn_old_layout.onnx"
TINY = dict(epochs=4, threads=1, phi_sizes=(16,), head_sizes=(16,), lr=1e-2, batch_size=32,
            lambda_cls=1.0, lambda_pt=10.0, lambda_mass=10.0, stop_on_gate=False)
TINY_ENVELOPE = Envelope.uniform(0.05)


@pytest.fixture(scope="module")
def split(sample: JetBatch) -> tuple[JetBatch, JetBatch]:
    """(a few hundred W and QCD jets of the train split, a W + QCD subset of the test split)."""
    wq = sample[sample.label <= 1]
    test = datasets.is_test(wq.event)
    return wq[~test][::25], wq[test][::6]


@pytest.fixture(scope="module")
def tiny(pfn: OnnxTagger, split: tuple[JetBatch, JetBatch]) -> LearnedAdversary:
    """A tiny adversary trained for a few seconds."""
    return LearnedAdversary(pfn, TINY_ENVELOPE, LearnedConfig(**TINY)).fit(split[0])


@pytest.fixture(scope="module")
def exported(tiny: LearnedAdversary, tmp_path_factory: pytest.TempPathFactory):
    return tiny.export(tmp_path_factory.mktemp("adv") / "tiny.onnx", command="test")


# --------------------------------------------------------------------------- training
def test_tiny_adversary_lowers_signal_score(tiny, pfn, split):
    train, test = split
    assert tiny.record["epochs_run"] == 4 and len(tiny.history) == 5
    for jets in (train, test):
        w = jets[jets.label == 1]
        before, after = pfn.predict(w), pfn.predict(tiny(w, "down").jets)
        assert after.mean() < before.mean() - 0.005
    assert tiny.gate_report is not None
    assert {v.variable for v in tiny.gate_report.variables} == {"jet_pt", "jet_mass", "score"}


def test_outputs_inside_envelope(tiny, split):
    _, test = split
    bounds = TINY_ENVELOPE.table()
    pert = tiny(test, "down")
    classes = Perturber(test).classes.astype(np.int64)
    assert np.all(np.abs(pert.delta_applied) <= bounds[classes] * (1 + 1e-6) + 1e-9)
    raw = tiny.delta(test)
    assert np.all(np.abs(raw) <= bounds[classes] * (1 + 1e-6))
    assert np.abs(raw).max() > 0
    # preserved jet pT within tolerance where not flagged
    ok = ~pert.flagged
    nominal = Perturber(test).apply(None).jets
    tol = TINY_ENVELOPE.pt_tol
    assert np.all(np.abs(pert.jets.pt[ok] - nominal.pt[ok]) <= tol * nominal.pt[ok] + 1e-3)
    # the graph applies per-class bounds itself: photons frozen, charged hadrons free
    env = Envelope(classes={"photon": {"pt": 0.0, "eta": 0.0, "phi": 0.0}})
    inputs, index = adversary_inputs(test, tiny.n_max, tiny.features, env)
    d = tiny.padded_delta(inputs)
    slot = index >= 0
    cls = classes[index[slot]]
    assert np.all(d[slot][cls == PARTICLE_CLASSES.index("photon")] == 0)
    assert np.all(np.abs(d[slot]) <= inputs["bound"][slot] * (1 + 1e-6))
    assert np.all(d[~slot] == 0)


def test_gate_stops_training(pfn, split):
    strict = validate.GateConfig(defaults=validate.Limits(ks_max=0.0, jsd_max=None),
                                 overrides={}, corr_frobenius_max=None, variables=("score",))
    cfg = LearnedConfig(**{**TINY, "stop_on_gate": True, "epochs": 5})
    jets = split[0][::2]
    adv = LearnedAdversary(pfn, Envelope(), cfg, gate_config=strict).fit(jets, holdout=split[1])
    assert adv.record["epochs_run"] == 1 and adv.record["epoch_kept"] == 0
    assert adv.record["stopped_by"] == "gate"
    # the selection hold-out given; the report hold-out carved from the training jets
    assert sum(adv.record["n_train"].values()) + sum(adv.record["n_report"].values()) \
        == len(jets)
    assert sum(adv.record["n_selection"].values()) == len(split[1])
    # the kept state is the initial one: the identity
    assert np.all(adv.delta(split[1]) == 0)


def test_selection_and_reported_gate_use_disjoint_hold_outs(pfn, split):
    """The stopping point is chosen on one hold-out, the reported gate comes from another:
    no jet in common (nor with the training jets), each gate counts its own background
    jets, and hold-outs given that share jets are refused."""
    jets = split[0]
    cfg = LearnedConfig(**{**TINY, "epochs": 1, "stop_on_gate": True})
    adv = LearnedAdversary(pfn, TINY_ENVELOPE, cfg).fit(jets)
    keys = {k: {tuple(r) for r in v} for k, v in adv.splits.items()}
    assert all(len(v) > 20 for v in keys.values())
    assert not keys["selection"] & keys["report"]
    assert not keys["train"] & (keys["selection"] | keys["report"])
    assert sum(len(v) for v in keys.values()) == len(jets)
    n_bkg = {k: adv.record[f"n_{k}"]["background"] for k in ("selection", "report")}
    assert adv.selection_report is not None and adv.gate_report is not None
    assert adv.selection_report.stats("jet_pt").n_nominal == n_bkg["selection"]
    assert adv.gate_report.stats("jet_pt").n_nominal == n_bkg["report"]
    assert adv.record["selection_gate"]["passed"] == adv.history[adv.record["epoch_kept"]][
        "gate_passed"]
    with pytest.raises(InputError, match="'holdout' and 'report' share"):
        LearnedAdversary(pfn, TINY_ENVELOPE, cfg).fit(jets, holdout=split[1],
                                                      report=split[1][::2])
    with pytest.raises(InputError, match="'train_jets' and 'holdout' share"):
        LearnedAdversary(pfn, TINY_ENVELOPE, cfg).fit(jets, holdout=jets[::3])


def test_deterministic_for_a_seed(pfn, split):
    jets = split[0][::2]
    cfg = LearnedConfig(**{**TINY, "epochs": 1})
    a = LearnedAdversary(pfn, Envelope(), cfg).fit(jets)
    b = LearnedAdversary(pfn, Envelope(), cfg).fit(jets)
    c = LearnedAdversary(pfn, Envelope(), LearnedConfig(**{**TINY, "epochs": 1, "seed": 5}))
    c.fit(jets)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.net.out.weight, c.net.out.weight)
    pa, pb = a(split[1], "down"), b(split[1], "down")
    assert np.array_equal(pa.delta_applied, pb.delta_applied)
    assert np.array_equal(pa.jets.mass, pb.jets.mass)


# --------------------------------------------------------------------------- ONNX
def test_onnx_export_matches_torch(tiny, exported, split):
    _, test = split
    inputs, _ = adversary_inputs(test, tiny.n_max, tiny.features, tiny.envelope)
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], inputs)[0]
    assert got.shape == (len(test), tiny.n_max, 3)
    assert np.max(np.abs(got - tiny.padded_delta(inputs))) <= 1e-5
    # dynamic batch axis
    one = {k: v[:1] for k, v in inputs.items()}
    assert sess.run([OUTPUT_NAME], one)[0].shape == (1, tiny.n_max, 3)


def test_onnx_only_application_equals_torch_path(tiny, exported, pfn, split):
    _, test = split
    via_torch = tiny(test, "down")
    onnx_adv = OnnxAdversary(exported, tagger=pfn, batch_size=97)
    via_onnx = onnx_adv(test, "down")
    # the networks agree to float32 rounding ...
    np.testing.assert_allclose(onnx_adv.delta(test), tiny.delta(test), atol=1e-6)
    # ... which the restoration of jet pT and mass can amplify where a jet sits at the edge
    # of its tolerance (correct it or not): still the same perturbation to 1e-4
    np.testing.assert_allclose(via_onnx.delta_applied, via_torch.delta_applied, atol=1e-4)
    for name, atol in (("pt", 1e-2), ("eta", 1e-5), ("phi", 1e-5), ("mass", 1e-2)):  # GeV, rad
        a, b = getattr(via_onnx.jets, name), getattr(via_torch.jets, name)
        off = ~np.isclose(a, b, rtol=1e-4, atol=atol)
        # a jet at the edge of its restoration tolerance may land on the other side of it
        assert off.sum() <= max(1, len(a) // 200), (name, int(off.sum()))
        np.testing.assert_allclose(a, b, rtol=TINY_ENVELOPE.mass_tol, atol=atol)
    assert np.array_equal(via_onnx.flagged, via_torch.flagged)
    # the ONNX path itself does not depend on the batch size
    same = OnnxAdversary(exported, batch_size=1000)(test, "down")
    assert np.array_equal(same.delta_applied, via_onnx.delta_applied)
    # a class of the tagger as target: "QCD" is "down"
    np.testing.assert_allclose(onnx_adv(test, "QCD").delta_applied, via_onnx.delta_applied)
    # loading back into torch gives the same network
    back = LearnedAdversary.load(exported, pfn)
    assert np.array_equal(back(test, "down").delta_applied, via_torch.delta_applied)


def test_card(tiny, exported, pfn):
    card = json.loads(exported.with_suffix(".json").read_text())
    assert card["format"] == "hepsafe-adversary/1"
    assert card["model"]["sha256"] == sha256sum(exported)
    assert card["tagger"]["name"] == "pfn"
    assert card["tagger"]["sha256"] == sha256sum(pfn.path)
    assert Envelope.from_dict(card["envelope"]) == tiny.envelope
    assert card["training"]["lambdas"] == {"cls": 1.0, "pt": 10.0, "mass": 10.0}
    assert card["training"]["seed"] == 0 and card["training"]["epochs_run"] == 4
    assert card["training"]["gate"]["passed"] in (True, False)
    assert card["training"]["gate"]["split"] == "report"
    assert card["training"]["bg_score"] == "probability"  # the default, as in Shimmin & Nachman
    assert set(card["training"]["gate"]["ks"]) == {"jet_pt", "jet_mass", "score"}
    assert card["training"]["command"] == "test"


# --------------------------------------------------------------------------- reference
def test_committed_reference_adversary(pfn, sample):
    assert REFERENCE.stat().st_size < 1_000_000
    card = json.loads(REFERENCE.with_suffix(".json").read_text())
    assert card["model"]["sha256"] == sha256sum(REFERENCE)
    assert card["tagger"]["sha256"] == sha256sum(pfn.path)
    assert card["training"]["command"].startswith("python examples/train_adversary.py")
    assert card["evaluation"]["gate"]["passed"] is True
    test = sample[datasets.is_test(sample.event) & (sample.label <= 1)][::2]
    sig = test.label == 1
    pert = OnnxAdversary(REFERENCE, tagger=pfn)(test, "down")
    s0, s1 = pfn.predict(test), pfn.predict(pert.jets)
    thr = metrics.threshold_at_efficiency(s0[sig], 0.5)
    eff0, eff1 = metrics.efficiency(s0[sig], thr), metrics.efficiency(s1[sig], thr)
    assert eff1 < eff0 - 0.02
    report = validate.gate(test[~sig], pert.jets[~sig], s0[~sig], s1[~sig],
                           default_gate_config())
    assert report.passed, report.to_text()


def test_rebuild_graph_upgrades_an_older_export(pfn, sample, tmp_path):
    """An adversary exported in the earlier graph layout (3-D MatMul + Add, explicit
    standardisation) is rewritten in the current one: same deltas on real jets, the card's
    sha256 follows, the layout is the shipped graph's (the same operators in the same order),
    and rebuilding again changes nothing."""
    old = tmp_path / "adversary_pfn.onnx"
    for ext in ("onnx", "json"):
        src = OLD_LAYOUT.with_suffix(f".{ext}")
        old.with_suffix(f".{ext}").write_bytes(src.read_bytes())
    before = old.read_bytes()
    jets = sample[::40]
    d_old = OnnxAdversary(old).delta(jets)  # trained against an earlier PFN: no tagger
    assert rebuild_graph(old) <= 1e-6
    assert old.read_bytes() != before
    shipped = [n.op_type for n in onnx.load(str(REFERENCE)).graph.node]
    assert [n.op_type for n in onnx.load(str(old)).graph.node] == shipped
    rebuilt = old.read_bytes()
    assert rebuild_graph(old) <= 1e-6
    assert old.read_bytes() == rebuilt
    card = json.loads(old.with_suffix(".json").read_text())
    assert card["model"]["sha256"] == sha256sum(old)
    ops = {n.op_type for n in onnx.load(str(old)).graph.node}
    assert "Gemm" in ops and "ReduceSum" in ops
    np.testing.assert_allclose(OnnxAdversary(old).delta(jets), d_old, atol=1e-6)
    # a card that does not belong to the file is refused, nothing is written
    card["model"]["sha256"] = "0" * 64
    old.with_suffix(".json").write_text(json.dumps(card))
    kept = old.read_bytes()
    with pytest.raises(CardError, match="sha256"):
        rebuild_graph(old)
    assert old.read_bytes() == kept


# --------------------------------------------------------------------------- bad input
def test_empty_and_constituent_free_jets(tiny, exported, split):
    _, test = split
    onnx_adv = OnnxAdversary(exported)
    for adv in (tiny, onnx_adv):
        empty = adv(test[:0], "down")
        assert len(empty.jets) == 0 and empty.delta_applied.shape == (0, 3)
        bare = test[:3].replace(parts=test[:3].parts[:, :0])
        p = adv(bare, "down")
        assert p.delta_applied.shape == (0, 3) and len(p.jets) == 3
        mixed = JetBatch.concatenate([bare, test[:4]])
        pm = adv(mixed, "down")
        np.testing.assert_allclose(pm.delta_applied, adv(test[:4], "down").delta_applied,
                                   atol=1e-7)


def test_zero_envelope_changes_nothing(exported, pfn, split):
    _, test = split
    zero = Envelope.uniform(0.0)
    for adv in (OnnxAdversary(exported, envelope=zero),
                LearnedAdversary.load(exported, pfn, envelope=zero)):
        p = adv(test, "down")
        assert np.all(p.delta_applied == 0)
        for name in ("pt", "eta", "phi"):
            assert np.array_equal(p.jets.flat(name), test.flat(name))
        inputs, _ = adversary_inputs(test, adv.n_max, adv.features, zero)
        assert np.all(adv.padded_delta(inputs) == 0)


def test_errors(tiny, exported, pfn, split, tmp_path):
    train, test = split
    with pytest.raises(ConfigError, match="target"):
        tiny(test, "up")
    with pytest.raises(ConfigError, match="target"):
        tiny(test, "W")
    with pytest.raises(ConfigError, match="fit"):
        LearnedAdversary(pfn)(test, "down")
    with pytest.raises(InputError, match="signal"):
        LearnedAdversary(pfn, config=LearnedConfig(**TINY)).fit(train[train.label == 0])
    with pytest.raises(InputError, match="train_jets"):
        LearnedAdversary(pfn).fit("jets")  # type: ignore[arg-type]
    for bad in ({"epochs": -1}, {"lambda_cls": -1.0}, {"bg_score": "rank"},
                {"features": ("nope",)}, {"holdout_fraction": 1.0}, {"report_fraction": 0.0},
                {"holdout_fraction": 0.5, "report_fraction": 0.5},
                {"signal_labels": (0,)}, {"observables_on": "signal"}):
        with pytest.raises(ConfigError, match=next(iter(bad)).split("_")[0]):
            LearnedConfig(**bad)
    with pytest.raises(ConfigError, match="path"):
        tiny.export(tmp_path / "g.txt")
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(exported.read_bytes())
    with pytest.raises(CardError, match="card"):
        OnnxAdversary(lone)
    with pytest.raises(ModelError, match="tagger"):
        OnnxAdversary(exported, tagger=reference("hl", providers="cpu"))
    card = json.loads(exported.with_suffix(".json").read_text())
    del card["envelope"]
    with pytest.raises(CardError, match="envelope"):
        OnnxAdversary(exported, card=card)


def test_lambda_scan_keeps_the_strongest_inside_the_selection_gate(pfn, split):
    """A scan of lambda_cls trains once per value on the same splits and keeps the run with
    the lowest selection signal efficiency among those whose selection gate passes."""
    jets = split[0]
    cfg = LearnedConfig(**{**TINY, "epochs": 2, "stop_on_gate": True,
                           "lambda_scan": (0.0, 1000.0)})
    adv = LearnedAdversary(pfn, TINY_ENVELOPE, cfg).fit(jets)
    scan = adv.record["lambda_scan"]
    assert [r["lambda_cls"] for r in scan] == [0.0, 1000.0]
    ok = [r for r in scan if r["selection_gate_passed"]]
    best = min(ok, key=lambda r: r["selection_signal_efficiency"])
    assert adv.config.lambda_cls == best["lambda_cls"] == adv.record["lambda_cls"]
    assert adv.record["selection_signal_efficiency"]["attacked"] == \
        best["selection_signal_efficiency"]
    # the kept network is that run's: the same as training it alone
    alone = LearnedAdversary(pfn, TINY_ENVELOPE, replace(cfg, lambda_cls=best["lambda_cls"],
                                                         lambda_scan=())).fit(jets)
    assert np.array_equal(adv.delta(split[1]), alone.delta(split[1]))
    with pytest.raises(ConfigError, match="'lambda_scan'"):
        LearnedConfig(lambda_scan=(-1.0,))
