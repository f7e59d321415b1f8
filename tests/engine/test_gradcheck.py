"""tv.gradcheck: passes correct gradients (layers, losses, ops, on any arguments), catches a
wrong vector-Jacobian product and names its worst entry, and changes nothing it is given."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvec as tv


def wrong_cube():
    """x³ with the derivative 2x² instead of 3x²."""
    return tv.ops.primitive(lambda x: x**3, lambda g, out, x: (g * 2 * x * x,))


@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=4),
                  elements=st.floats(-2, 2)))  # fmt: skip
def test_correct_gradients_pass(x):
    m = tv.Chain(tv.Dense(x.shape[0], 3, tv.tanh, rng=0), tv.Dense(3, 2, tv.gelu, rng=1))
    y = np.ones((2, x.shape[1]))
    report = tv.gradcheck(lambda m, x: tv.mse(m(x), y), m, x)
    assert report.ok and bool(report)
    assert report.checked == 3 * x.shape[0] + 3 + 2 * 3 + 2 + x.size


def test_a_wrong_vjp_is_caught_and_its_worst_entry_named():
    cube = wrong_cube()
    x = np.array([0.5, -3.0, 1.0])
    with pytest.raises(
        tv.GradcheckError, match=r"worst: args\[0\]\[1\]: engine 18, finite differences 27"
    ):
        tv.gradcheck(lambda x: tv.ops.sum(cube(x)), x)  # fmt: skip
    report = tv.gradcheck(lambda x: tv.ops.sum(cube(x)), x, raise_exception=False)
    assert not report and report.worst == "args[0][1]"
    assert report.engine == pytest.approx(18) and report.numeric == pytest.approx(27, rel=1e-8)


def test_a_wrong_layer_is_named_by_its_parameter_path():
    cube = wrong_cube()

    class Cubed(tv.Layer):
        params = ("weight",)

        def __init__(self):
            self.weight = np.array([1.0, 2.0])

        def __call__(self, x):
            return cube(tv.ops.reshape(self.weight, (2, 1))) * x

    m = tv.Chain(tv.Dense(2, 2, rng=0), Cubed())
    with pytest.raises(tv.GradcheckError, match=r"model.layers\[1\].weight\[1\]"):
        tv.gradcheck(lambda m: tv.ops.sum(m(np.ones((2, 3)))), m)


def test_integer_labels_are_constants():
    logits, labels = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 0.0]]), np.array([2, 1])
    report = tv.gradcheck(tv.crossentropy, logits, labels)
    assert report.ok and report.checked == 6


def test_a_float32_model_is_checked_in_float64_and_left_unchanged():
    m = tv.f32(tv.Chain(tv.Dense(3, 2, tv.sigmoid, rng=0)))
    x = np.linspace(-1, 1, 6).reshape(3, 2)
    before = m[0].weight.copy()
    report = tv.gradcheck(lambda m, x: tv.mse(m(x), np.zeros((2, 2))), m, x, rtol=1e-7)
    assert report.ok
    assert m[0].weight.dtype == np.float32 and m[0].weight.tobytes() == before.tobytes()


def test_the_arguments_are_not_changed():
    x = np.array([1.0, 2.0])
    tv.gradcheck(lambda x: tv.ops.sum(x * x), x)
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_a_non_scalar_f_is_refused():
    with pytest.raises(ValueError, match="must return a scalar"):
        tv.gradcheck(lambda x: x * 2, np.ones(2))


def test_no_arguments_or_a_bad_eps_are_refused():
    with pytest.raises(TypeError, match="give the arguments"):
        tv.gradcheck(lambda: 0.0)
    with pytest.raises(ValueError, match="eps"):
        tv.gradcheck(lambda x: tv.ops.sum(x), np.ones(2), eps=0)


def test_a_non_finite_f_is_refused():
    with pytest.raises(ValueError, match="f is nan"):
        tv.gradcheck(lambda x: tv.ops.sum(x * np.nan), np.ones(2))


def test_report_reads_as_a_sentence():
    text = str(tv.gradcheck(lambda x: tv.ops.sum(x * x), np.array([3.0])))
    assert text.startswith("gradients match (1 entries") and "worst: args[0][0]: engine 6" in text
