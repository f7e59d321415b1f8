"""The eigen-operator experiment: its measurements on known cases, determinism, the CLI."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.experiments import eigen
from tinyvec.experiments.eigen_operator import degree1_spectrum, make_operators, unit_vectors


def test_network_is_the_seeds_with_near_zero_skip_weights():
    c = eigen.Config()
    model = eigen.build_network(c, np.random.default_rng(0))
    assert repr(model) == (
        "Chain(Dense(20 => 40, atan), SkipConnection(Dense(40 => 40, atan), +), "
        "SkipConnection(Dense(40 => 40, atan), +), SkipConnection(Dense(40 => 40, atan), +), "
        "Dense(40 => 3, atan), Dense(3 => 1))"
    )
    W = eigen.skip_weights(model)
    assert W.shape == (3, 40, 40)
    assert np.abs(W).max() <= 1e-3 * np.sqrt(6 / 80)
    assert np.abs(model[0].weight).max() > 0.1


def test_targets_are_plain_arrays_of_the_current_network():
    c = eigen.Config()
    model = eigen.build_network(c, np.random.default_rng(0))
    A, B = make_operators(20, 1.0, seed=0)
    x = unit_vectors(20, 7, np.random.default_rng(1))
    y = eigen.targets(model, A, B, x)
    assert type(y) is np.ndarray and y.shape == (1, 7)
    assert np.allclose(y, model(A @ x) + model(B @ x))


def test_probe_metrics_on_an_exact_linear_eigenfunction():
    """A linear model N(x) = v·x with v a real eigenvector of (A+B)ᵀ is an eigenfunction:
    the experiment's λ̂ is its eigenvalue and R² = 1."""
    A, B = make_operators(20, 1.0, seed=1)
    mu, V = degree1_spectrum(A, B)
    k = int(np.flatnonzero(np.abs(mu.imag) < 1e-9)[0])
    model = tv.Dense.from_weights(V[:, k].real[None, :], np.array([0.7]))
    lam, r2, f = eigen.probe_metrics(model, A, B, unit_vectors(20, 300, np.random.default_rng(2)))
    assert lam == pytest.approx(mu[k].real, abs=1e-9)
    assert r2 == pytest.approx(1.0, abs=1e-12)
    assert f.shape == (300,)


def test_effective_rank_and_weight_stats():
    assert eigen.effective_rank(np.ones(5)) == pytest.approx(5.0)
    assert eigen.effective_rank(np.array([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    u = rng.normal(size=(10, 1))
    W = np.stack([u @ u.T, u @ u.T, 2 * u @ u.T])
    s = eigen.weight_stats(W)
    assert s["erank_r"] == pytest.approx(1.0, abs=1e-6)
    assert s["diff_rg"] == 0.0
    # ‖W‖ = √((1 + 1 + 4)/3)‖uuᵀ‖ = √2 ‖uuᵀ‖, ‖W_g − W_b‖ = ‖uuᵀ‖
    assert s["diff_gb"] == pytest.approx(1 / np.sqrt(2))
    independent = eigen.weight_stats(rng.normal(size=(3, 200, 200)))
    assert independent["diff_rb"] == pytest.approx(np.sqrt(2), rel=0.02)


def test_lag1_autocorrelation_sees_an_alternation():
    assert eigen.lag1_autocorrelation(np.tile([1.0, 2.0], 50)) == pytest.approx(-0.99)
    assert eigen.lag1_autocorrelation(np.linspace(0, 1, 100)) > 0.9


def test_parse_seeds():
    assert eigen.parse_seeds("0-3") == [0, 1, 2, 3]
    assert eigen.parse_seeds("1,4,9") == [1, 4, 9]
    assert eigen.parse_seeds("2-3,7") == [2, 3, 7]
    for bad in ("a-b", "", "3-1"):
        with pytest.raises(ValueError, match="seed"):
            eigen.parse_seeds(bad)


def test_bad_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        eigen.main(["--opt", "sgd", "--out", "unused"])
    assert "--opt must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eigen.main(["--config", "/nonexistent/config.json"])
    assert "not a readable config.json" in capsys.readouterr().err
    with pytest.raises(ValueError, match="lr"):
        replace(eigen.Config(), lr=0.0).check()
    with pytest.raises(ValueError, match="lr_final"):
        replace(eigen.Config(), lr_final=-1.0).check()


SHORT = {"steps": 40, "probe": 50, "record_every": 10, "tail": 10, "monitor_probe": 16,
         "analysis": 300}  # fmt: skip


def test_same_seed_same_numbers(tmp_path):
    c = replace(eigen.Config(), **SHORT)
    a = eigen.run(c, tmp_path / "a", progress=False, plots=False)
    b = eigen.run(c, tmp_path / "b", progress=False, plots=False)
    other = eigen.run(replace(c, seed=2), tmp_path / "c", progress=False, plots=False)
    for s in (a, b, other):
        s.pop("steps_per_second"), s.pop("steps_per_cpu_second")
    assert a == b
    assert a["lambda"] != other["lambda"]
    assert (tmp_path / "a" / "metrics.csv").read_text() == (
        tmp_path / "b" / "metrics.csv"
    ).read_text()


def test_quick_run_writes_every_output(tmp_path):
    out = tmp_path / "run"
    assert eigen.main(["--quick", "--out", str(out)]) == 0
    for name in ("config.json", "metrics.csv", "steps.csv", "operators.npz", "animation.gif",
                 "frame.png", "lambda_r2.png", "singular_values.png", "differences.png",
                 "spectrum.png", "model.npz", "skip_weights.npz", "summary.json"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 1 and config["steps"] == eigen.QUICK["steps"]
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {"step", "lambda", "r2"} <= set(rows[0])
    assert int(rows[-1]["step"]) == config["steps"]
    ops = np.load(out / "operators.npz")
    assert np.allclose(ops["A"].T @ ops["A"], np.eye(20))
    model = eigen.build_network(eigen.Config(), np.random.default_rng(99))
    tv.load(out / "model.npz", model)  # the saved model has the network's parameters
    summary = json.loads((out / "summary.json").read_text())
    for key in ("lambda", "r2", "nearest", "nearest_degree", "dominant", "extreme_degree1",
                "degrees", "rotation",
                "completion", "lambda_tail", "skip_weights", "steps_per_second"):  # fmt: skip
        assert key in summary, key
    assert summary["completion"]["kind"] in ("fixed_point", "limit_cycle", "moving")
    assert summary["nearest_degree"] in (1, 2)
    assert float(rows[-1]["lambda"]) == pytest.approx(summary["lambda"])
    # the saved model reproduces the final λ̂ on the probe set
    A, B = ops["A"], ops["B"]
    probe = unit_vectors(20, config["probe"], np.random.default_rng([1, 3]))
    assert eigen.probe_metrics(model, A, B, probe)[0] == pytest.approx(summary["lambda"])
    # config.json is enough to rerun: the same numbers
    again = tmp_path / "again"
    assert (
        eigen.main(["--config", str(out / "config.json"), "--out", str(again), "--no-plots"]) == 0
    )
    assert (again / "metrics.csv").read_text() == (out / "metrics.csv").read_text()


def test_seeds_in_parallel_write_a_table(tmp_path):
    c = replace(eigen.Config(), **SHORT)
    results = eigen.run_seeds(c, [3, 4], tmp_path, jobs=1, plots=False)
    assert [s["seed"] for s in results] == [3, 4]
    table = (tmp_path / "summary.md").read_text().splitlines()
    assert len(table) == 4 and table[0].startswith("| seed |")
    with (tmp_path / "summary.csv").open() as fh:
        assert [int(r["seed"]) for r in csv.DictReader(fh)] == [3, 4]
    assert (tmp_path / "seed-4" / "summary.json").exists()


@pytest.mark.slow
def test_default_run_meets_the_acceptance(tmp_path):
    """The default settings (seed 1, t = 1): R² ≥ 0.99 on the probe, λ̂ within 2 % of a true
    eigenvalue, which is real, of degree 1, at the end of the real axis, and the learned
    linear part is aligned with its eigenvector."""
    s = eigen.run(eigen.Config(), tmp_path, progress=False, plots=False)
    near = s["nearest"]["by_value"]
    assert s["r2"] >= 0.99
    assert near["degree"] == 1 and near["is_real"]
    assert near["distance"] <= 0.02 * near["modulus"]
    assert s["extreme_degree1"]["distance"] == pytest.approx(near["distance"])
    assert s["degrees"]["nearest_degree1"]["cosine"] >= 0.99
