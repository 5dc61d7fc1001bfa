"""The coffea processor step on a Dask cluster: 1 vs 2 workers, against the iterative executor.

    python benchmarks/bench_dask.py [--copies 10] [--chunksize 25000]

Writes ``--copies`` copies of the shipped sample (25000 jets each, the project's tree format)
as separate files, and runs the processor step of ``examples/coffea_processor.py`` (the
reference PFN, the shipped learned adversary and the energy-smear variation) over them three
times in one run: with coffea's iterative executor (the reference), and with the Dask executor
on a ``distributed.LocalCluster`` of 1 and of 2 worker processes (one thread each, one ONNX
Runtime thread). Prints wall seconds (cluster start-up excluded, one warm-up pass per
cluster), jets per second, the throughput ratio of 2 workers to 1 (acceptance: >= 1.6), the
peak resident memory of each worker (``ru_maxrss``), and whether every histogram is
identical, bin by bin, to the iterative executor's.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

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
from hepsafe.coffea.processor import canonical
from hepsafe.data.jets import write_root
from hepsafe.perturbation.shifts import ADVERSARY_MODEL, LearnedShift


def make_processor(seed: int) -> AdversarialProcessor:
    """The processor step timed: nominal + energy smear + the learned adversary."""
    varied = [Systematic("smear", PhysicsShift("smear_energy", seed)),
              Systematic("adversary", LearnedShift(ADVERSARY_MODEL))]
    return AdversarialProcessor(AdversarialSystematics(
        OnnxWrapper(), varied, mass_window=(55.0, 105.0), score_varied="selected",
        samples={1: "W", 0: "QCD", 2: "top"}))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _identical(a: Any, b: Any) -> bool:
    """Every template histogram of two processor outputs equal bin by bin (values, variances)."""
    ta, tb = a["templates"], b["templates"]
    if sorted(ta) != sorted(tb):
        return False
    for key in ta:
        ha, hb = canonical(ta[key]), canonical(tb[key])
        va, vb = ha.view(flow=False), hb.view(flow=False)
        if not (np.array_equal(va.value, vb.value) and np.array_equal(va.variance, vb.variance)):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=10, help="copies of the shipped sample")
    p.add_argument("--chunksize", type=int, default=25_000, help="entries per chunk")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message="Missing cross-reference")
    import coffea
    import dask
    from dask.distributed import Client, LocalCluster

    jets = datasets.load_sample()
    print(f"coffea {coffea.__version__}, dask {dask.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs visible")
    with tempfile.TemporaryDirectory() as d:
        files = [str(write_root(jets, Path(d) / f"copy{i}.root")) for i in range(args.copies)]
        n_jets = len(jets) * args.copies
        fileset = {"sample": files}
        print(f"{args.copies} files x {len(jets)} jets = {n_jets} jets, chunksize "
              f"{args.chunksize}; nominal + smear_energy + learned adversary")

        proc = make_processor(args.seed)
        run_fileset({"sample": files[:1]}, proc, treename="jets", chunksize=args.chunksize)
        t0 = time.perf_counter()
        reference, _ = run_fileset(fileset, proc, treename="jets", chunksize=args.chunksize)
        seconds = {"iterative": time.perf_counter() - t0}
        memory = {"iterative": [_peak_rss_mb()]}
        same = {"iterative": True}
        for workers in (1, 2):
            name = f"dask x{workers}"
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None, memory_limit=0) as cluster, \
                    Client(cluster) as client:
                kw: dict[str, Any] = {"treename": "jets", "chunksize": args.chunksize,
                                      "client": client}
                run_fileset({"sample": files[:workers]}, make_processor(args.seed), "dask",
                            **kw)  # warm-up: imports, sessions, Numba in every worker
                t0 = time.perf_counter()
                out, report = run_fileset(fileset, make_processor(args.seed), "dask", **kw)
                seconds[name] = time.perf_counter() - t0
                assert report.complete
                memory[name] = sorted(client.run(_peak_rss_mb).values())
                same[name] = _identical(out, reference)
    print(f"{'executor':<10} {'seconds':>8} {'jets/s':>8} {'peak RSS per worker [MB]':>26} "
          f"{'histograms == iterative':>24}")
    for name, s in seconds.items():
        mem = ", ".join(f"{m:.0f}" for m in memory[name])
        print(f"{name:<10} {s:8.2f} {n_jets / s:8.0f} {mem:>26} {str(same[name]):>24}")
    ratio = seconds["dask x1"] / seconds["dask x2"]
    print(f"throughput 2 workers / 1 worker: {ratio:.2f} (acceptance >= 1.6)")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
