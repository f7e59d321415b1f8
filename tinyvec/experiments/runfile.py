"""``runs.jsonl``, the log of a sweep (`tinyvec.experiments.sweep`): one finished run a line,
``{"spec": {...}, ...results}``, kept as a database keeps its log:

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
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import numpy as np

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
def resume(path: Path) -> dict[str, Run]:
    """The runs done, by `key`, from ``path``; a torn last line is set aside first. Only
    the holder of the folder's `writer_lock` may call it: it rewrites the file."""
    found = parse_runs(path)
    if found.torn:
        damaged = path.with_name(DAMAGED)
        # first kept in runs.jsonl.damaged, then taken out of runs.jsonl: a kill in between
        # leaves it in both, and the next resume sets it aside again, never loses it
        with open(damaged, "ab", buffering=0) as f:
            write_line(f, found.torn.rstrip(b"\n") + b"\n")
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


def write_line(f: Any, line: bytes) -> None:
    """Append ``line`` whole to the unbuffered file ``f``, with one write, and to disk."""
    written = f.write(line)
    if written != len(line):  # a full disk: the torn line is set aside by the next resume
        raise OSError(f"{f.name}: only {written} of {len(line)} bytes written (disk full?)")
    os.fsync(f.fileno())
