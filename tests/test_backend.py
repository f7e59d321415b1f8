"""Array namespaces: lookup, conversion, GPU detection."""

import sys

import array_api_strict
import numpy as np
import pytest

import tinyvec as tv
from tinyvec import backend
from tinyvec.backend import (
    has_gpu,
    is_array,
    library,
    namespace,
    same_namespace,
    to_namespace,
    to_numpy,
)


def test_namespace_of_arrays_and_scalars():
    assert namespace(np.zeros(2)) is np
    assert namespace(np.float64(1.0)) is np  # what NumPy reductions return
    assert namespace(array_api_strict.asarray([1.0])) is array_api_strict


@pytest.mark.parametrize("bad", [[1.0, 2.0], 3.0, "x", None])
def test_namespace_of_a_non_array_is_a_clear_error(bad):
    with pytest.raises(TypeError, match=f"expected an array, got {type(bad).__name__}"):
        namespace(bad)


def test_is_array():
    assert is_array(np.zeros(1)) and is_array(array_api_strict.asarray([1.0]))
    assert not is_array([1.0]) and not is_array(1.0)


def test_conversions(xp):
    a = xp.asarray(np.array([1.0, 2.5]))
    host = to_numpy(a)
    assert isinstance(host, np.ndarray) and host.tolist() == [1.0, 2.5]
    assert to_namespace(namespace(a), a) is a  # already there: no copy
    b = to_namespace(array_api_strict, host)
    assert namespace(b) is array_api_strict and to_numpy(b).tolist() == [1.0, 2.5]
    assert isinstance(to_namespace(np, b), np.ndarray)


def test_has_gpu_agrees_with_cupy():
    try:
        import cupy

        expected = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # not installed, or no CUDA driver
        expected = False
    assert has_gpu() is expected


def test_without_cupy_has_gpu_is_false_and_gpu_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now fails
    backend.cupy.cache_clear()
    try:
        assert has_gpu() is False
        with pytest.raises(RuntimeError, match=r'pip install "tinyvec-autograd\[gpu\]"'):
            tv.gpu(np.zeros(2))
    finally:
        backend.cupy.cache_clear()


def test_same_namespace_names_both_libraries():
    a = np.zeros(2)
    assert same_namespace(a, np.ones(2), what="f") is np
    with pytest.raises(TypeError, match="f: mixes numpy and array_api_strict arrays"):
        same_namespace(a, array_api_strict.asarray([1.0]), what="f")
    assert library(a) == "numpy" and library(array_api_strict.asarray([1.0])) == "array_api_strict"
