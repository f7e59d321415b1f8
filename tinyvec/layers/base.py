"""The layer protocol, and the tree walks every other part is built on.

A layer is any callable object that names two things:

- ``params``: the attributes holding the arrays training changes (e.g. ``("weight", "bias")``;
  an attribute that is ``None`` is skipped);
- ``children``: the attributes holding sub-layers, each a layer or a tuple of layers.

That is all `gradient`, `setup`/`update`, `tv.to`, `save`/`load` and printing need (Flux gets
the same from Functors.jl). Inside `tv.gradient` each parameter attribute temporarily holds a
`Tensor`, so a layer's ``__call__`` written with ordinary operators is differentiated
automatically; outside it holds a plain array. See ``examples/custom_layer.py``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

from ..backend import namespace
from ..engine.plan import CACHE, plan_of
from ..engine.tensor import data


class DimensionMismatch(ValueError):
    """An input of the wrong shape for a layer (the message names the layer and the sizes)."""


class Layer:
    """Base class for layers. A layer is a callable object that names two things:

    - ``params``: the attributes holding the arrays training changes, e.g.
      ``("weight", "bias")`` (an attribute that is ``None`` is skipped);
    - ``children``: the attributes holding sub-layers, each a layer or a tuple of layers;
    - optionally ``structure``: other attributes that decide what the layer computes (Dense's
      ``sigma``); replacing one of them is a new model for tinyvec's cached plans.

    `tv.gradient`, `tv.setup`/`tv.update`, `tv.save`/`tv.load`, `tv.to`/`tv.f32` and
    ``print(model)`` need nothing else. Inside `tv.gradient` each parameter attribute holds a
    `tv.Tensor`, so a ``__call__`` written with ordinary operators and `tv.ops` functions is
    differentiated without a backward pass of its own; check it with `tv.gradcheck`. Inputs
    are features × batch. Subclassing is optional (any object with the two names works); it
    gives ``print(model)``, a default repr naming the parameter shapes, and pickling that
    keeps arrays, never graph nodes.

    >>> import numpy as np, tinyvec as tv
    >>> class Scale(tv.Layer):
    ...     params = ("scale",)
    ...     def __init__(self, n):
    ...         self.scale = np.ones(n)
    ...     def __call__(self, x):
    ...         return tv.ops.reshape(self.scale, (self.scale.shape[0], 1)) * x
    >>> Scale(3)
    Scale(scale=(3,))
    >>> tv.gradient(lambda m: tv.ops.sum(m(np.ones((3, 2)))), Scale(3))["scale"]
    array([2., 2., 2.])
    """

    params: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    structure: tuple[str, ...] = ()

    def __call__(self, x: Any) -> Any:  # pragma: no cover - every layer defines it
        raise NotImplementedError

    def __str__(self) -> str:
        return show(self)

    def __repr__(self) -> str:
        # the parameter shapes, not an address: `print(model)` lists this line per leaf layer
        shapes = [
            f"{name}={tuple(data(getattr(self, name)).shape)}"
            for name in self.params
            if getattr(self, name, None) is not None
        ]
        return f"{type(self).__name__}({', '.join(shapes)})"

    def __getstate__(self) -> dict[str, Any]:
        # a pickled or copied layer keeps arrays: a graph node it recorded (the closures of
        # a backward pass) neither pickles nor belongs in a copy
        return {k: data(v) for k, v in vars(self).items()}


def child_layers(layer: Any) -> Iterator[tuple[str, Any]]:
    """(path suffix, sub-layer) for each child of ``layer``: ``.layer`` or ``.layers[2]``."""
    for name in getattr(layer, "children", ()):
        value = getattr(layer, name)
        if isinstance(value, tuple | list):
            for i, sub in enumerate(value):
                yield f".{name}[{i}]", sub
        elif value is not None:
            yield f".{name}", value


def walk(model: Any) -> Iterator[tuple[str, Any]]:
    """(path, layer) for ``model`` and every layer inside it, in forward (depth) order (a
    shared layer at each of its places): a view of the model's `Plan`."""
    yield from plan_of(model).layers()


def trainables(model: Any) -> Iterator[tuple[str, Any, str]]:
    """(path, layer, name) for every parameter array, each shared layer once: a view of the
    model's `Plan`. A path also indexes the gradient and optimiser trees:
    ``grads[path]``.

    >>> import tinyvec as tv
    >>> [path for path, _, _ in tv.trainables(tv.Chain(tv.Dense(2, 1, bias=False)))]
    ['model.layers[0].weight']
    """
    yield from plan_of(model).trainables


def fmap(fn: Callable[[Any], Any], model: Any) -> Any:
    """A copy of ``model`` with ``fn`` applied to every parameter array (Functors' ``fmap``);
    the recorded activations of the copy are cleared, and a shared layer stays shared."""
    kept = CACHE in getattr(model, "__dict__", {})
    plan = plan_of(model)
    if not kept:  # leave no plan on a model that had none: ``tv.f32(build())`` drops it, and
        # the plan and its model refer to each other, so its arrays would wait for the collector
        getattr(model, "__dict__", {}).pop(CACHE, None)
    done: dict[int, Any] = {}
    for node in reversed(plan.nodes):  # children before their parents
        layer = node.layer
        if id(layer) in done:
            continue
        new = copy.copy(layer)
        done[id(layer)] = new
        if CACHE in getattr(new, "__dict__", {}):  # the original's plan is not the copy's
            del new.__dict__[CACHE]
        if hasattr(new, "forget"):
            new.forget()
        for name in node.present:
            setattr(new, name, fn(data(getattr(layer, name))))
        for attr, kids, many in node.slots:
            subs = [done[id(plan.nodes[k].layer)] for k in kids]
            setattr(new, attr, type(getattr(layer, attr))(subs) if many else subs[0])
    return done[id(model)]


def nparams(layer: Any) -> tuple[int, int, int]:
    """(arrays, parameters, bytes) of ``layer`` and everything inside it."""
    arrays = count = nbytes = 0
    for _, owner, name in trainables(layer):
        a = data(getattr(owner, name))
        n = math.prod(a.shape)  # not a.size: a method on torch tensors
        arrays += 1
        count += n
        nbytes += n * namespace(a).finfo(a.dtype).bits // 8
    return arrays, count, nbytes


# --- printing, in Flux's style --------------------------------------------------------------
def show(model: Any) -> str:
    """Multi-line summary: a line per leaf layer with its parameter count, then a total."""
    lines: list[str] = []
    _show(model, 0, lines, comma="")
    if list(child_layers(model)):
        arrays, count, nbytes = nparams(model)
        lines[-1] = lines[-1].ljust(20) + (
            f"# Total: {arrays} arrays, {count:_} parameters, {nbytes / 1024:.3f} KiB."
        )
    return "\n".join(lines)


def _show_items(layer: Any) -> list[Any]:
    """What a container prints between its parentheses: sub-layers, and strings such as "+"."""
    if hasattr(layer, "show_items"):
        return list(layer.show_items())
    return [c for _, c in child_layers(layer)]


def _show(item: Any, depth: int, lines: list[str], comma: str) -> None:
    indent = "  " * depth
    items = [] if isinstance(item, str) else _show_items(item)
    if not items:
        text = f"{indent}{item if isinstance(item, str) else repr(item)}{comma}"
        count = 0 if isinstance(item, str) else nparams(item)[1]
        lines.append(text.ljust(40) + f"# {count:_} parameters" if count else text)
        return
    lines.append(f"{indent}{type(item).__name__}(")
    for sub in items:
        _show(sub, depth + 1, lines, comma=",")
    lines.append(f"{indent}){comma}")
