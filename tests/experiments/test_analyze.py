import csv
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from stacks import spy_on_stacks

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


def _same(a, b):
    """Equal bit for bit: numbers (NaN equals NaN), arrays, and dicts, lists, tuples of them."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray | float | np.floating):
        return np.array_equal(a, b, equal_nan=True)
    return a == b


@pytest.mark.parametrize("batch", [None, 16], ids=["full-batch", "minibatches"])
def test_stacked_runs_record_and_monitor_each_seed_as_alone(batch):
    """`analyze.runs` of three seeds trains them as one stack; each run's recorder rows,
    completion checks, training and test losses and θ drift equal those of the seed alone,
    bit for bit (full batch, and mini-batches each shuffled by its own seed's stream)."""
    kw = {"steps": 25, "n": 48, "width": 8, "depth": 2, "batch": batch, "window": 8}
    together = analyze.runs([0, 1, 2], **kw)
    for seed, run in zip([0, 1, 2], together, strict=True):
        alone = analyze.run(seed=seed, **kw)
        assert run["config"] == alone["config"] and len(run["history"]) == 25
        assert _same(run["recorder"].rows, alone["recorder"].rows)
        assert _same(run["monitor"].history, alone["monitor"].history)
        for key in ("history", "test_loss", "theta_drift", "lookback"):
            assert _same(run[key], alone[key]), key
    assert not _same(together[0]["history"], together[1]["history"])  # (the seeds do differ)


def test_stacked_seeds_write_the_files_of_the_seeds_alone_and_resume(tmp_path, monkeypatch):
    """``--seeds 0-3`` stacked (a spy sees one stack) writes what ``--stack 1`` writes; a
    sweep cut short resumes with the seeds left, stacked, to the same files."""
    argv = ["--steps", "12", "--n", "32", "--width", "8", "--depth", "2", "--quiet",
            "--no-plots", "--seeds", "0-3", "--jobs", "1"]  # fmt: skip
    assert analyze.main([*argv, "--stack", "1", "--out", str(tmp_path / "alone")]) == 0
    sizes = spy_on_stacks(monkeypatch, analyze.seed_run)
    assert analyze.main([*argv, "--out", str(tmp_path / "stacked")]) == 0
    assert sizes == [[0, 1, 2, 3]]
    runs = tmp_path / "stacked" / "runs.jsonl"
    alone = (tmp_path / "alone" / "runs.jsonl").read_text()
    assert runs.read_text() == alone  # (the lines hold no run times)
    summary = (tmp_path / "alone" / "summary.md").read_text()
    assert (tmp_path / "stacked" / "summary.md").read_text() == summary
    runs.write_text("".join(alone.splitlines(keepends=True)[:1]))  # one seed done
    assert analyze.main([*argv, "--out", str(tmp_path / "stacked")]) == 0
    assert sizes[1:] == [[1, 2, 3]]
    assert runs.read_text() == alone
    assert (tmp_path / "stacked" / "summary.md").read_text() == summary


def test_a_seed_that_fails_in_a_stack_stops_the_sweep_with_its_own_error_after_the_others(
    tmp_path, monkeypatch
):
    """Seed 2's weights hold a NaN: alone its first loss is not finite (tv.NonFiniteLoss).
    In a stack it stops the stack; the seeds are run again one by one, the others' lines
    are written as alone, and the sweep raises seed 2's own error."""
    import tinyvec as tv

    argv = ["--steps", "6", "--n", "16", "--width", "4", "--depth", "1", "--quiet",
            "--no-plots", "--seeds", "0-3", "--jobs", "1"]  # fmt: skip
    assert analyze.main([*argv, "--stack", "1", "--out", str(tmp_path / "clean")]) == 0
    build = analyze.build

    def broken(seed, *shape):
        model = build(seed, *shape)
        if seed == 2:
            model.layers[0].weight[0, 0] = np.nan
        return model

    monkeypatch.setattr(analyze, "build", broken)
    with pytest.raises(tv.NonFiniteLoss) as alone:
        analyze.run(seed=2, steps=6, n=16, width=4, depth=1)
    with pytest.raises(tv.NonFiniteLoss) as stacked:
        analyze.main([*argv, "--out", str(tmp_path / "stacked")])
    assert str(stacked.value) == str(alone.value)
    clean = (tmp_path / "clean" / "runs.jsonl").read_text().splitlines()
    written = (tmp_path / "stacked" / "runs.jsonl").read_text().splitlines()
    assert written == [clean[0], clean[1], clean[3]]
