"""Losses: a scalar from predictions ŷ and targets y (features × batch, like everything).

Predictions and targets must have the same shape: NumPy would broadcast a (1, 32) ŷ against
a (32, 1) y into a 32 × 32 difference and return a plausible, wrong number, so a mismatch is
refused with `DimensionMismatch` naming both shapes. `crossentropy` also takes integer class
labels (one per sample, as PyTorch's ``cross_entropy``).

>>> import numpy as np, tinyvec as tv
>>> float(tv.mse(np.array([[1.0, 2.0]]), np.array([[1.0, 4.0]])))
2.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..backend import device, has_kind, is_array, namespace, same_namespace
from . import ops
from .errors import DimensionMismatch
from .tensor import Tensor, data, primitive


def _check_pair(loss: str, yhat: Any, y: Any) -> None:
    """Arrays of one library, same shape, at least one element: otherwise one clear error."""
    call, pair = f"tv.{loss}(ŷ, y)", (data(yhat), data(y))  # (the arrays, of Tensors too)
    for name, given, a in (("ŷ", yhat, pair[0]), ("y", y, pair[1])):
        if not is_array(a):
            raise TypeError(
                f"{call}: {name} must be an array (features × batch), got "
                f"{type(given).__name__}; wrap a constant target as an array of ŷ's shape"
            )
        _check_real(call, name, a)
    same_namespace(*pair, what=call)
    a, b = tuple(pair[0].shape), tuple(pair[1].shape)
    if a != b:
        raise DimensionMismatch(
            f"{call} needs ŷ and y of the same shape, got ŷ {a} and y {b} "
            + ("(a stack's outputs: give each member its targets, np.stack([y] * E))"
               if len(a) == 3 and a[1:] == b
               else "(features × batch; reshape or transpose one of them)")
        )  # fmt: skip
    if math.prod(a) == 0:
        raise ValueError(f"{call}: empty batch (shape {a}), the mean is undefined")


REAL = ("bool", "integral", "real floating")  # the kinds of numbers a loss computes with


def _check_real(call: str, name: str, a: Any) -> None:
    """Refuse an array of strings, objects or complex numbers (NumPy's error, deep inside the
    loss, would name a ufunc loop)."""
    # (a target may hold booleans, a prediction not: it is what the model computes)
    kinds = ("integral", "real floating") if name in ("ŷ", "logits") else REAL
    if not has_kind(a, kinds):
        raise TypeError(
            f"{call}: {name} holds {a.dtype} values, not real numbers; convert it to numbers "
            f"first (e.g. integer class labels, or floats)"
        )


def _mean_square(r, members=False):  # L = Σ r² / n, the mean square of the residual r = ŷ - y
    # (members: a stack's E member losses, each over its own features × batch)
    xp = namespace(r)
    if members:
        return xp.sum(r**2, axis=(-2, -1)) / math.prod(r.shape[-2:])
    return xp.sum(r**2) / math.prod(r.shape)


def _per_member(g, like):
    """The cotangent g of the E member losses (shape (E,)) as (E, 1, …, 1), to scale ``like``
    (E, …) member by member; a scalar g as it is."""
    if getattr(g, "ndim", 0) == 0:
        return g
    return ops.namespace(g).reshape(g, (-1,) + (1,) * (like.ndim - 1))  # (Tensors: recorded)


def _mean_square_grad(g, r, members=False):  # ∂L/∂ŷ = 2 r / n, times the cotangent g of L
    # math.prod(shape), not .size: a torch tensor's size is a method
    return r * (_per_member(g, r) * (2 / math.prod(r.shape[-2:] if members else r.shape)))


def _mse(yhat, y, members=False):
    return _mean_square(yhat - y, members)


def _mse_grad(g, yhat, y, members=False):  # ∂L/∂ŷ
    return _mean_square_grad(g, yhat - y, members)


def _mse_vjp(g, L, yhat, y, members=False):
    r = _mse_grad(g, yhat, y, members)
    return r, -r


def _mse_to(yhat, *, y, members=False):  # y a constant (the usual target): no cotangent for it
    return _mse(yhat, y, members)


_mse_op = primitive(_mse, _mse_vjp, "mse")
_mse_to_op = primitive(
    _mse_to, lambda g, L, yhat, *, y, members=False: (_mse_grad(g, yhat, y, members),), "mse"
)


def _check_members(loss: str, yhat: Any, members: bool) -> None:
    """``members=True`` takes ŷ of a stack, (E, features, batch)."""
    if members and data(yhat).ndim != 3:
        raise DimensionMismatch(
            f"tv.{loss}(ŷ, y, members=True) takes the output of a stack of E models, "
            f"(members, features, batch), got ŷ of shape {tuple(data(yhat).shape)}"
        )


def mse(yhat: Any, y: Any, *, members: bool = False) -> Any:
    """Mean squared error ``L = mean((ŷ - y)²)`` over all elements, as Flux's ``mse``;
    ∂L/∂ŷ = 2 (ŷ - y) / n. ŷ and y must have the same shape.

    ``members=True``: ŷ and y are the (E, features, batch) outputs and targets of a stack of E
    models (`tv.stack`), and the loss is the E member losses, shape (E,), each the mean over
    its own features × batch; `tv.gradient` differentiates their sum, so every member gets
    exactly its own gradient.

    >>> import numpy as np, tinyvec as tv
    >>> float(tv.mse(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])))
    0.5
    >>> tv.mse(np.zeros((2, 1, 3)), np.ones((2, 1, 3)), members=True)
    array([1., 1.])
    >>> tv.mse(np.zeros((1, 3)), np.zeros((3, 1)))
    Traceback (most recent call last):
    ...
    tinyvec.engine.errors.DimensionMismatch: tv.mse(ŷ, y) needs ŷ and y of the same shape, got ŷ (1, 3) and y (3, 1) (features × batch; reshape or transpose one of them)
    """
    _check_pair("mse", yhat, y)
    _check_members("mse", yhat, members)
    if type(y) is Tensor:
        return _mse_op(yhat, y, members=True) if members else _mse_op(yhat, y)
    return _mse_to_op(yhat, y=y, members=True) if members else _mse_to_op(yhat, y=y)


def _crossentropy(logits, y, members=False):
    xp = namespace(logits)
    logp = logits - ops.logsumexp(logits, axis=-2)  # (arrays in, an array out)
    if members:
        return -xp.sum(y * logp, axis=(-2, -1)) / logits.shape[-1]
    return -xp.sum(y * logp) / logits.shape[1]


def _crossentropy_vjp(g, L, logits, y, members=False):
    xp = ops.namespace(logits)  # (tinyvec's ops for Tensors: a vjp that can be differentiated)
    p = xp.exp(logits - ops.logsumexp(logits, axis=-2))  # softmax over classes
    grad = _per_member(g, p) * (p * xp.sum(y, axis=-2, keepdims=True) - y) / logits.shape[-1]
    return grad, None


_crossentropy_op = primitive(_crossentropy, _crossentropy_vjp)


def crossentropy(logits: Any, y: Any, *, members: bool = False) -> Any:
    """Cross-entropy of softmax(logits) against targets, mean over the batch:
    ``L = -(1/B) Σ_b Σ_c y_cb log softmax(logits)_cb``, Flux's ``logitcrossentropy``, stable
    via log-sum-exp; ∂L/∂logits = (softmax(logits) Σ_c y_c - y) / B.

    ``logits`` is C × B. ``y`` is either C × B (one-hot or probabilities) or a vector of B
    integer class labels in 0..C-1 (as PyTorch's ``cross_entropy``). ``members=True``: the
    (E, C, B) logits of a stack of E models (`tv.stack`), targets (E, C, B), or labels (E, B)
    or (B,) shared; the loss is the E member losses, shape (E,) (see `mse`).

    >>> import numpy as np, tinyvec as tv
    >>> logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    >>> round(float(tv.crossentropy(logits, np.array([0, 1]))), 6)
    0.410038
    >>> round(float(tv.crossentropy(logits, tv.onehot(np.array([0, 1]), 2))), 6)
    0.410038
    """
    _check_members("crossentropy", logits, members)
    t = _crossentropy_target(logits, y, members)
    return _crossentropy_op(logits, t, members=True) if members else _crossentropy_op(logits, t)


def _crossentropy_target(logits: Any, y: Any, members: bool = False) -> Any:
    """``y`` as C × B targets (integer labels made one-hot), after checking both; (E, C, B)
    for the logits of a stack (``members``)."""
    z, t = data(logits), data(y)
    for name, a in (("logits", z), ("y", t)):
        if not is_array(a):
            raise TypeError(
                f"tv.crossentropy(logits, y): {name} must be an array, got {type(a).__name__}"
            )
        _check_real("tv.crossentropy(logits, y)", name, a)
    same_namespace(z, t, what="tv.crossentropy(logits, y)")
    if z.ndim != 2 + members:
        raise DimensionMismatch(
            f"tv.crossentropy: logits must be classes × batch (2-D), got shape {tuple(z.shape)}"
        )
    xp = namespace(z)
    if t.ndim in (1, 1 + members) and xp.isdtype(t.dtype, "integral"):
        if t.shape[-1] != z.shape[-1] or (t.ndim == 2 and t.shape[0] != z.shape[0]):
            raise DimensionMismatch(
                f"tv.crossentropy: {t.shape[-1]} labels for a batch of {z.shape[-1]} "
                f"(logits {tuple(z.shape)}: {'members × ' if members else ''}classes × batch)"
                if t.ndim == 1 or t.shape[0] == z.shape[0]
                else f"tv.crossentropy: labels {tuple(t.shape)} for a stack of {z.shape[0]}"
            )
        if t.shape[-1] == 0:
            raise ValueError("tv.crossentropy: empty batch, the mean is undefined")
        if t.ndim == 2:  # a stack's labels, member by member
            y = xp.stack([onehot(t[e, ...], z.shape[-2]) for e in range(t.shape[0])])
        else:
            y = onehot(t, z.shape[-2])
        y = xp.astype(y, z.dtype)
        if y.ndim < z.ndim:  # labels shared by the members
            y = xp.broadcast_to(y, z.shape)
    elif t.ndim < z.ndim:
        raise DimensionMismatch(
            f"tv.crossentropy: a vector of targets must hold integer class labels, got "
            f"{t.dtype}; give labels as integers or targets as classes × batch {tuple(z.shape)}"
        )
    _check_pair("crossentropy", logits, y)
    return y


# --- a loss of the model's output, written into a compiled step ------------------------------
def _mse_check(yhat: Any, y: Any) -> bool:
    if type(y) is Tensor:  # (a Tensor target: left to the graph)
        return False
    _check_pair("mse", yhat, y)
    return True


def _mse_forward(yhat: Any, y: Any) -> tuple[Any, Any]:
    r = yhat - y  # the residual, formed once for the value and the gradient
    return _mean_square(r, r.ndim == 3), r  # (ndim 3: a stack's E member losses)


def _crossentropy_forward(logits: Any, y: Any) -> tuple[Any, Any]:
    t = _crossentropy_target(logits, y)  # (labels: made one-hot, and checked, at every step)
    return _crossentropy(logits, t), (logits, t)


def parts(loss: Any) -> Any:
    """For `mse` and `crossentropy`, ``(check, forward, vjp)``: the functions their graph node
    runs, for a step without a graph (`tv.compile`). ``check(ŷ, y)`` raises what the loss
    would raise for such arrays (False: a target left to the graph, a Tensor) and depends on
    their types, dtypes and shapes only; ``forward(ŷ, y) -> (L, saved)``, ``vjp(∂L̄, saved) ->
    ∂L/∂ŷ``. For any other function: None."""
    return next((p for f, p in _PARTS.items() if f is loss), None)


def model_loss(loss: Callable[..., Any]) -> Callable[..., Any]:
    """The loss of a training step, ``loss(model, *batch)``: a loss of this module given in
    its place stands for ``loss(model(x), y)`` on batches ``(x, y)`` (for a stack of models,
    `tv.stack`, ``loss(model(x), y, members=True)``); any other function is the step's loss as
    it is.

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.Dense(1, 1, bias=False, init=lambda shape, rng: np.full(shape, 2.0))
    >>> x, y = np.ones((1, 3)), np.zeros((1, 3))
    >>> float(model_loss(tv.mse)(model, x, y)), float(tv.mse(model(x), y))
    (4.0, 4.0)
    """
    if parts(loss) is None:
        return loss

    def of_model(model: Any, *batch: Any) -> Any:
        if len(batch) != 2:
            raise TypeError(
                f"tv.{loss.__name__} as the loss of a step means {loss.__name__}(model(x), y): "
                f"it takes batches (x, y), got {len(batch)} array(s); for anything else write "
                f"the loss, e.g. lambda m, x, y: tv.{loss.__name__}(m(x), y)"
            )
        out = model(batch[0])
        if data(out).ndim == 3:  # the (E, features, batch) output of a stack: E member losses
            return loss(out, batch[1], members=True)
        return loss(out, batch[1])

    of_model.__name__ = of_model.__qualname__ = f"{loss.__name__}(model(x), y)"
    return of_model


def r2(yhat: Any, y: Any) -> Any:
    """Squared correlation ``cov(ŷ, y)² / (var ŷ · var y)`` over all elements (differentiable).

    >>> import numpy as np, tinyvec as tv
    >>> round(float(tv.r2(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.5]))), 4)
    0.9959
    """
    _check_pair("r2", yhat, y)
    a = yhat - ops.mean(yhat)
    b = y - ops.mean(y)
    return ops.sum(a * b) ** 2 / (ops.sum(a * a) * ops.sum(b * b))


_PARTS = {
    mse: (_mse_check, _mse_forward, lambda g, r: _mean_square_grad(g, r, r.ndim == 3)),
    crossentropy: (
        lambda logits, y: type(y) is not Tensor and data(logits).ndim == 2,
        _crossentropy_forward,
        lambda g, saved: _crossentropy_vjp(g, None, *saved)[0],
    ),
}


def onehot(labels: Any, nclasses: int) -> Any:
    """C × batch one-hot matrix of integer ``labels`` in 0..C-1 (an array of the target
    namespace): ``Y[c, b] = 1`` if ``labels[b] == c``, float64.

    >>> import numpy as np, tinyvec as tv
    >>> tv.onehot(np.array([1, 0]), 2)
    array([[0., 1.],
           [1., 0.]])
    """
    xp = namespace(labels)
    if labels.ndim != 1 or not xp.isdtype(labels.dtype, "integral"):
        raise ValueError(
            f"tv.onehot: labels must be a vector of integers, got {labels.dtype} "
            f"of shape {tuple(labels.shape)}"
        )
    if labels.shape[0] and (int(xp.min(labels)) < 0 or int(xp.max(labels)) >= nclasses):
        bad = int(xp.min(labels)) if int(xp.min(labels)) < 0 else int(xp.max(labels))
        raise ValueError(f"label {bad} is outside 0..{nclasses - 1} ({nclasses} classes)")
    classes = xp.arange(nclasses, dtype=labels.dtype, device=device(labels))
    return xp.astype(classes[:, None] == labels[None, :], xp.float64)
