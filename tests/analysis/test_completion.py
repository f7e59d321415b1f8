import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.analysis.completion import (
    CompletionMonitor,
    classify_trajectory,
    parameter_residuals,
    prediction_change,
)


def mse_loss(m, x, y):
    return tv.mse(m(x), y)


@given(rate=st.floats(0.05, 0.9), period=st.integers(2, 4), drift=st.floats(1e-2, 1.0))
@settings(max_examples=30, deadline=None)
def test_synthetic_trajectories(rate, period, drift):
    rng = np.random.default_rng(0)
    star, e = rng.normal(size=5), rng.normal(size=5)
    n = 200
    converge = [star + rate**t * e for t in range(n)]
    assert classify_trajectory(converge, eps=1e-6)["kind"] == "fixed_point"
    cycle = [star + e * (t % period) for t in range(n)]
    r = classify_trajectory(cycle, eps=1e-6, max_period=4)
    assert (r["kind"], r["period"]) == ("limit_cycle", period)
    moving = [star + drift * t * e for t in range(n)]
    assert classify_trajectory(moving, eps=1e-6)["kind"] == "moving"


def test_damped_oscillation_is_a_cycle_then_a_fixed_point():
    star, e = np.array([1.0, 2.0]), np.array([0.3, -0.1])
    osc = [star + (-0.9) ** t * e for t in range(400)]
    assert classify_trajectory(osc[:30], eps=1e-3)["kind"] == "moving"
    assert classify_trajectory(osc, eps=1e-6)["kind"] == "fixed_point"
    # -0.999^t: the step residual stays large while two steps nearly return
    slow = [star + (-0.9999) ** t * e for t in range(60)]
    r = classify_trajectory(slow, eps=1e-3)
    assert (r["kind"], r["period"]) == ("limit_cycle", 2)


def test_function_values_and_losses_count():
    # parameters frozen but the output still moving (e.g. another part of the system): not fixed
    params = [np.ones(3)] * 30
    outputs = [np.array([[1.0 + 0.01 * t]]) for t in range(30)]
    assert classify_trajectory(params, outputs)["kind"] == "moving"
    assert classify_trajectory(params, [np.ones((1, 4))] * 30)["kind"] == "fixed_point"
    losses = [1.0 - 0.01 * t for t in range(30)]
    assert classify_trajectory(params, losses=losses)["kind"] == "moving"
    with pytest.raises(ValueError, match="outputs has 2 points"):
        classify_trajectory(params, outputs[:2])
    with pytest.raises(ValueError, match="at least two"):
        classify_trajectory(params[:1])


def test_residual_definitions():
    new = {"a": [np.array([3.0, 4.0]), np.array([1.0])], "b": [np.zeros(2)]}
    old = {"a": [np.array([3.0, 4.0]), np.array([0.0])], "b": [np.zeros(2)]}
    r = parameter_residuals(new, old, lr=0.5)
    assert r["a"] == pytest.approx(1 / (0.5 * 5)) and r["b"] == 0
    assert parameter_residuals({"b": [np.ones(1)]}, {"b": [np.zeros(1)]})["b"] == math.inf
    f_old = np.array([[1.0, 2.0, 3.0, 0.0]])
    f_new = f_old + np.array([[0.0, 2.9e-3, 4.1e-3, 1.1e-3]])  # tol·(1+|f|) = 3e-3, 4e-3, 1e-3
    assert prediction_change(f_new, f_old, tol=1e-3) == 0.5
    assert prediction_change(f_new[0], f_old[0], tol=1e-3) == 0.5
    with pytest.raises(ValueError, match="prediction mode"):
        prediction_change(f_new, f_old, mode="nearest")


def test_convex_regression_reaches_a_fixed_point():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 64))
    y = rng.normal(size=(2, 4)) @ x + 0.1 * rng.normal(size=(2, 64))  # not realisable
    m = tv.Dense(4, 2, rng=0)
    mon = CompletionMonitor(x[:, :16], eps=1e-8, patience=5, lr=0.2, stop=True)
    hist = tv.train(mse_loss, m, [(x, y)], tv.setup(tv.Descent(0.2), m), epochs=3000,
                    progress=False, callbacks=[mon])  # fmt: skip
    s = mon.status()
    assert s["kind"] == "fixed_point" and s["period"] == 1
    assert len(hist) < 3000 and s["step"] == len(hist)
    assert s["function_residual"] < 1e-8 and s["prediction_change"] == 0
    assert set(s["param_residual"]) == {"model"} and s["loss_residual"] < 1e-8
    # the least-squares solution: it is the fixed point the monitor found
    X1 = np.vstack([x, np.ones((1, 64))])
    sol = np.linalg.lstsq(X1.T, y.T, rcond=None)[0].T
    assert np.allclose(np.hstack([m.weight, m.bias[:, None]]), sol, atol=1e-6)


def test_edge_of_stability_step_is_a_period_two_cycle():
    # one sample, one output: the loss Hessian in (w, b) is 2 u uᵀ, u = (x, 1); the step
    # α = 1/‖u‖² puts its eigenvalue at exactly 2/α, and the residual flips sign every step
    x, y = np.array([[1.0], [0.0]]), np.array([[1.0]])
    m = tv.Dense.from_weights(np.array([[0.5, 0.3]]), np.zeros(1))
    mon = CompletionMonitor(x, eps=1e-6, max_period=4, lr=0.5)
    tv.train(mse_loss, m, [(x, y)], tv.setup(tv.Descent(0.5), m), epochs=20, progress=False,
             callbacks=[mon])  # fmt: skip
    s = mon.status()
    assert (s["kind"], s["period"]) == ("limit_cycle", 2)
    assert s["param_residual_max"] > 0.1 and s["cycle_residual"][2] < 1e-12
    m2 = tv.Dense.from_weights(np.array([[0.5, 0.3]]), np.zeros(1))
    mon2 = CompletionMonitor(x, eps=1e-6, max_period=4, lr=0.4)
    tv.train(mse_loss, m2, [(x, y)], tv.setup(tv.Descent(0.4), m2), epochs=200, progress=False,
             callbacks=[mon2])  # fmt: skip
    assert mon2.status()["kind"] == "fixed_point"


def test_probe_leaves_the_training_batch_on_the_layers_and_every():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(3, 8)), rng.normal(size=(1, 8))
    m = tv.Chain(tv.Dense(3, 5, tv.tanh, rng=0), tv.Dense(5, 1, rng=1))
    seen = []
    mon = CompletionMonitor(rng.normal(size=(3, 20)), every=3)

    def after(step, model, loss):
        seen.append(model.layers[0].input is x and model.layers[1].input.shape == (5, 8))

    hist = tv.train(mse_loss, m, [(x, y)], tv.setup(tv.Descent(0.1), m), epochs=10,
                    progress=False, callbacks=[mon, after])  # fmt: skip
    assert all(seen) and len(hist) == 10
    assert [r["step"] for r in mon.history] == [3, 6, 9]
    assert all(not math.isnan(r["function_residual"]) for r in mon.history)
    assert set(mon.status()["param_residual"]) == {"model.layers[0]", "model.layers[1]"}
    assert mon.series("step") == [3, 6, 9] and mon.status()["checks"] == 3


def test_before_any_check_and_bad_input():
    mon = CompletionMonitor(None)
    assert mon.status()["kind"] == "moving" and mon.status()["checks"] == 0
    with pytest.raises(ValueError, match="eps > 0"):
        CompletionMonitor(None, eps=0)
    with pytest.raises(TypeError, match="probe must be an array"):
        CompletionMonitor([[1.0]])
    with pytest.raises(TypeError, match="trajectory point"):
        classify_trajectory(["a", "b"])


def test_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 10))
    y = np.array([[0.5, -1.0]]) @ x
    m = tv.to(xp, tv.Dense(2, 1, rng=0))
    mon = CompletionMonitor(xp.asarray(x), eps=1e-6, lr=0.3, stop=True)
    tv.train(mse_loss, m, [(xp.asarray(x), xp.asarray(y))], tv.setup(tv.Descent(0.3), m),
             epochs=2000, progress=False, callbacks=[mon])  # fmt: skip
    assert mon.status()["kind"] == "fixed_point"


# --- noise floor or drift (issue 11, item 5) ------------------------------------------------
def _ou(n, rng, rho=0.9, sigma=0.002):
    """An Ornstein-Uhlenbeck-like AR(1) series around 0: what SGD with a constant rate does
    near a minimum (correlated noise that never stops)."""
    e = np.zeros(n)
    for t in range(1, n):
        e[t] = rho * e[t - 1] + sigma * rng.standard_normal()
    return e


def test_trend_test_settled_drifting_and_undetermined():
    from tinyvec.analysis.completion import trend_test

    rng = np.random.default_rng(0)
    floor = 1.5 + _ou(400, rng)  # stationary spread ≈ 0.0046, τ = 0.025
    r = trend_test(floor, tol=0.01)
    assert r["settled"] and not r["drifting"], r
    assert r["spread"][0] == pytest.approx(floor.std())
    ramp = floor + np.linspace(0, 0.2, 400)
    r = trend_test(ramp, tol=0.01)
    assert r["drifting"] and not r["settled"] and r["change"][0] == pytest.approx(0.2, rel=0.15)
    # a slow drift under large noise: no visible trend, yet not shown to be settled either
    hidden = 1.5 + 20 * _ou(400, rng) + np.linspace(0, 0.03, 400)
    r = trend_test(hidden, tol=0.01)
    assert not r["drifting"] and not r["settled"]
    with pytest.raises(ValueError, match="3 blocks"):
        trend_test(floor[:2])


@given(seed=st.integers(0, 2**31 - 1), slope=st.floats(0.4, 3.0))
@settings(max_examples=25, deadline=None)
def test_noise_floor_and_drift_through_classify_trajectory(seed, slope):
    """The constructed cases of each kind: parameters that never stop (fresh noise every
    step) around a fixed point, with observables at their noise floor → "noise_floor"; the
    same plus a drift of the observables → "moving". The step residuals alone cannot tell
    them apart: both are far above eps. (The drift over the window of 100 checks is at least
    0.4·100/300 ≈ 0.13, above τ = 0.01·(1 + 1) = 0.02.)"""
    rng = np.random.default_rng(seed)
    n = 300
    # fresh noise every step on a circle of radius 0.05 around the fixed point, turning by at
    # least a quarter turn: every step moves by at least 0.05·√2, a residual ≥ 0.03 (Gaussian
    # noise made a step below eps in about 1 case of 2,000, a flaky test)
    phi = np.cumsum(rng.uniform(np.pi / 2, 3 * np.pi / 2, n))
    params = [np.array([1.0, -2.0]) + 0.05 * np.array([np.cos(a), np.sin(a)]) for a in phi]
    noise = np.stack([0.001 * rng.standard_normal(n), _ou(n, rng, sigma=0.001)], axis=1)
    at_floor = 1.0 + noise
    drifting = at_floor + np.outer(np.linspace(0, slope, n), [1.0, 0.0])
    kw = {"eps": 1e-3, "trend_tol": 0.01, "window": 100}
    floor = classify_trajectory(params, observables=at_floor, **kw)
    moving = classify_trajectory(params, observables=drifting, **kw)
    assert floor["kind"] == "noise_floor" and floor["param_residual_max"] > 1e-3
    assert moving["kind"] == "moving" and moving["trend"]["drifting"]
    assert classify_trajectory(params, eps=1e-3)["kind"] == "moving"  # no observables: no test


def test_monitor_on_sgd_at_its_floor_and_still_drifting():
    """Least squares by SGD with a fresh noisy batch every step and a constant rate: started
    at the solution the loss on a fixed probe sits at its noise floor; started far away with a
    small rate it is still falling after as many steps."""
    rng = np.random.default_rng(4)
    w_true = np.array([[1.0, -2.0, 0.5]])
    probe = rng.normal(size=(3, 200))
    probe_y = w_true @ probe

    def run(w0, lr):
        m = tv.Dense.from_weights(np.array(w0), np.zeros(1))
        state = tv.setup(tv.Descent(lr), m)
        mon = CompletionMonitor(
            probe, eps=1e-3, every=2, window=60, trend_tol=0.01,
            observe=lambda m: [float(np.mean((m(probe) - probe_y) ** 2))],
        )  # fmt: skip
        for step in range(1, 401):
            x = rng.normal(size=(3, 16))
            y = w_true @ x + 0.3 * rng.normal(size=(1, 16))
            loss, g = tv.withgradient(lambda m, x=x, y=y: tv.mse(m(x), y), m)
            tv.update(state, m, g)
            mon(step, m, float(loss))
        return mon.status()

    floor = run([[1.0, -2.0, 0.5]], 0.05)
    assert floor["kind"] == "noise_floor", floor["trend"]
    assert floor["param_residual_max"] > 1e-3  # the parameters never stop
    drifting = run([[5.0, 3.0, -4.0]], 0.002)
    assert drifting["kind"] == "moving" and drifting["trend"]["drifting"], drifting["trend"]
    with pytest.raises(ValueError, match="blocks"):
        CompletionMonitor(probe, window=2)
    with pytest.raises(TypeError, match="observe must be callable"):
        CompletionMonitor(probe, observe=3)
