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

import contextlib
import contextvars
import copy
import functools
import math
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .. import display
from ..backend import namespace
from ..engine.errors import DimensionMismatch
from ..engine.tensor import data
from ..nested import Nested
from ..seam import CACHE
from .checks import refuse_misnamed

__all__ = [
    "DimensionMismatch",
    "Layer",
    "Node",
    "Tree",
    "fmap",
    "match",
    "mirror",
    "nested_call",
    "nodes",
    "nparams",
    "show",
    "trainables",
    "walk",
]


class Layer:
    """Base class for layers. A layer is a callable object that names two things:

    - ``params``: the attributes holding the arrays training changes, e.g.
      ``("weight", "bias")`` (an attribute that is ``None`` is skipped);
    - ``children``: the attributes holding sub-layers, each a layer or a tuple of layers;
    - optionally ``structure``: other attributes that decide what the layer computes (Dense's
      ``sigma``); replacing one of them is a new model for the fast road's cached plans;
    - optionally ``records`` (what a pass leaves on the layer, such as Dense's ``input``) and
      ``constants`` (arrays or layers that training must not change): any other floating-point
      array or layer on a layer is refused at first use, since training would silently never
      move it, and so is a parameter of integers (`tinyvec.layers.checks`).

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
    records: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()

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

    def _repr_html_(self) -> str:  # Jupyter: the printed tree, NaN/inf parameters flagged
        return display.model_html(show(self), _arrays(self))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython: the same as text
        p.text(display.model_text(show(self), _arrays(self)))

    def __init_subclass__(cls, **kwargs: Any) -> None:  # IPython asks a class's own __repr__
        super().__init_subclass__(**kwargs)  # before an inherited _repr_pretty_: give it one
        cls._repr_pretty_ = Layer._repr_pretty_  # type: ignore[method-assign]

    def __getstate__(self) -> dict[str, Any]:
        # a pickled or copied layer keeps arrays: a graph node it recorded (the closures of
        # a backward pass) neither pickles nor belongs in a copy
        # (nor does the fast road's cache, which belongs to the original)
        return {k: data(v) for k, v in vars(self).items() if k != CACHE}

    # Copies and pickles without recursion, so a model nested thousands of containers deep
    # copies and pickles (Python's own walk would recurse once per level).
    def __copy__(self) -> Any:
        """A shallow copy (as `copy.copy` makes by default): the same children, arrays kept."""
        new = _shell(type(self))
        _set_state(new, self.__getstate__())
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """A deep copy made layer by layer from a flat list (see `_flatten`); a layer shared
        in the model, or with the rest of what `copy.deepcopy` copies, stays shared."""
        layers, states = _flatten(self)
        shells = []
        for layer in layers:
            if id(layer) not in memo:
                memo[id(layer)] = _shell(type(layer))
            shells.append(memo[id(layer)])
        for shell, state in zip(shells, states, strict=True):
            _set_state(shell, _resolve(copy.deepcopy(state, memo), shells))
        return shells[0]

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """A pickle of the layer and every layer inside it as one flat list (`_flatten`):
        constant depth for any nesting. Layers shared inside it stay shared."""
        layers, states = _flatten(self)
        return _rebuild, ([type(layer) for layer in layers], states)


class _Ref:
    """In a flattened state (`_flatten`), the place of a sub-layer: its index in the list."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return _Ref, (self.index,)


def _flatten(model: Layer) -> tuple[list[Any], list[dict[str, Any]]]:
    """``model`` and every `Layer` inside it (through ``children``), each once, and the state
    of each (its ``__getstate__``) with each sub-layer in a child attribute replaced by a
    `_Ref` to its index: a flat list, whatever the depth. A child that is not a `Layer` (or
    that has a state other than a dict) stays in its parent's state as it is."""
    layers: list[Any] = [model]
    index = {id(model): 0}
    states: list[dict[str, Any]] = []
    i = 0
    while i < len(layers):  # (the list grows while it is read: breadth first)
        layer = layers[i]
        state = layer.__getstate__()
        for attr in getattr(layer, "children", ()):
            value = state.get(attr)
            many = isinstance(value, tuple | list)
            refs = []
            for sub in value if many else [value]:
                if isinstance(sub, Layer) and isinstance(sub.__getstate__(), dict):
                    if id(sub) not in index:
                        index[id(sub)] = len(layers)
                        layers.append(sub)
                    sub = _Ref(index[id(sub)])
                refs.append(sub)
            state[attr] = type(value)(refs) if many else refs[0]
        states.append(state)
        i += 1
    return layers, states


def _resolve(state: dict[str, Any], shells: list[Any]) -> dict[str, Any]:
    """``state`` with each `_Ref` (in an attribute or a tuple/list of one) replaced by its layer."""

    def one(v: Any) -> Any:
        return shells[v.index] if type(v) is _Ref else v

    return {
        k: type(v)(one(x) for x in v) if isinstance(v, tuple | list) else one(v)
        for k, v in state.items()
    }


def _shell(cls: Any) -> Any:
    """An instance of ``cls`` made without ``__init__`` (as pickle makes one before its state)."""
    return cls.__new__(cls)


def _set_state(obj: Any, state: dict[str, Any]) -> None:
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
    else:
        obj.__dict__.update(state)


def _rebuild(classes: list[type], states: list[dict[str, Any]]) -> Any:
    """The model `Layer.__reduce_ex__` pickled: a shell per layer, then every state."""
    shells = [_shell(cls) for cls in classes]
    for shell, state in zip(shells, states, strict=True):
        _set_state(shell, _resolve(state, shells))
    return shells[0]


# --- room on the Python stack for a forward pass through deeply nested containers -----------
# How many container calls are nested here (per thread and asyncio task, as `tv.no_grad`).
_LEVEL: contextvars.ContextVar[int] = contextvars.ContextVar("tinyvec_nesting", default=0)
_STRIDE = 32  # every this many nested container calls ask for room for as many more
_FRAMES = 8  # the Python frames (and C calls) one level may use, with a margin


def nested_call(call: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Decorator for a container's ``__call__``. A forward pass is recursive by nature (a
    Chain calls its layers, which may be Chains): a model 1,000 containers deep would exceed
    Python's recursion limit (1,000 frames). So every `_STRIDE` nested container calls raise
    the limit (`sys.setrecursionlimit`) by what the next `_STRIDE` levels need, and put it back
    when they return: a model of any depth runs, and a shallow one never touches the limit.
    (The limit is the interpreter's: two threads that nest deeply at once may each see the
    other's raise; neither lowers it below the other's.)"""

    @functools.wraps(call)
    def nested(self: Any, x: Any) -> Any:
        level = _LEVEL.get()
        token = _LEVEL.set(level + 1)
        try:
            if level % _STRIDE != _STRIDE - 1:
                return call(self, x)
            with _more_room(_STRIDE * _FRAMES):
                return call(self, x)
        finally:
            _LEVEL.reset(token)

    return nested


@contextlib.contextmanager
def _more_room(frames: int) -> Iterator[None]:
    """Inside this block Python's recursion limit is ``frames`` higher."""
    old = sys.getrecursionlimit()
    new = old + frames
    sys.setrecursionlimit(new)
    try:
        yield
    finally:
        if sys.getrecursionlimit() == new:  # (else another thread changed it: leave it)
            sys.setrecursionlimit(old)


def _arrays(model: Any) -> list[tuple[str, Any]]:
    return [(path, data(getattr(owner, name))) for path, owner, name in trainables(model)]


def child_layers(layer: Any) -> Iterator[tuple[str, Any]]:
    """(path suffix, sub-layer) for each child of ``layer``: ``.layer`` or ``.layers[2]``."""
    for name in getattr(layer, "children", ()):
        value = getattr(layer, name)
        if isinstance(value, tuple | list):
            for i, sub in enumerate(value):
                yield f".{name}[{i}]", sub
        elif value is not None:
            yield f".{name}", value


# --- the walk: every place of every layer, once --------------------------------------------
class Node:
    """One place of a layer in a model: its ``path`` (``model.layers[1].layer``), its parameter
    names (``names``, in the order of ``params``; ``present`` those holding an array), its
    children as ``slots`` (attribute, indices of the child nodes, whether a tuple/list), the
    child attributes holding None (``empty``), and ``first``: False at the second and later
    places of a shared layer (which has one set of arrays, so one gradient and one update)."""

    __slots__ = ("empty", "first", "layer", "names", "path", "present", "slots")

    def __init__(self, path: str, layer: Any, first: bool) -> None:
        self.path, self.layer, self.first = path, layer, first
        refuse_misnamed(layer)  # (what training would silently get wrong: .checks)
        self.names = tuple(getattr(layer, "params", ()))
        self.present = tuple(n for n in self.names if getattr(layer, n) is not None)
        self.slots: list[tuple[str, list[int], bool]] = []
        self.empty: list[str] = []


def nodes(model: Any) -> list[Node]:
    """Every place of every layer of ``model`` in forward (depth-first) order: the one walk
    over the ``params`` / ``children`` protocol that everything else reads. Iterative, so a
    model nested thousands of containers deep is fine; a model that contains itself is refused.

    >>> import tinyvec as tv
    >>> model = tv.Chain(tv.Dense(2, 3), tv.SkipConnection(tv.Dense(3, 3), tv.add))
    >>> [node.path for node in nodes(model)]
    ['model', 'model.layers[0]', 'model.layers[1]', 'model.layers[1].layer']
    """
    out: list[Node] = []
    seen: set[int] = set()
    ancestors: list[tuple[int, int]] = []  # (id of a layer, the stack's size below its subtree)
    above: set[int] = set()  # the ids in `ancestors`
    stack: list[tuple[str, Any, int, int, int]] = [("model", model, -1, 0, 0)]
    while stack:
        path, layer, parent, slot, pos = stack.pop()
        while ancestors and ancestors[-1][1] > len(stack):
            above.discard(ancestors.pop()[0])
        if id(layer) in above:
            raise ValueError(
                f"the model contains itself at {path}: a layer cannot be its own child"
            )
        node = Node(path, layer, id(layer) not in seen)
        seen.add(id(layer))
        if parent >= 0:
            out[parent].slots[slot][1][pos] = len(out)
        out.append(node)
        kids = []
        for attr in getattr(layer, "children", ()):
            value = getattr(layer, attr)
            if value is None:
                node.empty.append(attr)
                continue
            many = isinstance(value, tuple | list)
            subs = list(value) if many else [value]
            node.slots.append((attr, [-1] * len(subs), many))
            for j, sub in enumerate(subs):
                where = f"{path}.{attr}[{j}]" if many else f"{path}.{attr}"
                kids.append((where, sub, len(out) - 1, len(node.slots) - 1, j))
        ancestors.append((id(layer), len(stack)))
        above.add(id(layer))
        stack.extend(reversed(kids))
    return out


def walk(model: Any) -> list[tuple[str, Any]]:
    """(path, layer) for ``model`` and every layer inside it, in forward (depth) order (a
    shared layer at each of its places)."""
    return [(node.path, node.layer) for node in nodes(model)]


def trainables(model: Any, walked: list[Node] | None = None) -> list[tuple[str, Any, str]]:
    """(path, layer, name) for every parameter array, each shared layer once (``walked``: the
    model's `nodes`, when you have them). A path also indexes the gradient and optimiser
    trees: ``grads[path]``.

    >>> import tinyvec as tv
    >>> [path for path, _, _ in tv.trainables(tv.Chain(tv.Dense(2, 1, bias=False)))]
    ['model.layers[0].weight']
    """
    return [
        (f"{node.path}.{name}", node.layer, name)
        for node in (nodes(model) if walked is None else walked)
        if node.first
        for name in node.present
    ]


# --- trees shaped like the model ------------------------------------------------------------
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")


class Tree(Nested):  # (a dict: printed, pickled and copied at any depth)
    """A dict whose entries can also be read as attributes: ``tree.layers[0].weight``. Gradients
    and optimiser state are Trees mirroring the model; a path of `tv.trainables` indexes them
    too: ``grads["model.layers[0].weight"]``.

    >>> t = Tree(layers=(Tree(weight=1.0),))
    >>> t.layers[0].weight, t["model.layers[0].weight"]
    (1.0, 1.0)
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def _repr_html_(self) -> str:  # Jupyter: each array's shape, dtype, norm; NaN/inf flagged
        return display.tree_html(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(display.tree_text(self))

    def __missing__(self, key: Any) -> Any:
        # only reached when `key` is not an entry: a path such as "model.layers[0].weight"
        if not isinstance(key, str) or not key.startswith(("model.", "model[", ".", "[")):
            raise KeyError(key)
        rest = key[len("model") :] if key.startswith("model") else key
        value: Any = self
        end = 0
        for m in _STEP.finditer(rest):
            if m.start() != end:
                break
            end = m.end()
            try:
                value = value[m.group(1)] if m.group(1) else value[int(m.group(2))]
            except (KeyError, IndexError, TypeError):
                raise KeyError(f"{key}: nothing at {key[: len(key) - len(rest) + end]}") from None
        if end != len(rest):
            raise KeyError(f"{key}: not a path like model.layers[0].weight")
        return value


def mirror(walked: list[Node], leaf: Callable[[Any, str], Any]) -> Tree:
    """A Tree shaped like the model of ``walked`` (its `nodes`) with ``leaf(layer, name)`` for
    every parameter (None where the parameter is None), a tuple of Trees for a tuple or list
    of layers.

    >>> import tinyvec as tv
    >>> mirror(nodes(tv.Chain(tv.Dense(2, 1), tv.Dense(1, 1, bias=False))), lambda l, n: n)
    {'layers': ({'weight': 'weight', 'bias': 'bias'}, {'weight': 'weight', 'bias': None})}
    """
    trees = [Tree() for _ in walked]
    for node, tree in zip(walked, trees, strict=True):
        for name in node.names:
            tree[name] = leaf(node.layer, name) if name in node.present else None
        for attr, kids, many in node.slots:
            tree[attr] = tuple(trees[k] for k in kids) if many else trees[kids[0]]
        for attr in node.empty:
            tree[attr] = None
    return trees[0]


def match(walked: list[Node], trees: tuple[Any, ...], what: tuple[str, ...]) -> list[tuple]:
    """(path, layer, name, entry₁, entry₂, …) for each parameter (a shared layer once) and its
    entry in each of ``trees`` (named by ``what`` in errors): the trees read along the model
    of ``walked``. A tree of another shape than the model is refused, naming where it differs."""
    out: list[tuple[Any, ...]] = []
    entries: list[Any] = [None] * len(walked)
    entries[0] = trees
    for node, here in zip(walked, entries, strict=True):
        for e, w in zip(here, what, strict=True):
            if not isinstance(e, dict):
                raise ValueError(
                    f"{w} do not match the model at {node.path} ({type(node.layer).__name__})"
                )
        if node.first:
            for name in node.present:
                path = f"{node.path}.{name}"
                missing = [w for e, w in zip(here, what, strict=True) if name not in e]
                if missing:
                    raise ValueError(
                        f"{' / '.join(missing)} do not match the model: nothing at {path}"
                    )
                out.append((path, node.layer, name, *[e[name] for e in here]))
        for attr, kids, many in node.slots:
            subs = [e.get(attr) for e in here]
            for sub, w in zip(subs, what, strict=True):
                if many and not (isinstance(sub, tuple) and len(sub) == len(kids)):
                    raise ValueError(
                        f"{w} do not match the model at {node.path}.{attr}: {len(kids)} "
                        f"layers, {'no' if sub is None else len(sub)} entries"
                    )
                if not many and sub is None:
                    raise ValueError(f"{w} do not match the model at {node.path}.{attr}")
            for j, k in enumerate(kids):
                entries[k] = [sub[j] if many else sub for sub in subs]
    return out


def fmap(fn: Callable[[Any], Any], model: Any) -> Any:
    """A copy of ``model`` with ``fn`` applied to every parameter array (Functors' ``fmap``);
    the recorded activations of the copy are cleared, and a shared layer stays shared."""
    walked = nodes(model)
    done: dict[int, Any] = {}
    for node in reversed(walked):  # children before their parents
        layer = node.layer
        if id(layer) in done:
            continue
        new = done[id(layer)] = copy.copy(layer)
        getattr(new, "__dict__", {}).pop(CACHE, None)  # the fast road's cache is the original's
        if hasattr(new, "forget"):
            new.forget()
        for name in node.present:
            setattr(new, name, fn(data(getattr(layer, name))))
        for attr, kids, many in node.slots:
            subs = [done[id(walked[k].layer)] for k in kids]
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
        stacked = [getattr(layer, "members", None) for _, layer, _ in trainables(model)]
        E = next((m for m in stacked if m is not None), None)  # a stack of E models (tv.stack)
        lines[-1] = lines[-1].ljust(20) + (
            f"# Total: {arrays} arrays, {count:_} parameters, {nbytes / 1024:.3f} KiB."
            + ("" if E is None else f" A stack of {E} members.")
        )
    return "\n".join(lines)


def _show_items(layer: Any) -> list[Any]:
    """What a container prints between its parentheses: sub-layers, and strings such as "+"."""
    if hasattr(layer, "show_items"):
        return list(layer.show_items())
    return [c for _, c in child_layers(layer)]


def _show(model: Any, depth: int, lines: list[str], comma: str) -> None:
    """Append the lines of ``model`` (iterative: a model of any depth prints)."""
    stack: list[tuple[Any, int, str, bool]] = [(model, depth, comma, False)]
    while stack:
        item, depth, comma, closing = stack.pop()
        indent = "  " * depth
        if closing:
            lines.append(f"{indent}){comma}")
            continue
        items = [] if isinstance(item, str) else _show_items(item)
        if not items:
            text = f"{indent}{item if isinstance(item, str) else repr(item)}{comma}"
            count = 0 if isinstance(item, str) else nparams(item)[1]
            lines.append(text.ljust(40) + f"# {count:_} parameters" if count else text)
            continue
        lines.append(f"{indent}{type(item).__name__}(")
        stack.append((item, depth, comma, True))
        stack.extend((sub, depth + 1, ",", False) for sub in reversed(items))


def nested_repr(layer: Any) -> str:
    """``repr(layer)`` of a container, without recursion: each container inside it that has a
    ``repr_with(reprs of its children)`` (Chain, SkipConnection, Parallel) is written from
    its children's reprs, computed first; any other child by its own ``repr``."""
    done: dict[int, str] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(layer, False)]
    while stack:
        item, ready = stack.pop()
        kids = [c for _, c in child_layers(item)]
        if not ready:
            visiting.add(id(item))
            stack.append((item, True))
            stack.extend(
                (k, False)
                for k in reversed(kids)
                if hasattr(k, "repr_with") and id(k) not in done and id(k) not in visiting
            )
            continue
        parts = [done.get(id(k), "…") if hasattr(k, "repr_with") else repr(k) for k in kids]
        done[id(item)] = item.repr_with(parts)
    return done[id(layer)]
