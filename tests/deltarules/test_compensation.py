"""Compensation: κ = 0 is plain backprop bit for bit; the exact variant moves every A^k by
-α‖ō‖²δ^k + (1-κ) W^k ΔO^{k-1} + ΔW^k ΔO^{k-1}, measured by feeding the input twice."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.deltarules import Compensation


def copy(model):
    return tv.fmap(lambda a: a + 0, model)


@pytest.mark.parametrize("rule", [tv.Descent(0.05), tv.Momentum(0.02, 0.9)])
@pytest.mark.parametrize("variant", ["exact", "first_order"])
def test_kappa_zero_is_plain_update_bit_for_bit(net, rule, variant):
    plain, comp = net(), net()
    s_plain, s_comp = tv.setup(rule, plain), tv.setup(rule, comp, delta=Compensation(0, variant))
    rng = np.random.default_rng(1)
    for _ in range(3):  # several steps, so Momentum's velocity matters
        x, y = rng.standard_normal((20, 5)), rng.standard_normal((1, 5))
        for model, state in ((plain, s_plain), (comp, s_comp)):
            _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
            tv.update(state, model, grads)
    for a, b in zip(tv.dense_layers(plain), tv.dense_layers(comp), strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert np.array_equal(a.dW, b.dW) and b.delta_used is b.delta


@pytest.mark.parametrize("kappa", [1.0, 0.3])
def test_exact_variant_moves_A_as_asked(net, twice, xp, kappa):
    """One sample, Descent: ΔA^k − ΔW^k ΔO^{k-1} = −α(‖o^{k-1}‖²+1) δ^k + (1−κ) W^k ΔO^{k-1}
    for every layer, exactly up to rounding (κ = 1: each layer moves as if trained alone)."""
    alpha = 0.05
    model = net(xp)
    state = tv.setup(tv.Descent(alpha), model, delta=Compensation(kappa))
    r = np.random.default_rng(2)
    x, y = xp.asarray(r.standard_normal((20, 1))), xp.asarray(np.ones((1, 1)))
    for k, L in enumerate(twice(model, state, x, y), start=1):
        dA, dO = L["A2"] - L["A"], L["O2"] - L["O"]
        n2 = (L["O"] ** 2).sum(0) + 1
        want = -alpha * n2 * L["delta"] + (1 - kappa) * L["W"] @ dO
        assert np.allclose(dA - L["dW"] @ dO, want, rtol=1e-9, atol=1e-13), k
        assert (k == 1) == np.all(dO == 0)  # only the input layer inherits nothing
    assert np.abs(dA).max() > 1e-3  # the test measures a real move


@given(kappa=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_delta_used_is_the_formula(net, kappa, seed):
    """δ̃^k = δ^k + κ W^k ΔO^{k-1} / (α (‖o‖²+1)) per sample, with ΔO from the updated layers."""
    alpha, r = 0.03, np.random.default_rng(seed)
    model = net(seed=seed)
    state = tv.setup(tv.Descent(alpha), model, delta=Compensation(kappa))
    x, y = r.standard_normal((20, 4)), r.standard_normal((1, 4))
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    layers, W = tv.dense_layers(model), [d.weight for d in tv.dense_layers(model)]
    O = [d.input for d in layers]
    tv.update(state, model, grads)
    outs = tv.activations(model, x)  # Õ after the update, at every Chain position
    inputs = [x, outs[0], outs[1], outs[2], outs[3], outs[4]]
    for d, Wk, Ok, Onew in zip(layers, W, O, inputs, strict=True):
        want = d.delta + kappa * Wk @ (Onew - Ok) / (alpha * ((Ok**2).sum(0) + 1))
        assert np.allclose(d.delta_used, want, rtol=1e-10, atol=1e-14)


def test_first_order_linearises_the_activation(net):
    """Layer 2 gets ΔO¹ = φ′(A¹) ⊙ ΔA¹, with ΔA¹ the (exact) move of layer 1's pre-activation."""
    alpha, kappa = 0.05, 0.5
    model = tv.Chain(
        tv.Dense(3, 6, tv.tanh, rng=0), tv.Dense(6, 4, tv.tanh, rng=1), tv.Dense(4, 1, rng=2)
    )
    state = tv.setup(tv.Descent(alpha), model, delta=Compensation(kappa, "first_order"))
    x, y = np.random.default_rng(3).standard_normal((3, 5)), np.ones((1, 5))
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    d1, d2 = model[0], model[1]
    A1, O1, W2, delta2 = d1.preact, d1.output, d2.weight, d2.delta
    tv.update(state, model, grads)
    dA1 = d1.weight @ x + d1.bias[:, None] - A1
    dO1 = (1 - O1**2) * dA1
    want = delta2 + kappa * W2 @ dO1 / (alpha * ((O1**2).sum(0) + 1))
    assert np.allclose(d2.delta_used, want, rtol=1e-12)
    assert not np.allclose(dO1, np.tanh(A1 + dA1) - O1, rtol=1e-9)  # it is an approximation


def test_variants_agree_for_a_linear_network():
    updated = []
    for variant in ("exact", "first_order"):
        model = tv.Chain(tv.Dense(3, 5, rng=0), tv.Dense(5, 2, rng=1))
        state = tv.setup(tv.Descent(0.1), model, delta=Compensation(0.7, variant))
        x = np.random.default_rng(0).standard_normal((3, 4))
        _, grads = tv.withgradient(lambda m: tv.mse(m(x), np.zeros((2, 4))), model)
        tv.update(state, model, grads)
        updated.append(model[1].weight)
    assert np.allclose(*updated, rtol=1e-13)


def test_momentum_compensates_with_eta(net, twice):
    """With Momentum α = η: on the first step (zero velocity) the identity of Descent holds."""
    model = net()
    state = tv.setup(tv.Momentum(0.05, 0.9), model, delta=Compensation(1.0))
    x, y = np.random.default_rng(4).standard_normal((20, 1)), np.ones((1, 1))
    for L in twice(model, state, x, y):
        dO = L["O2"] - L["O"]
        want = -0.05 * ((L["O"] ** 2).sum(0) + 1) * L["delta"]
        assert np.allclose(L["A2"] - L["A"] - L["dW"] @ dO, want, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("a",), "kappa must be a real number"),
        ((float("nan"),), "kappa must be a real number"),
        ((True,), "kappa must be a real number"),
        ((0.2, "second_order"), "unknown variant"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        Compensation(*args)


def test_works_on_a_single_sample_vector():
    """A 1-D input (one sample) runs through the sweep as a batch of one."""
    model = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))
    state = tv.setup(tv.Descent(0.1), model, delta=Compensation(1.0))
    x = np.array([0.5, -1.0])
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), np.array([1.0])), model)
    tv.update(state, model, grads)
    assert to_numpy(model[1].delta_used).shape == (1, 1)
    assert not np.array_equal(model[1].delta_used, model[1].delta)
