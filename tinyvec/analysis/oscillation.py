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
from typing import Any

import numpy as np


def plane_coordinates(v: np.ndarray, eigenvector: np.ndarray) -> np.ndarray:
    """Coordinates c of v ≈ c₁a + c₂b in the invariant plane of u = a + ib (least squares), in
    which T acts as ``[[α, β], [−β, α]]``, μ = α + iβ (see `plane_angle`)."""
    u = np.asarray(eigenvector)
    c, *_ = np.linalg.lstsq(np.column_stack([u.real, u.imag]), v, rcond=None)
    return c


def rayleigh_quotient(v: np.ndarray, A: np.ndarray, B: np.ndarray) -> float:
    """The eigenvalue estimate of the linear function f(x) = v·x under T: since
    ``(Tf)(x) = v·Ax + v·Bx = ((A + B)ᵀv)·x``, ``ρ(v) = vᵀ(A + B)ᵀv / vᵀv``. For a network
    whose output is (close to) linear, its λ̂ = cov(f, Tf)/var f on isotropic inputs is close
    to ρ of its linear part; a nonlinear part makes them differ, so the comparison can fail.

    >>> A, B = np.eye(2), np.diag([1.0, -1.0])
    >>> rayleigh_quotient(np.array([1.0, 0.0]), A, B), rayleigh_quotient(np.array([0.0, 1.0]), A, B)
    (2.0, 0.0)
    """
    v = np.asarray(v, dtype=float)
    return float(v @ ((A + B).T @ v) / (v @ v))


def plane_rayleigh_range(
    A: np.ndarray, B: np.ndarray, eigenvector: np.ndarray
) -> tuple[float, float]:
    """The least and largest ρ(v) (`rayleigh_quotient`) over v in the invariant plane of
    u = a + ib: the eigenvalues of the symmetric part of ``Qᵀ(A + B)ᵀQ``, Q an orthonormal
    basis of span(a, b). A linear part turning in the plane sweeps ρ between them twice per
    turn (ρ(v) = ρ(−v)).

    >>> A = np.array([[0.0, 1.0], [-1.0, 0.0]]); B = np.diag([0.5, -0.5])
    >>> lo, hi = plane_rayleigh_range(A, B, np.array([1.0, 1j]))
    >>> round(lo, 12), round(hi, 12)
    (-0.5, 0.5)
    """
    u = np.asarray(eigenvector)
    Q, _ = np.linalg.qr(np.column_stack([u.real, u.imag]))
    M = Q.T @ (A + B).T @ Q
    lo, hi = np.linalg.eigvalsh((M + M.T) / 2)
    return float(lo), float(hi)


def dominant_period(series: np.ndarray, shortest: float = 4.0) -> float:
    """The period (in samples) of the sinusoid that best fits ``series`` by least squares,
    ``a + b cos(2πt/P) + c sin(2πt/P)``, over periods from ``shortest`` to twice the series'
    length (a frequency grid 20× finer than the Fourier grid). NaN for fewer than 8 samples.
    The fit uses the series alone: compared with a period measured another way it can fail.

    >>> t = np.arange(200); round(dominant_period(np.cos(2 * np.pi * t / 37.0 + 1.0)))
    37
    """
    y = np.asarray(series, dtype=float)
    n = y.size
    if n < 8:
        return math.nan
    t = np.arange(n)
    freqs = np.linspace(1 / (2 * n), 1 / shortest, 20 * n)
    best, best_f = -1.0, math.nan
    y0 = y - y.mean()
    for f in freqs:
        X = np.column_stack([np.ones(n), np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t)])
        coef, *_ = np.linalg.lstsq(X, y0, rcond=None)
        explained = float(np.sum((X @ coef) ** 2))
        if explained > best:
            best, best_f = explained, f
    return 1 / best_f


def rotation(
    angles: list[float], cosines: list[float], lambdas: list[float] | None = None,
    rayleighs: list[float] | None = None, plane_range: tuple[float, float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """How the linear part turns in the invariant plane of a complex pair μ = α + iβ, from its
    angle at consecutive steps (`plane_angle`): the mean angular velocity ω (rad/step,
    unwrapped), the period 2π/|ω| in steps, the mean and least cosine of the linear part with
    the plane; and, given the learned λ̂ and the Rayleigh quotient ρ of the linear part at the
    same steps, three checks that can fail (issue 24):

    - ``lambda_rayleigh_correlation`` corr(λ̂, ρ) and ``lambda_rayleigh_mad`` median |λ̂ − ρ|:
      λ̂ of the network follows ρ of its linear part (it would not if the output were far
      from linear, or the linear part left the plane);
    - ``swing_period_steps``: the period of λ̂ fitted on λ̂ alone (`dominant_period`), against
      ``half_period_steps`` = π/|ω| from the angle: since f and −f are one solution, λ̂ should
      swing twice per turn (``swing_ratio`` = swing / half period ≈ 1);
    - ``lambda_range`` (5th and 95th percentile of λ̂) against ``plane_rayleigh_range``, the
      values ρ can take in the plane.

    (Earlier versions compared ω with −ḡ·Im μ, ḡ the step's gain fitted to the displacement
    along (T − λ̂)c. With λ̂ ≈ Re μ that displacement is tangential, so ḡ·Im μ is the angular
    step by construction: an identity, not a test. It is gone.)

    >>> r = rotation([0.1 * k for k in range(100)], [1.0] * 100)
    >>> round(r["angular_velocity"], 9), round(r["period_steps"], 3)
    (0.1, 62.832)
    """
    omega = float(np.mean(np.diff(np.unwrap(angles)))) if len(angles) > 1 else math.nan
    out: dict[str, Any] = {
        "angular_velocity": omega,
        "period_steps": 2 * math.pi / abs(omega) if omega else math.inf,
        "half_period_steps": math.pi / abs(omega) if omega else math.inf,
        "plane_cosine": float(np.mean(cosines)) if cosines else math.nan,
        "plane_cosine_min": float(np.min(cosines)) if cosines else math.nan,
    }
    if lambdas is not None and rayleighs is not None and len(lambdas) > 2:
        lam, rho = np.asarray(lambdas, dtype=float), np.asarray(rayleighs, dtype=float)
        swing = dominant_period(lam)
        out.update({
            "lambda_rayleigh_correlation": float(np.corrcoef(lam, rho)[0, 1]),
            "lambda_rayleigh_mad": float(np.median(np.abs(lam - rho))),
            "swing_period_steps": swing,
            "swing_ratio": swing / out["half_period_steps"] if omega else math.nan,
            "lambda_range": [float(np.quantile(lam, 0.05)), float(np.quantile(lam, 0.95))],
        })  # fmt: skip
    if plane_range is not None:
        out["plane_rayleigh_range"] = list(plane_range)
    return out


def lag1_autocorrelation(a: np.ndarray) -> float:
    """Correlation of consecutive values: near −1 for a period-2 alternation."""
    d = np.asarray(a) - np.mean(a)
    den = float(d @ d)
    return float(d[1:] @ d[:-1] / den) if den > 0 else math.nan
