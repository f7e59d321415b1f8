"""Differentiable operations on arrays and Tensors, for writing custom layers and losses
(the table itself lives in `tinyvec.engine.ops`). ``tv.ops.sum`` and ``tv.ops.abs`` are the
engine's ``reduce_sum`` and ``absolute`` under their NumPy names.

    >>> import numpy as np, tinyvec as tv
    >>> tv.gradient(lambda x: tv.ops.sum(tv.ops.abs(x)), np.array([-2.0, 3.0]))
    array([-1.,  1.])
"""

from .engine.ops import (
    absolute,
    add,
    broadcast_to,
    concat,
    div,
    exp,
    getitem,
    log,
    logsumexp,
    matmul,
    matrix_transpose,
    maximum,
    mean,
    minimum,
    mul,
    namespace,
    neg,
    power,
    reduce_sum,
    reshape,
    sqrt,
    square,
    sub,
    tanh,
    unbroadcast,
    vcat,
)
from .engine.tensor import Tensor, grad, no_grad, primitive

# NumPy's names, for readers coming from it; they shadow the builtins only in this namespace
sum = reduce_sum  # noqa: A001, RUF100
abs = absolute  # noqa: A001, RUF100

__all__ = [
    "Tensor",
    "abs",
    "absolute",
    "add",
    "broadcast_to",
    "concat",
    "div",
    "exp",
    "getitem",
    "grad",
    "log",
    "logsumexp",
    "matmul",
    "matrix_transpose",
    "maximum",
    "mean",
    "minimum",
    "mul",
    "namespace",
    "neg",
    "no_grad",
    "power",
    "primitive",
    "reduce_sum",
    "reshape",
    "sqrt",
    "square",
    "sub",
    "sum",
    "tanh",
    "unbroadcast",
    "vcat",
]
