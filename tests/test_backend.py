"""Array namespaces: lookup, conversion, GPU detection."""

import array_api_strict
import numpy as np
import pytest

from tinyvec.backend import has_gpu, is_array, namespace, to_namespace, to_numpy


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
    assert to_namespace(xp, a) is a  # already there: no copy
    b = to_namespace(array_api_strict, host)
    assert namespace(b) is array_api_strict and to_numpy(b).tolist() == [1.0, 2.5]
    assert isinstance(to_namespace(np, b), np.ndarray)


def test_has_gpu_is_a_boolean():
    assert has_gpu() in (True, False)
