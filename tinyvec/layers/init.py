"""Weight initialisers: ``init(shape, rng) -> NumPy array`` (float64, on the host; move a
model with `tv.to`/`tv.gpu`, change precision with `tv.f32`).

``rng`` is a `numpy.random.Generator`, an int seed, or None for the generator of this thread
(and asyncio task), which `tv.seed(n)` resets there: the same seed builds the same model, and
two threads building models never draw from one generator.
"""

from __future__ import annotations

import contextvars
import math
from typing import Any

import numpy as np

# The generator of layers built without ``rng``: per context (thread, asyncio task), made on
# first use there, like `tv.no_grad`'s switch.
_default_rng: contextvars.ContextVar[np.random.Generator] = contextvars.ContextVar("tinyvec_rng")


def seed(n: int) -> None:
    """Reset, in this thread, the generator used when a layer is built without ``rng``."""
    _default_rng.set(np.random.default_rng(n))


def as_rng(rng: Any) -> np.random.Generator:
    if rng is None:
        current = _default_rng.get(None)
        if current is None:
            current = np.random.default_rng()
            _default_rng.set(current)
        return current
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def glorot_uniform(shape: tuple[int, int], rng: Any = None) -> np.ndarray:
    """U(-s, s) with s = √(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), as Flux's default."""
    fan_out, fan_in = shape
    s = math.sqrt(6 / (fan_in + fan_out))
    return as_rng(rng).uniform(-s, s, size=shape)


def glorot_normal(shape: tuple[int, int], rng: Any = None) -> np.ndarray:
    """N(0, 2 / (fan_in + fan_out))."""
    fan_out, fan_in = shape
    return as_rng(rng).normal(0.0, math.sqrt(2 / (fan_in + fan_out)), size=shape)


def kaiming_normal(shape: tuple[int, int], rng: Any = None) -> np.ndarray:
    """N(0, 2 / fan_in), for ReLU networks (He et al. 2015)."""
    return as_rng(rng).normal(0.0, math.sqrt(2 / shape[1]), size=shape)


def scaled(init: Any, factor: float) -> Any:
    """An initialiser ``factor`` times ``init`` (e.g. near-zero skip weights)."""

    def scaled_init(shape: tuple[int, int], rng: Any = None) -> np.ndarray:
        return factor * init(shape, rng)

    scaled_init.__name__ = f"scaled({getattr(init, '__name__', init)}, {factor})"
    return scaled_init


def zeros(shape: tuple[int, ...], rng: Any = None) -> np.ndarray:
    return np.zeros(shape)
