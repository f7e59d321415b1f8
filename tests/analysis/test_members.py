"""Measuring a stack of models (`tv.stack`) at once gives every member exactly the numbers of
measuring it alone (`tv.unstack`): the recorders' rows and snapshots, the figures of
`step_summary`, and the completion monitors' checks."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.analysis import (
    CompletionMonitor,
    MemberMonitors,
    VectorRecorder,
    batch_coherence,
    effective_rank,
)
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


def net(seed, width, skip, bias=True):
    rng = np.random.default_rng(seed)
    inner = tv.Dense(width, width, tv.relu, rng=rng)
    middle = tv.SkipConnection(inner, tv.add) if skip else inner
    return tv.Chain(tv.Dense(3, width, tv.tanh, rng=rng), middle,
                    tv.Dense(width, 2, rng=rng, bias=bias))  # fmt: skip


@given(E=st.integers(1, 4), width=st.integers(1, 7), batch=st.integers(1, 6),
       skip=st.booleans(), shared=st.booleans(), every=st.sampled_from([1, 2]),
       seed=st.integers(0, 10**6), f32=st.booleans())  # fmt: skip
@settings(max_examples=30, deadline=None)
def test_recorders_of_a_stack_are_those_of_each_member_alone(
    E, width, batch, skip, shared, every, seed, f32
):
    rng = np.random.default_rng(seed)
    bias = seed % 2 == 0  # (every member alike: a stack is of one architecture)
    cast = tv.f32 if f32 else (lambda m: m)  # (in float32 a run's rows are still Python floats)
    stack = tv.stack([cast(net(seed + e, width, skip, bias)) for e in range(E)])
    x = rng.normal(size=(3, batch)) if shared else rng.normal(size=(E, 3, batch))
    y = rng.normal(size=(E, 2, batch))
    x, y = (x.astype(np.float32), y.astype(np.float32)) if f32 else (x, y)
    # snapshots every second step (the path is never written: the recorders are not closed)
    kw = {"measure_every": every, "every": 2, "path": "never-written.npz"}
    stacked = [VectorRecorder(**kw) for _ in range(E)]
    alone = [VectorRecorder(**kw) for _ in range(E)]
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
        assert a.snapshots and same(a.snapshots, b.snapshots)


@given(E=st.integers(1, 5), features=st.integers(1, 9), batch=st.integers(1, 9),
       seed=st.integers(0, 10**6), zero=st.booleans(),
       dtype=st.sampled_from(["float32", "float64"]))  # fmt: skip
@settings(max_examples=50, deadline=None)
def test_figures_of_a_stack_are_each_members(E, features, batch, seed, zero, dtype):
    rng = np.random.default_rng(seed)
    O = rng.normal(size=(E, features, batch)).astype(dtype)
    delta = rng.normal(size=(E, 2, batch)).astype(dtype)
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


@given(E=st.integers(1, 4), width=st.integers(1, 6), every=st.integers(1, 3),
       max_period=st.integers(1, 4), shared=st.booleans(), observe=st.booleans(),
       seed=st.integers(0, 10**6), f32=st.booleans())  # fmt: skip
@settings(max_examples=30, deadline=None)
def test_monitors_of_a_stack_check_each_member_as_alone(
    E, width, every, max_period, shared, observe, seed, f32
):
    """`MemberMonitors`: each monitor's checks (residuals, cycles, probe outputs, observables,
    verdicts) are those of the same monitor on its member alone."""
    rng = np.random.default_rng(seed)
    cast = tv.f32 if f32 else (lambda a: a)
    stack = tv.stack([cast(net(seed + 3 * e, width, skip=False)) for e in range(E)])
    x, y = cast(rng.normal(size=(E, 3, 5))), cast(rng.normal(size=(E, 2, 5)))
    probes = (
        [cast(rng.normal(size=(3, 7)))] * E
        if shared
        else [cast(rng.normal(size=(3, 7))) for _ in range(E)]
    )

    def monitors():
        kw = {"eps": 1e-2, "patience": 2, "max_period": max_period, "every": every,
              "window": 4, "blocks": 3}  # fmt: skip
        out = []
        for p in probes:
            mon = tv_monitor(p, observe, kw)
            out.append(mon)
        return out

    stacked, alone = monitors(), monitors()
    together = MemberMonitors(
        stacked,
        observe=(lambda s: np.sum(together.outputs**2, axis=(1, 2))[:, None]) if observe else None,
    )
    members = tv.unstack(stack)

    def each(step, m, losses):
        together(step, m, losses)
        tv.unstack(m, into=members)
        for mon, member, loss in zip(alone, members, losses, strict=True):
            mon(step, member, loss)

    tv.train(lambda m, x, y: tv.mse(m(x), y, members=True), stack, [(x, y)] * 9,
             tv.setup(tv.Descent(0.3), stack), epochs=1, progress=False, callbacks=[each])  # fmt: skip
    for a, b in zip(stacked, alone, strict=True):
        assert a.history and same(a.history, b.history)
        assert same(a.status(), b.status())


def tv_monitor(probe, observe, kw):
    """A CompletionMonitor whose observable (with ``observe``) is ‖f(X_p)‖² of its outputs."""
    mon = CompletionMonitor(
        probe, observe=(lambda m: [float(np.sum(mon.outputs**2))]) if observe else None, **kw
    )
    return mon


def test_member_monitors_refuse_what_they_cannot_do_for_a_stack():
    probe = np.ones((3, 2))
    with pytest.raises(ValueError, match="differ"):
        MemberMonitors([CompletionMonitor(probe), CompletionMonitor(probe, every=2)])
    with pytest.raises(ValueError, match="stop"):
        MemberMonitors([CompletionMonitor(probe, stop=True)] * 2)
    with pytest.raises(ValueError, match="observe"):
        MemberMonitors([CompletionMonitor(probe, observe=lambda m: [0.0])] * 2)
    with pytest.raises(ValueError, match="takes a stack"):
        record_members([VectorRecorder()], net(0, 2, False), 1, [0.0])
    with pytest.raises(ValueError, match="one recorder"):
        record_members([VectorRecorder()], tv.stack([net(0, 2, False)] * 2), 1, [0.0, 0.0])
