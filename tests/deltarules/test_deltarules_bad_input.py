"""δ-rules at the edges of their arguments: found by the fuzz pass (tests/test_fuzz.py)."""

import numpy as np

import tinyvec as tv


def test_compensation_with_a_zero_step_size_takes_the_zero_step():
    """Descent(0) with Compensation ended in a ZeroDivisionError (κ/α): with α = 0 there is
    no step, so nothing to compensate, and the parameters stay as they are."""
    m = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 2, rng=1))
    state = tv.setup(tv.Descent(0), m, delta=tv.Compensation(0.2))
    x = np.random.default_rng(0).standard_normal((2, 3))
    before = [getattr(layer, n).copy() for _, layer, n in tv.trainables(m)]
    tv.update(state, m, tv.gradient(lambda m: tv.mse(m(x), np.zeros((2, 3))), m))
    after = [getattr(layer, n) for _, layer, n in tv.trainables(m)]
    assert all((a == b).all() for a, b in zip(before, after, strict=True))
