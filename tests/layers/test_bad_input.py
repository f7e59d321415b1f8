"""Bad input to layers: one clear error that says what to do."""

import contextlib

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


def test_integer_parameters_are_refused_not_rounded():
    """Found by the audit: Dense.from_weights(np.array([[1, 2]])) kept int64 weights; a float
    input was converted to them (0.4 → 0, so the output was 0, not 1.2) and every step was
    rounded away. Now the forward pass, on both roads, and setup/gradient refuse them."""
    m = tv.Chain(tv.Dense.from_weights(np.array([[1, 2]]), np.array([0])))
    x = np.full((2, 1), 0.4)
    for road in (contextlib.nullcontext(), tv.fast.off()):
        with road, pytest.raises(TypeError, match=r"floating-point.*int64|int64.*floating-point"):
            m(x)  # (the fast road walks the model first: there the walk's message)
    with pytest.raises(TypeError, match=r"into floating-point parameters.*int64"):
        m.layers[0](x)  # (a Dense called alone: its own forward)
    with pytest.raises(TypeError, match=r"Dense\.weight holds int64 values.*astype\(float\)"):
        tv.setup(tv.Descent(0.1), m)
    with pytest.raises(TypeError, match=r"Dense\.weight holds int64 values"):
        tv.gradient(lambda m: tv.mse(m(x), np.ones((1, 1))), m)
    m.layers[0].weight, m.layers[0].bias = np.array([[1.0, 2.0]]), np.array([0.0])
    assert m(x)[0, 0] == pytest.approx(1.2)


class Hidden(tv.Layer):
    """A layer keeping a Dense in an attribute it does not list in `children`."""

    def __init__(self):
        self.inner = tv.Dense(2, 2, rng=0)

    def __call__(self, x):
        return self.inner(x)


class Listed(Hidden):
    children = ("inner",)


def test_a_sub_layer_the_layer_does_not_name_is_refused():
    """Found by the audit: the Dense inside `Hidden` got no gradient and was never trained,
    silently. Named in `children` it trains; in `constants`, it stays fixed on purpose."""
    x, y = np.ones((2, 3)), np.zeros((2, 3))
    with pytest.raises(
        TypeError, match=r"Hidden\.inner holds a layer .* add 'inner' to its `children`"
    ):
        tv.setup(tv.Descent(0.1), tv.Chain(Hidden()))
    with pytest.raises(TypeError, match=r"Hidden\.inner holds a layer"):
        tv.gradient(lambda m: tv.mse(m(x), y), tv.Chain(Hidden()))
    m = tv.Chain(Listed())
    before = m[0].inner.weight.copy()
    tv.update(tv.setup(tv.Descent(0.1), m), m, tv.gradient(lambda m: tv.mse(m(x), y), m))
    assert not np.array_equal(before, m[0].inner.weight)


class Stringly(tv.Layer):
    params = "scale"  # ("scale",) was meant: a string is a tuple of its letters

    def __init__(self):
        self.scale = np.ones(2)


def test_params_written_as_a_string_is_refused_naming_the_tuple():
    """Found by the audit: params = "scale" ended in AttributeError: no attribute 's'."""
    with pytest.raises(TypeError, match=r"Stringly\.params must be a tuple of names: \('scale',\)"):
        tv.setup(tv.Descent(0.1), Stringly())


@pytest.mark.parametrize(
    ("weight", "bias"), [((5, 3), (4,)), ((4, 3), (5,)), ((4, 3), (4, 1))], ids=str
)
def test_a_bias_edited_out_of_step_with_its_weight_is_named_on_both_roads(weight, bias):
    """Found by the audit: a weight widened without its bias ended in NumPy's "operands could
    not be broadcast together with shapes (5,5) (4,1)", and a bias set to a column (4, 1) in
    the next layer's complaint about an input of shape (4, 4, 5)."""
    m = tv.Chain(tv.Dense(3, 4, tv.tanh, rng=0), tv.Dense(4, 1, rng=1))
    x = np.ones((3, 5))
    m(x)
    m[0].weight, m[0].bias = np.zeros(weight), np.zeros(bias)
    for road in (contextlib.nullcontext(), tv.fast.off()):
        with road, pytest.raises(tv.DimensionMismatch, match=r"has a bias of shape .* must be"):
            m(x)


@pytest.mark.parametrize(
    "made", [np.zeros((3, 4)), np.zeros(12), 0.5], ids=["in×out", "flat", "number"]
)
def test_an_init_that_returns_another_shape_is_refused(made):
    """Found by the audit: Dense(3, 4, init=lambda shape, rng: np.zeros((3, 4))) (in × out,
    as some libraries store it) made a layer taking 4 features, and its first input of 3
    features was refused as if the data were wrong."""
    with pytest.raises(tv.DimensionMismatch, match=r"init\(shape, rng\) must return .* \(4, 3\)"):
        tv.Dense(3, 4, init=lambda shape, rng: made)
