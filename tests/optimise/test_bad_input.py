"""Bad input to gradient / update / train: one clear error, and nothing changes."""

import contextlib

import numpy as np
import pytest

import tinyvec as tv


def model():
    return tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))


X, Y = np.ones((2, 4)), np.zeros((1, 4))


def test_update_without_setup_says_to_call_setup():
    m = model()
    grads = tv.gradient(lambda m: tv.mse(m(X), Y), m)
    with pytest.raises(TypeError, match=r"call tv\.setup\(rule, model\) first"):
        tv.update(tv.Descent(0.01), m, grads)
    with pytest.raises(TypeError, match=r"tv\.setup\(rule, model\) first"):
        tv.train(lambda m: tv.mse(m(X), Y), m, [()], tv.Descent(0.01), progress=False)


@pytest.mark.parametrize("rule", [tv.Descent(0.1), tv.Momentum(0.1), tv.Adam(0.1)], ids=repr)
def test_parameters_keep_their_dtype(rule):
    m = tv.f32(model())
    state = tv.setup(rule, m)
    x, y = np.ones((2, 4), np.float32), np.full((1, 4), 0.5)  # float64 targets
    tv.train(lambda m: tv.mse(m(x), y), m, [()] * 3, state, progress=False)
    for path, layer, name in tv.trainables(m):
        assert getattr(layer, name).dtype == np.float32, path
        assert layer.step[name].dtype == np.float32, path
    assert all(
        leaf.state is None or getattr(leaf.state, "dtype", np.float32) == np.float32
        for leaf in (state.tree[p] for p, _, _ in tv.trainables(m))
    )


@pytest.mark.parametrize("result", [1.5, np.float64(1.5), np.array(1.5)], ids=repr)
def test_a_loss_that_is_not_a_tensor_is_refused(result):
    with pytest.raises(TypeError, match=r"loss must be a Tensor.*got (float|float64|ndarray)"):
        tv.gradient(lambda m: result, model())
    with pytest.raises(TypeError, match=r"float\(\)"):
        tv.gradient(lambda m: float(tv.mse(m(X), Y)), model())


def test_train_streams_its_data():
    pulled = []

    def loader():
        for i in range(5):
            pulled.append(i)
            yield X, Y

    seen = []
    m = model()
    tv.train(
        lambda m, x, y: tv.mse(m(x), y),
        m,
        loader(),
        tv.setup(tv.Descent(0.1), m),
        progress=False,
        callbacks=[lambda step, m, loss: seen.append(len(pulled))],
    )
    assert seen == [1, 2, 3, 4, 5]  # step k came after reading k batches, not all of them


def test_steps_bounds_an_endless_generator():
    def endless():
        while True:
            yield X, Y

    m = model()
    state = tv.setup(tv.Descent(0.1), m)
    history = tv.train(
        lambda m, x, y: tv.mse(m(x), y), m, endless(), state, steps=7, progress=False
    )
    assert len(history) == 7
    history = tv.train(
        lambda m, x, y: tv.mse(m(x), y), m, [(X, Y)] * 2, state, epochs=3, steps=5, progress=False
    )
    assert len(history) == 5


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"epochs": 0}, "epochs must be an integer ≥ 1"),
        ({"epochs": 1.5}, "epochs must be an integer ≥ 1"),
        ({"steps": 0}, "steps must be an integer ≥ 1"),
        ({"epochs": 2, "data": iter([(X, Y)])}, "one-shot iterator"),
    ],
    ids=["epochs=0", "epochs=1.5", "steps=0", "generator-two-epochs"],
)
def test_bad_train_arguments_are_refused_before_any_step(kw, match):
    m = model()
    before = [getattr(la, n).copy() for _, la, n in tv.trainables(m)]
    data = kw.pop("data", [(X, Y)])
    with pytest.raises(ValueError, match=match):
        tv.train(
            lambda m, x, y: tv.mse(m(x), y),
            m,
            data,
            tv.setup(tv.Descent(0.1), m),
            progress=False,
            **kw,
        )
    after = [getattr(la, n) for _, la, n in tv.trainables(m)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"callbacks": [print, 3]}, "callbacks must be functions cb"),
        ({"recorder": "run.npz"}, r"recorder must be a tv\.Recorder\(\)"),
    ],
    ids=["callbacks", "recorder"],
)
def test_callbacks_and_recorder_that_cannot_be_called_are_refused_before_any_step(kw, match):
    """Found by the audit: both failed after the first update, in an error of Python's."""
    m = model()
    before = [getattr(la, n).copy() for _, la, n in tv.trainables(m)]
    with pytest.raises(TypeError, match=match):
        tv.train(tv.mse, m, [(X, Y)], tv.setup(tv.Descent(0.1), m), progress=False, **kw)
    after = [getattr(la, n) for _, la, n in tv.trainables(m)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_callbacks_from_a_generator_or_one_function_run_after_every_step():
    """Found by the audit: a generator of callbacks was used up by the first step, and the
    later steps silently ran no callback."""
    for callbacks in [
        (cb for cb in [lambda step, m, loss: seen.append(step)]),
        lambda step, m, loss: seen.append(step),
    ]:
        seen: list[int] = []
        m = model()
        tv.train(
            tv.mse,
            m,
            [(X, Y)] * 3,
            tv.setup(tv.Descent(0.1), m),
            progress=False,
            callbacks=callbacks,
        )
        assert seen == [1, 2, 3]


@pytest.mark.parametrize("road", ["fast", "reference"])
@pytest.mark.parametrize("features", [(1, 3), (3, 1)], ids=["grown", "shrunk"])
def test_a_parameter_reshaped_since_setup_is_refused_on_both_roads(features, road):
    """Found by the audit: after Dense(1, 4)'s weight became (4, 3), Adam broadcast the old
    column's moments onto the three new ones, silently; after (4, 3) became (4, 1), the step
    (broadcast to (4, 3)) turned the weight back into (4, 3), and the next forward pass
    blamed the input. Now the step is refused, and nothing changes; a rule without state
    (plain descent) keeps working."""
    before, after = features
    x, y = np.ones((after, 4)), np.zeros((1, 4))
    m = tv.Chain(tv.Dense(before, 4, tv.tanh, rng=0), tv.Dense(4, 1, rng=1))
    state = tv.setup(tv.Adam(0.1), m)
    tv.update(state, m, tv.gradient(lambda m: tv.mse(m(np.ones((before, 4))), y), m))
    m[0].weight = np.ones((4, after))
    moments = [a.copy() for a in state.tree.layers[0].weight.state if hasattr(a, "shape")]
    with contextlib.nullcontext() if road == "fast" else tv.fast.off():
        grads = tv.gradient(lambda m: tv.mse(m(x), y), m)
        with pytest.raises(ValueError, match=rf"set up for shape \(4, {before}\), it is now"):
            tv.update(state, m, grads)
        assert np.array_equal(m[0].weight, np.ones((4, after)))
        kept = [a for a in state.tree.layers[0].weight.state if hasattr(a, "shape")]
        assert all(np.array_equal(a, b) for a, b in zip(moments, kept, strict=True))
        state = tv.setup(tv.Descent(0.1), m)
        m[0].weight = np.ones((4, before))
        tv.update(state, m, tv.gradient(lambda m: tv.mse(m(np.ones((before, 4))), y), m))
        assert m[0].weight.shape == (4, before)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, s: tv.train(lambda m, x, y: tv.mse(m(x), y), m, [X, Y], s, progress=False),
         r"batch of 1 value\(s\) \(missing a required argument: 'y'\).*\[\(x, y\)\] for one batch"),
        (lambda m, s: tv.train(m, tv.mse, [(X, Y)], s, progress=False),
         "were loss and model swapped"),
        (lambda m, s: tv.train(tv.mse, m, None, s, progress=False),
         r"data must be an iterable of batches such as \[\(x, y\)\], got None"),
    ],
    ids=["list-of-x-and-y", "loss-and-model-swapped", "no-data"],
)  # fmt: skip
def test_a_batch_the_loss_cannot_take_is_refused_before_any_step(call, match):
    """Found by the audit: data=[x, y] (two batches of one array) ended in Python's
    "<lambda>() missing 1 required positional argument: 'y'", which blames the loss; a
    swapped loss and model in "Chain.__call__() takes 2 positional arguments"."""
    m = model()
    before = [getattr(la, n).copy() for _, la, n in tv.trainables(m)]
    with pytest.raises(TypeError, match=match):
        call(m, tv.setup(tv.Descent(0.1), m))
    after = [getattr(la, n) for _, la, n in tv.trainables(m)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
