"""Attacks (FGSM, PGD, SPSA, greedy, physics variations, the factory) on the shipped sample
with the committed reference taggers: envelope, effect, determinism, fallback, bad input."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import awkward as ak
import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from hepsafe import metrics
from hepsafe import tagger as T
from hepsafe._files import sha256sum
from hepsafe.attacks import (
    FGSM,
    LABEL_TARGETS,
    PGD,
    SPSA,
    Attack,
    AttackFallbackWarning,
    GradientOracle,
    GreedySearch,
    Objective,
    PhysicsVariation,
    make_attack,
    resolve_directions,
    resolve_target,
    signal_labels_of,
)
from hepsafe.attacks.base import constituent_classes
from hepsafe.attacks.greedy import CORRELATION_FEATURES, JSD_FEATURES
from hepsafe.attacks.registry import attack_class
from hepsafe.attacks.spsa import ScoreOracle, signal_logit_np
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError, ConversionError, InputError
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturber
from hepsafe.perturbation.variations import apply_variation
from hepsafe.tagger.torch import _score_torch
from hepsafe.validation.checks import gate
from hepsafe.validation.config import GateConfig

EPS = 0.02
#: an envelope with per-class bounds, to check the clipping per class
CLASS_ENVELOPE = Envelope(pt=0.02, eta=0.01, phi=0.03,
                          classes={"photon": {"pt": 0.04}, "neutral_hadron": {"eta": 0.03}})
FAST = {  # small settings per attack kind: the tests check behaviour, not strength
    "fgsm": {},
    "pgd": {"steps": 4},
    "spsa": {"steps": 3, "samples": 4},
    "greedy": {"steps": 2},
}


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def w_jets(test_split: JetBatch) -> JetBatch:
    """250 W (signal) jets of the test split."""
    return test_split[test_split.label == 1][:250]


@pytest.fixture(scope="module")
def few(test_split: JetBatch) -> JetBatch:
    """60 jets of all classes."""
    return test_split[::120][:60]


@pytest.fixture(scope="module")
def shrink_tagger(pfn: T.OnnxTagger, tmp_path_factory: pytest.TempPathFactory) -> T.OnnxTagger:
    """The PFN with an identity ``Shrink(lambd=0, bias=0)`` on its logit: ONNX Runtime runs
    it, onnx2torch has no converter for Shrink."""
    model = onnx.load(str(pfn.path))
    last = next(n for n in model.graph.node if "logit" in n.output)
    last.output[list(last.output).index("logit")] = "logit_pre"
    model.graph.node.append(
        helper.make_node("Shrink", ["logit_pre"], ["logit"], name="shrink_identity",
                         lambd=0.0, bias=0.0)
    )
    onnx.checker.check_model(model)
    out = tmp_path_factory.mktemp("shrink") / "pfn_shrink.onnx"
    onnx.save(model, str(out))
    card = json.loads(pfn.path.with_suffix(".json").read_text())
    card["name"] = "pfn_shrink"
    card["model"]["file"] = out.name
    card["model"]["sha256"] = sha256sum(out)
    out.with_suffix(".json").write_text(json.dumps(card))
    return T.OnnxTagger(out, providers="cpu", intra_op_threads=1)


def make(kind: str, tagger: T.OnnxTagger, envelope: Envelope, **kw: Any) -> Attack:
    return make_attack(kind, tagger, envelope, **{**FAST.get(kind, {}), **kw})


def assert_inside(nominal: JetBatch, perturbed: JetBatch, envelope: Envelope) -> None:
    """Every constituent of ``perturbed`` within the envelope of its nominal one, per
    coordinate, to float32 rounding."""
    bounds = envelope.table()[constituent_classes(nominal).astype(np.int64)]
    pt0 = nominal.flat("pt").astype(np.float64)
    rel = perturbed.flat("pt") / pt0 - 1.0
    deta = perturbed.flat("eta").astype(np.float64) - nominal.flat("eta")
    dphi = perturbed.flat("phi").astype(np.float64) - nominal.flat("phi")
    dphi = np.remainder(dphi + np.pi, 2 * np.pi) - np.pi
    tol = {0: 2e-7, 1: 1e-6, 2: 1e-6}  # float32 rounding of the stored value
    for q, d in enumerate((rel, deta, dphi)):
        over = np.abs(d) - bounds[:, q]
        assert over.max() <= tol[q], (q, over.max())
    moved = (np.abs(rel) > 1e-6) | (np.abs(deta) > 1e-6) | (np.abs(dphi) > 1e-6)
    assert moved.any()


# ---------------------------------------------------------------------------- envelope
@pytest.mark.parametrize("kind", ["fgsm", "pgd", "spsa", "greedy"])
def test_every_constituent_inside_the_envelope(
    kind: str, pfn: T.OnnxTagger, w_jets: JetBatch
) -> None:
    jets = w_jets[:120]
    res = make(kind, pfn, CLASS_ENVELOPE)(jets, "down")
    assert_inside(jets, res.jets, CLASS_ENVELOPE)
    assert np.array_equal(res.jets.n_parts, jets.n_parts)


def test_physics_scale_inside_its_envelope_and_delta_is_implied(
    pfn: T.OnnxTagger, w_jets: JetBatch
) -> None:
    """scale_all_up shifts pT by the default envelope's bound: inside Envelope(); the
    returned delta reproduces the variation's coordinates."""
    jets = w_jets[:120]
    res = make("physics:scale_all_up", pfn, Envelope())(jets, "down")
    assert_inside(jets, res.jets, Envelope())
    direct = apply_variation("scale_all_up", jets)
    for f in ("pt", "eta", "phi", "energy"):
        assert np.array_equal(res.jets.flat(f), direct.flat(f))
    np.testing.assert_allclose(res.delta_applied[:, 0], 0.02, rtol=1e-4)
    np.testing.assert_array_equal(res.delta_applied[:, 1:], 0.0)
    assert not res.flagged.any() and res.preserve == ()


def test_physics_variation_is_not_limited_to_the_envelope(
    pfn: T.OnnxTagger, few: JetBatch
) -> None:
    small = Envelope.uniform(0.001)
    res = PhysicsVariation(pfn, small, "smear_angle", seed=3)(few, "up")
    assert np.abs(res.delta_applied[:, 1]).max() > 0.001
    eta = few.flat("eta") + res.delta_applied[:, 1]
    np.testing.assert_allclose(res.jets.flat("eta"), eta, atol=2e-6)
    dropped = PhysicsVariation(pfn, small, "tracking_loss", options={"p": 0.3})(few)
    mask = dropped.jets.flat("mask")
    assert not mask.all() and np.all(dropped.delta_applied[~mask] == 0)


# ---------------------------------------------------------------------------- effect
def test_pgd_lowers_the_w_efficiency_at_the_50_percent_working_point(
    pfn: T.OnnxTagger, w_jets: JetBatch
) -> None:
    nominal = pfn.predict(w_jets)
    cut = metrics.threshold_at_efficiency(nominal, 0.5)
    res = PGD(pfn, Envelope.uniform(EPS), steps=6)(w_jets, "down")
    eff_before = metrics.efficiency(nominal, cut)
    eff_after = metrics.efficiency(pfn.predict(res.jets), cut)
    assert eff_before >= 0.5
    assert eff_after < eff_before - 0.04, (eff_before, eff_after)


def test_fgsm_and_pgd_push_both_ways(pfn: T.OnnxTagger, w_jets: JetBatch) -> None:
    jets = w_jets[:100]
    s0 = pfn.predict(jets).mean()
    env = Envelope.uniform(EPS)
    assert pfn.predict(FGSM(pfn, env)(jets, "QCD").jets).mean() < s0
    assert pfn.predict(PGD(pfn, env, steps=3)(jets, "up").jets).mean() > s0


def test_greedy_keeps_distributions_within_caps_and_lowers_the_score(
    pfn: T.OnnxTagger, test_split: JetBatch
) -> None:
    jets = test_split[::18][:400]  # all classes
    attack = GreedySearch(pfn, Envelope.uniform(EPS), steps=3)
    res = attack(jets, "down")
    assert pfn.predict(res.jets).mean() < pfn.predict(jets).mean()
    # checked independently with the control-region gate on the returned jets
    report = gate(jets, res.jets, config=GateConfig())
    for var in JSD_FEATURES:
        assert report.stats(var).jsd <= attack.jsd_max, var
    assert report.correlation_variables == CORRELATION_FEATURES
    assert report.check("correlation", "corr_frobenius").value <= attack.corr_max
    assert res.info is not None and (res.info.name, res.info.target) == ("greedy", "down")
    (batch,) = res.info.details["batches"]
    assert batch["accepted"] >= 1 and batch["objective_after"] > batch["objective_before"]


def test_greedy_caps_bind(pfn: T.OnnxTagger, test_split: JetBatch) -> None:
    """With zero caps nothing that changes a histogram bin is accepted."""
    jets = test_split[::36][:200]
    attack = GreedySearch(pfn, Envelope.uniform(EPS), steps=1, jsd_max=0.0, corr_max=0.0,
                          max_halvings=2)
    res = attack(jets, "down")
    assert res.info is not None
    (batch,) = res.info.details["batches"]
    assert batch["accepted"] == 0 and batch["proposals"] == 9
    assert np.all(res.delta_applied == 0)


# ---------------------------------------------------------------------------- determinism
def test_pgd_random_start_is_deterministic(pfn: T.OnnxTagger, few: JetBatch) -> None:
    env = Envelope.uniform(EPS)

    def run(seed: int) -> np.ndarray:
        return PGD(pfn, env, steps=2, random_start=True, restarts=1, seed=seed)(
            few).delta_applied

    a = run(5)
    assert np.array_equal(a, run(5))
    assert not np.array_equal(a, run(6))


def test_spsa_is_deterministic_and_its_draws_do_not_depend_on_batching(
    pfn: T.OnnxTagger, few: JetBatch
) -> None:
    env = Envelope.uniform(EPS)
    a = SPSA(pfn, env, steps=2, samples=2, seed=1)(few).delta_applied
    assert np.array_equal(a, SPSA(pfn, env, steps=2, samples=2, seed=1)(few).delta_applied)
    assert not np.array_equal(a, SPSA(pfn, env, steps=2, samples=2, seed=2)(few).delta_applied)
    spsa = SPSA(pfn, env, samples=3)
    whole = spsa.rademacher(few, few.offsets, 1, 2)
    part = few[10:20]
    rows = slice(int(few.offsets[10]), int(few.offsets[20]))
    assert np.array_equal(spsa.rademacher(part, part.offsets, 1, 2), whole[rows])
    assert set(np.unique(whole)) == {-1.0, 1.0}


# ---------------------------------------------------------------------------- black box
def test_score_oracle_matches_predict_on_the_perturbed_jets(
    pfn: T.OnnxTagger, few: JetBatch
) -> None:
    env = Envelope.uniform(EPS)
    perturber = Perturber(few, env, preserve=())
    rng = np.random.default_rng(1)
    res = perturber.apply(rng.uniform(-EPS, EPS, size=(perturber.n_constituents, 3)))
    logits = ScoreOracle(pfn, few).logits(np.stack([res.delta_applied, 0 * res.delta_applied]))
    # jets longer than the padding may keep a different set of constituents after the move
    fits = few.n_parts <= pfn.n_max
    assert fits.mean() > 0.8
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[0][fits])), pfn.predict(res.jets)[fits],
                               atol=3e-6)
    assert np.abs(logits[1] - logits[0]).max() > 1e-3


@pytest.mark.parametrize("activation", ["logit", "sigmoid", "softmax", "logits"])
def test_signal_logit_np_matches_torch(activation: str) -> None:
    rng = np.random.default_rng(0)
    if activation in ("logit", "sigmoid"):
        out = T.OutputSpec("y", activation, ("QCD", "W"), "W")
        y = rng.normal(size=(50, 1)).astype(np.float32)
        if activation == "sigmoid":
            y = 1 / (1 + np.exp(-y))
    else:
        out = T.OutputSpec("y", activation, ("QCD", "W", "top"), "W")
        y = rng.normal(size=(50, 3)).astype(np.float32)
        if activation == "softmax":
            y = np.exp(y) / np.exp(y).sum(axis=1, keepdims=True)
    want = _score_torch(torch.as_tensor(y, dtype=torch.float64), out, "logit").numpy()
    np.testing.assert_allclose(signal_logit_np(y, out), want, rtol=1e-6, atol=1e-6)


def test_spsa_on_a_graph_onnx2torch_cannot_convert(
    pfn: T.OnnxTagger, shrink_tagger: T.OnnxTagger, w_jets: JetBatch
) -> None:
    jets = w_jets[:150]
    with pytest.raises(ConversionError, match="Shrink"):
        shrink_tagger.as_torch()
    s0 = shrink_tagger.predict(jets)
    np.testing.assert_array_equal(s0, pfn.predict(jets))  # the same function
    env = Envelope.uniform(EPS)
    spsa = shrink_tagger.predict(SPSA(shrink_tagger, env, steps=5, samples=4)(jets).jets)
    pgd = pfn.predict(PGD(pfn, env, steps=5)(jets).jets)
    assert spsa.mean() < s0.mean() - 0.005 and pgd.mean() < s0.mean() - 0.005
    # most jets move the same way under both attacks
    both_down = np.mean((spsa <= s0) & (pgd <= s0))
    assert both_down > 0.8


def test_factory_falls_back_to_spsa_with_a_warning(shrink_tagger: T.OnnxTagger) -> None:
    env = Envelope.uniform(EPS)
    with pytest.warns(AttackFallbackWarning, match="Shrink") as record:
        attack = make_attack("pgd", shrink_tagger, env, steps=3, step_size=0.5,
                             random_start=True)
    assert type(attack) is SPSA and attack.steps == 3 and attack.lr == 0.5
    assert "random_start" in str(record[0].message)
    with pytest.warns(AttackFallbackWarning, match="Shrink"):
        fgsm = make_attack("fgsm", shrink_tagger, env)
    assert type(fgsm) is SPSA and fgsm.steps == 1 and fgsm.lr == 1.0
    with pytest.raises(ConversionError, match="greedy"):
        make_attack("greedy", shrink_tagger, env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(make_attack("spsa", shrink_tagger, env)) is SPSA


# ---------------------------------------------------------------------------- factory
def test_factory_maps_names_to_classes(pfn: T.OnnxTagger) -> None:
    env = Envelope()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind, cls in (("fgsm", FGSM), ("pgd", PGD), ("spsa", SPSA), ("greedy", GreedySearch)):
            assert type(make_attack(kind, pfn, env)) is cls
    phys = make_attack("physics:smear_energy", pfn, env, seed=4, options={"sigma": 0.05})
    assert isinstance(phys, PhysicsVariation) and phys.variation == "smear_energy"
    assert phys.name == "physics:smear_energy" and phys.options == {"sigma": 0.05}
    assert make_attack("pgd", pfn, env, steps=7).steps == 7  # type: ignore[attr-defined]


def test_factory_errors_name_the_option(pfn: T.OnnxTagger) -> None:
    with pytest.raises(ConfigError, match="'kind'.*'cw'"):
        make_attack("cw", pfn)
    with pytest.raises(ConfigError, match=r"\['stepz'\]"):
        make_attack("pgd", pfn, stepz=3)
    with pytest.raises(ConfigError, match="'variation'.*'no_such'"):
        make_attack("physics:no_such", pfn)
    with pytest.raises(ConfigError, match="'samples'"):
        make_attack("spsa", pfn, samples=0)
    with pytest.raises(ConfigError, match="'sigma_x'"):
        make_attack("physics:smear_energy", pfn, options={"sigma_x": 1})


def test_factory_learned_is_lazy(pfn: T.OnnxTagger, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from hepsafe.attacks.adversary.training import LearnedAdversary
    except ImportError:
        with pytest.raises(ConfigError, match="learned"):
            attack_class("learned")
    else:
        assert attack_class("learned") is LearnedAdversary
    monkeypatch.setitem(sys.modules, "hepsafe.attacks.adversary.training", None)
    with pytest.raises(ConfigError, match="attack 'learned'"):
        make_attack("learned", pfn)


def test_factory_loads_the_learned_adversary(pfn: T.OnnxTagger, hl: T.OnnxTagger,
                                             w_jets: JetBatch) -> None:
    """"learned" is a trained network: the shipped one for the shipped PFN (by default or by
    name), in the envelope it was trained in unless one is given; other taggers name one."""
    from hepsafe.attacks.adversary.training import LearnedAdversary

    direct = LearnedAdversary.load("adversary_pfn", pfn)
    default = make_attack("learned", pfn)
    named = make_attack("learned", pfn, Envelope.uniform(0.01), model="adversary_pfn")
    assert isinstance(default, LearnedAdversary) and default.direction == -1.0
    assert default.envelope == direct.envelope and named.envelope == Envelope.uniform(0.01)
    res = default(w_jets, "down")
    assert res.info is not None and (res.info.name, res.info.target) == ("learned", "down")
    np.testing.assert_array_equal(res.jets.flat("pt"), direct(w_jets, "down").jets.flat("pt"))
    assert pfn.predict(res.jets).mean() < pfn.predict(w_jets).mean()
    with pytest.raises(ConfigError, match="attack 'learned' needs option 'model'"):
        make_attack("learned", hl)
    with pytest.raises(ConfigError, match=r"attack 'learned': unknown option\(s\) \['steps'\]"):
        make_attack("learned", pfn, steps=3)


# ---------------------------------------------------------------------------- bad input
ALL_KINDS = ["fgsm", "pgd", "spsa", "greedy", "physics:smear_angle"]


@pytest.mark.parametrize("kind", ["fgsm", "pgd", "spsa", "greedy"])
def test_zero_envelope_changes_nothing(kind: str, pfn: T.OnnxTagger, few: JetBatch) -> None:
    res = make(kind, pfn, Envelope.uniform(0.0))(few, "down")
    for f in ("pt", "eta", "phi", "energy"):
        assert np.array_equal(res.jets.flat(f), few.flat(f)), f
    assert np.array_equal(res.jets.pt, few.pt) and np.array_equal(res.jets.mass, few.mass)
    assert np.all(res.delta_applied == 0) and res.jets.flat("mask").all()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_empty_batch(kind: str, pfn: T.OnnxTagger, few: JetBatch) -> None:
    res = make(kind, pfn, Envelope())(few[:0], "down")
    assert len(res.jets) == 0 and res.delta_applied.shape == (0, 3)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_jets_without_constituents(kind: str, pfn: T.OnnxTagger, few: JetBatch) -> None:
    empty = np.zeros(len(few), dtype=bool)
    empty[::3] = True
    keep = ak.local_index(few.parts["pt"], axis=1) < ak.Array(np.where(empty, 0, 10**6))
    jets = few.replace(parts=few.parts[keep])
    res = make(kind, pfn, Envelope())(jets, "down")
    assert np.array_equal(res.jets.n_parts, jets.n_parts)
    assert np.isfinite(pfn.predict(res.jets)).all()
    none = few.replace(parts=few.parts[ak.local_index(few.parts["pt"], axis=1) < 0])
    res = make(kind, pfn, Envelope())(none, "down")
    assert len(res.jets) == len(few) and res.delta_applied.shape == (0, 3)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_unknown_target_class_names_it(kind: str, pfn: T.OnnxTagger, few: JetBatch) -> None:
    with pytest.raises(ConfigError, match="'top'.*QCD.*W"):
        make(kind, pfn, Envelope())(few, "top")


def test_inputs_are_not_modified(pfn: T.OnnxTagger, few: JetBatch) -> None:
    before = {f: few.flat(f) for f in ("pt", "eta", "phi", "energy")}
    for kind in ("pgd", "spsa"):
        make(kind, pfn, Envelope())(few, "down")
    for f, v in before.items():
        assert np.array_equal(few.flat(f), v)
    assert "mask" not in few.parts.fields


def test_hl_tagger_is_attacked_too(hl: T.OnnxTagger, few: JetBatch) -> None:
    """Jet-level taggers go through the same padded path (gradient and black box)."""
    jets = few[few.label == 1]
    s0 = hl.predict(jets).mean()
    for kind in ("pgd", "spsa"):
        res = make(kind, hl, Envelope.uniform(0.05), preserve=())(jets, "down")
        assert hl.predict(res.jets).mean() < s0, kind


def test_bad_options(pfn: T.OnnxTagger) -> None:
    with pytest.raises(ConfigError, match="'c'"):
        SPSA(pfn, c=0.0)
    with pytest.raises(ConfigError, match="'jsd_max'"):
        GreedySearch(pfn, jsd_max=-1)
    with pytest.raises(ConfigError, match="'steps'"):
        GreedySearch(pfn, steps=0)


def test_physics_ignores_the_target(pfn: T.OnnxTagger, few: JetBatch) -> None:
    a = PhysicsVariation(pfn, variation="smear_energy", seed=2)
    up, down = a(few, "up"), a(few, "QCD")
    assert np.array_equal(up.jets.flat("pt"), down.jets.flat("pt"))
    assert up.info is not None and down.info is not None
    assert (up.info.name, up.info.target, down.info.target) == ("physics:smear_energy", "up",
                                                                "QCD")
    assert up.info.details == {"variation": "smear_energy", "options": {}, "seed": 2}


# ---------------------------------------------------------------------------- targets per jet
@pytest.fixture(scope="module")
def wq(test_split: JetBatch) -> JetBatch:
    """150 W and 150 QCD jets of the test split."""
    return JetBatch.concatenate([test_split[test_split.label == k][::15][:150] for k in (1, 0)])


def logit(tagger: T.OnnxTagger, jets: JetBatch) -> np.ndarray:
    p = tagger.predict(jets).astype(np.float64)
    return np.log(p) - np.log1p(-p)


def test_directions_from_labels(pfn: T.OnnxTagger) -> None:
    labels = np.array([1, 0, 2, 1, 0])
    for target in LABEL_TARGETS:
        np.testing.assert_array_equal(resolve_directions(pfn, target, labels),
                                      [-1, 1, 1, -1, 1])
    np.testing.assert_array_equal(
        resolve_directions(pfn, "signal_down_background_up", labels, signal_labels=[2, 0]),
        [1, -1, -1, 1, -1])
    for target, d in (("down", -1), ("up", 1), ("QCD", -1), ("W", 1)):
        np.testing.assert_array_equal(resolve_directions(pfn, target, labels), d)
    # the card's signal class "W" is label 1; a name the labels do not know gives label 1
    assert signal_labels_of(pfn) == (1,)
    with pytest.raises(InputError,
                       match=r"^target 'true_label': 2 of 4 jets have label -1 \(unknown\)"):
        resolve_directions(pfn, "true_label", np.array([1, -1, 0, -1]))
    # unknown labels do not matter when the target is the same for every jet
    np.testing.assert_array_equal(resolve_directions(pfn, "down", np.array([-1, -1])), -1)
    with pytest.raises(ConfigError, match="'signal_labels'"):
        resolve_directions(pfn, "true_label", labels, signal_labels=[])
    with pytest.raises(ConfigError, match="'signal_labels'"):
        PGD(pfn, signal_labels=[-2])
    with pytest.raises(ConfigError, match="'target'.*'sideways'.*signal_down_background_up"):
        resolve_directions(pfn, "sideways", labels)
    with pytest.raises(ConfigError, match="resolve_directions"):
        resolve_target(pfn, "signal_down_background_up")


@pytest.mark.parametrize("kind", ["fgsm", "pgd", "spsa"])
def test_signal_down_background_up_moves_w_down_and_qcd_up(
    kind: str, pfn: T.OnnxTagger, wq: JetBatch
) -> None:
    jets = wq if kind != "spsa" else wq[::3]
    z0 = logit(pfn, jets)
    res = make(kind, pfn, Envelope.uniform(EPS))(jets, "signal_down_background_up")
    dz = logit(pfn, res.jets) - z0
    w, q = jets.label == 1, jets.label == 0
    assert w.sum() > 30 and q.sum() > 30
    size = 0.2 if kind != "spsa" else 0.05  # SPSA: 3 steps of estimated gradients
    assert dz[w].mean() < -size and dz[q].mean() > size, (dz[w].mean(), dz[q].mean())
    assert np.mean(dz[w] < 0) > 0.9 and np.mean(dz[q] > 0) > 0.9
    assert res.info is not None and res.info.target == "signal_down_background_up"
    # the per-class working point: eps_S falls, eps_B rises
    s0, s1 = pfn.predict(jets), pfn.predict(res.jets)
    thr = metrics.threshold_at_efficiency(s0[w], 0.5)
    assert metrics.efficiency(s1[w], thr) < metrics.efficiency(s0[w], thr)
    assert metrics.efficiency(s1[q], thr) >= metrics.efficiency(s0[q], thr)


def test_greedy_takes_per_jet_directions(pfn: T.OnnxTagger, wq: JetBatch) -> None:
    res = GreedySearch(pfn, Envelope.uniform(EPS), steps=2)(wq, "signal_down_background_up")
    assert res.info is not None and res.info.target == "signal_down_background_up"
    (batch,) = res.info.details["batches"]
    assert batch["accepted"] >= 1 and batch["objective_after"] > batch["objective_before"]
    # the objective is the batch mean of -logit on W jets and +logit on QCD jets
    d = np.where(wq.label == 1, -1.0, 1.0)
    assert np.mean(d * logit(pfn, res.jets)) > np.mean(d * logit(pfn, wq))


def _old_fgsm_down(tagger: T.OnnxTagger, jets: JetBatch, env: Envelope) -> np.ndarray:
    """FGSM "down" as the attacks computed it with one scalar direction per call."""
    perturber = Perturber(jets, env, ("pt", "mass"))
    oracle = GradientOracle(tagger, jets)
    _, grad = oracle.logit_and_grad(np.zeros((oracle.n_constituents, 3), dtype=np.float32))
    bounds = perturber.bounds[perturber.classes.astype(np.int64)].astype(np.float32)
    applied, _ = perturber.project(bounds * np.sign(-1.0 * grad))
    return Perturber(jets, env, ("pt", "mass")).apply(applied).delta_applied


def _old_pgd_down(tagger: T.OnnxTagger, jets: JetBatch, env: Envelope, steps: int,
                  seed: int) -> np.ndarray:
    """PGD "down" (random start, one restart) with one scalar direction, as before."""
    direction, step_size = -1.0, 2.5 / steps
    perturber = Perturber(jets, env, ("pt", "mass"))
    oracle = GradientOracle(tagger, jets)
    bounds = perturber.bounds[perturber.classes.astype(np.int64)].astype(np.float32)
    jet_of = np.repeat(np.arange(len(jets)), np.diff(perturber.offsets))
    rng = np.random.default_rng([seed, 0])
    best = np.zeros_like(bounds)
    best_obj = direction * oracle.logit(best)
    for _ in range(2):
        delta = bounds * rng.uniform(-1.0, 1.0, size=bounds.shape).astype(np.float32)
        delta, _ = perturber.project(delta)
        for _ in range(steps):
            z, grad = oracle.logit_and_grad(delta)
            better = direction * z > best_obj
            best[better[jet_of]] = delta[better[jet_of]]
            best_obj = np.where(better, direction * z, best_obj)
            delta, _ = perturber.project(delta + step_size * bounds * np.sign(direction * grad))
        obj = direction * oracle.logit(delta)
        better = obj > best_obj
        best[better[jet_of]] = delta[better[jet_of]]
        best_obj = np.where(better, obj, best_obj)
    return Perturber(jets, env, ("pt", "mass")).apply(best).delta_applied


def test_down_is_unchanged(pfn: T.OnnxTagger, wq: JetBatch) -> None:
    """"down" gives bit for bit what one scalar direction per call gave; a label-aware
    target on jets that are all signal (background) is "down" ("up")."""
    env = Envelope.uniform(EPS)
    fgsm = FGSM(pfn, env)
    assert np.array_equal(fgsm(wq, "down").delta_applied, _old_fgsm_down(pfn, wq, env))
    pgd = PGD(pfn, env, steps=3, random_start=True, restarts=1, seed=4)
    assert np.array_equal(pgd(wq, "down").delta_applied, _old_pgd_down(pfn, wq, env, 3, 4))
    w, q = wq[wq.label == 1], wq[wq.label == 0]
    for attack in (fgsm, PGD(pfn, env, steps=2), SPSA(pfn, env, steps=2, samples=2)):
        assert np.array_equal(attack(w, "signal_down_background_up").delta_applied,
                              attack(w, "down").delta_applied)
        assert np.array_equal(attack(q, "signal_down_background_up").delta_applied,
                              attack(q, "up").delta_applied)


def test_true_label_has_the_signs_of_signal_down_background_up(
    pfn: T.OnnxTagger, wq: JetBatch
) -> None:
    """For a binary tagger the label's cross-entropy rises where the logit objective does:
    the signed-gradient attacks take the same steps and keep the same best deltas."""
    env = Envelope.uniform(EPS)
    for attack in (FGSM(pfn, env), PGD(pfn, env, steps=3)):
        a = attack(wq, "true_label")
        b = attack(wq, "signal_down_background_up")
        assert a.info is not None and a.info.target == "true_label"
        assert np.array_equal(a.delta_applied, b.delta_applied)
    z = logit(pfn, wq)
    d = resolve_directions(pfn, "true_label", wq.label)
    loss, lin = Objective(d, loss=True), Objective(d)
    assert np.array_equal(np.sign(loss.slope(z)), d)
    # the loss is the binary cross-entropy of the label: -log f (W), -log(1 - f) (QCD)
    f = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(loss.value(z), np.where(wq.label == 1, -np.log(f),
                                                       -np.log1p(-f)), rtol=1e-9, atol=1e-12)
    # ... a different weighting from the logit objective: not an affine function of it
    assert np.std(loss.value(z) - lin.value(z)) > 0.1


def test_learned_and_physics_take_label_aware_targets(pfn: T.OnnxTagger, wq: JetBatch) -> None:
    """The learned adversary's own objective is signal down with the background held fixed:
    the label-aware targets ask for it (no labels needed); a physics variation has no
    direction and ignores them."""
    adv = make_attack("learned", pfn)
    unlabelled = wq.replace(label=np.full(len(wq), -1, dtype=wq.label.dtype))
    res = adv(unlabelled, "signal_down_background_up")
    assert res.info is not None and res.info.target == "signal_down_background_up"
    assert np.array_equal(res.delta_applied, adv(wq, "down").delta_applied)
    with pytest.raises(ConfigError, match="'up'.*other direction"):
        adv(wq, "up")
    # a run passes the signal samples' labels to every label-aware attack: checked, unused
    labelled = make_attack("learned", pfn, signal_labels=[1])
    assert np.array_equal(labelled(wq, "true_label").delta_applied, res.delta_applied)
    with pytest.raises(ConfigError, match="'signal_labels'"):
        make_attack("learned", pfn, signal_labels=[-1])
    phys = PhysicsVariation(pfn, variation="smear_energy", seed=2)
    assert np.array_equal(phys(unlabelled, "true_label").jets.flat("pt"),
                          phys(wq, "down").jets.flat("pt"))


def test_signal_labels_option_and_fallback(pfn: T.OnnxTagger,
                                           shrink_tagger: T.OnnxTagger) -> None:
    attack = make_attack("pgd", pfn, Envelope(), signal_labels=[2])
    assert attack.signal_labels == (2,)
    with pytest.warns(AttackFallbackWarning):
        spsa = make_attack("fgsm", shrink_tagger, Envelope(), signal_labels=[0])
    assert type(spsa) is SPSA and spsa.signal_labels == (0,)
