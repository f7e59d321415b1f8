"""The sweep runner: run a list of JSON specs, keep every finished run at once, resume.

A sweep is a function ``fn(spec) -> dict`` (a module-level function, so that worker processes
and Dask workers can import it) and a list of specs, each a JSON object. Every finished run is
appended at once, as one line ``{"spec": {...}, ...results}``, to ``OUT/runs.jsonl``. Running
the same sweep into the same folder again skips the specs already there: a sweep killed
halfway resumes where it stopped, and the tables and figures are built from ``runs.jsonl``.

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
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

Spec = dict[str, Any]
Run = dict[str, Any]

RUNS = "runs.jsonl"


def square(spec: Spec) -> dict[str, Any]:
    """An example sweep function: ``{"y": x²}``."""
    return {"y": spec["x"] ** 2}


def key(spec: Spec) -> str:
    """What identifies a spec: its JSON with sorted keys."""
    return json.dumps(spec, sort_keys=True)


def _run(fn: Callable[[Spec], dict[str, Any]], spec: Spec) -> Run:
    """One run, as a worker does it: one BLAS thread, and the spec kept with the result."""
    with threadpool_limits(limits=1):
        result = fn(dict(spec))
    if "spec" in result:
        raise ValueError(f"{fn.__name__} returned a key 'spec', which the runner reserves")
    return {"spec": spec, **result}


def read_runs(path: Path) -> list[Run]:
    """The runs of a ``runs.jsonl``. A last line cut short (the process was killed while
    writing it) is dropped from the file; any other unreadable line is an error."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    runs = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            runs.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i == len(lines) - 1:  # the unfinished last write: forget it
                with open(path, "r+b") as f:
                    f.truncate(len(data) - len(line))
                break
            raise ValueError(f"{path}, line {i + 1}: not a JSON run; the file is damaged") from None
    return runs


def run_sweep(
    fn: Callable[[Spec], dict[str, Any]],
    specs: Sequence[Spec],
    out: Path,
    *,
    executor: Any = None,
    progress: bool = True,
    desc: str = "runs",
) -> list[Run]:
    """Run every spec of ``specs`` not yet in ``out/runs.jsonl`` through ``executor``,
    appending each result as it arrives; return the runs of ``specs``, in their order. The
    same specs give the same results however they are run (in what order, on which worker)."""
    keys = [key(s) for s in specs]
    if len(set(keys)) != len(keys):
        raise ValueError("the sweep names a spec twice; every spec must be different")
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUNS
    done = {key(r["spec"]): r for r in read_runs(path)}
    todo = [s for s, k in zip(specs, keys, strict=True) if k not in done]
    task = functools.partial(_run, fn)
    with (
        open(path, "a") as f,
        tqdm(total=len(specs), initial=len(specs) - len(todo), desc=desc, disable=not progress,
             unit="run", smoothing=0.1) as bar,
    ):  # fmt: skip
        for run in _imap(executor, task, todo):
            f.write(json.dumps(run) + "\n")
            f.flush()  # one whole line per finished run, at once
            done[key(run["spec"])] = run
            bar.update()
    return [done[k] for k in keys]


def _imap(executor: Any, task: Callable[[Spec], Run], items: list[Spec]) -> Iterator[Run]:
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

    def __enter__(self) -> DaskCluster:
        from distributed import Client

        self.client = Client(self.address, timeout="20s")
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
