"""`tv.compile`: what ``withgradient`` + ``update`` do, records included, for any loss and any
model; the cases it leaves to the graph; re-planning. (The random architectures with every
rule and δ-rule are in `test_equivalence`.)"""

import itertools
import signal
import sys
import warnings

import numpy as np
import pytest
from nets import (
    DELTAS,
    LINEAR,
    RULES,
    changed,
    general_update,
    hold,
    model_from,
    records,
    state_bytes,
)

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.deltarules import Compensation


def loss(m, x, y):
    return tv.mse(m(x), y)


def run_both(blocks, rule, delta, steps=3, seed=0, batch=5, written_loss=False):
    """``written_loss``: compile ``tv.mse`` itself, whose step runs without a graph."""
    g = np.random.default_rng(seed)
    xs = [g.standard_normal((3, batch)) for _ in range(steps)]
    ys = [np.tanh(x[:2]) for x in xs]
    a, b = model_from(blocks, seed), model_from(blocks, seed)
    sa = tv.setup(RULES[rule](), a, delta=DELTAS[delta]())
    sb = tv.setup(RULES[rule](), b, delta=DELTAS[delta]())
    step = tv.compile(tv.mse if written_loss else loss, a, sa)
    for x, y in zip(xs, ys, strict=True):
        if not assert_same_step(step, (a, sa), (b, sb), x, y):
            break
    return step


def assert_same_step(step, compiled_pair, default_pair, x, y):
    """One compiled step of model a and one `withgradient` + `update` of its twin b: the same
    loss, every Dense record and every optimiser state, bit for bit. A step that diverges (a
    compensated δ^k over a tiny ‖o‖² can) must be refused alike by both; then False."""
    (a, sa), (b, sb) = compiled_pair, default_pair
    refused = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (overflow on the way to a refusal)
        try:
            compiled = step(x, y)
        except tv.NonFiniteStep as e:
            refused.append(str(e))
        try:
            with tv.fast.off():  # the engine's graph, a node per layer
                default, grads = tv.withgradient(lambda m: loss(m, x, y), b)
            general_update(sb, b, grads)
        except tv.NonFiniteStep as e:
            refused.append(str(e))
    assert records(a) == records(b)
    assert state_bytes(sa, a) == state_bytes(sb, b)
    if refused:
        assert len(refused) == 2 and refused[0] == refused[1]
        return False
    assert to_numpy(compiled).tobytes() == to_numpy(default).tobytes()
    return True


@pytest.mark.parametrize("written_loss", [False, True], ids=["loss-function", "tv.mse"])
@pytest.mark.parametrize("delta", sorted(DELTAS))
@pytest.mark.parametrize("rule", sorted(LINEAR))
def test_every_rule_and_delta_rule_on_a_residual_network(rule, delta, written_loss):
    blocks = [
        ("dense", 2, True, 4, None),
        ("skip+", 1, True, 4, None),
        ("parvcat", 3, False, 2, None),
    ]
    step = run_both(blocks, rule, delta, written_loss=written_loss)
    assert step.fallback is None


def test_the_source_reads_like_the_formulas():
    step = run_both([("skip+", 2, True, 3, None)], "Descent", "none", steps=1)
    source = step.source
    for formula in (
        "A^1 = W^1 O^0 + b^1",
        "O^1 = σ(A^1)",
        "δ^1 = ∂L/∂O^1 ⊙ σ′(A^1)",
        "∂L/∂W^1 = δ^1 O^0ᵀ",
        "∂L/∂b^1 = Σ_batch δ^1",
        "+",
    ):
        assert formula in source
    compile(source, "<check>", "exec")  # valid Python


class Scale(tv.Layer):
    params = ("a",)

    def __init__(self):
        self.a = np.array([[1.5]])

    def __call__(self, x):
        return self.a * x


def compare(make, lossfn, steps=2):
    """Compiled steps of one model against default steps of its twin: the same loss, records
    and optimiser state, bit for bit; the compiled step, for a look at it."""
    x, y = np.linspace(-1, 1, 12).reshape(3, 4), np.zeros((make()(np.ones((3, 4))).shape[0], 4))
    a, b = make(), make()
    sa, sb = tv.setup(tv.Momentum(0.1), a), tv.setup(tv.Momentum(0.1), b)
    step = tv.compile(lambda m, x, y: lossfn(m, x, y, a), a, sa)
    for _ in range(steps):
        value = step(x, y)
        expected, grads = tv.withgradient(lambda m: lossfn(m, x, y, b), b)
        tv.update(sb, b, grads)
        assert to_numpy(value).tobytes() == to_numpy(expected).tobytes()
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)
    assert all(type(getattr(la, n)) is np.ndarray for _, la, n in tv.trainables(a))
    return step


def loss_of_a_constant_output(m, x, y, model):
    with tv.no_grad():  # the model's output is a constant: no parameter gets a gradient
        out = m(x)
    return tv.mse(out, y)


def two_layers():
    return tv.Chain(tv.Dense(3, 2, tv.tanh, rng=0), tv.Dense(2, 2, rng=1))


@pytest.mark.parametrize(
    "lossfn",
    [
        lambda m, x, y, model: tv.mse(m(x), y) + tv.ops.sum(m[0].weight * m[0].weight),
        # the model itself, not the loss's argument (a closure): a gradient all the same
        lambda m, x, y, model: tv.mse(m(x), y) + 0.5 * tv.ops.sum(model[1].weight ** 2),
        lambda m, x, y, model: tv.mse(m(x), y) + tv.mse(m(2 * x), y),
        loss_of_a_constant_output,
        lambda m, x, y, model: tv.mse(m(x) if isinstance(m, tv.Chain) else 0 * x[:2], y),
    ],
    ids=["weight-penalty", "closure-penalty", "two-calls", "no-grad", "isinstance"],
)
def test_any_loss_gives_exactly_the_default_step(lossfn):
    """The loss gets the model itself, its parameters Tensors as in `withgradient`."""
    step = compare(two_layers, lossfn)
    assert step.fallback is None and repr(step).endswith("(compiled)>")


def test_the_loss_runs_once_per_step():
    """Whatever the loss does (draw noise, count), it does it once, as in the default step."""
    calls = []

    def counted(m, x, y, model):
        calls.append(1)
        return tv.mse(m(x), y) + tv.ops.sum(m[0].bias)

    compare(two_layers, counted, steps=3)
    assert len(calls) == 6  # three compiled steps, three default ones


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: tv.Chain(tv.Dense(3, 2, rng=0), Scale()), "Scale"),
        (lambda: tv.Chain(tv.SkipConnection(tv.Dense(3, 3, rng=0), tv.mul)), "connections"),
        (lambda: tv.SkipConnection(tv.Dense(3, 3, rng=0), tv.add), "only a Chain"),
    ],
    ids=["custom-layer", "mul-connection", "not-a-chain"],
)
def test_a_model_it_cannot_write_runs_layer_by_layer_and_says_why(make, reason):
    step = compare(make, lambda m, x, y, model: loss(m, x, y))
    assert reason in step.fallback and "layer by layer" in repr(step)


@pytest.mark.parametrize("rule", ["Descent", "Adam", "ClipNorm+Descent"])
def test_a_plain_compiled_step_commits_through_the_written_update(rule, monkeypatch):
    """Not the general code: that would be the same numbers, only slower."""
    from tinyvec.fast import compiled

    m = two_layers()
    step = tv.compile(loss, m, tv.setup(RULES[rule](), m))
    monkeypatch.setattr(compiled, "update", None)  # calling it would raise
    for _ in range(2):
        step(np.ones((3, 5)), np.zeros((2, 5)))
    assert step.fallback is None and "def update(grads, leaves, writes=(), trusted=False" in (
        step.source
    )


def test_a_leaf_replaced_in_the_state_tree_is_the_one_stepped():
    a, b = two_layers(), two_layers()
    sa, sb = tv.setup(tv.Momentum(0.1), a), tv.setup(tv.Momentum(0.1), b)
    step = tv.compile(loss, a, sa)
    x, y = np.ones((3, 5)), np.zeros((2, 5))
    for k in range(3):
        if k == 1:  # a fresh Leaf (its momentum zero) for one parameter, in both
            for s, m in ((sa, a), (sb, b)):
                s.tree.layers[1]["bias"] = tv.optimise.training.Leaf(s.rule, 0 * m[1].bias)
        step(x, y)
        _, grads = tv.withgradient(lambda m: loss(m, x, y), b)
        tv.update(sb, b, grads)
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)


def test_it_replans_when_the_model_the_input_or_the_state_change():
    a, b = (tv.Chain(tv.Dense(3, 4, tv.tanh, rng=0), tv.Dense(4, 2, rng=1)) for _ in "ab")
    sa, sb = tv.setup(tv.Descent(0.1), a), tv.setup(tv.Descent(0.1), b)
    step = tv.compile(loss, a, sa)
    x, y = np.ones((3, 5)), np.zeros((2, 5))

    def both(x, y):
        value = step(x, y)
        expected, grads = tv.withgradient(lambda m: loss(m, x, y), b)
        tv.update(sb, b, grads)
        assert to_numpy(value).tobytes() == to_numpy(expected).tobytes()
        assert records(a) == records(b) and step.fallback is None

    both(x, y)
    first = step.source
    for m in (a, b):  # the structure changes: a layer is added
        m.layers = (*m.layers, tv.Dense(2, 2, rng=2))
    sa.tree, sb.tree = tv.setup(tv.Descent(0.1), a).tree, tv.setup(tv.Descent(0.1), b).tree
    both(x, y)
    assert step.source != first and "layers[2]" in step.source
    both(np.ones((3, 7)), np.zeros((2, 7)))  # another batch size: the same program
    with pytest.raises(tv.DimensionMismatch):  # a wrong input: the default step's error
        step(np.ones((4, 5)), y)


def test_train_with_compile_gives_the_same_history_and_model():
    g = np.random.default_rng(1)
    data = [(x, np.sin(x[:2])) for x in (g.standard_normal((3, 6)) for _ in range(5))]
    results = []
    for compiled in (False, True):
        m = model_from([("skip+", 1, True, 3, None)], 4)
        state = tv.setup(tv.Momentum(0.05), m, delta=Compensation(0.2))
        history = tv.train(loss, m, data, state, epochs=2, progress=False, compile=compiled)
        results.append((history, records(m)))
    assert results[0] == results[1]


def test_compile_needs_the_optimiser_state():
    with pytest.raises(TypeError, match=r"tv\.setup\(rule, model\) first"):
        tv.compile(loss, tv.Dense(2, 2), tv.Descent(0.1))


@pytest.mark.parametrize("rule", ["Descent", "Adam"])
def test_an_f32_model_with_f64_targets_stays_f32_and_equals_the_default_step(rule):
    """The loss's gradient comes back float64: the written-out update hands the step to
    `tv.update`'s general code, which casts to the parameters' dtype (as the default step)."""
    blocks = [("dense", 1, True, 4, None), ("skip+", 2, True, 4, None)]
    a, b = tv.f32(model_from(blocks, 0)), tv.f32(model_from(blocks, 0))
    sa, sb = tv.setup(RULES[rule](), a), tv.setup(RULES[rule](), b)
    step = tv.compile(loss, a, sa)
    g = np.random.default_rng(1)
    for _ in range(3):
        x = g.standard_normal((3, 5)).astype(np.float32)
        y = np.tanh(g.standard_normal((2, 5)))  # float64 targets
        assert_same_step(step, (a, sa), (b, sb), x, y)
    assert step.fallback is None and "def update" in step.source
    assert all(getattr(la, n).dtype == np.float32 for _, la, n in tv.trainables(a))


# --- a loss of tinyvec's own: the step without a graph ----------------------------------------
def test_a_written_loss_step_builds_no_graph(monkeypatch):
    """tv.compile(tv.mse, …) runs the program, the loss's parts and the written update: not
    the graph's road (`gradients_of`), nor the general update."""
    from tinyvec.fast import compiled

    m = two_layers()
    step = tv.compile(tv.mse, m, tv.setup(tv.Adam(), m))
    monkeypatch.setattr(compiled, "gradients_of", None)  # calling either would raise
    monkeypatch.setattr(compiled, "update", None)
    for _ in range(2):
        step(np.ones((3, 5)), np.zeros((2, 5)))
    assert step.source.startswith("# step(x, y) of tv.compile(tv.mse, model, state)")


def written_and_traced(make, x, y, lossfn, rule=tv.Momentum, steps=3):
    """tv.compile(lossfn) against tv.compile of the same loss as a function: the same loss,
    records and state, bit for bit, at every step."""
    a, b = make(), make()
    sa, sb = tv.setup(rule(0.1), a), tv.setup(rule(0.1), b)
    written = tv.compile(lossfn, a, sa)
    traced = tv.compile(lambda m, x, y: lossfn(m(x), y), b, sb)
    for _ in range(steps):
        assert to_numpy(written(x, y)).tobytes() == to_numpy(traced(x, y)).tobytes()
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)
    return written


@pytest.mark.parametrize(
    "y",
    [np.array([0, 1, 1, 0, 1]), tv.onehot(np.array([1, 1, 0, 0, 1]), 2)],
    ids=["labels", "one-hot"],
)
def test_crossentropy_is_written_too(y):
    step = written_and_traced(two_layers, np.linspace(-1, 1, 15).reshape(3, 5), y, tv.crossentropy)
    assert "crossentropy(out, y)" in step.source


def test_a_float32_model_with_float64_targets_gives_the_default_step():
    """∂L/∂ŷ is float64 then: the gradients are checked, and cast by the general update."""

    def make():
        m = two_layers()
        for _, layer, name in tv.trainables(m):
            setattr(layer, name, getattr(layer, name).astype(np.float32))
        return m

    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(3, 5)
    written_and_traced(make, x, np.zeros((2, 5)), tv.mse)


@pytest.mark.parametrize(
    "make, y",
    [
        (lambda: tv.SkipConnection(tv.Dense(3, 3, rng=0), tv.add), np.zeros((3, 5))),
        (lambda: tv.Chain(tv.Dense(3, 2, rng=0), Scale()), np.zeros((2, 5))),
        (two_layers, tv.Tensor(np.zeros((2, 5)))),  # a target with a gradient of its own
    ],
    ids=["not-a-chain", "custom-layer", "tensor-target"],
)
def test_what_the_program_cannot_run_takes_the_graph_road(make, y):
    written_and_traced(make, np.linspace(-1, 1, 15).reshape(3, 5), y, tv.mse)


def test_a_written_loss_step_inside_fast_off_runs_layer_by_layer():
    with tv.fast.off():
        written_and_traced(two_layers, np.ones((3, 5)), np.zeros((2, 5)), tv.mse)


@pytest.mark.parametrize(
    "y, error",
    [(np.zeros((5, 2)), tv.DimensionMismatch), (np.full((2, 5), 1e10), tv.NonFiniteStep)],
    ids=["transposed-target", "overflow"],
)
def test_a_written_loss_step_refuses_what_the_default_step_refuses(y, error):
    m = two_layers()
    state = tv.setup(tv.Descent(1e300), m)
    before = state_bytes(state, m)
    step = tv.compile(tv.mse, m, state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(error):
            step(np.ones((3, 5)), y)
    assert state_bytes(state, m) == before


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.zeros((5, 2)), tv.DimensionMismatch),
        (np.zeros((2, 5), dtype=complex), TypeError),
        (np.zeros((2, 0)), ValueError),
        ([[0.0] * 5] * 2, TypeError),
    ],
    ids=["transposed", "complex", "empty-batch", "a-list"],
)
def test_a_bad_target_after_good_ones_is_refused_as_the_default_step_refuses_it(bad, error):
    """The written loss checks (ŷ, y) once per kind (types, dtypes, shapes): a target of
    another kind after steps with good ones is checked again, and refused with the default
    step's error, nothing written."""
    m, twin = two_layers(), two_layers()
    state, twin_state = tv.setup(tv.Descent(0.1), m), tv.setup(tv.Descent(0.1), twin)
    step = tv.compile(tv.mse, m, state)
    x, y = np.ones((3, 5)), np.zeros((2, 5))
    for _ in range(2):
        step(x, y)
        default_step(twin, twin_state, x, y)
    before = state_bytes(state, m)
    with pytest.raises(error) as compiled_error:
        step(x[:, : np.shape(bad)[1]], bad)
    with pytest.raises(error) as default_error:
        default_step(twin, twin_state, x[:, : np.shape(bad)[1]], bad)
    assert str(compiled_error.value) == str(default_error.value)
    assert state_bytes(state, m) == before
    step(x, y)  # and good ones again
    default_step(twin, twin_state, x, y)
    assert state_bytes(state, m) == state_bytes(twin_state, twin)


def test_a_written_loss_takes_batches_of_x_and_y():
    m = two_layers()
    step = tv.compile(tv.mse, m, tv.setup(tv.Descent(0.1), m))
    with pytest.raises(TypeError, match=r"takes batches \(x, y\), got 3"):
        step(np.ones((3, 5)), np.zeros((2, 5)), np.zeros((2, 5)))


def test_train_takes_a_loss_of_its_own_compiled_or_not():
    data = [(np.linspace(-1, 1, 15).reshape(3, 5) * k, np.zeros((2, 5))) for k in (1, 2, 3)]
    runs = []
    for lossfn, compiled in ((tv.mse, False), (tv.mse, True), (loss, False)):
        m = two_layers()
        history = tv.train(
            lossfn, m, data, tv.setup(tv.Descent(0.1), m), progress=False, compile=compiled
        )
        runs.append((history, [getattr(la, n).tobytes() for _, la, n in tv.trainables(m)]))
    assert runs[0] == runs[1] == runs[2]


def test_every_road_gives_the_same_step_on_every_array_library(xp):
    """tv.compile(tv.mse), tv.compile of a loss function and the default step, on NumPy,
    array-api-strict and (with a GPU) CuPy: the same loss and weights, bit for bit."""
    from tinyvec.backend import to_numpy

    def make():
        return tv.to(xp, tv.Chain(tv.Dense(3, 4, tv.tanh, rng=0), tv.Dense(4, 2, rng=1)))

    models = [make() for _ in range(3)]
    states = [tv.setup(tv.Momentum(0.1), m) for m in models]
    steps = [tv.compile(tv.mse, models[0], states[0]), tv.compile(loss, models[1], states[1])]
    x = xp.asarray(np.linspace(-1, 1, 15).reshape(3, 5))
    y = xp.asarray(np.zeros((2, 5)))
    for _ in range(3):
        values = [step(x, y) for step in steps]
        value, grads = tv.withgradient(lambda m: loss(m, x, y), models[2])
        tv.update(states[2], models[2], grads)
        values.append(value)
        assert len({to_numpy(v).tobytes() for v in values}) == 1
    weights = {
        b"".join(to_numpy(getattr(la, n)).tobytes() for _, la, n in tv.trainables(m))
        for m in models
    }
    assert len(weights) == 1 and steps[0].fallback is None


def _softsign(A):
    return A / (1 + abs(A))


def _softsign_f32(g, A, O):  # a backprop of one's own that drifts to float32
    return (g / (1 + abs(A)) ** 2).astype(np.float32)


def test_an_activation_of_ones_own_keeps_the_gradients_checked():
    """Its backprop may return another dtype (here: ∂L/∂b^1 comes out float32) or shape: the
    written update must check the gradients then, and the step stays the default one, bit for
    bit."""
    softsign = tv.Activation("softsign", _softsign, None, backprop=_softsign_f32)

    def make():
        return tv.Chain(tv.Dense(3, 4, softsign, rng=0), tv.Dense(4, 2, rng=1))

    step = written_and_traced(make, np.linspace(-1, 1, 15).reshape(3, 5), np.zeros((2, 5)), tv.mse)
    program = next(iter(step._plan.programs.values()))
    assert not program.exact_grads
    assert next(iter(two_layers_program().values())).exact_grads


def two_layers_program():
    m = two_layers()
    tv.compile(tv.mse, m, tv.setup(tv.Descent(0.1), m))(np.ones((3, 5)), np.zeros((2, 5)))
    return tv.fast.plan.plan_of(m).programs


def test_the_flat_step_reuses_its_gradient_buffer_unless_someone_holds_it():
    """A compiled tv.mse step of a small NumPy model writes its gradients into one flat buffer
    that the update steps as it is; a rule of one's own that keeps the gradient gets a new
    buffer at the next step, so what it kept is never overwritten."""
    kept = []

    class Keeping(tv.Descent):
        elementwise = True

        def apply(self, state, x, dx):
            kept.append(dx)  # (a reference to the gradient, outliving the step)
            return state, self.eta * dx

    m, twin = two_layers(), two_layers()
    x, y = np.linspace(-1, 1, 15).reshape(3, 5), np.zeros((2, 5))
    step = tv.compile(tv.mse, m, tv.setup(Keeping(0.1), m))
    twin_state = tv.setup(tv.Descent(0.1), twin)
    for _ in range(3):
        step(x, y)
        with tv.fast.off():
            tv.update(twin_state, twin, tv.gradient(lambda m: tv.mse(m(x), y), twin))
    assert len({id(g) for g in kept}) == 3  # a new buffer at each step
    assert kept[0].tobytes() != kept[1].tobytes()  # the first was not overwritten
    assert records(m) == records(twin)


@pytest.mark.parametrize("road", ["default", "compiled", "compiled-fn"])
def test_the_gradient_buffers_are_reused_from_step_to_step(road):
    """A small model's backward pass writes its gradients into a buffer its plan keeps, the
    same one at every step while nothing else holds it, and the update steps that buffer as it
    is: the gradients of a step are views of one array. A loop that keeps the last step's
    gradient tree while it computes the next uses two buffers in turn."""
    from tinyvec.fast.plan import plan_of

    m = two_layers()
    state = tv.setup(tv.Momentum(0.1), m)
    x, y = np.ones((3, 5)), np.zeros((2, 5))
    if road == "default":
        step = lambda: tv.update(state, m, tv.gradient(lambda m: tv.mse(m(x), y), m))  # noqa: E731
    else:
        step = tv.compile(tv.mse if road == "compiled" else loss, m, state)
    seen = set()
    for _ in range(4):
        step(x, y) if road != "default" else step()
        seen.add(id(plan_of(m).memory[2].theta))  # (an id: a reference would hold it)
    assert len(seen) == 1
    for _ in range(4):
        grads = tv.gradient(lambda m: tv.mse(m(x), y), m)  # (held while the next is made)
        seen.add(id(plan_of(m).memory[2].theta))
        G = plan_of(m).memory[2].theta
        assert all(np.shares_memory(grads[path], G) for path, _, _ in tv.trainables(m))
    assert len(seen) == 2


def test_gradients_kept_from_earlier_steps_keep_their_values():
    """Gradient trees kept from step to step (as a loop's ``grads = tv.gradient(...)`` keeps
    the last one while the next is computed) are never written into again."""
    m, twin = two_layers(), two_layers()
    state, twin_state = tv.setup(tv.Descent(0.1), m), tv.setup(tv.Descent(0.1), twin)
    x, y = np.linspace(-1, 1, 15).reshape(3, 5), np.zeros((2, 5))
    kept, expected = [], []
    for _ in range(4):
        kept.append(tv.gradient(lambda m: tv.mse(m(x), y), m))
        tv.update(state, m, kept[-1])
        with tv.fast.off():
            expected.append(tv.gradient(lambda m: tv.mse(m(x), y), twin))
            tv.update(twin_state, twin, expected[-1])
    paths = [path for path, _, _ in tv.trainables(m)]
    for grads, want in zip(kept, expected, strict=True):
        assert [grads[p].tobytes() for p in paths] == [want[p].tobytes() for p in paths]
    assert records(m) == records(twin)


def test_a_parameter_tensor_kept_by_the_loss_keeps_its_gradient():
    """A loss that keeps a parameter's Tensor keeps its ``.grad``, the gradient of that step
    (the buffer it is a view of is not written again while it is held)."""
    tensors, twin_tensors = [], []

    def keeping(into):
        def lossfn(m, x, y):
            into.append(m[0].weight)
            return tv.mse(m(x), y)

        return lossfn

    m, twin = two_layers(), two_layers()
    x, y = np.linspace(-1, 1, 15).reshape(3, 5), np.zeros((2, 5))
    step = tv.compile(keeping(tensors), m, tv.setup(tv.Descent(0.1), m))
    twin_state, twin_loss = tv.setup(tv.Descent(0.1), twin), keeping(twin_tensors)
    for _ in range(3):
        step(x, y)
        with tv.fast.off():
            tv.update(twin_state, twin, tv.gradient(lambda m: twin_loss(m, x, y), twin))
    assert [t.grad.tobytes() for t in tensors] == [t.grad.tobytes() for t in twin_tensors]
    assert len({t.grad.tobytes() for t in tensors}) == 3


def default_step(model, state, x, y):
    """The default step on the reference road (the twin every compiled step is checked against)."""
    with tv.fast.off():
        tv.update(state, model, tv.gradient(lambda m: tv.mse(m(x), y), model))


@pytest.mark.parametrize("rule", ["Descent", "Momentum"])
def test_the_flat_step_reuses_two_sets_of_memory_and_leaves_what_is_held_alone(rule):
    """θ_new and the step are written into one of two sets of flat buffers whose parameter views
    are made once: the commit shows one set, the next step writes the other. A parameter, a view
    of one or a step record that someone holds is never written into: its set is left to them."""
    from tinyvec.fast.plan import plan_of
    from tinyvec.fast.update_program import written

    m, twin = two_layers(), two_layers()
    state, twin_state = tv.setup(RULES[rule](), m), tv.setup(RULES[rule](), twin)
    step = tv.compile(tv.mse, m, state)
    x, y = np.linspace(-1, 1, 15).reshape(3, 5), np.zeros((2, 5))

    def both():
        step(x, y)
        default_step(twin, twin_state, x, y)
        assert records(m) == records(twin)
        assert state_bytes(state, m) == state_bytes(twin_state, twin)
        memory = written(state, plan_of(m)).memory
        shown = [s for s in memory.sets if m[0].weight.base is s.theta]
        assert len(shown) == 1, "the parameters are views of one set's θ"
        for _, layer, name in tv.trainables(m):
            assert getattr(layer, name).base is shown[0].theta
            assert layer.step[name].base is shown[0].step
        return shown[0]

    used = [both() for _ in range(6)]
    assert all(a is not b for a, b in itertools.pairwise(used)), "each step writes the other set"
    assert len({id(s) for s in used}) == 2, "two sets, reused"
    W, view, record = m[0].weight, m[1].bias[...], m[1].step
    kept = W.tobytes(), view.tobytes(), record["weight"].tobytes()
    for _ in range(4):
        both()
        assert (W.tobytes(), view.tobytes(), record["weight"].tobytes()) == kept
    assert W is not m[0].weight and record is not m[1].step


@pytest.mark.parametrize("written_loss", [True, False], ids=["tv.mse", "loss function"])
@pytest.mark.parametrize("rule", ["Descent", "Adam"])
@pytest.mark.parametrize("signal_or_raise", ["ctrl-c", "raise in the update"])
def test_ctrl_c_or_an_exception_at_any_moment_leaves_all_of_a_step_or_none(
    rule, written_loss, signal_or_raise
):
    """A Ctrl-C (SIGINT) at every bytecode of a compiled step in turn, or a KeyboardInterrupt
    raised at every bytecode of its update (as a signal handler of one's own may: only SIGINT
    waits for the step): the parameters, their step records and the optimiser state are all
    those of step n or all those of step n + 1, never a mix, and the steps that follow are
    the reference road's again."""
    m, twin = two_layers(), two_layers()
    state, twin_state = tv.setup(RULES[rule](), m), tv.setup(RULES[rule](), twin)
    step = tv.compile(tv.mse if written_loss else loss, m, state)
    x, y = np.linspace(-1, 1, 15).reshape(3, 5), np.zeros((2, 5))
    for _ in range(3):  # (the steady state: plans, programs and both sets of memory made)
        step(x, y)
        default_step(twin, twin_state, x, y)

    def committed(model, s):  # what a step commits: everything but the forward pass's records
        rec = {k: v for k, v in records(model).items() if not k[0].isdigit()}
        return rec, state_bytes(s, model)

    def in_update(frame):  # the written update and the memory it writes
        name = frame.f_code.co_filename
        return name == "<tinyvec update>" or name.endswith("update_program.py")

    def interrupt_at(n):
        """Run ``step``, interrupted at its n-th bytecode (None: never); how many it ran."""
        seen = [0]

        def trace(frame, event, arg):
            frame.f_trace_opcodes = True
            if event == "opcode" and (signal_or_raise == "ctrl-c" or in_update(frame)):
                seen[0] += 1
                if seen[0] == n:
                    if signal_or_raise == "ctrl-c":
                        signal.raise_signal(signal.SIGINT)
                    else:
                        raise KeyboardInterrupt
            return trace

        sys.settrace(trace)
        try:
            step(x, y)
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        return seen[0]

    total = interrupt_at(None)  # (a whole step, counted: the twin takes it too)
    default_step(twin, twin_state, x, y)
    assert committed(m, state) == committed(twin, twin_state)
    # every bytecode of the last part (the loss, the backward pass, the update, the commit),
    # a sample of the rest
    for n in sorted({*range(1, total, 5), *range(max(total - 700, 1), total + 1)}):
        before = committed(twin, twin_state)
        interrupt_at(n)
        taken = committed(m, state)
        if taken != before:  # the step was taken, whole: the twin takes it too
            default_step(twin, twin_state, x, y)
            assert taken == committed(twin, twin_state), f"bytecode {n}: half a step"
    step(x, y)  # an uninterrupted step after all that: the reference road's
    default_step(twin, twin_state, x, y)
    assert records(m) == records(twin) and state_bytes(state, m) == state_bytes(twin_state, twin)


@pytest.mark.parametrize("shared", [False, True], ids=["own-inputs", "shared-input"])
def test_a_stacks_written_loss_step_builds_no_graph_and_is_the_default_step(shared, monkeypatch):
    """tv.compile(tv.mse, stack, state): the loss is the E member losses (as `model_loss`
    says), run as plain arrays through the stack's program and written update, gradients
    straight into the (E, P) buffer; bit for bit the default step. (On main a stack's
    compiled tv.mse step took the graph's road.)"""
    from tinyvec.fast import compiled

    E = 3
    make = lambda: tv.stack([model_from([("skip+", 1, True, 3, None)], e) for e in range(E)])  # noqa: E731
    a, b = make(), make()
    rule = lambda: tv.Adam([0.01, 0.02, 0.03])  # noqa: E731
    sa, sb = tv.setup(rule(), a), tv.setup(rule(), b)
    step = tv.compile(tv.mse, a, sa)
    g = np.random.default_rng(0)
    for _ in range(3):
        x = g.standard_normal((3, 4) if shared else (E, 3, 4))
        y = g.standard_normal((E, 2, 4))
        with monkeypatch.context() as patch:
            patch.setattr(compiled, "gradients_of", None)  # calling either would raise
            patch.setattr(compiled, "update", None)
            loss = step(x, y)
        value, grads = tv.withgradient(lambda m: tv.mse(m(x), y, members=True), b)
        tv.update(sb, b, grads)
        assert loss.shape == (E,) and loss.tobytes() == value.tobytes()
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)


def test_a_large_stacks_step_is_sliced_not_copied_and_is_the_default_step(monkeypatch):
    """Above FLAT entries (a large stack) the flat step's memory holds θ only, and each step
    record is a slice of the rule's step (copying it would cost more than the slicing); the
    same numbers as the reference road, and what a user keeps is kept."""
    from tinyvec.fast import update_program
    from tinyvec.fast.plan import plan_of

    E = 3
    make = lambda: tv.stack([model_from([("skip+", 1, True, 3, None)], e) for e in range(E)])  # noqa: E731
    a, b = make(), make()
    size = sum(getattr(layer, name).size for _, layer, name in tv.trainables(a))
    monkeypatch.setattr(update_program, "FLAT", size // 2)  # flat (per member), not copied
    sa, sb = tv.setup(tv.Momentum(0.05), a), tv.setup(tv.Momentum(0.05), b)
    step = tv.compile(tv.mse, a, sa)
    g = np.random.default_rng(1)
    held = []
    for _ in range(4):
        x, y = g.standard_normal((E, 3, 4)), g.standard_normal((E, 2, 4))
        step(x, y)
        with tv.fast.off():
            tv.update(sb, b, tv.gradient(lambda m: tv.mse(m(x), y, members=True), b))
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)
        hold(a, "parameters", held)
        hold(a, "records", held)
        assert not changed(held)
    memory = update_program.written(sa, plan_of(a)).memory
    assert memory is not None and not memory.copied
    assert all(s.step is None for s in memory.sets)


def test_a_stacks_compiled_loss_function_steps_its_gradient_buffer():
    """tv.compile(loss, stack, state) with a loss function of one's own runs the graph, whose
    Chain node writes the gradients into the stack's (E, P) buffer; the written update steps
    that buffer as it is, as the default step does (on main it concatenated them again).
    Bit for bit the reference road."""
    from tinyvec.fast.plan import plan_of
    from tinyvec.fast.update_program import written

    E = 3
    make = lambda: tv.stack([model_from([("skip+", 1, True, 3, None)], e) for e in range(E)])  # noqa: E731
    a, b = make(), make()
    rule = lambda: tv.Momentum([0.01, 0.02, 0.03])  # noqa: E731
    sa, sb = tv.setup(rule(), a), tv.setup(rule(), b)
    loss = lambda m, x, y: tv.mse(m(x), y, members=True)  # noqa: E731
    step = tv.compile(loss, a, sa)
    g = np.random.default_rng(2)
    for n in range(4):
        x, y = g.standard_normal((E, 3, 4)), g.standard_normal((E, 2, 4))
        program = written(sa, plan_of(a)) if n else None
        if program is not None:  # (calling it would raise)
            program.update.__globals__["concatenate"] = None
        value = step(x, y)
        if program is not None:
            program.update.__globals__["concatenate"] = np.concatenate
        with tv.fast.off():
            twin, grads = tv.withgradient(lambda m: loss(m, x, y), b)
            tv.update(sb, b, grads)
        assert value.shape == (E,) and value.tobytes() == twin.tobytes()
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)
