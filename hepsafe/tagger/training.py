"""Training of the reference taggers: a particle-flow network and a high-level MLP.

Both are trained on the shipped sample's train split, W (signal) against QCD (top jets
excluded), with a fixed seed, fixed batch order and a fixed number of torch threads, so the
same command on the same platform gives the same weights. The trained network is written
as ONNX op by op with ``onnx.helper`` (opset 17, dynamic batch axis, feature
standardisation folded into the first layer), checked against the torch network, scored
on the test split through :class:`~hepsafe.tagger.onnx.OnnxTagger`, and described by a model
card beside it (``schemas/tagger.schema.json``).

- ``pfn``: per-particle MLP on constituent features, masked sum, MLP -> signal logit; ONNX
  inputs ``constituents`` ``(n, n_max, k)`` and ``mask`` ``(n, n_max)``; outputs ``logit``
  ``(n,)`` and the pooled representation ``latent`` ``(n, phi_sizes[-1])``.
- ``hl``: MLP on jet features (pT, eta, mass, D2) -> signal logit; input ``jet`` ``(n, 4)``.
- ``pfn3``: the particle-flow network as a three-class classifier (QCD / W / top, softmax
  cross-entropy), ONNX output ``logits`` ``(n, 3)`` and the representation ``latent``; the
  score is p(W). ``pfn3_md``: the same trained on mass-decorrelated data (each class
  resampled to the classes' common jet-mass distribution, :func:`mass_decorrelated`). These
  two serve the anomaly scores (:mod:`hepsafe.anomaly`).
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hepsafe import data as datasets
from hepsafe._files import atomic_path, sha256sum, write_json
from hepsafe._versions import package_versions
from hepsafe.data.jets import CLASS_NAMES, JetBatch
from hepsafe.exceptions import ConfigError, ModelError
from hepsafe.tagger import features as F

__all__ = ["MODELS", "MULTICLASS_MODELS", "TrainConfig", "TrainResult", "default_config",
           "mass_decorrelated", "train", "train_reference"]

MODELS = ("pfn", "hl")
#: the multi-class reference classifiers (architecture pfn; QCD / W / top)
MULTICLASS_MODELS = ("pfn3", "pfn3_md")
OPSET = 17
SIGNAL, BACKGROUND, TOP = 1, 0, 2  # labels: W, QCD, top
PFN_FEATURES = ("log_pt", "log_e", "log_ptrel", "log_erel", "deta", "dphi", "dr", "charge")
HL_FEATURES = ("pt", "eta", "mass", "d2")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training; sizes are layer widths, ``lr`` the peak Adam learning rate.

    ``max_train_jets``/``max_test_jets`` thin the splits evenly (every k-th jet) for fast
    runs; ``threads`` fixes torch's intra-op threads (part of reproducibility).
    """

    model: str
    epochs: int
    n_max: int
    features: tuple[str, ...]
    hidden: tuple[int, ...] = (64, 64)
    phi_sizes: tuple[int, ...] = (64, 64, 64)
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 1
    threads: int = 2
    max_train_jets: int | None = None
    max_test_jets: int | None = None
    #: the jet labels trained on, background first; two: W vs QCD (one logit), more: a
    #: softmax over them (output ``logits``), the signal class W
    classes: tuple[int, ...] = (BACKGROUND, SIGNAL)
    #: resample every class to the common jet-mass distribution (:func:`mass_decorrelated`)
    mass_decorrelation: bool = False
    #: adversarial training (:mod:`hepsafe.tagger.adversarial`): None, "pgd", "fgsm" or
    #: "learned"; the envelope bound, the attacked fraction of each batch, gradient steps
    adversarial: str | None = None
    adv_epsilon: float = 0.02
    adv_fraction: float = 0.5
    adv_steps: int | None = None

    @property
    def multiclass(self) -> bool:
        """More than two classes: a softmax output."""
        return len(self.classes) > 2

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"option 'model' must be one of {MODELS}, got {self.model!r}")
        for name in ("epochs", "n_max", "batch_size", "threads"):
            v = getattr(self, name)
            if v < (0 if name == "epochs" else 1):
                raise ConfigError(f"option '{name}' must be >= {0 if name == 'epochs' else 1}, "
                                  f"got {v}")
        if not self.lr > 0:
            raise ConfigError(f"option 'lr' must be > 0, got {self.lr}")
        labelled = all(c in CLASS_NAMES for c in self.classes)
        if (len(set(self.classes)) != len(self.classes) or SIGNAL not in self.classes
                or BACKGROUND not in self.classes or not labelled):
            raise ConfigError(f"option 'classes': distinct jet labels including {BACKGROUND} "
                              f"(QCD) and {SIGNAL} (W), got {self.classes!r}")
        if self.multiclass and self.model != "pfn":
            raise ConfigError("option 'classes': more than two classes need the pfn model")
        from hepsafe.tagger.adversarial import check_options

        check_options(self.adversarial, self.adv_epsilon, self.adv_fraction, self.adv_steps)
        if self.adversarial is not None and self.model != "pfn":
            raise ConfigError("option 'adversarial' needs the pfn model (it attacks "
                              "constituents)")
        known = F.CONSTITUENT_FEATURES if self.model == "pfn" else F.JET_FEATURES
        bad = [f for f in self.features if f not in known]
        if bad or not self.features:
            raise ConfigError(f"option 'features': unknown {self.model} feature(s) {bad}; known: "
                              f"{list(known)}")


def default_config(model: str, tiny: bool = False, **changes: Any) -> TrainConfig:
    """The reference settings of ``model`` ("pfn", "hl", "pfn3" or "pfn3_md"); ``tiny``
    trains in seconds."""
    if model in MULTICLASS_MODELS:
        cfg = default_config("pfn", tiny, classes=(BACKGROUND, SIGNAL, TOP),
                             mass_decorrelation=model == "pfn3_md")
        return replace(cfg, **changes) if changes else cfg
    if model == "pfn":
        cfg = TrainConfig("pfn", epochs=24, n_max=64, features=PFN_FEATURES, hidden=(64, 64),
                          phi_sizes=(64, 64, 64), batch_size=128, lr=2e-3)
    elif model == "hl":
        cfg = TrainConfig("hl", epochs=30, n_max=128, features=HL_FEATURES, hidden=(64, 64),
                          phi_sizes=(), batch_size=128, lr=3e-3)
    else:
        raise ConfigError(f"option 'model' must be one of {MODELS + MULTICLASS_MODELS}, "
                          f"got {model!r}")
    if tiny:
        cfg = replace(cfg, epochs=2, hidden=(16,), phi_sizes=(16, 16) if model == "pfn" else (),
                      n_max=32 if model == "pfn" else 128, max_train_jets=600,
                      max_test_jets=600)
    return replace(cfg, **changes) if changes else cfg


# --------------------------------------------------------------------------- data
def _w_vs_qcd(jets: JetBatch, max_jets: int | None,
              classes: Sequence[int] = (BACKGROUND, SIGNAL)) -> JetBatch:
    sel = jets[np.isin(jets.label, np.asarray(classes))]
    if max_jets is not None and len(sel) > max_jets:
        step = math.ceil(len(sel) / max_jets)
        sel = sel[::step]
    return sel


#: jet-mass bins [GeV] of the mass decorrelation, and the cap on a jet's resampling weight
MD_EDGES = np.arange(0.0, 305.0, 5.0)
MD_MAX_WEIGHT = 20.0


def mass_decorrelated(jets: JetBatch, seed: int = 1) -> JetBatch:
    """The jets resampled (with replacement, seeded) so that every class follows the same
    jet-mass distribution: the classes' mixture, in 5 GeV bins. A jet of class ``k`` is
    drawn with probability proportional to ``mixture(m) / class_k(m)`` (capped at
    :data:`MD_MAX_WEIGHT` times the class median); each class keeps its number of jets."""
    rng = np.random.default_rng(seed)
    m = np.clip(jets.mass.astype(np.float64), MD_EDGES[0], MD_EDGES[-1] - 1e-6)
    b = np.digitize(m, MD_EDGES) - 1
    classes = np.unique(jets.label)
    dens = {k: np.bincount(b[jets.label == k], minlength=len(MD_EDGES) - 1)
            / max(1, int((jets.label == k).sum())) for k in classes}
    mixture = np.mean([dens[k] for k in classes], axis=0)
    picks = []
    for k in classes:
        idx = np.flatnonzero(jets.label == k)
        w = mixture[b[idx]] / dens[k][b[idx]]
        w = np.minimum(w, MD_MAX_WEIGHT * np.median(w))
        picks.append(rng.choice(idx, size=len(idx), replace=True, p=w / w.sum()))
    return jets[np.sort(np.concatenate(picks))]


def _arrays(jets: JetBatch, cfg: TrainConfig) -> list[np.ndarray]:
    """Network inputs (float32) for the jets: [constituents, mask] or [jet]."""
    p = F.padded_constituents(jets, cfg.n_max)
    if cfg.model == "pfn":
        x = F.constituent_features(np, cfg.features, p["pt"], p["eta"], p["phi"], p["energy"],
                                   p.get("charge"), p["mask"])
        return [x.astype(np.float32), p["mask"].astype(np.float32)]
    x = F.jet_features(np, cfg.features, p["pt"], p["eta"], p["phi"], p["energy"], p["mask"])
    return [x.astype(np.float32)]


def _standardisation(x: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per feature (over real constituents), float64."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    if mask is not None:
        flat = flat[mask.reshape(-1) > 0]
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


# --------------------------------------------------------------------------- networks
def _build(cfg: TrainConfig, n_features: int) -> Any:
    import torch
    from torch import nn

    def mlp(sizes: Sequence[int]) -> nn.ModuleList:
        return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    class PFN(nn.Module):
        """Particle-flow network: phi (per particle), masked sum, F, linear -> logit."""

        def __init__(self) -> None:
            super().__init__()
            self.phi = mlp([n_features, *cfg.phi_sizes])
            self.f = mlp([cfg.phi_sizes[-1], *cfg.hidden])
            self.out = nn.Linear(cfg.hidden[-1], len(cfg.classes) if cfg.multiclass else 1)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            h = x
            for layer in self.phi:
                h = torch.relu(layer(h))
            latent = (h * mask.unsqueeze(-1)).sum(dim=1)
            g = latent
            for layer in self.f:
                g = torch.relu(layer(g))
            out = self.out(g)
            return (out if cfg.multiclass else out.squeeze(-1)), latent

    class HL(nn.Module):
        """MLP on jet features -> logit."""

        def __init__(self) -> None:
            super().__init__()
            self.f = mlp([n_features, *cfg.hidden])
            self.out = nn.Linear(cfg.hidden[-1], 1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            g = x
            for layer in self.f:
                g = torch.relu(layer(g))
            return (self.out(g).squeeze(-1),)

    return PFN() if cfg.model == "pfn" else HL()


def _fit(net: Any, xs: list[np.ndarray], y: np.ndarray, cfg: TrainConfig,
         log: Callable[[str], None], attack: Any = None,
         on_epoch: Callable[[int], None] | None = None) -> list[float]:
    """Adam, linear warm-up then cosine decay, on binary cross-entropy (softmax
    cross-entropy for more than two classes; ``y`` then holds class indices); loss per
    epoch. ``attack``: an :class:`~hepsafe.tagger.adversarial.InTrainingAttack` that
    replaces a fraction of each batch's jets by attacked copies (adversarial training);
    ``on_epoch(k)`` is called after epoch k (1-based), the network in eval mode."""
    import torch

    tx = [torch.from_numpy(np.ascontiguousarray(a)) for a in xs]
    ty = torch.from_numpy(y.astype(np.int64) if cfg.multiclass else y.astype(np.float32))
    n = len(ty)
    steps = max(1, cfg.epochs * math.ceil(n / cfg.batch_size))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * s / steps))
    )
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    lossf = torch.nn.CrossEntropyLoss() if cfg.multiclass else torch.nn.BCEWithLogitsLoss()
    history = []
    net.train()
    batch_no = 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            inputs = [a[idx] for a in tx]
            if attack is not None:
                inputs[0] = attack.mix(net, idx, inputs[0], ty[idx], batch_no)
            batch_no += 1
            logit = net(*inputs)[0]
            loss = lossf(logit, ty[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / n)
        log(f"  {cfg.model} epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]:.4f} "
            f"({time.perf_counter() - t0:.1f} s)")
        if on_epoch is not None and epoch + 1 < cfg.epochs:
            net.eval()
            on_epoch(epoch + 1)
            net.train()
    net.eval()
    return history


# --------------------------------------------------------------------------- ONNX export
def _linear_params(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    return (layer.weight.detach().numpy().astype(np.float64),
            layer.bias.detach().numpy().astype(np.float64))


def _fold(w: np.ndarray, b: np.ndarray, mean: np.ndarray, std: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """First layer applied to (x - mean) / std, rewritten as a layer on raw x."""
    w2 = w / std[None, :]
    return w2, b - w2 @ mean


def _to_onnx(net: Any, cfg: TrainConfig, mean: np.ndarray, std: np.ndarray) -> Any:
    """The trained network as an ``onnx.ModelProto`` (standardisation folded in)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, a: npt.ArrayLike, dtype: Any = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(a, dtype=dtype), name))
        return name

    def dense(x: str, w: np.ndarray, b: np.ndarray, name: str, relu: bool) -> str:
        wt = const(f"{name}.weight_t", w.T)
        bb = const(f"{name}.bias", b)
        nodes.append(helper.make_node("Gemm", [x, wt, bb], [f"{name}.y"], name=f"{name}"))
        y = f"{name}.y"
        if relu:
            nodes.append(helper.make_node("Relu", [y], [f"{name}.relu"], name=f"{name}.relu"))
            y = f"{name}.relu"
        return y

    k = len(cfg.features)
    if cfg.model == "pfn":
        inputs = [
            helper.make_tensor_value_info("constituents", TensorProto.FLOAT, ["n", cfg.n_max, k]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["n", cfg.n_max]),
        ]
        # the per-particle MLP runs on (n * n_max, k) rows: Gemm + Relu fuse in ONNX Runtime
        nodes.append(helper.make_node("Reshape", ["constituents", const("rows", [-1, k], np.int64)],
                                      ["particles"], name="to_rows"))
        h = "particles"
        for i, layer in enumerate(net.phi):
            w, b = _linear_params(layer)
            if i == 0:
                w, b = _fold(w, b, mean, std)
            h = dense(h, w, b, f"phi{i}", relu=True)
        shape = const("per_jet", [-1, cfg.n_max, cfg.phi_sizes[-1]], np.int64)
        nodes.append(helper.make_node("Reshape", [h, shape], ["phi_out"], name="to_jets"))
        h = "phi_out"
        nodes.append(helper.make_node("Unsqueeze", ["mask", const("axes_last", [2], np.int64)],
                                      ["mask3"], name="mask_unsqueeze"))
        nodes.append(helper.make_node("Mul", [h, "mask3"], ["phi_masked"], name="mask_mul"))
        nodes.append(helper.make_node("ReduceSum", ["phi_masked", const("axes_1", [1], np.int64)],
                                      ["latent"], keepdims=0, name="pool"))
        g = "latent"
        rest = list(net.f)
    else:
        inputs = [helper.make_tensor_value_info("jet", TensorProto.FLOAT, ["n", k])]
        g = "jet"
        rest = list(net.f)
    for i, layer in enumerate(rest):
        w, b = _linear_params(layer)
        if i == 0 and cfg.model == "hl":
            w, b = _fold(w, b, mean, std)
        g = dense(g, w, b, f"f{i}", relu=True)
    w, b = _linear_params(net.out)
    g = dense(g, w, b, "out", relu=False)
    if cfg.multiclass:
        nodes.append(helper.make_node("Identity", [g], ["logits"], name="logits"))
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                 ["n", len(cfg.classes)])]
    else:
        nodes.append(helper.make_node("Squeeze", [g, const("axes_sq", [1], np.int64)],
                                      ["logit"], name="squeeze"))
        outputs = [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["n"])]
    if cfg.model == "pfn":
        outputs.append(helper.make_tensor_value_info("latent", TensorProto.FLOAT,
                                                     ["n", cfg.phi_sizes[-1]]))
    graph = helper.make_graph(nodes, f"hepsafe_{cfg.model}", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="hepsafe", ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _check_export(model: Any, net: Any, xs: list[np.ndarray]) -> float:
    """Max |ONNX Runtime - torch| of the logit on a few jets; raises ModelError if > 1e-4."""
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    sub = [a[:64] for a in xs]
    ort_logit = sess.run([sess.get_outputs()[0].name], dict(zip(names, sub, strict=True)))[0]
    with torch.no_grad():
        ref = net(*(torch.from_numpy(a) for a in sub))[0].numpy()
    diff = float(np.max(np.abs(ort_logit - ref))) if len(ref) else 0.0
    if not diff <= 1e-4 * max(1.0, float(np.max(np.abs(ref)))):
        raise ModelError(f"exported ONNX graph disagrees with the trained network by {diff}")
    return diff


# --------------------------------------------------------------------------- the card
def _card(cfg: TrainConfig, model_path: Path, model: Any, n_train: int, n_test: int,
          command: str | None) -> dict[str, Any]:
    dcard = datasets.sample_card()
    n_params = sum(int(np.prod(i.dims)) for i in model.graph.initializer
                   if i.data_type == 1)
    names = [CLASS_NAMES[c] for c in cfg.classes]
    head = (f"linear -> logits over {' / '.join(names)}" if cfg.multiclass
            else "linear -> signal logit")
    if cfg.model == "pfn":
        arch = (f"particle-flow network: per-particle MLP {list(cfg.phi_sizes)} (ReLU), masked "
                f"sum, MLP {list(cfg.hidden)} (ReLU), {head}")
        inputs = [
            {"name": "constituents", "kind": "constituent", "features": list(cfg.features),
             "n_max": cfg.n_max, "ordering": "pt_desc", "dtype": "float32", "mask": "mask",
             "description": "per-constituent features, padding rows 0"},
            {"name": "mask", "kind": "mask", "n_max": cfg.n_max, "ordering": "pt_desc",
             "dtype": "float32", "description": "1 for a real constituent, 0 for padding"},
        ]
    else:
        arch = f"MLP {list(cfg.hidden)} (ReLU) on jet features, linear -> signal logit"
        inputs = [
            {"name": "jet", "kind": "jet", "features": list(cfg.features), "n_max": cfg.n_max,
             "ordering": "pt_desc", "dtype": "float32",
             "description": "jet features computed from the constituents"},
        ]
    card: dict[str, Any] = {
        "format": "hepsafe-tagger/1",
        "name": model_path.stem,
        "description": (
            (f"{' / '.join(names)} classifier" if cfg.multiclass else "W vs QCD reference tagger")
            + f" ({arch}); feature standardisation folded into the first layer"
            + ("; trained on mass-decorrelated data (every class resampled to the classes' "
               "common jet-mass distribution)" if cfg.mass_decorrelation else "")),
        "model": {"file": model_path.name, "sha256": sha256sum(model_path), "opset": OPSET,
                  "architecture": arch, "n_parameters": n_params},
        "inputs": inputs,
        "output": (
            {"name": "logits", "activation": "logits", "classes": names, "signal": "W",
             "description": f"class logits ({', '.join(names)}); score = softmax p(W)"}
            if cfg.multiclass else
            {"name": "logit", "activation": "logit", "classes": ["QCD", "W"],
             "signal": "W", "description": "log-odds of W vs QCD; score = sigmoid(logit)"}),
        "training": {
            "dataset": {"name": dcard.get("name", "sample"), "sha256": dcard["sha256"],
                        "card_sha256": sha256sum(datasets.SAMPLE_CARD), "split": "train",
                        "classes": ({"signal": CLASS_NAMES[SIGNAL],
                                     "background": CLASS_NAMES[BACKGROUND]}
                                    if not cfg.multiclass else
                                    {"signal": CLASS_NAMES[SIGNAL], "all": names}),
                        "n_train": n_train, "n_test": n_test},
            "seed": cfg.seed,
            "epochs": cfg.epochs,
            "test_auc": 0.0,
            "command": command,
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(cfg).items()},
            "loss": ("softmax" if cfg.multiclass else "binary")
                    + " cross-entropy, Adam, warm-up + cosine learning rate"
                    + ("" if cfg.adversarial is None else
                       f"; adversarial training ({cfg.adversarial}, epsilon {cfg.adv_epsilon},"
                       f" fraction {cfg.adv_fraction} of each batch attacked)"),
            "versions": package_versions(("hepsafe", "torch", "onnx", "onnxruntime", "numpy")),
            "platform": f"{platform.system()} {platform.machine()}",
        },
        "license": "CC-BY-4.0",
    }
    if cfg.adversarial is not None:
        from hepsafe.tagger.adversarial import AdversarialSettings

        card["training"]["adversarial"] = AdversarialSettings.of(
            cfg.adversarial, cfg.adv_epsilon, cfg.adv_fraction, cfg.adv_steps).record()
        if cfg.adversarial == "learned":
            from hepsafe.perturbation.shifts import ADVERSARY_MODEL

            card["training"]["adversarial"]["adversary"] = {
                "file": ADVERSARY_MODEL.name, "sha256": sha256sum(ADVERSARY_MODEL)}
        card["description"] += (f"; adversarially trained ({cfg.adversarial}, epsilon "
                                f"{cfg.adv_epsilon})")
    if cfg.model == "pfn":
        card["representation"] = {"name": "latent", "dim": cfg.phi_sizes[-1],
                                  "description": "masked sum of the per-particle MLP outputs"}
    return card


# --------------------------------------------------------------------------- entry points
@dataclass(frozen=True)
class TrainResult:
    """Where a tagger was written, its card, test-split AUC and rejection at eps_S = 50 %."""

    model_path: Path
    card: dict[str, Any]
    test_auc: float
    rejection_at_50: float
    seconds: float
    #: the networks exported after earlier epochs (``train(checkpoints=...)``), by epoch
    checkpoints: dict[int, TrainResult] = field(default_factory=dict)


def train(
    cfg: TrainConfig,
    output: str | os.PathLike[str],
    train_jets: JetBatch | None = None,
    test_jets: JetBatch | None = None,
    command: str | None = None,
    log: Callable[[str], None] = lambda s: None,
    checkpoints: Sequence[int] = (),
) -> TrainResult:
    """Train one tagger, write ``output`` (``.onnx``) and its card, score the test split.

    ``train_jets``/``test_jets`` default to the shipped sample's splits; only W and QCD jets
    are used. Deterministic for a given config, data and platform. ``checkpoints``: epochs
    (1 .. ``cfg.epochs - 1``) after which the network is also exported, as
    ``<output stem>_epoch<k>.onnx`` + card (the same run, its learning-rate schedule that of
    ``cfg.epochs``); their results are in :attr:`TrainResult.checkpoints`.
    """
    import torch

    t0 = time.perf_counter()
    out = Path(output)
    if out.suffix != ".onnx":
        raise ConfigError(f"option 'output': {out} must end in .onnx")
    bad = [k for k in checkpoints if not (isinstance(k, int) and 1 <= k < cfg.epochs)]
    if bad:
        raise ConfigError(f"option 'checkpoints': epochs in 1..{cfg.epochs - 1}, got {bad}")
    test = _w_vs_qcd(datasets.load_sample("test") if test_jets is None else test_jets,
                     cfg.max_test_jets)
    saved: dict[int, TrainResult] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        jets = _w_vs_qcd(datasets.load_sample("train") if train_jets is None else train_jets,
                         cfg.max_train_jets, cfg.classes)
        if cfg.mass_decorrelation:
            jets = mass_decorrelated(jets, cfg.seed)
        if cfg.multiclass:
            order = np.argsort(cfg.classes)
            pos = np.searchsorted(np.asarray(cfg.classes)[order], jets.label)
            y = order[pos].astype(np.float32)  # the index of each jet's label in classes
        else:
            y = (jets.label == SIGNAL).astype(np.float32)
        if len(np.unique(y)) < len(cfg.classes):
            raise ConfigError(f"training needs jets of every class {list(cfg.classes)} "
                              f"(labels present: {sorted(set(jets.label.tolist()))})")
        xs = _arrays(jets, cfg)
        mean, std = _standardisation(xs[0], xs[1] if cfg.model == "pfn" else None)
        # the network trains on standardised features; padding rows are masked after phi
        xs_std = [((xs[0] - mean) / std).astype(np.float32), *xs[1:]]
        net = _build(cfg, xs[0].shape[-1])
        log(f"training {cfg.model}: {len(jets)} jets, {cfg.epochs} epochs, "
            f"{sum(p.numel() for p in net.parameters())} parameters"
            + ("" if cfg.adversarial is None else f", adversarial {cfg.adversarial}"))

        def export(path: Path, epochs_done: int) -> TrainResult:
            model = _to_onnx(net, cfg, mean, std)
            # the exported graph takes raw features (standardisation folded in)
            diff = _check_export(model, _Raw(net, mean, std, cfg.model), xs)
            log(f"  ONNX export agrees with torch to {diff:.2e}")
            return _write(model, cfg, path, len(jets), test, command, epochs_done, t0, log)

        def on_epoch(epoch: int) -> None:
            if epoch in checkpoints:
                saved[epoch] = export(out.with_name(f"{out.stem}_epoch{epoch}.onnx"), epoch)

        _fit(net, xs_std, y, cfg, log, _attack(jets, cfg, mean, std), on_epoch)
        result = export(out, cfg.epochs)
    finally:
        torch.set_num_threads(threads)
    return replace(result, checkpoints=saved)


def _write(model: Any, cfg: TrainConfig, out: Path, n_train: int, test: JetBatch,
           command: str | None, epochs_done: int, t0: float,
           log: Callable[[str], None]) -> TrainResult:
    """Write the ONNX file and its card, score the test split."""
    from hepsafe import metrics
    from hepsafe.tagger.onnx import OnnxTagger

    with atomic_path(out) as tmp:
        tmp.write_bytes(model.SerializeToString())
    card = _card(cfg, out, model, n_train, len(test), command)
    if epochs_done != cfg.epochs:
        card["training"]["epochs"] = epochs_done
        card["training"]["checkpoint"] = {
            "epochs_trained": epochs_done, "of_epochs": cfg.epochs,
            "note": f"the network after epoch {epochs_done} of a {cfg.epochs}-epoch run "
                    "(learning-rate schedule of the full run)"}
    scores = OnnxTagger(out, card=card, providers="cpu").predict(test)
    sig, bkg = scores[test.label == SIGNAL], scores[test.label == BACKGROUND]
    auc = metrics.roc_auc(sig, bkg)
    rej = metrics.rejection_at_efficiency(sig, bkg, 0.5)
    card["training"]["test_auc"] = round(auc, 6)
    card["training"]["test_rejection_at_50"] = round(rej, 4) if math.isfinite(rej) else 1e9
    write_json(out.with_suffix(".json"), card)
    seconds = time.perf_counter() - t0
    log(f"{out.stem}: test AUC {auc:.4f}, rejection at eps_S=0.5 {rej:.1f} ({seconds:.0f} s)")
    return TrainResult(out, card, auc, rej, seconds)


def _attack(jets: JetBatch, cfg: TrainConfig, mean: np.ndarray, std: np.ndarray) -> Any:
    """The in-training attack of an adversarial training (None without one)."""
    if cfg.adversarial is None:
        return None
    from hepsafe.tagger import adversarial as adv

    settings = adv.AdversarialSettings.of(cfg.adversarial, cfg.adv_epsilon, cfg.adv_fraction,
                                          cfg.adv_steps)
    padded = F.padded_constituents(jets, cfg.n_max)
    learned = (adv.learned_deltas(padded, cfg.adv_epsilon) if cfg.adversarial == "learned"
               else None)
    return adv.InTrainingAttack(padded, cfg.features, mean, std, settings, cfg.multiclass,
                                cfg.seed, learned)


class _Raw:
    """The torch net applied to raw (unstandardised) inputs, to check the ONNX export."""

    def __init__(self, net: Any, mean: np.ndarray, std: np.ndarray, model: str) -> None:
        self.net, self.mean, self.std, self.model = net, mean, std, model

    def __call__(self, *xs: Any) -> Any:
        import torch

        x = (xs[0] - torch.from_numpy(self.mean)) / torch.from_numpy(self.std)
        x = x.to(torch.float32)
        if self.model == "pfn":
            return self.net(x, xs[1])
        return self.net(x)


def train_reference(
    output_dir: str | os.PathLike[str],
    models: Sequence[str] = MODELS,
    tiny: bool = False,
    command: str | None = None,
    log: Callable[[str], None] = lambda s: None,
    checkpoints: Sequence[int] = (),
    **changes: Any,
) -> dict[str, TrainResult]:
    """Train the reference taggers into ``output_dir`` (``<model>.onnx`` + ``.json``; an
    adversarial training, ``adversarial="pgd"`` in ``changes``, writes
    ``<model>_adv_<attack>.onnx``); ``checkpoints``: epochs after which each network is
    also exported (:func:`train`)."""
    out = Path(output_dir)
    full = datasets.load_sample()
    is_test = datasets.is_test(full.event)
    train_jets, test_jets = full[~is_test], full[is_test]
    res = {}
    for m in models:
        cfg = default_config(m, tiny=tiny, **changes)
        name = m if cfg.adversarial is None else f"{m}_adv_{cfg.adversarial}"
        res[m] = train(cfg, out / f"{name}.onnx", train_jets, test_jets, command=command,
                       log=log, checkpoints=checkpoints)
    return res
