"""OrthogonalizationOverTime: a sample's step leaves the pre-activations of the last M samples
where they are; for one sample it is the in-batch rule on the sample and its memory; M = 0 is
the plain step; the memory is optimiser state, committed with the step or not at all."""

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nets import raising

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.deltarules import Compensation, Orthogonalization, OrthogonalizationOverTime


def sgd_step(model, state, x, y):
    tv.update(state, model, tv.gradient(lambda m: tv.mse(m(x), y), model))


def augmented(x, bias=True):
    return np.concatenate([x, np.ones((1, x.shape[1]))]) if bias else x


def augmented_weight(layer, bias=True):
    """[W b] (W without a bias), as NumPy: the weight that multiplies `augmented` inputs."""
    W = to_numpy(layer.weight)
    return np.concatenate([W, to_numpy(layer.bias)[:, None]], axis=1) if bias else W


@given(
    n=st.integers(2, 8),
    out=st.integers(1, 4),
    bias=st.booleans(),
    keep=st.booleans(),
    data=st.data(),
    seed=st.integers(0, 2**16),
)
def test_remembered_samples_do_not_move(xp, n, out, bias, keep, data, seed):
    """ε = 0, M < inputs (+1 with a bias): after the step on sample M+1 the pre-activations of
    the M remembered samples are where they were; the new sample moved by -α ō P ō δ (OWM),
    or as if alone, -α ‖ō‖² δ (keep_own_move)."""
    M = data.draw(st.integers(1, n - (0 if bias else 1)))
    r = np.random.default_rng(seed)
    layer = tv.Dense(n, out, bias=bias, rng=r)
    layer = layer if xp is np else tv.to(xp, layer)
    rule = OrthogonalizationOverTime(M, eps=0, keep_own_move=keep)
    state = tv.setup(tv.Descent(0.1), layer, delta=rule)
    x = r.standard_normal((n, M + 1))
    y = r.standard_normal((out, M + 1))
    for i in range(M):
        sgd_step(layer, state, xp.asarray(x[:, i : i + 1]), xp.asarray(y[:, i : i + 1]))
    A_before = to_numpy(layer(xp.asarray(x)))
    W_before = augmented_weight(layer, bias)
    xi, yi = xp.asarray(x[:, M:]), xp.asarray(y[:, M:])
    _, grads = tv.withgradient(lambda m: tv.mse(m(xi), yi), layer)
    delta = to_numpy(layer.delta)
    tv.update(state, layer, grads)
    dA = to_numpy(layer(xp.asarray(x))) - A_before
    scale = np.abs(A_before).max() + 1
    o, memory = augmented(x[:, M:], bias), augmented(x[:, :M], bias)
    P = np.eye(len(o)) - memory @ np.linalg.solve(memory.T @ memory, memory.T)
    oPo = (o.T @ P @ o).item()
    # floating point: P ō is exact to about ε cond([memory, ō]) ‖ō‖, and keep_own_move scales
    # the step along it by ‖ō‖²/ōᵀPō, large when ō nearly lies in the memory's span (one draw
    # had 1e8): each number below is exact to ε times that amplification
    amplified = np.linalg.cond(augmented(x, bias)) * ((o**2).sum() / oPo if keep else 1)
    rounding = 100 * np.finfo(float).eps * amplified
    # the remembered samples: zero, up to that part of the move the unprojected ΔW would give
    # each, ‖ΔW‖ ‖o_i‖ (and the rounding of A itself)
    unprojected = np.linalg.norm(augmented_weight(layer, bias) - W_before) * np.linalg.norm(memory, axis=0)  # fmt: skip
    assert (np.abs(dA[:, :M]).max(axis=0) <= 1e-10 * scale + rounding * unprojected).all()
    own = -0.1 * ((o**2).sum() if keep else oPo) * delta
    assert np.allclose(dA[:, M:], own, rtol=1e-8 + rounding, atol=1e-10 * scale)


@pytest.mark.parametrize("M", [3, 8])  # memory narrower than the layer's 5 + 1 inputs, and wider
@pytest.mark.parametrize("eps", [1e-3, 0.5])
@pytest.mark.parametrize("keep", [True, False])
def test_one_sample_is_the_in_batch_rule_on_sample_and_memory(M, eps, keep):
    """keep_own_move: ΔW̄ of one sample = that of Orthogonalization(ε) on [memory, sample],
    with δ = 0 for the remembered samples: -α δ̃_ext Ō_extᵀ, δ̃_ext = (1+ε) δ_ext D (G + εD)⁻¹.
    OWM: -α δ (P_ε ō)ᵀ, the same direction scaled by (ε‖ō‖² + ōᵀP_εō) / ((1+ε)‖ō‖²)."""
    r = np.random.default_rng(M)
    layer = tv.Dense(5, 2, tv.tanh, rng=r)
    rule = OrthogonalizationOverTime(M, eps=eps, keep_own_move=keep)
    state = tv.setup(tv.Descent(0.05), layer, delta=rule)
    x, y = r.standard_normal((5, M + 1)), r.standard_normal((2, M + 1))
    for i in range(M + 1):
        xi, yi = x[:, i : i + 1], y[:, i : i + 1]
        _, grads = tv.withgradient(lambda m: tv.mse(m(xi), yi), layer)
        tv.update(state, layer, grads)
    O_ext = augmented(x)
    delta_ext = np.concatenate([np.zeros((2, M)), layer.delta], axis=1)
    G = O_ext.T @ O_ext
    D = np.diag(np.diag(G))
    in_batch = -0.05 * (1 + eps) * delta_ext @ D @ np.linalg.inv(G + eps * D) @ O_ext.T
    Om, o = O_ext[:, :M], O_ext[:, M:]
    K = Om.T @ Om
    P = np.eye(6) - Om @ np.linalg.inv(K + eps * np.diag(np.diag(K))) @ Om.T
    owm = -0.05 * layer.delta @ (P @ o).T
    ratio = (eps * (o**2).sum() + (o.T @ P @ o).item()) / ((1 + eps) * (o**2).sum())
    assert np.allclose(owm, ratio * in_batch, rtol=1e-9, atol=1e-14)
    want = in_batch if keep else owm
    got = np.concatenate([layer.dW, layer.db[:, None]], axis=1)
    assert np.allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    assert (layer.delta_used is layer.delta) is not keep


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("before", [[], [Compensation(0.2)], [Orthogonalization(0.1)]])
def test_memory_zero_is_the_plain_step_bit_for_bit(B, before):
    r = np.random.default_rng(1)
    x, y = r.standard_normal((2, 12)), r.standard_normal((1, 12))
    make = lambda: tv.Chain(tv.Dense(2, 6, tv.tanh, rng=0), tv.Dense(6, 1, rng=1))  # noqa: E731
    plain, over = make(), make()
    sp = tv.setup(tv.Momentum(0.05), plain, delta=before or None)
    so = tv.setup(tv.Momentum(0.05), over, delta=[*before, OrthogonalizationOverTime(0)])
    for s in range(0, 12, B):
        sgd_step(plain, sp, x[:, s : s + B], y[:, s : s + B])
        sgd_step(over, so, x[:, s : s + B], y[:, s : s + B])
    for a, b in zip(tv.dense_layers(plain), tv.dense_layers(over), strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert np.array_equal(a.delta_used if before else a.delta, b.delta_used)


def test_memory_keeps_the_last_M_inputs_of_each_layer():
    model = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))
    state = tv.setup(tv.Descent(0.1), model, delta=OrthogonalizationOverTime(4, eps=0.1))
    x = np.arange(12.0).reshape(2, 6) / 10
    for s in range(0, 6, 3):  # two batches of 3: the memory keeps the last 4 samples
        xs = x[:, s : s + 3]
        sgd_step(model, state, xs, np.zeros((1, 3)))
    memory = state.transform.memory
    assert sorted(memory) == [(0, "model.layers[0]"), (0, "model.layers[1]")]
    assert np.array_equal(memory[0, "model.layers[0]"], augmented(x[:, 2:]))
    assert memory[0, "model.layers[1]"].shape == (4, 4)
    assert np.array_equal(memory[0, "model.layers[1]"][:3, -3:], model[1].input)


def test_the_memory_is_a_copy_of_the_inputs():
    """The caller may reuse its input buffer: the remembered inputs do not change with it."""
    layer = tv.Dense(3, 1, bias=False, rng=0)
    state = tv.setup(tv.Descent(0.1), layer, delta=OrthogonalizationOverTime(2))
    buffer = np.ones((3, 1))
    sgd_step(layer, state, buffer, np.zeros((1, 1)))
    buffer[:] = 5.0
    assert np.array_equal(state.transform.memory[0, "model"], np.ones((3, 1)))


def snapshot(model, state):
    params = [to_numpy(getattr(layer, name)).tobytes() for _, layer, name in tv.trainables(model)]
    memory = {k: v.tobytes() for k, v in state.transform.memory.items()}
    return params, memory


@pytest.mark.parametrize("k", [1, 2, 3, 4])  # every parameter of the two layers
@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("rule failed")])
def test_an_interrupted_step_leaves_the_memory_and_the_model_unchanged(k, error):
    """The interrupted step changes nothing; training on continues exactly as a twin that was
    never interrupted."""
    r = np.random.default_rng(2)
    x, y = r.standard_normal((2, 8)), r.standard_normal((1, 8))
    make = lambda: tv.Chain(tv.Dense(2, 5, tv.relu, rng=0), tv.Dense(5, 1, rng=1))  # noqa: E731
    rule = raising(tv.Descent(0.1), k, error)
    model, twin = make(), make()
    state = tv.setup(rule, model, delta=OrthogonalizationOverTime(3, eps=1e-3))
    twin_state = tv.setup(tv.Descent(0.1), twin, delta=OrthogonalizationOverTime(3, eps=1e-3))
    for i in range(8):
        xi, yi = x[:, i : i + 1], y[:, i : i + 1]
        if i == 5:
            _, grads = tv.withgradient(lambda m: tv.mse(m(xi), yi), model)
            before = snapshot(model, state)
            rule.calls = 0
            with pytest.raises(type(error)):
                tv.update(state, model, grads)
            rule.calls = None
            assert snapshot(model, state) == before
        sgd_step(model, state, xi, yi)
        sgd_step(twin, twin_state, xi, yi)
    assert snapshot(model, state) == snapshot(twin, twin_state)


def test_a_refused_step_leaves_the_memory_unchanged():
    layer = tv.Dense(3, 2, rng=0)
    state = tv.setup(tv.Descent(0.1), layer, delta=OrthogonalizationOverTime(2))
    x = np.random.default_rng(0).standard_normal((3, 2))
    sgd_step(layer, state, x[:, :1], np.zeros((2, 1)))
    before = snapshot(layer, state)
    memory = state.transform.memory
    _, grads = tv.withgradient(lambda m: tv.mse(m(x[:, 1:]), np.zeros((2, 1))), layer)
    grads.weight[0, 0] = np.nan
    with pytest.raises(tv.NonFiniteStep):
        tv.update(state, layer, grads)
    assert state.transform.memory is memory and snapshot(layer, state) == before


def test_eps_zero_refuses_a_memory_it_cannot_keep_still_and_changes_nothing():
    layer = tv.Dense(1, 1, rng=0)  # inputs [x; 1]: two remembered samples span everything
    rule = OrthogonalizationOverTime(2, eps=0, keep_own_move=True)
    state = tv.setup(tv.Descent(0.1), layer, delta=rule)
    sgd_step(layer, state, np.array([[0.5, -1.0]]), np.zeros((1, 2)))
    before = snapshot(layer, state)
    with pytest.raises(ValueError, match=r"span of the\s+remembered ones.*use eps > 0"):
        sgd_step(layer, state, np.array([[2.0]]), np.zeros((1, 1)))
    assert snapshot(layer, state) == before
    # OWM asks nothing impossible there: the step is 0 (to rounding), the memory moves on
    state = tv.setup(tv.Descent(0.1), layer, delta=OrthogonalizationOverTime(2, eps=0))
    sgd_step(layer, state, np.array([[0.5, -1.0]]), np.zeros((1, 2)))
    W, b = layer.weight.copy(), layer.bias.copy()
    sgd_step(layer, state, np.array([[2.0]]), np.zeros((1, 1)))
    assert np.allclose(layer.weight, W, atol=1e-14) and np.allclose(layer.bias, b, atol=1e-14)
    # a batch of two copies: the remembered inputs are linearly dependent
    state = tv.setup(tv.Descent(0.1), layer, delta=OrthogonalizationOverTime(2, eps=0))
    sgd_step(layer, state, np.array([[0.5, 0.5]]), np.zeros((1, 2)))
    before = snapshot(layer, state)
    with pytest.raises(ValueError, match=r"linearly dependent.*use eps > 0"):
        sgd_step(layer, state, np.array([[0.3]]), np.zeros((1, 1)))
    assert snapshot(layer, state) == before
    # with eps > 0 both are fine: the least-squares compromise, finite
    state = tv.setup(tv.Descent(0.1), layer, delta=OrthogonalizationOverTime(2, eps=1e-6))
    for v in ([[0.5, 0.5]], [[0.3]], [[2.0]]):
        sgd_step(layer, state, np.array(v), np.zeros((1, len(v[0]))))
    assert np.isfinite(layer.weight).all()


def test_pickle_and_deepcopy():
    rule = OrthogonalizationOverTime(5, eps=0.01)
    for other in (pickle.loads(pickle.dumps(rule)), copy.deepcopy(rule)):
        assert type(other) is OrthogonalizationOverTime and repr(other) == repr(rule)
        assert vars(other) == vars(rule)
    # a deep copy of model and state carries the memory and trains on identically
    x = np.random.default_rng(3).standard_normal((2, 6))
    model = tv.Chain(tv.Dense(2, 4, tv.tanh, rng=0), tv.Dense(4, 1, rng=1))
    state = tv.setup(tv.Descent(0.1), model, delta=rule)
    for i in range(3):
        sgd_step(model, state, x[:, i : i + 1], np.ones((1, 1)))
    model2, state2 = copy.deepcopy((model, state))
    assert state2.transform.memory.keys() == state.transform.memory.keys()
    for i in range(3, 6):
        sgd_step(model, state, x[:, i : i + 1], np.ones((1, 1)))
        sgd_step(model2, state2, x[:, i : i + 1], np.ones((1, 1)))
    assert snapshot(model, state) == snapshot(model2, state2)
    assert repr(rule) == "OrthogonalizationOverTime(memory=5, eps=0.01, keep_own_move=False)"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(memory=-1), "memory must be a whole number of samples ≥ 0"),
        (dict(memory=2.0), "memory must be a whole number of samples ≥ 0"),
        (dict(memory=True), "memory must be a whole number of samples ≥ 0"),
        (dict(eps=-1e-3), "eps must be a number ≥ 0"),
        (dict(eps=float("nan")), "eps must be a number ≥ 0"),
        (dict(eps="0.1"), "eps must be a number ≥ 0"),
        (dict(keep_own_move="yes"), "keep_own_move must be True or False"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OrthogonalizationOverTime(**kwargs)


def test_it_must_be_the_last_rule_and_is_used_through_setup():
    with pytest.raises(ValueError, match="must be the last δ-rule"):
        tv.setup(tv.Descent(0.1), tv.Dense(2, 1), [OrthogonalizationOverTime(), Compensation()])
    with pytest.raises(ValueError, match="Adam"):
        tv.setup(tv.Adam(), tv.Dense(2, 1), OrthogonalizationOverTime())
    with pytest.raises(TypeError, match="needs its memory"):
        OrthogonalizationOverTime().rewrite(None, None)


def test_a_changed_model_under_the_state_is_refused():
    layer = tv.Dense(2, 1, rng=0)
    state = tv.setup(tv.Descent(0.1), layer, delta=OrthogonalizationOverTime(2))
    sgd_step(layer, state, np.ones((2, 1)), np.zeros((1, 1)))
    f32 = tv.Dense(2, 1, rng=0)
    f32.weight, f32.bias = f32.weight.astype(np.float32), f32.bias.astype(np.float32)
    with pytest.raises(ValueError, match=r"call tv\.setup again"):
        sgd_step(f32, state, np.ones((2, 1), np.float32), np.zeros((1, 1), np.float32))


@pytest.mark.parametrize("keep", [False, True])
def test_compiled_step_is_the_default_step_bit_for_bit(keep):
    r = np.random.default_rng(4)
    x, y = r.standard_normal((2, 10)), r.standard_normal((1, 10))
    make = lambda: tv.Chain(tv.Dense(2, 5, tv.tanh, rng=0), tv.Dense(5, 1, rng=1))  # noqa: E731
    rules = lambda: [Compensation(0.2), OrthogonalizationOverTime(3, 1e-3, keep)]  # noqa: E731
    a, b = make(), make()
    sa, sb = tv.setup(tv.Descent(0.1), a, delta=rules()), tv.setup(tv.Descent(0.1), b, rules())
    step = tv.compile(lambda m, xb, yb: tv.mse(m(xb), yb), a, sa)
    for i in range(10):
        step(x[:, i : i + 1], y[:, i : i + 1])
        sgd_step(b, sb, x[:, i : i + 1], y[:, i : i + 1])
    assert step.fallback is None and snapshot(a, sa) == snapshot(b, sb)
