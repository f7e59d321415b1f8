"""The compensation study: the quick run writes every file, and the same seed gives the same
numbers whatever the number of worker processes."""

import csv
import json
import math

import pytest

from tinyvec.experiments import compensation as study


def test_quick_run_writes_everything_and_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert study.main(["--quick", "--out", str(a), "--jobs", "2", "--no-progress"]) == 0
    names = {p.name for p in a.iterdir()}
    assert {"results.md", "results.csv", "runs.csv", "config.json"} <= names
    assert {"curves_sin_tanh_sample.png", "curves_sin_tanh_batch.png"} <= names
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["seeds"] == 2 and cfg["tasks"] == ["sin"] and "--quick" in cfg["command"]
    rows = list(csv.DictReader(open(a / "results.csv")))
    plain = [r for r in rows if float(r["kappa"]) == 0 and r["ortho"] == "False"]
    assert plain and all(float(r["mean_ratio"]) == 1 for r in plain)
    assert len(list(csv.DictReader(open(a / "runs.csv")))) == len(study.grid(cfg))
    text = (a / "results.md").read_text()
    assert "stagnated" in text and "κ=0.2 exact" in text
    assert study.main(["--quick", "--out", str(b), "--jobs", "1", "--no-progress"]) == 0
    assert (a / "results.csv").read_text() == (b / "results.csv").read_text()


def test_summary_ratios_are_paired_geometric_means():
    def run(kappa, seed_index, final, diverged=False):
        return dict(
            task="sin",
            activation="tanh",
            width=4,
            depth=2,
            mode="sample",
            eta=0.1,
            kappa=kappa,
            variant="-" if kappa == 0 else "exact",
            ortho=False,
            eps="-",
            seed_index=seed_index,
            final=final,
            eval_mse=final,
            diverged=diverged,
            stagnated=seed_index == 0,
        )

    results = [
        run(0, 0, 1.0),
        run(0, 1, 4.0),
        run(0.2, 0, 0.5),
        run(0.2, 1, 1.0),
        run(1.0, 0, math.nan, diverged=True),
        run(1.0, 1, 8.0),
    ]
    rows = {r["kappa"]: r for r in study.summarise(results)}
    assert rows[0.2]["mean_ratio"] == pytest.approx(0.75 / 2.5)
    assert rows[0.2]["median_ratio"] == pytest.approx((0.5 + 0.25) / 2)
    assert rows[0.2]["wins"] == 1 and rows[0.2]["stagnated"] == 0.5
    # the diverged seed is left out of the ratio of means, for the plain twin too
    assert rows[1.0]["mean_ratio"] == pytest.approx(2.0) and rows[1.0]["diverged"] == 0.5
    assert rows[1.0]["mean"] == 8.0 and math.isnan(results[4]["ratio"])


def test_stagnation():
    assert study.stagnated([1.0] * 40, var_y=1.0)
    assert not study.stagnated([1e-5] * 40, var_y=1.0)  # flat, but below the target
    assert not study.stagnated([1.0] * 30 + [0.5] * 10, var_y=1.0)


def test_bad_options():
    with pytest.raises(SystemExit, match="--quick or --full"):
        study.main(["--quick", "--full"])
    with pytest.raises(SystemExit, match="unknown tasks"):
        study.main(["--quick", "--tasks", "cos"])
    with pytest.raises(ValueError, match="unknown task"):
        study.task_data("cos", 10)
