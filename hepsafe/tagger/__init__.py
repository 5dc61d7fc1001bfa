"""Taggers: JetBatch -> scores. Model cards, input features, ONNX Runtime, the torch twin,
training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hepsafe._lazy import lazy_exports

if TYPE_CHECKING:
    from hepsafe.tagger._namespace import (
        Namespace,
        as_namespace,
        namespace,
    )
    from hepsafe.tagger.card import (
        CARD_FORMAT,
        InputSpec,
        OutputSpec,
        card_path,
        check_graph,
        load_card,
    )
    from hepsafe.tagger.features import (
        CONSTITUENT_FEATURES,
        JET_FEATURES,
        PADDED_FIELDS,
        Feature,
        constituent_features,
        jet_features,
        padded_constituents,
    )
    from hepsafe.tagger.onnx import (
        OnnxTagger,
        reference,
        run_fixed_batches,
    )
    from hepsafe.tagger.torch import (
        to_torch,
    )
    from hepsafe.tagger.training import (
        MODELS,
        TrainConfig,
        TrainResult,
        default_config,
        train,
        train_reference,
    )

#: public name -> the module that defines it
_EXPORTS = {
    "CARD_FORMAT": "card",
    "CONSTITUENT_FEATURES": "features",
    "Feature": "features",
    "InputSpec": "card",
    "JET_FEATURES": "features",
    "MODELS": "training",
    "Namespace": "_namespace",
    "OnnxTagger": "onnx",
    "OutputSpec": "card",
    "PADDED_FIELDS": "features",
    "TrainConfig": "training",
    "TrainResult": "training",
    "as_namespace": "_namespace",
    "card_path": "card",
    "check_graph": "card",
    "constituent_features": "features",
    "default_config": "training",
    "jet_features": "features",
    "load_card": "card",
    "namespace": "_namespace",
    "padded_constituents": "features",
    "reference": "onnx",
    "run_fixed_batches": "onnx",
    "to_torch": "torch",
    "train": "training",
    "train_reference": "training",
}
__all__ = [
    "CARD_FORMAT",
    "CONSTITUENT_FEATURES",
    "Feature",
    "InputSpec",
    "JET_FEATURES",
    "MODELS",
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
    "namespace",
    "padded_constituents",
    "reference",
    "run_fixed_batches",
    "to_torch",
    "train",
    "train_reference",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
