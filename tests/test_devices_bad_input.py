"""tv.to / tv.f32 / tv.f64 / tv.cpu with things that are not namespaces, arrays or models:
one TypeError, and the model untouched."""

import array_api_strict
import numpy as np
import pytest

import tinyvec as tv


@pytest.mark.parametrize("xp", ["numpy", None, np.float32, 3])
def test_to_refuses_what_is_not_an_array_namespace(xp):
    m = tv.Chain(tv.Dense(2, 1, rng=0))
    with pytest.raises(TypeError, match="must be an array namespace"):
        tv.to(xp, m)


@pytest.mark.parametrize("convert", [tv.f32, tv.f64, tv.cpu])
@pytest.mark.parametrize("bad", [[1.0, 2.0], 1.5, "model", None])
def test_conversions_refuse_what_is_neither_an_array_nor_a_model(convert, bad):
    with pytest.raises(TypeError, match="expected an array or a model"):
        convert(bad)


def test_a_conversion_leaves_the_original_untouched():
    m = tv.Chain(tv.Dense(2, 1, rng=0))
    before = m[0].weight.copy()
    m32 = tv.f32(m)
    assert m32[0].weight.dtype == np.float32 and m[0].weight.dtype == np.float64
    np.testing.assert_array_equal(m[0].weight, before)


@pytest.mark.parametrize("device", ["device1", "gpu", 3])
def test_to_a_device_the_namespace_does_not_have_is_one_value_error(device):
    with pytest.raises(ValueError, match=r"tv.to\(xp, x, device=...\): .* is not a device of"):
        tv.to(array_api_strict, tv.Dense(2, 1), device=device)
    with pytest.raises(ValueError, match="is not a device of numpy"):
        tv.to(np, tv.Dense(2, 1), device="cuda")
