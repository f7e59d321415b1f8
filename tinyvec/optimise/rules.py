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

import copy
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import device, namespace

# a hyperparameter: a number, or one per member of a stack of models (`tv.stack`)
Hyper = float | Sequence[float] | np.ndarray


def hyper(v: Any) -> Any:
    """A hyperparameter as a rule keeps it: a number as given, or a sequence of numbers (one
    per member of a stack, `tv.stack`) as a read-only float64 vector of shape (E,)."""
    if isinstance(v, numbers.Real) or isinstance(v, str | bool) or v is None:
        return v
    if isinstance(v, list | tuple | np.ndarray):
        a = np.array(v, dtype=np.float64)
        if a.ndim == 0:
            return float(a)
        if a.ndim == 1 and a.shape[0] >= 1:
            a.flags.writeable = False
            return a
    return v  # (refused by the check that follows, which names it)


def per_member(v: Any, like: Any) -> Any:
    """Hyperparameter ``v`` as a factor of ``like``: a number as it is; a vector of the E
    members' values as an array of ``like``'s namespace and dtype of shape (E, 1, …, 1), so that
    it scales each member's slice of ``like`` (E, …) (as a number would: NumPy casts a Python
    number to the array's dtype too)."""
    if type(v) is not np.ndarray:
        return v
    shape = (v.shape[0],) + (1,) * (like.ndim - 1)
    if type(like) is np.ndarray:
        return v.astype(like.dtype).reshape(shape)
    xp = namespace(like)
    return xp.reshape(xp.asarray(v.tolist(), dtype=like.dtype, device=device(like)), shape)


def member_lengths(obj: Any) -> set[int]:
    """The lengths E of the per-member hyperparameters (vectors) in ``obj`` (a rule or δ-rule,
    and what its attributes hold)."""
    if type(obj) is np.ndarray:
        return {int(obj.shape[0])}
    if isinstance(obj, tuple | list):
        return set().union(*(member_lengths(v) for v in obj)) if obj else set()
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return member_lengths(list(vars(obj).values()))
    return set()


def member_of(obj: Any, e: int) -> Any:
    """``obj`` (a rule, a δ-rule, a hyperparameter) for member ``e`` alone: each vector of
    per-member values replaced by its e-th value, a number."""
    if hasattr(obj, "member") and callable(obj.member) and not isinstance(obj, type):
        return obj.member(e)
    if type(obj) is np.ndarray:
        return float(obj[e])
    if isinstance(obj, tuple | list):
        return type(obj)(member_of(v, e) for v in obj)
    if isinstance(obj, dict):  # rules by path
        return {k: member_of(v, e) for k, v in obj.items()}
    return obj


def _finite(rule: str, **values: Any) -> None:
    """A NaN or infinite hyperparameter would turn every parameter into NaN at the first step."""
    for name, v in values.items():
        ok = isinstance(v, numbers.Real) and math.isfinite(v)
        if type(v) is np.ndarray:
            ok = bool(np.all(np.isfinite(v)))
        if not ok:
            raise ValueError(
                f"{rule}: {name} must be a finite number (or one per member of a stack), got {v!r}"
            )


def _rate(rule: str, **values: Any) -> None:
    """Learning rates and decays are ≥ 0: a negative one climbs the loss instead."""
    _finite(rule, **values)
    for name, v in values.items():
        if np.any(np.asarray(v) < 0):
            raise ValueError(f"{rule}: {name} must be ≥ 0 (a negative rate ascends), got {v}")


def _fraction(rule: str, **values: Any) -> None:
    """Decay rates ρ, β are fractions: 0 ≤ v < 1 (at 1 the average never forgets)."""
    _finite(rule, **values)
    for name, v in values.items():
        if not np.all((np.asarray(v) >= 0) & (np.asarray(v) < 1)):
            raise ValueError(f"{rule}: {name} must be in [0, 1), got {v}")


class Rule:
    """Base rule: no state. Subclasses define ``apply`` and, if stateful, ``init``, and set
    ``elementwise = True`` when ``apply`` treats each entry on its own (see the module text)."""

    elementwise = False

    def init(self, x: Any) -> Any:
        return None

    def apply(self, state: Any, x: Any, dx: Any) -> tuple[Any, Any]:  # pragma: no cover
        raise NotImplementedError

    def for_members(self, members: int | None) -> Rule:
        """This rule for a model of ``members`` members (a stack, `tv.stack`; None: an ordinary
        model), as `tv.setup` takes it. Hyperparameters may be given per member (vectors of
        length E); an elementwise rule treats the member axis as any other, and one that is
        not (its ``apply`` mixes the entries of a parameter) is refused unless it says how
        (as ClipNorm does)."""
        lengths = member_lengths(self)
        if members is None and lengths:
            raise ValueError(
                f"{self!r} has hyperparameters per member ({max(lengths)} values), but the "
                "model is not a stack: give numbers, or stack the models with tv.stack"
            )
        if members is not None and lengths - {members}:
            raise ValueError(
                f"{self!r}: per-member hyperparameters of length {sorted(lengths)} for a stack "
                f"of {members} models"
            )
        if members is not None and not elementwise(self):
            raise TypeError(
                f"{type(self).__name__} does not take a stack of models (tv.stack): its apply "
                "mixes the entries of a parameter, so it would mix the members; train the "
                "members one by one"
            )
        return self

    def member(self, e: int) -> Rule:
        """This rule for member ``e`` of a stack alone: every per-member hyperparameter's e-th
        value (`tv.unstack`)."""
        new = copy.copy(self)
        for name, value in vars(self).items():
            setattr(new, name, member_of(value, e))
        return new

    def __repr__(self) -> str:
        args = ", ".join(repr(v) for v in vars(self).values())
        return f"{type(self).__name__}({args})"


class Descent(Rule):
    """step = η dx (plain gradient descent)."""

    elementwise = True

    def __init__(self, eta: Hyper = 0.1) -> None:
        eta = hyper(eta)
        _rate("Descent", eta=eta)
        self.eta: Any = eta  # a number, or a vector: one per member of a stack

    def apply(self, state, x, dx):
        return state, per_member(self.eta, dx) * dx


class Momentum(Rule):
    """v ← ρ v + η dx; step = v."""

    elementwise = True

    def __init__(self, eta: Hyper = 0.01, rho: Hyper = 0.9) -> None:
        eta, rho = hyper(eta), hyper(rho)
        _rate("Momentum", eta=eta)
        _fraction("Momentum", rho=rho)
        self.eta: Any = eta  # (numbers, or vectors: one per member of a stack)
        self.rho: Any = rho

    def init(self, x):
        return namespace(x).zeros_like(x)

    def apply(self, v, x, dx):
        v = per_member(self.rho, v) * v + per_member(self.eta, dx) * dx
        return v, v


class Nesterov(Rule):
    """Nesterov momentum as Optimisers.jl: v ← ρ v - η dx; step = -ρ² v_old + (1+ρ) η dx."""

    elementwise = True

    def __init__(self, eta: Hyper = 0.001, rho: Hyper = 0.9) -> None:
        eta, rho = hyper(eta), hyper(rho)
        _rate("Nesterov", eta=eta)
        _fraction("Nesterov", rho=rho)
        self.eta, self.rho = eta, rho

    def init(self, x):
        return namespace(x).zeros_like(x)

    def apply(self, v, x, dx):
        rho, eta = self.rho, self.eta
        step = per_member(-(rho**2), v) * v + per_member((1 + rho) * eta, dx) * dx
        return per_member(rho, v) * v - per_member(eta, dx) * dx, step


class Adam(Rule):
    """m ← β₁m + (1-β₁)dx, v ← β₂v + (1-β₂)dx²; step = η m̂ / (√v̂ + ε), hats bias-corrected."""

    elementwise = True

    def __init__(
        self, eta: Hyper = 0.001, beta: tuple[Hyper, Hyper] = (0.9, 0.999), epsilon: Hyper = 1e-8
    ) -> None:
        eta, epsilon = hyper(eta), hyper(epsilon)
        _rate("Adam", eta=eta, epsilon=epsilon)
        if not (isinstance(beta, tuple | list) and len(beta) == 2):
            raise ValueError(f"Adam: beta must be a pair (β₁, β₂), got {beta!r}")
        beta = (hyper(beta[0]), hyper(beta[1]))
        _fraction("Adam", beta1=beta[0], beta2=beta[1])
        self.eta, self.beta, self.epsilon = eta, beta, epsilon

    def init(self, x):
        xp = namespace(x)
        return xp.zeros_like(x), xp.zeros_like(x), (1.0, 1.0)

    def apply(self, state, x, dx):
        m, v, (b1t, b2t) = state
        b1, b2 = self.beta
        m = per_member(b1, m) * m + per_member(1 - b1, dx) * dx
        v = per_member(b2, v) * v + per_member(1 - b2, dx) * dx * dx
        b1t, b2t = b1t * b1, b2t * b2
        m_hat, v_hat = m / per_member(1 - b1t, m), v / per_member(1 - b2t, v)
        step = (
            per_member(self.eta, m)
            * m_hat
            / (namespace(v).sqrt(v_hat) + per_member(self.epsilon, v))
        )
        return (m, v, (b1t, b2t)), step


class WeightDecay(Rule):
    """step = dx + λ x (L2 regularisation, placed in a chain)."""

    elementwise = True

    def __init__(self, lam: Hyper = 5e-4) -> None:
        lam = hyper(lam)
        _rate("WeightDecay", lam=lam)
        self.lam = lam

    def apply(self, state, x, dx):
        return state, dx + per_member(self.lam, x) * x


class ClipNorm(Rule):
    """Rescale dx to norm ω when ‖dx‖_p > ω (per array): step = dx · min(1, ω / ‖dx‖_p), with
    ‖dx‖_p = (Σ|dx|^p)^(1/p) and ‖dx‖_∞ = max |dx| (as Optimisers.jl's ``ClipNorm``).

    A NaN or infinite norm raises instead of passing a broken gradient on (Optimisers.jl's
    ``throw=true``); p must be positive and ω non-negative.

    >>> import numpy as np, tinyvec as tv
    >>> tv.ClipNorm(1.0, p=np.inf).apply(None, None, np.array([3.0, -4.0]))[1]
    array([ 0.75, -1.  ])
    """

    def __init__(self, omega: Hyper = 10.0, p: float = 2, *, members: bool = False) -> None:
        omega = hyper(omega)
        if not np.all(np.asarray(omega) >= 0):  # also refuses NaN
            raise ValueError(f"ClipNorm: the norm bound ω must be ≥ 0, got {omega}")
        if not p > 0:
            raise ValueError(f"ClipNorm: p must be > 0 (inf for the max norm), got {p}")
        self.omega, self.p = omega, p
        self.members = members  # True: dx is a stack's (E, …), clipped member by member

    def __repr__(self) -> str:
        members = ", members=True" if self.members else ""
        return f"ClipNorm({self.omega!r}, {self.p!r}{members})"

    def for_members(self, members: int | None) -> Rule:
        """For a stack (`tv.stack`): the norm of each member's slice, each clipped alone."""
        if members is None:
            return super().for_members(None)
        lengths = member_lengths(self)
        if lengths - {members}:
            raise ValueError(f"{self!r}: ω of length {sorted(lengths)} for {members} members")
        return ClipNorm(self.omega, self.p, members=True)

    def member(self, e: int) -> Rule:
        return ClipNorm(member_of(self.omega, e), self.p)

    def apply(self, state, x, dx):
        if self.members:  # the formula below for each member's slice dx[e]
            norms = [self._norm(dx[e, ...]) for e in range(dx.shape[0])]
            omegas = np.broadcast_to(self.omega, (len(norms),))
            scale = [w / n if n > w else 1.0 for n, w in zip(norms, omegas, strict=True)]
            return state, dx * per_member(np.array(scale), dx)
        norm = self._norm(dx)
        return state, dx * (self.omega / norm) if norm > self.omega else dx

    def _norm(self, dx: Any) -> float:
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
        return norm


class OptimiserChain(Rule):
    """Apply rules in order, each to the previous one's step."""

    def __init__(self, *rules: Rule) -> None:
        for r in rules:
            if not isinstance(r, Rule):
                raise TypeError(f"OptimiserChain takes rules such as tv.Descent(0.1), got {r!r}")
        self.rules = rules

    def init(self, x):
        return tuple(r.init(x) for r in self.rules)

    def for_members(self, members: int | None) -> Rule:
        rules = tuple(r.for_members(members) for r in self.rules)
        if all(a is b for a, b in zip(rules, self.rules, strict=True)):
            return self
        return OptimiserChain(*rules)

    def member(self, e: int) -> Rule:
        return OptimiserChain(*(r.member(e) for r in self.rules))

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
    eta: Hyper = 0.001,
    beta: tuple[Hyper, Hyper] = (0.9, 0.999),
    lam: Hyper = 0.01,
    epsilon: Hyper = 1e-8,
) -> OptimiserChain:
    """Adam with decoupled weight decay (Loshchilov & Hutter): step = Adam step + η λ x."""
    rate, decay = hyper(eta), hyper(lam)  # (numbers, or vectors: one per member of a stack)
    return OptimiserChain(Adam(rate, beta, epsilon), WeightDecay(rate * decay))
