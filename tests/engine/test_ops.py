"""Every op, activation and loss against central finite differences, from ONE table.

Each entry of `CASES` is an op and a hypothesis strategy for its inputs (float64 NumPy
arrays, in domains where the op is smooth: log/sqrt on positives, pow with a positive base,
relu/abs/maximum kept away from their kinks). Two tests run over the whole table on every
array namespace of the `xp` fixture:

- `test_vjp_matches_finite_differences`: the engine's ∂/∂x of ⟨f(x), u⟩ for a random
  cotangent u, element by element against (f(x+εe) - f(x-εe)) / 2ε;
- `test_dot_product`: ⟨J v, u⟩ = ⟨v, Jᵀ u⟩ with J v by central differences along a random
  direction v and Jᵀ u the engine's vector-Jacobian product.
"""

from dataclasses import dataclass

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec import ops
from tinyvec.backend import to_numpy

EPS = 1e-6


# --- input strategies -----------------------------------------------------------------------
def floats(lo=-2.0, hi=2.0):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def away_from(offset):
    """Values k + offset + u (k integer in -2..1, |u| ≤ 0.1): two sets with offsets 0.25 and
    0.75 never come closer than 0.3, and offset 0.5 keeps |x| ≥ 0.4 (no kink within ε)."""
    return st.builds(lambda k, u: k + offset + u, st.integers(-2, 1), floats(-0.1, 0.1))


def array(shape, elements=None):
    return hnp.arrays(np.float64, shape, elements=floats() if elements is None else elements)


def unary(elements=None, min_dims=0, max_dims=3, min_side=1):
    shapes = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=4)
    return shapes.flatmap(lambda s: st.tuples(array(s, elements)))


@st.composite
def broadcasting_pair(draw, x_elements=None, y_elements=None):
    """Two arrays whose shapes broadcast against each other (dims 0-3, sides 1-3)."""
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
    x_shape, y_shape = shapes.input_shapes
    return draw(array(x_shape, x_elements)), draw(array(y_shape, y_elements))


sides = st.integers(1, 4)


@st.composite
def matmul_pair(draw, batch=False):
    n, k, m = draw(sides), draw(sides), draw(sides)
    x_shape = (draw(st.integers(1, 3)), n, k) if batch else (n, k)
    return draw(array(x_shape)), draw(array((k, m)))


@st.composite
def same_shape_pair(draw, min_size=1):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4))
    assume(np.prod(shape) >= min_size)
    return draw(array(shape)), draw(array(shape))


@st.composite
def concat_inputs(draw, n=2, axis=0):
    """n 2-D arrays that agree on every axis but ``axis``."""
    other = draw(sides)
    shapes = [(draw(sides), other) if axis in (0, -2) else (other, draw(sides)) for _ in range(n)]
    return tuple(draw(array(s)) for s in shapes)


@st.composite
def logits_and_targets(draw):
    C, B = draw(st.integers(2, 4)), draw(sides)
    logits = draw(array((C, B), floats(-5, 5)))
    weights = draw(array((C, B), floats(0.01, 1)))
    return logits, weights / weights.sum(axis=0, keepdims=True)  # columns are distributions


@st.composite
def correlated_pair(draw):
    """ŷ and y for r2, neither of them (nearly) constant."""
    yhat, y = draw(same_shape_pair(min_size=3))
    assume(yhat.std() > 0.1 and y.std() > 0.1)
    return yhat, y


@st.composite
def getitem_inputs(draw):
    x = draw(array((draw(st.integers(2, 4)), draw(st.integers(2, 4)))))
    index = draw(
        st.sampled_from(
            [
                (slice(1, None), slice(None)),
                (slice(None, None, 2), slice(1, None)),
                (slice(None, None, -1), slice(None, -1)),
                (1, slice(None)),
                (slice(None), 0),
                (0, 1),
            ]
        )
    )
    return x, index


def two_members(y):
    """A stack's (2, features, batch) values made of y: y and 2y."""
    return ops.concat([ops.reshape(y, (1, *y.shape)), ops.reshape(2 * y, (1, *y.shape))])


# --- the table ------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    fn: object  # f(*inputs) -> array or Tensor
    inputs: st.SearchStrategy  # draws a tuple of float64 NumPy arrays
    wrt: tuple[int, ...] | None = None  # which inputs get gradients (None: all)


ACTIVATIONS = [
    tv.identity,
    tv.tanh,
    tv.atan,
    tv.relu,
    tv.leakyrelu,
    tv.sigmoid,
    tv.softplus,
    tv.gelu,
]

CASES = [
    Case("add", ops.add, broadcasting_pair()),
    Case("sub", ops.sub, broadcasting_pair()),
    Case("mul", ops.mul, broadcasting_pair()),
    Case("div", ops.div, broadcasting_pair(y_elements=away_from(0.5))),
    Case("neg", ops.neg, unary()),
    Case("power", ops.power, broadcasting_pair(x_elements=floats(0.5, 2))),
    Case("power_int_exponent", lambda x: ops.power(x, 3), unary()),
    Case("power_float_exponent", lambda x: x**2.5, unary(floats(0.2, 2))),
    Case("matmul", ops.matmul, matmul_pair()),
    Case("matmul_batched_broadcast", ops.matmul, matmul_pair(batch=True)),
    Case("matrix_transpose", ops.matrix_transpose, unary(min_dims=2)),
    Case("T", lambda x: x.T, unary(min_dims=2, max_dims=2)),
    Case("reshape", lambda x: ops.reshape(x, (x.shape[-1], -1)), unary(min_dims=1)),
    Case("getitem", ops.getitem, getitem_inputs(), wrt=(0,)),  # the drawn index is constant
    Case("concat_axis0", lambda x, y: ops.concat([x, y], axis=0), concat_inputs(2, 0)),
    Case("concat_axis1", lambda x, y: ops.concat([x, y], axis=1), concat_inputs(2, 1)),
    Case("concat_last_axis", lambda x, y: ops.concat([x, y], axis=-1), concat_inputs(2, -1)),
    Case("vcat", ops.vcat, concat_inputs(3, 0)),
    Case("vcat_stack_shared", lambda x, y: ops.vcat(two_members(y), x), concat_inputs(2, 0)),
    Case("broadcast_to", lambda x: ops.broadcast_to(x, (3, *x.shape)), unary()),
    Case("sum", ops.sum, unary()),
    Case("sum_axis0", lambda x: ops.sum(x, axis=0), unary(min_dims=1)),
    Case("sum_last_axis_keepdims", lambda x: ops.sum(x, axis=-1, keepdims=True), unary(min_dims=1)),
    Case("sum_axes", lambda x: ops.sum(x, axis=(0, 1)), unary(min_dims=2)),
    Case("mean", ops.mean, unary()),
    Case("mean_axis1", lambda x: ops.mean(x, axis=1), unary(min_dims=2)),
    Case(
        "mean_axes_keepdims", lambda x: ops.mean(x, axis=(0, -1), keepdims=True), unary(min_dims=2)
    ),
    Case("logsumexp", ops.logsumexp, unary(min_dims=1)),
    Case("logsumexp_axis1", lambda x: ops.logsumexp(x, axis=1), unary(floats(-30, 30), min_dims=2)),
    Case("exp", ops.exp, unary()),
    Case("log", ops.log, unary(floats(0.2, 3))),
    Case("sqrt", ops.sqrt, unary(floats(0.2, 3))),
    Case("abs", ops.abs, unary(away_from(0.5))),
    Case("square", ops.square, unary()),
    Case("maximum", ops.maximum, broadcasting_pair(away_from(0.25), away_from(0.75))),
    Case("maximum_scalar", lambda x: ops.maximum(x, 0.5), unary(away_from(0.25))),
    Case(
        "operators",  # __rsub__, __rtruediv__, __truediv__, __pow__, __radd__ with scalars
        lambda x, y: ((2.0 - x) * y + 1.5 / (1.0 + x * x) - y / 2.0) ** 2 + 1.0,
        broadcasting_pair(),
    ),
    Case("matmul_operator", lambda x, y: (x @ y).mT @ x, matmul_pair()),
    *[
        Case(
            f"activation_{s.name}", s, unary(away_from(0.5) if "relu" in s.name else floats(-4, 4))
        )
        for s in ACTIVATIONS
    ],
    Case("mse", tv.mse, same_shape_pair()),
    Case("crossentropy", tv.crossentropy, logits_and_targets(), wrt=(0,)),
    Case("r2", tv.r2, correlated_pair()),
]


PARAMS = [pytest.param(c, id=c.name) for c in CASES]


# --- the two tests --------------------------------------------------------------------------
def as_xp(xp, a):
    return xp.asarray(np.asarray(a)) if isinstance(a, np.ndarray | np.generic) else a


def scalar_of(case, xp, args, u):
    """s(args) = ⟨f(args), u⟩ evaluated on plain arrays of namespace xp, as a float."""
    out = case.fn(*[as_xp(xp, a) for a in args])
    return float(np.sum(to_numpy(out) * u))


def engine_vjp(case, xp, args, u):
    """Jᵀ u for each differentiated input, from `tv.gradient` on arrays of namespace xp."""
    wrt = case.wrt if case.wrt is not None else tuple(range(len(args)))
    full = [as_xp(xp, a) for a in args]
    U = xp.asarray(u)

    def f(*tracked):
        for i, t in zip(wrt, tracked, strict=True):
            full[i] = t
        return ops.sum(case.fn(*full) * U)

    grads = tv.gradient(f, *[full[i] for i in wrt])
    grads = grads if isinstance(grads, tuple) else (grads,)
    result = {}
    for i, g in zip(wrt, grads, strict=True):
        g = np.zeros(args[i].shape) if g is None else to_numpy(g)
        assert g.shape == args[i].shape, f"gradient of input {i} has the wrong shape"
        result[i] = g
    return result


def check_against_finite_differences(case, xp, args, u, numgrad):
    for i, g in engine_vjp(case, xp, args, u).items():

        def s(xi, i=i):
            return scalar_of(case, xp, [*args[:i], xi, *args[i + 1 :]], u)

        np.testing.assert_allclose(g, numgrad(s, args[i].copy(), EPS), rtol=1e-5, atol=1e-6)


def cotangent(case, xp, args, seed):
    shape = to_numpy(case.fn(*[as_xp(xp, a) for a in args])).shape
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("case", PARAMS)
@given(data=st.data())
def test_vjp_matches_finite_differences(case, xp, numgrad, data):
    args = list(data.draw(case.inputs, label="inputs"))
    u = cotangent(case, xp, args, data.draw(st.integers(0, 2**16), label="seed"))
    check_against_finite_differences(case, xp, args, u, numgrad)


@pytest.mark.parametrize("case", PARAMS)
@given(data=st.data())
def test_dot_product(case, xp, data):
    """⟨J v, u⟩ = ⟨v, Jᵀ u⟩ for random u (output-shaped) and v (input-shaped)."""
    args = list(data.draw(case.inputs, label="inputs"))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    u = cotangent(case, xp, args, rng)
    grads = engine_vjp(case, xp, args, u)
    v = {i: rng.standard_normal(args[i].shape) for i in grads}

    def moved(t):
        return [a + t * v[i] if i in v else a for i, a in enumerate(args)]

    Jv_u = (scalar_of(case, xp, moved(EPS), u) - scalar_of(case, xp, moved(-EPS), u)) / (2 * EPS)
    v_JTu = sum(float(np.sum(v[i] * g)) for i, g in grads.items())
    assert Jv_u == pytest.approx(v_JTu, rel=1e-5, abs=1e-6)


# --- fixed inputs for the cases the strategies above do not draw ---------------------------
FIXED = [
    pytest.param(
        Case("power_scalar_base", lambda x: 2.0**x, None),
        [np.array([0.5, -1.0])],
        id="power_scalar_base",
    ),
    pytest.param(
        Case("matmul_matrix_vector", ops.matmul, None),
        [np.arange(6.0).reshape(2, 3), np.array([1.0, -2.0, 0.5])],
        id="matmul_matrix_vector",
    ),
    pytest.param(
        Case("matmul_vector_matrix", ops.matmul, None),
        [np.array([1.0, -2.0]), np.arange(6.0).reshape(2, 3)],
        id="matmul_vector_matrix",
    ),
    pytest.param(
        Case("matmul_vector_vector", ops.matmul, None),
        [np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.25, -1.0])],
        id="matmul_vector_vector",
    ),
]


@pytest.mark.parametrize(("case", "args"), FIXED)
def test_fixed_inputs(case, args, numgrad):
    check_against_finite_differences(case, np, args, cotangent(case, np, args, 0), numgrad)


# --- semantics that the table does not show -------------------------------------------------
def test_plain_arrays_in_plain_arrays_out():
    x = np.arange(6.0).reshape(2, 3)
    for out in (ops.exp(x), x @ ops.matrix_transpose(x), tv.tanh(x), tv.mse(x, x), ops.vcat(x, x)):
        assert not isinstance(out, tv.Tensor)


def test_unbroadcast_sums_back_to_the_input_shape():
    g = np.ones((2, 3, 4))
    assert ops.unbroadcast(g, np.zeros((3, 1))).tolist() == np.full((3, 1), 8.0).tolist()
    assert ops.unbroadcast(g, np.zeros(4)).tolist() == [6.0] * 4
    assert ops.unbroadcast(g, np.zeros((2, 3, 4))) is g
    assert ops.unbroadcast(g, 3.0) is None  # a Python number gets no gradient


def test_maximum_ties_go_to_the_first_argument():
    x, y = np.array([1.0, 2.0]), np.array([1.0, 3.0])
    gx, gy = tv.gradient(lambda a, b: ops.sum(ops.maximum(a, b)), x, y)
    assert gx.tolist() == [1.0, 0.0] and gy.tolist() == [0.0, 1.0]


def test_transpose_of_a_3d_tensor_asks_for_mT():
    t = tv.Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="mT"):
        _ = t.T


def test_public_ops_show_their_signature_and_a_docstring():
    import inspect

    for name in tv.ops.__all__:
        fn = getattr(tv.ops, name)
        if name in ("Tensor", "no_grad") or not callable(fn):
            continue
        sig = str(inspect.signature(fn))
        assert sig != "(*args, **kw)", name
        assert fn.__doc__ and fn.__doc__.strip(), name
    assert tv.ops.sum is tv.ops.reduce_sum and tv.ops.abs is tv.ops.absolute
    from tinyvec.engine import ops as engine_ops

    assert engine_ops.sum is engine_ops.reduce_sum  # the engine's own name still works
    with pytest.raises(AttributeError):
        engine_ops.nonsense  # noqa: B018
