"""Σ a², ‖a‖ and cos(a, b) of the arrays a step leaves behind, as the measurements report them
(the `Recorder`, `tinyvec.analysis`): a Python float for one run's array, or, with
``members`` (a stack's record, member axis first: `tv.stack`), a float64 array of each
member's value. A member's sum runs over that member's own axes, which adds its numbers in
the order of the sum over its array alone, and its result is a float64 as a run's Python
float is, so that what is computed from it (a ratio, a square) is too: a member measures as
its run alone does, in float32 as in float64.

    >>> import numpy as np
    >>> a = np.array([[3.0, 0.0], [0.0, 4.0]])
    >>> sqnorm(a), norm(a), cos(a, 2 * a)
    (25.0, 5.0, 1.0)
    >>> norm(np.stack([a, 2 * a]), members=True)
    array([ 5., 10.])
"""

from __future__ import annotations

import math
from typing import Any

from .backend import namespace

__all__ = ["cos", "norm", "sqnorm"]


def _sum(a: Any, members: bool) -> Any:
    """Σ over all of ``a``, or over each member's axes (all but the first)."""
    return namespace(a).sum(a, axis=tuple(range(1, a.ndim)) if members else None)


def _float(v: Any, members: bool) -> Any:
    """A run's value as a Python float; each member's as float64 (the same numbers)."""
    if not members:
        return float(v)
    xp = namespace(v)
    return xp.astype(v, xp.float64)


def sqnorm(a: Any, members: bool = False) -> Any:
    """Σ a², the squared Frobenius norm."""
    return _float(_sum(a * a, members), members)


def norm(a: Any, members: bool = False) -> Any:
    """‖a‖_F = √(Σ a²), the root taken in ``a``'s dtype."""
    return _float(namespace(a).sqrt(_sum(a * a, members)), members)


def cos(a: Any, b: Any, members: bool = False) -> Any:
    """cos(a, b) = ⟨a, b⟩ / (‖a‖ ‖b‖); NaN where either is 0 (no direction)."""
    denom = norm(a, members) * norm(b, members)
    dot = _float(_sum(a * b, members), members)
    if members:
        xp = namespace(denom)
        return xp.where(denom > 0, dot / xp.where(denom > 0, denom, 1.0), math.nan)
    return dot / denom if denom > 0 else math.nan
