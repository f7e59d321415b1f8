import csv

import pytest

pytest.importorskip("matplotlib")

from tinyvec.experiments import analyze


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_analyze_writes_every_figure_and_repeats_with_the_seed(tmp_path):
    assert analyze.main(["--steps", "12", "--out", str(tmp_path / "a")]) == 0
    again = analyze.run(steps=12)["recorder"].rows
    names = ["series.png", "decomposition.png", "heatmaps.png", "completion.png", "loss.png"]
    for name in [*names, "steps.csv", "completion.csv", "summary.md"]:
        assert (tmp_path / "a" / name).stat().st_size > 0
    rows = read(tmp_path / "a" / "steps.csv")
    assert len(rows) == 12 * 4 and all(float(r["residual"]) < 1e-9 for r in rows)
    assert [float(r["cos_total_delta"]) for r in rows] == [r["cos_total_delta"] for r in again]
    checks = read(tmp_path / "a" / "completion.csv")
    assert [int(c["step"]) for c in checks] == list(range(2, 13))
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "completion (ε = 0.001" in summary and "| 4 |" in summary


def test_minibatches_number_every_step():
    result = analyze.run(steps=10, batch=32, n=64, width=8, depth=2)
    assert result["config"]["batch"] == 32 and len(result["history"]) == 10
    assert result["recorder"].steps("ratio").tolist() == list(range(1, 11))
    assert result["monitor"].status()["step"] == 10


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        analyze.main(["--steps", "0", "--out", str(tmp_path)])
