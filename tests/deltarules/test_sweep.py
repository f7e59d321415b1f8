"""The update with δ-rules: checks, what it leaves on the layers, train() and the Recorder,
custom and frozen layers."""

import contextlib

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.deltarules import Compensation, Orthogonalization, check_rules


class Scale(tv.Layer):
    """A diagonal scale, a parameter outside any Dense layer."""

    params = ("s",)

    def __init__(self, n):
        self.s = np.linspace(0.5, 1.5, n)

    def __call__(self, x):
        return x * tv.ops.reshape(self.s, (-1, 1))


def data(batch=4, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((3, batch)), r.standard_normal((1, batch))


def small(seed=0):
    return tv.Chain(
        tv.Dense(3, 5, tv.tanh, rng=seed),
        tv.SkipConnection(tv.Dense(5, 5, tv.tanh, rng=seed + 1), tv.add),
        tv.Dense(5, 1, rng=seed + 2),
    )


def test_check_rules():
    c, o = Compensation(0.2), Orthogonalization()
    assert check_rules(c, tv.Descent(0.1)) == (c,)
    assert check_rules([c, o], tv.Nesterov()) == (c, o)
    assert check_rules([], tv.Descent()) == ()
    assert check_rules(o, tv.OptimiserChain(tv.WeightDecay(), tv.Momentum())) == (o,)
    with pytest.raises(TypeError, match="delta= takes δ-rules"):
        check_rules([c, 0.2], tv.Descent())
    with pytest.raises(ValueError, match="at most one Compensation"):
        check_rules([c, Compensation(0.5, "first_order")], tv.Descent())
    for rule in (tv.Adam(), tv.AdamW(), tv.OptimiserChain(tv.ClipNorm(), tv.Descent())):
        with pytest.raises(ValueError, match="step is α·gradient"):
            tv.setup(rule, small(), delta=c)


def test_train_and_recorder_show_delta_used(tmp_path):
    model, (x, y) = small(), data()
    state = tv.setup(tv.Descent(0.05), model, delta=[Compensation(0.5), Orthogonalization()])
    rec = tv.Recorder(every=2, path=tmp_path / "snap.npz")
    losses = tv.train(
        lambda m, x, y: tv.mse(m(x), y), model, [(x, y)] * 4, state, progress=False, recorder=rec
    )
    assert losses[-1] < losses[0]
    rows = [r for r in rec.rows if r["step"] == 4]
    assert [r["layer"] for r in rows] == [1, 2, 3]
    for r, d in zip(rows, tv.dense_layers(model), strict=True):
        assert r["delta_used_norm"] == pytest.approx(np.linalg.norm(d.delta_used))
        assert -1 <= r["cos_delta_used"] <= 1
    assert rows[0]["cos_delta_used"] < 1 - 1e-9  # orthogonalization rewrote δ¹ (batch 4 > 3+1)
    snap = np.load(tmp_path / "snap.npz")
    assert np.array_equal(snap["step4/layer3/delta_used"], model[2].delta_used)


def test_plain_recorder_rows_are_unchanged():
    model, (x, y) = small(), data()
    rec = tv.Recorder()
    tv.train(
        lambda m, x, y: tv.mse(m(x), y),
        model,
        [(x, y)],
        tv.setup(tv.Descent(), model),
        progress=False,
        recorder=rec,
    )
    assert "delta_used_norm" not in rec.rows[0]


def test_custom_and_frozen_layers():
    """A parameter outside Dense layers takes its plain step (before the sweep, so its change
    is part of ΔO); a Dense layer without gradient is not updated but passes ΔO on."""
    model = tv.Chain(
        tv.Dense(3, 4, tv.tanh, rng=0),
        Scale(4),
        tv.Dense(4, 4, tv.tanh, rng=1),
        tv.Dense(4, 1, rng=2),
    )
    x, y = data()
    state = tv.setup(tv.Descent(0.1), model, delta=Compensation(1.0))
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    grads.layers[2]["weight"] = grads.layers[2]["bias"] = None  # freeze the third Dense
    s, W3, g_s = model[1].s, model[2].weight, grads.layers[1].s
    tv.update(state, model, grads)
    assert np.array_equal(model[1].s, s - 0.1 * g_s)
    assert model[2].weight is W3 and model[2].delta_used is None
    O3 = model[3].input  # ΔO seen by the last layer: through the updated Scale and first Dense
    O3_new = tv.activations(model, x)[2]
    want = model[3].delta + (model[3].weight + model[3].step["weight"]) @ (O3_new - O3) / (
        0.1 * ((O3**2).sum(0) + 1)
    )
    assert np.allclose(model[3].delta_used, want, rtol=1e-10)


def test_records_of_the_gradient_survive_the_sweep():
    model, (x, y) = small(), data()
    state = tv.setup(tv.Descent(0.1), model, delta=Compensation(0.3, "first_order"))
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    skip_input = model[1].input
    records = [(d.input, d.preact, d.output) for d in tv.dense_layers(model)]
    tv.update(state, model, grads)
    assert model[1].input is skip_input and model.input is x
    for d, (O, A, out) in zip(tv.dense_layers(model), records, strict=True):
        assert d.input is O and d.preact is A and d.output is out
        # the step is the one of δ̃: ΔW o_i + Δb summed as in plain backprop, with δ̃
        assert np.allclose(d.dW, -0.1 * d.delta_used @ O.T, rtol=1e-12)


def test_refusals_change_nothing():
    model, (x, y) = small(), data()
    state = tv.setup(tv.Descent(0.1), model, delta=Compensation(0.5))
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    model(x[:, :2])  # the records now belong to another batch
    W = [d.weight for d in tv.dense_layers(model)]
    with pytest.raises(ValueError, match="compute the gradient right before"):
        tv.update(state, model, grads)
    assert all(d.weight is w for d, w in zip(tv.dense_layers(model), W, strict=True))

    shared = tv.Dense(3, 3, tv.tanh, rng=0)
    model = tv.Chain(shared, shared)
    state = tv.setup(tv.Descent(0.1), model, delta=Orthogonalization())
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), np.zeros((3, 4))), model)
    with pytest.raises(ValueError, match="shared Dense layer"):
        tv.update(state, model, grads)


def test_model_without_input_is_refused_for_compensation():
    class Wrapper(tv.Layer):
        children = ("inner",)

        def __init__(self):
            self.inner = small()

        def __call__(self, x):
            return self.inner(x)

    model, (x, y) = Wrapper(), data()
    state = tv.setup(tv.Descent(0.1), model, delta=Compensation(0.5))
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    with pytest.raises(ValueError, match="does not keep its input"):
        tv.update(state, model, grads)
    tv.update(tv.setup(tv.Descent(0.1), model, delta=Orthogonalization()), model, grads)


def test_the_sweep_follows_a_model_changed_under_its_state():
    # what the δ-rules know of the model (its containers) is kept per plan: a block replaced
    # under the same optimiser state is a new plan, and the sweep puts back its input too
    model, (x, y) = small(), data()
    state = tv.setup(tv.Descent(0.1), model, delta=Compensation(0.5))
    for _ in range(2):
        _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
        tv.update(state, model, grads)
    block = tv.SkipConnection(tv.Dense(5, 5, tv.tanh, rng=7), tv.add)
    model.layers = (model.layers[0], block, model.layers[2])
    _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    O, W = block.input, block.layer.weight
    tv.update(state, model, grads)
    assert block.input is O  # the gradient's, not the sweep's Õ
    assert block.layer.delta_used is not block.layer.delta  # compensated: its input moved
    assert not np.array_equal(block.layer.weight, W)


@pytest.mark.parametrize(
    "delta, written",
    [
        (Compensation(0.5), False),
        (Orthogonalization(), True),
        (tv.OrthogonalizationOverTime(3), True),
    ],
    ids=["Compensation", "Orthogonalization", "OverTime"],
)
def test_the_rewritten_gradients_are_stepped_and_committed_with_the_records(
    delta, written, monkeypatch
):
    """The δ-rules rewrite the gradients and the step takes them through `update`'s written
    program, which commits δ̃^k and the memories with the parameters (after a sweep too, which
    takes some steps early: a step refused then is refused by the general code, which names
    the parameter in the sweep's order). A non-finite step is refused with all of it."""
    from tinyvec.optimise import training

    model, (x, y) = small(), data()
    state = tv.setup(tv.Momentum(0.1), model, delta=delta)
    if written:  # the general code would raise
        monkeypatch.setattr(training.Commit, "propose", None)
    for _ in range(2):
        tv.update(state, model, tv.gradient(lambda m: tv.mse(m(x), y), model))

    grads = tv.gradient(lambda m: tv.mse(m(x), y), model)
    grads.layers[2]["bias"] = np.array([np.inf])
    records = [x for d in tv.dense_layers(model) for x in (d.weight, d.delta_used)]
    memory = getattr(state.transform, "memory", None)
    with pytest.raises(tv.NonFiniteStep, match=r"layers\[2\]\.bias"):
        tv.update(state, model, grads)
    after = [x for d in tv.dense_layers(model) for x in (d.weight, d.delta_used)]
    assert all(a is b for a, b in zip(records, after, strict=True))
    assert getattr(state.transform, "memory", None) is memory


def test_a_step_refused_after_a_sweep_names_the_parameter_the_reference_names():
    """After Compensation's sweep the written update takes the step; a step it refuses is
    refused as on the reference road, naming the first parameter the sweep proposed: the
    parameter outside the Dense layers (proposed before the sweep), not the model's first."""
    x, y = data()
    messages = []
    for road in (tv.fast.off, contextlib.nullcontext):
        model = tv.Chain(tv.Dense(3, 5, tv.tanh, rng=0), Scale(5), tv.Dense(5, 1, rng=1))
        state = tv.setup(tv.Descent(0.1), model, delta=Compensation(0.2))
        grads = tv.gradient(lambda m: tv.mse(m(x), y), model)
        grads.layers[0]["weight"] = np.full((5, 3), np.inf)
        grads.layers[1]["s"] = np.full(5, np.inf)
        with road(), np.errstate(all="ignore"), pytest.raises(tv.NonFiniteStep) as refused:
            tv.update(state, model, grads)  # (the sweep runs the model with the inf scale)
        messages.append(str(refused.value))
    assert "layers[1].s" in messages[0]
    assert messages[1] == messages[0]
