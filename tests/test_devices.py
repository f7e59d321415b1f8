"""Moving models between namespaces, devices and precisions; the dtype warning."""

import warnings

import array_api_strict
import numpy as np
import pytest

import tinyvec as tv
import tinyvec.layers.dense
from tinyvec.backend import has_gpu, namespace, to_numpy


def model():
    return tv.Chain(
        tv.Dense(3, 4, tv.gelu, rng=0),
        tv.SkipConnection(tv.Dense(4, 4, tv.tanh, rng=1), tv.add),
        tv.Dense(4, 1, rng=2),
    )


def test_to_array_api_strict_and_back_preserves_values():
    m = model()
    moved = tv.to(array_api_strict, m)
    for (_, a, n), (_, b, _) in zip(tv.trainables(m), tv.trainables(moved), strict=True):
        assert isinstance(getattr(a, n), np.ndarray)  # the original is untouched
        assert namespace(getattr(b, n)) is array_api_strict
    back = tv.cpu(moved)
    for (_, a, n), (_, b, _) in zip(tv.trainables(m), tv.trainables(back), strict=True):
        assert isinstance(getattr(b, n), np.ndarray)
        assert getattr(a, n).tobytes() == getattr(b, n).tobytes()
    x = np.random.default_rng(0).standard_normal((3, 5))
    out = moved(array_api_strict.asarray(x))
    assert namespace(out) is array_api_strict
    np.testing.assert_allclose(to_numpy(out), m(x), rtol=1e-14)


def test_to_on_a_single_array(xp):
    a = tv.to(xp, np.arange(3.0))
    assert namespace(a) is namespace(xp.asarray(np.zeros(1)))
    assert tv.cpu(a).tolist() == [0.0, 1.0, 2.0]


def test_f32_and_f64():
    m32 = tv.f32(model())
    assert all(getattr(layer, n).dtype == np.float32 for _, layer, n in tv.trainables(m32))
    x = np.ones((3, 2), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matching dtypes: no conversion, no warning
        assert m32(x).dtype == np.float32
    m64 = tv.f64(m32)
    assert m64[0].weight.dtype == np.float64
    assert tv.f32(np.arange(3.0)).dtype == np.float32
    assert tv.f32(np.arange(3)).dtype == np.int64  # integers are left alone
    assert tv.f32(tv.to(array_api_strict, model()))[0].weight.dtype == array_api_strict.float32


def test_dtype_conversion_warns_once_per_layer():
    m = model()
    x = np.ones((3, 2), dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = m(x)
        m(x)
        tv.Dense(3, 1, rng=0)(x)  # another layer: its own warning
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 2 and all("float32 input; converting" in m for m in messages)
    assert out.dtype == np.float64


@pytest.mark.skipif(has_gpu(), reason="checks the error when there is no GPU")
def test_gpu_without_cupy_or_device_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"CuPy|CUDA"):
        tv.gpu(model())


@pytest.mark.gpu
def test_gpu_round_trip_and_gradient():
    m = model()
    g = tv.gpu(m)
    x = np.random.default_rng(0).standard_normal((3, 5))
    cp = tinyvec.backend.cupy()
    grads = tv.gradient(lambda mm: tv.ops.sum(mm(cp.asarray(x)) ** 2), g)
    reference = tv.gradient(lambda mm: tv.ops.sum(mm(x) ** 2), m)
    np.testing.assert_allclose(
        to_numpy(grads.layers[0].weight), reference.layers[0].weight, rtol=1e-10
    )
    back = tv.cpu(g)
    np.testing.assert_array_equal(back[0].weight, m[0].weight)
