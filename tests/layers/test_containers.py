"""Chain, SkipConnection, Parallel: random networks against finite differences (every
parameter gradient and every Dense layer's δ), then the API semantics."""

import operator

import array_api_strict
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec import Chain, Dense, Parallel, SkipConnection
from tinyvec.backend import to_numpy

SIGMAS = [tv.identity, tv.tanh, tv.atan, tv.relu, tv.leakyrelu, tv.sigmoid, tv.softplus, tv.gelu]


@st.composite
def networks(draw):
    """A Chain of 1-4 blocks: Dense, SkipConnection(+ or vcat), Parallel(+ or vcat) or a
    nested Chain, each Dense with its own activation; weights from a drawn seed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_in = width = draw(st.integers(1, 4))

    def dense(i, o):
        d = Dense(i, o, draw(st.sampled_from(SIGMAS)), bias=draw(st.booleans()), rng=rng)
        if d.bias is not None:  # random, not zero: keeps relu pre-activations off their kink
            d.bias = rng.standard_normal(o)
        return d

    blocks = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["dense", "skip+", "skipvcat", "parallel+", "parvcat", "chain"])
        )
        out = draw(st.integers(1, 4))
        if kind == "dense":
            block = dense(width, out)
        elif kind == "skip+":
            block, out = SkipConnection(dense(width, width), tv.add), width
        elif kind == "skipvcat":
            block, out = SkipConnection(dense(width, out), tv.vcat), out + width
        elif kind == "parallel+":
            block = Parallel(tv.add, dense(width, out), dense(width, out))
        elif kind == "parvcat":
            block, out = Parallel(tv.vcat, dense(width, out), dense(width, 2)), out + 2
        else:
            block = Chain(dense(width, out), dense(out, out))
        blocks.append(block)
        width = out
    return Chain(*blocks), n_in, width, rng


class PerturbedPreact(tv.Layer):
    """Stands in for Dense layer d: O = σ(W x + b + E), so the loss can be differentiated
    numerically with respect to A = W x + b."""

    constants = ("E", "d")  # (the perturbation, and the Dense it reads: fixed, not trained)

    def __init__(self, d, E):
        self.d, self.E = d, E

    def __call__(self, x):
        A = self.d.weight @ x + self.E
        if self.d.bias is not None:
            A = A + self.d.bias[:, None]
        return self.d.sigma.f(A)


def replace_layer(parent, old, new):
    """Put ``new`` wherever ``old`` sits among the children of ``parent`` (recursively)."""
    for name in getattr(parent, "children", ()):
        value = getattr(parent, name)
        if isinstance(value, tuple):
            setattr(parent, name, tuple(new if v is old else v for v in value))
            for v in value:
                replace_layer(v, old, new)
        elif value is old:
            setattr(parent, name, new)
        elif value is not None:
            replace_layer(value, old, new)


def tree_entry(grads, path):
    """``grads`` at a parameter path such as ``model.layers[1].layer.weight``."""
    return eval(path.replace("model", "grads", 1), {"grads": grads})


@settings(max_examples=max(40, settings.default.max_examples))  # cheap: small networks
@given(data=st.data())
def test_random_networks_against_finite_differences(xp, data, numgrad):
    """The engine runs on namespace xp; the finite differences on a NumPy copy."""
    model, n_in, n_out, rng = data.draw(networks(), label="net")
    batch = data.draw(st.integers(1, 3), label="batch")
    x, y = rng.standard_normal((n_in, batch)), rng.standard_normal((n_out, batch))
    on_xp = tv.to(xp, model)

    def loss():
        return float(tv.mse(model(x), y))

    grads = tv.gradient(lambda m: tv.mse(m(xp.asarray(x)), xp.asarray(y)), on_xp)
    kinked = [d for d in tv.dense_layers(on_xp) if d.sigma in (tv.relu, tv.leakyrelu)]
    assume(all(np.abs(to_numpy(d.preact)).min() > 1e-4 for d in kinked))  # e.g. relu(0) → relu
    for path, layer, name in tv.trainables(model):
        fd = numgrad(lambda _: loss(), getattr(layer, name))  # perturbed in place
        got = to_numpy(tree_entry(grads, path))
        np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-7, err_msg=path)
    pairs = zip(tv.dense_layers(model), tv.dense_layers(on_xp), strict=True)
    for k, (d, d_xp) in enumerate(pairs, start=1):
        E = np.zeros((d.weight.shape[0], batch))
        stand_in = PerturbedPreact(d, E)
        replace_layer(model, d, stand_in)
        try:
            fd = numgrad(lambda _: loss(), E)
        finally:
            replace_layer(model, stand_in, d)
        np.testing.assert_allclose(to_numpy(d_xp.delta), fd, rtol=1e-5, atol=1e-7, err_msg=f"δ^{k}")


def test_vcat_on_array_api_strict():
    """A regression test: vcat's backward once indexed with too few indices for the standard."""
    model = tv.to(array_api_strict, SkipConnection(Dense(2, 3, rng=0), tv.vcat))
    x = array_api_strict.asarray(np.ones((2, 4)))
    grads = tv.gradient(lambda m: tv.ops.sum(m(x)), model)
    assert grads.layer.weight.shape == (3, 2)


def test_gradients_on_array_api_strict_match_numpy(xp):
    """The same random network on every namespace gives the same parameter gradients."""
    rng = np.random.default_rng(0)
    model = Chain(
        Dense(3, 4, tv.gelu, rng=rng),
        SkipConnection(Dense(4, 4, tv.tanh, rng=rng), tv.add),
        Parallel(tv.add, Dense(4, 2, tv.softplus, rng=rng), Dense(4, 2, tv.relu, rng=rng)),
        Dense(2, 1, rng=rng),
    )
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((1, 5))
    reference = tv.gradient(lambda m: tv.mse(m(x), y), model)
    moved = tv.to(xp, model)
    grads = tv.gradient(lambda m: tv.mse(m(xp.asarray(x)), xp.asarray(y)), moved)
    for path, _, _ in tv.trainables(model):
        np.testing.assert_allclose(
            to_numpy(tree_entry(grads, path)), tree_entry(reference, path), rtol=1e-12
        )
    for d_np, d_xp in zip(tv.dense_layers(model), tv.dense_layers(moved), strict=True):
        np.testing.assert_allclose(to_numpy(d_xp.delta), d_np.delta, rtol=1e-12)


# --- semantics -------------------------------------------------------------------------------
def test_skip_connection_order_is_connection_of_layer_output_then_input():
    d = Dense(2, 3, tv.tanh, rng=0)
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = SkipConnection(d, tv.vcat)(x)
    np.testing.assert_array_equal(out[:3], d(x))
    np.testing.assert_array_equal(out[3:], x)
    s = SkipConnection(Dense(2, 2, rng=0), operator.add)
    assert repr(s) == "SkipConnection(Dense(2 => 2), +)"
    np.testing.assert_allclose(s(x), s.layer(x) + x)


def test_chain_indexing_slicing_len_iteration():
    layers = [Dense(2, 3, rng=0), Dense(3, 4, rng=1), Dense(4, 1, rng=2)]
    model = Chain(*layers)
    assert len(model) == 3 and list(model) == layers
    assert model[0] is layers[0] and model[-1] is layers[2]
    assert isinstance(model[1:], Chain) and list(model[1:]) == layers[1:]
    x = np.ones((2, 5))
    np.testing.assert_array_equal(model[1:](model[0](x)), model(x))
    assert list(Chain(layers)) == layers  # a list works as well
    outs = tv.activations(model, x)
    assert [o.shape for o in outs] == [(3, 5), (4, 5), (1, 5)]
    np.testing.assert_array_equal(outs[-1], model(x))


def test_parallel_single_and_tuple_input():
    a, b = Dense(2, 3, rng=0), Dense(4, 3, rng=1)
    x, z = np.ones((2, 5)), np.ones((4, 5))
    np.testing.assert_allclose(Parallel(tv.add, a, b)((x, z)), a(x) + b(z))
    p = Parallel(tv.vcat, a, Dense(2, 1, rng=2))
    assert p(x).shape == (4, 5)
    np.testing.assert_array_equal(p(x)[:3], a(x))
    with pytest.raises(tv.DimensionMismatch, match="2 layers but got 3 inputs"):
        Parallel(tv.add, a, b)((x, z, z))


def test_dense_layers_in_depth_order():
    ds = [Dense(2, 2, rng=i) for i in range(6)]
    model = Chain(
        ds[0],
        SkipConnection(Chain(ds[1], ds[2]), tv.add),
        Parallel(tv.add, ds[3], SkipConnection(ds[4], tv.add)),
        ds[5],
    )
    assert tv.dense_layers(model) == ds


def test_printing_the_seed_network():
    h, m = 20, 40
    model = Chain(
        Dense(h, m, tv.atan),
        SkipConnection(Dense(m, m, tv.atan), tv.add),
        SkipConnection(Dense(m, m, tv.atan), tv.add),
        SkipConnection(Dense(m, m, tv.atan), tv.add),
        Dense(m, 3, tv.atan),
        Dense(3, 1),
    )
    skip = (
        "  SkipConnection(\n"
        "    Dense(40 => 40, atan),              # 1_640 parameters\n"
        "    +,\n"
        "  ),\n"
    )
    expected = (
        "Chain(\n"
        "  Dense(20 => 40, atan),                # 840 parameters\n"
        + skip
        * 3
        + "  Dense(40 => 3, atan),                 # 123 parameters\n"
        "  Dense(3 => 1),                        # 4 parameters\n"
        ")                   # Total: 12 arrays, 5_887 parameters, 45.992 KiB."
    )
    # 840 + 3·1640 + 123 + 4 = 5887 parameters of 8 bytes: 47096 B = 45.992 KiB
    assert str(model) == expected


def test_gradient_tree_mirrors_the_model():
    model = Chain(Dense(2, 3, rng=0), SkipConnection(Dense(3, 3, rng=1), tv.add))
    x = np.ones((2, 4))
    grads = tv.gradient(lambda m: tv.ops.sum(m(x)), model)
    assert isinstance(grads, tv.Tree) and isinstance(grads.layers, tuple)
    assert grads.layers[1].layer.weight.shape == (3, 3)
    assert grads.layers[0].bias.shape == (3,)
    assert grads["layers"][1]["layer"]["weight"] is grads.layers[1].layer.weight


def test_shared_layer_gets_the_summed_gradient_and_is_updated_once(numgrad):
    shared = Dense(3, 3, tv.tanh, rng=0)
    model = Chain(shared, Dense(3, 3, tv.atan, rng=1), shared)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    grads = tv.gradient(lambda m: tv.mse(m(x), y), model)
    fd = numgrad(lambda _: float(tv.mse(model(x), y)), shared.weight)
    np.testing.assert_allclose(grads.layers[0].weight, fd, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(grads.layers[2].weight, grads.layers[0].weight)
    assert len(list(tv.trainables(model))) == 4
    W = shared.weight.copy()
    tv.update(tv.setup(tv.Descent(0.1), model), model, grads)
    np.testing.assert_allclose(shared.weight, W - 0.1 * grads.layers[0].weight, rtol=1e-15)


def test_connection_that_cannot_combine_says_which_shapes():
    s = SkipConnection(Dense(3, 4, rng=0), tv.add)
    with pytest.raises(tv.DimensionMismatch, match=r"\+.*\(4, 5\).*\(3, 5\)"):
        s(np.ones((3, 5)))
    p = Parallel(tv.add, Dense(3, 4, rng=0), Dense(3, 2, rng=0))
    with pytest.raises(tv.DimensionMismatch, match=r"\(4, 5\), \(2, 5\)"):
        p(np.ones((3, 5)))
