"""Second order (issue 22): gradients of gradients and the exact Hessian-vector product
``tv.hvp``, against central differences of gradients on random networks (float64), on every
op of the table, on NumPy and array-api-strict, and against PyTorch where it is installed."""

import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from nets import SIGMAS, architectures, model_from

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.layers.base import mirror, nodes


def random_tree(model, rng, xp=np):
    return mirror(
        nodes(model),
        lambda layer, name: xp.asarray(rng.standard_normal(getattr(layer, name).shape)),
    )


def shifted(model, v, s):
    """A copy of ``model`` at θ + s v."""
    new = tv.fmap(lambda a: a, model)
    for (path, _, _), (_, layer, name) in zip(
        tv.trainables(model), tv.trainables(new), strict=True
    ):
        setattr(layer, name, getattr(layer, name) + s * v[path])
    return new


def fd_hvp(loss, model, v, eps=1e-5):
    """(∇f(θ + εv) − ∇f(θ − εv)) / 2ε: central differences of gradients."""
    up = tv.gradient(loss, shifted(model, v, eps))
    down = tv.gradient(loss, shifted(model, v, -eps))
    return {
        p: (to_numpy(up[p]) - to_numpy(down[p])) / (2 * eps) for p, _, _ in tv.trainables(model)
    }


def data(seed, features=3, outputs=2, batch=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((features, batch)), rng.standard_normal((outputs, batch))


@given(architectures(), st.integers(0, 2**16), st.sampled_from(["mse", "crossentropy"]))
def test_hvp_matches_central_differences_of_gradients(blocks, seed, which):
    model = model_from(blocks, seed)
    x, y = data(seed)
    if which == "mse":
        loss = lambda m: tv.mse(m(x), y)  # noqa: E731
    else:
        labels = np.arange(x.shape[1]) % 2
        loss = lambda m: tv.crossentropy(m(x), labels)  # noqa: E731
    v = random_tree(model, np.random.default_rng(seed + 1))
    hv = tv.hvp(loss, model, v)
    expected = fd_hvp(loss, model, v)
    # a relu/leakyrelu kink within ±εv makes the difference of gradients jump (it measures a
    # step, not H v): there, halving ε changes it by far more than its O(ε²) error
    halved = fd_hvp(loss, model, v, eps=0.5e-5)
    assume(all(np.allclose(expected[p], halved[p], rtol=1e-4, atol=1e-5) for p in expected))
    for path, _, _ in tv.trainables(model):
        np.testing.assert_allclose(hv[path], expected[path], rtol=1e-5, atol=1e-6, err_msg=path)


@given(architectures(), st.integers(0, 2**16))
def test_the_hessian_is_symmetric(blocks, seed):
    model = model_from(blocks, seed)
    x, y = data(seed)
    loss = lambda m: tv.mse(m(x), y)  # noqa: E731
    rng = np.random.default_rng(seed)
    u, v = random_tree(model, rng), random_tree(model, rng)
    hu, hv = tv.hvp(loss, model, u), tv.hvp(loss, model, v)
    paths = [p for p, _, _ in tv.trainables(model)]
    u_hv = sum(float(np.vdot(u[p], hv[p])) for p in paths)
    v_hu = sum(float(np.vdot(v[p], hu[p])) for p in paths)
    assert u_hv == pytest.approx(v_hu, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("sigma", SIGMAS, ids=lambda s: s.name)
def test_each_activation_has_a_second_derivative(sigma):
    model = tv.Chain(tv.Dense(3, 4, sigma, rng=1), tv.Dense(4, 2, sigma, rng=2))
    x, y = data(7)
    loss = lambda m: tv.mse(m(x), y)  # noqa: E731
    v = random_tree(model, np.random.default_rng(3))
    hv, expected = tv.hvp(loss, model, v), fd_hvp(loss, model, v)
    for path, _, _ in tv.trainables(model):
        np.testing.assert_allclose(hv[path], expected[path], rtol=1e-5, atol=1e-7, err_msg=path)


# every op of the table, twice differentiated: f(x) = Σ c ⊙ op(x), on each namespace
OPS = {
    "add": lambda x: x + x * 2.0,
    "sub": lambda x: 1.0 - x * x,
    "mul": lambda x: x * x * x,
    "div": lambda x: 1.0 / (x * x + 1.0),
    "neg": lambda x: -(x * x),
    "power": lambda x: (x * x + 1.0) ** 1.5,
    "power array exponent": lambda x: tv.ops.power(x * x + 1.0, x),
    "matmul": lambda x: (
        tv.ops.reshape(x, (2, 3)) @ tv.ops.matrix_transpose(tv.ops.reshape(x * x, (2, 3)))
    ),
    "matmul vector": lambda x: tv.ops.reshape(x * x, (2, 3)) @ x[0:3],
    "getitem": lambda x: x[1:4] * x[0:3],
    "getitem newaxis": lambda x: tv.ops.reshape(x * x, (2, 3))[:, None, :],
    "concat": lambda x: tv.ops.concat([x * x, x[0:2]]) * 3.0,
    "vcat of a stack": lambda x: (
        tv.ops.vcat(tv.ops.reshape(x * x, (2, 1, 3)), tv.ops.reshape(x[0:3], (1, 3))) * 3.0
    ),
    "broadcast_to": lambda x: tv.ops.broadcast_to(x * x, (2, 6)) * x,
    "sum axis": lambda x: tv.ops.sum(tv.ops.reshape(x * x * x, (2, 3)), axis=0),
    "mean keepdims": lambda x: tv.ops.mean(
        tv.ops.reshape(x * x * x, (2, 3)), axis=1, keepdims=True
    ),
    "logsumexp": lambda x: tv.ops.logsumexp(tv.ops.reshape(x, (2, 3)), axis=0),
    "exp": lambda x: tv.ops.exp(x * 0.5),
    "log": lambda x: tv.ops.log(x * x + 1.0),
    "sqrt": lambda x: tv.ops.sqrt(x * x + 1.0),
    "abs": lambda x: tv.ops.abs(x) * x,
    "maximum": lambda x: tv.ops.maximum(x * x, x),
    "minimum": lambda x: tv.ops.minimum(x * x, x),
    "tanh": lambda x: tv.ops.tanh(x),
    "transpose": lambda x: tv.ops.reshape(x * x, (2, 3)).mT * tv.ops.reshape(x, (3, 2)),
    "mse": lambda x: tv.mse(tv.ops.reshape(x * x, (2, 3)), tv.ops.reshape(x, (2, 3))),
    "r2": lambda x: tv.r2(x * x, x),
}


@pytest.mark.parametrize("name", OPS)
def test_each_op_is_differentiated_twice(name, xp):
    op = OPS[name]
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.3, 1.5, 6) * np.array([1, -1, 1, 1, -1, 1])
    c = xp.asarray(rng.standard_normal(6))
    v = xp.asarray(rng.standard_normal(6))

    def f(x):
        out = op(x)
        return tv.ops.sum(
            tv.ops.reshape(out, (-1,))[0:1] * 0.0 + tv.ops.sum(out * out)
        ) + tv.ops.sum(x * c)

    hv = to_numpy(tv.hvp(f, xp.asarray(x0), v))
    eps = 1e-6
    up = to_numpy(tv.gradient(f, xp.asarray(x0 + eps * to_numpy(v))))
    down = to_numpy(tv.gradient(f, xp.asarray(x0 - eps * to_numpy(v))))
    np.testing.assert_allclose(hv, (up - down) / (2 * eps), rtol=1e-6, atol=1e-7)


def test_hvp_on_array_api_strict_equals_numpy(xp):
    model = tv.Chain(
        tv.Dense(3, 4, tv.gelu, rng=1),
        tv.SkipConnection(tv.Dense(4, 4, tv.softplus, rng=2), tv.add),
        tv.Dense(4, 2, rng=3),
    )
    x, y = data(1)
    v = random_tree(model, np.random.default_rng(2))
    expected = tv.hvp(lambda m: tv.mse(m(x), y), model, v)
    moved = tv.to(xp, model)
    xv, yv = xp.asarray(x), xp.asarray(y)
    hv = tv.hvp(
        lambda m: tv.mse(m(xv), yv),
        moved,
        mirror(nodes(moved), lambda l, n: xp.asarray(v[_path(moved, l, n)])),
    )
    for path, _, _ in tv.trainables(model):
        assert type(hv[path]) is type(xp.asarray(1.0))
        np.testing.assert_allclose(to_numpy(hv[path]), expected[path], rtol=1e-12, atol=1e-14)


def _path(model, layer, name):
    return next(p for p, l, n in tv.trainables(model) if l is layer and n == name)


def test_gradient_with_create_graph_is_a_tree_of_tensors_with_the_gradients_values():
    model = tv.Chain(tv.Dense(3, 4, tv.tanh, rng=1), tv.Dense(4, 2, rng=2))
    x, y = data(1)
    loss = lambda m: tv.mse(m(x), y)  # noqa: E731
    plain = tv.gradient(loss, model)
    value, graph = tv.withgradient(loss, model, create_graph=True)
    assert type(value) is tv.Tensor
    for path, _, _ in tv.trainables(model):
        assert type(graph[path]) is tv.Tensor
        np.testing.assert_allclose(graph[path].data, plain[path], rtol=1e-14, atol=1e-16)
    # the parameters are plain arrays again
    assert all(type(getattr(l, n)) is np.ndarray for _, l, n in tv.trainables(model))


def test_a_gradient_of_a_gradient_nests():
    # f(x) = Σ x³: ∇f = 3x², and ∇ Σ ∇f = 6x; one level deeper, ∇ Σ ∇ Σ ∇f = 6
    f = lambda x: tv.ops.sum(x * x * x)  # noqa: E731
    g = lambda x: tv.ops.sum(tv.gradient(f, x, create_graph=True))  # noqa: E731
    h = lambda x: tv.ops.sum(tv.gradient(g, x, create_graph=True))  # noqa: E731
    x = np.array([1.0, 2.0])
    np.testing.assert_array_equal(tv.gradient(g, x), [6.0, 12.0])
    np.testing.assert_array_equal(tv.gradient(h, x), [6.0, 6.0])


def test_a_third_derivative_through_dense_layers_matches_differences_of_the_second():
    # Differentiated a third time, Dense's A^k node (the forward's array, with the layer's
    # affine vjp) runs its vjp on Tensors: g2 = ⟨∇⟨∇f, u⟩, u⟩, and ⟨∇g2, w⟩ against central
    # differences of g2 along w; the second layer's input is a Tensor, the first's is not
    model = tv.Chain(tv.Dense(3, 4, tv.atan, rng=1), tv.Dense(4, 2, tv.tanh, rng=2))
    x, y = data(3)
    f = lambda m: tv.mse(m(x), y)  # noqa: E731
    u = random_tree(model, np.random.default_rng(4))
    w = random_tree(model, np.random.default_rng(5))

    def along(grads, direction):  # ⟨grads, direction⟩, a scalar Tensor
        terms = [tv.ops.sum(grads[p] * direction[p]) for p, _, _ in tv.trainables(model)]
        return sum(terms[1:], terms[0])

    g1 = lambda m: along(tv.gradient(f, m, create_graph=True), u)  # noqa: E731
    g2 = lambda m: along(tv.gradient(g1, m, create_graph=True), u)  # noqa: E731
    third = tv.gradient(g2, model)
    eps = 1e-5
    up = float(tv.withgradient(g2, shifted(model, w, eps))[0])
    down = float(tv.withgradient(g2, shifted(model, w, -eps))[0])
    exact = sum(float(np.sum(third[p] * w[p])) for p, _, _ in tv.trainables(model))
    np.testing.assert_allclose(exact, (up - down) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_a_constant_direction_and_parameters_the_loss_ignores_give_zeros():
    model = tv.Chain(tv.Dense(3, 4, tv.tanh, rng=1), tv.Dense(4, 2, rng=2))
    x, y = data(1)
    zero = mirror(nodes(model), lambda l, n: np.zeros(getattr(l, n).shape))
    hv = tv.hvp(lambda m: tv.mse(m(x), y), model, zero)
    assert all(not np.any(hv[p]) for p, _, _ in tv.trainables(model))
    # a linear model with mse: the last layer's bias has a Hessian, no third derivative
    lin = tv.Dense(3, 1, rng=0)
    v = random_tree(lin, np.random.default_rng(0))
    hv = tv.hvp(lambda m: tv.ops.sum(m(x)), lin, v)  # linear in θ: H = 0
    assert not np.any(hv["weight"]) and not np.any(hv["bias"])


def test_a_direction_of_the_wrong_shape_is_refused():
    model = tv.Chain(tv.Dense(3, 4, tv.tanh, rng=1), tv.Dense(4, 2, rng=2))
    x, y = data(1)
    v = random_tree(model, np.random.default_rng(0))
    v.layers[1]["weight"] = np.zeros((2, 5))
    with pytest.raises(
        ValueError,
        match=r"v does not match the model at model.layers\[1\].weight: the parameter has shape \(2, 4\), v \(2, 5\)",
    ):
        tv.hvp(lambda m: tv.mse(m(x), y), model, v)
    with pytest.raises(ValueError, match="v do not match the model"):
        tv.hvp(lambda m: tv.mse(m(x), y), model, tv.Tree(weight=np.zeros(1)))
    with pytest.raises(ValueError, match=r"shape \(3,\), v \(2,\)"):
        tv.hvp(lambda x: tv.ops.sum(x * x), np.ones(3), np.ones(2))


def test_a_non_scalar_loss_is_refused():
    model = tv.Dense(3, 2, rng=0)
    x, _ = data(1)
    with pytest.raises(ValueError, match="scalar loss"):
        tv.hvp(lambda m: m(x), model, random_tree(model, np.random.default_rng(0)))


def test_an_activation_with_a_numpy_derivative_refuses_a_second_derivative():
    cube = tv.Activation("cube", lambda A: A**3, lambda A, O: 3 * np.square(A))
    model = tv.Dense(3, 2, cube, rng=0)
    x, y = data(1)
    tv.gradient(lambda m: tv.mse(m(x), y), model)  # first order: fine
    with pytest.raises(
        TypeError, match="activation 'cube': its derivative cannot be differentiated"
    ):
        tv.hvp(lambda m: tv.mse(m(x), y), model, random_tree(model, np.random.default_rng(0)))


def test_a_hand_made_node_refuses_a_second_derivative():
    def f(x):
        return tv.ops.sum(tv.Tensor(x.data * 2, (x,), lambda g: (2 * g,), "double") * x)

    assert tv.gradient(f, np.ones(2)).tolist() == [4.0, 4.0]
    with pytest.raises(TypeError, match="cannot differentiate the 'double' node twice"):
        tv.hvp(f, np.ones(2), np.ones(2))


def test_the_first_order_gradient_is_unchanged_by_a_second_order_one():
    model = tv.Chain(tv.Dense(3, 4, tv.tanh, rng=1), tv.Dense(4, 2, rng=2))
    x, y = data(1)
    loss = lambda m: tv.mse(m(x), y)  # noqa: E731
    before = tv.gradient(loss, model)
    tv.hvp(loss, model, random_tree(model, np.random.default_rng(0)))
    after = tv.gradient(loss, model)
    for path, _, _ in tv.trainables(model):
        assert before[path].tobytes() == after[path].tobytes()


# --- against PyTorch (skipped where it is not installed) -------------------------------------
TORCH_SIGMAS = ["identity", "tanh", "atan", "sigmoid", "softplus", "gelu", "relu", "leakyrelu"]


def _torch_act(torch, name):
    return {
        "identity": lambda a: a,
        "tanh": torch.tanh,
        "atan": torch.atan,
        "sigmoid": torch.sigmoid,
        "softplus": torch.nn.functional.softplus,
        "gelu": lambda a: torch.nn.functional.gelu(a, approximate="tanh"),
        "relu": torch.relu,
        "leakyrelu": lambda a: torch.nn.functional.leaky_relu(a, 0.01),
    }[name]


@pytest.mark.parametrize("loss_name", ["mse", "crossentropy"])
@given(
    st.lists(st.sampled_from(TORCH_SIGMAS), min_size=1, max_size=3),
    st.integers(1, 4),
    st.integers(0, 2**16),
)
def test_the_hessian_matches_pytorch(loss_name, sigmas, width, seed):
    torch = pytest.importorskip("torch")
    from tinyvec.analysis.hessian import hessian_matrix

    rng = np.random.default_rng(seed)
    sizes = [3] + [width] * len(sigmas) + [2]
    layers = [
        tv.Dense(a, b, s, rng=int(rng.integers(1 << 30)))
        for (a, b), s in zip(itertools.pairwise(sizes), [*sigmas, "identity"], strict=True)
    ]
    for d in layers:
        d.bias = rng.standard_normal(d.bias.shape) * 0.5
    model = tv.Chain(*layers)
    x, y = data(seed)
    labels = np.arange(5) % 2
    loss = (
        (lambda m: tv.mse(m(x), y))
        if loss_name == "mse"
        else (lambda m: tv.crossentropy(m(x), labels))
    )
    H = hessian_matrix(loss, model)

    params = [torch.tensor(getattr(l, n)) for _, l, n in tv.trainables(model)]
    shapes = [p.shape for p in params]
    flat0 = torch.cat([p.reshape(-1) for p in params])
    acts = [_torch_act(torch, s) for s in [*sigmas, "identity"]]
    tx, ty, tl = torch.tensor(x), torch.tensor(y), torch.tensor(labels)

    def tloss(flat):
        ps, at = [], 0
        for s in shapes:
            n = int(np.prod(s))
            ps.append(flat[at : at + n].reshape(s))
            at += n
        o = tx
        for k, act in enumerate(acts):
            o = act(ps[2 * k] @ o + ps[2 * k + 1][:, None])
        if loss_name == "mse":
            return torch.mean((o - ty) ** 2)
        return torch.nn.functional.cross_entropy(o.T, tl)

    expected = torch.autograd.functional.hessian(tloss, flat0).numpy()
    np.testing.assert_allclose(H, expected, rtol=1e-9, atol=1e-9)
    v = torch.tensor(rng.standard_normal(flat0.shape[0]))
    _, tv_hv = torch.autograd.functional.hvp(tloss, flat0, v)
    np.testing.assert_allclose(H @ v.numpy(), tv_hv.numpy(), rtol=1e-9, atol=1e-9)
