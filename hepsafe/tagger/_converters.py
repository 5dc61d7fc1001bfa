"""onnx2torch converters for operators exported taggers use, registered once on the first
conversion (weaver's ParT traces ``torch.tril_indices`` to ``ConstantOfShape -> Trilu ->
NonZero``):

- ``Trilu`` (opset 14), which onnx2torch lacks, with a constant diagonal offset ``k``;
- ``NonZero`` (opset 9 and 13), replacing onnx2torch 1.5's, which returns
  ``torch.nonzero(x)`` of shape ``(M, rank)`` where ONNX defines ``(rank, M)``.

The tagger's pre-check compares the converted module with ONNX Runtime on probe inputs, so
a converter that disagrees is caught either way.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def register() -> None:
    """Add the converters to onnx2torch's registry (a no-op where it has them already)."""
    import torch
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY as _REGISTRY
    from onnx2torch.node_converters.registry import (
        OperationDescription,
        add_converter,
        get_converter,
    )
    from onnx2torch.utils.common import (
        OnnxMapping,
        OnnxToTorchModule,
        OperationConverterResult,
        get_const_value,
    )

    class OnnxTrilu(torch.nn.Module, OnnxToTorchModule):
        """Upper (``triu``) or lower (``tril``) triangle of the last two axes."""

        def __init__(self, upper: bool, k: int) -> None:
            super().__init__()
            self.upper = upper
            self.k = k

        def forward(self, x: Any) -> Any:
            return torch.triu(x, self.k) if self.upper else torch.tril(x, self.k)

    class OnnxNonZeroT(torch.nn.Module, OnnxToTorchModule):
        """Indices of the non-zero elements, int64 ``(rank, M)`` as ONNX defines them."""

        def forward(self, x: Any) -> Any:
            return torch.nonzero(x).T

    def _nonzero(node: Any, graph: Any) -> Any:
        return OperationConverterResult(
            torch_module=OnnxNonZeroT(),
            onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values),
        )

    for version in (9, 13):
        _REGISTRY[OperationDescription(domain="", operation_type="NonZero",
                                       version=version)] = _nonzero

    try:
        get_converter(operation_type="Trilu", version=14)
        return
    except NotImplementedError:
        pass

    @add_converter(operation_type="Trilu", version=14)
    def _trilu(node: Any, graph: Any) -> Any:
        k = 0
        if len(node.input_values) > 1 and node.input_values[1]:
            try:
                k = int(get_const_value(node.input_values[1], graph))
            except KeyError as exc:
                raise NotImplementedError("Trilu with a dynamic k is not implemented") from exc
        upper = bool(node.attributes.get("upper", 1))
        return OperationConverterResult(
            torch_module=OnnxTrilu(upper, k),
            onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values),
        )
