"""Dense: what it exposes, the identities of science.md §1 on real steps, bad input."""

import numpy as np
import pytest

import tinyvec as tv
from tinyvec import Chain, Dense, SkipConnection


def seed_network(h=20, m=40, rng=0):
    """The network of the issue (skip layers near zero, as in the eigen experiment)."""
    near_zero = tv.scaled(tv.glorot_uniform, 0.1)
    return Chain(
        Dense(h, m, tv.atan, rng=rng),
        SkipConnection(Dense(m, m, tv.atan, init=near_zero, rng=rng + 1), tv.add),
        SkipConnection(Dense(m, m, tv.atan, init=near_zero, rng=rng + 2), tv.add),
        SkipConnection(Dense(m, m, tv.atan, init=near_zero, rng=rng + 3), tv.add),
        Dense(m, 3, tv.atan, rng=rng + 4),
        Dense(3, 1, rng=rng + 5),
    )


def one_step(model, x, y, alpha):
    state = tv.setup(tv.Descent(alpha), model)
    grads = tv.gradient(lambda m: tv.mse(m(x), y), model)
    tv.update(state, model, grads)
    return grads


# --- what a Dense layer exposes -------------------------------------------------------------
def test_shapes_and_recorded_quantities():
    d = Dense(3, 4, tv.tanh, rng=0)
    assert d.weight.shape == (4, 3) and d.bias.shape == (4,)
    assert d.weight.dtype == np.float64
    x = np.random.default_rng(1).standard_normal((3, 5))
    grads = tv.gradient(lambda m: tv.ops.sum(m(x) ** 2), d)
    assert d.input is x  # O^{k-1}: the very array given, no copy
    np.testing.assert_allclose(d.preact, d.weight @ x + d.bias[:, None], rtol=1e-15)
    np.testing.assert_array_equal(d.output, np.tanh(d.preact))
    assert d.delta.shape == (4, 5)
    # δ = ∂L/∂A = 2 O ⊙ (1 - O²) here; then ∂L/∂W = δ Oᵀ and ∂L/∂b = Σ δ
    np.testing.assert_allclose(d.delta, 2 * d.output * (1 - d.output**2), rtol=1e-13)
    np.testing.assert_allclose(grads.weight, d.delta @ x.T, rtol=1e-13)
    np.testing.assert_allclose(grads.bias, d.delta.sum(axis=1), rtol=1e-13)
    assert d.dW is None and d.db is None  # no update yet
    W, b = d.weight.copy(), d.bias.copy()
    tv.update(tv.setup(tv.Descent(0.5), d), d, grads)
    np.testing.assert_array_equal(d.dW, -d.step["weight"])
    np.testing.assert_array_equal(d.db, -d.step["bias"])
    np.testing.assert_allclose(d.weight - W, d.dW, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(d.bias - b, d.db, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(d.dW, -0.5 * grads.weight, rtol=1e-15)


def test_no_bias_and_from_weights():
    d = Dense(2, 3, bias=False, rng=0)
    assert d.bias is None and repr(d) == "Dense(2 => 3, bias=False)"
    assert list(tv.gradient(lambda m: tv.ops.sum(m(np.ones((2, 1)))), d)) == ["weight", "bias"]
    W, b = np.arange(6.0).reshape(3, 2), np.array([1.0, 0.0, -1.0])
    e = Dense.from_weights(W, b, tv.relu)
    assert e.weight is W and e.bias is b and repr(e) == "Dense(2 => 3, relu)"
    np.testing.assert_array_equal(e(np.array([[1.0], [-1.0]])), [[0.0], [0.0], [0.0]])


def test_one_sample_as_a_vector():
    d = Dense(3, 2, tv.tanh, rng=0)
    v = np.array([0.1, 0.2, -0.3])
    np.testing.assert_allclose(d(v), d(v[:, None])[:, 0], rtol=1e-15)
    assert d(v).shape == (2,)
    g = tv.gradient(lambda m: tv.ops.sum(m(v)), d)
    assert g.weight.shape == (2, 3)


# --- science.md §1 on real steps -------------------------------------------------------------
def test_one_sample_descent_identities():
    """ΔW o = -α‖o‖² δ, ΔW o + Δb = -α(‖o‖²+1) δ and ΔWᵀ δ = -α‖δ‖² o, for every layer."""
    alpha = 0.01
    model = seed_network()
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 1)), np.ones((1, 1))
    one_step(model, x, y, alpha)
    for k, d in enumerate(tv.dense_layers(model), start=1):
        o, delta = d.input, d.delta
        scale = np.abs(alpha * (o**2).sum() * delta).max()
        assert scale > 0, f"layer {k}: δ is zero, the test would be vacuous"
        np.testing.assert_allclose(d.dW @ o, -alpha * (o**2).sum() * delta, atol=1e-13 * scale)
        np.testing.assert_allclose(
            d.dW @ o + d.db[:, None], -alpha * ((o**2).sum() + 1) * delta, atol=1e-13 * scale
        )
        back = np.abs(alpha * (delta**2).sum() * o).max()
        np.testing.assert_allclose(d.dW.T @ delta, -alpha * (delta**2).sum() * o, atol=1e-13 * back)


def test_batch_form_goes_through_the_gram_matrix():
    """ΔA_i(own) = ΔW o_i + Δb = -α Σ_j (o_j·o_i + 1) δ_j, i.e. -α δ (OᵀO + 1)."""
    alpha = 0.05
    model = seed_network()
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 7)), rng.standard_normal((1, 7))
    one_step(model, x, y, alpha)
    for d in tv.dense_layers(model):
        O, delta = d.input, d.delta
        own = d.dW @ O + d.db[:, None]
        expected = -alpha * delta @ (O.T @ O + 1)
        np.testing.assert_allclose(own, expected, atol=1e-12 * np.abs(expected).max())


def test_dA_decomposition_by_feeding_the_input_twice():
    """ΔA^k = (ΔW^k O^{k-1} + Δb^k) + W^k ΔO^{k-1} + ΔW^k ΔO^{k-1} to rounding."""
    model = seed_network()
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((20, 5)), rng.standard_normal((1, 5))
    layers = tv.dense_layers(model)
    grads = tv.gradient(lambda m: tv.mse(m(x), y), model)  # forward pass 1 records O and A
    before = [(d.weight.copy(), d.input.copy(), d.preact.copy()) for d in layers]
    tv.update(tv.setup(tv.Descent(0.1), model), model, grads)
    model(x)  # forward pass 2: the same input through the updated network
    for k, (d, (W, O, A)) in enumerate(zip(layers, before, strict=True), start=1):
        dO = d.input - O
        own = d.dW @ O + d.db[:, None]
        inherited = W @ dO
        second = d.dW @ dO
        measured = d.preact - A
        assert np.abs(measured).max() > 1e-6, f"layer {k} did not move"
        if k > 1:
            assert np.abs(inherited).max() > 1e-8, f"layer {k}: nothing inherited"
        np.testing.assert_allclose(
            measured, own + inherited + second, rtol=0, atol=1e-12 * np.abs(measured).max()
        )


# --- bad input -------------------------------------------------------------------------------
def test_wrong_input_size_names_layer_sizes_and_position():
    model = seed_network()
    with pytest.raises(tv.DimensionMismatch) as e:
        model(np.ones((5, 3)))
    message = str(e.value)
    assert "Dense(20 => 40, atan)" in message and "== 20" in message and "(5, 3)" in message
    assert any("Chain layer [0]" in note for note in e.value.__notes__)
    bad_tail = Chain(Dense(2, 3, rng=0), SkipConnection(Dense(4, 3, rng=0), tv.add))
    with pytest.raises(tv.DimensionMismatch, match=r"Dense\(4 => 3\).*== 4.*\(3, 2\)") as e:
        bad_tail(np.ones((2, 2)))
    assert any("Chain layer [1]" in note for note in e.value.__notes__)


def test_three_dimensional_input_is_refused():
    with pytest.raises(tv.DimensionMismatch, match=r"2-D.*\(3, 4, 1\)"):
        Dense(3, 2, rng=0)(np.ones((3, 4, 1)))


def test_non_array_input_is_refused():
    with pytest.raises(TypeError, match=r"takes an array.*list"):
        Dense(3, 2, rng=0)([[1.0], [2.0], [3.0]])
