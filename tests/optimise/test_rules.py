"""Optimiser rules against values worked out by hand (and, for Adam, against the textbook
algorithm written out in plain Python), on every array namespace."""

import math

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.backend import to_numpy

X0 = [1.0, -2.0, 3.0]
GRADS = [[0.5, -1.0, 2.0], [0.1, 0.2, -0.3], [-1.0, 0.0, 1.0]]


def run(rule, xp, x0=X0, grads=GRADS):
    """Three steps of ``rule`` from x0: the steps it returns, as NumPy arrays."""
    x = xp.asarray(x0)
    state = rule.init(x)
    steps = []
    for dx in grads:
        state, step = rule.apply(state, x, xp.asarray(dx))
        x = x - step
        steps.append(to_numpy(step))
    return steps


def assert_steps(steps, expected):
    for k, (got, want) in enumerate(zip(steps, expected, strict=True), start=1):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=f"step {k}")


def test_descent(xp):
    assert_steps(run(tv.Descent(0.1), xp), [[0.05, -0.1, 0.2], [0.01, 0.02, -0.03], [-0.1, 0, 0.1]])


def test_momentum(xp):
    # v1 = 0.1 g1; v2 = 0.9 v1 + 0.1 g2; v3 = 0.9 v2 + 0.1 g3; step = v
    expected = [[0.05, -0.1, 0.2], [0.055, -0.07, 0.15], [-0.0505, -0.063, 0.235]]
    assert_steps(run(tv.Momentum(0.1, 0.9), xp), expected)


def test_nesterov(xp):
    # step = -ρ² v + (1+ρ) η g with the old v, then v ← ρ v - η g (Optimisers.jl)
    # v1 = [-0.05, 0.1, -0.2], v2 = [-0.055, 0.07, -0.15]
    expected = [[0.095, -0.19, 0.38], [0.0595, -0.043, 0.105], [-0.14545, -0.0567, 0.3115]]
    assert_steps(run(tv.Nesterov(0.1, 0.9), xp), expected)


def adam_reference(eta, b1, b2, eps, grads):
    """Kingma & Ba (2015), Algorithm 1, element by element."""
    steps = []
    m = [0.0] * len(grads[0])
    v = [0.0] * len(grads[0])
    for t, g in enumerate(grads, start=1):
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        steps.append(
            [
                eta * (mi / (1 - b1**t)) / (math.sqrt(vi / (1 - b2**t)) + eps)
                for mi, vi in zip(m, v, strict=True)
            ]
        )
    return steps


def test_adam(xp):
    steps = run(tv.Adam(0.1, (0.9, 0.999), 1e-8), xp)
    # first step: m̂ = g, v̂ = g², so step = η g / (|g| + ε), η·sign(g) up to ε; 0 where g = 0
    np.testing.assert_allclose(steps[0], [0.1, -0.1, 0.1], rtol=1e-7)
    assert_steps(steps, adam_reference(0.1, 0.9, 0.999, 1e-8, GRADS))


def test_adamw_adds_decoupled_decay(xp):
    adam = adam_reference(0.1, 0.9, 0.999, 1e-8, GRADS)
    x, expected = np.array(X0), []
    for a in adam:  # step = Adam step + η λ x, with x before the step
        step = np.array(a) + 0.1 * 0.01 * x
        expected.append(step)
        x = x - step
    assert_steps(run(tv.AdamW(0.1, (0.9, 0.999), 0.01, 1e-8), xp), expected)


def test_weight_decay(xp):
    # step = g + λ x; x1 = x0 - step1 = [0.3, -0.6, 0.4], x2 = [0.14, -0.68, 0.62]
    expected = [[0.7, -1.4, 2.6], [0.16, 0.08, -0.22], [-0.972, -0.136, 1.124]]
    assert_steps(run(tv.WeightDecay(0.2), xp), expected)


def test_clipnorm(xp):
    assert_steps(run(tv.ClipNorm(1.0), xp, [0.0, 0.0], [[3.0, 4.0]]), [[0.6, 0.8]])
    assert_steps(run(tv.ClipNorm(10.0), xp, [0.0, 0.0], [[3.0, 4.0]]), [[3.0, 4.0]])
    assert_steps(run(tv.ClipNorm(1.0, p=1), xp, [0.0, 0.0], [[3.0, -4.0]]), [[3 / 7, -4 / 7]])


def test_optimiser_chain(xp):
    # clip [3, 4] to [0.6, 0.8], add 0.1 x = [0.1, -0.2], times 0.5
    rule = tv.OptimiserChain(tv.ClipNorm(1.0), tv.WeightDecay(0.1), tv.Descent(0.5))
    assert_steps(run(rule, xp, [1.0, -2.0], [[3.0, 4.0]]), [[0.35, 0.3]])
    assert repr(rule) == "OptimiserChain(ClipNorm(1.0, 2), WeightDecay(0.1), Descent(0.5))"


def test_chained_state_is_per_rule(xp):
    rule = tv.OptimiserChain(tv.Momentum(0.1, 0.9), tv.Descent(1.0))
    assert_steps(run(rule, xp), run(tv.Momentum(0.1, 0.9), xp))


@pytest.mark.parametrize("rule", [tv.Descent(0.1), tv.Momentum(), tv.Adam(), tv.AdamW()])
def test_setup_and_update_apply_the_rule_to_every_parameter(rule, xp):
    model = tv.to(xp, tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1)))
    x, y = xp.asarray(np.ones((2, 4))), xp.asarray(np.zeros((1, 4)))
    state = tv.setup(rule, model)
    before = {p: to_numpy(getattr(layer, n)) for p, layer, n in tv.trainables(model)}
    grads = tv.gradient(lambda m: tv.mse(m(x), y), model)
    tv.update(state, model, grads)
    for p, layer, n in tv.trainables(model):
        leaf = eval(p.replace("model", "state.tree", 1), {"state": state})
        moved = before[p] - to_numpy(getattr(layer, n))
        np.testing.assert_allclose(moved, to_numpy(layer.step[n]), rtol=0, atol=1e-15)
        assert leaf.rule is rule
