"""The proof of the fast road: every road of `tinyvec.fast` against the reference road
(`tv.fast.off()`), bit for bit.

One hypothesis suite draws what users write — random Chains of Dense, SkipConnection and
Parallel layers, nested; a shared layer; a custom layer written with `tv.ops`; built-in
activations and activations of one's own given by `derivative` only or by `backprop` only;
every optimiser rule and δ-rule; float32 and float64; NumPy and array-api-strict; a model
edited between steps; a stack of E such models (`tv.stack`: per-member weights and
hyperparameters, inputs per member or shared) — and trains two twins, one on each road, for
several steps. After
every step it compares the loss, the gradient tree (where the road returns one), every
parameter, every step record and Dense record (input, preact, output, delta, delta_used, dW,
db) and every optimiser state, byte for byte.

The roads: the default step (``withgradient`` + ``update``, which the fast road answers with
a written Chain program and a written update), the same with ∂L/∂x too (the program's
backward pass then also gives the input's cotangent), ``tv.compile`` of a loss function, and
``tv.compile(tv.mse, …)``, which runs with no graph at all; and after every step, inference
(the model called on plain arrays).
"""

import copy
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nets import (
    DELTAS,
    HOLDS,
    LINEAR,
    RULES,
    architectures,
    build,
    changed,
    hold,
    records,
    state_bytes,
)

import tinyvec as tv
from tinyvec.backend import device, namespace, to_numpy
from tinyvec.layers.stack import members


# --- what users write -----------------------------------------------------------------------
def _cube(A):
    return A * A * A


def _cube_derivative(A, O):
    return 3 * (A * A)


def _sine(A):
    return namespace(A).sin(A)


def _sine_backprop(g, A, O):
    return g * namespace(A).cos(A)


CUBE = tv.Activation("cube", _cube, _cube_derivative)  # σ′ as a derivative only
SINE = tv.Activation("sine", _sine, None, _sine_backprop)  # σ′ as a backprop only
SIGMAS = [tv.identity, tv.tanh, tv.atan, tv.relu, tv.sigmoid, tv.gelu, CUBE, SINE]


class Scale(tv.Layer):
    """A layer of one's own, written with tv.ops: x ↦ s ⊙ x (one scale per feature)."""

    params = ("scale",)

    def __init__(self, n, rng):
        self.scale = 1 + 0.1 * np.random.default_rng(rng).standard_normal(n)

    def __call__(self, x):
        return tv.ops.reshape(self.scale, (self.scale.shape[0], 1)) * x


ROADS = ["default", "input-gradient", "compiled", "compiled-mse"]


@st.composite
def cases(draw):
    delta = draw(st.sampled_from(sorted(DELTAS)))
    rule = draw(st.sampled_from(LINEAR if delta != "none" else sorted(RULES)))
    members = draw(st.sampled_from([0, 0, 1, 2, 3]))  # E of a stack (`tv.stack`); 0: none
    extras, edits = ["none", "custom-layer", "shared-layer"], ["wider", "swap-branch", "append"]
    if members:  # (a layer of one's own takes no member axis; these edits are not a stack's)
        extras, edits = ["none", "shared-layer"], []
    return {
        "blocks": draw(architectures()),
        "sigma": draw(st.integers(0, len(SIGMAS) - 1)),
        "extra": draw(st.sampled_from(extras)),
        "rule": rule,
        "delta": delta,
        "road": draw(st.sampled_from(ROADS)),
        "dtype": draw(st.sampled_from(["float64", "float32"])),
        "edit": draw(st.sampled_from(["none", *edits, "sigma"])),
        "seed": draw(st.integers(0, 2**16)),
        "batch": draw(st.integers(1, 4)),
        "hold": draw(st.sampled_from([*HOLDS, "recorder"])),
        "members": members,
        "per-member": draw(st.booleans()),  # hyperparameters per member, or one for all
        "shared": draw(st.booleans()),  # a stack's input: (in, B) shared, or (E, in, B)
    }


def make_model(case):
    """The drawn network: a body of random blocks (σ of the drawn kind where a block takes
    one), an optional custom or shared layer, then a head Dense(f, h) → Dense(h, 2) that the
    edits act on (a stack's members too: vcat joins each member's features, and a shared
    input with them)."""
    g = np.random.default_rng(case["seed"])
    sigma = SIGMAS[case["sigma"]]
    body, f = build(case["blocks"], 3, g, sigmas=SIGMAS)
    layers = [body]
    if case["extra"] == "custom-layer":
        layers.append(Scale(f, case["seed"]))
    elif case["extra"] == "shared-layer" and case["delta"] == "none":  # (δ-rules refuse it)
        shared = tv.Dense(f, f, tv.tanh, rng=case["seed"])
        layers += [shared, shared]
    layers += [tv.Dense(f, 3, sigma, rng=case["seed"] + 1), tv.Dense(3, 2, rng=case["seed"] + 2)]
    model = tv.Chain(*layers)
    return tv.f32(model) if case["dtype"] == "float32" else model


# the hyperparameters a stack's member e scales by 1 - e/8 (its own values: still valid ones)
HYPER = {"eta", "rho", "beta", "epsilon", "lam", "omega", "kappa", "eps"}


def member_rule(rule, e):
    """``rule`` (an optimiser rule or a δ-rule, or a list of them) with member e's values."""
    if isinstance(rule, list | tuple):
        return type(rule)(member_rule(r, e) for r in rule)
    if rule is None or e == 0:
        return rule
    rule = copy.copy(rule)
    for name, value in vars(rule).items():
        if name == "rules":
            setattr(rule, name, member_rule(value, e))
        elif name in HYPER:
            scaled = [v * (1 - e / 8) for v in (value if isinstance(value, tuple) else [value])]
            setattr(rule, name, tuple(scaled) if isinstance(value, tuple) else scaled[0])
    return rule


def make_stack(case, xp):
    """A stack of E drawn networks (`tv.stack`), each of its own seed, and its optimiser state
    from the members' (`tv.stack(models, states)`: hyperparameters that differ, per member)."""
    models, states = [], []
    for e in range(case["members"]):
        model = tv.to(xp, make_model({**case, "seed": case["seed"] + 101 * e}))
        at = e if case["per-member"] else 0
        rule, delta = member_rule(RULES[case["rule"]](), at), DELTAS[case["delta"]]()
        models.append(model)
        states.append(tv.setup(rule, model, delta=member_rule(delta, at)))
    return tv.stack(models, states)


def edit(model, case):
    """The same edit of either twin, between two steps."""
    g = np.random.default_rng(case["seed"] + 7)
    head, last = model.layers[-2], model.layers[-1]
    kind = case["edit"]
    if kind == "wider":  # h = 3 → 4: arrays replaced deep in the model, the layers the same
        xp, dtype, at = namespace(head.weight), head.weight.dtype, device(head.weight)

        def new(shape):
            return xp.asarray(g.standard_normal(shape) * 0.1, dtype=dtype, device=at)

        def grown(a, shape):  # one more row (or entry)
            return xp.concat((a, new(shape)))

        head.weight = grown(head.weight, (1, head.weight.shape[1]))
        if head.bias is not None:
            head.bias = grown(head.bias, (1,))
        last.weight = xp.concat((last.weight, new((2, 1))), axis=1)
    elif kind == "swap-branch":  # a new head layer object
        new = tv.Dense(head.weight.shape[1], 3, tv.tanh, rng=case["seed"] + 3)
        model.layers = (*model.layers[:-2], like(new, head), last)
    elif kind == "append":
        model.layers = (*model.layers, like(tv.Dense(2, 2, rng=case["seed"] + 4), head))
    elif kind == "sigma":
        head.sigma = tv.relu if head.sigma is not tv.relu else tv.tanh
    return kind != "none"


def like(layer, other):
    """``layer`` with ``other``'s array library and dtype."""
    xp, dtype = namespace(other.weight), other.weight.dtype
    return tv.to(xp, tv.f32(layer) if dtype == xp.float32 else layer, device=device(other.weight))


def data(case, xp, steps):
    g = np.random.default_rng(case["seed"] + 1)
    dtype = np.float32 if case["dtype"] == "float32" else np.float64
    E = case.get("members")
    shape = (3, case["batch"]) if not E or case["shared"] else (E, 3, case["batch"])
    xs = [g.standard_normal(shape).astype(dtype) for _ in range(steps)]
    if E:  # a stack's targets are its members' own, (E, 2, B)
        return [
            (
                xp.asarray(x),
                xp.asarray(np.tanh(g.standard_normal((E, 2, case["batch"]))).astype(dtype)),
            )
            for x in xs
        ]
    return [(xp.asarray(x), xp.asarray(np.tanh(x[:2]))) for x in xs]


def loss(m, x, y):
    out = m(x)
    return tv.mse(out, y) if members(m) is None else tv.mse(out, y, members=True)


def gradient_bytes(grads, model):
    return {
        path: None if grads[path] is None else to_numpy(grads[path]).tobytes()
        for path, _, _ in tv.trainables(model)
    }


class Twin:
    """A model, its optimiser state and its road."""

    def __init__(self, case, xp, road):
        self.case, self.road = case, road
        if case.get("members"):
            self.model, self.state = make_stack(case, xp)
            self.compile()
        else:
            self.model = tv.to(xp, make_model(case))
            self.setup()

    def setup(self):
        self.state = tv.setup(
            RULES[self.case["rule"]](), self.model, delta=DELTAS[self.case["delta"]]()
        )
        self.compile()

    def compile(self):
        self.step = None
        if self.road == "compiled":
            self.step = tv.compile(loss, self.model, self.state)
        elif self.road == "compiled-mse":
            self.step = tv.compile(tv.mse, self.model, self.state)

    def train(self, x, y):
        """(loss, gradient bytes or None) of one step on this road."""
        if self.step is not None:
            return to_numpy(self.step(x, y)).tobytes(), None
        if self.road == "input-gradient":
            value, (grads, gx) = tv.withgradient(lambda m, x: loss(m, x, y), self.model, x)
            out = (
                to_numpy(value).tobytes(),
                gradient_bytes(grads, self.model),
                to_numpy(gx).tobytes(),
            )
        else:
            value, grads = tv.withgradient(lambda m: loss(m, x, y), self.model)
            out = to_numpy(value).tobytes(), gradient_bytes(grads, self.model)
        tv.update(self.state, self.model, grads)
        return out


def outcome(twin, x, y, reference):
    """What one step gives: its numbers, or the error it raised (a step may diverge: a
    compensated δ over a tiny ‖o‖²; both roads must then refuse it alike)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (overflow on the way to a refusal)
        try:
            if reference:
                with tv.fast.off():
                    return twin.train(x, y)
            return twin.train(x, y)
        except (tv.NonFiniteStep, tv.NonFiniteLoss, FloatingPointError) as e:
            return type(e).__name__, str(e)


def run(case, xp, steps=3):
    fast, reference = Twin(case, xp, case["road"]), Twin(case, xp, case["road"])
    what = case.get("hold", "nothing")  # what a user keeps of every step (value semantics)
    if what == "recorder" and case.get("members"):  # (a Recorder records ordinary models)
        what = "records"
    held = []
    recorders = [tv.Recorder(1, Path(tempfile.gettempdir()) / "unused.npz") for _ in "ab"]
    for i, (x, y) in enumerate(data(case, xp, steps)):
        if i == 1 and edit(fast.model, case):
            edit(reference.model, case)
            if case["edit"] in ("wider", "append", "swap-branch"):
                fast.setup()  # (the optimiser state of the old arrays cannot step the new)
                reference.setup()
        a, b = outcome(fast, x, y, False), outcome(reference, x, y, True)
        assert a == b, f"step {i}: the fast road's loss or gradients differ from the reference"
        assert records(fast.model) == records(reference.model), f"step {i}: records differ"
        assert state_bytes(fast.state, fast.model) == state_bytes(reference.state, reference.model)
        hold(fast.model, what, held)
        assert not changed(held), f"step {i}: an array kept from an earlier step was written into"
        if isinstance(a[0], str) and a[0].startswith("NonFinite"):
            break
        if what == "recorder":  # a Recorder of each twin (as tv.train: after a step taken)
            for recorder, twin in zip(recorders, (fast, reference), strict=True):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # (a norm on the way to inf)
                    recorder.record(twin.model, i + 1)
            a_rows, b_rows = (repr(r.rows) for r in recorders)
            assert a_rows == b_rows, f"step {i}: the Recorders' rows differ"
            snaps = [{k: to_numpy(v).tobytes() for k, v in r.snapshots.items()} for r in recorders]
            assert snaps[0] == snaps[1], f"step {i}: the Recorders' snapshots differ"
            held += [(v, to_numpy(v).tobytes()) for v in recorders[0].snapshots.values()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            inferred = to_numpy(fast.model(x)).tobytes()
            with tv.fast.off():
                assert inferred == to_numpy(reference.model(x)).tobytes(), "inference differs"


@given(case=cases())
def test_the_fast_road_equals_the_reference_bit_for_bit(case, xp):
    run(case, xp)


# --- the cases it must hold, named ------------------------------------------------------------
@pytest.mark.parametrize("road", ROADS)
@pytest.mark.parametrize("sigma", [CUBE, SINE], ids=["derivative-only", "backprop-only"])
def test_an_activation_of_ones_own_takes_the_same_step_on_both_roads(sigma, road):
    """An activation given only by ``backprop`` lost its σ′ in the written program (on main
    before the two roads: row 0 of ∂L/∂W¹ was [0.083 0.130 -0.341] on the fast road and
    [0.292 0.396 -1.160] on the reference)."""
    case = {
        "blocks": [("dense", 0, True, 4, None)],
        "sigma": SIGMAS.index(sigma),
        "extra": "none",
        "rule": "Descent",
        "delta": "none",
        "road": road,
        "dtype": "float64",
        "edit": "none",
        "seed": 3,
        "batch": 5,
    }
    run(case, np)


def test_a_backprop_only_activation_gives_the_reference_gradient():
    sq = tv.Activation("sq", lambda A: A * A, None, lambda g, A, O: 2 * g * A)
    m = tv.Chain(tv.Dense(3, 4, sq, rng=0), tv.Dense(4, 1, rng=1))
    x = np.random.default_rng(0).standard_normal((3, 5))
    fast = tv.gradient(lambda m: tv.mse(m(x), np.zeros((1, 5))), m)
    with tv.fast.off():
        reference = tv.gradient(lambda m: tv.mse(m(x), np.zeros((1, 5))), m)
    assert fast.layers[0].weight.tobytes() == reference.layers[0].weight.tobytes()
    assert np.allclose(reference.layers[0].weight[0], [0.29248336, 0.39610727, -1.15952915])


@pytest.mark.parametrize("kind", ["wider", "swap-branch", "append", "sigma"])
@pytest.mark.parametrize("road", ROADS)
def test_a_model_edited_between_steps(kind, road):
    case = {
        "blocks": [("skip+", 1, True, 2, None), ("dense", 2, True, 4, None)],
        "sigma": 1,
        "extra": "none",
        "rule": "Momentum",
        "delta": "none",
        "road": road,
        "dtype": "float64",
        "edit": kind,
        "seed": 11,
        "batch": 3,
    }
    run(case, np, steps=4)
