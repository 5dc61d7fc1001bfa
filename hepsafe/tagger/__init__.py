"""Taggers: JetBatch -> scores. Model cards, input features, ONNX Runtime, the torch twin,
training.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hepsafe.tagger.features import (
        CONSTITUENT_FEATURES,
        JET_FEATURES,
        PADDED_FIELDS,
        Namespace,
        as_namespace,
        constituent_features,
        jet_features,
        namespace,
        padded_constituents,
    )
    from hepsafe.tagger.onnx import (
        CARD_FORMAT,
        MODELS_DIR,
        InputSpec,
        OnnxTagger,
        OutputSpec,
        card_path,
        check_graph,
        load_card,
        model_path,
        reference,
        to_torch,
    )
    from hepsafe.tagger.train import (
        MODELS,
        TrainConfig,
        TrainResult,
        default_config,
        train,
        train_reference,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "CARD_FORMAT": "onnx",
    "CONSTITUENT_FEATURES": "features",
    "InputSpec": "onnx",
    "JET_FEATURES": "features",
    "MODELS": "train",
    "MODELS_DIR": "onnx",
    "Namespace": "features",
    "OnnxTagger": "onnx",
    "OutputSpec": "onnx",
    "PADDED_FIELDS": "features",
    "TrainConfig": "train",
    "TrainResult": "train",
    "as_namespace": "features",
    "card_path": "onnx",
    "check_graph": "onnx",
    "constituent_features": "features",
    "default_config": "train",
    "jet_features": "features",
    "load_card": "onnx",
    "model_path": "onnx",
    "namespace": "features",
    "padded_constituents": "features",
    "reference": "onnx",
    "to_torch": "onnx",
    "train": "train",
    "train_reference": "train",
}
__all__ = [
    "CARD_FORMAT",
    "CONSTITUENT_FEATURES",
    "InputSpec",
    "JET_FEATURES",
    "MODELS",
    "MODELS_DIR",
    "Namespace",
    "OnnxTagger",
    "OutputSpec",
    "PADDED_FIELDS",
    "TrainConfig",
    "TrainResult",
    "as_namespace",
    "card_path",
    "check_graph",
    "constituent_features",
    "default_config",
    "jet_features",
    "load_card",
    "model_path",
    "namespace",
    "padded_constituents",
    "reference",
    "to_torch",
    "train",
    "train_reference",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
