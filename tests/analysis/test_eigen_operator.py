"""The operator T f = f∘A + f∘B: construction of A, B and its exact spectrum, checked against
T applied by sampling."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyvec.analysis.eigen_operator import (
    Spectrum,
    alignment,
    degree1_spectrum,
    degree2_spectrum,
    expm_skew,
    lambda_hat,
    linear_part,
    make_operators,
    r_squared,
    random_orthogonal,
    skew_symmetric,
    traceless_basis,
    unit_vectors,
)

seeds = st.integers(0, 2**32 - 1)


def T(f, A, B, x):
    """(T f)(x) = f(Ax) + f(Bx), applied to samples: the definition, not the spectrum."""
    return f(A @ x) + f(B @ x)


# --- construction ---------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), t=st.floats(0, 6), seed=seeds)
def test_random_orthogonal_is_a_rotation(h, t, seed):
    Q = random_orthogonal(h, t, np.random.default_rng(seed))
    assert np.allclose(Q.T @ Q, np.eye(h), atol=1e-12)
    assert np.linalg.det(Q) == pytest.approx(1.0)  # exp of a skew matrix lies in SO(h)


def test_expm_skew_against_its_taylor_series_and_the_group_law():
    K = skew_symmetric(6, np.random.default_rng(0))
    series, term = np.eye(6), np.eye(6)
    for n in range(1, 40):
        term = term @ (0.7 * K) / n
        series = series + term
    assert np.allclose(expm_skew(K, 0.7), series, atol=1e-12)
    assert np.allclose(expm_skew(K, 0.3) @ expm_skew(K, 0.4), expm_skew(K, 0.7), atol=1e-12)


def test_the_non_haar_parameter():
    rng = np.random.default_rng(1)
    assert np.allclose(random_orthogonal(7, 0.0, rng), np.eye(7), rtol=0, atol=1e-14)
    K = skew_symmetric(20, np.random.default_rng(2))
    for t in (1e-3, 1e-2, 0.1):  # ‖exp(tK) − I‖ = t‖K‖ + O(t²): concentrated at the identity
        distance = np.linalg.norm(expm_skew(K, t) - np.eye(20), 2)
        assert distance == pytest.approx(t * np.linalg.norm(K, 2), rel=t)
    # Haar matrices have E tr Q = 0; small t keeps tr Q / h near 1, larger t spreads it out
    traces = {t: np.mean([np.trace(random_orthogonal(20, t, rng)) / 20 for _ in range(20)])
              for t in (0.2, 3.0)}  # fmt: skip
    assert traces[0.2] > 0.9
    assert abs(traces[3.0]) < 0.3


def test_operators_are_deterministic_by_seed():
    A1, B1 = make_operators(20, 1.0, seed=5)
    A2, B2 = make_operators(20, 1.0, seed=5)
    A3, _ = make_operators(20, 1.0, seed=6)
    assert np.array_equal(A1, A2) and np.array_equal(B1, B2)
    assert not np.allclose(A1, B1) and not np.allclose(A1, A3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="skew-symmetric"):
        expm_skew(np.ones((3, 3)))
    with pytest.raises(ValueError, match="t must be"):
        random_orthogonal(3, -1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="h must be"):
        random_orthogonal(0, 1.0, np.random.default_rng(0))


def test_unit_vectors():
    x = unit_vectors(5, 100, np.random.default_rng(0))
    assert x.shape == (5, 100) and np.allclose(np.linalg.norm(x, axis=0), 1)


# --- the exact spectrum against T by sampling -------------------------------------------------
def test_traceless_basis_is_orthonormal_symmetric_traceless():
    h = 5
    P = traceless_basis(h)
    assert P.shape == (h * h, h * (h + 1) // 2 - 1)
    assert np.allclose(P.T @ P, np.eye(P.shape[1]))
    S = P.T.reshape(-1, h, h)
    assert np.allclose(S, S.transpose(0, 2, 1))
    assert np.allclose(np.trace(S, axis1=1, axis2=2), 0)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, t=st.floats(0.2, 3.0))
def test_degree1_eigenfunctions(seed, t):
    """For every eigenpair (μ, v) of (A+B)ᵀ, f(x) = v·x satisfies T f = μ f at sampled x (in
    complex arithmetic for complex pairs); for a real μ, λ̂ = μ and R² = 1 on the samples.
    h = 5 is odd, so there is always a real eigenvalue."""
    A, B = make_operators(5, t, seed)
    x = unit_vectors(5, 50, np.random.default_rng(seed + 1))
    mu, V = degree1_spectrum(A, B)
    for k in range(5):
        v = V[:, k]
        assert np.allclose(T(lambda z, v=v: v @ z, A, B, x), mu[k] * (v @ x), atol=1e-10)
    real = np.flatnonzero(np.abs(mu.imag) < 1e-9)
    assert real.size >= 1
    v = V[:, real[0]].real
    f, y = v @ x, T(lambda z: v @ z, A, B, x)
    assert lambda_hat(f, y) == pytest.approx(mu[real[0]].real, abs=1e-9)
    assert r_squared(f, y) == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, t=st.floats(0.2, 3.0))
def test_degree2_eigenfunctions(seed, t):
    """For every eigenpair (μ, S) of the degree-2 map, f(x) = xᵀSx satisfies T f = μ f. With
    h = 4 the space has odd dimension 9, so there is a real μ: then λ̂ = μ, R² = 1."""
    h = 4
    A, B = make_operators(h, t, seed)
    x = unit_vectors(h, 60, np.random.default_rng(seed + 1))

    def quadratic(S):
        return lambda z: np.einsum("in,ij,jn->n", z, S, z)

    mu, S = degree2_spectrum(A, B)
    for k in range(mu.size):
        f = quadratic(S[k])
        assert np.allclose(T(f, A, B, x), mu[k] * f(x), atol=1e-10)
    k = int(np.flatnonzero(np.abs(mu.imag) < 1e-9)[0])
    f = quadratic(S[k].real)
    assert lambda_hat(f(x), T(f, A, B, x)) == pytest.approx(mu[k].real, abs=1e-9)
    assert r_squared(f(x), T(f, A, B, x)) == pytest.approx(1.0, abs=1e-9)


def test_monte_carlo_on_the_experiment_size():
    """h = 20 and the default t: a real degree-1 eigenvalue and a real degree-2 one, each
    recovered from 2000 sampled x by λ̂ to 1e-9, and sampling does not see a wrong μ."""
    A, B = make_operators(20, 1.0, seed=1)
    x = unit_vectors(20, 2000, np.random.default_rng(0))
    mu1, V = degree1_spectrum(A, B)
    mu2, S = degree2_spectrum(A, B)
    k1 = int(np.argmax(np.where(np.abs(mu1.imag) < 1e-9, np.abs(mu1), -1)))
    k2 = int(np.argmax(np.where(np.abs(mu2.imag) < 1e-9, np.abs(mu2), -1)))
    lin = lambda z: V[:, k1].real @ z  # noqa: E731
    quad = lambda z: np.einsum("in,ij,jn->n", z, S[k2].real, z)  # noqa: E731
    for f, mu in ((lin, mu1[k1].real), (quad, mu2[k2].real)):
        assert lambda_hat(f(x), T(f, A, B, x)) == pytest.approx(mu, abs=1e-9)
    # a linear function that is no eigenfunction has R² < 1 and a λ̂ that is no eigenvalue
    w = np.ones(20)
    f = lambda z: w @ z  # noqa: E731
    assert r_squared(f(x), T(f, A, B, x)) < 0.99


def test_spectrum_is_sorted_bounded_and_nearest_finds_eigenvalues():
    A, B = make_operators(6, 1.0, seed=3)
    s = Spectrum.of(A, B)
    assert s.values.size == 6 + 20
    assert np.all(np.diff(np.abs(s.values)) <= 1e-12)
    assert np.all(np.abs(s.values) <= 2 + 1e-12)
    assert sorted(set(s.degrees.tolist())) == [1, 2]
    mu = s.values[3]
    near = s.nearest(mu.real)
    assert near["by_modulus"]["distance"] <= abs(abs(mu.real) - abs(mu)) + 1e-12
    real = s.values[np.abs(s.values.imag) < 1e-9][0].real
    n = s.nearest(real + 1e-4)["by_value"]
    assert n["distance"] == pytest.approx(1e-4) and n["is_real"]
    assert s.dominant()["modulus"] == pytest.approx(abs(s.values[0]))
    right, left = s.extreme_degree1(0.5), s.extreme_degree1(-0.5)
    assert right["real"] == pytest.approx(s.values1.real.max()) and right["degree"] == 1
    assert left["real"] == pytest.approx(s.values1.real.min())
    assert left["distance"] == pytest.approx(abs(complex(left["real"], left["imag"]) + 0.5))


# --- estimators -------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(seed=seeds, c=st.floats(-3, 3).filter(lambda c: abs(c) > 1e-3), d=st.floats(-5, 5))
def test_lambda_hat_and_r2_on_scaled_copies(seed, c, d):
    f = np.random.default_rng(seed).normal(size=40)
    assert lambda_hat(f, c * f + d) == pytest.approx(c, rel=1e-9)
    assert r_squared(f, c * f + d) == pytest.approx(1.0, rel=1e-9)
    noisy = c * f + np.random.default_rng(seed + 1).normal(size=40) * abs(c)
    assert r_squared(f, noisy) < 1.0


def test_linear_part_and_alignment():
    rng = np.random.default_rng(0)
    x = unit_vectors(4, 500, rng)
    v = np.array([1.0, 0.0, -1.0, 2.0])
    w, frac = linear_part(x, v @ x + 0.3 * (x[0] * x[1]))
    assert frac < 1.0
    assert alignment(w, v) == pytest.approx(1.0, abs=1e-2)
    assert alignment(np.array([0.0, 0.0, 1.0]), np.array([1.0, 1j, 0.0])) == 0.0
    assert alignment(np.array([3.0, -1.0, 0.0]), np.array([1.0, 1j, 0.0])) == pytest.approx(1.0)
    assert alignment(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(1 / math.sqrt(2))


def test_old_import_path_is_the_same_module():
    """`tinyvec.experiments.eigen_operator` stays importable and is the analysis module."""
    from tinyvec.analysis import eigen_operator
    from tinyvec.experiments import eigen_operator as old

    assert old.make_operators is eigen_operator.make_operators
    assert old.Spectrum is eigen_operator.Spectrum
