"""Array namespaces: one interface over numpy and torch, so the feature code is written once
(:func:`namespace` picks the backend from the array type), and guarded math (safe sqrt,
angle wrapping) whose torch gradients stay finite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hepsafe.exceptions import InputError


# --------------------------------------------------------------------------- namespaces
class Namespace:
    """The few array operations the features need, on numpy or torch (same signatures).

    ``name`` is ``"numpy"`` or ``"torch"``. Obtain one with :func:`namespace`.
    """

    name = "abstract"
    float32: Any
    float64: Any
    bool_: Any
    # the array functions of _FUNCTIONS (set per instance) and the helpers of both backends
    where: Callable[..., Any]
    log: Callable[..., Any]
    sqrt: Callable[..., Any]
    sin: Callable[..., Any]
    cos: Callable[..., Any]
    sinh: Callable[..., Any]
    arcsinh: Callable[..., Any]
    arctan2: Callable[..., Any]
    floor: Callable[..., Any]
    matmul: Callable[..., Any]
    asarray: Callable[[Any], Any]
    sum: Callable[..., Any]
    stack: Callable[..., Any]
    swap_last: Callable[[Any], Any]
    shape: Callable[[Any], tuple[int, ...]]
    dtype: Callable[[Any], Any]
    is_bool: Callable[[Any], bool]
    zeros: Callable[[tuple[int, ...], Any], Any]
    abs: Callable[..., Any]
    like: Callable[[Any, Any], Any]
    take_rows: Callable[[Any, Any], Any]

    def astype(self, x: Any, dtype: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


#: the array functions the features call, by numpy name -> torch name; every namespace has
#: them as attributes under the numpy name
_FUNCTIONS = {
    "where": "where",
    "log": "log",
    "sqrt": "sqrt",
    "sin": "sin",
    "cos": "cos",
    "sinh": "sinh",
    "arcsinh": "asinh",
    "arctan2": "atan2",
    "floor": "floor",
    "matmul": "matmul",
    "abs": "abs",
}


class _NumpyNamespace(Namespace):
    name = "numpy"
    float64 = np.float64
    float32 = np.float32
    bool_ = np.bool_

    def __init__(self) -> None:
        for name in _FUNCTIONS:
            setattr(self, name, getattr(np, name))

    def asarray(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def astype(self, x: Any, dtype: Any) -> np.ndarray:
        return np.asarray(x).astype(dtype, copy=False)

    def sum(self, x: Any, axis: int, keepdims: bool = False) -> np.ndarray:
        return np.sum(x, axis=axis, keepdims=keepdims)

    def stack(self, xs: Sequence[Any], axis: int) -> np.ndarray:
        return np.stack(list(xs), axis=axis)

    def swap_last(self, x: Any) -> np.ndarray:
        return np.swapaxes(x, -1, -2)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(np.shape(x))

    def dtype(self, x: Any) -> Any:
        return np.asarray(x).dtype

    def is_bool(self, x: Any) -> bool:
        return np.asarray(x).dtype == np.bool_

    def zeros(self, shape: tuple[int, ...], like: Any) -> np.ndarray:
        return np.zeros(shape, dtype=np.asarray(like).dtype)

    def like(self, values: Any, x: Any) -> np.ndarray:
        """``values`` as an array of ``x``'s dtype."""
        return np.asarray(values, dtype=np.asarray(x).dtype)

    def take_rows(self, x: Any, index: Any) -> np.ndarray:
        """``x[j, index[j, k], ...]`` for ``x`` ``(n, m, ...)`` and int ``index`` ``(n, m)``."""
        idx = np.asarray(index).reshape(index.shape + (1,) * (np.ndim(x) - 2))
        return np.take_along_axis(np.asarray(x), idx, axis=1)


class _TorchNamespace(Namespace):
    name = "torch"

    def __init__(self) -> None:
        import torch

        self._t = torch
        self.float64 = torch.float64
        self.float32 = torch.float32
        self.bool_ = torch.bool
        for name, torch_name in _FUNCTIONS.items():
            setattr(self, name, getattr(torch, torch_name))

    def asarray(self, x: Any) -> Any:
        return self._t.as_tensor(x)

    def astype(self, x: Any, dtype: Any) -> Any:
        return x.to(dtype)

    def sum(self, x: Any, axis: int, keepdims: bool = False) -> Any:
        return self._t.sum(x, dim=axis, keepdim=keepdims)

    def stack(self, xs: Sequence[Any], axis: int) -> Any:
        return self._t.stack(list(xs), dim=axis)

    def swap_last(self, x: Any) -> Any:
        return self._t.transpose(x, -1, -2)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype(self, x: Any) -> Any:
        return x.dtype

    def is_bool(self, x: Any) -> bool:
        return x.dtype == self._t.bool

    def zeros(self, shape: tuple[int, ...], like: Any) -> Any:
        return self._t.zeros(shape, dtype=like.dtype, device=like.device)

    def like(self, values: Any, x: Any) -> Any:
        return self._t.as_tensor(np.asarray(values), dtype=x.dtype, device=x.device)

    def take_rows(self, x: Any, index: Any) -> Any:
        idx = self._t.as_tensor(np.asarray(index), device=x.device)
        idx = idx.reshape(tuple(idx.shape) + (1,) * (x.dim() - 2)).expand(x.shape)
        return self._t.gather(x, 1, idx)


_NUMPY = _NumpyNamespace()
_TORCH: _TorchNamespace | None = None


def _torch_namespace() -> _TorchNamespace:
    global _TORCH
    if _TORCH is None:
        _TORCH = _TorchNamespace()
    return _TORCH


def namespace(*arrays: Any) -> Namespace:
    """The namespace of ``arrays``: torch if any is a ``torch.Tensor``, else numpy.

    Also accepts the modules themselves (``numpy``, ``torch``) or a :class:`Namespace`.
    """
    for a in arrays:
        if isinstance(a, Namespace):
            return a
        mod = getattr(a, "__name__", None) if isinstance(a, type(np)) else None
        if mod == "torch" or type(a).__module__.split(".")[0] == "torch":
            return _torch_namespace()
    return _NUMPY


def as_namespace(xp: Any, arrays: Sequence[Any] = ()) -> Namespace:
    """``xp`` (numpy, torch, a Namespace, or None: from ``arrays``) as a :class:`Namespace`."""
    return _resolve(xp, arrays)


def _resolve(xp: Any, arrays: Sequence[Any]) -> Namespace:
    if xp is None:
        return namespace(*arrays)
    if isinstance(xp, Namespace):
        return xp
    name = getattr(xp, "__name__", None)
    if name == "numpy":
        return _NUMPY
    if name == "torch":
        return _torch_namespace()
    raise InputError(f"array namespace must be numpy, torch or None (auto), got {xp!r}")


# --------------------------------------------------------------------------- safe math
def _nan_or_zero(xp: Namespace, x: Any) -> Any:
    """NaN where x is NaN, else 0: the fallback of a guarded expression, so that NaN input
    stays visible (and is reported) instead of being silently replaced."""
    return xp.where(x != x, x, 0.0)


def _safe_sqrt(xp: Namespace, x: Any) -> Any:
    """sqrt(x) for x > 0, 0 for x <= 0, NaN for NaN; gradient finite for finite x."""
    ok = x > 0
    return xp.where(ok, xp.sqrt(xp.where(ok, x, 1.0)), _nan_or_zero(xp, x))


def _wrap(xp: Namespace, x: Any) -> Any:
    """Angle wrapped to (-pi, pi] (via atan2 of sin and cos: smooth, gradient 1)."""
    return xp.arctan2(xp.sin(x), xp.cos(x))
