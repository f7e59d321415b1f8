"""`tv.gradcheck` with bad arguments: one clear error before any work, never a pass."""

import math

import numpy as np
import pytest

import tinyvec as tv

# a wrong derivative: 2x² for the derivative of x³
WRONG = tv.ops.primitive(lambda x: x**3, lambda g, out, x: (g * 2 * x**2,))


def wrong(x):
    return tv.ops.sum(WRONG(x))


@pytest.mark.parametrize("name", ["rtol", "atol", "eps"])
@pytest.mark.parametrize("value", [math.nan, -1e-5, math.inf], ids=["nan", "negative", "inf"])
def test_a_nan_negative_or_infinite_tolerance_is_refused(name, value):
    """A NaN rtol or atol once passed a wrong derivative (every comparison with NaN is false)."""
    with pytest.raises(ValueError, match=f"gradcheck: {name} must be"):
        tv.gradcheck(wrong, np.array([1.0, 2.0]), **{name: value})


@pytest.mark.parametrize("value", ["1e-5", None, [1e-5], True])
def test_a_tolerance_that_is_not_a_number_is_one_type_error(value):
    with pytest.raises(TypeError, match="gradcheck: rtol must be a number"):
        tv.gradcheck(wrong, np.array([1.0]), rtol=value)


def test_a_zero_tolerance_is_allowed_and_the_wrong_derivative_still_fails():
    with pytest.raises(tv.GradcheckError):
        tv.gradcheck(wrong, np.array([1.0, 2.0]), rtol=0, atol=0)


def test_f_that_is_not_a_function_is_one_type_error():
    with pytest.raises(TypeError, match="f must be a function"):
        tv.gradcheck(np.array([1.0]), np.array([1.0]))


@pytest.mark.parametrize("x", [np.array(["a", "b"]), np.array([1, 2])], ids=["str", "int"])
def test_arguments_with_nothing_to_differentiate_are_one_type_error(x):
    """Found by the fuzz pass (tests/test_fuzz.py): a string array was passed to f untouched and
    ended in NumPy's error; an integer one checked nothing and passed."""
    with pytest.raises(TypeError, match="nothing to check"):
        tv.gradcheck(wrong, x)
