"""Orthogonalization: every sample moves as if trained alone, ΔA_i = -α(‖o_i‖²+1)δ_i, when
the batch is narrower than the layer; otherwise ΔW tends to the least-squares solution."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.deltarules import Compensation, Orthogonalization


def one_step(model, rules, x, y, alpha=0.1):
    state = tv.setup(tv.Descent(alpha), model, delta=rules)
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    deltas = [d.delta for d in tv.dense_layers(model)]
    tv.update(state, model, grads)
    return deltas


def own_move(d):
    """ΔW^k O^{k-1} + Δb^k: the move of A^k due to layer k's own step."""
    return to_numpy(d.dW) @ to_numpy(d.input) + to_numpy(d.db)[:, None]


@given(batch=st.integers(2, 19), seed=st.integers(0, 2**16))
def test_each_sample_moves_as_if_alone(net, xp, batch, seed):
    model, r = net(xp), np.random.default_rng(seed)
    x, y = (xp.asarray(r.standard_normal(s)) for s in ((20, batch), (1, batch)))
    deltas = one_step(model, Orthogonalization(eps=1e-10), x, y)
    for d, delta in zip(tv.dense_layers(model)[:-1], deltas, strict=False):  # widths ≥ 20 > batch
        O, delta = to_numpy(d.input), to_numpy(delta)
        want = -0.1 * ((O**2).sum(0) + 1) * delta
        assert np.allclose(own_move(d), want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_batch_of_one_and_orthogonal_samples_give_the_plain_update():
    x1 = np.array([[1.0], [2.0]])
    plain, ortho = tv.Dense(2, 3, rng=0), tv.Dense(2, 3, rng=0)
    one_step(plain, None, x1, np.zeros((3, 1)))
    one_step(ortho, Orthogonalization(0.5), x1, np.zeros((3, 1)))
    assert np.array_equal(plain.weight, ortho.weight)
    # mutually orthogonal samples, no bias: G = D, nothing to remove, whatever ε
    plain, ortho = tv.Dense(3, 2, bias=False, rng=0), tv.Dense(3, 2, bias=False, rng=0)
    x = np.diag([1.0, 2.0, 3.0])
    one_step(plain, None, x, np.ones((2, 3)))
    one_step(ortho, Orthogonalization(0.5), x, np.ones((2, 3)))
    assert np.allclose(plain.weight, ortho.weight, rtol=1e-14)


@pytest.mark.parametrize("case", ["duplicates", "wider_than_layer"])
def test_singular_gram_gives_least_squares(case):
    """When G = ŌᵀŌ is singular (Ō = [O; 1]) ΔW tends to the least-squares solution of
    ΔW ō_i = -α‖ō_i‖²δ_i weighted by 1/‖ō_i‖²: -α δ D^½ (Ō D^-½)⁺."""
    r = np.random.default_rng(5)
    if case == "duplicates":  # two copies of a sample, with different targets
        x = r.standard_normal((6, 4))
        x = np.concatenate([x, x[:, :2]], axis=1)
    else:
        x = r.standard_normal((3, 12))  # 12 samples, 3 inputs + bias
    y = r.standard_normal((2, x.shape[1]))
    layer = tv.Dense(x.shape[0], 2, tv.tanh, rng=1)
    (delta,) = one_step(layer, Orthogonalization(eps=1e-9), x, y)
    dWb = np.concatenate([layer.dW, layer.db[:, None]], axis=1)
    Ob = np.concatenate([x, np.ones((1, x.shape[1]))])
    root_D = np.sqrt((Ob**2).sum(0))
    want = -0.1 * (delta * root_D) @ np.linalg.pinv(Ob / root_D)
    assert np.all(np.isfinite(layer.delta_used)) and np.all(np.isfinite(dWb))
    assert np.allclose(dWb, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


def test_zero_input_without_bias_is_left_alone():
    x = np.array([[1.0, 0.0, 2.0], [0.5, 0.0, -1.0]])  # the middle sample is all zeros
    layer = tv.Dense(2, 2, tv.relu, bias=False, rng=0)
    one_step(layer, Orthogonalization(1e-3), x, np.ones((2, 3)))
    assert np.all(np.isfinite(layer.weight)) and np.all(layer.delta_used[:, 1] == 0)


def test_compensation_then_orthogonalization(net, twice):
    """κ = 1 then orthogonalization: ΔA_i − ΔW ΔO_i = −α(‖o_i‖²+1)δ_i for every sample of a
    batch narrower than every layer (here 3 < 3 + bias of the last layer)."""
    alpha, model = 0.05, net()
    state = tv.setup(tv.Descent(alpha), model, delta=[Compensation(1.0), Orthogonalization(1e-12)])
    r = np.random.default_rng(6)
    for L in twice(model, state, r.standard_normal((20, 3)), r.standard_normal((1, 3))):
        dO = L["O2"] - L["O"]
        want = -alpha * ((L["O"] ** 2).sum(0) + 1) * L["delta"]
        assert np.allclose(L["A2"] - L["A"] - L["dW"] @ dO, want, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("eps", [-1.0, float("nan"), "small", None])
def test_bad_eps_is_refused(eps):
    with pytest.raises(ValueError, match="eps must be a number"):
        Orthogonalization(eps)


@given(
    batch=st.integers(2, 30),
    width=st.integers(1, 30),
    eps=st.sampled_from([1e-6, 1e-3, 0.5]),
    bias=st.booleans(),
    dtype=st.sampled_from(["float64", "float32"]),
    seed=st.integers(0, 2**16),
)
def test_cholesky_solve_agrees_with_lu(batch, width, eps, bias, dtype, seed):
    """With NumPy (and SciPy) the solve is a Cholesky factorisation and two triangular solves; without SciPy it is
    NumPy's LU ``solve``: the same δ̃ up to rounding, relative to the condition of G + εD,
    and neither changes the context's Gram matrix (a later rule reads it)."""
    from tinyvec.deltarules import LayerContext, orthogonalization

    r = np.random.default_rng(seed)
    O = r.standard_normal((width, batch)).astype(dtype)
    delta = r.standard_normal((3, batch)).astype(dtype)
    rule = Orthogonalization(eps)
    ctx = LayerContext(W=None, O=O, dO=None, alpha=0.1, bias=bias)
    G = ctx.gram.copy()
    cholesky = rule.rewrite(delta, ctx)
    assert np.array_equal(ctx.gram, G)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(orthogonalization, "_cholesky_routines", lambda dtype: None)
        lu = rule.rewrite(delta, LayerContext(W=None, O=O, dO=None, alpha=0.1, bias=bias))
    assert cholesky.dtype == lu.dtype == np.dtype(dtype)
    D = np.diagonal(G).astype("float64")
    M = G.astype("float64") + np.diag(eps * np.where(D > 0, D, 1.0))
    tol = 50 * np.linalg.cond(M) * np.finfo(dtype).eps
    assert np.allclose(cholesky, lu, rtol=tol, atol=tol * np.abs(lu).max())


def test_the_solver_is_cholesky_for_real_floats_only():
    from tinyvec.deltarules.orthogonalization import _cholesky_routines

    pytest.importorskip("scipy")
    assert [f.typecode for f in _cholesky_routines(np.dtype("float64"))] == ["d", "d"]
    assert [f.typecode for f in _cholesky_routines(np.dtype("float32"))] == ["s", "s"]
    assert _cholesky_routines(np.dtype("float16")) is None
