"""Learning-rate schedules: η_t as a function of the step t = 0, 1, 2, … (the number of
updates taken before this one), as optax's schedules and Flux's ParameterSchedulers.

A schedule is any callable ``t -> η``; `tv.train` takes one as ``schedule=`` and sets η_t with
`tv.adjust` before step t. These objects also print what they compute:

- `Constant`: η_t = η;
- `Exponential`: η_t = η γ^t (``Exponential.between(η₀, η₁, T)``: from η₀ at t = 0 to η₁ at
  t = T − 1);
- `Cosine`: η_t = η_min + (η − η_min) (1 + cos(π t / T)) / 2 for t ≤ T, then η_min;
- `Step`: η_t = η γ^(number of boundaries b ≤ t): ×γ at each boundary.

    >>> import tinyvec as tv
    >>> [round(tv.schedules.Cosine(1.0, steps=4)(t), 3) for t in range(6)]
    [1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    >>> tv.schedules.Step(0.1, boundaries=(2, 4), factor=0.5)
    Step(eta=0.1, boundaries=(2, 4), factor=0.5)
    >>> [tv.schedules.Step(0.1, boundaries=(2, 4), factor=0.5)(t) for t in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = ["Constant", "Cosine", "Exponential", "Schedule", "Step"]


def _rate(schedule: str, **values: float) -> None:
    """Rates are finite and ≥ 0 (a negative one would climb the loss)."""
    for name, v in values.items():
        if isinstance(v, bool) or not (isinstance(v, numbers.Real) and 0 <= v < math.inf):
            raise ValueError(f"{schedule}: {name} must be a finite number ≥ 0, got {v!r}")


def _count(schedule: str, name: str, v: object, least: int) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < least:
        raise ValueError(f"{schedule}: {name} must be an integer ≥ {least}, got {v!r}")


class Schedule:
    """Base class of the schedules here: ``schedule(t) -> η_t`` for the step t ≥ 0."""

    def __call__(self, t: int) -> float:  # pragma: no cover - each schedule defines it
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """η_t = η."""

    eta: float

    def __post_init__(self) -> None:
        _rate("Constant", eta=self.eta)

    def __call__(self, t: int) -> float:
        return self.eta


@dataclass(frozen=True)
class Exponential(Schedule):
    """η_t = η γ^t (γ = ``decay``; γ < 1 decays).

    >>> import tinyvec as tv
    >>> s = tv.schedules.Exponential.between(0.1, 0.001, steps=3)
    >>> s.decay, [round(s(t), 6) for t in range(3)]
    (0.1, [0.1, 0.01, 0.001])
    """

    eta: float
    decay: float

    def __post_init__(self) -> None:
        _rate("Exponential", eta=self.eta)
        if not (isinstance(self.decay, numbers.Real) and 0 < self.decay < math.inf):
            raise ValueError(
                f"Exponential: decay γ must be a finite number > 0, got {self.decay!r}"
            )

    @classmethod
    def between(cls, start: float, end: float, steps: int) -> Exponential:
        """From η₀ = ``start`` at t = 0 to η₁ = ``end`` at t = ``steps`` − 1:
        γ = (η₁ / η₀)^(1 / (steps − 1)) (γ = η₁ / η₀ for a single step)."""
        _rate("Exponential.between", start=start, end=end)
        _count("Exponential.between", "steps", steps, 1)
        if start == 0 or end == 0:
            raise ValueError(
                f"Exponential.between: a geometric decay cannot start or end at 0 (got "
                f"{start} → {end}); use Cosine for a schedule that reaches 0"
            )
        return cls(start, (end / start) ** (1 / max(steps - 1, 1)))

    def __call__(self, t: int) -> float:
        return self.eta * self.decay**t


@dataclass(frozen=True)
class Cosine(Schedule):
    """Cosine annealing (Loshchilov & Hutter) from η at t = 0 to η_min = ``final`` at
    t = T = ``steps``: η_t = η_min + (η − η_min) (1 + cos(π min(t, T) / T)) / 2."""

    eta: float
    steps: int
    final: float = 0.0

    def __post_init__(self) -> None:
        _rate("Cosine", eta=self.eta, final=self.final)
        _count("Cosine", "steps", self.steps, 1)

    def __call__(self, t: int) -> float:
        phase = math.pi * min(t, self.steps) / self.steps
        return self.final + (self.eta - self.final) * (1 + math.cos(phase)) / 2


@dataclass(frozen=True)
class Step(Schedule):
    """Step decay: η_t = η γ^k, k the number of ``boundaries`` b ≤ t (γ = ``factor``); say
    boundaries at E/2 and 3E/4 of the steps with γ = 0.1: η / 10, then η / 100."""

    eta: float
    boundaries: tuple[int, ...]
    factor: float = 0.1

    def __post_init__(self) -> None:
        _rate("Step", eta=self.eta, factor=self.factor)
        object.__setattr__(self, "boundaries", tuple(self.boundaries))  # (a list given)
        for b in self.boundaries:
            _count("Step", "each boundary", b, 0)
        if list(self.boundaries) != sorted(self.boundaries):
            raise ValueError(f"Step: boundaries must be in increasing order, got {self.boundaries}")

    def __call__(self, t: int) -> float:
        k = sum(b <= t for b in self.boundaries)
        return self.eta * self.factor**k
