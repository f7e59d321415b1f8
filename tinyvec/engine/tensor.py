"""The tracing machinery: a Tensor remembers which op made it, and `backward` replays the
ops in reverse, feeding each op's vector-Jacobian product (vjp) with the cotangent of its
output. The derivative rules themselves live in `ops.py`, one line each.

Gradients of gradients (`grad` with ``create_graph=True``): each node's vjp can also run on
Tensors — its own output node ``here`` and its parents — and then records the ops it does, so
the gradient is itself a graph that can be differentiated again (science.md §7).

A Tensor is made only when gradients are wanted: a function of plain arrays returns plain
arrays, so inference never builds a graph.

Whether ops record is per context (a `contextvars.ContextVar`), not a module global: a thread
inside ``with tv.no_grad()`` does not switch recording off for another thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..backend import namespace

# Each thread (and each asyncio task) sees its own value: True until a `no_grad` block.
_recording: contextvars.ContextVar[bool] = contextvars.ContextVar("tinyvec_grad", default=True)


@contextlib.contextmanager
def setting(var: contextvars.ContextVar[Any], value: Any) -> Iterator[None]:
    """Inside this block ``var`` has ``value`` in this context (thread, asyncio task) only."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Inside this block ops on Tensors record nothing (they return constant Tensors). It acts
    on the current thread only.

    >>> import numpy as np, tinyvec as tv
    >>> x = tv.Tensor(np.ones(2))
    >>> with tv.no_grad():
    ...     y = x * 2.0
    >>> y.vjp is None, grad_enabled()
    (True, True)
    """
    return setting(_recording, False)


def grad_enabled() -> bool:
    """Whether ops on Tensors record their vjp here (False inside `no_grad`)."""
    return _recording.get()


class Tensor:
    """A node of the graph: ``data`` (an array), ``parents`` (the op's inputs), ``vjp``, which
    maps the cotangent of ``data`` to one cotangent per parent (None: no gradient), and ``op``,
    the name of the op that made it. After `backward`, ``grad`` holds ∂L/∂data.

    Its operators are the ops of `tinyvec.engine.ops`, which gives them to the class (``x + y``
    is ``ops.add(x, y)``, ``x.sum()`` is ``ops.reduce_sum(x)``).

    >>> import numpy as np, tinyvec as tv
    >>> x = tv.Tensor(np.array([1.0, 2.0]))
    >>> y = (x * x).sum()
    >>> y.op, y.parents[0].op
    ('sum', 'mul')
    >>> y.backward(); x.grad
    array([2., 4.])
    """

    __slots__ = ("data", "grad", "op", "parents", "vjp")
    __array_ufunc__ = None  # `ndarray * Tensor` must defer to Tensor.__rmul__

    def __init__(
        self,
        data: Any,
        parents: tuple[Any, ...] = (),
        vjp: Callable[..., tuple[Any, ...]] | None = None,
        op: str = "",
    ) -> None:
        self.data = data
        self.grad: Any = None
        self.parents = parents
        self.vjp = vjp
        self.op = op

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return int(self.data.ndim)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    def __repr__(self) -> str:
        made = f", op={self.op!r}, grad_fn" if self.vjp else ""
        return f"Tensor({self.data!r}{made})"

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __float__(self) -> float:
        return float(self.data)

    def backward(self, grad: Any = None) -> None:
        """Accumulate ∂self/∂t into ``t.grad`` for every Tensor t this one depends on."""
        if grad is None:
            if self.data.ndim != 0:
                raise ValueError(f"backward() needs a scalar or a grad, got shape {self.shape}")
            grad = seed(self.data)
        self.grad = grad
        for node in reversed(toposort(self)):
            if node.grad is None or node.vjp is None:
                continue
            for parent, g in zip(node.parents, node.vjp(node.grad), strict=True):
                if g is not None and type(parent) is Tensor:
                    # never in place: a cotangent may be shared by several parents
                    parent.grad = g if parent.grad is None else parent.grad + g


def twice(vjp: Any) -> bool:
    """Whether a node's ``vjp`` can run on Tensors (it takes ``here=``, the node itself): the
    nodes made by `primitive` and by Dense can; a Tensor built by hand around a vjp of arrays
    cannot."""
    code = getattr(vjp, "__code__", None)
    return code is not None and code.co_argcount >= 2 and code.co_varnames[1] == "here"


def grad(y: Tensor, xs: list[Any], *, create_graph: bool = False) -> list[Any]:
    """∂y/∂x for every x of ``xs`` (None where y does not depend on x), for a scalar Tensor
    ``y``, as ``torch.autograd.grad``: the cotangents are kept here, and no ``.grad`` is
    touched, so several of these may run over one graph.

    With ``create_graph=True`` every vjp runs on Tensors (``vjp(g, here=node)``) and records
    what it computes: the result is Tensors, the gradient as a graph, which can be
    differentiated again (the double backward of science.md §7).

    >>> import numpy as np, tinyvec as tv
    >>> x = tv.Tensor(np.array([1.0, 2.0]))
    >>> (g,) = grad((x * x * x).sum(), [x], create_graph=True)   # 3x²
    >>> g.data
    array([ 3., 12.])
    >>> grad(g.sum(), [x])                                          # 6x
    [array([ 6., 12.])]
    """
    if type(y) is not Tensor or y.data.ndim != 0:
        shape = tuple(y.shape) if type(y) is Tensor else type(y).__name__
        raise ValueError(f"grad needs a scalar Tensor to differentiate, got {shape}")
    start = seed(y.data)
    with setting(_recording, True) if create_graph else contextlib.nullcontext():
        cotangent: dict[int, Any] = {id(y): Tensor(start) if create_graph else start}
        for node in reversed(toposort(y)):
            g, vjp = cotangent.get(id(node)), node.vjp
            if g is None or vjp is None:
                continue
            if not create_graph:
                cotangents = vjp(g)
            elif twice(vjp):
                cotangents = vjp(g if type(g) is Tensor else Tensor(g), here=node)
            else:
                raise TypeError(
                    f"create_graph=True cannot differentiate the {node.op or 'unnamed'!r} node "
                    "twice: its vjp runs on plain arrays only; build the op with "
                    "tv.ops.primitive and write its vjp with operators and tv.ops functions "
                    "(tv.gradient(..., create_graph=True) and tv.hvp run a model on the "
                    "reference road, whose nodes all can)"
                )
            for parent, g_parent in zip(node.parents, cotangents, strict=True):
                if g_parent is not None and type(parent) is Tensor:
                    k = id(parent)
                    cotangent[k] = g_parent if k not in cotangent else cotangent[k] + g_parent
    return [cotangent.get(id(x)) for x in xs]


def seed(loss: Any) -> Any:
    """∂L/∂L = 1, of the scalar array ``loss``'s kind and dtype: where `backward` starts."""
    if isinstance(loss, np.generic):  # a NumPy reduction gives a scalar, not a 0-d array
        return np.array(1, loss.dtype)
    return namespace(loss).ones_like(loss)


def toposort(root: Tensor) -> list[Tensor]:
    """The op nodes ``root`` depends on, each after the nodes it consumes. Leaves (no vjp) are
    left out: they only receive gradients. Iterative depth-first search, so a chain of any
    length is fine."""
    order: list[Tensor] = []
    if root.vjp is None:
        return order
    seen = {root}  # (a Tensor hashes by identity)
    stack = [(root, iter(root.parents))]
    while stack:
        node, parents = stack[-1]
        for p in parents:
            if type(p) is Tensor and p.vjp is not None and p not in seen:
                seen.add(p)
                stack.append((p, iter(p.parents)))
                break
        else:
            stack.pop()
            order.append(node)
    return order


def data(x: Any) -> Any:
    """The array inside ``x`` (``x`` itself when it is not a Tensor)."""
    return x.data if type(x) is Tensor else x


def primitive(
    forward: Callable[..., Any], vjp: Callable[..., tuple[Any, ...]], name: str | None = None
) -> Callable[..., Any]:
    """Make a differentiable op from ``forward(*arrays, **kw)`` and its vector-Jacobian
    product ``vjp(g, out, *arrays, **kw)``, which returns one cotangent per positional
    argument. Plain arrays in, plain array out; any Tensor in, Tensor out. The op shows
    ``forward``'s signature and docstring in ``help``, and its ``name`` on the nodes it makes.

    A `backward` calls ``vjp`` with arrays. ``grad(..., create_graph=True)`` calls it with
    Tensors instead (``g``, the output node for ``out``, the op's Tensor arguments): a vjp
    written with operators and `tinyvec.engine.ops` functions then records its own graph, and
    the op can be differentiated twice (a vjp written with NumPy calls cannot).

    >>> import numpy as np
    >>> cube = primitive(lambda x: x**3, lambda g, out, x: (3 * g * x * x,), name="cube")
    >>> y = cube(Tensor(np.array([2.0])))
    >>> y.op, y.data
    ('cube', array([8.]))
    """
    op_name: str = name or str(getattr(forward, "__name__", "op"))

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
        if not _recording.get():
            return Tensor(out, op=op_name)

        def node_vjp(g: Any, here: Tensor | None = None) -> tuple[Any, ...]:
            if here is None:  # first order: the arrays of the forward pass
                return vjp(g, out, *arrays, **kw)
            return vjp(g, here, *args, **kw)  # differentiated again: Tensors in, so it records

        return Tensor(out, args, node_vjp, op_name)

    op.__name__ = op.__qualname__ = op_name
    op.__doc__ = forward.__doc__
    op.__module__ = getattr(forward, "__module__", None) or __name__  # where help() finds it
    try:
        op.__signature__ = inspect.signature(forward)  # type: ignore[attr-defined]
    except (TypeError, ValueError):  # a builtin without a signature: keep (*args, **kw)
        pass
    op.__wrapped_forward__ = forward  # type: ignore[attr-defined]
    return op
