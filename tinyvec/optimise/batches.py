"""Mini-batches of a data set, as Flux's ``DataLoader``: `batches`.

Inputs are features × batch, so a batch is a set of columns: with n samples and batch size
B, batch j holds the columns ``order[jB : (j+1)B]`` of every array (``order`` = 0, 1, …, n−1,
or a fresh permutation per pass with ``shuffle=True``); the last batch keeps the ⌈n/B⌉·B − n
samples short of a full one rather than dropping them. A 1-D array (labels) is one row of
samples.

`stack_batches`: the batches of E loaders side by side, member e's from loader e, for a stack of
E models (`tv.stack`) in which each member reads its own data in its own order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any

import numpy as np

from ..backend import is_array, namespace, same_namespace

__all__ = ["Batches", "StackedBatches", "batches", "stack_batches"]


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


class StackedBatches:
    """The batches of E loaders (see `stack_batches`), each array of a step the E members'
    arrays stacked on a new leading axis: ``len()`` batches per pass (the loaders' common
    length), and a new pass of every loader each time it is iterated."""

    def __init__(self, loaders: Sequence[Iterable[Any]]) -> None:
        self.loaders = list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0])  # type: ignore[arg-type]  # (all Sized: stack_batches)

    def __iter__(self) -> Iterator[Any]:
        end = object()  # what a loader that has ended gives (arrays cannot be compared with ==)
        iterators = [iter(loader) for loader in self.loaders]
        for j in itertools.count():
            parts = [next(it, end) for it in iterators]
            ended = [e for e, p in enumerate(parts) if p is end]
            if len(ended) == len(parts):
                return
            if ended:
                raise ValueError(
                    f"stack_batches: loader {ended[0]} ended after {j} batches while loader "
                    f"{parts.index(next(p for p in parts if p is not end))} gave batch {j + 1}; "
                    "every member needs a batch at every step: give loaders of one length"
                )
            yield _stacked(parts, j)

    def __repr__(self) -> str:
        return f"StackedBatches({len(self.loaders)} loaders of {len(self)} batches)"


def _stacked(parts: list[Any], j: int) -> Any:
    """Batch ``j`` of every loader (each an array or a tuple of arrays) as one: its k-th array
    the E loaders' k-th arrays stacked on a new leading axis, after checking that they can be."""
    tuples = [p if isinstance(p, tuple) else (p,) for p in parts]
    count = len(tuples[0])
    for e, t in enumerate(tuples):
        if len(t) != count or not all(is_array(a) for a in t):
            raise ValueError(
                f"stack_batches: at batch {j}, loader {e} gives {_kinds(parts[e])} and loader 0 "
                f"{_kinds(parts[0])}; each loader must give the same arrays, e.g. (x, y)"
            )
    stacked = []
    for k in range(count):
        arrays = [t[k] for t in tuples]
        xp = same_namespace(*arrays, what="stack_batches")
        for e, a in enumerate(arrays):
            if tuple(a.shape) != tuple(arrays[0].shape) or a.dtype != arrays[0].dtype:
                raise ValueError(
                    f"stack_batches: at batch {j}, array {k} of loader {e} is "
                    f"{tuple(a.shape)} {a.dtype} and of loader 0 {tuple(arrays[0].shape)} "
                    f"{arrays[0].dtype}; the members' batches must have one shape and dtype "
                    "to stack (the same batch size and data set size in every loader)"
                )
        stacked.append(xp.stack(arrays))
    return tuple(stacked) if isinstance(parts[0], tuple) else stacked[0]


def _kinds(part: Any) -> str:
    """What a loader gave, for an error message: "(array, array)", "array", "a list"."""
    if isinstance(part, tuple):
        return "(" + ", ".join("array" if is_array(a) else type(a).__name__ for a in part) + ")"
    return "array" if is_array(part) else f"a {type(part).__name__}"


def stack_batches(loaders: Sequence[Iterable[Any]]) -> StackedBatches | Iterator[Any]:
    """The batches of E loaders for a stack of E models (`tv.stack`), member e's from loader e:
    step j gives ``(x, y)`` with x the E loaders' batches j of x stacked on a new leading axis,
    (E, features, batch), and y likewise (one array per step when the loaders give one). So
    each member of the stack reads its own data in its own order, exactly as its run alone
    would read ``loaders[e]``.

    Every loader must give as many batches, and at each step arrays of one shape and dtype
    (the same batch size and data set size), else a ValueError says which loader differs.
    With loaders that can be iterated again (`tv.batches`, lists) the result can too, one
    pass of each per pass; if any is a one-shot iterator (a generator), the result is one.

    >>> import numpy as np, tinyvec as tv
    >>> x, y = np.arange(10.0).reshape(2, 5), np.arange(5.0).reshape(1, 5)
    >>> loaders = lambda: [tv.batches(x, y, 2, shuffle=True, rng=s) for s in range(3)]
    >>> loader = tv.stack_batches(loaders())
    >>> len(loader), [xb.shape for xb, _ in loader]
    (3, [(3, 2, 2), (3, 2, 2), (3, 2, 1)])
    >>> xb, yb = next(iter(tv.stack_batches(loaders())))
    >>> x1, y1 = next(iter(loaders()[1]))  # member 1's first batch, its loader alone
    >>> np.array_equal(xb[1], x1) and np.array_equal(yb[1], y1)
    True
    >>> model = tv.stack([tv.Dense(2, 1, rng=s) for s in range(3)])
    >>> history = tv.train(lambda m, x, y: tv.mse(m(x), y, members=True), model, loader,
    ...                    tv.setup(tv.Descent(0.01), model), epochs=2, progress=False)
    >>> len(history), len(history[0])  # 2 passes of 3 steps; each step's 3 member losses
    (6, 3)
    """
    if not isinstance(loaders, list | tuple) or not loaders:
        raise TypeError(
            f"stack_batches takes a non-empty list of loaders, one per member (e.g. "
            f"[tv.batches(x_e, y_e, 32) for each e]), got {type(loaders).__name__}"
        )
    for e, loader in enumerate(loaders):
        if is_array(loader) or not isinstance(loader, Iterable):
            raise TypeError(
                f"stack_batches: loader {e} is {type(loader).__name__}, not a loader; give one "
                "iterable of batches per member (tv.batches, a list of (x, y), a generator)"
            )
    stacked = StackedBatches(loaders)
    if any(iter(loader) is loader or not isinstance(loader, Sized) for loader in loaders):
        return iter(stacked)  # one pass, as a one-shot loader gives
    lengths = [len(loader) for loader in loaders]  # (all Sized: checked above)
    if len(set(lengths)) > 1:
        raise ValueError(
            f"stack_batches: the loaders give {lengths} batches per pass; every member needs "
            "a batch at every step: give loaders of one length (the same data set size and "
            "batch size)"
        )
    return stacked
