"""Moving models and arrays between array namespaces, devices and precisions (Flux's names).

>>> import numpy as np, tinyvec as tv
>>> m = tv.f32(tv.Chain(tv.Dense(2, 3, rng=0)))
>>> m[0].weight.dtype
dtype('float32')
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .backend import cupy, is_array, namespace, to_namespace
from .layers.base import fmap


def _map(fn: Any, x: Any) -> Any:
    if is_array(x):
        return fn(x)
    if not (hasattr(x, "params") or hasattr(x, "children")):  # else fmap would copy it as is
        raise TypeError(f"expected an array or a model (a layer), got {type(x).__name__}")
    return fmap(fn, x)


def to(xp: ModuleType, x: Any) -> Any:
    """``x`` (a model or an array) with its arrays in namespace ``xp``, e.g.
    ``tv.to(array_api_strict, model)``. A model is copied; its original is untouched."""
    if not (hasattr(xp, "asarray") and hasattr(xp, "astype")):
        raise TypeError(
            f"tv.to(xp, x): xp must be an array namespace (numpy, array_api_strict, "
            f"array_api_compat.torch, jax.numpy, …), got {xp!r}"
        )
    return _map(lambda a: to_namespace(xp, a), x)


def gpu(x: Any) -> Any:
    """``x`` on the GPU through CuPy (``pip install "tinyvec-autograd[gpu]"``)."""
    return to(cupy(), x)


def cpu(x: Any) -> Any:
    """``x`` back in NumPy on the host."""
    return to(np, x)


def _cast(x: Any, dtype_name: str) -> Any:
    def cast(a: Any) -> Any:
        xp = namespace(a)
        return xp.astype(a, getattr(xp, dtype_name)) if xp.isdtype(a.dtype, "real floating") else a

    return _map(cast, x)


def f32(x: Any) -> Any:
    """``x`` with float32 parameters (arrays: float32 values)."""
    return _cast(x, "float32")


def f64(x: Any) -> Any:
    """``x`` with float64 parameters (arrays: float64 values)."""
    return _cast(x, "float64")
