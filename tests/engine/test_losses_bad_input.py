"""Losses refuse ambiguous input with one clear error instead of a plausible wrong number."""

import numpy as np
import pytest

import tinyvec as tv


def test_mse_refuses_shapes_that_only_broadcast():
    # (1, 32) against (32, 1) would broadcast to 32 × 32 and give a wrong mean
    with pytest.raises(tv.DimensionMismatch, match=r"ŷ \(1, 32\) and y \(32, 1\)"):
        tv.mse(np.zeros((1, 32)), np.ones((32, 1)))


def test_mse_refuses_shape_mismatch_inside_gradient():
    m = tv.Chain(tv.Dense(2, 1, rng=0))
    x, y = np.ones((2, 5)), np.ones((5, 1))
    with pytest.raises(tv.DimensionMismatch, match=r"\(1, 5\) and y \(5, 1\)"):
        tv.gradient(lambda m: tv.mse(m(x), y), m)


@pytest.mark.parametrize("loss", [tv.mse, tv.r2])
def test_losses_refuse_an_empty_batch(loss):
    with pytest.raises(ValueError, match="empty batch"):
        loss(np.zeros((1, 0)), np.zeros((1, 0)))


def test_crossentropy_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        tv.crossentropy(np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="empty batch"):
        tv.crossentropy(np.zeros((3, 0)), np.zeros(0, dtype=int))


def test_crossentropy_with_integer_labels_equals_the_one_hot_value():
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((4, 6)), np.array([0, 3, 1, 2, 3, 0])
    # the formula, written out: -mean_b log softmax(logits)[labels_b, b]
    logp = logits - np.log(np.exp(logits).sum(axis=0))
    expected = -np.mean(logp[labels, np.arange(6)])
    got = float(tv.crossentropy(logits, labels))
    assert got == pytest.approx(expected, rel=1e-13)
    assert got == pytest.approx(float(tv.crossentropy(logits, tv.onehot(labels, 4))), rel=1e-14)


def test_crossentropy_gradient_with_integer_labels():
    logits, labels = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 0.0]]), np.array([2, 1])
    g = tv.gradient(lambda z: tv.crossentropy(z, labels), logits)
    p = np.exp(logits) / np.exp(logits).sum(axis=0)
    np.testing.assert_allclose(g, (p - tv.onehot(labels, 3)) / 2, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("bad", [[0, 3], [-1, 0]])
def test_crossentropy_refuses_labels_outside_the_classes(bad):
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        tv.crossentropy(np.zeros((3, 2)), np.array(bad))


@pytest.mark.parametrize("bad", [[0, 3], [-1, 0]])
def test_onehot_refuses_labels_outside_the_classes(bad):
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        tv.onehot(np.array(bad), 3)


def test_onehot_refuses_non_integer_labels():
    with pytest.raises(ValueError, match="vector of integers"):
        tv.onehot(np.array([0.0, 1.0]), 2)


def test_crossentropy_refuses_a_wrong_number_of_labels():
    with pytest.raises(tv.DimensionMismatch, match="3 labels for a batch of 2"):
        tv.crossentropy(np.zeros((4, 2)), np.array([0, 1, 2]))


def test_crossentropy_refuses_float_labels_vector():
    with pytest.raises(tv.DimensionMismatch, match="integer class labels"):
        tv.crossentropy(np.zeros((4, 2)), np.array([0.0, 1.0]))


def test_crossentropy_refuses_transposed_targets():
    with pytest.raises(tv.DimensionMismatch, match=r"\(3, 2\) and y \(2, 3\)"):
        tv.crossentropy(np.zeros((3, 2)), np.zeros((2, 3)))


def test_a_loss_refuses_arrays_of_two_libraries():
    array_api_strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="mixes numpy and array_api_strict"):
        tv.mse(np.zeros((1, 2)), array_api_strict.zeros((1, 2)))


@pytest.mark.parametrize("target", [0.0, [[1.0, 2.0]], None])
def test_a_target_that_is_not_an_array_is_one_type_error(target):
    with pytest.raises(TypeError, match=r"tv.mse\(ŷ, y\): y must be an array"):
        tv.mse(np.zeros((1, 2)), target)


# --- targets that are not numbers: one TypeError naming the argument, on every road ----------
STRINGS = [np.array([["a", "b", "c"]]), np.array([[None, 1.0, 2.0]]), np.array([[1j, 0, 0]])]


@pytest.mark.parametrize("y", STRINGS, ids=["str", "object", "complex"])
@pytest.mark.parametrize("loss", [tv.mse, tv.r2, tv.crossentropy], ids=lambda f: f.__name__)
def test_a_target_of_strings_or_objects_is_one_type_error(loss, y):
    with pytest.raises(TypeError, match=r"y holds .* not real numbers"):
        loss(np.zeros((1, 3)), y)


def test_a_vector_of_string_labels_is_one_type_error():
    with pytest.raises(TypeError, match=r"y holds <U1 values, not real numbers"):
        tv.crossentropy(np.zeros((2, 3)), np.array(["a", "b", "c"]))


@pytest.mark.parametrize("loss", [tv.mse, lambda m, x, y: tv.mse(m(x), y)], ids=["mse", "fn"])
def test_string_targets_are_one_type_error_on_the_default_and_compiled_road(loss):
    m = tv.Chain(tv.Dense(2, 1, rng=0))
    state = tv.setup(tv.Descent(0.1), m)
    x, y, weight = np.ones((2, 3)), np.array([["a", "b", "c"]]), m[0].weight.copy()
    with pytest.raises(TypeError, match="not real numbers"):
        tv.train(loss, m, [(x, y)], state, progress=False)
    with pytest.raises(TypeError, match="not real numbers"):
        tv.compile(loss, m, state)(x, y)
    with tv.fast.off(), pytest.raises(TypeError, match="not real numbers"):
        tv.compile(loss, m, state)(x, y)
    assert (m[0].weight == weight).all()


def test_boolean_predictions_are_one_type_error():
    """Found by the fuzz pass (tests/test_fuzz.py): ŷ and y both boolean ended in NumPy's
    'boolean subtract is not supported'. Boolean targets stay fine."""
    with pytest.raises(TypeError, match="ŷ holds bool values"):
        tv.mse(np.ones((1, 2), bool), np.ones((1, 2), bool))
    assert float(tv.mse(np.ones((1, 2)), np.ones((1, 2), bool))) == 0.0


def test_one_target_for_a_stacks_outputs_says_to_give_each_member_its_own():
    """Found by the audit: the inputs of a stack may be shared, (in, batch), but its targets
    not, and tv.train(tv.mse, stack, [(x, y)], …) said "features × batch; reshape or
    transpose one of them", which neither does."""
    stack = tv.stack([tv.Dense(1, 1, rng=0), tv.Dense(1, 1, rng=1)])
    x, y = np.ones((1, 4)), np.zeros((1, 4))
    with pytest.raises(tv.DimensionMismatch, match=r"give each member its targets, np\.stack"):
        tv.train(tv.mse, stack, [(x, y)], tv.setup(tv.Descent(0.1), stack), progress=False)
    tv.train(
        tv.mse, stack, [(x, np.stack([y] * 2))], tv.setup(tv.Descent(0.1), stack), progress=False
    )
