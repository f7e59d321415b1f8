"""Measuring a stack of models (`tv.stack`) at once gives every member exactly the numbers of
measuring it alone (`tv.unstack`): the recorders' rows and snapshots, the figures of
`step_summary`, and the completion monitors' checks."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.analysis import VectorRecorder, batch_coherence, effective_rank
from tinyvec.analysis.vector import per_sample_grad_norms
from tinyvec.recorder import record_members


def same(a, b):
    """Equal bit for bit, NaN included (rows of Python numbers, dicts, arrays)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True) and a.shape == b.shape
    return type(a) is type(b) and a == b


def net(seed, width, skip):
    rng = np.random.default_rng(seed)
    inner = tv.Dense(width, width, tv.relu, rng=rng)
    middle = tv.SkipConnection(inner, tv.add) if skip else inner
    return tv.Chain(tv.Dense(3, width, tv.tanh, rng=rng), middle,
                    tv.Dense(width, 2, rng=rng, bias=seed % 2 == 0))  # fmt: skip


@given(E=st.integers(1, 4), width=st.integers(1, 7), batch=st.integers(1, 6),
       skip=st.booleans(), shared=st.booleans(), every=st.sampled_from([1, 2]),
       seed=st.integers(0, 10**6))  # fmt: skip
@settings(max_examples=30, deadline=None)
def test_recorders_of_a_stack_are_those_of_each_member_alone(
    E, width, batch, skip, shared, every, seed
):
    rng = np.random.default_rng(seed)
    bias = seed % 2 == 0  # (every member alike: a stack is of one architecture)
    stack = tv.stack([net(2 * seed + 2 * e + bias, width, skip) for e in range(E)])
    x = rng.normal(size=(3, batch)) if shared else rng.normal(size=(E, 3, batch))
    y = rng.normal(size=(E, 2, batch))
    stacked = [VectorRecorder(measure_every=every) for _ in range(E)]
    alone = [VectorRecorder(measure_every=every) for _ in range(E)]
    members = tv.unstack(stack)

    def each(step, m, losses):
        record_members(stacked, m, step, losses)
        tv.unstack(m, into=members)
        for rec, member, loss in zip(alone, members, losses, strict=True):
            rec.record(member, step, loss)

    tv.train(lambda m, x, y: tv.mse(m(x), y, members=True), stack, [(x, y)] * 3,
             tv.setup(tv.Momentum(0.05, 0.9), stack), epochs=1, progress=False,
             callbacks=[each])  # fmt: skip
    for a, b in zip(stacked, alone, strict=True):
        assert a.rows and same(a.rows, b.rows)


@given(E=st.integers(1, 5), features=st.integers(1, 9), batch=st.integers(1, 9),
       seed=st.integers(0, 10**6), zero=st.booleans())  # fmt: skip
@settings(max_examples=50, deadline=None)
def test_figures_of_a_stack_are_each_members(E, features, batch, seed, zero):
    rng = np.random.default_rng(seed)
    O, delta = rng.normal(size=(E, features, batch)), rng.normal(size=(E, 2, batch))
    if zero:
        O[0] = 0.0  # a zero matrix (rank 0) and zero columns (orthogonal to all)
    for stacked, alone in (
        (batch_coherence(O), [batch_coherence(o) for o in O]),
        (effective_rank(O), [effective_rank(o) for o in O]),
        (
            per_sample_grad_norms(delta, O),
            [per_sample_grad_norms(d, o) for d, o in zip(delta, O, strict=True)],
        ),
    ):
        assert np.array_equal(stacked, np.asarray(alone), equal_nan=True)
