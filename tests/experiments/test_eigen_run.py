"""One seed of the eigen study: the targets and the probe measurements of its network."""

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.analysis.eigen_operator import (
    apply_operator,
    degree1_spectrum,
    make_operators,
    unit_vectors,
)
from tinyvec.experiments import eigen_config, eigen_run


def test_targets_are_plain_arrays_of_the_current_network():
    c = eigen_config.Config()
    model = eigen_config.build_network(c, np.random.default_rng(0))
    A, B = make_operators(20, 1.0, seed=0)
    x = unit_vectors(20, 7, np.random.default_rng(1))
    y = apply_operator(model, A, B, x)
    assert type(y) is np.ndarray and y.shape == (1, 7)
    assert np.allclose(y, model(A @ x) + model(B @ x))


def test_probe_metrics_on_an_exact_linear_eigenfunction():
    """A linear model N(x) = v·x with v a real eigenvector of (A+B)ᵀ is an eigenfunction:
    the experiment's λ̂ is its eigenvalue and R² = 1."""
    A, B = make_operators(20, 1.0, seed=1)
    mu, V = degree1_spectrum(A, B)
    k = int(np.flatnonzero(np.abs(mu.imag) < 1e-9)[0])
    model = tv.Dense.from_weights(V[:, k].real[None, :], np.array([0.7]))
    lam, r2, f = eigen_run.probe_metrics(
        model, A, B, unit_vectors(20, 300, np.random.default_rng(2))
    )
    assert lam == pytest.approx(mu[k].real, abs=1e-9)
    assert r2 == pytest.approx(1.0, abs=1e-12)
    assert f.shape == (300,)


def test_probe_metrics_of_k_outputs_is_the_leading_ritz_value():
    """Two outputs spanning the invariant plane of a complex degree-1 pair μ: λ̂ is Re μ."""
    A, B = make_operators(20, 1.0, seed=3)
    mu, V = degree1_spectrum(A, B)
    k = int(np.flatnonzero(mu.imag > 1e-6)[0])
    W = np.stack([V[:, k].real + V[:, k].imag, 3 * V[:, k].imag])
    model = tv.Chain(tv.Dense.from_weights(W, np.array([0.5, -1.0])))
    lam, _r2, F = eigen_run.probe_metrics(
        model, A, B, unit_vectors(20, 500, np.random.default_rng(0))
    )
    assert lam == pytest.approx(mu[k].real) and F.shape == (2, 500)
