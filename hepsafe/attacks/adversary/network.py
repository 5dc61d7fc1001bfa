"""The learned adversary's network and settings: :class:`LearnedConfig`, the deep-set torch
module, its weights, and the training gate's configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hepsafe.attacks.adversary.graph import (
    DEFAULT_FEATURES,
)
from hepsafe.exceptions import ConfigError, ModelError
from hepsafe.tagger import features as F
from hepsafe.validation.config import GateConfig, Limits

#: variables of the training gate: jet pT, jet mass and the background score
GATE_VARIABLES = ("jet_pt", "jet_mass", "score")
_MASS_FLOOR = 1.0  # GeV, floor of the relative jet-mass difference


def default_gate_config() -> GateConfig:
    """The training gate: KS(jet pT) <= 0.04, KS(jet mass) <= 0.04, KS(score) <= 0.02.

    Only the KS statistics are gated (the JSD and the correlation change are reported in the
    :class:`~hepsafe.validation.checks.GateReport` without a limit).
    """
    return GateConfig(
        defaults=Limits(ks_max=0.04, jsd_max=None),
        overrides={"score": {"ks_max": 0.02}},
        corr_frobenius_max=None,
        variables=GATE_VARIABLES,
    )


@dataclass(frozen=True)
class LearnedConfig:
    """Network and training settings of a :class:`LearnedAdversary`.

    Network: ``features`` g sees (names of :data:`hepsafe.tagger.features.CONSTITUENT_FEATURES`),
    ``n_max`` padding length (None: the tagger's), ``phi_sizes`` per-constituent MLP widths,
    ``head_sizes`` head MLP widths. Loss: ``lambda_cls``, ``lambda_pt``, ``lambda_mass``
    (module docstring), ``bg_score`` "probability" (the background term on f, as in Shimmin
    & Nachman) or "logit", ``observables_on`` "all" or "background" (the jets the jet
    pT/mass terms run over). Training: ``epochs`` (the most), ``batch_size`` jets per step,
    ``lr`` Adam learning rate, ``seed``, ``threads`` (torch intra-op threads, part of
    reproducibility), ``holdout_fraction`` of the signal and background jets kept apart for
    the selection gate (it picks the stopping epoch), ``report_fraction`` kept apart for the
    reported gate (disjoint from it), ``max_train_jets`` (thin evenly to at most this many,
    None: all), ``signal_labels``/``background_labels`` (jet labels), ``stop_on_gate``
    (False: train all epochs, still recording the gate), ``lambda_scan`` (values of
    ``lambda_cls``: one training each, each stopped at the gate boundary, the strongest on
    the selection hold-out kept; empty: ``lambda_cls`` alone).
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    n_max: int | None = None
    phi_sizes: tuple[int, ...] = (32, 32)
    head_sizes: tuple[int, ...] = (32,)
    lambda_cls: float = 10.0
    lambda_pt: float = 1000.0
    lambda_mass: float = 1000.0
    bg_score: str = "probability"
    observables_on: str = "all"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 5e-3
    seed: int = 0
    threads: int = 2
    holdout_fraction: float = 0.2
    report_fraction: float = 0.2
    max_train_jets: int | None = None
    signal_labels: tuple[int, ...] = (1,)
    background_labels: tuple[int, ...] = (0,)
    stop_on_gate: bool = True
    lambda_scan: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambda_scan", tuple(self.lambda_scan))
        bad_scan = [v for v in self.lambda_scan if isinstance(v, bool)
                    or not isinstance(v, int | float) or not math.isfinite(v) or v < 0]
        if bad_scan:
            raise ConfigError(f"option 'lambda_scan': values must be finite numbers >= 0, got "
                              f"{bad_scan}")
        for name in ("features", "phi_sizes", "head_sizes", "signal_labels",
                     "background_labels"):
            v = getattr(self, name)
            if isinstance(v, str) or not isinstance(v, Sequence) or not len(v):
                raise ConfigError(f"option '{name}' must be a non-empty sequence, got {v!r}")
            object.__setattr__(self, name, tuple(v))
        bad = [f for f in self.features if f not in F.CONSTITUENT_FEATURES]
        if bad:
            raise ConfigError(f"option 'features': unknown constituent feature(s) {bad}; known: "
                              f"{list(F.CONSTITUENT_FEATURES)}")
        for name in ("phi_sizes", "head_sizes"):
            if any(int(s) < 1 for s in getattr(self, name)):
                raise ConfigError(f"option '{name}': widths must be >= 1, got "
                                  f"{getattr(self, name)}")
        overlap = set(self.signal_labels) & set(self.background_labels)
        if overlap:
            raise ConfigError(f"options 'signal_labels' and 'background_labels' share {overlap}")
        for name in ("epochs", "batch_size", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ConfigError(f"option '{name}' must be an int >= "
                                  f"{0 if name == 'epochs' else 1}, got {v!r}")
        if self.n_max is not None and self.n_max < 1:
            raise ConfigError(f"option 'n_max' must be >= 1 or None, got {self.n_max}")
        if self.max_train_jets is not None and self.max_train_jets < 2:
            raise ConfigError(f"option 'max_train_jets' must be >= 2 or None, got "
                              f"{self.max_train_jets}")
        for name in ("lambda_cls", "lambda_pt", "lambda_mass"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"option '{name}' must be a finite number >= 0, got {v!r}")
        if self.bg_score not in ("logit", "probability"):
            raise ConfigError(f"option 'bg_score' must be 'logit' or 'probability', got "
                              f"{self.bg_score!r}")
        if self.observables_on not in ("background", "all"):
            raise ConfigError(f"option 'observables_on' must be 'background' or 'all', got "
                              f"{self.observables_on!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError(f"option 'lr' must be > 0, got {self.lr!r}")
        for name in ("holdout_fraction", "report_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 < v < 1.0):
                raise ConfigError(f"option '{name}' must be in (0, 1), got {v!r}")
        if not self.holdout_fraction + self.report_fraction < 1.0:
            raise ConfigError(f"options 'holdout_fraction' + 'report_fraction' must be < 1 (the "
                              f"rest trains), got {self.holdout_fraction} + "
                              f"{self.report_fraction}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class _Padded:
    """Padded tensors of a set of jets for training: g's inputs and the nominal kinematics."""

    features: Any  # float32 (n, m, k)
    mask_f: Any  # float32 (n, m)
    bound: Any  # float32 (n, m, 3)
    mask: Any  # bool (n, m)
    pt: Any  # float64 (n, m)
    eta: Any
    phi: Any
    m2: Any  # constituent mass squared, float64 (n, m)
    charge: Any  # float32 (n, m)
    jet_pt: Any = None  # float64 (n,)
    jet_mass: Any = None
    score0: Any = None  # nominal logit, float32 (n,)
    is_signal: Any = None  # bool (n,)

    def take(self, idx: Any) -> _Padded:
        """The rows ``idx`` (a slice, an index or a boolean tensor)."""
        return _Padded(**{k: (None if v is None else v[idx]) for k, v in self.__dict__.items()})


def _build_network(n_features: int, cfg: LearnedConfig) -> Any:
    """The deep-set network g as a torch module (float32); last layer zero (g = identity)."""
    import torch
    from torch import nn

    class DeepSetAdversary(nn.Module):
        """features (n, m, k), mask (n, m), bound (n, m, 3) -> delta (n, m, 3)."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.zeros(n_features))
            self.register_buffer("scale", torch.ones(n_features))
            sizes = [n_features, *cfg.phi_sizes]
            self.phi = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:],
                                                                      strict=True))
            h = cfg.phi_sizes[-1]
            self.head_local = nn.Linear(h, cfg.head_sizes[0], bias=False)
            self.head_context = nn.Linear(h, cfg.head_sizes[0])
            hs = list(cfg.head_sizes)
            self.head = nn.ModuleList(nn.Linear(a, b) for a, b in zip(hs[:-1], hs[1:],
                                                                      strict=True))
            self.out = nn.Linear(hs[-1], 3)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, features: Any, mask: Any, bound: Any) -> Any:
            x = (features - self.mean) * self.scale
            h = x
            for layer in self.phi:
                h = torch.relu(layer(h))
            m3 = mask.unsqueeze(-1)
            count = torch.clamp(mask.sum(dim=1, keepdim=True), min=1.0)
            context = (h * m3).sum(dim=1) / count
            a = torch.relu(self.head_local(h) + self.head_context(context).unsqueeze(1))
            for layer in self.head:
                a = torch.relu(layer(a))
            return torch.tanh(self.out(a)) * bound * m3

    return DeepSetAdversary()


def _weights_of(net: Any) -> dict[str, np.ndarray]:
    """The network's weights by graph name (:func:`build_graph`), float32, matrices (in, out)."""

    def t(x: Any) -> np.ndarray:
        return x.detach().cpu().numpy().astype(np.float32)

    out = {"norm.mean": t(net.mean), "norm.scale": t(net.scale)}
    for i, layer in enumerate(net.phi):
        out[f"phi.{i}.weight"], out[f"phi.{i}.bias"] = t(layer.weight).T.copy(), t(layer.bias)
    out["head.0.local"] = t(net.head_local.weight).T.copy()
    out["head.0.context"] = t(net.head_context.weight).T.copy()
    out["head.0.bias"] = t(net.head_context.bias)
    for i, layer in enumerate(net.head, start=1):
        out[f"head.{i}.weight"], out[f"head.{i}.bias"] = t(layer.weight).T.copy(), t(layer.bias)
    out["out.weight"], out["out.bias"] = t(net.out.weight).T.copy(), t(net.out.bias)
    return out


def _load_weights(net: Any, w: Mapping[str, np.ndarray], where: str) -> None:
    import torch

    def put(param: Any, key: str, transpose: bool = False) -> None:
        if key not in w:
            raise ModelError(f"{where}: graph has no weight '{key}'")
        a = torch.as_tensor(np.asarray(w[key], dtype=np.float32))
        a = a.T if transpose else a
        if tuple(a.shape) != tuple(param.shape):
            raise ModelError(f"{where}: weight '{key}' has shape {tuple(a.shape)}, expected "
                             f"{tuple(param.shape)} (card architecture and graph disagree)")
        with torch.no_grad():
            param.copy_(a)

    put(net.mean, "norm.mean")
    put(net.scale, "norm.scale")
    for i, layer in enumerate(net.phi):
        put(layer.weight, f"phi.{i}.weight", True)
        put(layer.bias, f"phi.{i}.bias")
    put(net.head_local.weight, "head.0.local", True)
    put(net.head_context.weight, "head.0.context", True)
    put(net.head_context.bias, "head.0.bias")
    for i, layer in enumerate(net.head, start=1):
        put(layer.weight, f"head.{i}.weight", True)
        put(layer.bias, f"head.{i}.bias")
    put(net.out.weight, "out.weight", True)
    put(net.out.bias, "out.bias")
