"""The helpers around training: `tv.batches`, the schedules, `tv.adjust`, `tv.freeze` /
`tv.thaw` and a rule per subtree in one state; each on both roads, bit for bit."""

import contextlib

import numpy as np
import pytest
from nets import records, state_bytes

import tinyvec as tv
from tinyvec.deltarules import Compensation


def data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, n))
    return x, np.tanh(x[:2])


def net(seed=0):
    return tv.Chain(
        tv.Dense(3, 4, tv.tanh, rng=seed),
        tv.Dense(4, 4, tv.tanh, rng=seed + 1),
        tv.Dense(4, 2, rng=seed + 2),
    )


ROADS = pytest.mark.parametrize("fast", [True, False], ids=["fast road", "reference road"])


def road(fast):
    """The default road (the fast one where it applies) or the reference road alone."""
    return contextlib.nullcontext() if fast else tv.fast.off()


# --- batches ----------------------------------------------------------------------------------
def test_batches_are_column_slices_with_the_last_one_partial():
    x, y = data(10)
    loader = tv.batches(x, y, 4)
    assert len(loader) == 3
    parts = list(loader)
    assert [xb.shape[1] for xb, _ in parts] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in parts], axis=1), x)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in parts], axis=1), y)


def test_batches_of_x_alone_yield_arrays_and_labels_may_be_a_vector():
    x, _ = data(5)
    assert [b.shape for b in tv.batches(x, size=2)] == [(3, 2), (3, 2), (3, 1)]
    labels = np.arange(5)
    assert [yb.tolist() for _, yb in tv.batches(x, labels, 2)] == [[0, 1], [2, 3], [4]]


def test_shuffled_batches_reshuffle_every_pass_and_repeat_with_the_seed():
    x, y = data(12)
    first, second = list(tv.batches(x, y, 5, shuffle=True, rng=3)), None
    loader = tv.batches(x, y, 5, shuffle=True, rng=3)
    second = [list(loader), list(loader)]
    for (a, _), (b, _) in zip(first, second[0], strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same first pass
    assert not all(
        np.array_equal(a, b) for (a, _), (b, _) in zip(second[0], second[1], strict=True)
    )  # the second pass is another permutation
    # each pass is the permutation a Generator with that seed draws, pass after pass
    rng = np.random.default_rng(3)
    for parts in second:
        order = rng.permutation(12)
        np.testing.assert_array_equal(np.concatenate([b for b, _ in parts], axis=1), x[:, order])


def test_train_takes_batches_for_several_epochs():
    x, y = data(10)
    model = net()
    state = tv.setup(tv.Descent(0.05), model)
    history = tv.train(tv.mse, model, tv.batches(x, y, 4, shuffle=True, rng=0), state,
                       epochs=3, progress=False)  # fmt: skip
    assert len(history) == 9


def test_stacked_batches_give_each_member_its_loaders_batches_every_pass():
    """`tv.stack_batches`: step j of member e is batch j of loader e, pass after pass (each
    loader reshuffles with its own stream), and a stack trained on them takes each member's
    steps alone, bit for bit."""
    datas = [data(10, seed=e) for e in range(3)]
    loaders = lambda: [tv.batches(x, y, 4, shuffle=True, rng=e)  # noqa: E731
                       for e, (x, y) in enumerate(datas)]  # fmt: skip
    stacked = tv.stack_batches(loaders())
    assert len(stacked) == 3
    alone = [[list(loader) for _ in range(2)] for loader in loaders()]  # two passes each
    for p, passed in enumerate([list(stacked), list(stacked)]):
        assert [xb.shape for xb, _ in passed] == [(3, 3, 4), (3, 3, 4), (3, 3, 2)]
        for j, (xb, yb) in enumerate(passed):
            for e in range(3):
                assert np.array_equal(xb[e], alone[e][p][j][0])
                assert np.array_equal(yb[e], alone[e][p][j][1])
    models = [net(seed=e) for e in range(3)]
    stack = tv.stack(models)
    state = tv.setup(tv.Momentum(0.05), stack)
    history = tv.train(lambda m, x, y: tv.mse(m(x), y, members=True), stack,
                       tv.stack_batches(loaders()), state, epochs=2, progress=False)  # fmt: skip
    for e, (model, loader) in enumerate(zip(models, loaders(), strict=True)):
        own = tv.train(tv.mse, model, loader, tv.setup(tv.Momentum(0.05), model), epochs=2,
                       progress=False)  # fmt: skip
        assert [h[e] for h in history] == own
        member = tv.unstack(stack)[e]
        for a, b in zip(tv.trainables(member), tv.trainables(model), strict=True):
            assert np.array_equal(getattr(a[1], a[2]), getattr(b[1], b[2]))


def test_stacked_batches_of_one_array_and_of_one_shot_loaders():
    xs = [np.full((2, 6), float(e)) for e in range(2)]
    stacked = tv.stack_batches([tv.batches(x, size=4) for x in xs])
    assert [b.shape for b in stacked] == [(2, 2, 4), (2, 2, 2)]
    once = tv.stack_batches([iter([(x, x)]) for x in xs])  # generators: one pass, like them
    assert iter(once) is once and [b[0].shape for b in once] == [(2, 2, 6)] and list(once) == []


# --- schedules --------------------------------------------------------------------------------
def test_the_schedules_formulas():
    assert tv.schedules.Constant(0.1)(100) == 0.1
    assert tv.schedules.Exponential(0.1, 0.5)(3) == 0.1 * 0.5**3
    s = tv.schedules.Exponential.between(0.1, 0.001, 101)
    assert s(0) == 0.1 and s(100) == pytest.approx(0.001)
    c = tv.schedules.Cosine(0.2, steps=10, final=0.02)
    assert c(0) == pytest.approx(0.2) and c(10) == pytest.approx(0.02) and c(50) == c(10)
    assert c(5) == pytest.approx(0.11)
    step = tv.schedules.Step(1.0, boundaries=[3, 6], factor=0.1)
    assert [step(t) for t in (0, 2, 3, 5, 6, 9)] == [1.0, 1.0, 0.1, 0.1, 0.1**2, 0.1**2]


@ROADS
@pytest.mark.parametrize("compile_", [False, True], ids=["train", "compile"])
def test_a_schedule_in_train_equals_adjusting_by_hand(fast, compile_):
    x, y = data(8)
    schedule = tv.schedules.Cosine(0.1, steps=6)
    a, b = net(), net()
    sa, sb = tv.setup(tv.Momentum(0.1), a), tv.setup(tv.Momentum(0.1), b)
    loader = tv.batches(x, y, 3)
    with road(fast):
        tv.train(tv.mse, a, loader, sa, epochs=2, progress=False, schedule=schedule,
                 compile=compile_)  # fmt: skip
    with tv.fast.off():
        t = 0
        for _ in range(2):
            for xb, yb in loader:
                sb.rule.eta = schedule(t)
                _, g = tv.withgradient(lambda m, xb=xb, yb=yb: tv.mse(m(xb), yb), b)
                tv.update(sb, b, g)
                t += 1
    assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)
    assert sa.rule.eta == schedule(5)


# --- adjust -----------------------------------------------------------------------------------
def test_adjust_sets_the_hyperparameter_in_every_rule_and_only_there():
    model = net()
    chain = tv.OptimiserChain(tv.ClipNorm(1.0), tv.WeightDecay(1e-3), tv.Momentum(0.1))
    state = tv.setup({"model": tv.Descent(0.1), "model.layers[2]": chain}, model)
    tv.adjust(state, eta=0.01)
    assert state.tree["model.layers[0].weight"].rule.eta == 0.01
    assert chain.rules[2].eta == 0.01 and chain.rules[2].rho == 0.9
    tv.adjust(state, "model.layers[2]", rho=0.5, lam=0.0)
    assert chain.rules[2].rho == 0.5 and chain.rules[1].lam == 0.0


def test_adjust_reaches_frozen_rules_so_thaw_gives_the_new_rate():
    model = net()
    state = tv.setup(tv.Descent(0.1), model)
    tv.freeze(state, "model.layers[0]")
    tv.adjust(state, eta=0.02)
    tv.thaw(state)
    assert state.tree["model.layers[0].weight"].rule.eta == 0.02


def test_the_delta_rules_alpha_follows_adjust():
    """With Compensation, ΔW = -α δ̃ Oᵀ and δ̃ depends on κ/α: after adjust(eta=η') the step
    equals that of a state set up with η' from the start."""
    x, y = data(6)
    a, b = net(), net()
    sa = tv.setup(tv.Descent(0.1), a, delta=Compensation(0.2))
    sb = tv.setup(tv.Descent(0.03), b, delta=Compensation(0.2))
    tv.adjust(sa, eta=0.03)
    for model, state in ((a, sa), (b, sb)):
        _, g = tv.withgradient(lambda m: tv.mse(m(x), y), model)
        tv.update(state, model, g)
    assert records(a) == records(b)


def test_a_rule_per_subtree_gives_each_layer_its_alpha_under_delta_rules():
    x, y = data(6)
    a = net()
    sa = tv.setup({"model": tv.Descent(0.1), "model.layers[2]": tv.Descent(0.05)}, a,
                  delta=Compensation(0.2))  # fmt: skip
    _, g = tv.withgradient(lambda m: tv.mse(m(x), y), a)
    tv.update(sa, a, g)  # runs; each layer's κ/α uses its own α
    with pytest.raises(ValueError, match="one step size α per Dense layer"):
        s = tv.setup({"model": tv.Descent(0.1), "model.layers[2].bias": tv.Descent(0.05)}, a,
                     delta=Compensation(0.2))  # fmt: skip
        _, g = tv.withgradient(lambda m: tv.mse(m(x), y), a)
        tv.update(s, a, g)


# --- a rule per subtree, freezing -------------------------------------------------------------
@ROADS
def test_weight_decay_on_the_last_layer_in_one_state_equals_one_state_per_layer(fast):
    x, y = data(8)
    decayed = lambda: tv.OptimiserChain(tv.WeightDecay(0.01), tv.Momentum(0.1))  # noqa: E731
    a, b = net(), net()
    sa = tv.setup({"model": tv.Momentum(0.1), "model.layers[2]": decayed()}, a)
    sb = [tv.setup(tv.Momentum(0.1), b[0]), tv.setup(tv.Momentum(0.1), b[1]),
          tv.setup(decayed(), b[2])]  # fmt: skip
    for _ in range(3):
        with road(fast):
            _, g = tv.withgradient(lambda m: tv.mse(m(x), y), a)
            tv.update(sa, a, g)
        with tv.fast.off():
            _, g = tv.withgradient(lambda m: tv.mse(m(x), y), b)
            for state, layer, gl in zip(sb, b.layers, g.layers, strict=True):
                tv.update(state, layer, gl)
    assert records(a) == records(b)


def test_the_most_specific_path_wins():
    model = net()
    state = tv.setup({"model": tv.Descent(0.1), "model.layers[1]": tv.Descent(0.2),
                      "model.layers[1].bias": tv.Descent(0.3)}, model)  # fmt: skip
    etas = {p: state.tree[p].rule.eta for p, _, _ in tv.trainables(model)}
    assert etas["model.layers[0].weight"] == 0.1 and etas["model.layers[1].weight"] == 0.2
    assert etas["model.layers[1].bias"] == 0.3 and etas["model.layers[2].bias"] == 0.1


@ROADS
@pytest.mark.parametrize("compile_", [False, True], ids=["train", "compile"])
def test_frozen_parameters_take_no_step_and_record_a_zero_step(fast, compile_):
    x, y = data(8)
    model = net()
    state = tv.setup(tv.Momentum(0.1), model)
    frozen = model[1].weight.copy(), model[1].bias.copy()
    tv.freeze(state, "model.layers[1]")
    momentum = state.tree["model.layers[1].weight"].state.copy()
    with road(fast):
        tv.train(tv.mse, model, tv.batches(x, y, 4), state, epochs=2, progress=False,
                 compile=compile_)  # fmt: skip
    assert (model[1].weight == frozen[0]).all() and (model[1].bias == frozen[1]).all()
    assert (model[1].dW == 0).all() and (model[1].db == 0).all()
    assert (state.tree["model.layers[1].weight"].state == momentum).all()  # kept for thaw
    assert not (model[0].dW == 0).all()
    tv.thaw(state, "model.layers[1]")
    with road(fast):
        tv.train(tv.mse, model, [(x, y)], state, progress=False, compile=compile_)
    assert not (model[1].weight == frozen[0]).all()


@ROADS
def test_a_frozen_dense_layer_under_compensation_stays_and_the_rest_equals_the_reference(fast):
    x, y = data(6)
    a, b = net(), net()
    sa = tv.setup(tv.Descent(0.1), a, delta=Compensation(0.2))
    sb = tv.setup(tv.Descent(0.1), b, delta=Compensation(0.2))
    tv.freeze(sa, "model.layers[0]")
    tv.freeze(sb, "model.layers[0]")
    before = a[0].weight.copy()
    with road(fast):
        _, g = tv.withgradient(lambda m: tv.mse(m(x), y), a)
        tv.update(sa, a, g)
    with tv.fast.off():
        _, g = tv.withgradient(lambda m: tv.mse(m(x), y), b)
        tv.update(sb, b, g)
    assert (a[0].weight == before).all() and records(a) == records(b)
