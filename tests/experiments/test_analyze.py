import csv
import json

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
    assert (tmp_path / "a" / "config.json").is_file()
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
    assert list(tmp_path.iterdir()) == []


def test_config_keys_are_the_flags_and_seeds_use_the_runner(tmp_path):
    argv = ["--steps", "8", "--n", "32", "--width", "8", "--depth", "2", "--quiet", "--no-plots"]
    assert analyze.main([*argv, "--out", str(tmp_path / "a")]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    flags = {a.dest for a in analyze.parser()._actions}
    assert set(config) <= flags and config["n"] == 32 and config["patience"] == 20
    assert analyze.main([*argv, "--seeds", "0-1", "--jobs", "1", "--out", str(tmp_path / "s")]) == 0
    runs = [json.loads(line) for line in open(tmp_path / "s" / "runs.jsonl")]
    one = analyze.seed_run({**runs[0]["spec"]})
    assert runs[0]["test_loss"] == one["test_loss"] and len(runs) == 2
    assert "| 1 |" in (tmp_path / "s" / "summary.md").read_text()
