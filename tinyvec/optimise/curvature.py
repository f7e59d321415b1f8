"""Second order: the exact Hessian-vector product ``H v`` of a scalar loss (science.md §7).

    H v = ∇_θ ⟨∇_θ f(θ), v⟩

The inner gradient is taken with ``create_graph=True`` (every vjp runs on Tensors and records
what it computes); the inner product with the constant direction v is a scalar; its gradient
is H v, since ∂/∂θ_i Σ_j (∂f/∂θ_j) v_j = Σ_j H_ij v_j. One forward pass, one recorded backward
pass and one backward pass through both: a few gradients' cost, never the n × n matrix H.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import seam
from ..backend import is_array, namespace
from ..engine import ops
from ..engine.tensor import Tensor, setting
from ..layers.base import match, mirror, nodes
from ..layers.stack import stack_members
from .training import gradient, gradients_of, interrupts_deferred

__all__ = ["hvp"]


def hvp(f: Callable[[Any], Any], model: Any, v: Any) -> Any:
    """The Hessian-vector product ``H v`` of scalar ``f`` at ``model``'s parameters: ``v`` is a
    tree shaped like ``tv.gradient(f, model)`` (an array, for an array ``model``), and so is
    the result. Exact (no finite differences): H v = ∇_θ ⟨∇_θ f, v⟩, differentiating the
    gradient again (`tv.gradient` with ``create_graph=True``). A None entry of v is a zero.
    For a stack of E models (`tv.stack`) and its E member losses (``tv.mse(ŷ, y,
    members=True)``), member e of the result is member e's own H_e v_e.

    >>> import numpy as np, tinyvec as tv
    >>> f = lambda x: tv.ops.sum(x * x * x)          # H = diag(6x)
    >>> tv.hvp(f, np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    array([ 6., 12.])
    >>> model = tv.Dense(1, 1, bias=False, init=lambda shape, rng: np.full(shape, 3.0))
    >>> x, y = np.array([[1.0, 2.0]]), np.zeros((1, 2))
    >>> loss = lambda m: tv.mse(m(x), y)              # mean((w x)²): H = mean(2 x²) = 5
    >>> tv.hvp(loss, model, tv.Tree(weight=np.array([[1.0]])))["weight"]
    array([[5.]])
    """
    if is_array(model):
        _check_direction("v", model, v)
        return gradient(lambda x: inner(gradient(f, x, create_graph=True), v), model)
    walked = nodes(model)
    entries = match(walked, (v,), ("v",))  # (path, layer, name, v_p) per parameter
    if not entries:
        raise ValueError(f"tv.hvp: the model has no parameters: {model!r}")
    for path, layer, name, v_p in entries:
        if v_p is not None:
            _check_direction(path, getattr(layer, name), v_p)
    params = [(path, layer, name) for path, layer, name, _ in entries]
    first = getattr(entries[0][1], entries[0][2])
    # a stack of E models (`tv.stack`), f its E member losses: ⟨∇f_e, v_e⟩ member by member,
    # whose gradient is each member's own H_e v_e (the members share no parameter)
    E = stack_members(params)

    def directional(m: Any) -> Any:  # ⟨∇f(θ), v⟩ = Σ_p ⟨∂f/∂θ_p, v_p⟩, a scalar Tensor
        _, g = gradients_of(f, [m], params, create_graph=True)
        pairs = [(g_p, v_p) for g_p, (*_, v_p) in zip(g, entries, strict=True)]
        pairs = [(g_p, v_p) for g_p, v_p in pairs if g_p is not None and v_p is not None]
        if not pairs:  # f does not depend on the parameters v moves: a constant 0, so H v = 0
            return Tensor(namespace(first).zeros(() if E is None else (E,), dtype=first.dtype))
        return inner(*(a for pair in pairs for a in pair), members=E is not None)

    # (the lists of `gradients_of`, not trees: the same differentiation with less bookkeeping;
    # on the reference road, whose nodes can be differentiated twice)
    with interrupts_deferred(second_interrupts=True), setting(seam.OFF, True):
        _, hv = gradients_of(directional, [model], params)
    got = {(id(layer), name): h for (_, layer, name), h in zip(params, hv, strict=True)}
    return mirror(walked, lambda layer, name: _or_zeros(got[id(layer), name], layer, name))


def _inner(*pairs: Any, members: bool = False) -> Any:
    """⟨g, v⟩ = Σ_p Σ g_p ⊙ v_p over ``pairs`` = (g_1, v_1, g_2, v_2, …); ``members``: a stack's,
    one per member (the sums over all axes but the first). vjp: c v_p to each g_p (v is the
    constant direction: no cotangent), so the backward pass from ⟨∇f, v⟩ starts each ∂f/∂θ_p
    with v_p itself, as the ops mul, sum and add would, in one node for all p."""
    xp = namespace(pairs[0])
    gs, vs = pairs[0::2], pairs[1::2]
    return sum(
        xp.sum(g * v, axis=tuple(range(1, v.ndim)) if members else None)
        for g, v in zip(gs, vs, strict=True)
    )


def _inner_vjp(c: Any, out: Any, *pairs: Any, members: bool = False) -> tuple[Any, ...]:
    cotangents: list[Any] = []
    for v in pairs[1::2]:
        if members:  # c: one per member, (E,) → (E, 1, …) against v's (E, …)
            c_v = ops.namespace(c).reshape(c, (-1,) + (1,) * (v.ndim - 1)) * v
        else:
            c_v = c * v
        cotangents += [c_v, None]
    return tuple(cotangents)


inner = ops.primitive(_inner, _inner_vjp, "inner")


def _check_direction(path: str, x: Any, v: Any) -> None:
    if not is_array(v) or tuple(v.shape) != tuple(x.shape):
        got = tuple(v.shape) if is_array(v) else type(v).__name__
        raise ValueError(
            f"tv.hvp: v does not match the model at {path}: the parameter has shape "
            f"{tuple(x.shape)}, v {got} (v is shaped like tv.gradient(f, model))"
        )


def _or_zeros(h: Any, layer: Any, name: str) -> Any:
    """An entry of H v: zeros where the directional derivative did not reach the parameter."""
    if h is not None:
        return h
    x = getattr(layer, name)
    return namespace(x).zeros_like(x)
