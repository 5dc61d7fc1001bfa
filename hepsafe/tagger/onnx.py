"""``OnnxTagger``: an ONNX jet tagger, its model card, providers, batching and torch twin.

A tagger is an ``.onnx`` file with a JSON model card (``schemas/tagger.schema.json``; by
default beside it, same stem, ``.json``; any path with ``card=``; weaver-core exports get
theirs from :func:`hepsafe.tagger.weaver.card_from_weaver`). The card says, for every ONNX
input, which features it holds (names from :mod:`hepsafe.tagger.features`, or constituent
fields of the jets), their standardisation, the padding length and mode, the layout
(``(n, P, C)`` or ``(n, C, P)``) and dtype, and for the output the activation, the classes and
which of them make the score (docs/TAGGERS.md). The graph is checked against the card when
the tagger is opened; card inputs the graph lacks (dropped by the exporter) are ignored.

Data flow of :meth:`OnnxTagger.predict`, batch by batch: jagged constituents ->
:meth:`OnnxTagger.padded` (numpy, pT-ordered, masked) -> :meth:`OnnxTagger.inputs_from_padded`
(the shared feature code) -> ONNX Runtime -> signal score. Attacks reuse the same padded
path on torch tensors through :meth:`OnnxTagger.score_torch`, which runs the graph converted
to torch by onnx2torch (:meth:`OnnxTagger.as_torch`).

"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepsafe._files import error_reason, sha256sum
from hepsafe.data.jets import JetBatch
from hepsafe.exceptions import CardError, ConversionError, InputError, ModelError
from hepsafe.models import MODELS_DIR, model_path
from hepsafe.tagger import features as F
from hepsafe.tagger.card import InputSpec, _specs, card_path, check_graph, graph_inputs, load_card
from hepsafe.tagger.torch import _proba_np, _score_torch, score_np, to_torch

log = logging.getLogger(__name__)

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_OPT_LEVELS = ("disable", "basic", "extended", "all")
_CHUNK = 4096  # jets padded and featurised at once by predict
#: largest |torch - ONNX Runtime| score difference on the probe jets allowed to the torch twin
#: (float32 rounding: ParT's pairwise masses from E^2 - p^2 differ by ~1e-4 between backends)
TORCH_TOLERANCE = 1e-3


# --------------------------------------------------------------------------- the tagger
def _providers(requested: str | Sequence[str]) -> tuple[list[str], bool]:
    """Providers to ask ONNX Runtime for, and whether CUDA is required."""
    import onnxruntime as ort

    avail = ort.get_available_providers()
    if isinstance(requested, str):
        req = requested.lower()
        if req == "auto":
            return ([_CUDA, _CPU] if _CUDA in avail else [_CPU]), False
        if req == "cpu":
            return [_CPU], False
        if req == "cuda":
            if _CUDA not in avail:
                raise ModelError(
                    f"option 'providers': 'cuda' requested but ONNX Runtime offers only {avail} "
                    "(install onnxruntime-gpu in place of onnxruntime, or use 'auto'/'cpu')"
                )
            return [_CUDA, _CPU], True
        requested = [requested]
    names = list(requested)
    bad = [p for p in names if p not in avail]
    if bad or not names:
        raise ModelError(f"option 'providers': {bad or names} not offered by ONNX Runtime "
                         f"(available: {avail}; or use 'auto', 'cpu', 'cuda')")
    return names, _CUDA in names[:1]


class OnnxTagger:
    """A jet tagger in ONNX with its model card; scores :class:`~hepsafe.data.jets.JetBatch` es.

    ``path``: the ``.onnx`` file; ``card``: its card (path or dict; default the ``.json``
    beside it). ``providers``: "auto" (CUDA when ONNX Runtime offers it and it works, else
    CPU, logged), "cpu", "cuda" (an error if unavailable), or a list of ONNX Runtime provider
    names. ``batch_size``: jets per ONNX Runtime call (256 keeps the activations of the
    reference PFN in cache; see docs/BENCHMARKS.md). ``intra_op_threads``: ONNX Runtime
    intra-op threads (None: its default). ``optimization``: graph optimisation level,
    "disable", "basic", "extended" or "all". :attr:`provider` names the provider that runs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        card: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        providers: str | Sequence[str] = "auto",
        batch_size: int = 256,
        intra_op_threads: int | None = None,
        optimization: str = "all",
    ) -> None:
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise ModelError(f"{self.path}: no such ONNX file")
        if batch_size < 1:
            raise ModelError(f"option 'batch_size' must be >= 1, got {batch_size}")
        if optimization not in _OPT_LEVELS:
            raise ModelError(f"option 'optimization' must be one of {_OPT_LEVELS}, "
                             f"got {optimization!r}")
        self.batch_size = int(batch_size)
        self.card = load_card(card_path(self.path) if card is None else card)
        digest = self.card["model"].get("sha256")
        if digest is not None and digest != sha256sum(self.path):
            raise CardError(f"model card of {self.path}: key 'model/sha256' is {digest[:12]}..., "
                            f"but the file's sha256 is {sha256sum(self.path)[:12]}... (card and "
                            "model do not belong together)")
        try:
            self.model = onnx.load(str(self.path))
            onnx.checker.check_model(self.model)
        except Exception as exc:
            raise ModelError(f"{self.path}: not a valid ONNX model ({error_reason(exc)})") from exc
        check_graph(self.model, self.card, where=str(self.path))
        _, self.output = _specs(self.card)
        #: the card's inputs the graph has (in card order); :attr:`ignored_inputs`: the rest
        self.inputs, self.ignored_inputs = graph_inputs(self.model, self.card)
        self.name: str = self.card["name"]
        if self.ignored_inputs:
            log.info("tagger '%s': card input(s) %s are not inputs of the graph %s (the "
                     "exporter dropped them, the network does not use them): ignored",
                     self.name, self.ignored_inputs, self.path.name)
        #: constituent fields beyond the kinematics that the features read (``pid``, ...)
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(
            f for s in self.inputs for f in s.fields))
        rep = self.card.get("representation")
        self.representation_output: str | None = rep["name"] if rep else None
        #: padding length of :meth:`padded`: the largest n_max of the inputs
        self.n_max = max(s.n_max for s in self.inputs)

        want, need_cuda = _providers(providers)
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        if intra_op_threads is not None:
            so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=want)
        got = self.session.get_providers()
        #: the execution provider that runs the graph
        self.provider: str = got[0]
        if need_cuda and self.provider != _CUDA:
            raise ModelError(f"option 'providers': 'cuda' requested, but ONNX Runtime could not "
                             f"start it (no GPU or driver?) and would run on {got}")
        if want[0] == _CUDA and self.provider != _CUDA:
            log.warning("tagger '%s': CUDAExecutionProvider is offered but could not start "
                        "(no GPU?); running on %s", self.name, self.provider)
        log.info("tagger '%s' (%s): running on %s (requested %s, ONNX Runtime offers %s)",
                 self.name, self.path.name, self.provider, providers,
                 ort.get_available_providers())
        self._torch: Any = None

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}:{s.kind}{list(s.shape)}" for s in self.inputs)
        return (f"OnnxTagger('{self.name}', {self.path.name}, provider={self.provider}, "
                f"inputs [{ins}], signal '{self.output.signal}')")

    # ------------------------------------------------------------------ padded path
    def padded(self, jets: JetBatch) -> dict[str, np.ndarray]:
        """Padded constituents of ``jets`` for this tagger (length :attr:`n_max`, pT-ordered).

        float32 ``pt, eta, phi, energy, charge`` (and the fields of :attr:`fields`) and
        boolean ``mask``, each ``(n_jets, n_max)``; convert to torch tensors to attack them
        (:meth:`score_torch`).
        """
        return F.padded_constituents(jets, self.n_max, extra=self.fields)

    def inputs_from_padded(self, xp: Any, padded: Mapping[str, Any]) -> dict[str, Any]:
        """The ONNX inputs ``{name: array}`` from a padded dict, numpy or torch.

        ``xp``: numpy, torch or None (from the arrays). Runs the same feature code in both,
        differentiable in torch: features, the card's standardisation and clipping,
        padding (constant or wrap), layout (``(n, P, C)`` or ``(n, C, P)``), mask rank and
        dtype. ``padded`` needs the keys of :meth:`padded`, each ``(n_jets, n >= n_max)``.
        """
        need = ("pt", "eta", "phi", "energy", "mask", *self.fields)
        missing = [k for k in need if k not in padded]
        if missing:
            raise InputError(f"padded constituents lack key(s) {missing} (tagger "
                             f"'{self.name}' needs {list(need)} and 'charge')")
        ns = F.as_namespace(xp, [padded["pt"]])
        n_have = ns.shape(padded["pt"])[1] if len(ns.shape(padded["pt"])) == 2 else -1
        out: dict[str, Any] = {}
        for s in self.inputs:
            if n_have < s.n_max:
                raise InputError(f"padded constituents have shape {ns.shape(padded['pt'])}, "
                                 f"input '{s.name}' needs (n_jets, >= {s.n_max})")
            out[s.name] = _cast(ns, _input_array(ns, s, padded), s.dtype)
        return out

    # ------------------------------------------------------------------ ONNX Runtime
    def run(self, inputs: Mapping[str, np.ndarray],
            outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph on ready inputs ``{name: float32 array}``; returns raw outputs by name."""
        names = list(outputs) if outputs else [v.name for v in self.model.graph.output]
        feed = {s.name: np.ascontiguousarray(inputs[s.name], dtype=np.dtype(s.dtype))
                for s in self.inputs}
        res = self.session.run(names, feed)
        return dict(zip(names, res, strict=True))

    def _check_finite(self, inputs: Mapping[str, np.ndarray], start: int) -> None:
        """Raise InputError naming the features and jets (JetBatch indices) that are not finite."""
        for s in self.inputs:
            x = np.asarray(inputs[s.name])
            if s.layout == "NCP" and x.ndim == 3:
                x = np.swapaxes(x, 1, 2)
            if x.dtype.kind not in "fc":
                continue
            bad_el = ~np.isfinite(x)
            if not bad_el.any():
                continue
            jet_bad = np.flatnonzero(bad_el.reshape(len(x), -1).any(axis=1)) + start
            feats = s.features if s.kind != "mask" else ("mask",)
            cols = bad_el.reshape(-1, len(feats)).any(axis=0)
            raise InputError(
                f"non-finite features {[f for f, c in zip(feats, cols, strict=True) if c]} in "
                f"input '{s.name}' of tagger '{self.name}' for jet(s) "
                f"{jet_bad[:20].tolist()}{' ...' if len(jet_bad) > 20 else ''} "
                f"(indices into the JetBatch; {len(jet_bad)} jet(s) in all)"
            )

    def outputs(self, jets: JetBatch, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Raw graph outputs ``{name: (n_jets, ...)}`` for a non-empty batch of ``jets``
        (e.g. the card's class logits, or any intermediate output the graph exposes), in
        fixed-size batches: a jet's outputs never depend on how the jets were chunked."""
        if len(jets) == 0:
            raise InputError(f"tagger '{self.name}': outputs() needs at least one jet")
        parts: dict[str, list[np.ndarray]] = {n: [] for n in outputs}
        # padding and features run on chunks of >= _CHUNK jets (amortises the awkward calls);
        # ONNX Runtime then runs on batch_size jets at a time
        chunk = max(self.batch_size, _CHUNK)
        for start in range(0, len(jets), chunk):
            sub = jets[start : start + chunk]
            inputs = self.inputs_from_padded(np, self.padded(sub))
            self._check_finite(inputs, start)
            for b in range(0, len(sub), self.batch_size):
                feed = {k: v[b : b + self.batch_size] for k, v in inputs.items()}
                n_real = len(next(iter(feed.values())))
                if n_real < self.batch_size:
                    # always run full batches: ONNX Runtime's kernels can round a row
                    # differently for another batch size, and a jet's score must not depend
                    # on how the jets were chunked (padding rows are empty jets, cut off)
                    feed = {k: np.concatenate([v, np.zeros((self.batch_size - n_real,
                                                            *v.shape[1:]), v.dtype)])
                            for k, v in feed.items()}
                res = self.run(feed, outputs)
                for n in outputs:
                    parts[n].append(res[n][:n_real])
        return {n: np.concatenate(v, axis=0) for n, v in parts.items()}

    def predict_proba(self, jets: JetBatch) -> np.ndarray:
        """Class probabilities, shape ``(n_jets, n_classes)`` float32, columns as card classes."""
        k = len(self.output.classes)
        if len(jets) == 0:
            return np.zeros((0, k), dtype=np.float32)
        y = self.outputs(jets, [self.output.name])[self.output.name]
        probs = _proba_np(y, self.output)
        bad = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        if len(bad):
            raise ModelError(f"tagger '{self.name}' gave non-finite scores for jet(s) "
                             f"{bad[:20].tolist()}")
        return probs

    def predict(self, jets: JetBatch) -> np.ndarray:
        """Score per jet, ``(n_jets,)`` float32 in [0, 1]: the probability of the card's signal
        class, or ``S / (S + B)`` for a card with signal and background classes (S, B the
        summed class probabilities)."""
        if len(jets) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.score_from_output(self.outputs(jets, [self.output.name])[self.output.name])

    def score_from_output(self, y: np.ndarray) -> np.ndarray:
        """The score ``(n_jets,)`` float32 from the raw score output ``y`` of :meth:`run`
        (what :meth:`predict` returns); ModelError naming the jets where it is not finite."""
        score = score_np(y, self.output)
        bad = np.flatnonzero(~np.isfinite(score))
        if len(bad):
            raise ModelError(f"tagger '{self.name}' gave non-finite scores for jet(s) "
                             f"{bad[:20].tolist()}")
        return score

    def represent(self, jets: JetBatch) -> np.ndarray:
        """The card's intermediate representation, shape ``(n_jets, dim)`` float32."""
        if self.representation_output is None:
            raise ModelError(f"tagger '{self.name}': its card declares no 'representation' output")
        dim = int(self.card["representation"]["dim"])
        if len(jets) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        name = self.representation_output
        return self.outputs(jets, [name])[name].astype(np.float32, copy=False)

    # ------------------------------------------------------------------ torch
    def as_torch(self) -> Any:
        """The graph as a differentiable torch module (onnx2torch), converted once and cached.

        Inputs as the ONNX graph (positional in graph order or by name); returns
        ``{output name: tensor}``. The conversion is checked: the module's scores on a few
        probe jets must agree with ONNX Runtime's (:data:`TORCH_TOLERANCE`) and its gradients
        with respect to the constituents' pT, eta, phi be finite. Raises
        :class:`~hepsafe.exceptions.ConversionError` naming the operator when the graph
        cannot be converted, or the disagreement when it converts to something else.
        """
        if self._torch is None:
            module = to_torch(self.model, where=str(self.path))
            self._check_twin(module)
            self._torch = module
        return self._torch

    def _check_twin(self, module: Any) -> None:
        """ConversionError unless ``module`` scores the probe jets as ONNX Runtime does."""
        import torch

        padded = _probe_padded(self.n_max, self.fields)
        inputs = self.inputs_from_padded(np, padded)
        want = score_np(self.run(inputs, [self.output.name])[self.output.name], self.output)
        try:
            with torch.no_grad():
                feed = {k: torch.as_tensor(v) for k, v in inputs.items()}
                got = _score_torch(module(**feed)[self.output.name], self.output,
                                   "probability").double().numpy()
        except Exception as exc:  # onnx2torch modules raise plain errors for shapes they miss
            raise ConversionError(f"{self.path}: the torch twin (onnx2torch) fails on probe "
                                  f"jets: {exc}") from exc
        diff = float(np.max(np.abs(got - want))) if len(want) else 0.0
        if not diff <= TORCH_TOLERANCE:
            raise ConversionError(f"{self.path}: the torch twin (onnx2torch) disagrees with ONNX "
                                  f"Runtime by {diff:.3g} on the score of probe jets (tolerance "
                                  f"{TORCH_TOLERANCE:g}); gradient-based attacks are unavailable")
        with torch.enable_grad():  # the caller may be inside torch.no_grad()
            tensors = {k: torch.as_tensor(v) for k, v in padded.items()}
            kinematics = [tensors[k].requires_grad_(True) for k in ("pt", "eta", "phi")]
            ins = self.inputs_from_padded(torch, tensors)
            logit = _score_torch(module(**ins)[self.output.name], self.output, "logit")
            grads = (torch.autograd.grad(logit.sum(), kinematics, allow_unused=True)
                     if logit.requires_grad else ())
        if not all(g is None or bool(torch.isfinite(g).all()) for g in grads):
            raise ConversionError(f"{self.path}: the torch twin's gradients with respect to the "
                                  "constituents are not finite on probe jets (the network itself "
                                  "gives NaN or inf gradients, e.g. a sqrt at 0 in pair features); "
                                  "gradient-based attacks are unavailable")

    def score_torch(self, padded: Mapping[str, Any], kind: str = "probability") -> Any:
        """Differentiable score ``(n_jets,)`` (as :meth:`predict`) from padded torch tensors.

        ``padded``: tensors as :meth:`padded` gives (float ``pt, eta, phi, energy, charge``,
        bool ``mask``). ``kind``: "probability" (in [0, 1]) or "logit" (signal log-odds,
        unsaturated: better for gradients; ``log(S / B)`` for a ratio of classes).
        """
        if kind not in ("probability", "logit"):
            raise InputError(f"option 'kind' must be 'probability' or 'logit', got {kind!r}")
        import torch

        module = self.as_torch()
        pt = padded["pt"]
        if not isinstance(pt, torch.Tensor):
            raise InputError("score_torch needs torch tensors in 'padded' (use "
                             "{k: torch.as_tensor(v) for k, v in tagger.padded(jets).items()})")
        module = module.to(pt.device)
        inputs = self.inputs_from_padded(torch, padded)
        outs = module(**inputs)
        return _score_torch(outs[self.output.name], self.output, kind)


def run_fixed_batches(inputs: Mapping[str, np.ndarray], batch_size: int,
                      run: Callable[[dict[str, np.ndarray]], np.ndarray]) -> np.ndarray:
    """``run`` on consecutive batches of exactly ``batch_size`` rows of ``inputs`` (``{name:
    (n, ...)}``, n >= 1; the last batch padded by repeating its last row), the outputs of
    the real rows concatenated, shape ``(n, ...)``. ONNX Runtime can round a row
    differently for another batch size; with one size, a jet's result never depends on how
    the data were chunked."""
    n = len(next(iter(inputs.values())))
    out = []
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in inputs.items()}
        m = len(next(iter(batch.values())))
        if m < batch_size:
            batch = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - m, axis=0)])
                     for k, v in batch.items()}
        out.append(run(batch)[:m])
    return np.concatenate(out, axis=0)


def _used_columns(ns: Any, mask: Any) -> int:
    """1 + index of the last column that is a real constituent for some jet (at least 1)."""
    col = ns.sum(ns.where(mask, 1, 0), axis=0)
    col = np.asarray(col.detach().cpu().numpy() if ns.name == "torch" else col)
    nz = np.flatnonzero(col)
    return max(int(nz[-1]) + 1 if len(nz) else 1, 1)


def reference(name: str = "pfn", **options: Any) -> OnnxTagger:
    """A shipped tagger by name ("pfn", "hl", the three-class "pfn3" / "pfn3_md", the robust
    "pfn_adv_pgd" / "pfn_adv_fgsm" / "pfn_adv_learned"); ``options`` go to OnnxTagger."""
    path = model_path(name)
    if path.parent != MODELS_DIR:
        known = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
        raise ModelError(f"no reference tagger named '{name}' in {MODELS_DIR} (known: {known})")
    return OnnxTagger(path, **options)


def _cast(ns: Any, x: Any, dtype: str) -> Any:
    """``x`` in the graph dtype (float32, float64, int64 or bool)."""
    if dtype == "bool":
        return x != 0
    if ns.name == "torch":
        import torch

        return x.to({"float32": torch.float32, "float64": torch.float64,
                     "int64": torch.int64}[dtype])
    return np.asarray(x).astype(dtype, copy=False)


def _input_array(ns: Any, s: InputSpec, padded: Mapping[str, Any]) -> Any:
    """One ONNX input (before the dtype cast) from padded constituents: features,
    standardisation, padding, layout."""
    n = s.n_max
    mask = padded["mask"][:, :n]
    if not ns.is_bool(mask):
        mask = mask != 0
    if s.kind == "mask":
        x = ns.astype(mask, ns.float32)
        if s.rank == 3:
            x = x[:, None, :] if s.layout == "NCP" else x[:, :, None]
        return x
    cut: dict[str, Any] = {k: padded[k][:, :n] if padded.get(k) is not None else None
                           for k in ("pt", "eta", "phi", "energy", "charge")}
    if s.kind == "constituent":
        fields = {f: padded[f][:, :n] for f in s.fields}
        x = F.constituent_features(ns, s.features, cut["pt"], cut["eta"], cut["phi"],
                                   cut["energy"], cut["charge"], mask, fields=fields)
        if s.transforms:
            t = s.transforms
            x = F.standardise(ns, x, [v.centre for v in t], [v.scale for v in t],
                              [v.lo for v in t], [v.hi for v in t], [v.pad for v in t], mask)
        if s.pad_mode == "wrap":
            x = F.wrap_pad(ns, x, mask)
        return ns.swap_last(x) if s.layout == "NCP" else x
    # jet features do not depend on padding: drop columns that are padding for all
    used = _used_columns(ns, mask)
    pt, eta, phi, energy = (cut[k][:, :used] for k in ("pt", "eta", "phi", "energy"))
    x = F.jet_features(ns, s.features, pt, eta, phi, energy, mask[:, :used])
    if s.transforms:
        t = s.transforms
        x = F.standardise(ns, x, [v.centre for v in t], [v.scale for v in t],
                          [v.lo for v in t], [v.hi for v in t])
    return x


def _probe_padded(n_max: int, fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Four deterministic probe jets, padded to ``n_max``: full, half full, 3 and 1
    constituents, pT-ordered, particle types among charged / neutral hadrons, photons,
    electrons and muons; the fields of ``fields`` beyond ``pid`` are small numbers."""
    rng = np.random.default_rng(20261201)
    counts = np.array([n_max, max(1, n_max // 2), min(3, n_max), 1])
    mask = np.arange(n_max)[None, :] < counts[:, None]
    pt = np.sort(rng.exponential(20.0, (4, n_max)) + 1.0, axis=1)[:, ::-1]
    eta = rng.normal(0.0, 0.3, (4, n_max))
    phi = rng.normal(0.0, 0.3, (4, n_max))
    pid = rng.choice(np.array([211, -211, 130, 22, 11, -13]), (4, n_max)).astype(np.float64)
    charge = np.where(np.isin(np.abs(pid), (211, 11, 13)), -np.sign(pid), 0.0)
    energy = pt * np.cosh(eta) + 0.1
    out = {"pt": pt, "eta": eta, "phi": phi, "energy": energy, "charge": charge}
    for f in fields:
        out[f] = pid if f == "pid" else rng.normal(0.0, 0.1, (4, n_max))
    padded: dict[str, np.ndarray] = {k: np.where(mask, v, 0.0).astype(np.float32)
                                     for k, v in out.items()}
    padded["mask"] = mask
    return padded
