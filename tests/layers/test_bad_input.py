"""Bad input to layers: one clear error that says what to do."""

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.layers.base import nparams


@pytest.mark.parametrize("bias", [0.5, 1, "yes", [0.0, 0.0]], ids=repr)
def test_a_bias_that_is_not_an_array_or_a_flag_is_refused(bias):
    with pytest.raises(TypeError, match=r"bias must be True, False or an array of shape \(2,\)"):
        tv.Dense(3, 2, bias=bias)


@pytest.mark.parametrize("shape", [(2, 1), (1, 2), (3,), ()], ids=str)
def test_a_bias_of_the_wrong_shape_is_refused(shape):
    with pytest.raises(tv.DimensionMismatch, match=r"bias must have shape \(2,\)"):
        tv.Dense(3, 2, bias=np.zeros(shape))


def test_the_bias_flags_and_a_right_bias():
    assert tv.Dense(3, 2, bias=False).bias is None and tv.Dense(3, 2, bias=None).bias is None
    assert tv.Dense(3, 2, bias=np.ones(2)).bias.tolist() == [1.0, 1.0]
    assert tv.Dense.from_weights(np.ones((2, 3)), np.ones(2)).bias.shape == (2,)


class MethodSize:
    """An array whose ``size`` is a method, as torch tensors have (wrapping a NumPy array)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype = a, a.shape, a.dtype

    def size(self):
        return self.a.shape

    def __array_namespace__(self, api_version=None):
        return np


def test_nparams_counts_arrays_whose_size_is_a_method():
    d = tv.Dense(3, 2)
    d.weight, d.bias = MethodSize(d.weight), MethodSize(d.bias)
    assert nparams(d) == (2, 8, 64)


@pytest.mark.parametrize("x", [np.array([["a", "b"]] * 3), np.array([[None, 1.0]] * 3)])
def test_an_input_of_strings_or_objects_is_one_type_error_on_both_roads(x):
    m = tv.Chain(tv.Dense(3, 2, rng=0), tv.Dense(2, 1, rng=1))
    with pytest.raises(TypeError, match="takes real numbers"):
        m(x)
    with tv.fast.off(), pytest.raises(TypeError, match="takes real numbers"):
        m(x)


@pytest.mark.parametrize(
    ("n_in", "n_out", "error"),
    [(0, 2, ValueError), (2, -1, ValueError), (2, None, TypeError), (2.5, 2, TypeError),
     ("2", 2, TypeError), (True, 2, TypeError)],
)  # fmt: skip
def test_dense_sizes_that_are_not_whole_numbers_of_features_are_refused(n_in, n_out, error):
    """Found by the fuzz pass (tests/test_fuzz.py): Dense(0, None) ended in a TypeError of
    Python's, Dense(2.5, 2) in NumPy's, Dense(0, 2) in a ZeroDivisionError."""
    with pytest.raises(error, match=r"Dense\(in, out\): (in|out) must be"):
        tv.Dense(n_in, n_out)
    assert tv.Dense(np.int64(2), 3).weight.shape == (3, 2)
