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
(``bg_score``: the probability ``f`` by default, as in Shimmin & Nachman, which weighs the
signal-like tail of the background, where the working point is; or the logit, which weighs
the whole background distribution as the gate's KS test does). The target is the
network's own label-aware one: signal jets down, background jets held fixed ("down"; the
labels only choose the loss terms; applied, g sees no label and moves every jet). Jet pT and
mass [GeV] are summed from the perturbed padded constituents
(:func:`hepsafe.tagger.features.jet_features`, differentiable; constituent energies at fixed
constituent mass). The observable terms run over the background jets only
(``observables_on="background"``, the original formulation) or over every jet (``"all"``,
the default): at use the kernels restore the preserved jet pT and mass anyway, so a delta
that changes them on signal jets is undone; penalising it teaches ``g`` deltas that survive
the restoration. The learning rate decays as a cosine over the epochs.

Stopping at the gate boundary, with two disjoint hold-outs (:mod:`.splits`): after every
epoch the adversary is applied to the *selection* hold-out (projected through the kernels,
as at use) and the control-region gate (:func:`hepsafe.validation.gate` with the
:class:`~hepsafe.validation.GateConfig` given, so its limits are those of the configured
control region) compares its background with the nominal one (the hold-out through the
kernels at zero delta: the kernels recompute constituent energies and jet observables from
the constituents, which alone moves a few jets and, KS being sensitive to any change of a
paired sample, would count against ``g``). Training stops at the first failing gate and
keeps the last state that passed (the initial state is the identity: the last layer starts
at zero); ``record["stopped_by"]`` says whether the boundary ("gate") or the last epoch
("epochs") ended it. With ``lambda_scan`` (values of ``lambda_cls``) one network is trained
per value on the same splits, each stopped so, and the strongest on the selection hold-out
(lowest signal efficiency at the working point, its gate passing) is kept. The kept state
is then gated once on the *report* hold-out, which chose nothing: that is
:attr:`LearnedAdversary.gate_report`, the gate the card stores.
Seeded, and deterministic for a given platform and thread count.

"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple, cast

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
from hepsafe.attacks.adversary.splits import Splits, check_disjoint, jet_keys, split_jets
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


class _HeldOut(NamedTuple):
    """A hold-out prepared for the gate (see :meth:`LearnedAdversary._hold_out`)."""

    jets: JetBatch
    nominal: JetBatch
    scores0: np.ndarray
    sig: np.ndarray
    threshold: float | None
    eff0: float | None


class LearnedAdversary(AdversaryNetwork):
    """The learned mismodelling network ``g(J)`` against ``tagger`` inside ``envelope``.

    ``LearnedAdversary(tagger, envelope).fit(train_jets, target="down")`` trains it (module
    docstring); calling it, ``adv(jets, "down") -> Perturbation``, applies ``g`` in one
    forward pass per batch of ``batch_size`` jets and projects the result through the
    kernels (the envelope and the ``preserve`` observables hold exactly, as for every
    attack). :meth:`export` writes the ONNX graph and its card; :meth:`load` reads them back
    (:class:`~hepsafe.attacks.adversary.graph.OnnxAdversary` applies the graph without torch).
    After :meth:`fit`, :attr:`history` holds one dict per epoch (0: the initial identity;
    loss terms, KS values of the selection gate, the selection hold-out's signal efficiency
    at its nominal 50 % working point), :attr:`selection_report` the selection gate of the
    kept state, :attr:`gate_report` its gate on the report hold-out (disjoint; the one the
    card stores), :attr:`splits` the ``(event, jet_index)`` keys of the training, selection
    and report jets, and :attr:`record` a summary (epochs run and kept, what stopped the
    training, sizes, efficiencies, seconds).
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
        self.selection_report: GateReport | None = None
        self.splits: dict[str, np.ndarray] = {}
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
    def _hold_out(self, jets: JetBatch) -> _HeldOut:
        """A hold-out ready for the gate: the jets, their nominal reference (through the
        kernels at zero delta, so that the gate measures what g does, not the recomputation
        of jet observables), its scores, and the signal working point (50 % nominal)."""
        sig = np.isin(jets.label, self.config.signal_labels)
        nominal = Perturber(jets, self.envelope, self.preserve).apply(None).jets
        scores0 = self.tagger.predict(nominal)
        thr = metrics.threshold_at_efficiency(scores0[sig], 0.5) if sig.any() else None
        eff0 = metrics.efficiency(scores0[sig], thr) if thr is not None else None
        return _HeldOut(jets, nominal, scores0, sig, thr, eff0)

    def _evaluate(self, h: _HeldOut) -> tuple[GateReport, float | None]:
        """The gate (``gate_config``) on the hold-out's background, nominal vs g, and its
        signal efficiency at the nominal working point."""
        direction = cast(float, self.direction)  # set by fit() before it evaluates
        pert = AdversaryNetwork.__call__(self, h.jets, "down" if direction < 0 else "up")
        scores1 = self.tagger.predict(pert.jets)
        bkg = ~h.sig
        report = gate(h.nominal[bkg], pert.jets[bkg], h.scores0[bkg], scores1[bkg],
                      self.gate_config)
        eff = (metrics.efficiency(scores1[h.sig], h.threshold) if h.threshold is not None
               else None)
        return report, eff

    # ------------------------------------------------------------------ fit
    def _labelled(self, jets: JetBatch, what: str) -> JetBatch:
        """The jets of ``jets`` with a signal or background label (``what`` names the
        argument in errors)."""
        if not isinstance(jets, JetBatch):
            raise InputError(f"fit: '{what}' must be a JetBatch, got {type(jets).__name__}")
        cfg = self.config
        return jets[np.isin(jets.label, cfg.signal_labels)
                    | np.isin(jets.label, cfg.background_labels)]

    def _splits(self, train_jets: JetBatch, holdout: JetBatch | None,
                report: JetBatch | None) -> Splits:
        """Training, selection and report jets: the ones not given are carved from
        ``train_jets`` (seeded), all pairwise disjoint (checked by jet key)."""
        cfg = self.config
        jets = self._labelled(train_jets, "train_jets")
        if cfg.max_train_jets is not None and len(jets) > cfg.max_train_jets:
            jets = jets[:: math.ceil(len(jets) / cfg.max_train_jets)]
        parts = split_jets(jets, cfg.seed, cfg.holdout_fraction, cfg.report_fraction,
                           carve_selection=holdout is None, carve_report=report is None)
        if holdout is not None:
            parts = parts._replace(selection=self._labelled(holdout, "holdout"))
        if report is not None:
            parts = parts._replace(report=self._labelled(report, "report"))
        check_disjoint({"train_jets": parts.train, "holdout": parts.selection,
                        "report": parts.report})
        return parts

    def fit(
        self,
        train_jets: JetBatch,
        target: str = "down",
        holdout: JetBatch | None = None,
        report: JetBatch | None = None,
        log: Callable[[str], None] = lambda s: None,
    ) -> LearnedAdversary:
        """Train ``g`` on ``train_jets`` to push the signal score ``target`` ("down", "up", a
        class of the tagger, or a label-aware target, which means "down": signal down,
        background held fixed); returns ``self``.

        Signal and background are the jets with ``config.signal_labels`` and
        ``config.background_labels`` (others are ignored). Two disjoint hold-outs: the
        selection one (``holdout``, else ``holdout_fraction`` of ``train_jets``) runs the
        gate (``gate_config``) after every epoch and picks the stopping point, the last
        epoch that passes before the first that fails (the gate boundary); the report one
        (``report``, else ``report_fraction`` of ``train_jets``) gives the gate of the kept
        state, :attr:`gate_report` (the one stored in the card). Given hold-outs must share
        no jet (``(event, jet_index)``) with each other or the training jets.
        """
        import torch

        cfg = self.config
        direction = -1.0 if self._direction_of(target) < 0 else 1.0
        train, selection, rep = self._splits(train_jets, holdout, report)
        if cfg.lambda_scan:
            return self._scan(train, selection, rep, target, log)
        sig_tr = np.isin(train.label, cfg.signal_labels)
        needs = (("training", train, "signal"), ("training", train, "background"),
                 ("selection", selection, "background"), ("report", rep, "background"))
        for what, jets, lab in needs:
            labels = cfg.signal_labels if lab == "signal" else cfg.background_labels
            if not np.isin(jets.label, labels).any():
                raise InputError(
                    f"fit: no {what} {lab} jets (labels {labels}; options 'signal_labels'/"
                    "'background_labels', 'holdout_fraction', 'report_fraction')")
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
            held = self._hold_out(selection)
            gate_sel, eff = self._evaluate(held)
            best = copy.deepcopy(self.net.state_dict())
            kept, kept_report, stopped = 0, gate_sel, "epochs"
            self.history = [self._entry(0, math.nan, math.nan, gate_sel, eff, t0)]
            log(self._line(self.history[-1], held.eff0))
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
                gate_sel, eff = self._evaluate(held)
                self.history.append(self._entry(epoch, tot_s / steps, tot_b / steps, gate_sel,
                                                 eff, t0))
                log(self._line(self.history[-1], held.eff0))
                if gate_sel.passed or not cfg.stop_on_gate:
                    best, kept, kept_report = copy.deepcopy(self.net.state_dict()), epoch, gate_sel
                if not gate_sel.passed and cfg.stop_on_gate:
                    stopped = "gate"
                    break
            self.net.load_state_dict(best)
            self.net.eval()
            self.selection_report = kept_report
            held_rep = self._hold_out(rep)
            self.gate_report, eff_rep = self._evaluate(held_rep)
        finally:
            torch.set_num_threads(threads)
            for q, g in zip(module.parameters(), grads, strict=True):
                q.requires_grad_(g)
        sig_sel, sig_rep = held.sig, held_rep.sig
        self.splits = {"train": jet_keys(train), "selection": jet_keys(selection),
                       "report": jet_keys(rep)}
        self.record = {
            "target": "down" if direction < 0 else "up",
            "epochs_run": len(self.history) - 1,
            "epoch_kept": kept,
            "stopped_by": stopped,
            "n_train": {"signal": int(sig_tr.sum()), "background": int((~sig_tr).sum())},
            "n_selection": {"signal": int(sig_sel.sum()), "background": int((~sig_sel).sum())},
            "n_report": {"signal": int(sig_rep.sum()), "background": int((~sig_rep).sum())},
            "selection_signal_efficiency": {
                "nominal": held.eff0, "attacked": self.history[kept]["signal_efficiency"]},
            "report_signal_efficiency": {"nominal": held_rep.eff0, "attacked": eff_rep},
            "selection_gate": {"passed": bool(kept_report.passed),
                               "failed": kept_report.failed, "ks": self._ks(kept_report)},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        return self

    def _scan(self, train: JetBatch, selection: JetBatch, rep: JetBatch, target: str,
              log: Callable[[str], None]) -> LearnedAdversary:
        """One training per ``lambda_scan`` value on the same splits; keeps the one whose
        kept state passes the selection gate with the lowest selection signal efficiency
        (the strongest inside the gate; the report hold-out chooses nothing)."""
        runs = []
        for lam in self.config.lambda_scan:
            cfg = replace(self.config, lambda_cls=float(lam), lambda_scan=())
            log(f"lambda_cls {lam:g}")
            adv = LearnedAdversary(self.tagger, self.envelope, cfg, self.preserve,
                                   self.batch_size, self.gate_config)
            runs.append(adv.fit(train, target, holdout=selection, report=rep, log=log))

        def strength(a: LearnedAdversary) -> float:
            eff = a.record["selection_signal_efficiency"]["attacked"]
            passed = a.record["selection_gate"]["passed"]
            sign = -1.0 if a.direction is not None and a.direction < 0 else 1.0
            return -math.inf if not passed or eff is None else sign * float(eff)

        best = max(runs, key=strength)
        self.config = replace(self.config, lambda_cls=best.config.lambda_cls)
        self.net, self.direction, self.history = best.net, best.direction, best.history
        self.gate_report, self.selection_report = best.gate_report, best.selection_report
        self.splits = best.splits
        self.record = {**best.record, "lambda_cls": best.config.lambda_cls,
                       "seconds": round(sum(a.record["seconds"] for a in runs), 1),
                       "lambda_scan": [
            {"lambda_cls": a.config.lambda_cls, "epoch_kept": a.record["epoch_kept"],
             "stopped_by": a.record["stopped_by"],
             "selection_gate_passed": a.record["selection_gate"]["passed"],
             "selection_signal_efficiency": a.record["selection_signal_efficiency"]["attacked"],
             "seconds": a.record["seconds"]}
            for a in runs]}
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
