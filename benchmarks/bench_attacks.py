"""PGD throughput: hepsafe's PGD beside torchattacks' PGD on the same padded model.

Usage::

    python benchmarks/bench_attacks.py [--model pfn] [--jets 1024] [--steps 10] [--eps 0.02]
        [--threads 1] [--repeats 3]

Runs, interleaved, best of ``--repeats`` rounds (the machine is shared), on the same W jets
of the test split, pushing the signal score down with the same step count:

- ``hepsafe``: ``hepsafe.attacks.PGD(tagger, Envelope.uniform(eps), steps)`` on a JetBatch,
  everything included: padding, the gradient oracle, a Numba projection per step (clip to
  the envelope and restore jet pT and mass), best-per-jet bookkeeping and the perturbed
  JetBatch at the end;
- ``hepsafe-nopreserve``: the same with ``preserve=()`` (clip only, no restoration);
- ``torchattacks``: ``torchattacks.PGD`` on a wrapper module, timed from the padded tensors
  on (padding and wrapper construction included, no JetBatch built at the end).

The mapping for torchattacks, which attacks an input ``x`` in a ``[0, 1]`` box with an L-inf
ball of radius ``eps`` around it: the attacked tensor is the normalised padded delta,
``x = 0.5 + delta / (2 * bound)`` of shape ``(n_jets, n_max, 3)`` (columns d_pt relative,
d_eta, d_phi [rad]; ``bound`` the envelope's bound of each slot's constituent class), so the
nominal jet sits at ``x = 0.5`` and the box ``[0, 1]`` is exactly the envelope. The wrapper
maps ``x`` back to ``delta = (2 x - 1) * bound``, perturbs the padded constituents like
hepsafe's gradient oracle (``GradientOracle.padded_after``: pT scaled, eta/phi shifted, phi
wrapped, energy at fixed constituent mass) and returns the two-class logits ``(0, logit)``
in card order, so torchattacks' cross entropy on the signal label is ``softplus(-logit)``,
increasing as the signal logit falls. torchattacks' ``eps = 0.5`` (the whole box) and
``alpha = step_size / 2`` match hepsafe's step of ``step_size * bound`` (default ``2.5 /
steps``); ``random_start=False`` as hepsafe's default. torchattacks neither restores jet
observables nor keeps the best step per jet, so it does less work per step; the
``hepsafe-nopreserve`` row separates the restoration's cost. The mean signal score after
each attack is computed in the same padded frame (oracle logits) to show they do the same
job. The ratio printed is hepsafe / torchattacks in jets per second.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torchattacks

from hepsafe import data as datasets
from hepsafe.attacks import PGD, GradientOracle
from hepsafe.attacks.base import constituent_classes
from hepsafe.data.jets import JetBatch
from hepsafe.perturbation.envelope import Envelope
from hepsafe.tagger.onnx import OnnxTagger, reference


class PaddedDeltaModel(torch.nn.Module):
    """The tagger as a function of the normalised padded delta ``x`` in ``[0, 1]``.

    ``forward(x)``: ``x`` ``(n_jets, n_max, 3)`` -> two-class logits ``(n_jets, 2)`` in the
    card's class order (signal column = signal logit, the other 0).
    """

    def __init__(self, tagger: OnnxTagger, jets: JetBatch, envelope: Envelope) -> None:
        super().__init__()
        self.tagger = tagger
        self.module = tagger.as_torch()  # registers the parameters torchattacks looks for
        self.oracle = GradientOracle(tagger, jets)
        bounds = np.zeros((len(jets), tagger.n_max, 3), dtype=np.float64)
        slot = self.oracle.index >= 0
        cls = constituent_classes(jets).astype(np.int64)
        bounds[slot] = envelope.table()[cls[self.oracle.index[slot]]]
        self.register_buffer("bounds", torch.as_tensor(bounds))
        self.signal = tagger.output.signal_index

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """Signal logit ``(n_jets,)`` at ``x``."""
        delta = (2.0 * x.double() - 1.0) * self.bounds
        return self.tagger.score_torch(self.oracle.padded_after(delta), kind="logit")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = self.logit(x)
        zero = torch.zeros_like(logit)
        cols = [zero, zero]
        cols[self.signal] = logit
        return torch.stack(cols, dim=1)


def _sigmoid(x: np.ndarray) -> float:
    return float(np.mean(1.0 / (1.0 + np.exp(-x))))


def run_hepsafe(tagger: OnnxTagger, jets: JetBatch, env: Envelope, steps: int,
                preserve: tuple[str, ...]) -> tuple[float, float]:
    """Seconds and mean signal score (oracle frame) of hepsafe's PGD on ``jets``."""
    attack = PGD(tagger, env, steps=steps, preserve=preserve, batch_size=len(jets))
    t0 = time.perf_counter()
    res = attack(jets, "down")
    dt = time.perf_counter() - t0
    return dt, _sigmoid(GradientOracle(tagger, jets).logit(res.delta_applied))


def run_torchattacks(tagger: OnnxTagger, jets: JetBatch, env: Envelope,
                     steps: int) -> tuple[float, float]:
    """Seconds and mean signal score of torchattacks' PGD on the padded wrapper."""
    step_size = 2.5 / steps  # hepsafe's default, as a fraction of the bound
    t0 = time.perf_counter()
    model = PaddedDeltaModel(tagger, jets, env).eval()
    x = torch.full((len(jets), tagger.n_max, 3), 0.5, dtype=torch.float32)
    labels = torch.full((len(jets),), model.signal, dtype=torch.long)
    atk = torchattacks.PGD(model, eps=0.5, alpha=step_size / 2, steps=steps,
                           random_start=False)
    adv = atk(x, labels)
    dt = time.perf_counter() - t0
    with torch.no_grad():
        score = _sigmoid(model.logit(adv).numpy())
    return dt, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="pfn")
    ap.add_argument("--jets", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    tagger = reference(args.model, providers="cpu", intra_op_threads=args.threads)
    sample = datasets.load_sample("test")
    jets = sample[sample.label == 1][: args.jets]
    env = Envelope.uniform(args.eps)
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs visible, {args.threads} thread(s)")
    print(f"## {args.model}: {len(jets)} W jets, {int(jets.n_parts.sum())} constituents, "
          f"PGD {args.steps} steps, envelope eps {args.eps}, best of {args.repeats}")

    runs: dict[str, Callable[[], tuple[float, float]]] = {
        "hepsafe": lambda: run_hepsafe(tagger, jets, env, args.steps, ("pt", "mass")),
        "hepsafe-nopreserve": lambda: run_hepsafe(tagger, jets, env, args.steps, ()),
        "torchattacks": lambda: run_torchattacks(tagger, jets, env, args.steps),
    }
    for f in runs.values():  # warm-up: onnx2torch conversion, Numba compilation
        f()
    best: dict[str, float] = {k: np.inf for k in runs}
    score: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, f in runs.items():
            dt, s = f()
            best[name] = min(best[name], dt)
            score[name] = s
    nominal = _sigmoid(GradientOracle(tagger, jets).logit(
        np.zeros((int(jets.n_parts.sum()), 3), dtype=np.float32)))
    print(f"mean signal score: nominal {nominal:.4f}")
    print(f"{'attack':<18s} {'seconds':>8s} {'jets/s':>9s} {'score after':>12s}")
    for name in runs:
        print(f"{name:<18s} {best[name]:8.3f} {len(jets) / best[name]:9.0f} "
              f"{score[name]:12.4f}")
    ta = best["torchattacks"]
    print(f"ratio hepsafe / torchattacks (jets/s): {ta / best['hepsafe']:.2f}; "
          f"without restoration: {ta / best['hepsafe-nopreserve']:.2f}")


if __name__ == "__main__":
    main()
