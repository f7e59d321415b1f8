"""The sweep runner: run a list of JSON specs, keep every finished run at once, resume.

A sweep is a function ``fn(spec) -> dict`` (a module-level function, so that worker processes
and Dask workers can import it) and a list of specs, each a JSON object. Every finished run is
appended at once, as one line ``{"spec": {...}, ...results}``, to ``OUT/runs.jsonl``. Running
the same sweep into the same folder again skips the specs already there: a sweep killed
halfway resumes where it stopped, and the tables and figures are built from ``runs.jsonl``.

``runs.jsonl`` is kept as a database keeps its log, one writer per folder and every line
whole (`tinyvec.experiments.runfile`, which also checks the specs before any work).

Where the runs go is the executor's business:

- ``None``: one after the other in this process;
- `LocalProcesses` (``--jobs N``): N worker processes on this machine;
- `DaskCluster` (``--dask tcp://HOST:PORT``): the workers of a running dask.distributed
  cluster (the ``distributed`` extra);
- anything else with ``imap_unordered(fn, items)`` or ``map(fn, items)`` (a
  ``multiprocessing.Pool``, a ``concurrent.futures`` executor).

Each run sees one BLAS thread (threadpoolctl): the runs are small matrices, and parallel
processes that each start a BLAS thread per core only fight over the cores.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     runs = run_sweep(square, [{"x": 2}, {"x": 3}], Path(d), progress=False)
...     again = run_sweep(square, [{"x": 2}, {"x": 3}, {"x": 4}], Path(d), progress=False)
>>> [r["y"] for r in runs], [r["y"] for r in again]
([4, 9], [4, 9, 16])
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .runfile import RUNS, Run, Spec, exact_specs, key, resume, write_line, writer_lock


def square(spec: Spec) -> dict[str, Any]:
    """An example sweep function: ``{"y": x²}``."""
    return {"y": spec["x"] ** 2}


def _run(fn: Callable[[Spec], dict[str, Any]], spec: Spec) -> Run:
    """One run, as a worker does it: one BLAS thread, and the spec kept with the result."""
    with threadpool_limits(limits=1):
        result = fn(dict(spec))
    if "spec" in result:
        raise ValueError(f"{fn.__name__} returned a key 'spec', which the runner reserves")
    return {"spec": spec, **result}


def _run_stack(fn: Any, specs: list[Spec]) -> list[Run | Exception]:
    """Runs of one stack (``fn.stacked(specs)``: a list of results in their order), as
    `_run` does one. A run that failed as it fails alone has its exception in place of its
    result: `run_sweep` writes the others, then raises it."""
    with threadpool_limits(limits=1):
        results = fn.stacked([dict(s) for s in specs])
    if len(results) != len(specs) or any(
        not isinstance(r, Exception) and "spec" in r for r in results
    ):
        raise ValueError(f"{fn.__name__}.stacked must return one result per spec, no 'spec'")
    return [r if isinstance(r, Exception) else {"spec": spec, **r}
            for spec, r in zip(specs, results, strict=True)]  # fmt: skip


def stacked_or_alone(
    train: Callable[[list[Spec]], list[dict[str, Any]]],
    specs: list[Spec],
    errors: tuple[type[Exception], ...] = (ArithmeticError, np.linalg.LinAlgError),
) -> list[dict[str, Any] | Exception]:
    """``train(specs)``: the results of the runs of ``specs`` trained as one stack, as a
    study's ``fn.stacked`` returns them. When the stack raises one of ``errors`` (a run whose
    loss or step is not finite, `tv.NonFiniteLoss`, stops the whole stack), every spec is
    run again alone, ``train([spec])``, and gives its result or, in its place, the error it
    gives alone: `run_sweep` writes the others' lines, then raises it, as the runs one by one
    would. A stack of one raises its error."""
    try:
        return list(train(specs))
    except errors:
        if len(specs) == 1:
            raise
    results: list[dict[str, Any] | Exception] = []
    for spec in specs:
        try:
            results += train([spec])
        except errors as error:
            results.append(error)
    return results


def stackable(
    fn: Callable[[Spec], dict[str, Any]],
    stacked: Callable[[list[Spec]], list[Any]],
    stack_key: Callable[[Spec], Any],
) -> None:
    """Let the sweep function ``fn`` run many specs as one stack of models: ``stacked(specs)``
    gives the results of ``fn`` of every spec (or, in a failed run's place, its error:
    `stacked_or_alone`), for specs that share ``stack_key(spec)``; `stacks` groups them."""
    fn.stacked = stacked  # type: ignore[attr-defined]
    fn.stack_key = stack_key  # type: ignore[attr-defined]


def all_but_seed(spec: Spec) -> Spec:
    """The `stack_key` of runs that differ only in their seed: the spec without it."""
    return {k: v for k, v in spec.items() if k != "seed"}


def stacks(fn: Any, specs: list[Spec], size: int) -> list[list[Spec]]:
    """``specs`` in groups of at most ``size`` that ``fn`` runs as one stack of models
    (`tv.stack`): the specs of one ``fn.stack_key(spec)`` (what they must share: they may
    differ in seed, data, η, κ, ε), in their order. Without ``fn.stacked``, or with
    ``size`` 1, every spec alone.

    >>> def f(spec): ...
    >>> f.stacked, f.stack_key = None, lambda spec: spec["task"]
    >>> specs = [{"task": t, "seed": s} for t in "ab" for s in range(3)]
    >>> [[s["seed"] for s in group] for group in stacks(f, specs, 2)]
    [[0, 1], [2], [0, 1], [2]]
    """
    if size <= 1 or not hasattr(fn, "stacked"):
        return [[s] for s in specs]
    groups: dict[str, list[Spec]] = {}
    for spec in specs:
        groups.setdefault(json.dumps(fn.stack_key(spec), sort_keys=True), []).append(spec)
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


def run_sweep(
    fn: Callable[[Spec], dict[str, Any]],
    specs: Sequence[Spec],
    out: Path,
    *,
    executor: Any = None,
    progress: bool = True,
    desc: str = "runs",
    stack: int = 1,
) -> list[Run]:
    """Run every spec of ``specs`` not yet in ``out/runs.jsonl`` through ``executor``,
    appending each result as it arrives; return the runs of ``specs``, in their order. The
    same specs give the same results however they are run (in what order, on which worker).

    The specs are checked first (`exact_specs`), then the folder's `writer_lock` is held to
    the end and ``runs.jsonl`` is read (`parse_runs`): a bad spec, a folder in use and a
    damaged file stop the sweep before any run.

    ``stack``: run up to this many specs as one stack of models when ``fn`` can
    (``fn.stacked``, ``fn.stack_key``: see `stacks`); each still gives its own line, with
    the numbers of its run alone. On ``jobs`` local processes (`LocalProcesses`) a stack is
    at most ⌈runs left / jobs⌉, so that each process gets one (a stack runs in one process);
    on a Dask cluster (`DaskCluster`) ``jobs`` is its workers' threads when the sweep starts.
    A run of a stack that fails (``fn.stacked`` returns its
    exception in place of its result) stops the sweep as it would alone, with its error,
    after the lines of the others."""
    specs = exact_specs(specs)
    keys = [key(s) for s in specs]
    first: dict[str, int] = {}
    for index, k in enumerate(keys):
        if k in first:
            raise ValueError(f"the sweep names a spec twice (specs {first[k]} and {index}); "
                             "every spec must be different")  # fmt: skip
        first[k] = index
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUNS
    with writer_lock(out):
        done = resume(path)
        todo = [s for s, k in zip(specs, keys, strict=True) if k not in done]
        width = getattr(executor, "jobs", 1)
        groups = stacks(fn, todo, min(stack, max(1, math.ceil(len(todo) / width))))
        task = functools.partial(_run_stack, fn) if len(groups) < len(todo) else None
        with (
            open(path, "ab", buffering=0) as f,
            tqdm(total=len(specs), initial=len(specs) - len(todo), desc=desc,
                 disable=not progress, unit="run", smoothing=0.1) as bar,
        ):  # fmt: skip
            if task is None:  # every spec alone
                batches: Iterator[Any] = (
                    [r] for r in _imap(executor, functools.partial(_run, fn), todo)
                )
            else:
                batches = _imap(executor, task, groups)
            for runs in batches:
                for run in (r for r in runs if not isinstance(r, Exception)):
                    line = json.dumps(run, default=_plain)
                    write_line(f, (line + "\n").encode())
                    done[key(run["spec"])] = json.loads(line)  # (as a resume reads it back)
                    bar.update()
                for error in (r for r in runs if isinstance(r, Exception)):
                    raise error  # (after the others' lines: the run stops the sweep as alone)
    return [done[k] for k in keys]


def _plain(value: Any) -> Any:
    """What JSON writes for a NumPy number or array in a result (`json.dumps`'s ``default``):
    the Python number, or nested lists, which read back to the same values. Anything else is
    refused here, naming its type, rather than by `json.dumps` with no word of the runner."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"a run returned a {type(value).__module__}.{type(value).__qualname__}, "
                    "which runs.jsonl cannot hold: return numbers, strings, lists and dicts")  # fmt: skip


def _imap(executor: Any, task: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
    if not items:
        return iter(())
    if executor is None:
        return map(task, items)
    if hasattr(executor, "imap_unordered"):
        return executor.imap_unordered(task, items)
    return iter(executor.map(task, items))


def _ignore_sigint() -> None:
    # Ctrl-C goes to the whole process group: the parent stops the sweep, the workers are
    # terminated by it, and none of them prints a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalProcesses:
    """``jobs`` worker processes on this machine (spawned: a clean interpreter each).

    ``with LocalProcesses(2) as ex: run_sweep(fn, specs, out, executor=ex)``."""

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be ≥ 1, got {jobs}")
        self.jobs = jobs
        self.pool: Any = None

    def __enter__(self) -> LocalProcesses:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.pool = ctx.Pool(self.jobs, initializer=_ignore_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.terminate()  # a finished sweep has nothing left; an interrupted one stops
        self.pool.join()

    def imap_unordered(self, fn: Callable[[Spec], Run], items: Iterable[Spec]) -> Iterator[Run]:
        return self.pool.imap_unordered(fn, items)


class DaskCluster:
    """The workers of a running dask.distributed cluster at ``address``
    (``tcp://HOST:PORT``, what ``dask scheduler`` prints). Every worker needs tinyvec
    installed; results come back as they finish."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.client: Any = None
        self.jobs = 1  # (what the cluster runs at once: known once connected)

    def __enter__(self) -> DaskCluster:
        from distributed import Client

        self.client = Client(self.address, timeout="20s")
        # its workers' threads, each a run (or a stack) at a time: `run_sweep` cuts stacks
        # so that every thread gets one
        self.jobs = max(1, sum(self.client.nthreads().values()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def imap_unordered(self, fn: Callable[[Spec], Run], items: Iterable[Spec]) -> Iterator[Run]:
        from distributed import as_completed

        futures = self.client.map(fn, list(items), pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)  # after Ctrl-C, the cluster drops what is left


def executor_for(jobs: int, dask: str | None) -> Any:
    """The executor of ``--jobs`` and ``--dask``, as a context manager (``None`` → run here)."""
    import contextlib

    if dask:
        return DaskCluster(dask)
    if jobs > 1:
        return LocalProcesses(jobs)
    return contextlib.nullcontext(None)


def cpu_count() -> int:
    """The cores this process may use (the default of ``--jobs``)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
