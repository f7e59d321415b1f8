"""Bad input to tv.Activation: one clear error when it is made, not a wrong record later."""

import contextlib

import numpy as np
import pytest

import tinyvec as tv


def test_a_one_array_numpy_function_as_derivative_is_refused():
    """Found by the audit: Activation("sin", np.sin, np.cos) passed tv.gradcheck, but its
    derivative was called as np.cos(A, O), and NumPy took O as its out=: after every gradient
    the layer's output record (and the next layer's input) held cos(A), not sin(A). Wrapped,
    the records are right on both roads."""
    with pytest.raises(TypeError, match=r"calls derivative\(A, O\), which <ufunc 'cos'> \(a NumPy"):
        tv.Activation("sin", np.sin, np.cos)
    sin = tv.Activation("sin", np.sin, lambda A, O: np.cos(A))
    x, y = np.random.default_rng(0).standard_normal((3, 5)), np.zeros((1, 5))
    for road in (contextlib.nullcontext(), tv.fast.off()):
        m = tv.Chain(tv.Dense(3, 4, sin, rng=0), tv.Dense(4, 1, rng=1))
        with road:
            tv.gradient(lambda m: tv.mse(m(x), y), m)
        assert np.array_equal(m[0].output, np.sin(m[0].preact))
        assert np.array_equal(m[1].input, m[0].output)


@pytest.mark.parametrize(
    ("args", "call"),
    [
        ((np.sin, lambda A: 3 * A), r"derivative\(A, O\)"),
        ((lambda A, O: A, lambda A, O: A), r"f\(A\)"),
        ((np.sin, None, np.multiply), r"backprop\(g, A, O\)"),
        ((np.sin, None, lambda g, A: g), r"backprop\(g, A, O\)"),
    ],
    ids=["derivative-of-A-alone", "f-of-two", "backprop-ufunc", "backprop-of-two"],
)
def test_functions_that_cannot_take_their_arrays_are_refused_naming_the_call(args, call):
    """Found by the audit: derivative=lambda A: 3 * A ended, at the first gradient, in
    "<lambda>() takes 1 positional argument but 2 were given"."""
    with pytest.raises(TypeError, match=rf"calls {call}, which .* cannot take: give a function"):
        tv.Activation("s", *args)
