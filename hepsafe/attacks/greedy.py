"""Distribution-preserving greedy search, after CONSERVAttack.

A gradient attack that a control-region comparison should not see: it moves constituents
only as long as the distributions a validation would compare stay put. On the batch being
attacked, after every proposed step, it compares nominal and perturbed with the gate's own
statistics (:mod:`hepsafe.validation.checks`, the gate's binning and weights):

- the Jensen-Shannon distance of every checked feature: jet pT, jet mass and the constituent
  marginals (pT, delta eta, delta phi, energy, :func:`validate.default_constituent_features`)
  must stay ``<= jsd_max``;
- the Frobenius norm of the change of the Pearson correlation matrix of the jet-level
  variables (jet pT, mass, eta, number of constituents) must stay ``<= corr_max``.

The search, per step: the gradient of the signal logit (:class:`GradientOracle`) at the
current delta, signed per jet by the target's direction (the objective is the batch mean of
:class:`~hepsafe.attacks.base.Objective`, which may mix jets pushed down and up); then for
each coordinate (pT, eta, phi; largest first-order gain first) a signed step of
``step_size`` (fraction of the envelope bound) on the constituents with the largest
``|gradient| * bound``. A step is accepted when every cap holds and the batch's mean
objective improves; otherwise the fraction of constituents moved is halved (the smallest
gradients are dropped first), up to ``max_halvings`` times, before that coordinate is given
up for the step. Every step is projected through the perturbation kernels.

The caps hold **per batch** (``batch_size`` jets, default 4096: the statistics need many
jets); the union of batches is not re-checked. ``Perturbation.info.details["batches"]`` of
the result reports, per batch, the final JSDs, correlation change and accepted steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepsafe.attacks.base import Attack, GradientOracle, Objective
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import ConfigError
from hepsafe.perturbation.envelope import Envelope
from hepsafe.perturbation.perturber import Perturbation, Perturber
from hepsafe.tagger.onnx import OnnxTagger
from hepsafe.validation.config import CONSTITUENT_VARIABLES, JET_VARIABLES, GateConfig
from hepsafe.validation.twosample import Observed, correlation_matrix, histogram, js_distance
from hepsafe.validation.variables import control_variables

#: features whose JSD (nominal vs perturbed) is capped
JSD_FEATURES: tuple[str, ...] = ("jet_pt", "jet_mass", *CONSTITUENT_VARIABLES)
#: jet-level variables whose correlation matrix change is capped
CORRELATION_FEATURES: tuple[str, ...] = JET_VARIABLES


class BatchMonitor:
    """Nominal histograms and correlations of one batch, to score perturbed versions of it.

    ``bins`` override the gate's binning per variable (as :attr:`GateConfig.bins`).
    """

    def __init__(self, nominal: JetBatch, bins: Mapping[str, Any] | None = None) -> None:
        cfg = GateConfig(bins=dict(bins or {}))
        obs = control_variables(nominal)
        self.edges = {v: cfg.edges_for(v, obs[v].values) for v in JSD_FEATURES}
        self.hist = {v: self._hist(obs[v], v) for v in JSD_FEATURES}
        self.corr = self._corr(obs)

    def _hist(self, o: Observed, v: str) -> np.ndarray:
        return histogram(o.values, self.edges[v], o.weights)[0]

    @staticmethod
    def _corr(obs: Mapping[str, Observed]) -> np.ndarray:
        return correlation_matrix([obs[v].values for v in CORRELATION_FEATURES],
                                  obs[CORRELATION_FEATURES[0]].weights)

    def measure(self, perturbed: JetBatch) -> tuple[dict[str, float], float]:
        """``({feature: JSD}, Frobenius norm of the correlation change)`` of ``perturbed``."""
        obs = control_variables(perturbed)
        jsd = {v: js_distance(self.hist[v], self._hist(obs[v], v)) for v in JSD_FEATURES}
        return jsd, float(np.linalg.norm(self._corr(obs) - self.corr))


class GreedySearch(Attack):
    """Greedy, gradient-guided search that keeps the batch's distributions within caps.

    ``steps``: gradient evaluations (each tries the three coordinates); ``step_size``:
    step per accepted move, fraction of the bound; ``jsd_max``: cap on every feature's JSD
    (base 2); ``corr_max``: cap on the correlation-matrix change (Frobenius);
    ``max_halvings``: how often a rejected step's fraction of constituents is halved;
    ``bins``: binning overrides (see :class:`~hepsafe.validation.checks.GateConfig`). The defaults
    are the gate's default limits. See the module docstring; the caps hold per batch.
    """

    name = "greedy"

    def __init__(
        self,
        tagger: OnnxTagger,
        envelope: Envelope | None = None,
        steps: int = 10,
        step_size: float = 0.5,
        jsd_max: float = 0.06,
        corr_max: float = 0.006,
        max_halvings: int = 6,
        bins: Mapping[str, Any] | None = None,
        preserve: Sequence[str] = ("pt", "mass"),
        batch_size: int = 4096,
        seed: int = 0,
        signal_labels: Sequence[int] | None = None,
    ) -> None:
        super().__init__(tagger, envelope, preserve, batch_size, seed, signal_labels)
        if steps < 1:
            raise ConfigError(f"option 'steps' must be >= 1, got {steps}")
        if not step_size > 0:
            raise ConfigError(f"option 'step_size' must be > 0, got {step_size}")
        for name, v in (("jsd_max", jsd_max), ("corr_max", corr_max)):
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"option '{name}' must be a finite number >= 0, got {v!r}")
        if max_halvings < 0:
            raise ConfigError(f"option 'max_halvings' must be >= 0, got {max_halvings}")
        GateConfig(bins=dict(bins or {}))  # validates the binning
        self.steps = int(steps)
        self.step_size = float(step_size)
        self.jsd_max = float(jsd_max)
        self.corr_max = float(corr_max)
        self.max_halvings = int(max_halvings)
        self.bins = dict(bins or {})
        self._reports: list[dict[str, Any]] = []

    def details(self) -> dict[str, Any]:
        return {
            **super().details(),
            "steps": self.steps,
            "step_size": self.step_size,
            "jsd_max": self.jsd_max,
            "corr_max": self.corr_max,
            "max_halvings": self.max_halvings,
            "batches": list(self._reports),
        }

    def __call__(self, jets: JetBatch, target: str = "down") -> Perturbation:
        self._reports = []
        return super().__call__(jets, target)

    def _within(self, jsd: Mapping[str, float], corr: float) -> bool:
        return all(v <= self.jsd_max for v in jsd.values()) and corr <= self.corr_max

    def attack_batch(
        self, jets: JetBatch, perturber: Perturber, objective: Objective, batch_no: int
    ) -> np.ndarray:
        oracle = GradientOracle(self.tagger, jets)
        monitor = BatchMonitor(jets, self.bins)
        bounds = self.bounds(perturber)
        jet_of = np.repeat(np.arange(len(jets)), np.diff(perturber.offsets))
        delta = np.zeros_like(bounds)
        obj0 = float(np.mean(objective.value(oracle.logit(delta))))
        obj = obj0
        jsd, corr = {v: 0.0 for v in JSD_FEATURES}, 0.0
        accepted = proposals = 0
        for _ in range(self.steps):
            logit, grad = oracle.logit_and_grad(delta)
            gain = np.abs(grad) * bounds
            if objective.loss:  # the loss weighs each jet by its slope
                gain = gain * np.abs(objective.slope(logit))[jet_of, None].astype(np.float32)
            signs = objective.signs(grad, jet_of)
            moved = False
            for q in np.argsort(-gain.sum(axis=0), kind="stable"):
                cand = np.flatnonzero(gain[:, q] > 0)
                if not len(cand):
                    continue
                cand = cand[np.argsort(-gain[cand, q], kind="stable")]
                sign = signs[cand, q]
                for h in range(self.max_halvings + 1):
                    k = max(1, math.ceil(len(cand) / 2**h))
                    prop = delta.copy()
                    prop[cand[:k], q] += self.step_size * bounds[cand[:k], q] * sign[:k]
                    res = perturber.apply(prop)
                    proposals += 1
                    p_jsd, p_corr = monitor.measure(res.jets)
                    if not self._within(p_jsd, p_corr):
                        continue
                    p_obj = float(np.mean(objective.value(oracle.logit(res.delta_applied))))
                    if p_obj > obj:
                        delta, obj, jsd, corr = res.delta_applied, p_obj, p_jsd, p_corr
                        accepted += 1
                        moved = True
                        break
            if not moved:
                break
        self._reports.append({
            "batch": batch_no, "n_jets": len(jets), "accepted": accepted,
            "proposals": proposals, "objective_before": obj0, "objective_after": obj,
            "jsd": jsd, "corr_change": corr,
        })
        return delta
