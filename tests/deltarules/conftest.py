"""Fixtures of the δ-rule tests: the seed network and a "feed the input twice" measurement."""

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.backend import to_numpy


def seed_network(xp=np, seed=0, sigma=tv.atan):
    """issue 2's network: Chain(Dense(20,40), SkipConnection(Dense(40,40), +) ×3, Dense(40,3),
    Dense(3,1)), in namespace ``xp``."""
    r = np.random.default_rng(seed)
    blocks = [tv.SkipConnection(tv.Dense(40, 40, sigma, rng=r), tv.add) for _ in range(3)]
    model = tv.Chain(
        tv.Dense(20, 40, sigma, rng=r),
        *blocks,
        tv.Dense(40, 3, sigma, rng=r),
        tv.Dense(3, 1, rng=r),
    )
    return model if xp is np else tv.to(xp, model)


def step_twice(model, state, x, y):
    """One step, then the same input again: per Dense layer (in depth order) the records
    before the step (O, A, δ), after it (Õ, Ã) and the layer, all as NumPy arrays."""
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    layers = tv.dense_layers(model)
    before = [(d.input, d.preact, d.delta) for d in layers]
    tv.update(state, model, grads)
    for d, (O, A, delta) in zip(layers, before, strict=True):  # the sweep left them alone
        assert d.input is O and d.preact is A and d.delta is delta
    model(x)
    n = to_numpy
    return [
        dict(
            O=n(O),
            A=n(A),
            delta=n(delta),
            O2=n(d.input),
            A2=n(d.preact),
            dW=n(d.dW),
            db=n(d.db),
            W=n(d.weight) + n(d.step["weight"]),
            used=n(d.delta_used),
            layer=d,
        )
        for d, (O, A, delta) in zip(layers, before, strict=True)
    ]


@pytest.fixture(scope="session")
def net():
    return seed_network


@pytest.fixture(scope="session")
def twice():
    return step_twice
