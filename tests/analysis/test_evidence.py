"""Issue 24's measures: the convergence criterion and paired comparisons, the loss-trend
condition of a limit cycle, the rotation checks that can fail, the degree-2 mode coordinate."""

import math

import numpy as np
import pytest

from tinyvec.analysis.completion import classify_trajectory
from tinyvec.analysis.convergence import (
    Criterion,
    bootstrap_interval,
    paired_comparison,
    train_to_convergence,
)
from tinyvec.analysis.degrees import leading_degree2_mode, mode_coordinates, quadratic_features
from tinyvec.analysis.eigen_operator import (
    degree2_matrix,
    lambda_hat,
    make_operators,
    traceless_basis,
    unit_vectors,
)
from tinyvec.analysis.oscillation import (
    dominant_period,
    plane_rayleigh_range,
    rayleigh_quotient,
    rotation,
)


def test_criterion_stops_on_a_plateau_and_reports_a_budget_hit():
    c = Criterion(tol=0.01, window=10, min_epochs=40, max_epochs=200)
    plateau = iter([2.0**-t for t in range(30)] + [1e-9] * 500)
    r = train_to_convergence(lambda: next(plateau), c)
    assert r["converged"] and not r["diverged"] and r["epochs"] < 200
    slow = iter([1.0 / (1 + t) for t in range(1000)])  # still falls ≈ 5 % per window at 200
    r = train_to_convergence(lambda: next(slow), c)
    assert not r["converged"] and r["epochs"] == 200 and r["change"] > 0.01
    boom = iter([1.0, 2.0, math.nan])
    r = train_to_convergence(lambda: next(boom), c)
    assert r["diverged"] and math.isnan(r["error"])
    with pytest.raises(ValueError):
        Criterion(tol=0.01, window=100, min_epochs=150, max_epochs=1000)  # 2·window > min


def test_paired_comparison_floors_interpolation_and_counts_seeds():
    floor = 1e-8
    r = paired_comparison([1e-20, 1e-15], [1e-25, 1e-12], floor, resamples=100)
    assert r["both_interpolate"] and r["median_ratio"] == 1.0 and r["ties"] == 2
    e, b = [0.5, 0.4, 0.3, math.nan, 2.0], [1.0, 1.0, 1.0, 1.0, 1.0]
    r = paired_comparison(e, b, floor, resamples=2000)
    assert (r["wins"], r["losses"], r["ties"], r["diverged"], r["pairs"]) == (3, 2, 0, 1, 4)
    assert r["median_ratio"] == pytest.approx(0.45)
    lo, hi = r["ci"]
    assert lo <= r["median_ratio"] <= hi
    # seeded: the same interval twice
    assert bootstrap_interval([1.0, 3.0, 2.0, 5.0]) == bootstrap_interval([1.0, 3.0, 2.0, 5.0])


def test_a_parameter_cycle_on_a_falling_loss_is_not_a_limit_cycle():
    flip = [np.array([1.0, (-1.0) ** t]) for t in range(100)]
    flat = [1.0 + 0.1 * (t % 2) for t in range(100)]
    falling = [v * 0.995**t for t, v in enumerate(flat)]
    r = classify_trajectory(flip, losses=flat)
    assert (r["kind"], r["period"]) == ("limit_cycle", 2) and r["cycle_trend"]["settled"]
    r = classify_trajectory(flip, losses=falling)
    assert r["kind"] == "moving" and r["cycle_trend"]["drifting"]


def test_lambda_hat_of_a_linear_function_is_its_rayleigh_quotient():
    A, B = make_operators(6, 1.0, 0)
    x = unit_vectors(6, 200_000, np.random.default_rng(1))
    v = np.random.default_rng(2).normal(size=6)
    f, y = v @ x, v @ (A @ x) + v @ (B @ x)
    assert lambda_hat(f, y) == pytest.approx(rayleigh_quotient(v, A, B), abs=0.02)
    mu, U = np.linalg.eig((A + B).T)
    u = U[:, int(np.argmax(np.abs(mu.imag)))]
    lo, hi = plane_rayleigh_range(A, B, u)
    for angle in np.linspace(0, np.pi, 7):
        w = np.cos(angle) * u.real + np.sin(angle) * u.imag
        assert lo - 1e-12 <= rayleigh_quotient(w, A, B) <= hi + 1e-12


def test_rotation_checks_can_fail():
    t = np.arange(200)
    angles = list(-0.1 * t)
    swing = list(1.6 + 0.1 * np.cos(2 * np.asarray(angles)))  # twice per turn
    r = rotation(angles, [0.97] * 200, swing, swing, (1.5, 1.7))
    assert r["swing_ratio"] == pytest.approx(1.0, abs=0.02)
    assert r["lambda_rayleigh_correlation"] == pytest.approx(1.0)
    once = list(1.6 + 0.1 * np.cos(np.asarray(angles)))  # once per turn: the check fails
    r = rotation(angles, [0.97] * 200, once, swing)
    assert r["swing_ratio"] == pytest.approx(2.0, abs=0.05)
    assert r["lambda_rayleigh_correlation"] < 0.5
    assert dominant_period(np.ones(5)) != dominant_period(np.ones(5))  # NaN below 8 samples


def test_the_mode_coordinate_is_multiplied_by_mu_exactly():
    h = 5
    A, B = make_operators(h, 1.0, 3)
    mode = leading_degree2_mode(A, B)
    S = np.random.default_rng(0).normal(size=(h, h))
    S = S + S.T
    S -= np.trace(S) / h * np.eye(h)
    TS = A.T @ S @ A + B.T @ S @ B  # T(xᵀSx) = xᵀ(AᵀSA + BᵀSB)x
    i, j = np.triu_indices(h)

    def coefficients(M):  # on the monomials x_i x_j, i ≤ j
        return np.where(i == j, M[i, j], 2 * M[i, j])[:, None]

    c, c_t = mode_coordinates(coefficients(S), mode), mode_coordinates(coefficients(TS), mode)
    assert c_t[0] == pytest.approx(mode.mu * c[0], rel=1e-10)
    # the features' order matches quadratic_features
    x = unit_vectors(h, 3, np.random.default_rng(4))
    assert np.allclose(
        coefficients(S)[:, 0] @ quadratic_features(x), np.einsum("in,ij,jn->n", x, S, x)
    )
    P = traceless_basis(h)
    assert np.allclose(np.linalg.eigvals(degree2_matrix(A, B)).real.max(), mode.mu.real)
    assert P.shape[0] == h * h
