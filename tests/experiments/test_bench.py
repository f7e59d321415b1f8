"""The benchmark compares like with like: the hand-written NumPy step and tinyvec's step
compute the same training trajectory, and the timing helpers return one row per variant."""

import numpy as np
import pytest

from tinyvec.experiments import baselines, bench, bench_steps
from tinyvec.layers.base import match, nodes


@pytest.mark.parametrize(
    ("spec", "batch", "dtype", "rtol"),
    [
        (bench_steps.seed_spec(), 20, "float64", 1e-12),
        (bench_steps.wide_spec(), 16, "float32", 1e-4),
    ],
    ids=["seed network", "wide relu"],
)
def test_numpy_baseline_and_tinyvec_take_the_same_steps(spec, batch, dtype, rtol):
    x, y = bench_steps.make_data(spec, batch, dtype)
    by_hand, ours = (
        baselines.numpy_step(spec, x, y, dtype),
        bench_steps.tinyvec_step(spec, x, y, dtype),
    )
    compiled = bench_steps.compiled_step(spec, x, y, dtype)
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
    rows = bench.benchmark(bench_steps.seed_spec(), 4, "float64", rounds=1, block_s=0.001)
    names = [name for name, _, _ in rows]
    assert names[:3] == ["numpy (by hand)", "tinyvec", "tinyvec compiled"]
    assert rows[0][2] == 1.0 and all(t > 0 for _, t, _ in rows)
    delta_rows = bench.deltarule_benchmark(bench_steps.seed_spec(), 4, rounds=1, block_s=0.001)
    assert delta_rows[0][0] == "plain" and len(delta_rows) == 10
    assert delta_rows[5][0] == "plain, compiled"


def test_curvature_rows_time_a_gradient_and_a_hessian_vector_product():
    rows = bench.curvature_benchmark(bench_steps.seed_spec(), 4, rounds=1, block_s=0.001)
    assert [name for name, _, _ in rows] == ["gradient", "gradient, reference road", "hvp"]
    assert rows[0][2] == 1.0 and all(t > 0 for _, t, _ in rows)


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


def _watched(steps):
    """``steps`` wrapped to record each implementation's weights at the first step of every
    block (the first call after ``reset``)."""
    starts = {name: [] for name in steps}
    fresh = dict.fromkeys(steps, False)
    watched = {}
    for name, step in steps.items():

        def run(name=name, step=step):
            if fresh[name]:
                starts[name].append([np.array(w, copy=True) for w in step.weights()])
                fresh[name] = False
            step()

        def reset(name=name, step=step):
            step.reset()
            fresh[name] = True

        run.reset = reset
        watched[name] = run
    return watched, starts


def test_every_block_starts_from_the_initial_weights():
    # without it, a block trains on from where the last one stopped: after thousands of steps
    # on one batch the compensated step diverged and the bench died (NonFiniteStep)
    spec = bench_steps.seed_spec()
    x, y = bench_steps.make_data(spec, 4, "float64")
    all_steps = bench_steps.deltarule_steps(spec, 4)
    steps = {
        "numpy": baselines.numpy_step(spec, x, y, "float64"),
        "tinyvec": bench_steps.tinyvec_step(spec, x, y, "float64"),
        "Compensation": all_steps["Compensation(0.2)"],
        "both, compiled": all_steps["Compensation + Orthogonalization, compiled"],
    }
    initial = {name: [np.array(w, copy=True) for w in s.weights()] for name, s in steps.items()}
    watched, starts = _watched(steps)
    bench.time_steps(watched, rounds=3, block_s=0.001, max_steps=5)
    for name, blocks in starts.items():
        assert len(blocks) == 4, name  # the sizing block and 3 rounds
        for weights in blocks:
            for W, W0 in zip(weights, initial[name], strict=True):
                assert W.tobytes() == W0.tobytes(), name
        assert not all(  # the steps did move the weights in between
            np.array_equal(W, W0)
            for W, W0 in zip(steps[name].weights(), initial[name], strict=True)
        ), name


def test_a_block_takes_at_most_max_steps_however_fast_the_step():
    counts = []

    def step():
        counts[-1] += 1

    step.reset = lambda: counts.append(0)
    bench.time_steps({"fast": step}, rounds=2, block_s=60.0, max_steps=7)
    assert counts == [8, 7, 7]  # the warm-up step, then blocks of max_steps


def test_a_full_block_of_the_compensated_step_stays_finite():
    # the step that diverged first (compiled Compensation on the seed network) for a whole
    # block from its initial weights, as the bench runs it
    step = bench_steps.deltarule_steps(bench_steps.seed_spec(), 20)["Compensation(0.2), compiled"]
    step.reset()
    for _ in range(bench.MAX_BLOCK_STEPS + 1):
        step()
    assert step.compiled.fallback is None
    assert all(np.isfinite(W).all() and np.abs(W).max() < 10 for W in step.weights())


def test_restorer_puts_back_weights_optimiser_state_and_delta_rule_memory():
    import tinyvec as tv

    spec = bench_steps.seed_spec()
    x, y = bench_steps.make_data(spec, 4, "float64")
    model = bench_steps.tinyvec_model(spec, "float64")
    state = tv.setup(tv.Momentum(0.01, 0.9), model, delta=tv.OrthogonalizationOverTime(3))
    reset = bench_steps.restorer(model, state)

    def block():
        for _ in range(3):
            tv.update(state, model, tv.gradient(lambda m: tv.mse(m(x), y), model))
        return [np.array(getattr(m, name), copy=True) for _, m, name in tv.trainables(model)]

    first = block()
    assert state.transform.memory  # the rule remembers, the momentum moved
    reset()
    assert not state.transform.memory
    assert all(
        not np.any(leaf.state) for _, _, _, leaf in match(nodes(model), (state.tree,), ("s",))
    )
    again = block()  # the same steps from the same start: the same bits
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, again, strict=True))


def test_the_phase_script_runs_and_names_every_phase():
    """`docs/results/speed/phases.py` (where a step's time goes) reads tv.compile's internals:
    keep it running."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[2] / "docs" / "results" / "speed" / "phases.py"
    out = subprocess.run(
        [sys.executable, str(script), "--rounds", "1"], capture_output=True, text=True, check=True
    ).stdout
    for phase in ("NumPy, the whole step", "forward (written program)", "gather, in update"):
        assert phase in out
    assert "the bare pieces take the compiled step's steps, bit for bit: True" in out


def test_the_before_after_script_times_two_versions_in_one_process():
    """`docs/results/speed/before_after.py` (issue 18, item 7: before and after in the same
    run) imports a version from git as a package of its own: keep it running, here against
    this checkout's own HEAD."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).parents[2]
    if (
        shutil.which("git") is None
        or subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True
        ).returncode
    ):
        pytest.skip("not a git checkout")
    script = repo / "docs" / "results" / "speed" / "before_after.py"
    out = subprocess.run(
        [sys.executable, str(script), "HEAD", "--rounds", "1", "--block", "0.001"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for road in ("default", "compiled, tv.mse", "compiled, loss function"):
        assert f"| {road}, HEAD |" in out and f"| {road}, this checkout |" in out
        assert f"| {road} | " in out  # its ratio, this checkout against HEAD
