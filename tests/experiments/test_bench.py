"""The benchmark compares like with like: the hand-written NumPy step and tinyvec's step
compute the same training trajectory, and the timing helpers return one row per variant."""

import numpy as np
import pytest

from tinyvec.experiments import bench


@pytest.mark.parametrize(
    ("spec", "batch", "dtype", "rtol"),
    [(bench.seed_spec(), 20, "float64", 1e-12), (bench.wide_spec(), 16, "float32", 1e-4)],
    ids=["seed network", "wide relu"],
)
def test_numpy_baseline_and_tinyvec_take_the_same_steps(spec, batch, dtype, rtol):
    x, y = bench.make_data(spec, batch, dtype)
    by_hand, ours = bench.numpy_step(spec, x, y, dtype), bench.tinyvec_step(spec, x, y, dtype)
    compiled = bench.compiled_step(spec, x, y, dtype)
    for _ in range(3):
        by_hand()
        ours()
        compiled()
    assert compiled.compiled.fallback is None  # it really ran compiled
    for W_hand, W_ours, W_compiled in zip(
        by_hand.weights(), ours.weights(), compiled.weights(), strict=True
    ):
        assert W_ours.dtype == np.dtype(dtype)
        np.testing.assert_allclose(W_ours, W_hand, rtol=rtol, atol=rtol)
        assert W_compiled.tobytes() == W_ours.tobytes()  # compiled: the same bits


def test_timing_rows():
    rows = bench.benchmark(bench.seed_spec(), 4, "float64", rounds=1, block_s=0.001)
    names = [name for name, _, _ in rows]
    assert names[:3] == ["numpy (by hand)", "tinyvec", "tinyvec compiled"]
    assert rows[0][2] == 1.0 and all(t > 0 for _, t, _ in rows)
    delta_rows = bench.deltarule_benchmark(bench.seed_spec(), 4, rounds=1, block_s=0.001)
    assert delta_rows[0][0] == "plain" and len(delta_rows) == 10
    assert delta_rows[5][0] == "plain, compiled"


def test_peak_rss_runs_each_implementation_in_a_fresh_process():
    mb = bench.peak_rss("tinyvec compiled", steps=1)
    assert 10 < mb < 10_000  # megabytes: the interpreter, NumPy and network (b)


def test_pinning_to_one_cpu_says_how():
    import os

    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        text = bench.pin_one_cpu()
        assert text.startswith(("pinned to CPU", "not pinned"))
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
