"""The compensation study: the quick run writes every file, the same seed gives the same
numbers whatever the number of worker processes, and an interrupted sweep resumes."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from stacks import spy_on_stacks

from tinyvec.experiments import compensation as study
from tinyvec.experiments import compensation_converged as converged
from tinyvec.experiments import compensation_runs
from tinyvec.experiments.runfile import read_runs


def test_quick_run_writes_everything_and_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert study.main(["--quick", "--out", str(a), "--jobs", "2", "--quiet"]) == 0
    names = {p.name for p in a.iterdir()}
    assert {"results.md", "results.csv", "runs.csv", "runs.jsonl", "config.json"} <= names
    assert {"curves_sin_tanh_sample.png", "curves_sin_tanh_batch.png"} <= names
    assert "INCOMPLETE" not in names
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["seeds"] == "0-1" and cfg["tasks"] == ["sin"] and cfg["quick"]
    rows = list(csv.DictReader(open(a / "results.csv")))
    plain = [r for r in rows if float(r["kappa"]) == 0 and r["ortho"] == "False"]
    assert plain and all(float(r["mean_ratio"]) == 1 for r in plain)
    specs = study.grid(study.config(study.parser().parse_args(["--quick"])))
    assert len(list(csv.DictReader(open(a / "runs.csv")))) == len(specs)
    assert len(read_runs(a / "runs.jsonl")) == len(specs)
    text = (a / "results.md").read_text()
    assert "stagnated" in text and "κ=0.2 exact" in text and "--quick" in text
    assert study.main(["--config", str(a / "config.json"), "--out", str(b), "--jobs", "1",
                       "--quiet", "--format", "svg"]) == 0  # fmt: skip
    assert (a / "results.csv").read_text() == (b / "results.csv").read_text()
    assert (b / "curves_sin_tanh_batch.svg").is_file()


def test_a_folder_of_another_sweep_is_refused(tmp_path, capsys):
    assert study.main(["--quick", "--out", str(tmp_path), "--jobs", "1", "--quiet",
                       "--no-plots"]) == 0  # fmt: skip
    with pytest.raises(SystemExit):
        study.main(["--quick", "--points", "12", "--out", str(tmp_path), "--quiet"])
    assert "differs in points" in capsys.readouterr().err


def test_sigint_then_resume_gives_every_spec_once_and_the_same_numbers(tmp_path, ctrl_c):
    """The acceptance test of the runner: Ctrl-C mid-sweep, the same command again, and the
    result equals an uninterrupted run."""
    argv = ["--quick", "--epochs-sample", "150", "--epochs-batch", "150", "--no-plots", "--quiet"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert study.main([*argv, "--jobs", "1", "--out", str(whole)]) == 0
    command = [sys.executable, "-m", "tinyvec", "compensation", *argv, "--jobs", "2",
               "--out", str(cut)]  # fmt: skip
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, **ctrl_c)
    for _ in range(1200):  # until a few runs are done (not a timed assertion)
        if proc.poll() is not None or (
            (cut / "runs.jsonl").exists() and (cut / "runs.jsonl").read_text().count("\n") >= 4
        ):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["tinyvec compensation: interrupted"]
    assert (cut / "INCOMPLETE").is_file() and not (cut / "results.csv").exists()
    assert 4 <= len(read_runs(cut / "runs.jsonl")) < len(read_runs(whole / "runs.jsonl"))
    assert study.main([*argv, "--jobs", "2", "--out", str(cut)]) == 0
    lines = read_runs(cut / "runs.jsonl")
    keys = [json.dumps(r["spec"], sort_keys=True) for r in lines]
    assert len(keys) == len(set(keys)) == len(read_runs(whole / "runs.jsonl"))
    assert (cut / "results.csv").read_text() == (whole / "results.csv").read_text()


def test_bad_options(capsys):
    with pytest.raises(SystemExit):
        study.main(["--quick", "--full"])
    assert "--quick or --full" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        study.main(["--quick", "--tasks", "cos"])
    assert "invalid choice: 'cos'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown task"):
        compensation_runs.task_data("cos", 10)


def test_stacked_runs_give_the_numbers_of_the_runs_alone(tmp_path):
    """`--stack` (the default) against ``--stack 1``: every run's numbers to 1e-10 relative
    (bit for bit here), a diverging member included (η = 5 diverges; its stack goes on)."""
    import json
    import math

    argv = ["--quick", "--etas-sample", "0.05", "5.0", "--no-plots", "--quiet", "--jobs", "1"]
    assert study.main([*argv, "--stack", "1", "--out", str(tmp_path / "alone")]) == 0
    assert study.main([*argv, "--stack", "8", "--out", str(tmp_path / "stacked")]) == 0

    def runs(name):
        lines = (tmp_path / name / "runs.jsonl").read_text().splitlines()
        return {json.dumps(r["spec"], sort_keys=True): r for r in map(json.loads, lines)}

    alone, stacked = runs("alone"), runs("stacked")
    assert alone.keys() == stacked.keys()
    assert any(r["diverged"] for r in alone.values())
    assert any(not r["diverged"] for r in alone.values())
    for k, a in alone.items():
        b = stacked[k]
        assert a["diverged"] == b["diverged"]
        for field in ("final", "tail", "eval_mse", "curve"):
            xs = a[field] if isinstance(a[field], list) else [a[field]]
            ys = b[field] if isinstance(b[field], list) else [b[field]]
            for x, y in zip(xs, ys, strict=True):
                assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-10 * abs(x), field


@pytest.mark.parametrize("rule", [[], ["--memory", "4"]], ids=["kappa", "over-time"])
def test_stacked_runs_to_convergence_give_the_numbers_of_the_runs_alone(
    tmp_path, monkeypatch, rule
):
    """compensation_converged with ``--stack``, κ or orthogonalization over time against
    plain: members leave the stack when they meet the criterion (here at 40 to 80 epochs, at
    different checks) or diverge (η = 5), and every run's line equals its ``--stack 1`` line
    bit for bit, run times aside."""
    argv = ["--quick", "--cells", "sin:0.05", "sin:0.2", "sin:5.0", "--tol", "0.1", "--quiet",
            "--no-plots", "--jobs", "1", *rule]  # fmt: skip
    assert converged.main([*argv, "--stack", "1", "--out", str(tmp_path / "alone")]) == 0
    sizes = spy_on_stacks(monkeypatch, converged.run_one, len)
    assert converged.main([*argv, "--stack", "8", "--out", str(tmp_path / "stacked")]) == 0
    assert max(sizes) == 8  # the runs did train as stacks

    def runs(name):
        lines = (tmp_path / name / "runs.jsonl").read_text().splitlines()
        return {json.dumps(r.pop("spec"), sort_keys=True): r for r in map(json.loads, lines)}

    alone, stacked = runs("alone"), runs("stacked")
    assert alone.keys() == stacked.keys()
    epochs = {r["epochs"] for r in alone.values() if r["converged"]}
    assert len(epochs) > 1 and any(not r["converged"] for r in alone.values())
    assert any(r["diverged"] for r in alone.values())
    for k, a in alone.items():
        a.pop("seconds"), stacked[k].pop("seconds")
        assert json.dumps(a, sort_keys=True) == json.dumps(stacked[k], sort_keys=True), k
