"""A member axis (`tv.stack`): member e of a stack takes exactly the steps of its single run.

A hypothesis suite draws architectures (Chains of Dense layers, a SkipConnection, with or
without biases), E, per-member hyperparameters (η, ρ, κ, ε), every rule and δ-rule, data per
member or shared, NumPy and array-api-strict, and trains E single models and their stack side
by side. After the steps, every weight, every record (input, preact, output, delta,
delta_used, dW, db) and the optimiser state of each member of `tv.unstack` is compared with
the single run's. They are equal bit for bit on NumPy with OpenBLAS (each batched matmul
item is the same BLAS call as the single product, the reductions over trailing axes sum in
the same order, and batched solves are per-member LAPACK calls); the suite asserts 1e-12
relative, the promise, and reports bitwise equality where it holds.
"""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.deltarules import Compensation, Orthogonalization, OrthogonalizationOverTime

RULES = {
    "descent": lambda h: tv.Descent(h["eta"]),
    "momentum": lambda h: tv.Momentum(h["eta"], h["rho"]),
    "nesterov": lambda h: tv.Nesterov(h["eta"], h["rho"]),
    "adam": lambda h: tv.Adam(h["eta"], (h["rho"], 0.999), h["eps"]),
    "chain": lambda h: tv.OptimiserChain(
        tv.ClipNorm(h["clip"]), tv.WeightDecay(h["lam"]), tv.Descent(h["eta"])
    ),
}
DELTAS = {
    "none": lambda h: None,
    "compensation": lambda h: [Compensation(h["kappa"])],
    "first_order+ortho": lambda h: [
        Compensation(h["kappa"], "first_order"),
        Orthogonalization(h["eps"]),
    ],
    "ortho": lambda h: [Orthogonalization(h["eps"])],
    "over_time": lambda h: [OrthogonalizationOverTime(3, h["eps"], keep_own_move=True)],
    "owm+compensation": lambda h: [
        Compensation(h["kappa"]),
        OrthogonalizationOverTime(2, h["eps"]),
    ],
}
ADAPTIVE = {"adam", "chain"}  # (δ-rules need a step α·gradient)


def build(sizes, skip, bias, seed, xp):
    rng = np.random.default_rng(seed)
    init = lambda shape, r: xp.asarray(rng.uniform(-1, 1, shape))  # noqa: E731
    layers = [tv.Dense(a, b, tv.tanh, bias=bias, init=init) for a, b in itertools.pairwise(sizes)]
    if skip:
        w = sizes[-1]
        layers.append(tv.SkipConnection(tv.Dense(w, w, tv.tanh, init=init), tv.add))
    layers.append(tv.Dense(sizes[-1], 1, init=init))
    if bias is False:
        for layer in layers:
            if isinstance(layer, tv.Dense):
                layer.bias = None
    return tv.Chain(*layers)


def rel(a, b):
    a, b = to_numpy(a), to_numpy(b)
    scale = np.maximum(np.abs(a), np.abs(b))
    return float(np.max(np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1), 0)))


def leaves(value):
    if isinstance(value, tuple | list):
        return [x for v in value for x in leaves(v)]
    return [] if value is None else [value]


def compare(stack_member, single, state_member, state_single):
    """The largest relative difference and whether all are bitwise equal."""
    worst, bitwise = 0.0, True

    def see(a, b):
        nonlocal worst, bitwise
        assert (a is None) == (b is None)
        if a is None:
            return
        if not hasattr(a, "shape"):
            a, b = np.asarray(a), np.asarray(b)
        assert tuple(a.shape) == tuple(b.shape)
        worst = max(worst, rel(a, b))
        bitwise &= bool(np.array_equal(to_numpy(a), to_numpy(b)))

    for (_, la, na), (_, lb, nb) in zip(
        tv.trainables(stack_member), tv.trainables(single), strict=True
    ):
        see(getattr(la, na), getattr(lb, nb))
    for la, lb in zip(tv.dense_layers(stack_member), tv.dense_layers(single), strict=True):
        for name in ("input", "preact", "output", "delta", "delta_used", "dW", "db"):
            see(getattr(la, name), getattr(lb, name))
    for path, _, _ in tv.trainables(single):
        for a, b in zip(
            leaves(state_member.tree[path].state),
            leaves(state_single.tree[path].state),
            strict=True,
        ):
            see(a, b)
    for key, value in (getattr(state_single.transform, "memory", None) or {}).items():
        see(state_member.transform.memory[key], value)
    return worst, bitwise


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    E=st.integers(1, 4),
    widths=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    skip=st.booleans(),
    bias=st.booleans(),
    batch=st.integers(1, 5),
    shared=st.booleans(),
    rule=st.sampled_from(sorted(RULES)),
    delta=st.sampled_from(sorted(DELTAS)),
    strict=st.booleans(),
    steps=st.integers(1, 6),
    f32=st.booleans(),
)
def test_each_member_steps_exactly_as_alone(
    data, E, widths, skip, bias, batch, shared, rule, delta, strict, steps, f32
):
    if rule in ADAPTIVE and delta != "none":
        rule = "descent"
    xp = pytest.importorskip("array_api_strict") if strict else np
    floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False)  # noqa: E731
    per = lambda lo, hi: data.draw(st.lists(floats(lo, hi), min_size=E, max_size=E))  # noqa: E731
    h = dict(
        eta=per(1e-3, 0.2),
        rho=per(0.0, 0.95),
        eps=per(1e-4, 1.0),
        kappa=per(0.0, 1.0),
        clip=per(0.01, 5.0),
        lam=per(0.0, 0.1),
    )
    sizes = [data.draw(st.integers(1, 3)), *widths]
    seeds = data.draw(st.lists(st.integers(0, 2**16), min_size=E, max_size=E))
    cast = tv.f32 if f32 else (lambda a: a)  # (a float32 stack: its members in float32 alone)
    singles = [cast(build(sizes, skip, bias, s, xp)) for s in seeds]
    model = tv.stack([cast(build(sizes, skip, bias, s, xp)) for s in seeds])
    member_h = [{k: v[e] for k, v in h.items()} for e in range(E)]
    states = [
        tv.setup(RULES[rule](member_h[e]), singles[e], delta=DELTAS[delta](member_h[e]))
        for e in range(E)
    ]
    state = tv.setup(RULES[rule](h), model, delta=DELTAS[delta](h))
    rng = np.random.default_rng(seeds[0])
    for _ in range(steps):
        shape = (sizes[0], batch) if shared else (E, sizes[0], batch)
        x = cast(xp.asarray(rng.standard_normal(shape)))
        y = cast(xp.asarray(rng.standard_normal((E, 1, batch))))
        for e in range(E):
            xe = x if shared else x[e, ...]
            g = tv.gradient(lambda m: tv.mse(m(xe), y[e, ...]), singles[e])
            tv.update(states[e], singles[e], g)
        loss, g = tv.withgradient(lambda m: tv.mse(m(x), y, members=True), model)
        assert tuple(loss.shape) == (E,)
        tv.update(state, model, g)
    for e, (member, member_state) in enumerate(tv.unstack(model, state)):
        worst, bitwise = compare(member, singles[e], member_state, states[e])
        assert worst <= (1e-5 if f32 else 1e-12), (e, worst)
        assert repr(member_state.rule) == repr(states[e].rule)
        if not strict:  # (NumPy with OpenBLAS: see the module text)
            assert bitwise, (e, worst)


def test_stack_and_unstack_round_trip_with_state():
    models = [build([2, 3], False, True, s, np) for s in range(3)]
    states = [
        tv.setup(tv.Momentum(eta, 0.9), m) for eta, m in zip([0.1, 0.2, 0.3], models, strict=True)
    ]
    x, y = np.ones((2, 4)), np.zeros((1, 4))
    for m, s in zip(models, states, strict=True):
        tv.update(s, m, tv.gradient(lambda m: tv.mse(m(x), y), m))
    model, state = tv.stack(models, states)
    assert repr(state.rule) == "Momentum(array([0.1, 0.2, 0.3]), 0.9)"
    back = tv.unstack(model, state)
    for (m, s), m0, s0 in zip(back, models, states, strict=True):
        for (p, la, n), (_, lb, _) in zip(tv.trainables(m), tv.trainables(m0), strict=True):
            assert np.array_equal(getattr(la, n), getattr(lb, n))
            assert np.array_equal(s.tree[p].state, s0.tree[p].state)


def test_a_stack_trains_with_train_and_prints_its_members():
    model = tv.stack([build([1, 4], False, True, s, np) for s in range(2)])
    assert "members=2" in repr(model) and "A stack of 2 members." in str(model)
    x, y = np.linspace(-1, 1, 8)[None, :], np.zeros((2, 1, 8))
    history = tv.train(tv.mse, model, [(x, y)], tv.setup(tv.Descent([0.1, 0.0]), model), epochs=3)
    assert len(history) == 3 and len(history[0]) == 2
    assert history[0][1] == history[-1][1]  # η = 0: member 1 does not move


def test_unstack_into_earlier_members_equals_a_fresh_unstack_and_keeps_their_layers():
    """``tv.unstack(stack, into=members)`` after each step gives the members of a fresh
    ``tv.unstack(stack)``: parameters, records and steps, bit for bit, in the same objects
    (so a recorder or monitor per member sees what its run alone shows); a member's forward
    pass in between leaves nothing stale."""
    models = [build([2, 3, 1], True, True, s, np) for s in range(3)]
    model = tv.stack(models)
    state = tv.setup(tv.Momentum([0.1, 0.05, 0.2], 0.9), model)
    alone = tv.unstack(model)
    layers = [tv.dense_layers(m) for m in alone]
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 1, 4))
        tv.update(state, model, tv.gradient(lambda m: tv.mse(m(x), y, members=True), model))
        assert tv.unstack(model, into=alone) == alone
        for member, fresh, kept in zip(alone, tv.unstack(model), layers, strict=True):
            assert tv.dense_layers(member) == kept  # the same layer objects
            for a, b in zip(tv.dense_layers(member), tv.dense_layers(fresh), strict=True):
                for name in ("weight", "bias", "input", "preact", "output", "delta", "dW", "db"):
                    assert np.array_equal(getattr(a, name), getattr(b, name)), name
            member(np.ones((2, 5)))  # a pass of its own: the next unstack replaces its records
    with pytest.raises(ValueError, match="2 models for 3 members"):
        tv.unstack(model, into=alone[:2])
    with pytest.raises(ValueError, match="not an ordinary model of the stack's architecture"):
        tv.unstack(model, into=[build([2, 4, 1], True, True, 0, np)] * 3)
    with pytest.raises(ValueError, match="not an ordinary model of the stack's architecture"):
        tv.unstack(model, into=[model] * 3)
    # a wrong last member is refused before the others are written: nothing changes
    kept = [d.weight for m in alone for d in tv.dense_layers(m)]
    first = tv.dense_layers(model)[0]
    first.weight = first.weight * 2  # (as a step would)
    with pytest.raises(ValueError, match="not an ordinary model of the stack's architecture"):
        tv.unstack(model, into=[*alone[:2], build([2, 4, 1], True, True, 0, np)])
    now = [d.weight for m in alone for d in tv.dense_layers(m)]
    assert all(a is b for a, b in zip(now, kept, strict=True))


def test_bad_input_is_refused_clearly():
    model = tv.stack([build([2, 3], False, True, s, np) for s in range(2)])
    with pytest.raises(ValueError, match="must be the 2 member losses"):
        tv.gradient(lambda m: tv.mse(m(np.ones((2, 4))), np.zeros((2, 1, 4))), model)
    with pytest.raises(tv.DimensionMismatch, match="stack of 2 members"):
        model(np.ones((3, 2, 4)))
    with pytest.raises(ValueError, match="length \\[3\\] for a stack of 2"):
        tv.setup(tv.Descent([0.1, 0.2, 0.3]), model)
    with pytest.raises(ValueError, match="not a stack"):
        tv.setup(tv.Descent([0.1, 0.2]), build([2, 3], False, True, 0, np))
    with pytest.raises(ValueError, match="architecture"):
        tv.stack([build([2, 3], False, True, 0, np), build([2, 4], False, True, 0, np)])
    with pytest.raises(ValueError, match="length \\[3\\], for 2 members"):
        tv.setup(tv.Descent(0.1), model, delta=Compensation([0.1, 0.2, 0.3]))
    with pytest.raises(tv.DimensionMismatch, match="members=True"):
        tv.mse(np.zeros((1, 3)), np.zeros((1, 3)), members=True)

    class Half(tv.Rule):  # not elementwise
        def apply(self, state, x, dx):
            return state, dx / float((dx * dx).sum()) ** 0.5

    with pytest.raises(TypeError, match="does not take a stack"):
        tv.setup(Half(), model)


@pytest.mark.parametrize("shared", [False, True], ids=["own-inputs", "shared-input"])
def test_the_hessian_vector_product_of_a_stack_is_each_members_own(shared):
    """Second order on a stack: ``create_graph=True`` differentiates the sum of the member
    losses, as first order does, and `tv.hvp` of the E member losses gives member e its own
    H_e v_e (the members share no parameter: H is block diagonal), bit for bit on NumPy. On
    main both raised "grad needs a scalar Tensor to differentiate, got (3,)"."""
    E = 3
    singles = [build([2, 3], True, True, seed, np) for seed in range(E)]
    model = tv.stack([build([2, 3], True, True, seed, np) for seed in range(E)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4) if shared else (E, 2, 4))
    y = rng.standard_normal((E, 1, 4))

    def f(m):
        return tv.mse(m(x), y, members=True)

    v = tv.gradient(f, model)  # (a direction: the gradient)
    graph = tv.gradient(f, model, create_graph=True)
    hv = tv.hvp(f, model, v)
    for e, single in enumerate(singles):

        def f_e(m, e=e):
            return tv.mse(m(x if shared else x[e, ...]), y[e, ...])

        v_e = tv.gradient(f_e, single)
        hv_e = tv.hvp(f_e, single, v_e)
        for path, _, _ in tv.trainables(single):
            assert graph[path].data[e, ...].tobytes() == v_e[path].tobytes(), path
            assert hv[path][e, ...].tobytes() == hv_e[path].tobytes(), path


@pytest.mark.parametrize("shared", [False, True], ids=["own-inputs", "shared-input"])
def test_vcat_joins_each_members_features_in_a_stack(shared, xp):
    """vcat joins the features (axis −2) of a stack's (E, features, batch) values, and an input
    shared by the members joins each member's: every member's output and gradient equal its
    own model's, bit for bit on NumPy (vcat used to join along the members' axis and fail)."""
    E = 3

    def model(seed):
        skip = tv.SkipConnection(tv.Dense(2, 3, tv.tanh, rng=seed), tv.vcat)
        branches = tv.Parallel(tv.vcat, tv.Dense(5, 2, rng=seed), tv.Dense(5, 1, tv.relu, rng=seed))
        return tv.to(xp, tv.Chain(skip, branches, tv.Dense(3, 1, rng=seed)))

    stack = tv.stack([model(seed) for seed in range(E)])
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((2, 4) if shared else (E, 2, 4)))
    y = xp.zeros((E, 1, 4), dtype=x.dtype)
    loss, g = tv.withgradient(lambda m: tv.mse(m(x), y, members=True), stack)
    for e in range(E):
        single, x_e = model(e), x if shared else x[e, ...]
        loss_e, g_e = tv.withgradient(lambda m: tv.mse(m(x_e), y[e, ...]), single)
        assert to_numpy(loss)[e] == to_numpy(loss_e)
        for path, _, _ in tv.trainables(single):
            assert to_numpy(g[path][e, ...]).tobytes() == to_numpy(g_e[path]).tobytes(), path


def test_per_member_hyperparameters_step_a_stack_on_its_own_device(xp):
    """`per_member` puts its vector where the parameter is (on main it made it on the default
    device, and array-api-strict's second device refused the step)."""
    model = tv.stack([tv.to(xp, tv.Dense(2, 1, rng=seed)) for seed in range(2)])
    state = tv.setup(tv.Momentum([0.1, 0.2], [0.5, 0.0]), model)
    x, y = xp.ones((2, 2, 3)), xp.zeros((2, 1, 3))
    with tv.fast.off():
        tv.update(state, model, tv.gradient(lambda m: tv.mse(m(x), y, members=True), model))
    for e, (member, _) in enumerate(tv.unstack(model, state)):
        single = tv.to(xp, tv.Dense(2, 1, rng=e))
        alone = tv.setup(tv.Momentum([0.1, 0.2][e], [0.5, 0.0][e]), single)
        with tv.fast.off():
            tv.update(alone, single, tv.gradient(lambda m: tv.mse(m(x[e, ...]), y[e, ...]), single))
        assert rel(member.weight, single.weight) <= 1e-12


def test_a_shared_input_gives_each_member_the_steps_of_its_run_alone_over_time():
    """An input shared by the members, at batch 1, under OrthogonalizationOverTime with
    per-member ε: every member steps exactly as alone (the case the suite drew). (The δ-rules read a shared input as a
    broadcast view once; NumPy then laid the remembered inputs out otherwise than alone, and
    the step differed in the last bit, 3.6e-16, which the hypothesis suite found.)"""
    sizes, E, eps = [3, 1], 4, [1.0, 1.0, 1.0, 0.5]
    singles = [build(sizes, False, True, 0, np) for _ in range(E)]
    model = tv.stack([build(sizes, False, True, 0, np) for _ in range(E)])
    over_time = lambda eps: [OrthogonalizationOverTime(3, eps, keep_own_move=True)]  # noqa: E731
    states = [tv.setup(tv.Descent(0.125), singles[e], delta=over_time(eps[e])) for e in range(E)]
    state = tv.setup(tv.Descent([0.125] * E), model, delta=over_time(eps))
    rng = np.random.default_rng(0)
    for _ in range(4):
        x, y = rng.standard_normal((sizes[0], 1)), rng.standard_normal((E, 1, 1))
        for e in range(E):
            tv.update(states[e], singles[e], tv.gradient(lambda m: tv.mse(m(x), y[e]), singles[e]))
        tv.update(state, model, tv.gradient(lambda m: tv.mse(m(x), y, members=True), model))
    for e, (member, member_state) in enumerate(tv.unstack(model, state)):
        assert compare(member, singles[e], member_state, states[e]) == (0.0, True), e
