"""The sweep runner: each finished run is one line of runs.jsonl at once, a rerun resumes,
and every executor gives the same numbers."""

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from tinyvec import cli
from tinyvec.experiments import common, compensation, compensation_runs
from tinyvec.experiments.runfile import read_runs
from tinyvec.experiments.sweep import LocalProcesses, run_sweep, square, stackable

SPECS = compensation.grid(compensation.config(compensation.parser().parse_args(["--quick"])))


def numbers(runs):
    return [json.dumps(r | {"seconds": 0}, sort_keys=True) for r in runs]


class Interrupted(Exception):
    pass


def test_interrupt_and_resume_gives_every_spec_once_and_the_same_numbers(tmp_path):
    whole = run_sweep(compensation_runs.run_one, SPECS, tmp_path / "whole", progress=False)
    calls = []

    def stops_after_five(spec):
        if len(calls) == 5:
            raise Interrupted  # as Ctrl-C would, in the middle of the sweep
        calls.append(spec)
        return compensation_runs.run_one(spec)

    with pytest.raises(Interrupted):
        run_sweep(stops_after_five, SPECS, tmp_path / "cut", progress=False)
    assert len(read_runs(tmp_path / "cut" / "runs.jsonl")) == 5
    resumed = run_sweep(compensation_runs.run_one, SPECS, tmp_path / "cut", progress=False)
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
    with pytest.warns(UserWarning, match="line 3: a torn last line"):
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


def halve(spec):
    """A run that fails for an odd x, as it fails alone."""
    if spec["x"] % 2:
        raise FloatingPointError(f"x = {spec['x']} is odd")
    return {"y": spec["x"] // 2}


def halve_stacked(specs):
    """`halve` of a stack: a failed run's exception in place of its result."""
    results = []
    for spec in specs:
        try:
            results.append(halve(spec))
        except FloatingPointError as error:
            results.append(error)
    return results


halve.stacked, halve.stack_key = halve_stacked, lambda spec: "one stack"


def test_a_failed_run_of_a_stack_stops_the_sweep_after_the_lines_of_the_others(tmp_path):
    """One by one the sweep stops at the failing run; in a stack the others are done too,
    and are written before the sweep stops with the run's error; a resume does what is left."""
    specs = [{"x": x} for x in (0, 1, 2, 4)]
    with pytest.raises(FloatingPointError, match="x = 1 is odd"):
        run_sweep(halve, specs, tmp_path, progress=False, stack=4)
    assert [r["spec"]["x"] for r in read_runs(tmp_path / "runs.jsonl")] == [0, 2, 4]
    with pytest.raises(FloatingPointError, match="x = 1 is odd"):
        run_sweep(halve, specs, tmp_path, progress=False, stack=4)
    assert [r["y"] for r in read_runs(tmp_path / "runs.jsonl")] == [0, 1, 2]


def test_every_executor_gives_the_same_numbers(tmp_path):
    specs = SPECS[:6]
    here = run_sweep(compensation_runs.run_one, specs, tmp_path / "here", progress=False)
    with LocalProcesses(2) as ex:
        pool = run_sweep(compensation_runs.run_one, specs, tmp_path / "pool", executor=ex,
                         progress=False)  # fmt: skip
    # a concurrent.futures executor (processes: tinyvec's no_grad switch is per process)
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as ex:
        futures = run_sweep(compensation_runs.run_one, specs, tmp_path / "futures", executor=ex,
                            progress=False)  # fmt: skip
    assert numbers(here) == numbers(pool) == numbers(futures)


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_numbers(tmp_path):
    distributed = pytest.importorskip("distributed")
    from tinyvec.experiments.sweep import DaskCluster

    specs = SPECS[:6]
    here = run_sweep(compensation_runs.run_one, specs, tmp_path / "here", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:  # fmt: skip
        with DaskCluster(cluster.scheduler_address) as ex:
            dask = run_sweep(compensation_runs.run_one, specs, tmp_path / "dask", executor=ex,
                             progress=False)  # fmt: skip
    assert numbers(here) == numbers(dask)


@pytest.mark.slow
def test_on_a_dask_cluster_each_worker_thread_gets_a_stack(tmp_path):
    """A cluster of 2 workers of 2 threads runs 4 stacks at once: 8 specs with ``stack=32``
    are cut into stacks of 2 (one stack of 8 kept 3 threads idle), with the numbers of the
    runs alone."""
    distributed = pytest.importorskip("distributed")
    from tinyvec.experiments.sweep import DaskCluster

    specs = [{"x": x} for x in range(8)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:  # fmt: skip
        with DaskCluster(cluster.scheduler_address) as ex:
            assert ex.jobs == 4
            runs = run_sweep(stacked_double, specs, tmp_path / "dask", executor=ex,
                             progress=False, stack=32)  # fmt: skip
    assert [r["y"] for r in runs] == [2 * x for x in range(8)]
    assert sorted(r["stack"] for r in runs) == [2] * 8


def stacked_double(spec):  # (module level: Dask pickles it by name)
    return {"y": 2 * spec["x"], "stack": 1}


def _stacked_doubles(specs):
    return [{"y": 2 * spec["x"], "stack": len(specs)} for spec in specs]


def _one_stack(spec):
    return "one stack"


stackable(stacked_double, _stacked_doubles, _one_stack)


# --- kills and a second sweep: a real sweep in a child process ---------------------------------
# a sweep of x² that takes a little while per run, so that kills land in the middle of it
SLOW_SWEEP = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from tinyvec.experiments.sweep import run_sweep, square

    def slow_square(spec):
        time.sleep(spec["sleep"])
        return square(spec)

    run_sweep(slow_square, json.loads(sys.argv[1]), Path(sys.argv[2]), progress=False)
""")
KILL_ROUNDS = 100 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 30
HANG = 120  # seconds: a hang guard only, never what a test checks


def whole_lines(path):
    """The runs of a runs.jsonl as its raw lines, each of which must be a whole JSON line."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def runs_so_far(path):
    """The runs of a runs.jsonl that a sweep may be writing, as the test reads it: the whole
    lines that are JSON objects (the sweep itself judges the others)."""
    data = path.read_bytes() if path.exists() else b""
    runs = []
    for line in data.split(b"\n")[:-1]:
        with contextlib.suppress(ValueError):
            runs.append(json.loads(line))
    return [r for r in runs if isinstance(r, dict) and "spec" in r]


def lines_written(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_sweep_killed_at_random_moments_resumes_to_every_spec_once_with_the_same_numbers(
    tmp_path,
):
    specs = [{"x": x, "sleep": 0.01} for x in range(4 * KILL_ROUNDS)]  # a few runs a round
    whole = [json.dumps(r, sort_keys=True) for r in run_sweep(square, specs, tmp_path / "whole",
                                                              progress=False)]  # fmt: skip
    out, rng = tmp_path / "killed", random.Random(19)
    runs_file, killed, midway, torn = out / "runs.jsonl", 0, 0, 0
    for _ in range(KILL_ROUNDS):
        done = [json.dumps(r["spec"]) for r in runs_so_far(runs_file)]
        left = [s for s in specs if json.dumps(s) not in done]
        if left and rng.random() < 0.3:
            # a torn append: SIGKILL does not cut one write call, but a long line written in
            # several (an older tinyvec), a full disk or a power cut does; at worst everything
            # but the newline is there
            line = json.dumps({"spec": rng.choice(left), "y": 0})
            cut = len(line) if rng.random() < 0.3 else rng.randrange(1, len(line))
            with open(runs_file, "ab") as f:
                f.write(line[:cut].encode())
            torn += 1
        before = lines_written(runs_file)
        child = subprocess.Popen([sys.executable, "-c", SLOW_SWEEP, json.dumps(specs), str(out)],
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, 0.4))  # at any moment: starting, reading, setting aside
        else:  # after a run or more, in the middle of the sweep
            deadline = time.monotonic() + HANG
            while (child.poll() is None and lines_written(runs_file) <= before
                   and time.monotonic() < deadline):  # fmt: skip
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.03))
        if child.poll() is None:
            child.kill()  # SIGKILL: no cleanup of any kind
            killed += 1
            midway += 0 < len(runs_so_far(runs_file)) < len(specs)
        _, errors = child.communicate(timeout=HANG)
        assert child.returncode in (0, -signal.SIGKILL), errors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a torn line set aside: expected here
        resumed = run_sweep(square, specs, out, progress=False)
    lines = whole_lines(runs_file)
    assert sorted(json.dumps(r["spec"], sort_keys=True) for r in lines) == sorted(
        json.dumps(s, sort_keys=True) for s in specs
    )  # every spec exactly once
    assert [json.dumps(r, sort_keys=True) for r in resumed] == whole
    assert sorted(json.dumps(r, sort_keys=True) for r in lines) == sorted(whole)
    assert killed > 0
    damaged = lines_written(out / "runs.jsonl.damaged")
    print(f"{KILL_ROUNDS} rounds: {killed} killed ({midway} with some runs done and some not), "
          f"{torn} torn appends, {damaged} lines set aside")  # fmt: skip


# a sweep that holds its folder until the test creates the file `gate`
GATED_SWEEP = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tinyvec.experiments.sweep import run_sweep, square

    out, gate = Path(sys.argv[1]), Path(sys.argv[2])

    def gated_square(spec):
        while not gate.exists():
            time.sleep(0.01)
        return square(spec)

    run_sweep(gated_square, [{"x": x} for x in range(18)], out, progress=False)
""")


def test_two_sweeps_started_together_into_one_folder_one_runs_the_other_is_refused(tmp_path):
    out, gate = tmp_path / "out", tmp_path / "gate"
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-c", GATED_SWEEP, str(out), str(gate)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:  # the one that does not get the folder ends at once; the other waits for the gate
        deadline = time.monotonic() + HANG
        while all(s.poll() is None for s in sweeps) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        gate.touch()
        errors = [s.communicate(timeout=HANG)[1] for s in sweeps]
    codes = [s.returncode for s in sweeps]
    assert sorted(codes) == [0, 1], errors
    ran, refused = (0, 1) if codes[0] == 0 else (1, 0)
    assert (
        f"FolderInUse: {out} is in use by another sweep (process {sweeps[ran].pid} on "
        f"{socket.gethostname()}, since "
    ) in errors[refused]
    assert "wait until it ends, or give another --out" in errors[refused]
    lines = whole_lines(out / "runs.jsonl")
    assert len(lines) == 18
    assert sorted(r["spec"]["x"] for r in lines) == list(range(18))


# a process that holds a run folder's lock until its stdin is closed
HOLD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tinyvec.experiments.runfile import writer_lock

    with writer_lock(Path(sys.argv[1])):
        print("holding", flush=True)
        sys.stdin.read()
""")


def test_the_command_line_says_in_one_line_which_process_holds_the_folder(tmp_path, capsys):
    out = tmp_path / "comp"
    argv = ["compensation", "--quick", "--no-plots", "--quiet", "--jobs", "1", "--out", str(out)]
    args = common.parse(compensation.parser(), argv[1:])
    compensation.config(args)  # as main does: config.json holds the resolved grid
    out.mkdir()
    common.write_json(out / "config.json", common.config_of(args))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "holding\n"
        code = cli.main(argv)
    finally:
        holder.communicate(timeout=HANG)  # closes its stdin: it lets go
    errors = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"tinyvec compensation: error: {out} is in use by another sweep "
                                f"(process {holder.pid} on {socket.gethostname()}, since ")  # fmt: skip
    assert errors[0].endswith("wait until it ends, or give another --out")
    assert not (out / "runs.jsonl").exists()


def test_on_several_processes_each_gets_a_stack(tmp_path):
    """A stack runs in one process: on ``jobs`` processes the runs left are cut into stacks of
    at most ⌈runs / jobs⌉ (8 specs, ``stack=32`` on 2 processes: two stacks of 4), else one
    stack would keep the other processes idle."""
    sizes = []

    class TwoProcesses:  # (in this process, for the spy: the runner reads only `jobs`)
        jobs = 2

        def imap_unordered(self, fn, items):
            return map(fn, items)

    def double(spec):
        return {"y": 2 * spec["x"]}

    def stacked(specs):
        sizes.append(len(specs))
        return [double(spec) for spec in specs]

    double.stacked, double.stack_key = stacked, lambda spec: "one stack"
    specs = [{"x": x} for x in range(8)]
    runs = run_sweep(double, specs, tmp_path / "two", executor=TwoProcesses(), progress=False,
                     stack=32)  # fmt: skip
    assert sizes == [4, 4] and [r["y"] for r in runs] == [2 * x for x in range(8)]
    run_sweep(double, specs, tmp_path / "here", progress=False, stack=32)
    assert sizes[2:] == [8]  # (in this process: one stack)
