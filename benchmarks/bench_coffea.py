"""Overhead of the coffea processor step: variations attached vs nominal only.

    python benchmarks/bench_coffea.py

Runs three processors over the same file in one run, interleaved, best of ``--rounds``:
``nominal`` (the tagger score only) and, with the learned adversary + two physics
variations (``smear_energy``, ``tracking_loss``; without the learned adversary model in
``hepsafe/models`` the variations are physics only, and the output says so), ``all``
(every varied jet scored) and ``selected`` (varied jets scored only where they can enter
the templates: ``score_varied="selected"``, same templates). All use coffea's ``Runner``
with the iterative executor on the shipped sample written in the project's tree format,
the same chunk size (default: the whole file in one chunk, as coffea's default chunk size
of 100k entries would), one ONNX Runtime thread. Prints seconds, jets per second and the
ratios to ``nominal`` (the acceptance bound is 3).

``--parts`` also times the learned shift's pieces on the same jets, side by side: the
adversary's forward pass with the shipped graph and with the earlier graph layout of the same
weights (``tests/data/adversary_pfn_old_layout.onnx``), and the whole shift with its inputs
computed afresh or reused from the tagger's inputs of the nominal jets (what the step does).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from hepsafe import data as datasets
from hepsafe.coffea import (
    AdversarialProcessor,
    AdversarialSystematics,
    OnnxWrapper,
    PhysicsShift,
    Systematic,
    run_fileset,
)
from hepsafe.data.jets import write_root
from hepsafe.perturbation.shifts import ADVERSARY_MODEL, LearnedShift


def processors(seed: int, adversary: Path | None) -> dict[str, AdversarialProcessor]:
    """The two processors compared: nominal only, and nominal + variations."""
    varied = [
        Systematic("smear", PhysicsShift("smear_energy", seed)),
        Systematic("tracking", PhysicsShift("tracking_loss", seed)),
    ]
    if adversary:
        varied.append(Systematic("adversary", LearnedShift(adversary)))
    common = {"mass_window": (55.0, 105.0), "samples": {1: "W", 0: "QCD", 2: "top"}}
    return {
        "nominal": AdversarialProcessor(AdversarialSystematics(OnnxWrapper(), [], **common)),
        "all": AdversarialProcessor(AdversarialSystematics(OnnxWrapper(), varied, **common)),
        "selected": AdversarialProcessor(AdversarialSystematics(
            OnnxWrapper(), varied, score_varied="selected", **common)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jets", type=int, default=25_000, help="jets of the shipped sample")
    p.add_argument("--chunksize", type=int, default=100_000, help="entries per chunk")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best kept)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--adversary", default=None,
                   help="learned adversary ONNX file (default: the shipped one, if any)")
    p.add_argument("--parts", action="store_true",
                   help="also time the learned shift's pieces (graph layouts, input reuse)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="Missing cross-reference")
    model = Path(args.adversary) if args.adversary else ADVERSARY_MODEL
    adversary = model if model.exists() else None
    procs = processors(args.seed, adversary)
    jets = datasets.load_sample()[: args.jets]
    import coffea
    import onnxruntime

    print(f"coffea {coffea.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs visible")
    print(f"{len(jets)} jets, chunksize {args.chunksize}, iterative executor, best of "
          f"{args.rounds} rounds")
    print("variations: smear_energy, tracking_loss"
          + (f", learned adversary ({adversary.name})" if adversary
             else "; NO learned adversary (hepsafe/models/adversary_pfn.onnx absent)"))
    with tempfile.TemporaryDirectory() as d:
        path = write_root(jets, Path(d) / "jets.root")
        fileset = {"sample": [str(path)]}
        best = {k: np.inf for k in procs}
        for proc in procs.values():  # warm-up: sessions, Numba, file cache
            run_fileset(fileset, proc, treename="jets", chunksize=args.chunksize)
        for _ in range(args.rounds):
            for name, proc in procs.items():
                t0 = time.perf_counter()
                out, report = run_fileset(fileset, proc, treename="jets",
                                          chunksize=args.chunksize)
                best[name] = min(best[name], time.perf_counter() - t0)
                assert report.complete
    print(f"{'processor':<10} {'variations':>10} {'score_varied':>12} {'seconds':>8} "
          f"{'jets/s':>8} {'ratio':>6}")
    for name, proc in procs.items():
        n_var = len(proc.step.variations) - 1
        mode = "-" if not n_var else proc.step.score_varied
        print(f"{name:<10} {n_var:>10} {mode:>12} {best[name]:8.3f} "
              f"{len(jets) / best[name]:8.0f} {best[name] / best['nominal']:6.2f}")
    for name in ("all", "selected"):
        print(f"ratio {name} / nominal: {best[name] / best['nominal']:.2f} (bound 3)")
    if args.parts and adversary:
        parts(jets, adversary, args.rounds)
    return 0


def _best(fn, rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def parts(jets, adversary: Path, rounds: int) -> None:
    """Seconds of the learned shift's pieces on ``jets`` (best of ``rounds``)."""
    import onnxruntime as ort

    from hepsafe.attacks.adversary.graph import adversary_inputs
    from hepsafe.tagger.onnx import run_fixed_batches

    wrapper, shift = OnnxWrapper(), LearnedShift(adversary)
    adv = shift.adversary
    inputs, _ = adversary_inputs(jets, adv.n_max, adv.features, adv.envelope)
    old = Path(__file__).resolve().parent.parent / "tests" / "data" / (
        "adversary_pfn_old_layout.onnx")
    graphs = {"shipped graph": str(adversary)}
    if old.exists() and adversary == ADVERSARY_MODEL:
        graphs["earlier layout"] = str(old)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    print(f"learned shift on {len(jets)} jets, best of {rounds}:")
    forward = {}
    for label, path in graphs.items():
        sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        forward[label] = _best(lambda s=sess: run_fixed_batches(
            inputs, shift.batch_size, lambda b: s.run(None, b)[0]), rounds)
        print(f"  forward pass, {label:<15} {forward[label]:7.3f} s")
    if len(forward) == 2:
        ratio = forward["earlier layout"] / forward["shipped graph"]
        print(f"  ratio earlier / shipped: {ratio:.2f}")
    nominal = wrapper.inputs_of(jets.parts)
    fresh = _best(lambda: shift.vary(jets, wrapper, None), rounds)
    reused = _best(lambda: shift.vary(jets, wrapper, nominal), rounds)
    print(f"  whole shift, inputs afresh  {fresh:7.3f} s")
    print(f"  whole shift, inputs reused  {reused:7.3f} s   ratio {fresh / reused:.2f}")


if __name__ == "__main__":
    sys.exit(main())
