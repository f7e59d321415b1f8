"""Slow oscillations of a learned quantity: the turning of a linear part in the invariant
plane of a complex eigenvalue pair (science.md §4: when the end of the spectrum that ascent
favours is a complex pair, no real function is a fixed point and the learned one turns,
`tinyvec.analysis.ritz`), and the lag-1 autocorrelation that tells a period-2 alternation.

In the plane of u = a + ib (eigenvalue μ = α + iβ of (A+B)ᵀ), a vector v has coordinates
c (`plane_coordinates`) and T acts as ``[[α, β], [−β, α]]``; its angle is
`tinyvec.analysis.eigen_operator.plane_angle`.
"""

from __future__ import annotations

import math

import numpy as np


def plane_coordinates(v: np.ndarray, eigenvector: np.ndarray) -> np.ndarray:
    """Coordinates c of v ≈ c₁a + c₂b in the invariant plane of u = a + ib (least squares), in
    which T acts as ``[[α, β], [−β, α]]``, μ = α + iβ (see `plane_angle`)."""
    u = np.asarray(eigenvector)
    c, *_ = np.linalg.lstsq(np.column_stack([u.real, u.imag]), v, rcond=None)
    return c


def plane_gain(c: np.ndarray, lam: float, mu: complex, c_next: np.ndarray) -> float:
    """The step's gain in the plane: with ``e = (T − λ̂)c`` in plane coordinates, ``g =
    ⟨Δc, e⟩/‖e‖²``, so that a step is ``c ← c + g·e`` plus the batch noise.

    >>> c, mu = np.array([1.0, 0.0]), 1.5 + 0.3j
    >>> e = np.array([[1.5, 0.3], [-0.3, 1.5]]) @ c - 1.4 * c
    >>> round(plane_gain(c, 1.4, mu, c + 0.2 * e), 12)
    0.2
    """
    a, b = complex(mu).real, complex(mu).imag
    e = np.array([[a, b], [-b, a]]) @ c - lam * c
    return float((c_next - c) @ e / (e @ e))


def rotation(angles: list[float], cosines: list[float], gains: list[float] | None = None,
             mu: complex | None = None) -> dict[str, float]:  # fmt: skip
    """How the linear part turns in the invariant plane of a complex pair μ = α + iβ, from its
    angle at consecutive steps (`plane_angle`): the mean angular velocity ω (rad/step,
    unwrapped), the period 2π/|ω| in steps, the mean cosine of the linear part with the plane;
    and the prediction from the step ``c ← c + g(T − λ̂)c`` in the plane. There T is |μ| times
    a rotation by −arg μ (`plane_angle`), so with λ̂ ≈ α the step turns c by
    ``−atan(gβ/(1 + g(α − λ̂))) ≈ −gβ``: ``predicted_angular_velocity = −ḡβ`` with ḡ the mean
    measured gain (`plane_gain`). ω is proportional to the rate and to Im μ, not to
    arg μ: a period of ``2π/(ḡ|β|)`` steps, and f and −f being one solution, the learned
    eigenvalue swings with half that period.

    >>> r = rotation([0.1 * k for k in range(100)], [1.0] * 100)
    >>> round(r["angular_velocity"], 9), round(r["period_steps"], 3)
    (0.1, 62.832)
    """
    omega = float(np.mean(np.diff(np.unwrap(angles)))) if len(angles) > 1 else math.nan
    out = {
        "angular_velocity": omega,
        "period_steps": 2 * math.pi / abs(omega) if omega else math.inf,
        "plane_cosine": float(np.mean(cosines)) if cosines else math.nan,
    }
    if gains and mu is not None:
        g = float(np.mean(gains))
        out.update({"plane_gain": g, "plane_gain_std": float(np.std(gains)),
                    "predicted_angular_velocity": -g * complex(mu).imag,
                    "arg_mu": float(np.angle(mu))})  # fmt: skip
    return out


def lag1_autocorrelation(a: np.ndarray) -> float:
    """Correlation of consecutive values: near −1 for a period-2 alternation."""
    d = np.asarray(a) - np.mean(a)
    den = float(d @ d)
    return float(d[1:] @ d[:-1] / den) if den > 0 else math.nan
