import csv
import json

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from stacks import spy_on_stacks

from tinyvec.experiments import collapse, collapse_report


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_collapse_writes_its_folder_and_repeats_with_the_seed(tmp_path):
    args = ["--epochs", "2", "--width", "8", "--depth", "1", "--batch", "512"]
    assert collapse.main([*args, "--out", str(tmp_path / "a")]) == 0
    for name in ("collapse_crossentropy.csv", "collapse_mse.csv", "collapse.png", "summary.md"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    rows = read(tmp_path / "a" / "collapse_mse.csv")
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert set(collapse_report.METRICS) <= set(rows[0]) and {"train_error", "test_error"} <= set(
        rows[0]
    )
    again = collapse.train_run("mse", collapse.load_digits_split(0), epochs=2, width=8, depth=1,
                               batch=512)  # fmt: skip
    assert [float(r["NC1"]) for r in rows] == [r["NC1"] for r in again]
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "| crossentropy | NC1 |" in summary and "| mse | NC4 |" in summary


def test_seeds_run_through_the_sweep_runner(tmp_path):
    args = ["--epochs", "2", "--width", "8", "--depth", "1", "--batch", "512", "--quiet",
            "--losses", "mse", "--seeds", "0-1", "--jobs", "1"]  # fmt: skip
    assert collapse.main([*args, "--out", str(tmp_path / "s")]) == 0
    runs = [json.loads(line) for line in open(tmp_path / "s" / "runs.jsonl")]
    assert [r["spec"]["seed"] for r in runs] == [0, 1]
    single = read(tmp_path / "one" / "collapse_mse.csv") if collapse.main(
        [*args[:-4], "--seed", "1", "--out", str(tmp_path / "one")]) == 0 else None  # fmt: skip
    assert [float(r["NC1"]) for r in single] == [r["NC1"] for r in runs[1]["tables"]["mse"]]
    summary = (tmp_path / "s" / "summary.md").read_text()
    assert "over seeds 0-1" in summary and "| mse | NC3 |" in summary


def test_training_reduces_the_error_and_acceptance_is_first_over_last():
    data = collapse.load_digits_split(0)
    assert data[0].shape == (64, 1310) and data[2].shape == (64, 450)
    assert set(np.bincount(data[1])) == {131}  # balanced: the smallest class count
    assert collapse.load_digits_split(0, balanced=False)[0].shape == (64, 1347)
    rows = collapse.train_run("crossentropy", data, epochs=4, width=32, depth=1, batch=128)
    assert rows[-1]["train_error"] < rows[0]["train_error"] / 3
    fall = collapse_report.acceptance(rows)
    assert fall["NC1"] == (rows[1]["NC1"], rows[-1]["NC1"], rows[1]["NC1"] / rows[-1]["NC1"])
    assert np.isnan(rows[0]["loss"]) and rows[1]["lr"] == collapse.DEFAULTS["crossentropy"]["lr"]


def test_bad_arguments(tmp_path):
    for argv in (["--losses", "hinge"], ["--epochs", "0"], ["--depth", "2", "--decay-layers", "4"],
                 ["--seeds", "2"], ["--lr", "-1"]):  # fmt: skip
        with pytest.raises(SystemExit):
            collapse.main([*argv, "--out", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="decay_layers"):
        collapse.train_run("mse", collapse.load_digits_split(0), epochs=1, depth=1, decay_layers=-1)


def test_weight_decay_only_on_the_last_layers_changes_the_run():
    data = collapse.load_digits_split(0)
    kw = {"epochs": 2, "width": 8, "depth": 2, "batch": 256, "wd": 0.05}
    runs = [collapse.train_run("mse", data, decay_layers=k, **kw) for k in (0, 1, 3)]
    nc1 = [r[-1]["NC1"] for r in runs]
    assert len(set(nc1)) == 3  # every choice of decayed layers gives a different run


def _runs(folder):
    """runs.jsonl by spec, each run's times left out (a stack's time is shared)."""
    runs = {}
    for line in (folder / "runs.jsonl").read_text().splitlines():
        run = json.loads(line)
        run.pop("seconds")
        runs[json.dumps(run.pop("spec"), sort_keys=True)] = run
    return runs


def test_stacked_seeds_write_the_files_of_the_seeds_alone_and_resume(tmp_path, monkeypatch):
    """``--seeds 0-3`` with the default ``--stack`` trains the seeds of each loss as one stack
    (a spy sees it) and writes what ``--stack 1`` writes: runs.jsonl (every number of every
    epoch table, bit for bit) and summary.md. A sweep cut short resumes with the seeds left,
    stacked, to the same files."""
    args = ["--epochs", "3", "--width", "8", "--depth", "1", "--batch", "512", "--quiet",
            "--seeds", "0-3", "--jobs", "1", "--no-plots"]  # fmt: skip
    assert collapse.main([*args, "--stack", "1", "--out", str(tmp_path / "alone")]) == 0
    sizes = spy_on_stacks(monkeypatch, collapse.seed_run)
    assert collapse.main([*args, "--out", str(tmp_path / "stacked")]) == 0
    assert sizes == [[0, 1, 2, 3]]
    alone, stacked = _runs(tmp_path / "alone"), _runs(tmp_path / "stacked")
    assert json.dumps(alone, sort_keys=True) == json.dumps(stacked, sort_keys=True)
    assert len(alone) == 4 and all(len(r["tables"]["mse"]) == 4 for r in alone.values())
    summary = (tmp_path / "alone" / "summary.md").read_text()
    assert (tmp_path / "stacked" / "summary.md").read_text() == summary
    runs = tmp_path / "stacked" / "runs.jsonl"  # two seeds done, the others not yet
    runs.write_text("".join(runs.read_text().splitlines(keepends=True)[:2]))
    (tmp_path / "stacked" / "summary.md").unlink()
    assert collapse.main([*args, "--out", str(tmp_path / "stacked")]) == 0
    assert sizes[1:] == [[2, 3]]
    assert json.dumps(_runs(tmp_path / "stacked"), sort_keys=True) == json.dumps(
        alone, sort_keys=True
    )
    assert (tmp_path / "stacked" / "summary.md").read_text() == summary


def test_seeds_whose_training_sets_differ_in_size_train_as_separate_stacks(monkeypatch):
    """Balanced splits may keep another number of samples for some seed: its batches could
    not be stacked with the others', so it trains in a stack of its own; every result is
    still that of its seed alone."""
    load = collapse.load_digits_split

    def split(seed, **kw):  # seed 1 keeps 20 samples fewer (a different n_min)
        Xtr, ytr, Xte, yte = load(seed, **kw)
        return (Xtr[:, :-20], ytr[:-20], Xte, yte) if seed == 1 else (Xtr, ytr, Xte, yte)

    monkeypatch.setattr(collapse, "load_digits_split", split)
    trained = []
    train_runs = collapse.train_runs

    def spy(loss, datas, *, seeds, **kw):
        trained.append((loss, list(seeds)))
        return train_runs(loss, datas, seeds=seeds, **kw)

    monkeypatch.setattr(collapse, "train_runs", spy)
    spec = {"epochs": 2, "width": 8, "batch": 256, "standardize": False, "balanced": True,
            "losses": {"mse": collapse.settings(collapse.parser().parse_args([]), "mse")}}  # fmt: skip
    specs = [{**spec, "seed": s} for s in range(3)]
    together = collapse.seed_runs(specs)
    assert trained == [("mse", [0, 2]), ("mse", [1])]
    for s, result in zip(specs, together, strict=True):
        alone = collapse.seed_run(s)
        assert result["n_train"] == alone["n_train"] == (1290 if s["seed"] == 1 else 1310)
        assert json.dumps(result["tables"]) == json.dumps(alone["tables"])  # (NaN at epoch 0)


def test_a_seed_that_fails_in_a_stack_stops_the_sweep_with_its_own_error_after_the_others(
    tmp_path, monkeypatch
):
    """Seed 2's weights hold a NaN: alone it fails (its features' SVD does not converge). In
    a stack it stops the stack; the seeds are run again one by one, the others' lines are
    written as alone, and the sweep raises seed 2's own error; the same command resumes."""
    args = ["--epochs", "2", "--width", "8", "--depth", "1", "--batch", "512", "--quiet",
            "--losses", "mse", "--seeds", "0-3", "--jobs", "1", "--no-plots"]  # fmt: skip
    assert collapse.main([*args, "--stack", "1", "--out", str(tmp_path / "clean")]) == 0
    build = collapse.build

    def broken(seed, *shape):
        model = build(seed, *shape)
        if seed == 2:
            model.layers[0].weight[0, 0] = np.nan
        return model

    monkeypatch.setattr(collapse, "build", broken)
    with pytest.raises(np.linalg.LinAlgError) as alone:
        collapse.seed_run(json.loads(json.dumps(_spec(tmp_path / "clean", 2))))
    with pytest.raises(np.linalg.LinAlgError) as stacked:
        collapse.main([*args, "--out", str(tmp_path / "stacked")])
    assert str(stacked.value) == str(alone.value)
    clean, written = _runs(tmp_path / "clean"), _runs(tmp_path / "stacked")
    assert sorted(json.loads(k)["seed"] for k in written) == [0, 1, 3]
    assert all(json.dumps(written[k]) == json.dumps(clean[k]) for k in written)
    monkeypatch.setattr(collapse, "build", build)  # (mended) the same command resumes
    assert collapse.main([*args, "--out", str(tmp_path / "stacked")]) == 0
    assert json.dumps(_runs(tmp_path / "stacked"), sort_keys=True) == json.dumps(
        clean, sort_keys=True
    )


def _spec(folder, seed):
    """The spec of ``seed`` in the sweep of ``folder``."""
    for line in (folder / "runs.jsonl").read_text().splitlines():
        if json.loads(line)["spec"]["seed"] == seed:
            return json.loads(line)["spec"]
    raise KeyError(seed)
