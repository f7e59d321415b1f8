"""Differentiable operations on arrays and Tensors, for writing custom layers and losses
(the table itself lives in `tinyvec.engine.ops`)."""

from .engine.ops import (  # noqa: F401
    abs,
    add,
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
    mul,
    neg,
    power,
    reshape,
    sqrt,
    square,
    sub,
    sum,
    unbroadcast,
    vcat,
)
from .engine.tensor import Tensor, no_grad, primitive  # noqa: F401
