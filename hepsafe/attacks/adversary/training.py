"""Learned mismodelling ``g(J)``, after Shimmin & Nachman: a network trained to fool the tagger
while a control-region gate does not notice.

``g`` is a deep set over the constituents (:mod:`hepsafe.attacks.adversary.graph` describes
the network and its ONNX graph): it sees the nominal jet and returns per-constituent
deltas ``tanh(head) * bound``, inside the envelope by construction. It is trained against
the tagger ``f`` (differentiable through :meth:`~hepsafe.tagger.onnx.OnnxTagger.score_torch`) on
the loss, per batch,

    L = mean_signal L_sig + lambda_cls mean_background (s(J) - s(g(J)))^2
        + mean_{jets} [lambda_pt dpT^2 + lambda_mass dm^2],
    L_sig = -log(1 - f(g(J)))   for target "down" (minimising it lowers the signal score),
    L_sig = -log f(g(J))        for target "up" (the mirror),
    dpT = (pT(g(J)) - pT(J)) / pT(J),  dm = (m(g(J)) - m(J)) / max(m(J), 1 GeV),

with ``f`` the signal probability and ``s`` the score the background term holds fixed
(``bg_score``: the logit by default, which weighs the whole background distribution as
the gate's KS test does, or the probability ``f``, which weighs only its signal-like tail).
Jet pT and mass [GeV] are summed from the perturbed padded constituents
(:func:`hepsafe.tagger.features.jet_features`, differentiable; constituent energies at fixed
constituent mass). The observable terms run over the background jets only
(``observables_on="background"``, the original formulation) or over every jet (``"all"``,
the default): at use the kernels restore the preserved jet pT and mass anyway, so a delta
that changes them on signal jets is undone; penalising it teaches ``g`` deltas that survive
the restoration. The learning rate decays as a cosine over the epochs.

After every epoch the adversary is applied to a held-out set (projected through the
kernels, as at use) and the control-region gate compares its background with the nominal
one (the held-out jets through the kernels at zero delta: the kernels recompute constituent
energies and jet observables from the constituents, which alone moves a few jets and, KS
being sensitive to any change of a paired sample, would count against ``g``). Training
stops at the first failing gate and keeps the last state that passed (the initial state is
the identity: the last layer starts at zero). Seeded, and deterministic for a given
platform and thread count.

"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from hepsafe import metrics
from hepsafe._files import atomic_path, sha256sum, write_json
from hepsafe.attacks.adversary.card import adversary_card
from hepsafe.attacks.adversary.graph import (
    INPUT_NAMES,
    OUTPUT_NAME,
    AdversaryNetwork,
    adversary_inputs,
    build_graph,
    graph_weights,
    load_adversary_card,
    probe_inputs,
)
from hepsafe.attacks.adversary.network import (
    _MASS_FLOOR,
    LearnedConfig,
    _build_network,
    _load_weights,
    _Padded,
    _weights_of,
    default_gate_config,
)
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError, InputError, ModelError
from hepsafe.models import model_path
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturber
from hepsafe.tagger import features as F
from hepsafe.tagger.card import card_path
from hepsafe.tagger.onnx import OnnxTagger
from hepsafe.validation.checks import gate
from hepsafe.validation.config import GateConfig
from hepsafe.validation.report import GateReport


class LearnedAdversary(AdversaryNetwork):
    """The learned mismodelling network ``g(J)`` against ``tagger`` inside ``envelope``.

    ``LearnedAdversary(tagger, envelope).fit(train_jets, target="down")`` trains it (module
    docstring); calling it, ``adv(jets, "down") -> Perturbation``, applies ``g`` in one
    forward pass per batch of ``batch_size`` jets and projects the result through the
    kernels (the envelope and the ``preserve`` observables hold exactly, as for every
    attack). :meth:`export` writes the ONNX graph and its card; :meth:`load` reads them back
    (:class:`~hepsafe.attacks.adversary.graph.OnnxAdversary` applies the graph without torch).
    After :meth:`fit`, :attr:`history` holds one dict per epoch (0: the initial identity;
    loss terms, KS values of the gate, held-out signal efficiency at its nominal 50 %
    working point), :attr:`gate_report` the gate of the kept state on the held-out
    background and :attr:`record` a summary (epochs run and kept, sizes, seconds).
    ``seed``, when given, replaces ``config.seed``; ``gate_config`` defaults to
    :func:`default_gate_config`.
    """

    name = "learned"

    def __init__(
        self,
        tagger: OnnxTagger,
        envelope: Envelope | None = None,
        config: LearnedConfig | None = None,
        preserve: Sequence[str] = ("pt", "mass"),
        batch_size: int = 512,
        gate_config: GateConfig | None = None,
        seed: int | None = None,
    ) -> None:
        cfg = config if config is not None else LearnedConfig()
        if not isinstance(cfg, LearnedConfig):
            raise ConfigError(f"option 'config' must be a LearnedConfig, got {type(cfg).__name__}")
        if seed is not None:
            cfg = replace(cfg, seed=int(seed))
        super().__init__(tagger, envelope, preserve, batch_size, cfg.seed)
        self.config = cfg
        self.gate_config = gate_config if gate_config is not None else default_gate_config()
        self.n_max = int(cfg.n_max if cfg.n_max is not None else tagger.n_max)
        self.features = tuple(cfg.features)
        self.net: Any = None
        self.direction: float | None = None
        self.history: list[dict[str, Any]] = []
        self.gate_report: GateReport | None = None
        self.record: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = ("untrained" if self.direction is None else
                 f"target '{'down' if self.direction < 0 else 'up'}'")
        return f"LearnedAdversary(tagger '{self.tagger.name}', {state}, n_max {self.n_max})"

    def details(self) -> dict[str, Any]:
        return {**super().details(), "config": self.config.to_dict()}

    # ------------------------------------------------------------------ application
    def padded_delta(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        if self.net is None:
            raise ConfigError("LearnedAdversary: no trained network (call fit() or load())")
        with torch.no_grad():
            t = [torch.from_numpy(np.ascontiguousarray(inputs[k], dtype=np.float32))
                 for k in INPUT_NAMES]
            return self.net(*t).numpy()

    # ------------------------------------------------------------------ training data
    def _prepare(self, jets: JetBatch, signal: np.ndarray, with_targets: bool) -> _Padded:
        """Padded tensors of ``jets`` (g inputs, nominal kinematics, nominal score)."""
        import torch

        inputs, _ = adversary_inputs(jets, self.n_max, self.features, self.envelope)
        p = F.padded_constituents(jets, self.n_max)
        d = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in p.items()
             if k != "mask"}
        mask = torch.as_tensor(p["mask"])
        mom = d["pt"] * torch.cosh(d["eta"])
        out = _Padded(
            features=torch.from_numpy(inputs["features"]),
            mask_f=torch.from_numpy(inputs["mask"]),
            bound=torch.from_numpy(inputs["bound"]),
            mask=mask, pt=d["pt"], eta=d["eta"], phi=d["phi"],
            m2=torch.clamp(d["energy"] ** 2 - mom**2, min=0.0),
            charge=(d["charge"] if "charge" in d else torch.zeros_like(d["pt"])).float(),
            is_signal=torch.as_tensor(signal),
        )
        if with_targets:
            zero = torch.zeros((len(jets), self.n_max, 3), dtype=torch.float32)
            with torch.no_grad():
                chunks = []
                for s in range(0, len(jets), 1024):
                    sl = slice(s, s + 1024)
                    sub = out.take(sl)
                    chunks.append(self._score(sub, zero[sl]))
                out.score0 = torch.cat(chunks)
                obs = self._observables(out, zero)
            out.jet_pt, out.jet_mass = obs
        return out

    @staticmethod
    def _perturbed(p: _Padded, d: Any) -> dict[str, Any]:
        """Perturbed padded constituents (torch) for a padded delta ``(n, m, 3)``: pT scaled,
        eta shifted, phi shifted and wrapped, energy at fixed constituent mass; float64."""
        import torch

        d = d.double()
        pt = p.pt * (1.0 + d[..., 0])
        eta = p.eta + d[..., 1]
        phi = torch.remainder(p.phi + d[..., 2] + torch.pi, 2 * torch.pi) - torch.pi
        energy = torch.sqrt((pt * torch.cosh(eta)) ** 2 + p.m2 + 1e-30)
        zero = torch.zeros_like(pt)
        return {k: torch.where(p.mask, v, zero)
                for k, v in (("pt", pt), ("eta", eta), ("phi", phi), ("energy", energy))}

    def _score(self, p: _Padded, d: Any) -> Any:
        """Signal logit per jet ``(n,)`` of the tagger on the perturbed constituents."""
        q = {k: v.float() for k, v in self._perturbed(p, d).items()}
        q["mask"] = p.mask
        q["charge"] = p.charge
        return self.tagger.score_torch(q, kind="logit")

    def _observables(self, p: _Padded, d: Any) -> tuple[Any, Any]:
        """Jet pT and mass [GeV], float64 ``(n,)``, summed from the perturbed constituents."""
        q = self._perturbed(p, d)
        x = F.jet_features(None, ("pt", "mass"), q["pt"], q["eta"], q["phi"], q["energy"],
                           p.mask)
        return x[:, 0], x[:, 1]

    def _loss(self, p: _Padded, direction: float) -> tuple[Any, float, float]:
        """(loss, its signal term, its constraint terms) on a batch."""
        import torch
        import torch.nn.functional as tnf

        cfg = self.config
        d = self.net(p.features, p.mask_f, p.bound)
        logit = self._score(p, d)
        sig, bkg = p.is_signal, ~p.is_signal
        zero = logit.sum() * 0.0
        # L_sig = -log(1 - f) for "down", -log f for "up": softplus(-direction * logit)
        l_sig = tnf.softplus(-direction * logit[sig]).mean() if bool(sig.any()) else zero
        if bool(bkg.any()):
            if cfg.bg_score == "logit":
                ds = logit[bkg] - p.score0[bkg]
            else:
                ds = torch.sigmoid(logit[bkg]) - torch.sigmoid(p.score0[bkg])
            l_bg = cfg.lambda_cls * (ds.double() ** 2).mean()
        else:
            l_bg = zero
        obs = bkg if cfg.observables_on == "background" else torch.ones_like(bkg)
        if bool(obs.any()):
            pt1, m1 = self._observables(p.take(obs), d[obs])
            rel_pt = (pt1 - p.jet_pt[obs]) / torch.clamp(p.jet_pt[obs], min=_MASS_FLOOR)
            rel_m = (m1 - p.jet_mass[obs]) / torch.clamp(p.jet_mass[obs], min=_MASS_FLOOR)
            l_bg = l_bg + cfg.lambda_pt * (rel_pt**2).mean() + cfg.lambda_mass * (rel_m**2).mean()
        loss = l_sig + l_bg
        return loss, float(l_sig.detach()), float(l_bg.detach())

    # ------------------------------------------------------------------ the gate
    def _evaluate(self, holdout: JetBatch, nominal: JetBatch, scores0: np.ndarray,
                  sig: np.ndarray, threshold: float | None) -> tuple[GateReport, float | None]:
        """Gate on the held-out background (``nominal``: the held-out jets through the
        kernels at zero delta, ``scores0`` their scores) and the held-out signal efficiency
        at ``threshold``."""
        direction = cast(float, self.direction)  # set by fit() before it evaluates
        pert = AdversaryNetwork.__call__(self, holdout, "down" if direction < 0 else "up")
        scores1 = self.tagger.predict(pert.jets)
        report = gate(nominal[~sig], pert.jets[~sig], scores0[~sig], scores1[~sig],
                      self.gate_config)
        eff = metrics.efficiency(scores1[sig], threshold) if threshold is not None else None
        return report, eff

    # ------------------------------------------------------------------ fit
    def _split(self, jets: JetBatch, hold_out: bool) -> tuple[JetBatch, JetBatch]:
        """(training jets, held-out jets) of the signal and background labels; the held-out
        part (``holdout_fraction``, seeded) only when ``hold_out``."""
        cfg = self.config
        lab = np.asarray(jets.label)
        use = np.isin(lab, cfg.signal_labels) | np.isin(lab, cfg.background_labels)
        jets = jets[use]
        if cfg.max_train_jets is not None and len(jets) > cfg.max_train_jets:
            jets = jets[:: math.ceil(len(jets) / cfg.max_train_jets)]
        if not hold_out:
            return jets, jets[:0]
        hold = np.random.default_rng([cfg.seed, 7]).random(len(jets)) < cfg.holdout_fraction
        return jets[~hold], jets[hold]

    def fit(
        self,
        train_jets: JetBatch,
        target: str = "down",
        holdout: JetBatch | None = None,
        log: Callable[[str], None] = lambda s: None,
    ) -> LearnedAdversary:
        """Train ``g`` on ``train_jets`` to push the signal score ``target`` ("down", "up" or a
        class of the tagger); returns ``self``.

        Signal and background are the jets with ``config.signal_labels`` and
        ``config.background_labels`` (others are ignored). ``holdout`` (jets with both
        labels, or background only) replaces the part held out of ``train_jets``
        (``holdout_fraction``); all of ``train_jets`` then trains.
        The gate (``gate_config``, default :func:`default_gate_config`) runs on the held-out
        background after every epoch; the last state that passed is kept.
        """
        import torch

        if not isinstance(train_jets, JetBatch):
            raise InputError(f"fit: 'train_jets' must be a JetBatch, got "
                             f"{type(train_jets).__name__}")
        cfg = self.config
        direction = -1.0 if self._direction_of(target) < 0 else 1.0
        train, hold = self._split(train_jets, hold_out=holdout is None)
        if holdout is not None:
            if not isinstance(holdout, JetBatch):
                raise InputError(f"fit: 'holdout' must be a JetBatch, got "
                                 f"{type(holdout).__name__}")
            keep = (np.isin(holdout.label, cfg.signal_labels)
                    | np.isin(holdout.label, cfg.background_labels))
            hold = holdout[keep]
        sig_tr = np.isin(train.label, cfg.signal_labels)
        sig_h = np.isin(hold.label, cfg.signal_labels)
        for what, mask, lab in (("training", sig_tr, "signal"), ("training", ~sig_tr,
                                                                  "background"),
                                ("held-out", ~sig_h, "background")):
            if not mask.any():
                raise InputError(
                    f"fit: no {what} {lab} jets (labels "
                    f"{cfg.signal_labels if lab == 'signal' else cfg.background_labels}; "
                    f"options 'signal_labels'/'background_labels', 'holdout_fraction')")
        if int(train.n_parts.sum()) == 0:
            raise InputError("fit: the training jets have no constituents")

        t0 = time.perf_counter()
        threads = torch.get_num_threads()
        module = self.tagger.as_torch()
        grads = [q.requires_grad for q in module.parameters()]
        torch.set_num_threads(cfg.threads)
        try:
            for q in module.parameters():
                q.requires_grad_(False)
            torch.manual_seed(cfg.seed)
            self.net = _build_network(len(self.features), cfg)
            self.direction = direction
            data = self._prepare(train, sig_tr, with_targets=True)
            real = data.mask.reshape(-1)
            flat = data.features.reshape(-1, data.features.shape[-1])[real].double()
            mean = flat.mean(dim=0) if len(flat) else torch.zeros(flat.shape[1])
            std = flat.std(dim=0, unbiased=False) if len(flat) else torch.ones(flat.shape[1])
            with torch.no_grad():
                self.net.mean.copy_(mean.float())
                self.net.scale.copy_(torch.where(std > 0, 1.0 / std, 1.0).float())
            opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
            n_steps = max(1, cfg.epochs * math.ceil(len(train) / cfg.batch_size))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, n_steps) / n_steps)))
            gen = torch.Generator().manual_seed(cfg.seed + 1)
            # the reference of the gate: the held-out jets through the kernels at zero delta,
            # so that it measures what g does, not the recomputation of jet observables
            nominal = Perturber(hold, self.envelope, self.preserve).apply(None).jets
            scores0 = self.tagger.predict(nominal)
            threshold = (metrics.threshold_at_efficiency(scores0[sig_h], 0.5)
                         if sig_h.any() else None)
            eff0 = (metrics.efficiency(scores0[sig_h], cast(float, threshold)) if sig_h.any()
                    else None)
            report, eff = self._evaluate(hold, nominal, scores0, sig_h, threshold)
            best = copy.deepcopy(self.net.state_dict())
            self.gate_report, kept = report, 0
            self.history = [self._entry(0, math.nan, math.nan, report, eff, t0)]
            log(self._line(self.history[-1], eff0))
            n = len(train)
            for epoch in range(1, cfg.epochs + 1):
                self.net.train()
                perm = torch.randperm(n, generator=gen)
                tot_s = tot_b = 0.0
                steps = 0
                for start in range(0, n, cfg.batch_size):
                    batch = data.take(perm[start : start + cfg.batch_size])
                    loss, ls, lb = self._loss(batch, direction)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    tot_s, tot_b, steps = tot_s + ls, tot_b + lb, steps + 1
                self.net.eval()
                report, eff = self._evaluate(hold, nominal, scores0, sig_h, threshold)
                self.history.append(self._entry(epoch, tot_s / steps, tot_b / steps, report,
                                                 eff, t0))
                log(self._line(self.history[-1], eff0))
                if report.passed:
                    best, kept, self.gate_report = (copy.deepcopy(self.net.state_dict()), epoch,
                                                    report)
                elif cfg.stop_on_gate:
                    break
            if not cfg.stop_on_gate:
                best, kept = copy.deepcopy(self.net.state_dict()), len(self.history) - 1
                self.gate_report = report
            self.net.load_state_dict(best)
            self.net.eval()
        finally:
            torch.set_num_threads(threads)
            for q, g in zip(module.parameters(), grads, strict=True):
                q.requires_grad_(g)
        self.record = {
            "target": "down" if direction < 0 else "up",
            "epochs_run": len(self.history) - 1,
            "epoch_kept": kept,
            "n_train": {"signal": int(sig_tr.sum()), "background": int((~sig_tr).sum())},
            "n_holdout": {"signal": int(sig_h.sum()), "background": int((~sig_h).sum())},
            "holdout_signal_efficiency": {"nominal": eff0,
                                          "attacked": self.history[kept]["signal_efficiency"]},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        return self

    @staticmethod
    def _ks(report: GateReport) -> dict[str, float]:
        return {v.variable: float(v.ks) for v in report.variables}

    def _entry(self, epoch: int, ls: float, lb: float, report: GateReport, eff: float | None,
               t0: float) -> dict[str, Any]:
        return {"epoch": epoch, "loss_signal": ls, "loss_constraints": lb,
                "gate_passed": bool(report.passed), "ks": self._ks(report),
                "signal_efficiency": eff, "seconds": round(time.perf_counter() - t0, 1)}

    @staticmethod
    def _line(e: Mapping[str, Any], eff0: float | None) -> str:
        ks = ", ".join(f"{k} {v:.4f}" for k, v in e["ks"].items())
        eff = "" if e["signal_efficiency"] is None else (
            f"; held-out signal eff {eff0:.3f} -> {e['signal_efficiency']:.3f}")
        return (f"epoch {e['epoch']}: loss signal {e['loss_signal']:.4f}, constraints "
                f"{e['loss_constraints']:.4f}; gate {'pass' if e['gate_passed'] else 'FAIL'} "
                f"(KS {ks}){eff} ({e['seconds']:.0f} s)")

    # ------------------------------------------------------------------ export / load
    def to_onnx(self) -> Any:
        """The trained network as an ``onnx.ModelProto`` (inputs/outputs as documented in
        :mod:`hepsafe.attacks.adversary.graph`)."""
        if self.net is None:
            raise ConfigError("LearnedAdversary: no trained network to export (call fit())")
        return build_graph(_weights_of(self.net), self.n_max, len(self.config.phi_sizes),
                           len(self.config.head_sizes),
                           name=f"hepsafe_adversary_{self.tagger.name}")

    def card(self, model_path: str | os.PathLike[str],
             command: str | None = None) -> dict[str, Any]:
        """The card describing the exported graph at ``model_path`` (format
        ``hepsafe-adversary/1``, :func:`~hepsafe.attacks.adversary.card.adversary_card`)."""
        return adversary_card(self, model_path, command)

    def export(self, path: str | os.PathLike[str], command: str | None = None,
               extra: Mapping[str, Any] | None = None) -> Path:
        """Write the graph to ``path`` (``.onnx``, dynamic batch axis) and its card beside it
        (``.json``), both atomically; checks ONNX Runtime against torch first (1e-5).

        ``command`` (the command that made it) and ``extra`` (more keys) go into the card.
        """
        p = Path(path)
        if p.suffix != ".onnx":
            raise ConfigError(f"option 'path': {p} must end in .onnx")
        model = self.to_onnx()
        self._check_export(model)
        with atomic_path(p) as tmp:
            tmp.write_bytes(model.SerializeToString())
        card = self.card(p, command)
        card.update(extra or {})
        write_json(card_path(p), card)
        return p

    def _check_export(self, model: Any) -> float:
        """Max |ONNX Runtime - torch| of the deltas on random inputs; ModelError if > 1e-5."""
        import onnxruntime as ort

        feed = probe_inputs(self.n_max, len(self.features))
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run([OUTPUT_NAME], feed)[0]
        diff = float(np.max(np.abs(got - self.padded_delta(feed))))
        if not diff <= 1e-5:
            raise ModelError(f"exported adversary disagrees with the torch network by {diff}")
        return diff

    @classmethod
    def load(cls, path: str | os.PathLike[str], tagger: OnnxTagger,
             envelope: Envelope | None = None, batch_size: int = 512) -> LearnedAdversary:
        """A trained adversary from an exported graph and its card (the torch network rebuilt
        from the graph's weights); ``path`` may be a shipped name (``adversary_pfn``).
        ``envelope`` default: the card's."""
        import onnx

        p = model_path(path)
        if not p.exists():
            raise ModelError(f"{p}: no such ONNX file")
        card = load_adversary_card(card_path(p))
        if card["model"].get("sha256") not in (None, sha256sum(p)):
            raise ModelError(f"adversary card of {p}: key 'model/sha256' does not match the file")
        if card["tagger"].get("sha256") not in (None, sha256sum(tagger.path)):
            raise ModelError(f"{p}: trained against tagger '{card['tagger'].get('name')}', "
                             f"not {tagger.path} (sha256 differs)")
        known = set(LearnedConfig.__dataclass_fields__)
        given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                 for k, v in card["training"].get("config", {}).items() if k in known}
        cfg = replace(LearnedConfig(), **given)
        env = envelope if envelope is not None else Envelope.from_dict(card["envelope"])
        adv = cls(tagger, env, cfg, tuple(card["preserve"]), batch_size)
        adv.n_max = int(card["inputs"]["n_max"])
        adv.features = tuple(card["inputs"]["features"])
        adv.net = _build_network(len(adv.features), cfg)
        _load_weights(adv.net, graph_weights(onnx.load(str(p))), str(p))
        adv.net.eval()
        adv.direction = -1.0 if card["target"] == "down" else 1.0
        adv.history = list(card["training"].get("history", []))
        adv.record = {k: card["training"][k] for k in ("target", "epochs_run", "epoch_kept")
                      if k in card["training"]}
        return adv
