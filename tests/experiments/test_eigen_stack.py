"""``tinyvec eigen --seeds`` stacked (issue 21): the seeds of one stack key train as one
`tv.stack` and write, file for file, what each writes alone (``--stack 1``); a resumed sweep
stacks only what is left; a seed that fails stops the sweep as it does alone, after the
others' lines."""

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from stacks import spy_on_stacks

import tinyvec as tv
from tinyvec.experiments import eigen, eigen_run, eigen_stack
from tinyvec.experiments.runfile import RUN_TIME_FIELDS

# short runs that still reach every record: the tail, metrics rows, monitor checks
SHORT = ["--steps", "40", "--probe", "50", "--record-every", "10", "--tail", "10",
         "--monitor-probe", "16", "--analysis", "300", "--frames", "5", "--trend-window", "8",
         "--quiet", "--jobs", "1"]  # fmt: skip
TIMED = ("summary.json", "summary.csv", "summary.md", "runs.jsonl")  # (they hold run times)


def without_run_times(value):
    if isinstance(value, dict):
        return {k: without_run_times(v) for k, v in value.items() if k not in RUN_TIME_FIELDS}
    return [without_run_times(v) for v in value] if isinstance(value, list) else value


def runs(folder: Path) -> dict[int, dict]:
    """runs.jsonl by seed, run times and the run's folder aside."""
    out = {}
    for line in (folder / "runs.jsonl").read_text().splitlines():
        run = without_run_times(json.loads(line))
        run["spec"].pop("out")
        out[run["spec"]["seed"]] = run
    return out


def assert_same_files(alone: Path, stacked: Path) -> None:
    """Every file of ``alone`` is in ``stacked`` with the same bytes, or, where it holds run
    times, the same values but those."""
    files = sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(stacked) for p in stacked.rglob("*") if p.is_file())
    for name in files:
        a, b = alone / name, stacked / name
        if name.name == "summary.json":
            a_, b_ = (without_run_times(json.loads(p.read_text())) for p in (a, b))
            assert a_ == b_, name
        elif name.name not in TIMED:
            assert a.read_bytes() == b.read_bytes(), name
    assert runs(alone) == runs(stacked)


# momentum (its state in the stack), an even branch (Parallel, vcat), the degree gains before
# and after the update, first-layer biases, a decaying rate
OPTIONS = "--opt momentum --even 3 --degree-every 10 --bias-init 0.1 --lr-final 0.01"


# the default: seed 3 has a complex u_top (the rotation in its plane is measured), figures
@pytest.mark.parametrize(
    "flags", [[], [*OPTIONS.split(), "--no-plots"]], ids=["default", "options"]
)
def test_stacked_seeds_write_the_files_of_the_seeds_alone(tmp_path, monkeypatch, flags):
    """Bit for bit: steps.csv, metrics.csv, tail.csv, degrees.csv, the weights, the model,
    the figures, and every number of summary.json and runs.jsonl but the run times."""
    argv = [*SHORT, "--seeds", "0-3", *flags]
    assert eigen.main([*argv, "--stack", "1", "--out", str(tmp_path / "alone")]) == 0
    calls = spy_on_stacks(monkeypatch, eigen.seed_run)
    assert eigen.main([*argv, "--stack", "3", "--out", str(tmp_path / "stacked")]) == 0
    assert calls == [[0, 1, 2], [3]]  # stacks of at most 3, in the order of the seeds
    assert_same_files(tmp_path / "alone", tmp_path / "stacked")


def test_k_above_one_runs_alone(tmp_path, monkeypatch):
    """Subspace ascent re-whitens one model's last layer: K > 1 (given, or auto's) keys each
    seed apart, and the sweep runs it as it does one by one."""
    specs = [{**asdict(replace(eigen.Config(), seed=s, k=k)), "out": f"seed-{s}", "plots": False}
             for k in (0, 2, 1) for s in (0, 1)]  # fmt: skip
    keys = [json.dumps(eigen_stack.stack_key(s), sort_keys=True) for s in specs]
    assert len(set(keys[:4])) == 4 and keys[4] == keys[5]
    argv = [*SHORT, "--seeds", "0-1", "--k", "2", "--no-plots"]
    assert eigen.main([*argv, "--stack", "1", "--out", str(tmp_path / "alone")]) == 0
    calls = spy_on_stacks(monkeypatch, eigen.seed_run)
    assert eigen.main([*argv, "--out", str(tmp_path / "stacked")]) == 0
    assert calls == []  # every stack of one: the runner runs each alone
    assert_same_files(tmp_path / "alone", tmp_path / "stacked")


def test_a_resumed_sweep_stacks_the_seeds_left(tmp_path, monkeypatch):
    """A sweep killed after two of four seeds: the same command, stacked, runs seeds 2 and 3
    as one stack and the folder ends as the one-by-one sweep's."""
    argv = [*SHORT, "--seeds", "0-3", "--no-plots"]
    assert eigen.main([*argv, "--stack", "1", "--out", str(tmp_path / "alone")]) == 0
    cut = tmp_path / "cut"
    assert eigen.main([*argv, "--stack", "1", "--out", str(cut)]) == 0
    lines = (cut / "runs.jsonl").read_text().splitlines(keepends=True)
    (cut / "runs.jsonl").write_text("".join(lines[:2]))
    calls = spy_on_stacks(monkeypatch, eigen.seed_run)
    assert eigen.main([*argv, "--out", str(cut)]) == 0
    assert calls == [[2, 3]]
    assert runs(cut) == runs(tmp_path / "alone")


class Poisoned:
    """A batch stream whose vectors are NaN from the ``after``-th batch on."""

    def __init__(self, rng: np.random.Generator, after: int) -> None:
        self.rng, self.after, self.calls = rng, after, 0

    def standard_normal(self, shape):
        self.calls += 1
        x = self.rng.standard_normal(shape)
        return x * np.nan if self.calls >= self.after else x


def poison(seed: int, step: int, monkeypatch) -> None:
    """Seed ``seed``'s batch of ``step`` is NaN: its loss, and so its step, are not finite."""
    build = eigen_run.build

    def poisoned(c):
        e = build(c)
        if c.seed == seed:
            e.data_rng = Poisoned(e.data_rng, step)
        return e

    monkeypatch.setattr(eigen_run, "build", poisoned)


def test_a_failing_seed_stops_the_sweep_as_alone_after_the_others(tmp_path, monkeypatch):
    """A seed whose loss is not finite (at step 25 of 40) fails alone with the update's
    NonFiniteStep. In a stack it leaves at that step, the others go on (momentum: their state
    restacked) and their lines are written, and then the sweep raises the error the seed
    raises alone; the same command resumes with it alone."""
    poison(2, 25, monkeypatch)
    c = replace(eigen.Config(), opt="momentum", steps=40, probe=50, record_every=10, tail=10, monitor_probe=16,
                analysis=300, frames=5, trend_window=8)  # fmt: skip
    with pytest.raises(tv.NonFiniteStep) as alone:
        eigen.run_seeds(c, [2], tmp_path / "alone", plots=False, progress=False)
    eigen.run_seeds(c, [0, 1, 3], tmp_path / "others", plots=False, progress=False)
    calls = spy_on_stacks(monkeypatch, eigen.seed_run)
    stacked = tmp_path / "stacked"
    with pytest.raises(tv.NonFiniteStep) as error:
        eigen.run_seeds(c, [0, 1, 2, 3], stacked, plots=False, progress=False, stack=4)
    assert str(error.value) == str(alone.value)
    assert calls == [[0, 1, 2, 3]]
    assert runs(stacked) == runs(tmp_path / "others")  # the others, written, to the last digit
    for s in (0, 1, 3):
        for name in ("steps.csv", "metrics.csv", "tail.csv", "model.npz"):
            assert (stacked / f"seed-{s}" / name).read_bytes() == (
                tmp_path / "others" / f"seed-{s}" / name
            ).read_bytes()
    with pytest.raises(tv.NonFiniteStep):  # resumed: only seed 2 is left, and fails again
        eigen.run_seeds(c, [0, 1, 2, 3], stacked, plots=False, progress=False, stack=4)
    assert calls[1:] == []  # (a stack of one runs as one run)
