"""gradient / withgradient / setup / update / train, as in Flux.

Gradients and optimiser state are trees that mirror the model: a layer becomes a `Tree` with
one entry per parameter and per child, a tuple of layers a tuple of trees. So
``grads.layers[0].weight`` is ∂L/∂W¹ of a Chain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from tqdm.auto import tqdm

from ..backend import is_array
from ..engine.tensor import Tensor, data
from ..layers.base import parameters
from .rules import Rule


class Tree(dict):
    """A dict whose entries can also be read as attributes: ``tree.layers[0].weight``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def mirror(model: Any, leaf: Callable[[Any, str], Any]) -> Tree:
    """A Tree shaped like ``model`` with ``leaf(layer, name)`` for every parameter."""

    def build(layer: Any) -> Tree:
        tree = Tree()
        for name in getattr(layer, "params", ()):
            tree[name] = None if getattr(layer, name) is None else leaf(layer, name)
        for name in getattr(layer, "children", ()):
            value = getattr(layer, name)
            if isinstance(value, tuple | list):
                tree[name] = tuple(build(v) for v in value)
            else:
                tree[name] = None if value is None else build(value)
        return tree

    return build(model)


def zip_trees(model: Any, trees: tuple[Any, ...], what: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """(path, layer, name, entry₁, entry₂, …) for each parameter of ``model`` and its entry in
    each of ``trees`` (named by ``what`` in errors), each shared layer once. A tree of another
    shape than the model is refused, naming where it differs."""
    out: list[tuple[Any, ...]] = []
    seen: set[int] = set()

    def visit(layer: Any, entries: list[Any], path: str) -> None:
        for entry, w in zip(entries, what, strict=True):
            if not isinstance(entry, dict):
                raise ValueError(f"{w} do not match the model at {path} ({type(layer).__name__})")
        if id(layer) in seen:
            return
        seen.add(id(layer))
        for name in getattr(layer, "params", ()):
            if getattr(layer, name) is not None:
                try:
                    out.append((f"{path}.{name}", layer, name, *[e[name] for e in entries]))
                except KeyError:
                    missing = " / ".join(
                        w for e, w in zip(entries, what, strict=True) if name not in e
                    )
                    raise ValueError(
                        f"{missing} do not match the model: nothing at {path}.{name}"
                    ) from None
        for name in getattr(layer, "children", ()):
            value = getattr(layer, name)
            subs = [e.get(name) for e in entries]
            if isinstance(value, tuple | list):
                for sub, w in zip(subs, what, strict=True):
                    if not isinstance(sub, tuple) or len(sub) != len(value):
                        raise ValueError(
                            f"{w} do not match the model at {path}.{name}: "
                            f"{len(value)} layers, {'no' if sub is None else len(sub)} entries"
                        )
                for i, v in enumerate(value):
                    visit(v, [sub[i] for sub in subs], f"{path}.{name}[{i}]")
            elif value is not None:
                visit(value, subs, f"{path}.{name}")

    visit(model, list(trees), "model")
    return out


# --- gradients ------------------------------------------------------------------------------
def withgradient(f: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
    """``(f(args...), gradient)``: the value and the gradient of scalar ``f`` with respect to
    each argument, a model (→ Tree mirroring it) or an array (→ array). One argument gives one
    gradient, several a tuple.

    >>> import numpy as np, tinyvec as tv
    >>> loss, g = tv.withgradient(lambda x: tv.ops.sum(x * x), np.array([1.0, 2.0]))
    >>> float(loss), g
    (5.0, array([2., 4.]))
    """
    return _withgradient(f, args)


def _withgradient(
    f: Callable[..., Any], args: tuple[Any, ...], check: Callable[[Any], None] | None = None
) -> tuple[Any, Any]:
    """`withgradient`, calling ``check(loss)`` between the forward and the backward pass."""
    tracked: list[tuple[Any, str, Any]] = []
    inputs = [Tensor(arg) if is_array(arg) else arg for arg in args]
    try:
        for arg in inputs:
            if not isinstance(arg, Tensor):
                for layer, name in parameters(arg):
                    value = getattr(layer, name)
                    setattr(layer, name, Tensor(value))
                    tracked.append((layer, name, value))
        loss = f(*inputs)
        if check is not None:
            check(data(loss))
        if isinstance(loss, Tensor):
            if loss.ndim != 0:
                raise ValueError(f"gradient needs a scalar loss, got shape {tuple(loss.shape)}")
            loss.backward()
        grads = [
            x.grad if isinstance(x, Tensor) else mirror(x, lambda m, n: getattr(m, n).grad)
            for x in inputs
        ]
    finally:
        for layer, name, value in tracked:  # parameters are plain arrays again, even on error
            setattr(layer, name, value)
    return data(loss), grads[0] if len(grads) == 1 else tuple(grads)


def gradient(f: Callable[..., Any], *args: Any) -> Any:
    """The gradient of scalar ``f`` with respect to each argument (see `withgradient`)."""
    return withgradient(f, *args)[1]


# --- optimiser state and update -------------------------------------------------------------
class Leaf:
    """A parameter's optimiser rule and its state."""

    __slots__ = ("rule", "state")

    def __init__(self, rule: Rule, state: Any) -> None:
        self.rule, self.state = rule, state

    def __repr__(self) -> str:
        return f"Leaf({self.rule!r})"


class OptState:
    """What `setup` returns: a Tree of Leafs mirroring the model (``tree``), the rule, and
    the δ-rules (``delta``, a tuple, empty for plain backprop)."""

    def __init__(self, rule: Rule, tree: Tree, delta: tuple[Any, ...] = ()) -> None:
        self.rule, self.tree, self.delta = rule, tree, delta

    def __repr__(self) -> str:
        delta = f", delta={list(self.delta)!r}" if self.delta else ""
        return f"OptState({self.rule!r}{delta})"


def setup(rule: Rule, model: Any, delta: Any = None) -> OptState:
    """Optimiser state for every parameter of ``model`` (Optimisers.jl's ``setup``).

    ``delta``: a δ-rule or a list of them (`tinyvec.deltarules`), which `update` lets rewrite
    each Dense layer's δ^k before that layer is updated."""
    if not isinstance(rule, Rule):
        raise TypeError(f"setup takes an optimisation rule such as tv.Descent(0.1), got {rule!r}")
    rules: tuple[Any, ...] = ()
    if delta is not None:
        from ..deltarules import check_rules

        rules = check_rules(delta, rule)
    tree = mirror(model, lambda layer, name: Leaf(rule, rule.init(getattr(layer, name))))
    return OptState(rule, tree, rules)


def update(state: OptState, model: Any, grads: Tree) -> None:
    """Apply one step of the optimiser to ``model`` in place: x ← x - step for every
    parameter with a gradient. Each layer keeps what it subtracted in ``layer.step[name]``
    (Dense shows it as ``dW = -step``, ``db``)."""
    pairs = zip_trees(model, (grads, state.tree), ("gradients", "optimiser state"))
    for path, layer, name, g, _ in pairs:  # check everything before changing anything
        if g is not None and (not is_array(g) or g.shape != getattr(layer, name).shape):
            shape = tuple(g.shape) if is_array(g) else type(g).__name__
            raise ValueError(
                f"gradients do not match the model: {path} has shape "
                f"{tuple(getattr(layer, name).shape)}, gradient {shape}"
            )
    if state.delta:
        from ..deltarules import update_with_delta_rules

        update_with_delta_rules(state, model, pairs)
        return
    for _, layer, name, g, leaf in pairs:
        if g is not None:
            apply_step(leaf, layer, name, g)


def apply_step(leaf: Leaf, layer: Any, name: str, g: Any) -> None:
    """One parameter: ask the rule for the step, subtract it, and remember it on the layer."""
    x = getattr(layer, name)
    leaf.state, step = leaf.rule.apply(leaf.state, x, g)
    setattr(layer, name, x - step)
    if not hasattr(layer, "step"):
        layer.step = {}
    layer.step[name] = step


# --- the training loop ----------------------------------------------------------------------
class NonFiniteLoss(FloatingPointError):
    """The loss was NaN or ±inf; training stopped before updating anything."""


def train(
    loss: Callable[..., Any],
    model: Any,
    data: Iterable[Any],
    state: OptState,
    *,
    epochs: int = 1,
    progress: bool = True,
    recorder: Any = None,
    callbacks: Iterable[Callable[..., Any]] = (),
) -> list[float]:
    """Flux's ``train!``: for each batch ``d`` in ``data`` (``epochs`` times), take the
    gradient of ``loss(model, *d)`` (``d`` a tuple such as ``(x, y)``, or one array) and
    `update`. A NaN or infinite loss raises `NonFiniteLoss` before the update, leaving model
    and state as they were. ``recorder.record(model, step, loss)`` and each
    ``callback(step, model, loss)`` run after every update; a callback returning True stops
    training. Returns the loss of every step.
    """
    batches = data if isinstance(data, list | tuple) else list(data)
    history: list[float] = []
    epoch = step = 0

    def check(value: Any) -> None:  # between forward and backward: nothing has changed yet
        if not math.isfinite(float(value)):
            raise NonFiniteLoss(
                f"loss is {float(value)} at epoch {epoch}, step {step}: stopped before the "
                "update; the model and the optimiser state are unchanged"
            )

    bar = tqdm(total=epochs * len(batches), disable=not progress, desc="train", leave=False)
    try:
        for epoch in range(epochs):  # noqa: B007 - `check` reads it
            for batch in batches:
                args = batch if isinstance(batch, tuple) else (batch,)
                value, grads = _withgradient(lambda m: loss(m, *args), (model,), check)
                update(state, model, grads)
                history.append(float(value))
                step += 1
                if recorder is not None:
                    recorder.record(model, step, history[-1])
                stop = [cb(step, model, history[-1]) for cb in callbacks]
                bar.update()
                bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
                if any(s is True for s in stop):
                    return history
    finally:
        bar.close()
        if recorder is not None and hasattr(recorder, "close"):
            recorder.close()
    return history
