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
from .layers.checks import is_layer


def _map(fn: Any, x: Any) -> Any:
    if is_array(x):
        return fn(x)
    if not is_layer(x):  # (else fmap would copy it as is)
        raise TypeError(f"expected an array or a model (a layer), got {type(x).__name__}")
    return fmap(fn, x)


def to(xp: ModuleType, x: Any, device: Any = None) -> Any:
    """``x`` (a model or an array) with its arrays in namespace ``xp``, e.g.
    ``tv.to(array_api_strict, model)``, on ``device`` when given (a device of ``xp``, e.g.
    ``array_api_strict.Device("device1")`` or a CuPy device; else where ``xp`` puts new
    arrays). A model is copied; its original is untouched. Everything tinyvec creates while
    training the copy (optimiser state, δ-rules' matrices, one-hot targets, loaded
    parameters) is created on the device of its parameters.

    >>> import array_api_strict as xs, tinyvec as tv
    >>> tv.to(xs, tv.Dense(2, 1), device=xs.Device("device1")).weight.device
    array_api_strict.Device('device1')
    """
    if not (hasattr(xp, "asarray") and hasattr(xp, "astype")):
        raise TypeError(
            f"tv.to(xp, x): xp must be an array namespace (numpy, array_api_strict, "
            f"array_api_compat.torch, jax.numpy, …), got {xp!r}"
        )
    if device is not None:
        try:  # refused now, before any array moves
            xp.zeros((), device=device)
        except Exception as e:
            raise ValueError(
                f"tv.to(xp, x, device=...): {device!r} is not a device of "
                f"{getattr(xp, '__name__', xp)} ({e})"
            ) from None
    return _map(lambda a: to_namespace(xp, a, device), x)


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
