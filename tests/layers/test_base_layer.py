"""The `Layer` base class: a readable default repr for custom layers, and models that pickle
and deep-copy (worker processes and clusters send models around)."""

import copy
import pickle

import numpy as np
import pytest

import tinyvec as tv


class Scale(tv.Layer):
    """The README's custom layer, without a __repr__ of its own."""

    params = ("scale", "bias")

    def __init__(self, n):
        self.scale, self.bias = np.ones(n), np.zeros(n)

    def __call__(self, x):
        n = self.scale.shape[0]
        return tv.ops.reshape(self.scale, (n, 1)) * x + tv.ops.reshape(self.bias, (n, 1))


def test_a_custom_layer_prints_its_parameter_shapes_not_an_address():
    assert repr(Scale(3)) == "Scale(scale=(3,), bias=(3,))"
    text = str(tv.Chain(Scale(3), tv.Dense(3, 1, rng=0)))
    assert "object at 0x" not in text and "Scale(scale=(3,), bias=(3,))," in text


def model():
    return tv.Chain(
        tv.Dense(2, 3, tv.tanh, rng=0),
        tv.SkipConnection(tv.Dense(3, 3, tv.gelu, rng=1), tv.add),
        Scale(3),
        tv.Dense(3, 1, rng=2),
    )


def trained(m):
    x, y = np.linspace(-1, 1, 8).reshape(2, 4), np.zeros((1, 4))
    state = tv.setup(tv.Adam(0.01), m)
    tv.update(state, m, tv.gradient(lambda m: tv.mse(m(x), y), m))
    return m, x, state


@pytest.mark.parametrize("roundtrip", [lambda m: pickle.loads(pickle.dumps(m)), copy.deepcopy])
def test_a_trained_model_round_trips(roundtrip):
    m, x, _ = trained(model())
    back = roundtrip(m)
    np.testing.assert_array_equal(back(x), m(x))
    assert back[3].sigma is tv.identity  # the fast path (no activation node) survives
    assert back[0].sigma is tv.tanh and str(back) == str(m)
    for (p, a, n), (q, b, k) in zip(tv.trainables(m), tv.trainables(back), strict=True):
        assert p == q and getattr(a, n) is not getattr(b, k)
        np.testing.assert_array_equal(getattr(a, n), getattr(b, k))


def test_the_optimiser_state_pickles_and_training_continues_identically():
    m, x, state = trained(model())
    m2, state2 = pickle.loads(pickle.dumps((m, state)))
    y = np.zeros((1, 4))
    for mm, st in ((m, state), (m2, state2)):
        tv.update(st, mm, tv.gradient(lambda mm: tv.mse(mm(x), y), mm))
    np.testing.assert_array_equal(m2(x), m(x))
