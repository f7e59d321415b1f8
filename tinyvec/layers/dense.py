"""The Dense layer k and its formulas. Its backward pass forms the error vector δ^k itself
(one vjp for the whole layer), which is what makes δ^k free to expose.

The formulas are functions of plain arrays, each written once: `affine` (A^k), `backprop_delta`
(δ^k) and `dense_vjp` (the three gradients). `Dense.forward` calls them, and so do the δ-rules'
sweep and the fast road's written programs (`tinyvec.fast`).
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable
from typing import Any

from ..backend import device, is_array, is_real, same_namespace
from ..engine import ops
from ..engine.activations import Activation, activation, identity
from ..engine.errors import DimensionMismatch
from ..engine.ops import namespace
from ..engine.tensor import Tensor, data, grad_enabled, setting
from .base import Layer
from .init import glorot_uniform


def affine(W: Any, b: Any, O: Any) -> Any:
    """A^k = W^k O^{k-1} + b^k (no bias: b is None). Arrays, or Tensors (then it records). The
    same formula for a stack of E members (`tv.stack`): W (E, out, in), b (E, out), O (E, in, B)
    or (in, B) shared, A (E, out, B)."""
    A = W @ O
    return A if b is None else A + b[..., :, None]


def backprop_delta(sigma: Activation, g: Any, A: Any, O: Any) -> Any:
    """δ^k = ∂L/∂A^k = ∂L/∂O^k ⊙ σ′(A^k), from g = ∂L/∂O^k (O = σ(A): either may be cheaper).
    Arrays, or Tensors (then it records: σ′ is written with tinyvec's ops)."""
    if sigma is identity:
        return g
    return sigma.backprop_recorded(g, A, O) if type(g) is Tensor else sigma.backprop(g, A, O)


def batch_sum(delta: Any) -> Any:
    """Σ_batch δ^k, over the last axis (the batch): ∂L/∂b^k."""
    return namespace(delta).sum(delta, axis=-1)


def dense_vjp(delta: Any, W: Any, O: Any, dO: bool, dW: bool, db: bool) -> tuple[Any, Any, Any]:
    """(∂L/∂O^{k-1} = W^kᵀ δ^k, ∂L/∂W^k = δ^k O^{k-1}ᵀ, ∂L/∂b^k = Σ_batch δ^k), each only where
    asked for (None otherwise). Arrays, or Tensors (then it records). The batch is the last
    axis, so a stack's leading member axis rides along (∂L/∂O^{k-1} of an input O shared by the
    members is (E, in, B): `Dense` sums it)."""
    return (
        W.mT @ delta if dO else None,
        delta @ O.mT if dW else None,
        batch_sum(delta) if db else None,
    )


# Set by a δ-rule sweep (`tinyvec.deltarules.sweep`) for the length of its extra forward pass:
# then every Dense call in this thread goes to ``override(layer, x)`` instead of
# `Dense.forward`. A context variable, so another thread using a Dense layer meanwhile is not
# affected.
_forward_override: contextvars.ContextVar[Callable[[Any, Any], Any] | None] = (
    contextvars.ContextVar("tinyvec_dense_forward", default=None)
)


def forward_override(
    override: Callable[[Any, Any], Any],
) -> contextlib.AbstractContextManager[None]:
    """Inside this block (in this thread) every Dense call ``layer(x)`` is ``override(layer,
    x)``: how a δ-rule sweep reruns the model's forward pass through its own Dense step."""
    return setting(_forward_override, override)


def overridden() -> bool:
    """Whether Dense calls go to a δ-rule sweep's override here (see `forward_override`)."""
    return _forward_override.get() is not None


class Dense(Layer):
    """``Dense(in, out, σ=identity, *, bias=True, init=glorot_uniform, rng=None)``

    The fully connected layer k, on a batch whose columns are samples::

        A^k = W^k O^{k-1} + b^k        (W^k: out × in, b^k: out)
        O^k = σ(A^k)

    Its backward pass, one vjp for the layer: ``δ^k = ∂L/∂O^k ⊙ σ′(A^k)``, then ``∂L/∂W^k = δ^k O^{k-1}ᵀ``,
    ``∂L/∂b^k = Σ_batch δ^k`` and ``∂L/∂O^{k-1} = W^kᵀ δ^k``.

    What it exposes, as arrays of the model's backend (no copies are made):

    - ``weight``, ``bias``: W^k and b^k;
    - ``input``, ``preact``, ``output``: O^{k-1}, A^k, O^k of the last forward pass;
    - ``delta``: δ^k = ∂L/∂A^k of the last gradient, shape (out, batch);
    - ``dW``, ``db``: the increments ΔW^k, Δb^k applied by the last `update`.

    ``bias`` may be False (no bias) or an array; ``init(shape, rng)`` makes the weight.

    >>> import numpy as np, tinyvec as tv
    >>> d = tv.Dense(2, 3, tv.tanh, rng=0)
    >>> d
    Dense(2 => 3, tanh)
    >>> d.weight.shape, d.bias.shape
    ((3, 2), (3,))
    >>> d(np.ones((2, 5))).shape
    (3, 5)
    >>> d(np.ones((4, 5)))
    Traceback (most recent call last):
    ...
    tinyvec.engine.errors.DimensionMismatch: layer Dense(2 => 3, tanh) expects size(input, 0) == 2, but got an input of shape (4, 5)
    """

    params = ("weight", "bias")
    structure = ("sigma",)  # (a new σ is a new model for the fast road's written programs)
    records = ("input", "preact", "output", "delta", "delta_used")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        sigma: Activation | str = identity,
        *,
        bias: Any = True,
        init: Any = glorot_uniform,
        rng: Any = None,
    ) -> None:
        for name, n in (("in", in_features), ("out", out_features)):
            if isinstance(n, bool) or not hasattr(n, "__index__"):
                raise TypeError(f"Dense(in, out): {name} must be a whole number, got {n!r}")
            if n < 1:
                raise ValueError(f"Dense(in, out): {name} must be ≥ 1 feature, got {n}")
        self.weight = init((out_features, in_features), rng)
        got = tuple(self.weight.shape) if is_array(self.weight) else type(self.weight).__name__
        if got != (out_features, in_features):  # (a layer of another shape than asked for)
            raise DimensionMismatch(
                f"Dense({in_features} => {out_features}): init(shape, rng) must return an "
                f"array of shape {(out_features, in_features)} (out × in), got {got}"
            )
        if bias is True:
            xp = namespace(self.weight)
            bias = xp.zeros(out_features, dtype=self.weight.dtype, device=device(self.weight))
        elif bias is False or bias is None:
            bias = None
        elif not is_array(bias):
            raise TypeError(
                f"Dense({in_features} => {out_features}): bias must be True, False or an array "
                f"of shape ({out_features},), got {bias!r}"
            )
        elif tuple(bias.shape) != (out_features,):
            raise DimensionMismatch(
                f"Dense({in_features} => {out_features}): bias must have shape "
                f"({out_features},), got {tuple(bias.shape)} (flatten a column vector)"
            )
        self.bias = bias
        self.sigma = activation(sigma)
        self.forget()

    @classmethod
    def from_weights(cls, weight: Any, bias: Any = None, sigma: Any = identity) -> Dense:
        """A Dense layer around given arrays (Flux's ``Dense(W, b, σ)``)."""
        out, in_ = weight.shape
        return cls(in_, out, sigma, bias=False if bias is None else bias, init=lambda s, r: weight)

    def forget(self) -> None:
        """Clear what the last forward, gradient and update recorded."""
        self.input: Any = None  # O^{k-1}
        self.preact: Any = None  # A^k
        self.output: Any = None  # O^k
        self.delta: Any = None  # δ^k
        self.delta_used: Any = None  # δ̃^k, when a δ-rule rewrote δ^k for the last update
        self.step: dict[str, Any] = {}

    # ΔW = -step: `update` stores the step it subtracted; negating it on demand costs no copy
    # per training step.
    dW = property(lambda self: -self.step["weight"] if "weight" in self.step else None)
    db = property(lambda self: -self.step["bias"] if "bias" in self.step else None)

    @property
    def members(self) -> int | None:
        """E, the number of members, in a stack of E models (`tv.stack`: weight (E, out, in));
        None in an ordinary model."""
        W = data(self.weight)
        return int(W.shape[0]) if W.ndim == 3 else None

    def __repr__(self) -> str:
        out, in_ = data(self.weight).shape[-2:]
        sigma = "" if self.sigma is identity else f", {self.sigma!r}"
        bias = "" if self.bias is not None else ", bias=False"
        members = "" if self.members is None else f", members={self.members}"
        return f"Dense({in_} => {out}{sigma}{bias}{members})"

    def __call__(self, x: Any) -> Any:
        override = _forward_override.get()
        if override is not None:
            return override(self, x)
        return self.forward(x)

    def forward(self, x: Any) -> Any:
        """A^k = W^k O^{k-1} + b^k, O^k = σ(A^k), recording all three on the layer."""
        O = data(x)  # O^{k-1}
        W, b = self.weight, self.bias
        Wd = data(W)
        if not is_array(O):
            raise TypeError(
                f"layer {self!r} takes an array (features × batch), got {type(x).__name__}"
            )
        if O.ndim != 2 and not (O.ndim == 3 == Wd.ndim):  # (a stack: (E, in, B) or (in, B))
            return self._call_reshaped(x, O)
        if O.shape[-2] != Wd.shape[-1]:
            raise DimensionMismatch(
                f"layer {self!r} expects size(input, {O.ndim - 2}) == {Wd.shape[-1]}, "
                f"but got an input of shape {tuple(O.shape)}"
            )
        if b is not None and tuple(data(b).shape) != tuple(Wd.shape[:-1]):  # (an edited layer)
            raise DimensionMismatch(
                f"layer {self!r} has a bias of shape {tuple(data(b).shape)} for its weight of "
                f"shape {tuple(Wd.shape)}: the bias must be {tuple(Wd.shape[:-1])} (give both "
                "their new shapes, and a bias as a vector, not a column)"
            )
        if O.ndim == 3 and O.shape[0] != Wd.shape[0]:
            raise DimensionMismatch(
                f"layer {self!r} is a stack of {Wd.shape[0]} members: it takes (members, in, "
                f"batch) or an input (in, batch) shared by all, got shape {tuple(O.shape)}"
            )
        if type(O) is not type(Wd):  # e.g. a torch tensor into a NumPy model: say so here
            same_namespace(Wd, O, what=f"layer {self!r}")  # the model's library first
        if O.dtype != Wd.dtype:
            O = self._convert(O, Wd.dtype)
        A = affine(Wd, data(b), O)
        out = self.sigma.f(A)
        self.input, self.preact, self.output = O, A, out
        wanted = (isinstance(x, Tensor), isinstance(W, Tensor), isinstance(b, Tensor))
        if not any(wanted):
            return out
        if not grad_enabled():
            return Tensor(out, op="Dense")

        def affine_vjp(delta: Any, here: Tensor | None = None) -> tuple[Any, Any, Any]:
            if here is not None:  # differentiated again: the formulas on Tensors, which record
                return dense_vjp(delta, W, x if wanted[0] else O, *wanted)
            dO, dW, db = dense_vjp(delta, Wd, O, *wanted)
            if dO is not None and dO.ndim > O.ndim:  # an input shared by a stack's members
                dO = namespace(dO).sum(dO, axis=0)
            return dO, dW, db

        def vjp(g: Any, here: Tensor | None = None) -> tuple[Any, Any, Any]:
            # first order (here is None) on the forward's arrays; differentiated again on Tensors,
            # which record: O^k is the node ``here``, A^k the array A as a node with `affine_vjp`
            A_k = A if here is None else Tensor(A, (x, W, b), affine_vjp, "affine")
            delta = backprop_delta(self.sigma, g, A_k, out if here is None else here)
            self.delta, self.delta_used = data(delta), None  # a δ-rule may set delta_used later
            return affine_vjp(delta, here)

        return Tensor(out, (x, W, b), vjp, "Dense")

    def _call_reshaped(self, x: Any, O: Any) -> Any:
        """One sample as a vector: run it as a batch of one and return a vector."""
        if self.members is not None:
            raise DimensionMismatch(
                f"layer {self!r} takes (members, features, batch) (3-D) or features × batch "
                f"shared by all members (2-D), got an input of shape {tuple(O.shape)}"
            )
        if O.ndim != 1:
            raise DimensionMismatch(
                f"layer {self!r} takes features × batch (2-D) or one sample (1-D), "
                f"got an input of shape {tuple(O.shape)}"
            )
        y = self(ops.reshape(x, (O.shape[0], 1)))
        return ops.reshape(y, (data(y).shape[0],))

    def _convert(self, O: Any, dtype: Any) -> Any:
        if not is_real(O) or not namespace(O).isdtype(dtype, "real floating"):
            raise TypeError(  # (into integer parameters, the input's fractions would be lost)
                f"layer {self!r} takes real numbers into floating-point parameters, got an "
                f"input of {O.dtype} values and {dtype} parameters: convert them to floats first"
            )
        key = (str(O.dtype), str(dtype))
        warned = self.__dict__.get("_warned", frozenset())  # once per layer and dtype pair
        if key not in warned:
            self._warned = warned | {key}
            warnings.warn(
                f"layer {self!r} with {dtype} parameters got {O.dtype} input; "
                f"converting it (convert the data, or the model with tv.f32/tv.f64)",
                stacklevel=3,
            )
        return namespace(O).astype(O, dtype)
