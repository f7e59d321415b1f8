"""Optimiser rules refuse meaningless settings at construction and broken gradients at apply
time, instead of silently stepping the wrong way."""

import math

import numpy as np
import pytest

import tinyvec as tv


def test_clipnorm_inf_is_the_max_norm():
    big = np.array([30.0, -40.0, 5.0])  # max |g| = 40 > 4: scaled by 4/40
    np.testing.assert_allclose(tv.ClipNorm(4.0, p=math.inf).apply(None, None, big)[1], big / 10)
    small = np.array([0.3, -0.2, 0.1])  # max |g| = 0.3 < 4: unchanged
    np.testing.assert_array_equal(tv.ClipNorm(4.0, p=math.inf).apply(None, None, small)[1], small)


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_clipnorm_finite_p_against_numpy_norm(p):
    g = np.array([3.0, -4.0, 12.0])
    norm = np.linalg.norm(g, ord=p)
    step = tv.ClipNorm(1.0, p=p).apply(None, None, g)[1]
    np.testing.assert_allclose(step, g / norm, rtol=1e-14)


@pytest.mark.parametrize("p", [0, -1, -math.inf, math.nan])
def test_clipnorm_refuses_a_non_positive_p(p):
    with pytest.raises(ValueError, match="p must be > 0"):
        tv.ClipNorm(1.0, p=p)


@pytest.mark.parametrize("omega", [-1.0, math.nan])
def test_clipnorm_refuses_a_negative_bound(omega):
    with pytest.raises(ValueError, match="ω must be ≥ 0"):
        tv.ClipNorm(omega)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("p", [2, math.inf])
def test_clipnorm_raises_on_a_non_finite_norm(bad, p):
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        tv.ClipNorm(1.0, p=p).apply(None, None, np.array([1.0, bad]))


def test_a_failing_clipnorm_does_not_step_its_array():
    m = tv.Chain(tv.Dense(2, 1, rng=0))
    before = m[0].weight.copy()
    state = tv.setup(tv.OptimiserChain(tv.ClipNorm(1.0), tv.Descent(0.1)), m)
    grads = tv.gradient(lambda m: tv.mse(m(np.array([[np.inf], [1.0]])), np.zeros((1, 1))), m)
    with pytest.raises(FloatingPointError):
        tv.update(state, m, grads)
    np.testing.assert_array_equal(m[0].weight, before)


@pytest.mark.parametrize(
    "make",
    [
        lambda: tv.Descent(math.nan),
        lambda: tv.Descent(math.inf),
        lambda: tv.Momentum(0.1, rho=1.0),
        lambda: tv.Momentum(0.1, rho=-0.1),
        lambda: tv.Nesterov(0.1, rho=math.nan),
        lambda: tv.Adam(0.1, beta=(0.9, 1.0)),
        lambda: tv.Adam(0.1, beta=(0.9,)),
        lambda: tv.Adam(math.nan),
        lambda: tv.AdamW(0.1, lam=math.inf),
        lambda: tv.WeightDecay("0.1"),
    ],
)
def test_meaningless_hyperparameters_are_refused_at_construction(make):
    with pytest.raises(ValueError, match="must be"):
        make()


def test_a_chain_of_something_else_is_refused():
    with pytest.raises(TypeError, match="OptimiserChain takes rules"):
        tv.OptimiserChain(tv.Descent(0.1), 0.5)
