"""Overhead of the coffea processor step: variations attached vs nominal only.

    python benchmarks/bench_coffea.py

Runs two processors over the same file in one run, interleaved, best of ``--rounds``:
``nominal`` (the tagger score only) and ``varied`` (nominal + the learned adversary + two
physics variations, ``smear_energy`` and ``tracking_loss``; without the learned adversary
model in ``hepsafe/models`` the variations are physics only, and the output says so). Both
use coffea's ``Runner`` with the iterative executor on the shipped sample written in the
project's tree format, the same chunk size, one ONNX Runtime thread. Prints seconds, jets
per second and the ratio varied / nominal (the acceptance bound is 3).
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

from hepsafe import datasets
from hepsafe.coffea import (
    AdversarialProcessor,
    AdversarialSystematics,
    OnnxWrapper,
    PhysicsShift,
    Systematic,
    run_fileset,
)
from hepsafe.coffea.shifts import ADVERSARY_MODEL, LearnedShift
from hepsafe.jets import write_root


def processors(seed: int, adversary: bool) -> dict[str, AdversarialProcessor]:
    """The two processors compared: nominal only, and nominal + variations."""
    varied = [
        Systematic("smear", PhysicsShift("smear_energy", seed)),
        Systematic("tracking", PhysicsShift("tracking_loss", seed)),
    ]
    if adversary:
        varied.append(Systematic("adversary", LearnedShift()))
    common = {"mass_window": (55.0, 105.0), "samples": {1: "W", 0: "QCD", 2: "top"}}
    return {
        "nominal": AdversarialProcessor(AdversarialSystematics(OnnxWrapper(), [], **common)),
        "varied": AdversarialProcessor(AdversarialSystematics(OnnxWrapper(), varied, **common)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jets", type=int, default=25_000, help="jets of the shipped sample")
    p.add_argument("--chunksize", type=int, default=5_000, help="entries per chunk")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best kept)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="Missing cross-reference")
    adversary = ADVERSARY_MODEL.exists()
    procs = processors(args.seed, adversary)
    jets = datasets.load_sample()[: args.jets]
    import coffea
    import onnxruntime

    print(f"coffea {coffea.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs visible")
    print(f"{len(jets)} jets, chunksize {args.chunksize}, iterative executor, best of "
          f"{args.rounds} rounds")
    print("variations: smear_energy, tracking_loss"
          + (", learned adversary (adversary_pfn.onnx)" if adversary
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
    print(f"{'processor':<10} {'variations':>10} {'seconds':>8} {'jets/s':>8}")
    for name, proc in procs.items():
        n_var = len(proc.step.variations) - 1
        print(f"{name:<10} {n_var:>10} {best[name]:8.3f} {len(jets) / best[name]:8.0f}")
    ratio = best["varied"] / best["nominal"]
    print(f"ratio varied / nominal: {ratio:.2f} (bound 3)")
    return 0 if ratio <= 3.0 else 1


if __name__ == "__main__":
    sys.exit(main())
