"""Mini-batches of a data set, as Flux's ``DataLoader``: `batches`.

Inputs are features × batch, so a batch is a set of columns: with n samples and batch size
B, batch j holds the columns ``order[jB : (j+1)B]`` of every array (``order`` = 0, 1, …, n−1,
or a fresh permutation per pass with ``shuffle=True``); the last batch keeps the ⌈n/B⌉·B − n
samples short of a full one rather than dropping them. A 1-D array (labels) is one row of
samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..backend import is_array, namespace

__all__ = ["Batches", "batches"]


class Batches:
    """The mini-batches of ``arrays`` (see `batches`): ``len()`` of them per pass, and a new
    pass, reshuffled with ``shuffle``, each time it is iterated, so ``tv.train(...,
    epochs=n)`` sees n passes. A pass yields ``(x_batch, y_batch, …)``, or the batch array
    itself for a single array."""

    def __init__(
        self, arrays: tuple[Any, ...], size: int, shuffle: bool, rng: np.random.Generator | None
    ) -> None:
        self.arrays, self.size, self.shuffle, self.rng = arrays, size, shuffle, rng
        self.n = arrays[0].shape[-1]  # samples: the last axis (columns; a 1-D array's entries)

    def __len__(self) -> int:
        return math.ceil(self.n / self.size)

    def __iter__(self) -> Iterator[Any]:
        order = self.rng.permutation(self.n) if self.rng is not None else None
        for start in range(0, self.n, self.size):
            if order is None:  # views: a batch copies nothing
                columns: Any = slice(start, start + self.size)
                parts = tuple(a[..., columns] for a in self.arrays)
            else:
                columns = order[start : start + self.size]
                parts = tuple(a[..., _indices(a, columns)] for a in self.arrays)
            yield parts if len(parts) > 1 else parts[0]

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(a.shape)) for a in self.arrays)
        how = ", shuffled" if self.shuffle else ""
        return f"Batches({shapes}; {len(self)} of size ≤ {self.size}{how})"


def _indices(a: Any, columns: np.ndarray) -> Any:
    """The permutation's indices as the array library of ``a`` takes them (CuPy: on the GPU)."""
    return columns if type(a) is np.ndarray else namespace(a).asarray(columns)


def batches(
    x: Any,
    y: Any = None,
    size: int | None = None,
    *,
    shuffle: bool = False,
    rng: int | np.random.Generator | None = None,
) -> Batches:
    """The mini-batches of ``(x, y)`` (or of ``x`` alone), ``size`` samples (columns) each:
    batch j is ``(x[:, order[jB:(j+1)B]], y[:, order[jB:(j+1)B]])`` with B = ``size``, the
    last one shorter when B does not divide n. Re-iterable: every pass (every epoch of
    `tv.train`) takes a new permutation ``order`` when ``shuffle``, drawn from ``rng`` (a seed or
    a ``numpy.random.Generator``, whose stream the passes share; None: a fresh unseeded one),
    so the same seed gives the same batches in every run.

    >>> import numpy as np, tinyvec as tv
    >>> x, y = np.arange(10.0).reshape(2, 5), np.arange(5.0).reshape(1, 5)
    >>> loader = tv.batches(x, y, 2)
    >>> len(loader), [yb.tolist() for _, yb in loader]
    (3, [[[0.0, 1.0]], [[2.0, 3.0]], [[4.0]]])
    >>> [xb.shape[1] for xb in tv.batches(x, size=4, shuffle=True, rng=0)]
    [4, 1]
    >>> model = tv.Dense(2, 1, rng=0)
    >>> state = tv.setup(tv.Descent(0.01), model)
    >>> len(tv.train(tv.mse, model, tv.batches(x, y, 2, shuffle=True, rng=0), state, epochs=2,
    ...              progress=False))
    6
    """
    if isinstance(y, int | np.integer) and not isinstance(y, bool):
        raise TypeError(f"batches: y is {y!r}; for x alone, name the size: tv.batches(x, size={y})")
    if size is None:
        raise TypeError("batches: give the batch size, e.g. tv.batches(x, y, 32)")
    arrays = (x,) if y is None else (x, y)
    for name, a in zip(("x", "y"), arrays, strict=False):
        if not is_array(a):
            raise TypeError(
                f"batches: {name} must be an array (features × samples), got {type(a).__name__}"
            )
        if a.ndim == 0:
            raise ValueError(f"batches: {name} is a scalar; give features × samples arrays")
    n = x.shape[-1]
    if y is not None and y.shape[-1] != n:
        raise ValueError(
            f"batches: x has {n} samples (columns) and y {y.shape[-1]}; each batch pairs "
            "columns, so they must have as many"
        )
    if n == 0:
        raise ValueError("batches: x has no samples (0 columns)")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"batches: size must be an integer ≥ 1 (samples per batch), got {size!r}")
    if not isinstance(shuffle, bool):
        raise TypeError(f"batches: shuffle must be True or False, got {shuffle!r}")
    if rng is not None and not shuffle:
        raise ValueError(
            "batches: rng is given but shuffle=False, so it would never be used: pass "
            "shuffle=True to shuffle with it"
        )
    if rng is not None and not (
        isinstance(rng, np.random.Generator)
        or (isinstance(rng, int | np.integer) and not isinstance(rng, bool) and rng >= 0)
    ):
        raise TypeError(
            f"batches: rng must be a seed (an integer ≥ 0) or a numpy.random.Generator, got {rng!r}"
        )
    generator = None
    if shuffle:
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return Batches(arrays, int(size), shuffle, generator)
