"""Optional legs: the same model, losses, gradients and training steps on PyTorch tensors and
JAX arrays (through the array API) give NumPy's numbers to 1e-9. Each leg runs when its
library is installed (``pip install torch jax``) and skips otherwise. JAX runs in float64
(``jax.enable_x64``), as the NumPy reference does."""

import contextlib

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.backend import to_numpy

TOL = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture(params=["torch", "jax"])
def lib(request):
    """(namespace to move models to, asarray, context in which to run)."""
    if request.param == "torch":
        pytest.importorskip("torch")
        import array_api_compat.torch as xt

        return "torch", xt, contextlib.nullcontext
    jax = pytest.importorskip("jax")
    return "jax", jax.numpy, lambda: jax.enable_x64(True)


def model():
    return tv.Chain(
        tv.Dense(3, 5, tv.tanh, rng=0),
        tv.SkipConnection(tv.Dense(5, 5, tv.gelu, rng=1), tv.add),
        tv.Dense(5, 4, rng=2),
    )


def data(rng=0):
    g = np.random.default_rng(rng)
    return g.standard_normal((3, 6)), g.standard_normal((4, 6)), np.array([0, 3, 1, 2, 3, 0])


def assert_trees_close(ours, theirs):
    if isinstance(ours, dict):
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert_trees_close(ours[k], theirs[k])
    elif isinstance(ours, tuple | list):
        for a, b in zip(ours, theirs, strict=True):
            assert_trees_close(a, b)
    elif ours is None:
        assert theirs is None
    else:
        np.testing.assert_allclose(to_numpy(theirs), ours, **TOL)


@pytest.mark.parametrize("loss", ["mse", "crossentropy"])
def test_loss_and_gradient_equal_numpys(lib, loss):
    name, xp, ctx = lib
    x, y, labels = data()

    def f(m, x, y, labels):
        return tv.mse(m(x), y) if loss == "mse" else tv.crossentropy(m(x), labels)

    value, grads = tv.withgradient(lambda m: f(m, x, y, labels), model())
    with ctx():
        m = tv.to(xp, model())
        args = xp.asarray(x), xp.asarray(y), xp.asarray(labels)
        value_l, grads_l = tv.withgradient(lambda m: f(m, *args), m)
        assert type(m[0].weight).__module__.split(".")[0] in (name, "jaxlib")
        np.testing.assert_allclose(float(value_l), float(value), **TOL)
        assert_trees_close(grads, grads_l)


def test_training_steps_equal_numpys(lib):
    _, xp, ctx = lib
    x, y, _ = data()
    ref = model()
    tv.train(lambda m, x, y: tv.mse(m(x), y), ref, [(x, y)] * 5, tv.setup(tv.Adam(0.01), ref),
             progress=False)  # fmt: skip
    with ctx():
        m = tv.to(xp, model())
        batch = (xp.asarray(x), xp.asarray(y))
        tv.train(lambda m, x, y: tv.mse(m(x), y), m, [batch] * 5, tv.setup(tv.Adam(0.01), m),
                 progress=False)  # fmt: skip
        for (p, a, n), (q, b, k) in zip(tv.trainables(ref), tv.trainables(m), strict=True):
            assert p == q
            np.testing.assert_allclose(to_numpy(getattr(b, k)), getattr(a, n), **TOL)
        np.testing.assert_allclose(to_numpy(m[1].layer.delta), ref[1].layer.delta, **TOL)


def test_print_model_on_torch():
    pytest.importorskip("torch")
    import array_api_compat.torch as xt

    assert str(tv.to(xt, model())) == str(model())


def test_print_model_on_jax():
    jax = pytest.importorskip("jax")
    with jax.enable_x64(True):
        assert str(tv.to(jax.numpy, model())) == str(model())


def test_a_loss_of_two_libraries_is_one_type_error_naming_both(lib):
    name, xp, ctx = lib
    with ctx(), pytest.raises(TypeError, match=f"mixes numpy and {name}"):
        tv.mse(np.zeros((1, 2)), xp.zeros((1, 2)))


def test_a_numpy_model_fed_a_torch_tensor_is_one_type_error_naming_both():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="mixes numpy and torch"):
        model()(torch.zeros((3, 2), dtype=torch.float64))


def test_save_and_load_round_trip(lib, tmp_path):
    _, xp, ctx = lib
    with ctx():
        m = tv.to(xp, tv.f32(model()))
        tv.save(tmp_path / "m.npz", m)
        other = tv.to(xp, tv.f32(tv.Chain(
            tv.Dense(3, 5, tv.tanh, rng=7),
            tv.SkipConnection(tv.Dense(5, 5, tv.gelu, rng=8), tv.add),
            tv.Dense(5, 4, rng=9),
        )))  # fmt: skip
        tv.load(tmp_path / "m.npz", other)
        for (_, a, n), (_, b, k) in zip(tv.trainables(m), tv.trainables(other), strict=True):
            assert getattr(b, k).dtype == getattr(a, n).dtype
            np.testing.assert_array_equal(to_numpy(getattr(b, k)), to_numpy(getattr(a, n)))


def test_a_torch_model_pickles():
    pytest.importorskip("torch")
    import pickle

    import array_api_compat.torch as xt

    m = tv.to(xt, model())
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(to_numpy(back[0].weight), to_numpy(m[0].weight))
    assert back[2].sigma is tv.identity
