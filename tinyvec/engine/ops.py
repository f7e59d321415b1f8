"""The derivative table: each op is its forward computation beside its vector-Jacobian
product, ``vjp(g, out, *inputs) -> one cotangent per input``. ``g`` is ∂L/∂out, ``out`` the
forward result. Broadcasting is undone by `unbroadcast`, which sums a cotangent back to the
shape of the input it belongs to.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import namespace
from .tensor import Tensor, data, primitive


def shape_of(x: Any) -> tuple[int, ...] | None:
    """Shape of an array; None for a Python number (which gets no gradient)."""
    return getattr(x, "shape", None)


def unbroadcast(g: Any, x: Any) -> Any:
    """Sum cotangent ``g`` over the axes along which input ``x`` was broadcast."""
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


def _xp(*xs: Any):
    return namespace(next(x for x in xs if shape_of(x) is not None))


# --- arithmetic (broadcasting) --------------------------------------------------------------
add = primitive(lambda x, y: x + y, lambda g, z, x, y: (unbroadcast(g, x), unbroadcast(g, y)))
sub = primitive(lambda x, y: x - y, lambda g, z, x, y: (unbroadcast(g, x), unbroadcast(-g, y)))
mul = primitive(
    lambda x, y: x * y, lambda g, z, x, y: (unbroadcast(g * y, x), unbroadcast(g * x, y))
)
div = primitive(
    lambda x, y: x / y, lambda g, z, x, y: (unbroadcast(g / y, x), unbroadcast(-g * z / y, y))
)
neg = primitive(lambda x: -x, lambda g, z, x: (-g,))


def _pow_vjp(g, z, x, y):
    dx = unbroadcast(g * y * x ** (y - 1), x) if shape_of(x) is not None else None
    dy = None
    if shape_of(y) is not None:
        log_x = _xp(x).log(x) if shape_of(x) is not None else math.log(x)
        dy = unbroadcast(g * z * log_x, y)
    return dx, dy


power = primitive(lambda x, y: x**y, _pow_vjp)


# --- linear algebra and shapes --------------------------------------------------------------
def _matmul_vjp(g, z, x, y):
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


matmul = primitive(lambda x, y: x @ y, _matmul_vjp)
matrix_transpose = primitive(lambda x: x.mT, lambda g, z, x: (g.mT,))
reshape = primitive(
    lambda x, shape: namespace(x).reshape(x, shape),
    lambda g, z, x, shape: (namespace(g).reshape(g, x.shape), None),
)


def _getitem_vjp(g, z, x, index):
    dx = namespace(g).zeros_like(x)
    dx[index] = g  # basic indexing only: each element of x is selected at most once
    return dx, None


getitem = primitive(lambda x, index: x[index], _getitem_vjp)


def _concat(*xs, axis=0):
    return namespace(xs[0]).concat(xs, axis=axis)


def _concat_vjp(g, z, *xs, axis=0):
    index = [slice(None)] * g.ndim  # a full index: the array API allows no implicit trailing axes
    pieces, start = [], 0
    for x in xs:
        index[axis] = slice(start, start + x.shape[axis])
        pieces.append(g[tuple(index)])
        start += x.shape[axis]
    return tuple(pieces)


_concat_op = primitive(_concat, _concat_vjp)


def concat(xs, axis: int = 0):
    """Join arrays or Tensors along ``axis`` (the array API's ``concat``)."""
    return _concat_op(*xs, axis=axis)


def vcat(*xs):
    """Stack feature blocks (axis 0), as Julia's ``vcat``: a connection for SkipConnection."""
    return _concat_op(*xs, axis=0)


# --- reductions -----------------------------------------------------------------------------
def _expand(g, x, axis, keepdims):
    """Give a reduced cotangent back the reduced axes, so it broadcasts against ``x``."""
    if keepdims or axis is None:
        return g
    axes = (axis,) if isinstance(axis, int) else axis
    shape = list(x.shape)
    for a in axes:
        shape[a] = 1
    return namespace(g).reshape(g, tuple(shape))


def _count(x, axis):
    axes = range(x.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    return math.prod(x.shape[a] for a in axes)


sum = primitive(
    lambda x, axis=None, keepdims=False: namespace(x).sum(x, axis=axis, keepdims=keepdims),
    lambda g, z, x, axis=None, keepdims=False: (
        _expand(g, x, axis, keepdims) * namespace(x).ones_like(x),
    ),
)
mean = primitive(
    lambda x, axis=None, keepdims=False: namespace(x).mean(x, axis=axis, keepdims=keepdims),
    lambda g, z, x, axis=None, keepdims=False: (
        _expand(g, x, axis, keepdims) * namespace(x).ones_like(x) / _count(x, axis),
    ),
)


def _logsumexp(x, axis=0):
    xp = namespace(x)
    m = xp.max(x, axis=axis, keepdims=True)
    return xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m


logsumexp = primitive(  # keepdims: the result broadcasts against x
    _logsumexp, lambda g, z, x, axis=0: (g * namespace(x).exp(x - z),)
)

# --- elementwise functions ------------------------------------------------------------------
exp = primitive(lambda x: namespace(x).exp(x), lambda g, z, x: (g * z,))
log = primitive(lambda x: namespace(x).log(x), lambda g, z, x: (g / x,))
sqrt = primitive(lambda x: namespace(x).sqrt(x), lambda g, z, x: (g / (2 * z),))
abs = primitive(lambda x: namespace(x).abs(x), lambda g, z, x: (g * namespace(x).sign(x),))


def _maximum_vjp(g, z, x, y):
    xp = _xp(x, y)
    x_wins = xp.astype(data(x) >= y, g.dtype)  # ties go to x
    return unbroadcast(g * x_wins, x), unbroadcast(g * (1 - x_wins), y)


maximum = primitive(lambda x, y: _xp(x, y).maximum(x, y), _maximum_vjp)


def square(x):
    return mul(x, x)


# --- Tensor operators -----------------------------------------------------------------------
# (an op is a plain function, so it binds as a method with the Tensor as first argument)
Tensor.__add__, Tensor.__radd__ = add, lambda a, b: add(b, a)
Tensor.__sub__, Tensor.__rsub__ = sub, lambda a, b: sub(b, a)
Tensor.__mul__, Tensor.__rmul__ = mul, lambda a, b: mul(b, a)
Tensor.__truediv__, Tensor.__rtruediv__ = div, lambda a, b: div(b, a)
Tensor.__pow__, Tensor.__rpow__ = power, lambda a, b: power(b, a)
Tensor.__matmul__, Tensor.__rmatmul__ = matmul, lambda a, b: matmul(b, a)
Tensor.__neg__ = neg
Tensor.__getitem__ = getitem
Tensor.mT = property(lambda a: matrix_transpose(a))
Tensor.T = property(lambda a: matrix_transpose(a) if a.ndim == 2 else _no_T(a))
Tensor.sum = lambda a, axis=None, keepdims=False: sum(a, axis=axis, keepdims=keepdims)
Tensor.mean = lambda a, axis=None, keepdims=False: mean(a, axis=axis, keepdims=keepdims)
Tensor.reshape = lambda a, *shape: reshape(a, shape[0] if len(shape) == 1 else shape)


def _no_T(a):
    raise ValueError(f".T is for matrices; use .mT or reshape for shape {a.shape}")
