"""The summary table of a run: per variation and attack, the tagger's AUC, the signal and
background efficiencies at the working point, the change of eps_S / sqrt(eps_B) and the
fraction of signal jets whose decision flips, with the run's region applied to each
variation's own jets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepsafe import metrics


@dataclass(frozen=True)
class _Scored:
    """Nominal and varied scores of one set of jets (signal, or all background samples
    joined), their weights and which of them are in the region, nominally and varied."""

    s_nom: np.ndarray
    s_var: np.ndarray
    w_nom: np.ndarray
    w_var: np.ndarray
    in_nom: np.ndarray
    in_var: np.ndarray

    @classmethod
    def join(cls, parts: list[_Scored]) -> _Scored:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("s_nom", "s_var", "w_nom", "w_var", "in_nom", "in_var")))

    def efficiencies(self, thr: float) -> tuple[float, float]:
        """(nominal, varied) efficiency at ``thr``: weight in the region with score >= thr
        over the nominal weight in the region (jets a variation moves out count as lost)."""
        total = self.w_nom[self.in_nom].sum()
        if not total > 0:
            return 0.0, 0.0
        passed = [w[sel & (s >= thr)].sum() for s, w, sel in
                  ((self.s_nom, self.w_nom, self.in_nom), (self.s_var, self.w_var, self.in_var))]
        return float(passed[0] / total), float(passed[1] / total)


def _metrics_row(name: str, kind: str, sig: _Scored, bkg: _Scored,
                 thr: float) -> dict[str, Any]:
    """One summary row: AUC of the jets in the region, efficiencies at ``thr`` relative to
    the nominal jets in the region, the change of eps_S / sqrt(eps_B), and the fraction of
    signal jets (in the region nominally or varied) whose decision "in the region and score
    >= thr" flips."""
    eff_s0, eff_s = sig.efficiencies(thr)
    eff_b0, eff_b = bkg.efficiencies(thr)
    signif = eff_s / np.sqrt(eff_b) if eff_b > 0 else float("inf")
    signif0 = eff_s0 / np.sqrt(eff_b0) if eff_b0 > 0 else float("inf")
    either = sig.in_nom | sig.in_var
    decision = [np.where(sel & (s >= thr), 1.0, 0.0)[either] for s, sel in
                ((sig.s_nom, sig.in_nom), (sig.s_var, sig.in_var))]
    fool = metrics.fooling_rate(decision[0], decision[1], 0.5, sig.w_nom[either])
    return {
        "name": name,
        "kind": kind,
        "auc": metrics.roc_auc(sig.s_var[sig.in_var], bkg.s_var[bkg.in_var],
                               sig.w_var[sig.in_var], bkg.w_var[bkg.in_var]),
        "eff_sig": eff_s,
        "eff_bkg": eff_b,
        "rel_eff_sig": eff_s / eff_s0 - 1 if eff_s0 > 0 else 0.0,
        "sig_over_sqrt_bkg_change": signif / signif0 - 1 if np.isfinite(signif0) else 0.0,
        "fooling_rate_sig": fool.rate,
    }


def summary_table(
    samples: Mapping[str, Any], nominal: Mapping[str, np.ndarray],
    selected: Mapping[str, np.ndarray], varied: Sequence[Any], wp_eff: float,
) -> tuple[float, list[dict[str, Any]]]:
    """``(threshold, rows)``: the score threshold keeping ``wp_eff`` of the first signal
    sample's nominal jets in the region, and one row for the nominal then one per entry of
    ``varied`` (``pipeline.Varied``: ``key``, ``kind``, ``scores``, ``jets``,
    ``selected``). ``samples``: name -> object with ``role`` and ``jets``; ``nominal``:
    name -> scores ``(n_jets,)``; ``selected``: name -> nominal jets in the region, bool."""
    sig = [n for n, s in samples.items() if s.role == "signal"][0]
    bkg = [n for n, s in samples.items() if s.role == "background"]
    sel0, w0 = selected[sig], samples[sig].jets.weight
    thr = metrics.threshold_at_efficiency(nominal[sig][sel0], wp_eff, w0[sel0])

    def scored(name: str, v: Any) -> _Scored:
        jets = samples[name].jets
        if v is None:
            return _Scored(nominal[name], nominal[name], jets.weight, jets.weight,
                           selected[name], selected[name])
        in_var = selected[name] if v.selected is None else v.selected[name]
        return _Scored(nominal[name], v.scores[name], jets.weight, v.jets[name].weight,
                       selected[name], in_var)

    rows = [_metrics_row("nominal", "nominal", scored(sig, None),
                         _Scored.join([scored(b, None) for b in bkg]), thr)]
    for v in varied:
        rows.append(_metrics_row(v.key, v.kind, scored(sig, v),
                                 _Scored.join([scored(b, v) for b in bkg]), thr))
    return thr, rows
