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


# --- a device that is not the CPU: array-api-strict's simulated Device("device1") --------------
DEVICE1 = array_api_strict.Device("device1")
RULES = {
    "descent": (lambda: tv.Descent(0.1), lambda: None),
    "adam": (lambda: tv.Adam(0.01), lambda: None),
    "compensation": (lambda: tv.Descent(0.1), lambda: tv.Compensation(0.2)),
    "orthogonalization": (lambda: tv.Descent(0.1), lambda: tv.Orthogonalization()),
    "over_time": (lambda: tv.Descent(0.1), lambda: tv.OrthogonalizationOverTime(3)),
}


def on_device1(a):
    return array_api_strict.asarray(a, device=DEVICE1)


def train_three_steps(m, rule, delta, x, y, road):
    state = tv.setup(rule, m, delta=delta)
    step = tv.compile(tv.mse, m, state)
    for _ in range(3):
        if road == "compiled":
            step(x, y)
        elif road == "off":
            with tv.fast.off():
                tv.update(state, m, tv.gradient(lambda m: tv.mse(m(x), y), m))
        else:
            tv.update(state, m, tv.gradient(lambda m: tv.mse(m(x), y), m))
    return m


@pytest.mark.parametrize("road", ["fast", "off", "compiled"])
@pytest.mark.parametrize("rule", list(RULES))
def test_a_model_on_a_second_device_trains_as_numpy_and_stays_there(rule, road):
    """Every array the rules and δ-rules create goes to the parameters' device: one created
    on the CPU device would fail here, as it would on a GPU."""
    make_rule, make_delta = RULES[rule]
    x = np.random.default_rng(0).standard_normal((3, 5))
    y = np.random.default_rng(1).standard_normal((1, 5))
    want = train_three_steps(model(), make_rule(), make_delta(), x, y, road)
    moved = tv.to(array_api_strict, model(), device=DEVICE1)
    got = train_three_steps(moved, make_rule(), make_delta(), on_device1(x), on_device1(y), road)
    for (path, a, n), (_, b, _) in zip(tv.trainables(want), tv.trainables(got), strict=True):
        assert getattr(b, n).device == DEVICE1, path
        # (normwise: NumPy's Orthogonalization solves by Cholesky, the array API's by LU)
        difference = np.linalg.norm(to_numpy(getattr(b, n)) - getattr(a, n))
        assert difference <= 1e-12 * np.linalg.norm(getattr(a, n)), path


def test_to_moves_to_a_device_and_back():
    moved = tv.to(array_api_strict, model(), device=DEVICE1)
    assert all(getattr(layer, n).device == DEVICE1 for _, layer, n in tv.trainables(moved))
    back = tv.to(array_api_strict, moved, device=array_api_strict.Device("CPU_DEVICE"))
    assert all(getattr(layer, n).device != DEVICE1 for _, layer, n in tv.trainables(back))
    assert tv.cpu(moved)[0].weight.tobytes() == model()[0].weight.tobytes()


def test_crossentropy_onehot_gradcheck_load_and_recorder_on_a_second_device(tmp_path):
    classifier = tv.to(array_api_strict, tv.Chain(tv.Dense(3, 4, tv.tanh, rng=0)), device=DEVICE1)
    x = on_device1(np.random.default_rng(0).standard_normal((3, 6)))
    labels = array_api_strict.asarray([0, 3, 1, 2, 0, 1], device=DEVICE1)
    assert tv.onehot(labels, 4).device == DEVICE1
    grads = tv.gradient(lambda m: tv.crossentropy(m(x), labels), classifier)
    assert grads.layers[0].weight.device == DEVICE1
    # the loss closes over a target on the device: gradcheck computes there too
    y = on_device1(np.zeros((4, 6)))
    assert tv.gradcheck(lambda m, x: tv.mse(m(x), y), classifier, x).ok
    assert tv.gradcheck(lambda m: tv.crossentropy(m(x), labels), classifier).ok
    tv.save(tmp_path / "m.npz", classifier)
    fresh = tv.to(array_api_strict, tv.Chain(tv.Dense(3, 4, tv.tanh, rng=5)), device=DEVICE1)
    loaded = tv.load(tmp_path / "m.npz", fresh)
    assert loaded[0].weight.device == DEVICE1
    assert to_numpy(loaded[0].weight).tobytes() == to_numpy(classifier[0].weight).tobytes()
    recorder = tv.Recorder(every=1, path=tmp_path / "r.npz")
    state = tv.setup(tv.Descent(0.1), loaded)
    tv.train(tv.crossentropy, loaded, [(x, labels)], state, recorder=recorder, progress=False)
    assert recorder.rows and (tmp_path / "r.npz").exists()
