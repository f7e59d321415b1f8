"""gradient / setup / update / train: semantics, and refusals that change nothing."""

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.optimise.training import Leaf


def small_model(rng=0):
    return tv.Chain(tv.Dense(2, 4, tv.tanh, rng=rng), tv.Dense(4, 1, rng=rng + 1))


def data(n=4, rng=0):
    """Batches of a learnable target, y = sin(x₁) + x₂ / 2."""
    g = np.random.default_rng(rng)
    xs = [g.standard_normal((2, 8)) for _ in range(n)]
    return [(x, np.sin(x[:1]) + 0.5 * x[1:]) for x in xs]


def mse_loss(m, x, y):
    return tv.mse(m(x), y)


def parameters(model):
    return {p: to_numpy(getattr(layer, n)).copy() for p, layer, n in tv.trainables(model)}


def state_bytes(state):
    """Every number in the optimiser state, as bytes (for bit-for-bit comparison)."""
    out = []

    def visit(node):
        if isinstance(node, Leaf):
            visit(node.state)
        elif isinstance(node, dict):
            for key in sorted(node):
                visit(node[key])
        elif isinstance(node, tuple | list):
            for item in node:
                visit(item)
        elif node is not None:
            out.append(np.asarray(to_numpy(node) if hasattr(node, "shape") else node).tobytes())

    visit(state.tree)
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for p in a:
        assert a[p].tobytes() == b[p].tobytes(), p


def test_train_reduces_the_loss_and_returns_the_history():
    model = small_model()
    batches = data()
    state = tv.setup(tv.Adam(0.05), model)
    history = tv.train(mse_loss, model, batches, state, epochs=30, progress=False)
    assert len(history) == 30 * len(batches) and all(isinstance(v, float) for v in history)
    assert np.mean(history[-4:]) < 0.5 * np.mean(history[:4])


def test_train_steps_match_manual_updates():
    a, b = small_model(), small_model()
    batches = data(3)
    history = tv.train(mse_loss, a, batches, tv.setup(tv.Momentum(0.1), a), progress=False)
    state = tv.setup(tv.Momentum(0.1), b)
    manual = []
    for x, y in batches:
        loss, grads = tv.withgradient(lambda m: mse_loss(m, x, y), b)
        tv.update(state, b, grads)
        manual.append(float(loss))
    assert history == manual
    assert_same(parameters(a), parameters(b))


def test_single_array_batches_and_callbacks_that_stop():
    model = tv.Dense(2, 1, rng=0)
    xs = [np.ones((2, 3)) * k for k in range(1, 6)]
    seen = []

    def stop_at_3(step, m, loss):
        seen.append(step)
        return step == 3

    history = tv.train(
        lambda m, x: tv.ops.sum(m(x) ** 2),
        model,
        xs,
        tv.setup(tv.Descent(0.01), model),
        callbacks=[stop_at_3],
        progress=False,
    )
    assert seen == [1, 2, 3] and len(history) == 3


def test_non_finite_loss_stops_before_the_update_and_changes_nothing():
    model = small_model()
    state = tv.setup(tv.Adam(0.01), model)
    ((x, y),) = data(1)
    tv.train(mse_loss, model, [(x, y)], state, progress=False)  # Adam moments now non-zero
    params, moments = parameters(model), state_bytes(state)
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(tv.NonFiniteLoss, match=r"nan.*before the update"):
        tv.train(mse_loss, model, [(x, y), (x, bad), (x, y)], state, progress=False)
    # the first batch was a normal step; the NaN one changed nothing after it
    after_first = small_model()
    s2 = tv.setup(tv.Adam(0.01), after_first)
    tv.train(mse_loss, after_first, [(x, y), (x, y)], s2, progress=False)
    assert_same(parameters(model), parameters(after_first))
    assert state_bytes(state) == state_bytes(s2)
    assert state_bytes(state) != moments and parameters(model).keys() == params.keys()


def test_infinite_loss_on_the_first_step_leaves_the_fresh_state():
    model = small_model()
    state = tv.setup(tv.Adam(0.01), model)
    params, moments = parameters(model), state_bytes(state)
    x, y = np.ones((2, 8)), np.full((1, 8), 1e300)  # (ŷ - y)² overflows to inf
    with np.errstate(all="ignore"), pytest.raises(tv.NonFiniteLoss, match="inf"):
        tv.train(mse_loss, model, [(x, y)], state, progress=False)
    assert_same(parameters(model), params)
    assert state_bytes(state) == moments


def test_infinite_loss_raises_only_the_clear_error():
    """The loss is checked before the backward pass, so no RuntimeWarning (an error under this
    suite's settings) comes from propagating inf backwards."""
    model = small_model()
    x, y = data(1)[0]
    with pytest.raises(tv.NonFiniteLoss):
        tv.train(
            lambda m, x, y: mse_loss(m, x, y) * np.inf,
            model,
            [(x, y)],
            tv.setup(tv.Descent(0.1), model),
            progress=False,
        )


def test_update_refuses_gradients_of_another_model_and_changes_nothing():
    model = small_model()
    state = tv.setup(tv.Adam(0.01), model)
    params, moments = parameters(model), state_bytes(state)
    x = np.ones((2, 3))
    wider = tv.Chain(tv.Dense(2, 5, rng=0), tv.Dense(5, 1, rng=0))
    grads = tv.gradient(lambda m: tv.ops.sum(m(x)), wider)
    with pytest.raises(ValueError, match=r"model\.layers\[0\]\.weight.*\(4, 2\).*\(5, 2\)"):
        tv.update(state, model, grads)
    longer = tv.Chain(tv.Dense(2, 4, rng=0), tv.Dense(4, 4, rng=0), tv.Dense(4, 1, rng=0))
    grads = tv.gradient(lambda m: tv.ops.sum(m(x)), longer)
    with pytest.raises(ValueError, match=r"model\.layers: 2 layers, 3 entries"):
        tv.update(state, model, grads)
    with pytest.raises(ValueError, match="do not match"):
        tv.update(state, model, tv.gradient(lambda d: tv.ops.sum(d(x)), tv.Dense(2, 4, rng=0)))
    assert_same(parameters(model), params)
    assert state_bytes(state) == moments


def test_setup_refuses_a_non_rule():
    with pytest.raises(TypeError, match="rule"):
        tv.setup(0.1, small_model())


def test_withgradient_returns_value_and_tree():
    model = small_model()
    x, y = data(1)[0]
    loss, grads = tv.withgradient(lambda m: mse_loss(m, x, y), model)
    assert float(loss) == pytest.approx(float(mse_loss(model, x, y)), rel=1e-15)
    assert grads.layers[0].weight.shape == (4, 2)
    for _, layer, name in tv.trainables(model):  # parameters are plain arrays again
        assert isinstance(getattr(layer, name), np.ndarray)


def test_parameters_are_restored_even_when_the_loss_raises():
    model = small_model()
    with pytest.raises(tv.DimensionMismatch):
        tv.gradient(lambda m: tv.ops.sum(m(np.ones((3, 1)))), model)
    for _, layer, name in tv.trainables(model):
        assert isinstance(getattr(layer, name), np.ndarray)


def test_recorder_is_fed_by_train():
    model = small_model()
    rec = tv.Recorder()
    tv.train(
        mse_loss, model, data(3), tv.setup(tv.Descent(0.1), model), recorder=rec, progress=False
    )
    assert [(r["step"], r["layer"]) for r in rec.rows] == [
        (s, k) for s in (1, 2, 3) for k in (1, 2)
    ]


def _from_tinyvec(obj):
    """Whether ``obj`` was made by tinyvec's code (an instance of its classes, or one of its
    functions or closures)."""
    module = getattr(obj, "__module__", None) if callable(obj) else type(obj).__module__
    return isinstance(module, str) and module.startswith("tinyvec")


def test_a_step_leaves_no_reference_cycles():
    """After warm-up, a training step frees everything it made by reference counting alone:
    the cyclic collector finds no tinyvec garbage (each step's gradient tree dies with the
    step). Other garbage (matplotlib figures of earlier tests) is not ours to judge."""
    import gc

    model = tv.Chain(
        tv.Dense(2, 4, tv.tanh, rng=0),
        tv.SkipConnection(tv.Dense(4, 4, tv.atan, rng=1), tv.add),
        tv.Parallel(tv.add, tv.Dense(4, 1, rng=2), tv.Dense(4, 1, rng=3)),
    )
    batches = data()
    for delta in (None, [tv.Compensation(0.2), tv.Orthogonalization()]):
        state = tv.setup(tv.Momentum(0.01), model, delta=delta)
        for compiled in (False, True):  # warm-up: plans and programs are made
            tv.train(mse_loss, model, batches, state, progress=False, compile=compiled)
        gc.collect()
        gc.disable()
        try:
            for x, y in batches:
                _, grads = tv.withgradient(lambda m, x=x, y=y: mse_loss(m, x, y), model)
                tv.update(state, model, grads)
            tv.train(mse_loss, model, batches, state, progress=False)
            tv.train(mse_loss, model, batches, state, progress=False, compile=True)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            ours = {repr(o)[:80] for o in gc.garbage if _from_tinyvec(o)}
            assert not ours
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
