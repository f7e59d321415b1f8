"""Optimisation rules in the style of Optimisers.jl: a rule is a tiny object with

- ``init(x) -> state`` for one parameter array x, and
- ``apply(state, x, dx) -> (state, step)``, turning the gradient dx into the step that
  `update` subtracts: x ← x - step, so the applied increment is ΔW = -step.

Rules compose: ``OptimiserChain(ClipNorm(1.0), WeightDecay(1e-4), Descent(0.1))`` feeds each
rule's step to the next as its gradient. For plain `Descent(α)`, ΔW^k = -α δ^k O^{k-1}ᵀ.

A rule whose ``apply`` treats every entry on its own (all but ClipNorm here) says so with
``elementwise = True`` in the class that defines that ``apply`` (see `elementwise`): `update`
may then run it once on all parameters laid end to end as one vector θ instead of once per
parameter (a multi-tensor step, with the same numbers).

    >>> import numpy as np, tinyvec as tv
    >>> state, step = tv.Momentum(0.1, 0.9).apply(np.zeros(2), np.ones(2), np.ones(2))
    >>> step
    array([0.1, 0.1])
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import namespace


def _finite(rule: str, **values: float) -> None:
    """A NaN or infinite hyperparameter would turn every parameter into NaN at the first step."""
    for name, v in values.items():
        if not (isinstance(v, numbers.Real) and math.isfinite(v)):
            raise ValueError(f"{rule}: {name} must be a finite number, got {v!r}")


def _rate(rule: str, **values: float) -> None:
    """Learning rates and decays are ≥ 0: a negative one climbs the loss instead."""
    _finite(rule, **values)
    for name, v in values.items():
        if v < 0:
            raise ValueError(f"{rule}: {name} must be ≥ 0 (a negative rate ascends), got {v}")


def _fraction(rule: str, **values: float) -> None:
    """Decay rates ρ, β are fractions: 0 ≤ v < 1 (at 1 the average never forgets)."""
    _finite(rule, **values)
    for name, v in values.items():
        if not 0 <= v < 1:
            raise ValueError(f"{rule}: {name} must be in [0, 1), got {v}")


class Rule:
    """Base rule: no state. Subclasses define ``apply`` and, if stateful, ``init``, and set
    ``elementwise = True`` when ``apply`` treats each entry on its own (see the module text)."""

    elementwise = False

    def init(self, x: Any) -> Any:
        return None

    def apply(self, state: Any, x: Any, dx: Any) -> tuple[Any, Any]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(repr(v) for v in vars(self).values())
        return f"{type(self).__name__}({args})"


class Descent(Rule):
    """step = η dx (plain gradient descent)."""

    elementwise = True

    def __init__(self, eta: float = 0.1) -> None:
        _rate("Descent", eta=eta)
        self.eta = eta

    def apply(self, state, x, dx):
        return state, self.eta * dx


class Momentum(Rule):
    """v ← ρ v + η dx; step = v."""

    elementwise = True

    def __init__(self, eta: float = 0.01, rho: float = 0.9) -> None:
        _rate("Momentum", eta=eta)
        _fraction("Momentum", rho=rho)
        self.eta, self.rho = eta, rho

    def init(self, x):
        return namespace(x).zeros_like(x)

    def apply(self, v, x, dx):
        v = self.rho * v + self.eta * dx
        return v, v


class Nesterov(Rule):
    """Nesterov momentum as Optimisers.jl: v ← ρ v - η dx; step = -ρ² v_old + (1+ρ) η dx."""

    elementwise = True

    def __init__(self, eta: float = 0.001, rho: float = 0.9) -> None:
        _rate("Nesterov", eta=eta)
        _fraction("Nesterov", rho=rho)
        self.eta, self.rho = eta, rho

    def init(self, x):
        return namespace(x).zeros_like(x)

    def apply(self, v, x, dx):
        step = -(self.rho**2) * v + (1 + self.rho) * self.eta * dx
        return self.rho * v - self.eta * dx, step


class Adam(Rule):
    """m ← β₁m + (1-β₁)dx, v ← β₂v + (1-β₂)dx²; step = η m̂ / (√v̂ + ε), hats bias-corrected."""

    elementwise = True

    def __init__(
        self, eta: float = 0.001, beta: tuple[float, float] = (0.9, 0.999), epsilon: float = 1e-8
    ) -> None:
        _rate("Adam", eta=eta, epsilon=epsilon)
        if not (isinstance(beta, tuple | list) and len(beta) == 2):
            raise ValueError(f"Adam: beta must be a pair (β₁, β₂), got {beta!r}")
        _fraction("Adam", beta1=beta[0], beta2=beta[1])
        self.eta, self.beta, self.epsilon = eta, tuple(beta), epsilon

    def init(self, x):
        xp = namespace(x)
        return xp.zeros_like(x), xp.zeros_like(x), (1.0, 1.0)

    def apply(self, state, x, dx):
        m, v, (b1t, b2t) = state
        b1, b2 = self.beta
        m = b1 * m + (1 - b1) * dx
        v = b2 * v + (1 - b2) * dx * dx
        b1t, b2t = b1t * b1, b2t * b2
        step = self.eta * (m / (1 - b1t)) / (namespace(v).sqrt(v / (1 - b2t)) + self.epsilon)
        return (m, v, (b1t, b2t)), step


class WeightDecay(Rule):
    """step = dx + λ x (L2 regularisation, placed in a chain)."""

    elementwise = True

    def __init__(self, lam: float = 5e-4) -> None:
        _rate("WeightDecay", lam=lam)
        self.lam = lam

    def apply(self, state, x, dx):
        return state, dx + self.lam * x


class ClipNorm(Rule):
    """Rescale dx to norm ω when ‖dx‖_p > ω (per array): step = dx · min(1, ω / ‖dx‖_p), with
    ‖dx‖_p = (Σ|dx|^p)^(1/p) and ‖dx‖_∞ = max |dx| (as Optimisers.jl's ``ClipNorm``).

    A NaN or infinite norm raises instead of passing a broken gradient on (Optimisers.jl's
    ``throw=true``); p must be positive and ω non-negative.

    >>> import numpy as np, tinyvec as tv
    >>> tv.ClipNorm(1.0, p=np.inf).apply(None, None, np.array([3.0, -4.0]))[1]
    array([ 0.75, -1.  ])
    """

    def __init__(self, omega: float = 10.0, p: float = 2) -> None:
        if not omega >= 0:  # also refuses NaN
            raise ValueError(f"ClipNorm: the norm bound ω must be ≥ 0, got {omega}")
        if not p > 0:
            raise ValueError(f"ClipNorm: p must be > 0 (inf for the max norm), got {p}")
        self.omega, self.p = omega, p

    def apply(self, state, x, dx):
        xp = namespace(dx)
        if math.isinf(self.p):
            norm = float(xp.max(xp.abs(dx)))
        else:
            norm = float(xp.sum(xp.abs(dx) ** self.p) ** (1 / self.p))
        if not math.isfinite(norm):
            raise FloatingPointError(
                f"ClipNorm: the gradient's {self.p}-norm is {norm} (NaN or infinite entries); "
                "look for a diverging loss or a too large learning rate"
            )
        return state, dx * (self.omega / norm) if norm > self.omega else dx


class OptimiserChain(Rule):
    """Apply rules in order, each to the previous one's step."""

    def __init__(self, *rules: Rule) -> None:
        for r in rules:
            if not isinstance(r, Rule):
                raise TypeError(f"OptimiserChain takes rules such as tv.Descent(0.1), got {r!r}")
        self.rules = rules

    def init(self, x):
        return tuple(r.init(x) for r in self.rules)

    def apply(self, states, x, dx):
        new = []
        for rule, s in zip(self.rules, states, strict=True):
            s, dx = rule.apply(s, x, dx)
            new.append(s)
        return tuple(new), dx

    def __repr__(self) -> str:
        return f"OptimiserChain({', '.join(map(repr, self.rules))})"


def elementwise(rule: Rule) -> bool:
    """Whether ``rule.apply`` treats each entry on its own, as the class that defines that
    ``apply`` says with ``elementwise = True``: a subclass that overrides ``apply`` is not
    taken to be elementwise unless it says so again (a chain: when all its rules are).

    >>> import tinyvec as tv
    >>> class Normalised(tv.Descent):  # a new apply: not elementwise unless it says so
    ...     def apply(self, state, x, dx):
    ...         return state, self.eta * dx / float((dx * dx).sum()) ** 0.5
    >>> elementwise(tv.Descent()), elementwise(Normalised()), elementwise(tv.AdamW())
    (True, False, True)
    """
    if isinstance(rule, OptimiserChain) and type(rule).apply is OptimiserChain.apply:
        return all(elementwise(r) for r in rule.rules)
    owner = next(c for c in type(rule).__mro__ if "apply" in vars(c))
    return vars(owner).get("elementwise", False) is True


def AdamW(
    eta: float = 0.001,
    beta: tuple[float, float] = (0.9, 0.999),
    lam: float = 0.01,
    epsilon: float = 1e-8,
) -> OptimiserChain:
    """Adam with decoupled weight decay (Loshchilov & Hutter): step = Adam step + η λ x."""
    return OptimiserChain(Adam(eta, beta, epsilon), WeightDecay(eta * lam))
