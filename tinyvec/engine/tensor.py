"""The tracing machinery: a Tensor remembers which op made it, and `backward` replays the
ops in reverse, feeding each op's vector-Jacobian product (vjp) with the cotangent of its
output. The derivative rules themselves live in `ops.py`, one line each.

A Tensor is made only when gradients are wanted: a function of plain arrays returns plain
arrays, so inference never builds a graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..backend import namespace

_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside this block ops on Tensors record nothing (they return constant Tensors)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def grad_enabled() -> bool:
    return _grad_enabled


class Tensor:
    """A node of the graph: ``data`` (an array), ``parents`` (the op's inputs) and ``vjp``,
    which maps the cotangent of ``data`` to one cotangent per parent (None: no gradient).
    After `backward`, ``grad`` holds ∂L/∂data."""

    __slots__ = ("data", "grad", "parents", "vjp")
    __array_ufunc__ = None  # `ndarray * Tensor` must defer to Tensor.__rmul__

    def __init__(
        self,
        data: Any,
        parents: tuple[Any, ...] = (),
        vjp: Callable[[Any], tuple[Any, ...]] | None = None,
    ) -> None:
        self.data = data
        self.grad = None
        self.parents = parents
        self.vjp = vjp

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __repr__(self) -> str:
        return f"Tensor({self.data!r}{', grad_fn' if self.vjp else ''})"

    def __len__(self) -> int:
        return self.data.shape[0]

    def __float__(self) -> float:
        return float(self.data)

    def backward(self, grad: Any = None) -> None:
        """Accumulate ∂self/∂t into ``t.grad`` for every Tensor t this one depends on."""
        if grad is None:
            if self.data.ndim != 0:
                raise ValueError(f"backward() needs a scalar or a grad, got shape {self.shape}")
            grad = namespace(self.data).ones_like(self.data)
        self.grad = grad
        for node in reversed(toposort(self)):
            if node.grad is None:
                continue
            for parent, g in zip(node.parents, node.vjp(node.grad), strict=True):
                if g is not None and type(parent) is Tensor:
                    # never in place: a cotangent may be shared by several parents
                    parent.grad = g if parent.grad is None else parent.grad + g


def toposort(root: Tensor) -> list[Tensor]:
    """The op nodes ``root`` depends on, each after the nodes it consumes. Leaves (no vjp) are
    left out: they only receive gradients. Iterative depth-first search, so a chain of any
    length is fine."""
    order: list[Tensor] = []
    if root.vjp is None:
        return order
    seen = {id(root)}
    stack = [(root, iter(root.parents))]
    while stack:
        node, parents = stack[-1]
        for p in parents:
            if type(p) is Tensor and p.vjp is not None and id(p) not in seen:
                seen.add(id(p))
                stack.append((p, iter(p.parents)))
                break
        else:
            stack.pop()
            order.append(node)
    return order


def data(x: Any) -> Any:
    """The array inside ``x`` (``x`` itself when it is not a Tensor)."""
    return x.data if isinstance(x, Tensor) else x


def primitive(forward: Callable[..., Any], vjp: Callable[..., tuple[Any, ...]]):
    """Make a differentiable op from ``forward(*arrays, **kw)`` and its vector-Jacobian
    product ``vjp(g, out, *arrays, **kw)``, which returns one cotangent per positional
    argument. Plain arrays in, plain array out; any Tensor in, Tensor out."""

    def op(*args: Any, **kw: Any) -> Any:
        arrays, tracked = [], False
        for a in args:  # a plain loop: this runs for every op of every step
            if type(a) is Tensor:
                arrays.append(a.data)
                tracked = True
            else:
                arrays.append(a)
        out = forward(*arrays, **kw)
        if not tracked:
            return out
        if not _grad_enabled:
            return Tensor(out)
        return Tensor(out, args, lambda g: vjp(g, out, *arrays, **kw))

    op.__name__ = getattr(forward, "__name__", "op")
    op.__doc__ = forward.__doc__
    return op
