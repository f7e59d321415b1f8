"""`tv.compile` with bad arguments: one TypeError naming the argument, at compile time."""

import numpy as np
import pytest

import tinyvec as tv


def model():
    return tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))


@pytest.mark.parametrize(
    "not_a_model",
    [3, "model", np.ones((2, 3)), tv.mse, None],
    ids=["int", "str", "array", "fn", "None"],
)
def test_a_model_that_is_not_a_model_is_one_type_error(not_a_model):
    state = tv.setup(tv.Descent(0.1), model())
    with pytest.raises(TypeError, match=r"tv.compile\(loss, model, state\): model must be a model"):
        tv.compile(tv.mse, not_a_model, state)


@pytest.mark.parametrize("not_a_loss", [3, "mse", None], ids=repr)
def test_a_loss_that_is_not_a_function_is_one_type_error(not_a_loss):
    m = model()
    with pytest.raises(
        TypeError, match=r"tv.compile\(loss, model, state\): loss must be a function"
    ):
        tv.compile(not_a_loss, m, tv.setup(tv.Descent(0.1), m))


def test_a_model_given_as_the_loss_is_one_type_error_naming_the_order():
    """Once a foreign TypeError at the first step (Chain.__call__() takes 2 positional
    arguments), or a step that ran with the roles swapped."""
    m = model()
    state = tv.setup(tv.Descent(0.1), m)
    with pytest.raises(TypeError, match=r"got a model \(the loss comes first"):
        tv.compile(m, m, state)
    with pytest.raises(TypeError, match=r"got a model \(the loss comes first"):
        tv.compile(m, tv.mse, state)
