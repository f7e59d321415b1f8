"""Losses: definitions, stability, and onehot (their gradients are in test_ops.py)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.backend import to_numpy


def test_mse_is_the_mean_over_all_elements():
    yhat = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.zeros((2, 3))
    assert float(tv.mse(yhat, y)) == pytest.approx(14 / 6, rel=1e-15)


def test_crossentropy_is_mean_over_the_batch_of_minus_log_softmax():
    logits = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    labels = np.array([0, 2])
    y = tv.onehot(labels, 3)
    logp = logits - np.log(np.exp(logits).sum(axis=0))
    expected = -(logp[0, 0] + logp[2, 1]) / 2
    assert float(tv.crossentropy(logits, y)) == pytest.approx(expected, rel=1e-14)


def test_crossentropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0], [0.0, 0.0]])
    y = tv.onehot(np.array([1, 0]), 2)  # both samples wrong by 1000
    loss, g = tv.withgradient(lambda z: tv.crossentropy(z, y), logits)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(g))
    assert float(loss) == pytest.approx(1000.0, rel=1e-12)


def test_r2_is_squared_correlation():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(20), rng.standard_normal(20)
    assert float(tv.r2(a, b)) == pytest.approx(np.corrcoef(a, b)[0, 1] ** 2, rel=1e-12)
    assert float(tv.r2(a, -3 * a + 1)) == pytest.approx(1.0, rel=1e-14)


def test_onehot(xp):
    y = tv.onehot(xp.asarray([2, 0, 1, 2]), 3)
    np.testing.assert_array_equal(to_numpy(y), [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])


def test_losses_on_plain_arrays_are_plain(xp):
    yhat = xp.asarray(np.ones((2, 3)))
    assert not isinstance(tv.mse(yhat, yhat), tv.Tensor)
    assert float(tv.mse(yhat, yhat)) == 0.0


def _central_differences(f, x, eps=1e-6):
    g = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@given(st.integers(2, 5), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_crossentropy_with_integer_labels_gradient_against_finite_differences(C, B, seed):
    rng = np.random.default_rng(seed)
    logits, labels = rng.standard_normal((C, B)) * 3, rng.integers(0, C, B)
    g = tv.gradient(lambda z: tv.crossentropy(z, labels), logits)
    fd = _central_differences(lambda z: float(tv.crossentropy(z, labels)), logits.copy())
    # atol: a central difference's rounding error is about ε_machine · L / h ≈ 1e-9 for a loss
    # near 10 (logits × 3) and h = 1e-6, so 1e-9 failed now and then (hypothesis seed 14)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@given(
    C=st.integers(1, 4),
    B=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(["float32", "float64"]),
    labels=st.booleans(),
)
def test_a_losss_parts_are_what_its_graph_node_computes(C, B, seed, dtype, labels):
    """`parts` (what tv.compile writes into its step) against the Tensor road: L and ∂L/∂ŷ
    bit for bit."""
    from tinyvec.engine.losses import model_loss, parts

    g = np.random.default_rng(seed)
    yhat = g.standard_normal((C, B)).astype(dtype)
    cases = [(tv.mse, g.standard_normal((C, B)).astype(dtype))]
    y = g.integers(0, C, B) if labels else tv.onehot(g.integers(0, C, B), C).astype(dtype)
    cases.append((tv.crossentropy, y))
    for loss, target in cases:
        check, forward, vjp = parts(loss)
        assert check(yhat, target)
        L, saved = forward(yhat, target)
        expected, grad = tv.withgradient(lambda z, t=target, f=loss: f(z, t), yhat)
        assert type(L) is type(expected) and np.asarray(L).tobytes() == expected.tobytes()
        assert vjp(tv.engine.tensor.seed(L), saved).tobytes() == grad.tobytes()
        assert vjp(1.0, saved).tobytes() == grad.tobytes()  # (as tv.compile starts it)
        assert not check(yhat, tv.Tensor(np.zeros_like(yhat)))  # (a Tensor target: the graph's)
        assert model_loss(loss) is not loss
    assert parts(lambda a, b: tv.mse(a, b)) is None and model_loss(len) is len
