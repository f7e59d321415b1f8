"""`tv.batches`, the schedules, `tv.adjust` / `tv.freeze` / `tv.thaw` and rules by path refuse
what they cannot mean, with one line that says what to give instead, before changing
anything."""

import math

import numpy as np
import pytest

import tinyvec as tv

X, Y = np.zeros((3, 10)), np.zeros((1, 10))


def net():
    return tv.Chain(tv.Dense(3, 4, tv.tanh, rng=0), tv.Dense(4, 1, rng=1))


# --- batches ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, -3, 2.5, True, "8"])
def test_batches_refuses_a_size_that_is_not_a_count(size):
    with pytest.raises(ValueError, match="size must be an integer ≥ 1"):
        tv.batches(X, Y, size)


def test_batches_refuses_no_size():
    with pytest.raises(TypeError, match="give the batch size"):
        tv.batches(X, Y)


def test_batches_of_x_alone_with_the_size_in_y_says_to_name_it():
    with pytest.raises(TypeError, match=r"tv.batches\(x, size=4\)"):
        tv.batches(X, 4)


def test_batches_refuses_x_and_y_with_different_sample_counts():
    with pytest.raises(ValueError, match=r"x has 10 samples .* and y 9"):
        tv.batches(X, np.zeros((1, 9)), 4)


def test_batches_refuses_a_list_instead_of_an_array():
    with pytest.raises(TypeError, match="x must be an array"):
        tv.batches([[1.0, 2.0]], size=1)


def test_batches_refuses_a_scalar():
    with pytest.raises(ValueError, match="scalar"):
        tv.batches(np.float64(1.0), size=1)


def test_batches_refuses_no_samples():
    with pytest.raises(ValueError, match="no samples"):
        tv.batches(np.zeros((3, 0)), size=1)


def test_batches_refuses_an_rng_without_shuffle():
    with pytest.raises(ValueError, match="shuffle=False"):
        tv.batches(X, Y, 4, rng=0)


@pytest.mark.parametrize("rng", [-1, 1.5, "seed", np.random.RandomState(0)])
def test_batches_refuses_an_rng_that_is_neither_a_seed_nor_a_generator(rng):
    with pytest.raises(TypeError, match="rng must be a seed"):
        tv.batches(X, Y, 4, shuffle=True, rng=rng)


def test_batches_refuses_a_shuffle_that_is_not_a_bool():
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        tv.batches(X, Y, 4, shuffle="yes")


def test_stack_batches_refuses_what_is_not_a_list_of_loaders():
    with pytest.raises(TypeError, match="non-empty list of loaders"):
        tv.stack_batches(tv.batches(X, Y, 4))
    with pytest.raises(TypeError, match="non-empty list of loaders"):
        tv.stack_batches([])
    with pytest.raises(TypeError, match="loader 1 is ndarray, not a loader"):
        tv.stack_batches([tv.batches(X, Y, 4), X])


def test_stack_batches_refuses_loaders_of_other_lengths_naming_them():
    with pytest.raises(ValueError, match=r"give \[3, 2\] batches per pass"):
        tv.stack_batches([tv.batches(X, Y, 4), tv.batches(X, Y, 5)])
    ends = tv.stack_batches([iter([(X, Y)] * 2), iter([(X, Y)])])  # one-shot: found as it goes
    with pytest.raises(ValueError, match="loader 1 ended after 1 batches while loader 0 gave"):
        list(ends)


def test_stack_batches_refuses_batches_that_cannot_be_stacked_naming_the_loader():
    other = np.zeros((3, 12)), np.zeros((1, 12))
    # the same number of batches, but batch 2 has 2 samples in one and 4 in the other
    with pytest.raises(ValueError, match=r"at batch 2, array 0 of loader 1 is \(3, 4\) float64"):
        list(tv.stack_batches([tv.batches(X, Y, 4), tv.batches(*other, 4)]))
    with pytest.raises(ValueError, match=r"loader 1 .* \(3, 4\) float32 .* one shape and dtype"):
        list(tv.stack_batches([tv.batches(X, Y, 4), tv.batches(X.astype(np.float32), Y, 4)]))
    with pytest.raises(ValueError, match=r"loader 1 gives array and loader 0 \(array, array\)"):
        list(tv.stack_batches([tv.batches(X, Y, 4), tv.batches(X, size=4)]))


# --- schedules --------------------------------------------------------------------------------
@pytest.mark.parametrize("eta", [-0.1, math.nan, math.inf])
def test_a_schedule_refuses_a_negative_or_non_finite_rate(eta):
    with pytest.raises(ValueError, match="eta must be a finite number ≥ 0"):
        tv.schedules.Cosine(eta, steps=10)


@pytest.mark.parametrize("decay", [0.0, -0.5, math.inf])
def test_exponential_refuses_a_decay_that_is_not_positive(decay):
    with pytest.raises(ValueError, match="decay γ must be a finite number > 0"):
        tv.schedules.Exponential(0.1, decay)


def test_exponential_between_refuses_an_end_at_zero():
    with pytest.raises(ValueError, match="cannot start or end at 0"):
        tv.schedules.Exponential.between(0.1, 0.0, 100)


@pytest.mark.parametrize("steps", [0, -1, 2.5])
def test_cosine_refuses_steps_that_are_not_a_count(steps):
    with pytest.raises(ValueError, match="steps must be an integer ≥ 1"):
        tv.schedules.Cosine(0.1, steps=steps)


def test_step_refuses_boundaries_out_of_order():
    with pytest.raises(ValueError, match="increasing order"):
        tv.schedules.Step(0.1, boundaries=(10, 5))


def test_step_refuses_a_negative_boundary():
    with pytest.raises(ValueError, match="each boundary must be an integer ≥ 0"):
        tv.schedules.Step(0.1, boundaries=(-1,))


def test_train_refuses_a_schedule_that_is_not_callable():
    model = net()
    with pytest.raises(TypeError, match="schedule must be a callable"):
        tv.train(tv.mse, model, [(X, Y)], tv.setup(tv.Descent(0.1), model), schedule=0.1)


def test_train_refuses_a_schedule_giving_a_negative_rate_before_any_step():
    model = net()
    before = model[0].weight.copy()
    with pytest.raises(ValueError, match="eta must be ≥ 0"):
        tv.train(tv.mse, model, [(X, Y)], tv.setup(tv.Descent(0.1), model),
                 schedule=lambda t: -0.1, progress=False)  # fmt: skip
    assert (model[0].weight == before).all()


# --- adjust, freeze, thaw ---------------------------------------------------------------------
def test_adjust_refuses_a_name_no_rule_has():
    state = tv.setup(tv.Descent(0.1), net())
    with pytest.raises(ValueError, match="no rule in this state has a hyperparameter 'lr'"):
        tv.adjust(state, lr=0.01)


def test_adjust_refuses_nothing_to_set():
    with pytest.raises(TypeError, match="name the hyperparameters"):
        tv.adjust(tv.setup(tv.Descent(0.1), net()))


def test_adjust_refuses_a_value_the_rule_refuses_and_changes_nothing():
    rule = tv.OptimiserChain(tv.Descent(0.1), tv.Momentum(0.1))
    state = tv.setup(rule, net())
    with pytest.raises(ValueError, match="rho must be in"):
        tv.adjust(state, eta=0.5, rho=1.5)
    assert rule.rules[0].eta == 0.1 and rule.rules[1].eta == 0.1


def test_adjust_refuses_a_negative_rate():
    with pytest.raises(ValueError, match="eta must be ≥ 0"):
        tv.adjust(tv.setup(tv.Descent(0.1), net()), eta=-0.01)


def test_adjust_refuses_the_model_instead_of_the_state():
    with pytest.raises(TypeError, match="takes the optimiser state"):
        tv.adjust(net(), eta=0.1)


def test_freeze_refuses_a_path_that_is_not_in_the_state():
    with pytest.raises(KeyError, match=r"nothing at 'model.layers\[5\]'"):
        tv.freeze(tv.setup(tv.Descent(0.1), net()), "model.layers[5]")


def test_thaw_refuses_something_that_is_neither_a_path_nor_a_subtree():
    with pytest.raises(TypeError, match="neither a path"):
        tv.thaw(tv.setup(tv.Descent(0.1), net()), 3)


# --- rules by path ----------------------------------------------------------------------------
def test_setup_refuses_a_parameter_without_a_rule():
    with pytest.raises(ValueError, match=r"no rule for model.layers\[0\].weight"):
        tv.setup({"model.layers[1]": tv.Descent(0.1)}, net())


def test_setup_refuses_a_path_that_names_no_parameter():
    with pytest.raises(ValueError, match=r"'model.layers\[7\]' names no parameter"):
        tv.setup({"model": tv.Descent(0.1), "model.layers[7]": tv.Descent(0.2)}, net())


def test_setup_refuses_a_value_that_is_not_a_rule():
    with pytest.raises(TypeError, match="must map to an optimisation rule"):
        tv.setup({"model": 0.1}, net())


def test_setup_refuses_a_key_that_is_not_a_path():
    with pytest.raises(TypeError, match="the keys are paths"):
        tv.setup({0: tv.Descent(0.1)}, net())


def test_setup_with_delta_rules_refuses_an_adaptive_rule_in_any_subtree():
    from tinyvec.deltarules import Compensation

    with pytest.raises(ValueError, match="δ-rules need an optimiser whose step is α·gradient"):
        tv.setup({"model": tv.Descent(0.1), "model.layers[1]": tv.Adam()}, net(),
                 delta=Compensation(0.2))  # fmt: skip
