"""A Chain as one written program (`tinyvec.fast.chain`): one graph node, and every case it
must leave to the layers. (That it computes what the layers compute, bit for bit, is proven
with everything else in `test_equivalence`.)"""

import contextlib
import copy
import pickle
import threading

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.backend import to_numpy


def loss(m, x, y):
    return tv.mse(m(x), y)


def gradients(model, x, y, fused):
    """(loss, the gradient tree as bytes, ∂L/∂x) with the Chain fused or layer by layer."""
    with contextlib.nullcontext() if fused else tv.fast.off():
        value, (grads, gx) = tv.withgradient(lambda m, x: loss(m, x, y), model, x)
    flat = {path: to_numpy(grads[path]).tobytes() for path, _, _ in tv.trainables(model)}
    return to_numpy(value).tobytes(), flat, to_numpy(gx).tobytes()


def seed_net():
    return tv.Chain(
        tv.Dense(4, 6, tv.tanh, rng=0),
        tv.SkipConnection(tv.Dense(6, 6, tv.atan, rng=1), tv.add),
        tv.Dense(6, 1, rng=2),
    )


def test_the_chain_is_one_node_whose_parents_are_the_input_and_the_parameters():
    m = seed_net()
    x = tv.Tensor(np.ones((4, 3)))
    out = m(x)
    assert out.op == "Chain" and out.parents[0] is x and len(out.parents) == 1 + 6
    with tv.fast.off():
        assert m(x).op == "Dense"
    with tv.no_grad():
        out = m(x)
        assert type(out) is tv.Tensor and out.vjp is None
    assert type(m(np.ones((4, 3)))) is np.ndarray  # plain arrays in, plain array out


def test_off_is_per_thread():
    m, seen = seed_net(), []
    x = tv.Tensor(np.ones((4, 2)))
    inside, done = threading.Event(), threading.Event()

    def other():
        with tv.fast.off():
            inside.set()
            done.wait(5)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    seen.append(m(x).op)
    done.set()
    t.join()
    assert seen == ["Chain"]


def test_a_loss_that_calls_the_model_twice_gets_each_calls_own_backward_pass():
    a, b = seed_net(), seed_net()
    x1, x2 = np.ones((4, 3)), np.linspace(-1, 1, 8).reshape(4, 2)

    def twice(m):
        return tv.mse(m(x1), np.zeros((1, 3))) + tv.mse(m(x2), np.ones((1, 2)))

    ga = tv.gradient(twice, a)
    with tv.fast.off():
        gb = tv.gradient(twice, b)
    for path, _, _ in tv.trainables(a):
        assert ga[path].tobytes() == gb[path].tobytes()


class Scale(tv.Layer):
    params = ("s",)

    def __init__(self):
        self.s = np.ones((1, 1))

    def __call__(self, x):
        return self.s * x


@pytest.mark.parametrize(
    "make",
    [
        lambda: tv.Chain(tv.Dense(2, 2, rng=0), Scale()),  # a layer it does not know
        lambda: (lambda d: tv.Chain(d, d))(tv.Dense(2, 2, rng=0)),  # a shared layer
        lambda: tv.Chain(tv.SkipConnection(tv.Dense(2, 2, rng=0), tv.mul)),  # a connection
    ],
    ids=["custom layer", "shared layer", "connection"],
)
def test_what_it_cannot_write_runs_layer_by_layer_with_the_same_numbers(make):
    a, b = make(), make()
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    y = np.zeros((2, 3))
    out = a(tv.Tensor(x))
    assert out.op != "Chain"
    assert gradients(a, x, y, fused=True) == gradients(b, x, y, fused=False)


def test_bad_inputs_get_the_layers_errors():
    m = seed_net()
    with pytest.raises(tv.DimensionMismatch, match="expects size") as e:
        m(tv.Tensor(np.ones((5, 3))))
    assert "in Chain layer [0]" in str(e.value.__notes__)
    m(np.ones((4, 3)))
    m[0].weight = np.ones((6, 5))  # the program was written for 4 features
    with pytest.raises(tv.DimensionMismatch, match="expects size"):
        m(np.ones((4, 3)))


def test_an_input_of_another_dtype_is_converted_with_the_layers_warning():
    m = tv.f32(seed_net())
    with pytest.warns(UserWarning, match="converting"):
        out = m(np.ones((4, 3)))
    assert out.dtype == np.float32


def test_a_model_with_written_programs_pickles_and_copies():
    m = seed_net()
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    tv.gradient(lambda m: tv.mse(m(x), np.zeros((1, 3))), m)
    assert m._tinyvec_fast.programs  # a program was written and kept
    for other in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert "_tinyvec_fast" not in vars(other)  # (the plan stays with its model)
        assert other(x).tobytes() == m(x).tobytes()


def test_a_new_structure_writes_a_new_program():
    m = seed_net()
    x = np.ones((4, 2))
    before = m(x)
    m.layers = (*m.layers[:2], tv.Dense(6, 2, rng=5))
    after = m(x)
    assert after.shape == (2, 2) and before.shape == (1, 2)
    with tv.fast.off():
        assert m(x).tobytes() == after.tobytes()


def test_a_new_activation_or_connection_is_a_new_program():
    m = seed_net()
    x = np.linspace(-1, 1, 8).reshape(4, 2)

    def same_as_layer_by_layer():
        fused = m(x)
        with tv.fast.off():
            return m(x).tobytes() == fused.tobytes()

    assert same_as_layer_by_layer()
    m[0].sigma = tv.relu
    assert same_as_layer_by_layer()
    m[1].connection = tv.vcat
    m.layers = (*m.layers[:2], tv.Dense(12, 1, rng=2))
    assert same_as_layer_by_layer()
    m[1].connection = tv.mul  # one it cannot write: layer by layer
    m.layers = (*m.layers[:2], tv.Dense(6, 1, rng=2))
    assert m(tv.Tensor(x)).op != "Chain"


def test_a_layer_given_its_own_forward_pass_runs_layer_by_layer():
    m = seed_net()
    x = np.ones((4, 2))
    m[0].forward = lambda x: tv.Dense.forward(m[0], x) * 2.0
    with tv.fast.off():
        expected = m(x)
    assert m(x).tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("E", [None, 3], ids=["one-model", "stack"])
def test_at_batch_1_the_written_weight_gradient_keeps_the_sign_of_zero(E, dtype):
    """At batch 1 the written backward pass forms δ Oᵀ as a product plus 0, not a matmul
    (`_Writer.backward`): NumPy's matmul of a column by a row sums 0 + δ_i O_j, which turns
    a product −0 (δ_i < 0, O_j = 0: every ReLU unit that is off) into +0. Here many are:
    the written step and the reference road's must agree on every byte of dW and θ."""

    def make(seed):
        cast = tv.f32 if dtype == "float32" else tv.f64
        # (weights 6 × 4, 5 × 6, then 1 × 5 and 2 × 1: a row times a column of one entry each)
        return cast(tv.Chain(tv.Dense(4, 6, tv.relu, rng=seed),
                             tv.Dense(6, 5, tv.relu, rng=seed + 1),
                             tv.Dense(5, 1, tv.relu, rng=seed + 2), tv.Dense(1, 2, rng=seed + 3)))  # fmt: skip

    models = [[make(s) for s in range(E or 1)] for _ in "ab"]
    a, b = (tv.stack(m) if E else m[0] for m in models)
    sa, sb = tv.setup(tv.Descent(0.1), a), tv.setup(tv.Descent(0.1), b)
    step = tv.compile(tv.mse, a, sa)
    g = np.random.default_rng(0)
    minus_zeros = 0
    for _ in range(8):
        x = g.standard_normal((E, 4, 1) if E else (4, 1)).astype(dtype)
        y = g.standard_normal((E, 2, 1) if E else (2, 1)).astype(dtype)
        step(x, y)
        with tv.fast.off():
            _, grads = tv.withgradient(lambda m: tv.mse(m(x), y, members=bool(E)), b)
            tv.update(sb, b, grads)
        for la, lb in zip(a.layers, b.layers, strict=True):
            assert la.dW.tobytes() == lb.dW.tobytes()
            assert la.weight.tobytes() == lb.weight.tobytes()
            product = la.delta * np.swapaxes(la.input, -1, -2)  # δ_i O_j, unsummed
            minus_zeros += int(np.sum((product == 0) & np.signbit(product)))
    assert minus_zeros > 0  # (δ < 0 met O = 0: the case is there)
