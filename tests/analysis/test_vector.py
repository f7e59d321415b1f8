import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.analysis.vector import (
    VectorRecorder,
    analyze_step,
    batch_coherence,
    decompose,
    effective_rank,
    effective_rank_from_sigma,
    per_sample_grad_norms,
)


def mse_loss(m, x, y):
    return tv.mse(m(x), y)


def ce_loss(m, x, y):
    return tv.crossentropy(m(x), y)


def net(seed, bias=True):
    return tv.Chain(
        tv.Dense(3, 6, tv.tanh, rng=seed, bias=bias),
        tv.SkipConnection(tv.Dense(6, 6, tv.relu, rng=seed + 1), tv.add),
        tv.Dense(6, 2, tv.sigmoid, rng=seed + 2, bias=bias),
    )


RULES = [lambda: tv.Descent(0.5), lambda: tv.Adam(0.05), lambda: tv.Momentum(0.1, 0.9)]


@given(seed=st.integers(0, 1000), batch=st.integers(1, 9), rule=st.sampled_from(RULES))
@settings(max_examples=25, deadline=None)
def test_decomposition_sums_to_the_measured_move(seed, batch, rule):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(3, batch)), rng.normal(size=(2, batch))
    m = net(seed)
    state = tv.setup(rule(), m)
    for _ in range(2):  # the second step also runs with optimiser state
        _, records = analyze_step(mse_loss, m, state, x, y)
    assert len(records) == 3
    for r in records:
        total = r["own"] + r["inherited"] + r["second"]
        assert np.allclose(total, r["dA"], rtol=1e-12, atol=1e-13)
        assert r["residual"] < 1e-10
    assert records[0]["inherited_norm"] == 0 and records[0]["second_norm"] == 0
    # the measured move is what a fresh forward pass of the updated model shows
    before = m.layers[2].preact
    m(x)
    after = m.layers[2].preact
    assert np.allclose(after - before, records[2]["dA"], atol=1e-13)


def test_one_sample_plain_descent_moves_A_along_minus_delta():
    x, y = np.array([[0.3], [-1.0], [2.0]]), np.array([[1.0], [0.0]])
    m, alpha = net(3), 0.1
    _, records = analyze_step(mse_loss, m, tv.setup(tv.Descent(alpha), m), x, y)
    for r, d in zip(records, tv.dense_layers(m), strict=True):
        o2 = float(np.sum(d.input**2)) + 1  # + 1: the bias
        assert np.allclose(r["own"], -alpha * o2 * d.delta, atol=1e-15)
        assert r["cos_own_delta"] == pytest.approx(1, abs=1e-12)
    assert math.isnan(records[0]["coherence"])  # one sample: no pairs


@pytest.mark.parametrize("loss", [mse_loss, ce_loss])
@pytest.mark.parametrize("bias", [True, False])
def test_per_sample_norms_equal_a_per_sample_backward_pass(loss, bias):
    rng = np.random.default_rng(7)
    B = 5
    x, labels = rng.normal(size=(3, B)), rng.integers(0, 2, B)
    y = tv.onehot(labels, 2)
    m = net(11, bias=bias)
    _, records = analyze_step(loss, m, tv.setup(tv.Descent(0.0), m), x, y)
    summed = per_sample_grad_norms(m.layers[2].delta, m.layers[2].input, bias=bias, mean_loss=False)
    brute = np.zeros((3, B))
    for n in range(B):
        grads = tv.gradient(lambda mm, n=n: loss(mm, x[:, n : n + 1], y[:, n : n + 1]), m)
        for k, g in enumerate([grads.layers[0], grads.layers[1].layer, grads.layers[2]]):
            sq = np.sum(g.weight**2) + (np.sum(g.bias**2) if g.bias is not None else 0)
            brute[k, n] = np.sqrt(sq)
    got = np.array([r["per_sample_grad_norms"] for r in records])
    assert np.allclose(got, brute, rtol=1e-12, atol=1e-15)
    assert records[2]["grad_norm_max"] == pytest.approx(brute[2].max())
    assert np.allclose(summed * B, brute[2])


@given(
    O=st.integers(0, 10**6).map(lambda s: np.random.default_rng(s).normal(size=(4, 6))),
    scale=st.lists(st.sampled_from([-3.0, -1.0, 0.5, 2.0]), min_size=6, max_size=6),
)
@settings(max_examples=30, deadline=None)
def test_coherence_and_effective_rank(O, scale):
    c = batch_coherence(O)
    assert 0 <= c <= 1
    assert batch_coherence(O * np.array(scale)) == pytest.approx(c)  # signs and lengths drop out
    r = effective_rank(O)
    assert 1 <= r <= 4 + 1e-12
    Q = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]
    assert effective_rank(Q @ O) == pytest.approx(r)
    assert effective_rank(np.outer(O[:, 0], O[0])) == pytest.approx(1)
    assert batch_coherence(np.outer(O[:, 0], np.array(scale))) == pytest.approx(1)
    assert effective_rank(np.zeros((3, 2))) == 0
    assert batch_coherence(np.eye(3)) == 0


def test_effective_rank_from_sigma():
    """n equal σ give n, one nonzero σ gives 1 (zeros count as 0 · log 0 = 0), all zero 0;
    the matrix version is the same number on the matrix's singular values."""
    assert effective_rank_from_sigma(np.ones(5)) == pytest.approx(5.0)
    assert effective_rank_from_sigma(np.array([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_rank_from_sigma(np.zeros(4)) == 0
    O = np.random.default_rng(1).normal(size=(5, 3))
    s = np.linalg.svd(O, compute_uv=False)
    assert effective_rank(O) == pytest.approx(effective_rank_from_sigma(s), rel=1e-12)
    assert 1 < effective_rank_from_sigma(s) < 3


def test_vector_recorder_in_train():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 16)), rng.normal(size=(2, 16))
    data = [(x[:, :8], y[:, :8]), (x[:, 8:], y[:, 8:])]
    plain, recorded = net(5), net(5)
    rec = VectorRecorder(measure_every=2)
    h0 = tv.train(mse_loss, plain, data, tv.setup(tv.Descent(0.2), plain), epochs=3, progress=False)
    h1 = tv.train(mse_loss, recorded, data, tv.setup(tv.Descent(0.2), recorded), epochs=3,
                  progress=False, recorder=rec)  # fmt: skip
    assert h0 == h1  # the second forward pass leaves training alone
    assert len(rec.rows) == 3 * 6
    measured = [r for r in rec.rows if "ratio" in r]
    assert {r["step"] for r in measured} == {2, 4, 6} and len(measured) == 9
    assert all(r["residual"] < 1e-10 and "cos_dA_delta" in r for r in measured)
    assert rec.matrix("ratio").shape == (3, 3) and rec.steps("ratio").tolist() == [2, 4, 6]
    assert rec.matrix("o_norm").shape == (3, 6)
    assert np.all(rec.matrix("inherited_norm")[0] == 0)
    # the recorder's own cos(ΔA_own, −δ) is ours
    assert all(r["cos_own_delta"] == pytest.approx(r["cos_dA_delta"]) for r in measured)


def test_bad_use():
    m = net(0)
    with pytest.raises(ValueError, match="forward pass before the update"):
        decompose(m)
    with pytest.raises(ValueError, match="loss's arguments"):
        analyze_step(mse_loss, m, tv.setup(tv.Descent(0.1), m))
    with pytest.raises(ValueError, match="measure_every"):
        VectorRecorder(measure_every=0)


def test_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    m = net(2)
    ms = tv.to(xp, m)
    _, ref = analyze_step(mse_loss, m, tv.setup(tv.Descent(0.1), m), x, y)
    _, got = analyze_step(mse_loss, ms, tv.setup(tv.Descent(0.1), ms), xp.asarray(x), xp.asarray(y))
    for a, b in zip(ref, got, strict=True):
        for key in ("ratio", "cos_total_delta", "coherence", "effective_rank", "grad_norm_mean"):
            assert a[key] == pytest.approx(b[key], rel=1e-10)
