import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

import tinyvec as tv
from tinyvec.analysis.hessian import hessian_matrix
from tinyvec.experiments import sharpness, sharpness_report


def test_quick_run_writes_results_figures_and_a_rerunnable_config(tmp_path):
    out = tmp_path / "s"
    argv = ["--quick", "--quiet", "--jobs", "1", "--seeds", "0-1", "--out", str(out)]
    assert sharpness.main([*argv, "--sgd-tasks", "sin"]) == 0
    results = (out / "results.md").read_text()
    assert (
        "## Part 1: full-batch gradient descent" in results
        and "| analyze | tanh | 0.1 | 20 |" in results
    )
    assert "| digits | relu | 0.5 | 4 |" in results and "| sin | 0.1 | κ = 0.2 |" in results
    for name in ("gd-analyze.png", "gd-digits.png", "sgd.png"):
        assert (out / name).stat().st_size > 0
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 200 and config["seeds"] == "0-1"
    runs = [json.loads(line) for line in open(out / "runs.jsonl")]
    assert len(runs) == 2 * 2 * 2 * 2 + 2 * 2  # gd: tasks × σ × η × seeds; sgd: κ × seeds
    # the config reruns the same sweep (nothing left to compute: it resumes)
    assert sharpness.main(["--config", str(out / "config.json"), "--out", str(out), "--quiet"]) == 0


def test_the_measured_sharpness_is_the_top_eigenvalue_of_the_dense_hessian():
    spec = {"part": "gd", "task": "digits", "activation": "tanh", "eta": 0.1, "seed": 0,
            "steps": 3, "every": 3, "per_class": 2}  # fmt: skip
    run = sharpness.gd_run(spec)
    assert run["steps"] == [0, 3]
    x, y = sharpness.gd_data("digits", 0, 2)
    model = sharpness.gd_model("digits", "tanh", 0)
    H = hessian_matrix(lambda m: tv.mse(m(x), y), model)
    assert run["sharpness"][0] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-6)


def test_the_verdict_says_when_the_parameters_come_back_while_the_loss_falls():
    # analyze's ReLU net at η = 0.1 reaches 2/η by step 400; by step 2000 it returns every second
    # step while the loss still falls: "moving" by issue 24's loss-trend rule, which the
    # verdict cell must not reduce to a plain "moving" (the study's edge-of-stability claim)
    spec = {"part": "gd", "task": "analyze", "activation": "relu", "eta": 0.1, "seed": 0,
            "steps": 2000, "every": 100, "per_class": 20}  # fmt: skip
    run = sharpness.gd_run(spec)
    assert run["completion"] == "moving" and run["returns"] == 2
    assert run["eos"]["alignment"] > 0.99
    assert sharpness_report.verdict(run) == f"moving, back every 2 ({run['eos']['alignment']:.2f})"
    fixed = {"diverged": False, "completion": "fixed_point", "period": 1, "returns": None,
             "eos": None}  # fmt: skip
    assert sharpness_report.verdict(fixed) == "fixed_point 1"
    assert sharpness_report.verdict({**fixed, "diverged": True}) == "diverged"
