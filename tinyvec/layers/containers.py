"""Layers made of layers: Chain, SkipConnection, Parallel, and `activations`."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator
from typing import Any

from .. import seam
from ..engine import ops
from ..engine.errors import DimensionMismatch
from ..engine.tensor import data
from .base import Layer, nested_call, nested_repr


def add(*xs: Any) -> Any:
    """x₁ + x₂ + …: the usual connection of SkipConnection and Parallel (prints as ``+``)."""
    return xs[0] + xs[1] if len(xs) == 2 else functools.reduce(operator.add, xs)


def mul(*xs: Any) -> Any:
    """x₁ ⊙ x₂ ⊙ … elementwise (prints as ``*``)."""
    return functools.reduce(operator.mul, xs)


_SYMBOLS = {add: "+", operator.add: "+", mul: "*", operator.mul: "*", ops.vcat: "vcat"}


def _name(f: Callable) -> str:
    return _SYMBOLS.get(f, getattr(f, "__name__", repr(f)))


class Chain(Layer):
    """``Chain(layer₁, layer₂, …)``: x ↦ layer_n(…layer₂(layer₁(x))).

    Indexing gives a layer, slicing a Chain; ``len`` and iteration work as for a tuple.

    >>> import numpy as np, tinyvec as tv
    >>> m = tv.Chain(tv.Dense(2, 3, tv.relu, rng=0), tv.Dense(3, 1, rng=0))
    >>> m[0], len(m), m[1:]
    (Dense(2 => 3, relu), 2, Chain(Dense(3 => 1)))
    >>> m(np.ones((2, 4))).shape
    (1, 4)
    """

    children = ("layers",)
    records = ("input",)

    def __init__(self, *layers: Any) -> None:
        if len(layers) == 1 and isinstance(layers[0], list | tuple):
            layers = tuple(layers[0])
        self.layers = tuple(layers)

    @nested_call  # (a model nested deeper than Python's recursion limit runs)
    def __call__(self, x: Any) -> Any:
        self.input = data(x)  # kept (a reference) so a δ-rule sweep can rerun the forward pass
        fast = seam.road()  # the fast road may run the whole Chain as one written program
        if fast is not None:
            out = fast.chain_call(self, x)
            if out is not NotImplemented:
                return out
        for i, layer in enumerate(self.layers):
            try:
                x = layer(x)
            except DimensionMismatch as e:
                e.add_note(f"  in Chain layer [{i}]")
                raise
        return x

    def __getitem__(self, i: int | slice) -> Any:
        return Chain(*self.layers[i]) if isinstance(i, slice) else self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)

    def __repr__(self) -> str:
        return nested_repr(self)

    def repr_with(self, layers: list[str]) -> str:
        return f"Chain({', '.join(layers)})"


class SkipConnection(Layer):
    """``SkipConnection(layer, connection)``: x ↦ connection(layer(x), x), e.g. ``tv.add`` for
    a residual block or ``tv.vcat`` to stack features (the order is Flux's).

    >>> import numpy as np, tinyvec as tv
    >>> s = tv.SkipConnection(tv.Dense(2, 2, rng=0), tv.add)
    >>> s
    SkipConnection(Dense(2 => 2), +)
    >>> x = np.ones((2, 3))
    >>> bool(np.allclose(s(x), s.layer(x) + x))
    True
    """

    children = ("layer",)
    structure = ("connection",)
    records = ("input",)

    def __init__(self, layer: Any, connection: Callable[[Any, Any], Any]) -> None:
        self.layer, self.connection = layer, connection

    @nested_call
    def __call__(self, x: Any) -> Any:
        self.input = data(x)
        y = self.layer(x)
        try:
            return self.connection(y, x)
        except (ValueError, TypeError) as e:
            raise DimensionMismatch(
                f"{self!r}: connection {_name(self.connection)} cannot combine the layer's "
                f"output of shape {tuple(data(y).shape)} with the input of shape "
                f"{tuple(data(x).shape)} ({e})"
            ) from e

    def show_items(self) -> list[Any]:
        return [self.layer, _name(self.connection)]

    def __repr__(self) -> str:
        return nested_repr(self)

    def repr_with(self, layer: list[str]) -> str:
        return f"SkipConnection({layer[0]}, {_name(self.connection)})"


class Parallel(Layer):
    """``Parallel(connection, layer₁, layer₂, …)``: x ↦ connection(layer₁(x), layer₂(x), …);
    given a tuple of inputs, layer i gets input i.

    >>> import numpy as np, tinyvec as tv
    >>> p = tv.Parallel(tv.vcat, tv.Dense(2, 3, rng=0), tv.Dense(2, 1, rng=0))
    >>> p(np.ones((2, 5))).shape
    (4, 5)
    """

    children = ("layers",)
    structure = ("connection",)
    records = ("input",)

    def __init__(self, connection: Callable[..., Any], *layers: Any) -> None:
        self.connection, self.layers = connection, tuple(layers)

    @nested_call
    def __call__(self, x: Any) -> Any:
        self.input = data(x)
        if isinstance(x, tuple):
            if len(x) != len(self.layers):
                raise DimensionMismatch(
                    f"{self!r} has {len(self.layers)} layers but got {len(x)} inputs"
                )
            ys = [layer(xi) for layer, xi in zip(self.layers, x, strict=True)]
        else:
            ys = [layer(x) for layer in self.layers]
        try:
            return self.connection(*ys)
        except (ValueError, TypeError) as e:
            shapes = ", ".join(str(tuple(data(y).shape)) for y in ys)
            raise DimensionMismatch(
                f"{self!r}: connection {_name(self.connection)} cannot combine outputs of shapes {shapes} ({e})"
            ) from e

    def show_items(self) -> list[Any]:
        return [_name(self.connection), *self.layers]

    def __repr__(self) -> str:
        return nested_repr(self)

    def repr_with(self, layers: list[str]) -> str:
        return f"Parallel({_name(self.connection)}, {', '.join(layers)})"


def activations(chain: Chain, x: Any) -> list[Any]:
    """The output of every layer of ``chain`` on input ``x`` (Flux's ``activations``)."""
    outputs = []
    for layer in chain:
        x = layer(x)
        outputs.append(x)
    return outputs
