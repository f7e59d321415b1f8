"""Activations: each σ′ (`derivative`, used by Dense's fused backward) against finite
differences of σ, known values, lookup by name. Their vjps as ops are in test_ops.py."""

import copy
import pickle

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.engine.activations import ACTIVATIONS, activation

ALL = [tv.identity, tv.tanh, tv.atan, tv.relu, tv.leakyrelu, tv.sigmoid, tv.softplus, tv.gelu]


def away_from_zero():
    return st.builds(lambda v, s: v * s, st.floats(0.01, 5), st.sampled_from([-1.0, 1.0]))


@pytest.mark.parametrize("sigma", [s for s in ALL if s is not tv.identity], ids=repr)
@given(
    A=hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=5), elements=away_from_zero())
)
def test_derivative_matches_central_differences(sigma, xp, A):
    eps = 1e-6
    XA = xp.asarray(A)
    d = to_numpy(sigma.derivative(XA, sigma.f(XA)))
    fd = to_numpy(sigma.f(xp.asarray(A + eps))) - to_numpy(sigma.f(xp.asarray(A - eps)))
    np.testing.assert_allclose(d, fd / (2 * eps), rtol=1e-6, atol=1e-8)


def test_known_values():
    A = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(tv.relu(A), [0.0, 0.0, 2.0])
    np.testing.assert_allclose(tv.leakyrelu(A), [-0.01, 0.0, 2.0])
    np.testing.assert_allclose(tv.sigmoid(A), 1 / (1 + np.exp(-A)), rtol=1e-15)
    np.testing.assert_allclose(tv.softplus(A), np.log1p(np.exp(A)), rtol=1e-15)
    np.testing.assert_allclose(tv.atan(A), np.arctan(A))
    np.testing.assert_allclose(tv.tanh(A), np.tanh(A))
    # gelu: the tanh approximation, as Flux
    c = np.sqrt(2 / np.pi)
    np.testing.assert_allclose(tv.gelu(A), 0.5 * A * (1 + np.tanh(c * (A + 0.044715 * A**3))))
    assert tv.identity(A) is A


def test_sigmoid_and_softplus_do_not_overflow():
    A = np.array([-800.0, 800.0])
    np.testing.assert_array_equal(tv.sigmoid(A), [0.0, 1.0])
    np.testing.assert_allclose(tv.softplus(A), [0.0, 800.0])


def test_lookup_by_name_and_unknown_names():
    for name, sigma in ACTIVATIONS.items():
        assert activation(name) is sigma and repr(sigma) == name
    assert tv.Dense(2, 3, "tanh", rng=0).sigma is tv.tanh
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*tanh"):
        tv.Dense(2, 3, "swish")
    with pytest.raises(ValueError, match="unknown activation"):
        activation(np.tanh)


def test_custom_activation():
    cube = tv.Activation("cube", lambda A: A**3, lambda A, O: 3 * A**2)
    d = tv.Dense(2, 1, cube, rng=0)
    x = np.array([[0.3], [-0.2]])
    g = tv.gradient(lambda m: tv.ops.sum(m(x)), d)
    A = d.weight @ x + d.bias[:, None]
    np.testing.assert_allclose(g.weight, 3 * A**2 @ x.T)


# --- pickling and copying: worker processes and clusters send models around ----------------
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_builtin_activations_pickle_and_copy_to_themselves(name):
    sigma = ACTIVATIONS[name]
    assert pickle.loads(pickle.dumps(sigma)) is sigma
    assert copy.deepcopy(sigma) is sigma and copy.copy(sigma) is sigma


def _cube(A):
    return A**3


def _cube_derivative(A, O):
    return 3 * A * A


def test_a_custom_activation_of_module_level_functions_round_trips():
    cube = tv.Activation("cube", _cube, _cube_derivative)
    back = pickle.loads(pickle.dumps(cube))
    x = np.array([[0.5, -2.0]])
    np.testing.assert_array_equal(back(x), cube(x))
    g = tv.gradient(lambda a: tv.ops.sum(back(a)), x)
    np.testing.assert_allclose(g, 3 * x * x, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_and_its_derivative_stay_finite_for_huge_inputs(dtype):
    # A³ overflowed to inf (a RuntimeWarning) and A² · 0 gave a NaN derivative
    big = np.finfo(dtype).max
    A = np.array([-big, -(big**0.5), -50.0, 50.0, big**0.5, big], dtype=dtype)
    O = tv.gelu(A)
    np.testing.assert_array_equal(O, np.where(A > 0, A, 0))
    d = tv.gelu.derivative(A, O)
    np.testing.assert_array_equal(d, np.where(A > 0, 1, 0).astype(dtype))


def test_the_gelu_clip_changes_no_value():
    A = np.linspace(-12, 12, 2401)
    c = 0.7978845608028654
    unclipped = 0.5 * A * (1 + np.tanh(c * (A + 0.044715 * A**3)))
    np.testing.assert_array_equal(tv.gelu(A), unclipped)


def test_an_activation_needs_functions():
    with pytest.raises(TypeError, match="f must be a function"):
        tv.Activation("bad", "tanh", _cube_derivative)
    with pytest.raises(TypeError, match="give its derivative"):
        tv.Activation("bad", _cube, None)
