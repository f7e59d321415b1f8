"""The derivative table: each op is its forward computation beside its vector-Jacobian
product, ``vjp(g, out, *inputs) -> one cotangent per input``. ``g`` is ∂L/∂out, ``out`` the
forward result. Broadcasting is undone by `unbroadcast`, which sums a cotangent back to the
shape of the input it belongs to.

Every op takes arrays or Tensors: plain arrays give a plain array (nothing is recorded), a
Tensor anywhere gives a Tensor whose ``op`` is the op's name.

Every vjp is written with operators and ``xp = namespace(g)``: for arrays that is the arrays'
own namespace (NumPy, CuPy, …), so a first-order backward runs on plain arrays; for Tensors
(``create_graph=True``, the gradient as a graph) it is `TENSOR_NAMESPACE`, these very ops, so
the vjp records what it computes and can be differentiated again.

    >>> import numpy as np, tinyvec as tv
    >>> from tinyvec import ops
    >>> x = tv.Tensor(np.array([1.0, 2.0]))
    >>> y = ops.reduce_sum(ops.mul(x, x))
    >>> y.op, float(y)
    ('sum', 5.0)
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from .. import backend
from .tensor import Tensor, data, primitive


def namespace(x: Any) -> Any:
    """The namespace a formula computes in: an array's own (`tinyvec.backend.namespace`), or
    for a Tensor `TENSOR_NAMESPACE`, the ops of this table under the array API's names, which
    record. So one vjp, written once, runs on arrays (first order) and on Tensors (a gradient
    that is to be differentiated again).

    >>> import numpy as np, tinyvec as tv
    >>> namespace(np.zeros(1)) is np, namespace(tv.Tensor(np.zeros(1))) is TENSOR_NAMESPACE
    (True, True)
    """
    return TENSOR_NAMESPACE if type(x) is Tensor else backend.namespace(x)


def shape_of(x: Any) -> tuple[int, ...] | None:
    """Shape of an array; None for a Python number (which gets no gradient)."""
    return getattr(x, "shape", None)


def unbroadcast(g: Any, x: Any) -> Any:
    """Sum cotangent ``g`` over the axes along which input ``x`` was broadcast.

    >>> import numpy as np
    >>> unbroadcast(np.ones((2, 3)), np.zeros((1, 3)))
    array([[2., 2., 2.]])
    """
    shape = shape_of(x)
    if shape is None:
        return None
    if g.shape == shape:
        return g
    xp = namespace(g)
    if g.ndim > len(shape):
        g = xp.sum(g, axis=tuple(range(g.ndim - len(shape))))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return xp.sum(g, axis=axes, keepdims=True) if axes else g


def _xp(*xs: Any) -> Any:
    return namespace(next(x for x in xs if shape_of(x) is not None))


# --- arithmetic (broadcasting) --------------------------------------------------------------
def _add(x: Any, y: Any) -> Any:
    """x + y, broadcasting. vjp: (g, g), each summed back to its input's shape.

    >>> import numpy as np
    >>> add(np.array([1.0, 2.0]), 1.0)
    array([2., 3.])
    """
    return x + y


def _sub(x: Any, y: Any) -> Any:
    """x - y, broadcasting. vjp: (g, -g)."""
    return x - y


def _mul(x: Any, y: Any) -> Any:
    """x ⊙ y elementwise, broadcasting. vjp: (g ⊙ y, g ⊙ x)."""
    return x * y


def _div(x: Any, y: Any) -> Any:
    """x / y elementwise, broadcasting. vjp: (g / y, -g ⊙ out / y)."""
    return x / y


def _neg(x: Any) -> Any:
    """-x. vjp: -g."""
    return -x


def _power(x: Any, y: Any) -> Any:
    """x ** y elementwise. vjp: (g y x^(y-1), g out log x); the second only for an array y.

    >>> import numpy as np
    >>> power(np.array([2.0, 3.0]), 2)
    array([4., 9.])
    """
    return x**y


def _power_vjp(g: Any, out: Any, x: Any, y: Any) -> tuple[Any, Any]:
    dx = unbroadcast(g * y * x ** (y - 1), x) if shape_of(x) is not None else None
    dy = None
    if shape_of(y) is not None:
        log_x = _xp(x).log(x) if shape_of(x) is not None else math.log(x)
        dy = unbroadcast(g * out * log_x, y)
    return dx, dy


add = primitive(_add, lambda g, out, x, y: (unbroadcast(g, x), unbroadcast(g, y)), "add")
sub = primitive(_sub, lambda g, out, x, y: (unbroadcast(g, x), unbroadcast(-g, y)), "sub")
mul = primitive(_mul, lambda g, out, x, y: (unbroadcast(g * y, x), unbroadcast(g * x, y)), "mul")
div = primitive(
    _div, lambda g, out, x, y: (unbroadcast(g / y, x), unbroadcast(-g * out / y, y)), "div"
)
neg = primitive(_neg, lambda g, out, x: (-g,), "neg")
power = primitive(_power, _power_vjp, "power")


# --- linear algebra and shapes --------------------------------------------------------------
def _matmul(x: Any, y: Any) -> Any:
    """x @ y (batched and vector operands as the array API). vjp: (g yᵀ, xᵀ g).

    >>> import numpy as np
    >>> matmul(np.eye(2), np.array([1.0, 2.0]))
    array([1., 2.])
    """
    return x @ y


def _matmul_vjp(g: Any, out: Any, x: Any, y: Any) -> tuple[Any, Any]:
    if x.ndim == 2 == y.ndim:  # matrices (every Dense): the general case below, in short
        return g @ y.mT, x.mT @ g
    # a vector operand is a row (on the left) or a column (on the right), as in the forward
    xp = namespace(g)
    x2 = xp.reshape(x, (1, x.shape[0])) if x.ndim == 1 else x
    y2 = xp.reshape(y, (y.shape[0], 1)) if y.ndim == 1 else y
    if x.ndim == 1 and y.ndim == 1:
        g2 = xp.reshape(g, (1, 1))
    else:
        g2 = xp.expand_dims(g, axis=-2) if x.ndim == 1 else g
        g2 = xp.expand_dims(g2, axis=-1) if y.ndim == 1 else g2
    return (
        xp.reshape(unbroadcast(g2 @ y2.mT, x2), x.shape),
        xp.reshape(unbroadcast(x2.mT @ g2, y2), y.shape),
    )


def _matrix_transpose(x: Any) -> Any:
    """xᵀ over the last two axes (``x.mT``). vjp: gᵀ."""
    return x.mT


def _reshape(x: Any, shape: tuple[int, ...]) -> Any:
    """x with a new shape. vjp: g reshaped back to x's shape."""
    return namespace(x).reshape(x, shape)


def _getitem(x: Any, index: Any) -> Any:
    """x[index], basic indexing only. vjp: zeros of x's shape with g at ``index``."""
    return x[index]


def _scatter(g: Any, like: Any, index: Any) -> Any:
    """Zeros shaped like ``like`` with ``g`` at ``index`` (basic indexing: each element is
    selected at most once): getitem's vjp. vjp: g[index], a getitem."""
    xp = backend.namespace(like)
    if isinstance(index, tuple) and any(i is None for i in index):  # a new axis (x[:, None])
        index = tuple(i for i in index if i is not None)  # selects no element: leave it out
        g = xp.reshape(g, tuple(like[index].shape))
    dx = xp.zeros_like(like)
    dx[index] = g
    return dx


def _getitem_vjp(g: Any, out: Any, x: Any, index: Any) -> tuple[Any, None]:
    return scatter(g, data(x), index), None


matmul = primitive(_matmul, _matmul_vjp, "matmul")
matrix_transpose = primitive(_matrix_transpose, lambda g, out, x: (g.mT,), "matrix_transpose")
reshape = primitive(
    _reshape, lambda g, out, x, shape: (namespace(g).reshape(g, x.shape), None), "reshape"
)
getitem = primitive(_getitem, _getitem_vjp, "getitem")
scatter = primitive(
    _scatter, lambda g, out, g0, like, index: (getitem(g, index), None, None), "scatter"
)


def _concat(*xs: Any, axis: int = 0) -> Any:
    return namespace(xs[0]).concat(xs, axis=axis)


def _concat_vjp(g: Any, out: Any, *xs: Any, axis: int = 0) -> tuple[Any, ...]:
    index = [slice(None)] * g.ndim  # a full index: the array API allows no implicit trailing axes
    pieces, start = [], 0
    for x in xs:
        index[axis] = slice(start, start + x.shape[axis])
        pieces.append(g[tuple(index)])
        start += x.shape[axis]
    return tuple(pieces)


_concat_op = primitive(_concat, _concat_vjp, "concat")


def concat(xs: Any, axis: int = 0) -> Any:
    """Join arrays or Tensors along ``axis`` (the array API's ``concat``). vjp: g cut back
    into the pieces.

    >>> import numpy as np
    >>> concat([np.zeros(1), np.ones(2)])
    array([0., 1., 1.])
    """
    return _concat_op(*xs, axis=axis)


def _broadcast_to(x: Any, shape: tuple[int, ...]) -> Any:
    """x as an array of ``shape`` (the array API's). vjp: g summed back to x's shape."""
    return namespace(x).broadcast_to(x, shape)


broadcast_to = primitive(
    _broadcast_to, lambda g, out, x, shape: (unbroadcast(g, x), None), "broadcast_to"
)


def vcat(*xs: Any) -> Any:
    """Join feature blocks, as Julia's ``vcat`` (a connection for SkipConnection, Parallel):
    the features are the rows (axis −2) of (features, batch) and of a stack's (E, features,
    batch) values, where a block shared by the members joins each member's (axis 0 of a vector).

    >>> import numpy as np
    >>> vcat(np.zeros((3, 1, 2)), np.ones((1, 2))).shape  # a stack of 3, a shared block
    (3, 2, 2)
    """
    E = [x.shape[0] for x in xs if x.ndim == 3]  # a stack's members
    xs = tuple(broadcast_to(x, (E[0], *x.shape)) if E and x.ndim == 2 else x for x in xs)
    return _concat_op(*xs, axis=0 if xs[0].ndim == 1 else -2)


# --- reductions -----------------------------------------------------------------------------
def _expand(g: Any, x: Any, axis: Any, keepdims: bool) -> Any:
    """Give a reduced cotangent back the reduced axes, so it broadcasts against ``x``."""
    if keepdims or axis is None:
        return g
    axes = (axis,) if isinstance(axis, int) else axis
    shape = list(x.shape)
    for a in axes:
        shape[a] = 1
    return namespace(g).reshape(g, tuple(shape))


def _count(x: Any, axis: Any) -> int:
    axes = range(x.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    return math.prod(x.shape[a] for a in axes)


def _sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Σ x over ``axis`` (all axes by default). vjp: g broadcast back to x's shape.

    Public as ``tv.ops.sum`` (named ``reduce_sum`` here so the builtin stays usable).

    >>> import numpy as np
    >>> reduce_sum(np.ones((2, 3)), axis=1)
    array([3., 3.])
    """
    return namespace(x).sum(x, axis=axis, keepdims=keepdims)


def _mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Σ x / n over ``axis`` (all axes by default). vjp: g / n broadcast back to x's shape."""
    return namespace(x).mean(x, axis=axis, keepdims=keepdims)


def _logsumexp(x: Any, axis: int = 0) -> Any:
    """log Σ exp x over ``axis``, kept as a length-1 axis so it broadcasts against x (stable:
    the maximum is taken out first). vjp: g ⊙ exp(x - out), the softmax."""
    xp = namespace(x)
    m = xp.max(x, axis=axis, keepdims=True)
    return xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m


reduce_sum = primitive(
    _sum,
    lambda g, out, x, axis=None, keepdims=False: (
        _expand(g, x, axis, keepdims) * namespace(x).ones_like(x),
    ),
    "sum",
)
mean = primitive(
    _mean,
    lambda g, out, x, axis=None, keepdims=False: (
        _expand(g, x, axis, keepdims) * namespace(x).ones_like(x) / _count(x, axis),
    ),
    "mean",
)
logsumexp = primitive(
    _logsumexp, lambda g, out, x, axis=0: (g * namespace(x).exp(x - out),), "logsumexp"
)


# --- elementwise functions ------------------------------------------------------------------
def _exp(x: Any) -> Any:
    """exp x. vjp: g ⊙ out."""
    return namespace(x).exp(x)


def _log(x: Any) -> Any:
    """log x. vjp: g / x."""
    return namespace(x).log(x)


def _sqrt(x: Any) -> Any:
    """√x. vjp: g / (2 out)."""
    return namespace(x).sqrt(x)


def _abs(x: Any) -> Any:
    """|x|. vjp: g ⊙ sign x. Public as ``tv.ops.abs`` (named ``absolute`` here).

    >>> import numpy as np
    >>> absolute(np.array([-1.5, 2.0]))
    array([1.5, 2. ])
    """
    return namespace(x).abs(x)


def _maximum(x: Any, y: Any) -> Any:
    """max(x, y) elementwise, broadcasting. vjp: g to the larger input (ties go to x)."""
    return _xp(x, y).maximum(x, y)


def _minimum(x: Any, y: Any) -> Any:
    """min(x, y) elementwise, broadcasting. vjp: g to the smaller input (ties go to x)."""
    return _xp(x, y).minimum(x, y)


def _chosen_vjp(g: Any, x: Any, y: Any, larger: bool) -> tuple[Any, Any]:
    """maximum's vjp (``larger``) and minimum's: g to the input chosen (ties go to x), through
    a constant mask (its derivative is 0 almost everywhere)."""
    chosen = data(x) >= data(y) if larger else data(x) <= data(y)
    x_wins = backend.namespace(chosen).astype(chosen, g.dtype)
    return unbroadcast(g * x_wins, x), unbroadcast(g * (1 - x_wins), y)


def _tanh(x: Any) -> Any:
    """tanh x. vjp: g ⊙ (1 - out²)."""
    return namespace(x).tanh(x)


def _sign(x: Any) -> Any:
    """sign x, a constant: its derivative is 0 almost everywhere (for |x|'s vjp)."""
    x = data(x)
    return backend.namespace(x).sign(x)


exp = primitive(_exp, lambda g, out, x: (g * out,), "exp")
log = primitive(_log, lambda g, out, x: (g / x,), "log")
sqrt = primitive(_sqrt, lambda g, out, x: (g / (2 * out),), "sqrt")
absolute = primitive(_abs, lambda g, out, x: (g * _sign(x),), "abs")
maximum = primitive(_maximum, lambda g, out, x, y: _chosen_vjp(g, x, y, True), "maximum")
minimum = primitive(_minimum, lambda g, out, x, y: _chosen_vjp(g, x, y, False), "minimum")
tanh = primitive(_tanh, lambda g, out, x: (g * (1 - out * out),), "tanh")


def square(x: Any) -> Any:
    """x ⊙ x (the op ``mul``, so its vjp is 2 g ⊙ x).

    >>> import numpy as np
    >>> square(np.array([3.0]))
    array([9.])
    """
    return mul(x, x)


def _expand_dims(x: Any, axis: int) -> Any:
    shape = list(x.shape)
    shape.insert(axis if axis >= 0 else len(shape) + axis + 1, 1)
    return reshape(x, tuple(shape))


def _constant(name: str) -> Any:
    """The array namespace's function ``name`` on the data of a Tensor: a constant."""

    def on_data(x: Any, *args: Any, **kw: Any) -> Any:
        x = data(x)
        return getattr(backend.namespace(x), name)(x, *args, **kw)

    return on_data


# The array API's names for the ops of this table: what ``namespace(x)`` gives for a Tensor, so
# a vjp written once with ``xp = namespace(g)`` records when it runs on Tensors. A fixed table.
TENSOR_NAMESPACE = SimpleNamespace(
    sum=reduce_sum,
    mean=mean,
    reshape=reshape,
    expand_dims=_expand_dims,
    concat=lambda xs, axis=0: concat(xs, axis),
    matmul=matmul,
    exp=exp,
    log=log,
    sqrt=sqrt,
    abs=absolute,
    tanh=tanh,
    maximum=maximum,
    minimum=minimum,
    sign=_sign,
    zeros_like=_constant("zeros_like"),
    ones_like=_constant("ones_like"),
    astype=_constant("astype"),
)


# The public names ``sum`` and ``abs`` would shadow Python's builtins inside this module (and
# ruff's A rules forbid it): they are looked up here on demand instead, so ``ops.sum`` works.
_PUBLIC_ALIASES = {"sum": "reduce_sum", "abs": "absolute"}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC_ALIASES:
        return globals()[_PUBLIC_ALIASES[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- Tensor's operators: each is an op of this table ----------------------------------------
# (given to the class here, where the ops are defined, so that tensor.py needs nothing of them)
def _swap(op: Any) -> Any:
    """``other ∘ self`` for the reflected operators (``2 * x`` calls ``x.__rmul__(2)``)."""
    return lambda self, other: op(other, self)


def _transpose(x: Tensor) -> Tensor:
    if x.ndim != 2:
        raise ValueError(f".T is for matrices; use .mT or reshape for shape {x.shape}")
    return matrix_transpose(x)


_NUMPY_NAMES = {"concatenate": "concat", "transpose": "matrix_transpose", "multiply": "mul"}


def _numpy_refused(self: Tensor, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
    """``np.mean(t)`` on a Tensor: NumPy would record no vjp, so say what to use instead."""
    name = _NUMPY_NAMES.get(func.__name__, func.__name__)
    instead = (
        f"tv.ops.{name}"
        if name in _PUBLIC_ALIASES or name in __all__
        else "a tv.ops function, or tv.ops.primitive(forward, vjp) for an op of your own"
    )
    raise TypeError(
        f"np.{func.__name__} got a tv.Tensor: NumPy cannot record its gradient; use {instead} "
        "(or .data for a plain array that takes no part in the gradient)"
    )


_OPERATORS = {
    "__add__": add,
    "__radd__": _swap(add),
    "__sub__": sub,
    "__rsub__": _swap(sub),
    "__mul__": mul,
    "__rmul__": _swap(mul),
    "__truediv__": div,
    "__rtruediv__": _swap(div),
    "__pow__": power,
    "__rpow__": _swap(power),
    "__matmul__": matmul,
    "__rmatmul__": _swap(matmul),
    "__neg__": neg,
    "__getitem__": getitem,
    "mT": property(matrix_transpose),  # the array API's names
    "T": property(_transpose),
    "sum": lambda self, axis=None, keepdims=False: reduce_sum(self, axis=axis, keepdims=keepdims),
    "mean": lambda self, axis=None, keepdims=False: mean(self, axis=axis, keepdims=keepdims),
    "reshape": lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 else shape),
    "__array_function__": _numpy_refused,
}
for _name, _operator in _OPERATORS.items():
    setattr(Tensor, _name, _operator)


__all__ = [
    "Tensor",
    "absolute",
    "add",
    "broadcast_to",
    "concat",
    "div",
    "exp",
    "getitem",
    "log",
    "logsumexp",
    "matmul",
    "matrix_transpose",
    "maximum",
    "mean",
    "minimum",
    "mul",
    "neg",
    "power",
    "reduce_sum",
    "reshape",
    "scatter",
    "sqrt",
    "square",
    "sub",
    "tanh",
    "unbroadcast",
    "vcat",
]
