"""Array namespaces and devices.

Every array operation in tinyvec goes through ``xp = namespace(x)``, the Python array API
standard namespace of the data: NumPy (whose main namespace implements the standard since
2.0), CuPy, array-api-strict, or anything `array_api_compat` recognises. Nothing in the
engine calls NumPy directly, so the same code runs on the CPU and on a GPU.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

_NAMESPACES: dict[type, ModuleType] = {np.ndarray: np}


def namespace(x: Any) -> ModuleType:
    """The array API namespace of array ``x`` (cached per array type: this is a hot path)."""
    xp = _NAMESPACES.get(type(x))
    if xp is None:
        if isinstance(x, np.generic):  # NumPy reductions return scalars, not 0-d arrays
            return np
        try:
            xp = array_api_compat.array_namespace(x)
        except TypeError:
            raise TypeError(f"expected an array, got {type(x).__name__}") from None
        _NAMESPACES[type(x)] = xp
    return xp


def library(x: Any) -> str:
    """The name of the library an array comes from: "numpy", "torch", "cupy", …"""
    return type(x).__module__.split(".")[0]


def same_namespace(*arrays: Any, what: str) -> ModuleType:
    """The one namespace of ``arrays``; arrays of two libraries are refused with a TypeError
    naming both (converting silently would hide a copy across devices, or fail deep inside
    the other library)."""
    xp = namespace(arrays[0])
    for a in arrays[1:]:
        if namespace(a) is not xp:
            raise TypeError(
                f"{what}: mixes {library(arrays[0])} and {library(a)} arrays; "
                f"move one side with tv.to(namespace, x) (e.g. tv.cpu(x) for NumPy)"
            )
    return xp


def is_array(x: Any) -> bool:
    return type(x) in _NAMESPACES or array_api_compat.is_array_api_obj(x)


def is_real(x: Any) -> bool:
    """Whether array ``x`` holds real numbers (booleans, integers or real floating point): not
    strings, objects, dates or complex numbers, which no loss or layer of tinyvec computes with.

    >>> import numpy as np
    >>> is_real(np.array([1.0])), is_real(np.array(["a"]))
    (True, False)
    """
    return has_kind(x, ("bool", "integral", "real floating"))


def has_kind(x: Any, kinds: tuple[str, ...]) -> bool:
    """Whether array ``x``'s dtype is of one of the array API's ``kinds`` ("bool", "integral",
    "real floating", …); False for a dtype the library's ``isdtype`` does not know."""
    xp = namespace(x)
    try:
        return _dtype_is(xp, x.dtype, kinds)
    except TypeError:  # an unhashable dtype object: asked directly
        return _dtype_is.__wrapped__(xp, x.dtype, kinds)


@functools.cache  # (what isdtype answers depends on the namespace, the dtype and the kinds only)
def _dtype_is(xp: Any, dtype: Any, kinds: tuple[str, ...]) -> bool:
    try:
        return bool(xp.isdtype(dtype, kinds))
    except (TypeError, ValueError):  # a dtype the library's isdtype does not know
        return False


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy (or view) of any array, from any device."""
    if isinstance(x, np.ndarray | np.generic):
        return np.asarray(x)
    if hasattr(x, "get"):  # CuPy: device → host
        return x.get()
    try:
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return np.asarray(x)


def device(x: Any) -> Any:
    """The device array ``x`` lives on (``"cpu"`` for NumPy): every array tinyvec creates for a
    computation on ``x`` is created there (``xp.zeros(..., device=device(x))``)."""
    return array_api_compat.device(x)


def to_namespace(xp: ModuleType, x: Any, device: Any = None) -> Any:
    """Array ``x`` as an array of namespace ``xp`` (copying across devices when needed), on
    ``device`` when given (else where ``xp`` puts a new array)."""
    if is_array(x) and namespace(x) is xp:
        out = x
    elif xp is np or getattr(xp, "__name__", "") == "array_api_compat.numpy":
        out = to_numpy(x)
    elif device is not None:
        return xp.asarray(to_numpy(x), device=device)
    else:
        return xp.asarray(to_numpy(x))
    if device is not None and array_api_compat.device(out) != device:
        out = array_api_compat.to_device(out, device)
    return out


@functools.cache
def cupy() -> ModuleType:
    try:
        import cupy as cp
    except ImportError as e:
        raise RuntimeError(
            'tv.gpu needs CuPy: pip install "tinyvec-autograd[gpu]" (and a CUDA device)'
        ) from e
    if cp.cuda.runtime.getDeviceCount() == 0:
        raise RuntimeError("tv.gpu: CuPy is installed but sees no CUDA device")
    return cp


def has_gpu() -> bool:
    try:
        cupy()
    except Exception:
        return False
    return True


def takes_arrays(fn: Callable[..., Any], n: int) -> bool:
    """Whether ``fn(a_1, …, a_n)`` passes the n arrays as its n inputs: a NumPy ufunc of
    fewer inputs would take the next array as its ``out=`` and write into it (np.cos(A, O)).
    Asked of the functions an activation is made of (`tinyvec.engine.activations`)."""
    if getattr(fn, "nin", n) != n:
        return False
    try:
        inspect.signature(fn).bind(*range(n))
    except TypeError:
        return False
    except ValueError:  # (no signature to read: the call will tell)
        pass
    return True
