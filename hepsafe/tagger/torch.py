"""The torch twin of an ONNX tagger (onnx2torch) and the tagger score on numpy and torch
outputs (probability of the signal class, logits or sigmoid)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from hepsafe.exceptions import ConversionError, InputError
from hepsafe.tagger.card import OutputSpec, _graph_inputs

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- torch twin
def to_torch(model: Any, where: str = "model") -> Any:
    """Convert an ``onnx.ModelProto`` to a differentiable torch module (via onnx2torch).

    The module takes the graph inputs (positional in graph order, or by name) and returns a
    dict ``{output name: tensor}``. Parameters are frozen (``requires_grad=False``): gradients
    flow to the inputs. The graph is first normalised for onnx2torch
    (:func:`hepsafe.tagger.graph.normalise_for_torch`: constants folded, empty optional
    inputs dropped, traced squeezes; the extra converters of ``_converters``). Raises
    :class:`ConversionError` naming every operator onnx2torch cannot convert.
    """
    from onnx2torch import convert
    from onnx2torch.node_converters.registry import get_converter

    from hepsafe.tagger._converters import register
    from hepsafe.tagger.graph import normalise_for_torch

    register()
    model, notes = normalise_for_torch(model)
    if notes:
        log.info("%s: graph normalised for onnx2torch: %s", where, "; ".join(notes))

    opsets = {o.domain or "": o.version for o in model.opset_import}
    unsupported: dict[str, list[str]] = {}
    for node in model.graph.node:
        domain = node.domain or ""
        try:
            get_converter(domain=domain, operation_type=node.op_type,
                          version=opsets.get(domain, 1))
        except NotImplementedError:
            label = f"{domain + '::' if domain else ''}{node.op_type} (opset {opsets.get(domain)})"
            unsupported.setdefault(label, []).append(node.name or "(unnamed)")
    if unsupported:
        ops = ", ".join(f"{k} at node(s) {v}" for k, v in unsupported.items())
        raise ConversionError(f"{where}: onnx2torch cannot convert operator(s) {ops}; "
                              "gradient-based attacks are unavailable, use a black-box method")
    try:
        gm = convert(model)
    except Exception as exc:  # onnx2torch raises plain exceptions for unsupported attributes
        raise ConversionError(f"{where}: onnx2torch failed to convert the graph: {exc}") from exc

    producers: dict[str, tuple[str, int, int]] = {}
    for node in model.graph.node:
        for k, name in enumerate(node.output):
            producers[name] = (node.name, k, len(node.output))
    out_names = [v.name for v in model.graph.output]
    missing = [n for n in out_names if n not in producers]
    if missing:
        raise ConversionError(f"{where}: graph output(s) {missing} are not produced by a node "
                              "(pass-through outputs cannot be converted)")
    node_order = list(dict.fromkeys(producers[n][0] for n in out_names))
    picks = []
    for n in out_names:
        node_name, k, n_out = producers[n]
        picks.append((node_order.index(node_name), k if n_out > 1 else None))
    in_names = [v.name for v in _graph_inputs(model)]
    cls = _torch_tagger_class()
    return cls(gm, in_names, out_names, picks, single=len(node_order) == 1).eval()


@functools.cache
def _torch_tagger_class() -> type:
    """The torch module class wrapping an onnx2torch graph (defined lazily: torch is heavy)."""
    import torch

    class TorchTagger(torch.nn.Module):
        """onnx2torch module with named inputs and a dict of named outputs."""

        def __init__(self, gm: Any, in_names: list[str], out_names: list[str],
                     picks: list[tuple[int, int | None]], single: bool) -> None:
            super().__init__()
            self.graph_module = gm
            self.input_names = list(in_names)
            self.output_names = list(out_names)
            self._picks = picks
            self._single = single
            for p in self.parameters():
                p.requires_grad_(False)

        def forward(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            if kwargs:
                unknown = sorted(set(kwargs) - set(self.input_names))
                if unknown or args:
                    raise InputError(f"torch tagger inputs are {self.input_names}, got "
                                     f"{len(args)} positional and named {sorted(kwargs)}")
                args = tuple(kwargs[n] for n in self.input_names)
            if len(args) != len(self.input_names):
                raise InputError(f"torch tagger takes {len(self.input_names)} inputs "
                                 f"{self.input_names}, got {len(args)}")
            res = self.graph_module(*args)
            nodes = (res,) if self._single else tuple(res)
            return {
                name: nodes[i] if k is None else nodes[i][k]
                for name, (i, k) in zip(self.output_names, self._picks, strict=True)
            }

    return TorchTagger


# --------------------------------------------------------------------------- scores
def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))).astype(np.float32)


def _proba_np(y: np.ndarray, out: OutputSpec) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` from the raw output."""
    n = y.shape[0]
    if out.binary:
        v = y.reshape(n)
        p = v.astype(np.float32) if out.activation == "sigmoid" else _sigmoid_np(v)
        probs = np.empty((n, 2), dtype=np.float32)
        probs[:, out.signal_index] = p
        probs[:, 1 - out.signal_index] = 1.0 - p
        return probs
    if out.activation == "softmax":
        return y.astype(np.float32)
    z = y.astype(np.float64) - y.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _log_proba_np(y: np.ndarray, out: OutputSpec) -> np.ndarray:
    """Class log-probabilities float64 ``(n, n_classes)`` of a multi-class raw output."""
    tiny = 1e-30
    y = np.asarray(y, dtype=np.float64)
    if out.activation == "softmax":
        return np.log(np.clip(y, tiny, None))
    z = y - y.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _logsumexp_np(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1)
    return m + np.log(np.exp(x - m[:, None]).sum(axis=1))


def signal_logit_np(y: np.ndarray, out: OutputSpec) -> np.ndarray:
    """The score's log-odds ``log(S / B)`` per jet, float64 ``(n_jets,)``, from a raw graph
    output ``y`` (S, B: the summed probabilities of the signal and background classes);
    probabilities are clipped away from 0 and 1. Mirrors ``score_torch(kind="logit")``."""
    n = y.shape[0]
    if out.binary:
        v = np.asarray(y, dtype=np.float64).reshape(n)
        if out.activation == "logit":
            return v
        p = np.clip(v, 1e-12, 1.0 - 1e-12)
        return np.log(p) - np.log1p(-p)
    logp = _log_proba_np(y, out)
    return (_logsumexp_np(logp[:, list(out.signal_indices)])
            - _logsumexp_np(logp[:, list(out.background_indices)]))


def score_np(y: np.ndarray, out: OutputSpec) -> np.ndarray:
    """The tagger score per jet, float32 ``(n_jets,)`` in [0, 1], from a raw graph output:
    the signal probability, or for a card with a ratio of classes ``S / (S + B)``."""
    probs = _proba_np(y, out)
    if not out.ratio:
        return np.ascontiguousarray(probs[:, out.signal_index])
    p = probs.astype(np.float64)
    sig = p[:, list(out.signal_indices)].sum(axis=1)
    bkg = p[:, list(out.background_indices)].sum(axis=1)
    tot = sig + bkg
    # S + B = 0 (both underflow): 0.5; NaN stays NaN (reported by the caller)
    fallback = np.where(np.isnan(tot), np.nan, 0.5)
    return np.where(tot > 0, sig / np.where(tot > 0, tot, 1.0), fallback).astype(np.float32)


def _score_torch(y: Any, out: OutputSpec, kind: str) -> Any:
    import torch

    n = y.shape[0]
    s = out.signal_index
    if out.binary:
        v = y.reshape(n)
        if out.activation == "logit":
            return torch.sigmoid(v) if kind == "probability" else v
        return v if kind == "probability" else torch.logit(v)
    if out.activation == "softmax":
        if kind == "probability" and not out.ratio:
            return y[:, s]
        logp = torch.log(torch.clamp(y, min=1e-30)) if out.ratio else torch.log(y)
    else:
        logp = torch.log_softmax(y, dim=1)
    if out.ratio:
        log_s = torch.logsumexp(logp[:, list(out.signal_indices)], dim=1)
        log_b = torch.logsumexp(logp[:, list(out.background_indices)], dim=1)
        return torch.sigmoid(log_s - log_b) if kind == "probability" else log_s - log_b
    if kind == "probability":
        return torch.exp(logp[:, s])
    others = torch.cat([logp[:, :s], logp[:, s + 1 :]], dim=1)
    return logp[:, s] - torch.logsumexp(others, dim=1)
