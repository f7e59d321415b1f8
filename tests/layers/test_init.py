"""Initialisers: Glorot bounds (a statistically sound check), normal scales, seeding."""

import math

import numpy as np
import pytest

import tinyvec as tv


def test_glorot_uniform_bounds_and_uniformity():
    fan_in, fan_out = 300, 200
    s = math.sqrt(6 / (fan_in + fan_out))
    W = tv.Dense(fan_in, fan_out, rng=0).weight.ravel()
    n = W.size  # 60_000 draws of U(-s, s)
    assert W.min() >= -s and W.max() <= s
    # the extremes come close to ±s: P(max < s(1 - 1e-3)) = (1 - 5e-4)^n ≈ e^-30
    assert W.max() > s * (1 - 1e-3) and W.min() < -s * (1 - 1e-3)
    # mean 0 and variance s²/3, each within 6 standard errors
    assert abs(W.mean()) < 6 * s / math.sqrt(3 * n)
    assert abs(W.var() - s**2 / 3) < 6 * s**2 * math.sqrt(4 / 45 / n)
    # half the mass in [-s/2, s/2]
    assert abs(np.mean(np.abs(W) < s / 2) - 0.5) < 6 * math.sqrt(0.25 / n)


@pytest.mark.parametrize(
    ("init", "std"),
    [(tv.glorot_normal, math.sqrt(2 / (300 + 200))), (tv.kaiming_normal, math.sqrt(2 / 300))],
)
def test_normal_initialisers_have_the_stated_spread(init, std):
    W = init((200, 300), 0).ravel()
    assert abs(W.std() / std - 1) < 6 * math.sqrt(1 / (2 * W.size))
    assert abs(W.mean()) < 6 * std / math.sqrt(W.size)


def test_scaled():
    near_zero = tv.scaled(tv.glorot_uniform, 0.01)
    np.testing.assert_allclose(near_zero((4, 3), 7), 0.01 * tv.glorot_uniform((4, 3), 7))
    assert "0.01" in near_zero.__name__


def test_same_seed_same_model():
    tv.seed(11)
    a = tv.Chain(tv.Dense(3, 4, rng=None), tv.Dense(4, 2))
    tv.seed(11)
    b = tv.Chain(tv.Dense(3, 4), tv.Dense(4, 2))
    for (_, la, n), (_, lb, _) in zip(tv.trainables(a), tv.trainables(b), strict=True):
        np.testing.assert_array_equal(getattr(la, n), getattr(lb, n))
    c = tv.Dense(3, 4)  # the global generator moves on
    assert not np.array_equal(c.weight, a[0].weight)
    np.testing.assert_array_equal(tv.Dense(3, 4, rng=5).weight, tv.Dense(3, 4, rng=5).weight)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(tv.Dense(3, 4, rng=g1).weight, tv.Dense(3, 4, rng=g2).weight)
    assert not np.array_equal(tv.Dense(3, 4, rng=g1).weight, tv.Dense(3, 4, rng=5).weight)


def test_same_seed_same_training():
    def run():
        tv.seed(3)
        m = tv.Chain(tv.Dense(2, 8, tv.tanh), tv.Dense(8, 1))
        rng = np.random.default_rng(0)
        data = [(rng.standard_normal((2, 4)), rng.standard_normal((1, 4))) for _ in range(5)]
        state = tv.setup(tv.Adam(0.01), m)
        return tv.train(lambda m, x, y: tv.mse(m(x), y), m, data, state, progress=False)

    first = run()
    assert run() == first


def test_seed_is_per_thread():
    """tv.seed in one thread neither resets nor draws from another thread's generator."""
    import threading

    tv.seed(11)
    here = tv.Dense(3, 4).weight
    other: list = []
    t = threading.Thread(target=lambda: (tv.seed(99), other.append(tv.Dense(3, 4).weight)))
    t.start()
    t.join()
    tv.seed(11)
    assert np.array_equal(tv.Dense(3, 4).weight, here)  # this thread's sequence, untouched
    tv.seed(99)
    assert np.array_equal(tv.Dense(3, 4).weight, other[0])
