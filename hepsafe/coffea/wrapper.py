"""``OnnxWrapper``: an ONNX jet tagger as a coffea ``numpy_call_wrapper``.

Data flow of one call: jagged constituents (eager, virtual or dask-awkward) ->
:meth:`OnnxWrapper.prepare_awkward` (awkward: drop masked constituents, order by decreasing
pT, pad to the card's ``n_max``; the same order as :meth:`hepsafe.data.jets.JetBatch.to_padded`)
-> numpy -> :meth:`OnnxWrapper.numpy_call` (the shared feature code, then ONNX Runtime) ->
signal score per jet.

The wrapper pickles only the model path, the card and the session options; the
:class:`~hepsafe.tagger.onnx.OnnxTagger` (which holds an ONNX Runtime session) is created lazily,
once per process, on first use. Every ONNX Runtime call sees exactly ``batch_size`` jets (the
last batch is padded by repeating its last jet), so a jet's score never depends on how the
data were chunked: ONNX Runtime rounds differently for very small batches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from coffea.ml_tools.helper import numpy_call_wrapper

from hepsafe.coffea.inputs import is_pf_candidates, pf_constituents
from hepsafe.exceptions import InputError, ModelError
from hepsafe.models import MODELS_DIR
from hepsafe.tagger.card import card_path, load_card
from hepsafe.tagger.onnx import OnnxTagger, run_fixed_batches

#: constituent fields handed to numpy_call, in this order (``charge`` and ``pid`` 0 when
#: absent; ``pid`` is read by taggers whose features are particle-type flags)
PADDED_ARGS = ("pt", "eta", "phi", "energy", "charge", "pid")


def _lib(x: Any) -> Any:
    """awkward or dask_awkward, whichever ``x`` belongs to."""
    if isinstance(x, ak.Array):
        return ak
    import dask_awkward

    return dask_awkward


def _ndim(x: Any) -> int:
    """Number of list dimensions above the constituent records (2: jets, 3: events x jets)."""
    return int(x.ndim)


class OnnxWrapper(numpy_call_wrapper):
    """An ONNX tagger with its model card as a coffea ``numpy_call_wrapper``.

    ``model``: the ``.onnx`` file (default the reference PFN); ``card``: its card (path or
    dict; default the ``.json`` beside the model). ``providers``, ``batch_size``,
    ``intra_op_threads`` and ``optimization`` go to :class:`~hepsafe.tagger.onnx.OnnxTagger`
    (defaults: CPU, 256 jets per call, one thread per worker process).

    Call it on constituents of type ``n_jets * var * {pt, eta, phi, energy[, charge][,
    mask]}`` or ``n_events * var * n_jets * var * {...}`` (awkward, virtual or dask-awkward):
    the result is the signal score per jet, float32, with the jet structure of the input.
    Raw NanoEvents PF candidates are accepted as well (``events.FatJet.constituents.pf``,
    or ``events.FatJet.constituents``, the ``FatJetPFCands`` records): their energy is
    computed from pt, eta and mass and, with ``puppi`` (default True: AK8 FatJet in PFNano
    is PUPPI; False for CHS jets), their four-momenta are weighted by ``puppiWeight``
    (:func:`~hepsafe.coffea.inputs.pf_constituents`), as the step's own jets are.
    Called on numpy arrays it is :meth:`numpy_call` directly.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        card: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        providers: str = "cpu",
        batch_size: int = 256,
        intra_op_threads: int | None = 1,
        optimization: str = "all",
        puppi: bool = True,
    ) -> None:
        super().__init__()
        self.puppi = bool(puppi)
        path = Path(model) if model is not None else MODELS_DIR / "pfn.onnx"
        if not path.exists():
            raise ModelError(f"{path}: no such ONNX file (option 'model' of OnnxWrapper)")
        if batch_size < 1:
            raise ModelError(f"option 'batch_size' must be >= 1, got {batch_size}")
        self.model = str(path.resolve())
        self.card = dict(card) if isinstance(card, Mapping) else str(card or card_path(path))
        checked = load_card(self.card)
        self.n_max = max(int(s["n_max"]) for s in checked["inputs"])
        self.name: str = checked["name"]
        self.options: dict[str, Any] = {
            "providers": providers,
            "batch_size": int(batch_size),
            "intra_op_threads": intra_op_threads,
            "optimization": optimization,
        }
        self._tagger: OnnxTagger | None = None

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tagger"] = None  # an ONNX Runtime session is never pickled
        state.pop("_delayed_wrapper", None)  # set by numpy_call_wrapper on dask calls
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"OnnxWrapper('{self.name}', {Path(self.model).name}, n_max={self.n_max}, "
                f"{self.options})")

    @property
    def tagger(self) -> OnnxTagger:
        """The :class:`~hepsafe.tagger.onnx.OnnxTagger`, created on first use in this process."""
        if self._tagger is None:
            self._tagger = OnnxTagger(self.model, self.card, **self.options)
        return self._tagger

    # ------------------------------------------------------------------ awkward side
    def prepare_awkward(self, constituents: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Padded constituent arrays ``(pt, eta, phi, energy, charge, mask)``, each regular
        ``(n_jets, n_max)``: masked-out constituents dropped, decreasing pT, zero padding."""
        lib = _lib(constituents)
        parts = constituents
        if is_pf_candidates(parts):
            parts = pf_constituents(parts, self.puppi)
        if _ndim(parts) == 3:
            parts = lib.flatten(parts, axis=1)
        elif _ndim(parts) != 2:
            raise InputError(
                f"OnnxWrapper: constituents must be jets x constituents or events x jets x "
                f"constituents, got {parts.ndim} dimensions"
            )
        fields = parts.fields
        missing = [f for f in PADDED_ARGS[:4] if f not in fields]
        if missing:
            raise InputError(f"OnnxWrapper: constituents lack field(s) {missing} "
                             f"(have {list(fields)})")
        if lib is ak and ak.backend(parts) == "cpu":
            return self._pad_eager(parts), {}
        if "mask" in fields:
            parts = parts[parts["mask"]]
        parts = parts[lib.argsort(parts["pt"], axis=1, ascending=False, stable=True)]
        out = []
        mask = None
        for f in PADDED_ARGS:
            x = parts[f] if f in fields else lib.zeros_like(parts["pt"])
            x = lib.pad_none(x, self.n_max, axis=1, clip=True)
            if mask is None:
                mask = ~lib.is_none(x, axis=1)
            out.append(lib.values_astype(lib.fill_none(x, 0), np.float32))
        return (*out, mask), {}

    def _pad_eager(self, parts: ak.Array) -> tuple[ak.Array, ...]:
        """:meth:`prepare_awkward` for eager arrays: the same result, filled with numpy."""
        if "mask" in parts.fields:
            parts = parts[parts["mask"]]
        order = ak.argsort(parts["pt"], axis=1, ascending=False, stable=True)
        parts = parts[order][:, : self.n_max]
        counts = ak.to_numpy(ak.num(parts, axis=1))
        mask = np.arange(self.n_max)[None, :] < counts[:, None]
        out = []
        for f in PADDED_ARGS:
            x = np.zeros(mask.shape, dtype=np.float32)
            if f in parts.fields:
                x[mask] = ak.to_numpy(ak.flatten(parts[f], axis=1))
            out.append(ak.from_numpy(x, regulararray=True))
        return (*out, ak.from_numpy(mask, regulararray=True))

    def postprocess_awkward(self, return_array: Any, constituents: Any) -> Any:
        """Scores with the jet structure of the input (events x jets when given so)."""
        if _ndim(constituents) == 3:
            lib = _lib(constituents)
            return lib.unflatten(return_array, lib.num(constituents, axis=1))
        return return_array

    # ------------------------------------------------------------------ numpy side
    def validate_numpy_input(self, *arrays: np.ndarray) -> None:
        """Check the seven padded arrays: each ``(n_jets, n_max)``, the same ``n_jets``."""
        if len(arrays) != len(PADDED_ARGS) + 1:
            raise InputError(f"OnnxWrapper.numpy_call takes {list(PADDED_ARGS) + ['mask']}, "
                             f"got {len(arrays)} arrays")
        n = arrays[0].shape[0] if arrays[0].ndim else -1
        for name, a in zip((*PADDED_ARGS, "mask"), arrays, strict=True):
            if a.ndim != 2 or a.shape != (n, self.n_max):
                raise InputError(f"OnnxWrapper: padded '{name}' has shape {a.shape}, expected "
                                 f"({n}, {self.n_max})")

    def numpy_call(self, pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, energy: np.ndarray,
                   charge: np.ndarray, pid: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Signal score per jet, float32 ``(n_jets,)``, from padded ``(n_jets, n_max)`` arrays
        (pt, energy [GeV], eta, phi [rad], charge [e], PDG-style particle code, boolean
        mask)."""
        self._check_fields()
        padded = {"pt": pt, "eta": eta, "phi": phi, "energy": energy, "charge": charge,
                  "pid": pid, "mask": np.asarray(mask, dtype=bool)}
        return self.score_inputs(self.tagger.inputs_from_padded(np, padded))

    def _check_fields(self) -> None:
        extra = [f for f in getattr(self.tagger, "fields", ()) if f not in PADDED_ARGS]
        if extra:
            raise InputError(f"OnnxWrapper: tagger '{self.tagger.name}' reads constituent "
                             f"field(s) {extra}, which the coffea wrapper does not pass (it "
                             f"pads {list(PADDED_ARGS)}); score it with OnnxTagger.predict")

    def score_inputs(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Signal score per jet, float32 ``(n_jets,)``, from the tagger's ONNX inputs
        ``{name: float32 (n_jets, ...)}`` (:meth:`inputs_of`); batches of exactly
        ``batch_size`` jets. InputError names non-finite features, ModelError bad scores."""
        tagger = self.tagger
        n = len(next(iter(inputs.values()))) if inputs else 0
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        tagger._check_finite(inputs, 0)
        name = tagger.output.name
        raw = run_fixed_batches(inputs, int(self.options["batch_size"]),
                                lambda batch: tagger.run(batch, [name])[name])
        # the card's score: p(signal), or S / (S + B) for a class-ratio card
        return np.ascontiguousarray(tagger.score_from_output(raw))

    # ------------------------------------------------------------------ JetBatch
    def inputs_of(self, parts: ak.Array) -> dict[str, np.ndarray]:
        """The tagger's ONNX inputs ``{name: float32 (n_jets, ...)}`` for eager constituents
        ``n_jets * var * {pt, eta, phi, energy[, charge][, mask]}`` (e.g. ``JetBatch.parts``):
        padded as :meth:`prepare_awkward`, then the shared feature code."""
        self._check_fields()
        arrays, _ = self.prepare_awkward(parts)
        names = (*PADDED_ARGS, "mask")
        padded = {k: ak.to_numpy(a) for k, a in zip(names, arrays, strict=True)}
        padded["mask"] = padded["mask"].astype(bool, copy=False)
        return self.tagger.inputs_from_padded(np, padded)

    def constituent_input(self, features: tuple[str, ...], n_max: int) -> str | None:
        """Name of the tagger input that holds exactly these constituent ``features`` at
        padding length ``n_max`` (so another network reading them can reuse
        :meth:`inputs_of`), or None."""
        for spec in self.tagger.inputs:
            if (spec.kind == "constituent" and tuple(spec.features) == tuple(features)
                    and spec.n_max == n_max):
                return spec.name
        return None

    def mask_input(self, n_max: int) -> str | None:
        """Name of the tagger's mask input at padding length ``n_max``, or None."""
        for spec in self.tagger.inputs:
            if spec.kind == "mask" and spec.n_max == n_max:
                return spec.name
        return None

    def score(self, parts: ak.Array) -> np.ndarray:
        """Signal score float32 ``(n_jets,)`` of eager constituents (e.g. ``JetBatch.parts``)."""
        return self.score_inputs(self.inputs_of(parts))
