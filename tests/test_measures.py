"""`tinyvec.measures`: each member's Σa², ‖a‖ and cos(a, b) of a stack are, bit for bit, those
of its array alone (the claim the Recorder and `tinyvec.analysis` rest on), and the three are
the formulas they name."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tinyvec.measures import cos, norm, sqnorm


@given(
    E=st.integers(1, 4),
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    dtype=st.sampled_from(["float32", "float64"]),
    seed=st.integers(0, 2**16),
    zero=st.booleans(),
)
def test_each_members_measures_are_those_of_its_array_alone(E, shape, dtype, seed, zero):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((E, *shape)).astype(dtype)
    b = rng.standard_normal((E, *shape)).astype(dtype)
    if zero:  # a member with no direction: cos is NaN, the norms 0
        a[0] = 0
    for f, args in ((sqnorm, (a,)), (norm, (a,)), (cos, (a, b))):
        each = f(*args, members=True)
        assert each.shape == (E,)
        for e in range(E):
            alone = f(*(x[e] for x in args))
            assert isinstance(alone, float)
            assert (math.isnan(alone) and math.isnan(each[e])) or alone == each[e]
        assert each.dtype == np.float64  # (what is computed from it stays a run's float)


def test_the_measures_are_their_formulas():
    a, b = np.array([[3.0, 0.0], [0.0, 4.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    assert sqnorm(a) == 25.0 and norm(a) == 5.0
    assert cos(a, -2 * a) == -1.0 and cos(a, b) == 0.0
    assert math.isnan(cos(np.zeros(2), a[0]))
