"""Losses: a scalar from predictions ŷ and targets y (features × batch, like everything).

>>> import numpy as np, tinyvec as tv
>>> float(tv.mse(np.array([[1.0, 2.0]]), np.array([[1.0, 4.0]])))
2.0
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace
from . import ops
from .tensor import primitive


def _mse(yhat, y):
    return namespace(yhat).mean((yhat - y) ** 2)


def _mse_vjp(g, L, yhat, y):
    r = (yhat - y) * (g * (2 / yhat.size))
    return r, -r


mse = primitive(_mse, _mse_vjp)
mse.__doc__ = "mean((ŷ - y)²) over all elements, as Flux's ``mse``."


def _crossentropy(logits, y):
    xp = namespace(logits)
    logp = logits - ops._logsumexp(logits, axis=0)
    return -xp.sum(y * logp) / logits.shape[1]


def _crossentropy_vjp(g, L, logits, y):
    xp = namespace(logits)
    p = xp.exp(logits - ops._logsumexp(logits, axis=0))  # softmax over classes
    return g * (p * xp.sum(y, axis=0, keepdims=True) - y) / logits.shape[1], None


crossentropy = primitive(_crossentropy, _crossentropy_vjp)
crossentropy.__doc__ = """Cross-entropy of softmax(logits) against targets y (C × batch, one-hot
or probabilities), mean over the batch: Flux's ``logitcrossentropy``, stable via log-sum-exp."""


def r2(yhat: Any, y: Any) -> Any:
    """Squared correlation ``cov(ŷ, y)² / (var ŷ · var y)`` over all elements (differentiable).

    >>> import numpy as np, tinyvec as tv
    >>> round(float(tv.r2(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.5]))), 4)
    0.9959
    """
    a = yhat - ops.mean(yhat)
    b = y - ops.mean(y)
    return ops.sum(a * b) ** 2 / (ops.sum(a * a) * ops.sum(b * b))


def onehot(labels: Any, nclasses: int) -> Any:
    """C × batch one-hot matrix of integer ``labels`` (an array of the target namespace)."""
    xp = namespace(labels)
    classes = xp.arange(nclasses, dtype=labels.dtype)
    return xp.astype(classes[:, None] == labels[None, :], xp.float64)
