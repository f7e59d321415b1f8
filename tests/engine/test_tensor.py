"""The tracing machinery: accumulation on reuse, the deep chain, no_grad, backward."""

import sys

import numpy as np
import pytest

import tinyvec as tv
from tinyvec import ops
from tinyvec.engine.tensor import toposort


def test_reused_node_accumulates_every_path():
    """y = x·x + 3x + x³ reuses x five times: dy/dx = 2x + 3 + 3x²."""
    x = np.array([0.5, -2.0, 3.0])
    g = tv.gradient(lambda t: ops.sum(t * t + 3 * t + t * t * t), x)
    np.testing.assert_allclose(g, 2 * x + 3 + 3 * x**2, rtol=1e-14)


def test_diamond_graph_accumulates_into_the_shared_intermediate():
    """h = exp(x) feeds two branches: dL/dx = (cos h + 2h) exp(x)... with L = Σ sin-free parts."""
    x = np.array([0.1, 0.7])
    g = tv.gradient(lambda t: ops.sum(ops.exp(t) * 2.0 + ops.exp(t) ** 2), x)

    def diamond(t):
        h = ops.exp(t)
        return ops.sum(h * 2.0 + h * h)

    np.testing.assert_allclose(tv.gradient(diamond, x), g, rtol=1e-14)
    np.testing.assert_allclose(g, 2 * np.exp(x) + 2 * np.exp(2 * x), rtol=1e-14)


def test_chain_of_10000_ops_does_not_recurse():
    """x ← x·1.0001 + 0, 10,000 times: the gradient is 1.0001^10000 per element."""
    limit = sys.getrecursionlimit()

    def deep(t):
        for _ in range(10_000):
            t = t * 1.0001 + 0.0
        return ops.sum(t)

    x = np.array([1.0, 2.0])
    loss, g = tv.withgradient(deep, x)
    assert sys.getrecursionlimit() == limit
    np.testing.assert_allclose(g, [1.0001**10_000] * 2, rtol=1e-10)
    assert float(loss) == pytest.approx(3 * 1.0001**10_000, rel=1e-10)


def test_toposort_puts_each_node_after_its_inputs():
    x = tv.Tensor(np.ones(2))
    a = x * 2.0
    b = ops.exp(a)
    c = a + b
    order = toposort(ops.sum(c))
    position = {id(n): i for i, n in enumerate(order)}
    for node in order:
        for p in node.parents:
            if id(p) in position:
                assert position[id(p)] < position[id(node)]
    assert {id(a), id(b), id(c)} <= position.keys()


def test_backward_needs_a_scalar_or_a_cotangent():
    x = tv.Tensor(np.array([1.0, 2.0]))
    y = x * x
    with pytest.raises(ValueError, match="scalar"):
        y.backward()
    y.backward(np.array([1.0, 10.0]))
    assert x.grad.tolist() == [2.0, 40.0]


def test_no_grad_records_nothing_and_restores_itself():
    x = tv.Tensor(np.array([1.0, 2.0]))
    with tv.no_grad():
        y = x * 3.0
    assert isinstance(y, tv.Tensor) and y.parents == () and y.vjp is None
    z = x * 3.0
    assert z.parents  # recording again after the block

    def f(t):
        with tv.no_grad():
            frozen = ops.sum(t * t * t)  # a constant: contributes no gradient
        return ops.sum(t * t) + frozen

    np.testing.assert_array_equal(tv.gradient(f, np.array([1.0, 2.0])), [2.0, 4.0])


def test_no_grad_restores_on_error():
    with pytest.raises(RuntimeError), tv.no_grad():
        raise RuntimeError
    assert (tv.Tensor(np.ones(1)) * 2.0).parents


def test_tensor_basics():
    t = tv.Tensor(np.arange(6.0).reshape(3, 2))
    assert t.shape == (3, 2) and t.ndim == 2 and t.size == 6 and len(t) == 3
    assert t.dtype == np.float64
    assert float(tv.Tensor(np.array(2.5))) == 2.5
    assert "grad_fn" in repr(t * 1.0) and "grad_fn" not in repr(t)


def test_ndarray_on_the_left_defers_to_tensor():
    x = np.array([1.0, 2.0])
    g = tv.gradient(lambda t: ops.sum(np.array([3.0, 4.0]) * t - np.ones(2) / t), x)
    np.testing.assert_allclose(g, [3.0 + 1.0, 4.0 + 0.25])


def test_gradient_of_a_plain_array_and_of_several():
    assert tv.gradient(lambda x: ops.sum(x * x), np.array([3.0])).tolist() == [6.0]
    ga, gb = tv.gradient(lambda a, b: ops.sum(a * b), np.array([2.0]), np.array([5.0]))
    assert ga.tolist() == [5.0] and gb.tolist() == [2.0]


def test_non_scalar_loss_is_refused():
    with pytest.raises(ValueError, match="scalar loss"):
        tv.gradient(lambda x: x * 2.0, np.ones(3))


def test_each_node_names_its_op():
    x = tv.Tensor(np.array([[1.0, 2.0]]))
    y = ops.reduce_sum(ops.exp(x * x) @ np.ones((2, 1)))
    assert [y.op, y.parents[0].op, y.parents[0].parents[0].op] == ["sum", "matmul", "exp"]
    assert "op='sum'" in repr(y) and x.op == ""  # a leaf was made by no op
    d = tv.Dense(2, 1, rng=0)
    out = tv.gradient(lambda m: ops.sum(m(np.ones((2, 3)))), d)  # Dense is one fused node
    assert out["model.weight"].shape == (1, 2)
    w = tv.Tensor(d.weight)
    d.weight = w
    try:
        assert d(np.ones((2, 3))).op == "Dense"
    finally:
        d.weight = w.data


def test_operators_are_defined_on_the_class():
    for name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
                 "__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__matmul__",
                 "__rmatmul__", "__neg__", "__getitem__", "mT", "T", "sum", "mean", "reshape"):  # fmt: skip
        assert name in vars(tv.Tensor), name
