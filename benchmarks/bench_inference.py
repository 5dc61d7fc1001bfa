"""Inference throughput: OnnxTagger (ONNX Runtime, CPU provider) vs the same network in torch eager.

Usage::

    python benchmarks/bench_inference.py [--model pfn] [--jets 4096] [--threads 1 2]
        [--batch-sizes 64 256 1024 4096] [--repeats 5]

For every (threads, batch size) the same precomputed network inputs (test-split jets) are
run through

- ``ort``: the tagger's ONNX Runtime session (``OnnxTagger.run``), graph optimisation
  "all" (and, with ``--opt-levels``, other levels);
- ``torch-fx``: ``OnnxTagger.as_torch()``, the onnx2torch module, in eager mode under
  ``torch.inference_mode()``;
- ``torch-native``: the same weights in a hand-written ``torch.nn.Module`` (what a user
  would write), eager, ``inference_mode``;

interleaved, best of ``--repeats`` rounds each (the machine is shared: the best round is
the least disturbed one). Ratios are ort / torch in jets per second. End-to-end
``predict`` (padding + features + ONNX Runtime) is reported alongside. All outputs are
checked to agree before timing. ``--layouts`` instead compares the committed PFN graph
(per-particle MLP as Gemm + Relu on rows) with a MatMul + Add variant on the 3-d tensor.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnx import numpy_helper

from hepsafe import data as datasets
from hepsafe.tagger.onnx import OnnxTagger, reference


def _native(tagger: OnnxTagger) -> torch.nn.Module:
    """The reference network rebuilt as a plain torch module from the ONNX weights."""
    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
         for i in tagger.model.graph.initializer}

    def layers(prefix: str) -> torch.nn.ModuleList:
        out = torch.nn.ModuleList()
        i = 0
        while f"{prefix}{i}.weight_t" in w:
            wt = w[f"{prefix}{i}.weight_t"]
            lin = torch.nn.Linear(wt.shape[0], wt.shape[1])
            lin.weight.data = wt.T.contiguous()
            lin.bias.data = w[f"{prefix}{i}.bias"]
            out.append(lin)
            i += 1
        return out

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.phi = layers("phi")
            self.f = layers("f")
            self.out = torch.nn.Linear(1, 1)
            self.out.weight.data = w["out.weight_t"].T.contiguous()
            self.out.bias.data = w["out.bias"]

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            h = xs[0]
            if len(self.phi):
                for layer in self.phi:
                    h = torch.relu(layer(h))
                h = (h * xs[1].unsqueeze(-1)).sum(dim=1)
            for layer in self.f:
                h = torch.relu(layer(h))
            return self.out(h).squeeze(-1)

    return Net().eval()


def _matmul_variant(tagger: OnnxTagger) -> bytes:
    """The PFN graph with its per-particle MLP as MatMul + Add on the 3-d (n, n_max, k) tensor
    (the layout torch's exporter writes for nn.Linear on 3-d input), same weights."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto()
    model.CopyFrom(tagger.model)
    g = model.graph
    nodes = []
    for node in g.node:
        if node.name == "to_rows":
            continue
        if node.name == "to_jets":
            nodes.append(helper.make_node("Identity", [node.input[0]], list(node.output),
                                          name=node.name))
            continue
        if node.op_type == "Gemm" and node.name.startswith("phi"):
            x = "constituents" if node.name == "phi0" else node.input[0]
            nodes.append(helper.make_node("MatMul", [x, node.input[1]], [node.name + ".mm"],
                                          name=node.name + ".mm"))
            nodes.append(helper.make_node("Add", [node.name + ".mm", node.input[2]],
                                          list(node.output), name=node.name))
            continue
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    keep = [i for i in g.initializer if i.name not in ("rows", "per_jet")]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def layouts(n_jets: int, batch_sizes: list[int], repeats: int) -> None:
    """ONNX Runtime on the committed PFN (Gemm on rows) vs its MatMul + Add variant, 1 thread."""
    jets = datasets.load_sample("test")
    jets = jets[jets.label <= 1][:n_jets]
    base = reference("pfn", providers="cpu")
    inputs = base.inputs_from_padded(np, base.padded(jets))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sessions = {
        "gemm-rows": ort.InferenceSession(str(base.path), so, providers=["CPUExecutionProvider"]),
        "matmul-3d": ort.InferenceSession(_matmul_variant(base), so,
                                          providers=["CPUExecutionProvider"]),
    }
    outs = [s.run(["logit"], inputs)[0] for s in sessions.values()]
    diff = np.abs(outs[0] - outs[1]).max()
    print(f"\n## pfn graph layouts, 1 thread (max |difference| of the logit {diff:.1e})")
    print("batch  gemm-rows jets/s  matmul-3d jets/s  ratio")
    for b in batch_sizes:
        chunks = _batches(inputs, b)
        best = dict.fromkeys(sessions, np.inf)
        for _ in range(repeats):
            for k, sess in sessions.items():
                best[k] = min(best[k], _time(lambda s=sess, cs=chunks: [s.run(["logit"], c)
                                                                        for c in cs]))
        r = {k: len(jets) / v for k, v in best.items()}
        print(f"{b:5d}  {r['gemm-rows']:16.0f}  {r['matmul-3d']:16.0f}  "
              f"{r['gemm-rows'] / r['matmul-3d']:5.2f}")


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _batches(inputs: dict[str, Any], b: int) -> list[dict[str, Any]]:
    n = len(next(iter(inputs.values())))
    return [{k: v[s : s + b] for k, v in inputs.items()} for s in range(0, n, b)]


def bench(model: str, n_jets: int, threads: list[int], batch_sizes: list[int], repeats: int,
          opt_levels: list[str]) -> None:
    jets = datasets.load_sample("test")
    jets = jets[jets.label <= 1][:n_jets]
    n = len(jets)
    base = reference(model, providers="cpu")
    inputs = base.inputs_from_padded(np, base.padded(jets))
    names = [s.name for s in base.inputs]
    tin = {k: torch.from_numpy(v) for k, v in inputs.items()}
    fx = base.as_torch()
    native = _native(base)
    with torch.inference_mode():
        ref = base.run(inputs, ["logit"])["logit"]
        d_fx = np.abs(fx(**tin)["logit"].numpy() - ref).max()
        d_nat = np.abs(native(*(tin[k] for k in names)).numpy() - ref).max()
    assert d_fx < 1e-5 and d_nat < 1e-4, (d_fx, d_nat)
    print(f"\n## {model}: {n} jets, inputs {[(k, tuple(v.shape)) for k, v in inputs.items()]}")
    print(f"max |torch - ort| on the logit: onnx2torch {d_fx:.1e}, native {d_nat:.1e}")
    print("threads batch  opt     ort jets/s  torch-fx jets/s  native jets/s  "
          "ort/fx  ort/native  predict jets/s")
    for t in threads:
        torch.set_num_threads(t)
        for b in batch_sizes:
            for opt in opt_levels:
                tag = OnnxTagger(base.path, providers="cpu", batch_size=b, intra_op_threads=t,
                                 optimization=opt)
                assert tag.provider == "CPUExecutionProvider"
                rate = _measure(tag, jets, inputs, fx, native, names, b, repeats)
                print(f"{t:7d} {b:5d}  {opt:8s}{rate['ort']:10.0f}  {rate['fx']:15.0f}  "
                      f"{rate['native']:13.0f}  {rate['ort'] / rate['fx']:6.2f}  "
                      f"{rate['ort'] / rate['native']:10.2f}  {rate['predict']:14.0f}")


def _measure(tag: OnnxTagger, jets: Any, inputs: dict[str, np.ndarray], fx: Any, native: Any,
             names: list[str], b: int, repeats: int) -> dict[str, float]:
    """Jets per second of each runner, best of ``repeats`` interleaved rounds."""
    chunks = _batches(inputs, b)
    tchunks = _batches({k: torch.from_numpy(v) for k, v in inputs.items()}, b)

    def run_ort() -> None:
        for c in chunks:
            tag.run(c, ["logit"])

    def run_fx() -> None:
        with torch.inference_mode():
            for c in tchunks:
                fx(**c)

    def run_native() -> None:
        with torch.inference_mode():
            for c in tchunks:
                native(*(c[k] for k in names))

    def run_predict() -> None:
        tag.predict(jets)

    runners = {"ort": run_ort, "fx": run_fx, "native": run_native, "predict": run_predict}
    best = dict.fromkeys(runners, np.inf)
    for fn in runners.values():  # warm-up
        fn()
    for _ in range(repeats):
        for k, fn in runners.items():
            best[k] = min(best[k], _time(fn))
    n = len(jets)
    return {k: n / v for k, v in best.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["pfn", "hl", "all"], default="all")
    p.add_argument("--jets", type=int, default=4096)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    p.add_argument("--opt-levels", nargs="+", default=["all"],
                   choices=["disable", "basic", "extended", "all"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--layouts", action="store_true",
                   help="only compare the PFN graph layouts (Gemm on rows vs MatMul + Add 3-d)")
    a = p.parse_args()
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs visible")
    if a.layouts:
        layouts(a.jets, a.batch_sizes, a.repeats)
        return
    for m in (["pfn", "hl"] if a.model == "all" else [a.model]):
        bench(m, a.jets, a.threads, a.batch_sizes, a.repeats, a.opt_levels)


if __name__ == "__main__":
    main()
