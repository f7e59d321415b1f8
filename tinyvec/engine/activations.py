"""Activation functions σ. Each is its formula beside its derivative σ′, written in terms
of the pre-activation A and the output O = σ(A) (whichever is cheaper): Dense uses σ′ to
form δ^k = ∂L/∂O^k ⊙ σ′(A^k) in its backward pass.

    >>> import numpy as np, tinyvec as tv
    >>> tv.relu(np.array([-1.0, 2.0]))
    array([0., 2.])
    >>> tv.tanh.derivative(np.array([0.0]), np.array([0.0]))
    array([1.])

Each built-in σ′ is written with operators and ``xp = namespace(A)`` (`tinyvec.engine.ops`):
on Tensors it records, so a gradient through σ can be differentiated again (σ″ follows).
A custom activation whose derivative calls NumPy works for gradients; asked for a second
derivative (``create_graph=True``) it raises a TypeError that says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..backend import takes_arrays
from .ops import namespace
from .tensor import Tensor, data, primitive

GELU_C = math.sqrt(2 / math.pi)
GELU_CLIP = 10.0


class Activation:
    """σ with its derivative: ``f(A) -> O`` and ``derivative(A, O) -> σ′(A)``.

    ``backprop(g, A, O) -> g ⊙ σ′(A)`` is what the backward pass calls; by default it
    multiplies by `derivative`, and an activation may give a cheaper form of the same product
    (one array operation less counts on small layers).

    The built-in activations are module-level instances that pickle and copy by name, so a
    copied or unpickled model still holds *the* ``tv.identity`` (Dense skips the activation
    node for it). A custom activation pickles when its functions do (functions defined at module level,
    not lambdas).

    >>> import copy, pickle, tinyvec as tv
    >>> pickle.loads(pickle.dumps(tv.relu)) is tv.relu, copy.deepcopy(tv.identity) is tv.identity
    (True, True)
    """

    def __init__(
        self, name: str, f: Callable, derivative: Callable | None, backprop: Callable | None = None
    ) -> None:
        for what, fn in (("f", f), ("derivative", derivative), ("backprop", backprop)):
            if not (callable(fn) or (fn is None and what != "f")):
                raise TypeError(f"Activation {name!r}: {what} must be a function, got {fn!r}")
        if derivative is None and backprop is None and name != "identity":
            raise TypeError(f"Activation {name!r}: give its derivative(A, O) or backprop(g, A, O)")
        for call, fn in (
            ("f(A)", f),
            ("derivative(A, O)", derivative),
            ("backprop(g, A, O)", backprop),
        ):
            args = call[call.index("(") + 1 : -1]
            if fn is not None and not takes_arrays(fn, args.count(",") + 1):
                out = " (a NumPy ufunc: it would write into the next array)" * hasattr(fn, "nin")
                raise TypeError(
                    f"Activation {name!r} calls {call}, which {fn!r}{out} cannot take: give a "
                    f"function of ({args}), such as lambda {args}: …"
                )
        self.name, self.f, self.derivative = name, f, derivative
        self._backprop = backprop  # as given: what pickling stores
        self.backprop = backprop or self._times_derivative
        self._op = primitive(f, self._vjp)

    def _times_derivative(self, g: Any, A: Any, O: Any) -> Any:
        if self.derivative is None:  # identity: Dense never calls it (no activation node)
            return g
        return g * self.derivative(A, O)

    def _vjp(self, g: Any, O: Any, A: Any) -> tuple[Any]:
        if type(g) is Tensor:  # differentiated again (create_graph)
            return (self.backprop_recorded(g, A, O),)
        return (self.backprop(g, A, O),)

    def backprop_recorded(self, g: Any, A: Any, O: Any) -> Any:
        """``g ⊙ σ′(A)`` on Tensors, recorded, so that σ″ follows (``create_graph=True``); one
        clear error for a derivative written with NumPy calls, which cannot record."""
        try:
            return self.backprop(g, A, O)
        except TypeError as e:
            raise TypeError(
                f"activation {self.name!r}: its derivative cannot be differentiated "
                "(create_graph=True, a Hessian-vector product): write derivative(A, O) with "
                "operators and tv.ops functions (xp = tv.ops.namespace(A)), not NumPy calls"
            ) from e

    def __call__(self, x: Any) -> Any:
        return self._op(x)

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[Any, ...]:
        if ACTIVATIONS.get(self.name) is self:  # a built-in: by name, so identity stays identity
            return activation, (self.name,)
        return Activation, (self.name, self.f, self.derivative, self._backprop)


def _identity(x: Any) -> Any:
    return x


def _sigmoid(A):  # the tanh form cannot overflow
    return 0.5 * namespace(A).tanh(0.5 * A) + 0.5


def _gelu_clipped(A):
    """A clipped to [-10, 10]: beyond, tanh(√(2/π)(A + 0.044715 A³)) is ±1 exactly (its
    argument exceeds 43), so the clip changes no value, and A³ cannot overflow to inf (or
    A² · 0 become NaN in the derivative) for huge |A|."""
    xp = namespace(A)
    return xp.minimum(xp.maximum(A, -GELU_CLIP), GELU_CLIP)


def _gelu(A):  # the tanh approximation, as Flux's default gelu
    xp = namespace(A)
    Ac = _gelu_clipped(A)
    return 0.5 * A * (1 + xp.tanh(GELU_C * (Ac + 0.044715 * Ac**3)))


def _gelu_derivative(A, O):
    xp = namespace(A)
    Ac = _gelu_clipped(A)
    t = xp.tanh(GELU_C * (Ac + 0.044715 * Ac**3))
    return 0.5 * (1 + t) + 0.5 * Ac * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * Ac**2)


def _positive(A):
    """σ′ of relu: 1 where A > 0, else 0 (a constant: σ″ = 0 almost everywhere)."""
    A = data(A)
    return namespace(A).astype(A > 0, A.dtype)


def _leaky(A):  # max(A, aA) for a slope a < 1 (faster than `where`, which NumPy runs slowly)
    return namespace(A).maximum(A, LEAKY_SLOPE * A)


LEAKY_SLOPE = 0.01

identity = Activation("identity", _identity, None)
identity._op = _identity  # no node at all
tanh = Activation("tanh", lambda A: namespace(A).tanh(A), lambda A, O: 1 - O * O)
atan = Activation(
    "atan",
    lambda A: namespace(A).atan(A),
    lambda A, O: 1 / (1 + A * A),
    lambda g, A, O: g / (1 + A * A),
)
relu = Activation("relu", lambda A: namespace(A).maximum(A, 0.0), lambda A, O: _positive(A))
leakyrelu = Activation(
    "leakyrelu", _leaky, lambda A, O: (1 - LEAKY_SLOPE) * _positive(A) + LEAKY_SLOPE
)
sigmoid = Activation("sigmoid", _sigmoid, lambda A, O: O * (1 - O))
softplus = Activation(
    "softplus", lambda A: namespace(A).logaddexp(A, 0.0), lambda A, O: _sigmoid(A)
)
gelu = Activation("gelu", _gelu, _gelu_derivative)

ACTIVATIONS = {a.name: a for a in (identity, tanh, atan, relu, leakyrelu, sigmoid, softplus, gelu)}


def activation(sigma: Any) -> Activation:
    """Look up σ by object or name; anything else is a clear error."""
    if isinstance(sigma, Activation):
        return sigma
    if isinstance(sigma, str) and sigma in ACTIVATIONS:
        return ACTIVATIONS[sigma]
    raise ValueError(
        f"unknown activation {sigma!r}: use one of {', '.join(ACTIVATIONS)} "
        "or an Activation(name, f, derivative)"
    )
