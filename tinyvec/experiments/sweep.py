"""The sweep runner: run a list of JSON specs, keep every finished run at once, resume.

A sweep is a function ``fn(spec) -> dict`` (a module-level function, so that worker processes
and Dask workers can import it) and a list of specs, each a JSON object. Every finished run is
appended at once, as one line ``{"spec": {...}, ...results}``, to ``OUT/runs.jsonl``. Running
the same sweep into the same folder again skips the specs already there: a sweep killed
halfway resumes where it stopped, and the tables and figures are built from ``runs.jsonl``.

``runs.jsonl`` is kept as a database keeps its log:

- one writer per folder: a sweep holds the lock ``OUT/runs.jsonl.lock`` (`filelock`) from
  start to end, and a second sweep into the folder fails at once with `FolderInUse`, naming
  the process that holds it (``OUT/runs.jsonl.lock.holder``);
- every run is one whole line, written with one ``write`` call and flushed to disk
  (``fsync``) before the next;
- a torn last line (a kill while writing: no newline at its end, or not JSON) is set aside,
  appended to ``OUT/runs.jsonl.damaged``, with a `RunFileWarning`, and its run is done again;
- any other line that is not a run, and two runs of one spec with different results, are
  refused (`RunFileError`, naming the file and the line). Two runs of one spec whose results
  differ only in run times (`RUN_TIME_FIELDS`) are tolerated, with a warning: the first is
  used (an older tinyvec let two sweeps write into one folder);
- the specs are checked before any work (`exact_specs`): each must be what JSON gives back.

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

import contextlib
import datetime
import functools
import json
import math
import os
import signal
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .. import io
from .errors import UsageError

Spec = dict[str, Any]
Run = dict[str, Any]

RUNS = "runs.jsonl"
LOCK = RUNS + ".lock"
HOLDER = LOCK + ".holder"  # who holds the lock: read for the message of a second sweep
DAMAGED = RUNS + ".damaged"
# results that say how fast a run went, not what it computed (compensation's and collapse's
# "seconds", eigen's steps per second): two runs of one spec differ in them and agree otherwise
RUN_TIME_FIELDS = frozenset({"seconds", "steps_per_second", "steps_per_cpu_second"})


class FolderInUse(UsageError):
    """Another sweep holds the folder's lock (on the command line: one error line, status 2)."""


class RunFileError(ValueError, UsageError):
    """A ``runs.jsonl`` that holds a line which is not a run, or two different runs of one
    spec; the message names the file and the line. Nothing is run or written."""


class RunFileWarning(UserWarning):
    """A ``runs.jsonl`` the runner could resume from, with something to say: a torn last
    line set aside, or runs repeated."""


def square(spec: Spec) -> dict[str, Any]:
    """An example sweep function: ``{"y": x²}``."""
    return {"y": spec["x"] ** 2}


def key(spec: Spec) -> str:
    """What identifies a spec: its JSON with sorted keys."""
    return json.dumps(spec, sort_keys=True)


# --- the specs: exactly what JSON gives back ------------------------------------------------
def exact_specs(specs: Sequence[Spec]) -> list[Spec]:
    """``specs`` as they will read back from ``runs.jsonl``, so that a run and its resume see
    the same spec. NumPy scalars become Python numbers (``np.int64`` → int, ``np.float64`` →
    float, ``np.bool_`` → bool; a float type wider than float64 only where the value is
    exactly a float64), and tuples become lists: JSON writes a tuple as a list, `key` gives
    both the same text, and converted here the function sees a list in the first run as after
    a resume. Everything JSON cannot hold exactly (sets, bytes, NaN and ±inf, keys that are not
    strings, any other object) is refused with a ValueError naming the spec and the key path.

    >>> exact_specs([{"x": np.int64(3), "shape": (2, 3)}])
    [{'x': 3, 'shape': [2, 3]}]
    >>> exact_specs([{"x": 1}, {"kinds": {"a": {1, 2}}}])
    Traceback (most recent call last):
    ValueError: spec 1, at ["kinds"]["a"]: a set, which JSON cannot hold (give a sorted list)
    """
    checked = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ValueError(f"spec {index}: a {type(spec).__name__}, not a JSON object (a dict)")
        checked.append(_exact(spec, index, ""))
    return checked


def _exact(value: Any, index: int, where: str) -> Any:
    """``value`` as JSON gives it back, or a ValueError naming spec ``index`` and the path."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"spec {index}, at {where or 'the top'}: {why}")

    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.str_):
        return str(value)
    if type(value) is float or isinstance(value, np.floating):
        number = float(value)
        if not math.isfinite(number):
            raise refuse(f"{value!r}, which JSON cannot hold (give a finite number or a string)")
        if type(value)(number) != value:  # a longdouble between two float64
            raise refuse(f"the {type(value).__name__} {value!r} is not exactly a float64")
        return number
    if isinstance(value, dict):  # an OrderedDict, say: the same JSON as a dict
        out = {}
        for name, item in value.items():
            if type(name) is not str and not isinstance(name, np.str_):
                raise refuse(f"the key {name!r} is a {type(name).__name__}; JSON keys are "
                             "strings (and a number key would come back as one)")  # fmt: skip
            out[str(name)] = _exact(item, index, f"{where}[{json.dumps(str(name))}]")
        return out
    if type(value) in (list, tuple):
        return [_exact(item, index, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        raise refuse(f"a {type(value).__name__}, which JSON cannot hold (give a sorted list)")
    if isinstance(value, bytes | bytearray):
        raise refuse(f"{type(value).__name__}, which JSON cannot hold (give a str)")
    raise refuse(f"a {type(value).__module__}.{type(value).__qualname__}, which JSON cannot "
                 "hold exactly (give numbers, strings, lists and dicts)")  # fmt: skip


# --- one writer per folder ------------------------------------------------------------------
@contextlib.contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """Hold the lock of the run folder ``out`` for the block: one sweep at a time writes into
    it. Another sweep fails at once with `FolderInUse`, naming this process. The operating
    system drops the lock of a process that dies, a killed one included, so nothing is left
    to clean up. A second `writer_lock` on one folder fails in the same process too."""
    lock = filelock.FileLock(out / LOCK, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise FolderInUse(
            f"{out} is in use by another sweep ({_holder(out)}); wait until it ends, or give "
            "another --out"
        ) from None
    try:
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        io.atomic_write(out / HOLDER, lambda f: f.write(json.dumps(holder).encode()))
        yield
    finally:
        # removed while the lock is still ours: the next holder's file is never removed
        with contextlib.suppress(OSError):
            (out / HOLDER).unlink()
        lock.release()


def _holder(out: Path, patience: float = 5.0) -> str:
    """Who holds the lock of ``out``, in words. The holder writes it just after taking the
    lock, so this waits up to ``patience`` seconds for a file it can use (one left by a holder
    that has died since does not count: the lock's new holder is about to replace it)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            holder = json.loads((out / HOLDER).read_text())
            pid, host, since = int(holder["pid"]), str(holder["host"]), str(holder["since"])
        except (OSError, ValueError, TypeError, KeyError):
            pid, host, since = 0, "", ""
        if pid > 0 and (host != socket.gethostname() or _alive(pid)):
            return f"process {pid} on {host}, since {since}"
        if time.monotonic() >= deadline:
            return f"a process that has not written {HOLDER}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (where that can be asked: POSIX)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only asked
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


# --- reading runs.jsonl -----------------------------------------------------------------------
@dataclass(frozen=True)
class RunFile:
    """What a ``runs.jsonl`` holds (`parse_runs`)."""

    runs: list[Run]  # every run, in the order of the file
    repeats: list[int]  # line numbers of runs that repeat an earlier line's spec and results
    torn: bytes  # the torn last line, b"" if none
    torn_line: int  # its line number
    whole: bytes  # the file without it


def parse_runs(path: Path) -> RunFile:
    """Read ``path`` (a ``runs.jsonl``; none is an empty one) without changing it. Its last
    line is torn when it has no newline at its end (the kill came before the write ended) or
    is not JSON. Raises `RunFileError` naming the line for any other line that is not a run
    (not JSON, or JSON but not an object with a "spec" object) and for a run of a spec seen
    before with other results (ignoring `RUN_TIME_FIELDS`)."""
    data = path.read_bytes() if path.exists() else b""
    *lines, torn = data.split(b"\n")
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if not torn and filled and not _is_json(lines[filled[-1]]):
        last = filled[-1]  # a whole line, but not JSON: torn all the same (a disk that lost it)
        torn, lines = b"\n".join(lines[last:]) + b"\n", lines[:last]
    runs, repeats, first = [], [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        run = _run_of(path, number, line)
        k = key(run["spec"])
        if k not in first:
            first[k] = (number, run)
        elif _results(first[k][1]) != _results(run):
            differ = sorted(
                name
                for name in set(run) | set(first[k][1])
                if _results(run.get(name)) != _results(first[k][1].get(name))
            )
            raise RunFileError(
                f"{path}, line {number}: a run of the spec of line {first[k][0]} with other "
                f"results (they differ in {', '.join(differ)}); the file mixes two sweeps: "
                "keep one of the lines, or give another --out"
            )
        else:
            repeats.append(number)
        runs.append(run)
    return RunFile(runs, repeats, torn, len(lines) + 1, data[: len(data) - len(torn)])


def read_runs(path: Path) -> list[Run]:
    """The runs of a ``runs.jsonl``, every line in the order of the file (repeats included),
    checked as `parse_runs` does. A torn last line is left out, and left in the file: the
    next sweep into the folder sets it aside."""
    return parse_runs(path).runs


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False
    return True


def _run_of(path: Path, number: int, line: bytes) -> Run:
    """The run of line ``number``, or a RunFileError that names it."""
    try:
        run = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        what = "is not JSON"
    else:
        if isinstance(run, dict) and isinstance(run.get("spec"), dict):
            return run
        what = "has no spec object" if isinstance(run, dict) else "is not a JSON object"
    raise RunFileError(
        f"{path}, line {number}: {_shown(line)} {what}, so it is not a run "
        '({"spec": {...}, ...results}); move the line out of the file, or give another --out'
    )


def _shown(line: bytes) -> str:
    """The start of a line, for a message."""
    text = line.strip().decode("utf-8", "replace")
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _results(value: Any) -> str:
    """What a run computed, as text: without its spec and its run times, at any depth (NaN is
    the text NaN, so two NaN results are the same)."""

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in RUN_TIME_FIELDS}
        return [strip(x) for x in v] if isinstance(v, list) else v

    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "spec"}
    return json.dumps(strip(value), sort_keys=True)


# --- writing runs.jsonl ------------------------------------------------------------------------
def _resume(path: Path) -> dict[str, Run]:
    """The runs done, by `key`, from ``path``; a torn last line is set aside first. Only
    the holder of the folder's `writer_lock` may call it: it rewrites the file."""
    found = parse_runs(path)
    if found.torn:
        damaged = path.with_name(DAMAGED)
        # first kept in runs.jsonl.damaged, then taken out of runs.jsonl: a kill in between
        # leaves it in both, and the next resume sets it aside again, never loses it
        with open(damaged, "ab", buffering=0) as f:
            _write_line(f, found.torn.rstrip(b"\n") + b"\n")
        io.atomic_write(path, lambda f: f.write(found.whole))
        warnings.warn(
            f"{path}, line {found.torn_line}: a torn last line (a sweep was killed while "
            f"writing it) is set aside in {damaged.name}; its run is done again",
            RunFileWarning,
            stacklevel=3,
        )
    if found.repeats:
        shown = ", ".join(map(str, found.repeats[:5]))
        if len(found.repeats) > 5:
            shown += f" and {len(found.repeats) - 5} more"
        which = f"line {shown} repeats" if len(found.repeats) == 1 else f"lines {shown} repeat"
        warnings.warn(
            f"{path}: {which} the spec and the results of an earlier line (run times aside); "
            "the first of each is used",
            RunFileWarning,
            stacklevel=3,
        )
    done: dict[str, Run] = {}
    for run in found.runs:
        done.setdefault(key(run["spec"]), run)
    return done


def _write_line(f: Any, line: bytes) -> None:
    """Append ``line`` whole to the unbuffered file ``f``, with one write, and to disk."""
    written = f.write(line)
    if written != len(line):  # a full disk: the torn line is set aside by the next resume
        raise OSError(f"{f.name}: only {written} of {len(line)} bytes written (disk full?)")
    os.fsync(f.fileno())


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
    at most ⌈runs left / jobs⌉, so that each process gets one (a stack runs in one process).
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
        done = _resume(path)
        todo = [s for s, k in zip(specs, keys, strict=True) if k not in done]
        width = getattr(executor, "jobs", 1)  # (a Dask cluster's is not known here)
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
                    _write_line(f, (line + "\n").encode())
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
