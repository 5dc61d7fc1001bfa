"""The figures a robustness-challenge bundle reports for a tagger: clean AUC and QCD rejection,
and per attacked twin the signal and background efficiencies at the clean working point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from hepsafe import metrics
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import InputError


class Figures(NamedTuple):
    """One file of a bundle scored by one tagger. Efficiencies are weighted fractions at the
    threshold that keeps ``working_point`` of the *nominal* signal jets; ``rejection`` is
    1 / ε_B at that cut; ``d_eps_s`` the relative change of ε_S against the nominal file."""

    name: str
    auc: float
    threshold: float
    eps_s: float
    eps_b: float
    rejection: float
    d_eps_s: float
    n_signal: int
    n_background: int

    def as_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return {k: (float(v) if isinstance(v, float | np.floating) else v)
                for k, v in self._asdict().items()}


def _split(jets: JetBatch, scores: np.ndarray, signal: int, background: int,
           name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    s, b = jets.label == signal, jets.label == background
    if not s.any() or not b.any():
        raise InputError(f"bundle file '{name}': needs jets of label {signal} (signal) and "
                         f"{background} (background); has {jets.class_counts()}")
    w = jets.weight.astype(np.float64)
    return scores[s], scores[b], w[s], w[b]


def score_files(
    scores: Mapping[str, np.ndarray], jets: Mapping[str, JetBatch], nominal: str,
    signal: int = 1, background: int = 0, working_point: float = 0.5,
) -> list[Figures]:
    """:class:`Figures` of every file, ``scores[name]`` ``(n_jets,)`` the tagger's signal
    scores of ``jets[name]``; the threshold comes from file ``nominal`` (listed first)."""
    ss, sb, ws, wb = _split(jets[nominal], scores[nominal], signal, background, nominal)
    thr = metrics.threshold_at_efficiency(ss, working_point, ws)
    eps_s0 = metrics.efficiency(ss, thr, ws)
    out = []
    for name in [nominal, *[n for n in scores if n != nominal]]:
        ss, sb, ws, wb = _split(jets[name], scores[name], signal, background, name)
        eps_s, eps_b = metrics.efficiency(ss, thr, ws), metrics.efficiency(sb, thr, wb)
        out.append(Figures(
            name=name,
            auc=float(metrics.roc_auc(ss, sb, ws, wb)),
            threshold=float(thr),
            eps_s=float(eps_s),
            eps_b=float(eps_b),
            rejection=float(1.0 / eps_b) if eps_b > 0 else float("inf"),
            d_eps_s=float(eps_s / eps_s0 - 1.0),
            n_signal=len(ss),
            n_background=len(sb),
        ))
    return out


def format_figures(rows: list[Figures]) -> str:
    """A text table of :func:`score_files`' rows."""
    head = (f"{'file':<12} {'AUC':>7} {'eps_S':>7} {'d eps_S':>8} {'eps_B':>8} "
            f"{'1/eps_B':>8} {'n_S':>6} {'n_B':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.name:<12} {r.auc:7.4f} {r.eps_s:7.4f} {r.d_eps_s:+8.4f} "
                     f"{r.eps_b:8.5f} {r.rejection:8.1f} {r.n_signal:6d} {r.n_background:6d}")
    return "\n".join(lines)
