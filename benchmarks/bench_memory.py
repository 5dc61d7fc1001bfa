"""Peak memory of ``hepsafe run``: the shipped sample beside a copy of it ten times larger.

    python benchmarks/bench_memory.py

Writes, in a temporary folder, ``--copies`` copies of the shipped sample concatenated into one
file (copy ``k`` has its event numbers shifted by ``k`` times the largest event number plus
one, so every (event, jet_index) is distinct and copy 0 keeps the sample's own numbers, hence
its test split), and a run configuration like ``hepsafe/data/demo.yaml`` whose samples keep
``--max-jets`` jets each. The same jets are therefore processed from both files. Each
command runs in its own subprocess, which reports its own peak resident set size (``VmHWM``)
as it ends. Rows:

- ``imports``: a process that only imports what a run imports (torch, ONNX Runtime, Numba,
  uproot, pyhf, matplotlib): the floor below which no run can go;
- ``read 1x`` / ``read 10x``: ``pipeline.load_samples`` alone on each file;
- ``run 1x`` / ``run 10x``: the whole ``hepsafe run CONFIG -q``.

``--stages`` prints instead, for each file, the resident size after each group of imports
and the peak of each step of the run (sampled every 10 ms), to see where the memory goes.

The acceptance bound is ``run 10x / run 1x <= 1.15``; the two runs' ``summary.json`` must be
identical (the same jets went through the same chain).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from hepsafe import data as datasets
from hepsafe.data.jets import JetBatch, num_entries, write_root
from hepsafe.pipeline.config import DEFAULTS

DEMO = datasets.DATA_DIR / "demo.yaml"
IMPORTS = ("import hepsafe.cli, hepsafe.pipeline.runner, hepsafe.report.plots, "
           "hepsafe.report.document, torch, "
           "onnxruntime, numba, onnx2torch, uproot, pyhf, iminuit, matplotlib.pyplot")
RUN = "import sys; from hepsafe.cli import main; assert main(['run', sys.argv[1], '-q']) == 0"
READ = ("import sys; from hepsafe.pipeline import config, runner as pipeline; "
        "s = pipeline.load_samples(config.load(sys.argv[1])); "
        "print(sum(len(v.jets) for v in s.values()))")

#: ``--stages``: resident size after each group of imports, then the peak of each step of the
#: run (``pipeline.Progress.step``), sampled every 10 ms by a thread
STAGES = """
import contextlib, json, sys, threading, time
def rss():
    return [int(l.split()[1]) / 1024 for l in open('/proc/self/status')
            if l.startswith('VmRSS:')][0]
out = {}
import hepsafe.cli, hepsafe.pipeline.runner, hepsafe.report.plots, hepsafe.report.document
out['import hepsafe.cli, .pipeline, .plots, .report'] = rss()
import torch
out['+ torch'] = rss()
import onnxruntime, onnx2torch
out['+ onnxruntime, onnx2torch'] = rss()
import pyhf, iminuit, matplotlib.pyplot
out['+ pyhf, iminuit, matplotlib'] = rss()
from hepsafe.pipeline import config as config
from hepsafe.pipeline import runner as pipeline
stage = ['run: setup (tagger, attacks)']
def poll():
    while True:
        out[stage[0]] = max(out.get(stage[0], 0.0), rss())
        time.sleep(0.01)
threading.Thread(target=poll, daemon=True).start()
step = pipeline.Progress.step
@contextlib.contextmanager
def traced(self, description, total=1):
    stage[0] = 'run: ' + description
    with step(self, description, total) as advance:
        yield advance
pipeline.Progress.step = traced
pipeline.run(config.load(sys.argv[1]), quiet=True)
time.sleep(0.05)
print(json.dumps(out))
"""


def peak_rss(code: str, *args: str) -> tuple[float, float, str]:
    """Run Python ``code`` (with ``args`` in ``sys.argv[1:]``) in its own process; return
    (its peak RSS [MB], wall [s], its output).

    The peak is the process's own high-water mark ``VmHWM`` of ``/proc/self/status``, read
    as it ends: unlike ``ru_maxrss`` it does not start at the spawning process's size.
    """
    report = ("\nimport sys\nsys.stdout.flush()\nprint('VmHWM', [l.split()[1] for l in "
              "open('/proc/self/status') if l.startswith('VmHWM:')][0], file=sys.stderr)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + report, *args], capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    hwm = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("VmHWM ")]
    if proc.returncode != 0 or not hwm:
        sys.exit(f"bench_memory: {code!r} {args} failed (exit {proc.returncode}):\n"
                 f"{proc.stdout}{proc.stderr}")
    return int(hwm[-1]) / 1024.0, wall, proc.stdout  # kB


def make_copies(path: Path, copies: int) -> Path:
    """The shipped sample ``copies`` times in one file, distinct event numbers per copy."""
    b = datasets.load_sample()
    shift = int(b.event.max()) + 1
    batch = JetBatch.concatenate([b.replace(event=b.event + k * shift) for k in range(copies)])
    return write_root(batch, path)


def make_config(path: Path, sample: Path, output: Path, max_jets: int,
                step_size: int | None) -> Path:
    """The demo configuration on ``sample`` with ``max_jets`` jets per sample."""
    cfg = yaml.safe_load(DEMO.read_text())
    for s in cfg["samples"]:
        s["files"] = [str(sample)]
        s["max_jets"] = max_jets
    if step_size is not None:
        cfg["read"] = {"step_size": step_size}
    cfg["output"] = str(output)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def stages(configs: dict[str, Path]) -> int:
    """Print, side by side per input, the resident size after each group of imports and the
    peak of each step of the run [MB]."""
    import json

    found = {key: json.loads(peak_rss(STAGES, str(cfg))[2].splitlines()[-1])
             for key, cfg in configs.items()}
    keys = list(found)
    print(f"\n{'':46s}" + "".join(f"{k:>9s}" for k in keys) + "  (MB)")
    for name in found[keys[0]]:
        print(f"{name:46s}" + "".join(f"{found[k].get(name, 0.0):9.0f}" for k in keys))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=10, help="copies of the sample in the big file")
    p.add_argument("--max-jets", type=int, default=2000, help="jets kept per sample")
    p.add_argument("--step-size", type=int, default=None,
                   help="entries read per chunk (default: the run configuration's default)")
    p.add_argument("--no-read", action="store_true", help="skip the read-only rows")
    p.add_argument("--stages", action="store_true",
                   help="instead: resident size after the imports and peak per step of the run")
    args = p.parse_args(argv)
    print(f"python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs visible")
    step = args.step_size or DEFAULTS.get("read", {}).get("step_size", "whole files")
    print(f"demo configuration, {args.max_jets} jets per sample, read step size {step}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = {"1x": datasets.SAMPLE_FILE,
                 f"{args.copies}x": make_copies(tmp / "copies.root", args.copies)}
        configs = {}
        for key, f in files.items():
            configs[key] = make_config(tmp / f"run_{key}.yaml", f, tmp / f"out_{key}",
                                       args.max_jets, args.step_size)
        if args.stages:
            return stages(configs)
        rows = [("imports", "-", *peak_rss(IMPORTS)[:2], "-")]
        if not args.no_read:
            for key, f in files.items():
                rss, wall, out = peak_rss(READ, str(configs[key]))
                rows.append((f"read {key}", f"{num_entries(f)}", rss, wall, out.split()[-1]))
        for key, f in files.items():
            rss, wall, _ = peak_rss(RUN, str(configs[key]))
            rows.append((f"run {key}", f"{num_entries(f)}", rss, wall, "-"))
        summaries = [(tmp / f"out_{k}" / "summary.json").read_bytes() for k in files]
        print(f"\n{'':10s} {'entries':>8s} {'peak RSS MB':>12s} {'wall s':>7s} {'jets read':>9s}")
        for name, n, rss, wall, jets in rows:
            print(f"{name:10s} {n:>8s} {rss:12.0f} {wall:7.1f} {jets:>9s}")
        peak = {r[0]: r[2] for r in rows}
        big = f"{args.copies}x"
        floor = peak["imports"]
        ratio = peak[f"run {big}"] / peak["run 1x"]
        above = (peak[f"run {big}"] - floor) / max(peak["run 1x"] - floor, 1.0)
        print(f"\nrun {big} / run 1x: {ratio:.3f} (acceptance <= 1.15); above the import floor: "
              f"{above:.2f}")
        if not args.no_read:
            print(f"read {big} - read 1x: {peak[f'read {big}'] - peak['read 1x']:+.0f} MB")
        same = len(set(summaries)) == 1
        print(f"summary.json identical: {'yes' if same else 'NO'}")
    return 0 if np.isfinite(ratio) and ratio <= 1.15 and same else 1


if __name__ == "__main__":
    sys.exit(main())
