"""The sweep runner: each finished run is one line of runs.jsonl at once, a rerun resumes,
and every executor gives the same numbers."""

import concurrent.futures
import json
import multiprocessing

import pytest

from tinyvec.experiments import compensation
from tinyvec.experiments.sweep import LocalProcesses, read_runs, run_sweep

SPECS = compensation.grid(compensation.config(compensation.parser().parse_args(["--quick"])))


def numbers(runs):
    return [json.dumps(r | {"seconds": 0}, sort_keys=True) for r in runs]


class Interrupted(Exception):
    pass


def test_interrupt_and_resume_gives_every_spec_once_and_the_same_numbers(tmp_path):
    whole = run_sweep(compensation.run_one, SPECS, tmp_path / "whole", progress=False)
    calls = []

    def stops_after_five(spec):
        if len(calls) == 5:
            raise Interrupted  # as Ctrl-C would, in the middle of the sweep
        calls.append(spec)
        return compensation.run_one(spec)

    with pytest.raises(Interrupted):
        run_sweep(stops_after_five, SPECS, tmp_path / "cut", progress=False)
    assert len(read_runs(tmp_path / "cut" / "runs.jsonl")) == 5
    resumed = run_sweep(compensation.run_one, SPECS, tmp_path / "cut", progress=False)
    lines = read_runs(tmp_path / "cut" / "runs.jsonl")
    assert sorted(json.dumps(r["spec"], sort_keys=True) for r in lines) == sorted(
        json.dumps(s, sort_keys=True) for s in SPECS
    )  # every spec exactly once
    assert numbers(resumed) == numbers(whole)


def test_a_line_cut_short_by_a_kill_is_dropped_and_rerun(tmp_path):
    specs = [{"x": i} for i in range(4)]
    from tinyvec.experiments.sweep import square

    run_sweep(square, specs[:2], tmp_path, progress=False)
    with open(tmp_path / "runs.jsonl", "a") as f:
        f.write('{"spec": {"x": 2}, "y"')  # killed while writing
    runs = run_sweep(square, specs, tmp_path, progress=False)
    assert [r["y"] for r in runs] == [0, 1, 4, 9]
    assert len(read_runs(tmp_path / "runs.jsonl")) == 4
    (tmp_path / "runs.jsonl").write_text('{"spec": {"x": 0}, "y": 0}\nnot json\n{}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_runs(tmp_path / "runs.jsonl")


def test_bad_sweeps(tmp_path):
    from tinyvec.experiments.sweep import square

    with pytest.raises(ValueError, match="twice"):
        run_sweep(square, [{"x": 1}, {"x": 1}], tmp_path, progress=False)
    with pytest.raises(ValueError, match="jobs"):
        LocalProcesses(0)


def test_every_executor_gives_the_same_numbers(tmp_path):
    specs = SPECS[:6]
    here = run_sweep(compensation.run_one, specs, tmp_path / "here", progress=False)
    with LocalProcesses(2) as ex:
        pool = run_sweep(compensation.run_one, specs, tmp_path / "pool", executor=ex,
                         progress=False)  # fmt: skip
    # a concurrent.futures executor (processes: tinyvec's no_grad switch is per process)
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as ex:
        futures = run_sweep(compensation.run_one, specs, tmp_path / "futures", executor=ex,
                            progress=False)  # fmt: skip
    assert numbers(here) == numbers(pool) == numbers(futures)


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_numbers(tmp_path):
    distributed = pytest.importorskip("distributed")
    from tinyvec.experiments.sweep import DaskCluster

    specs = SPECS[:6]
    here = run_sweep(compensation.run_one, specs, tmp_path / "here", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:  # fmt: skip
        with DaskCluster(cluster.scheduler_address) as ex:
            dask = run_sweep(compensation.run_one, specs, tmp_path / "dask", executor=ex,
                             progress=False)  # fmt: skip
    assert numbers(here) == numbers(dask)
