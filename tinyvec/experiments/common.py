"""What every ``tinyvec`` study shares: its flags, their validation, ``--config``, run folders
and the one-line errors.

Every study takes ``--seed``, ``--quick``, ``--out DIR``, ``--no-plots``, ``--config FILE``,
``--quiet``, ``--format png|pdf|svg`` and ``--dpi``. Arguments are checked before any work:
a bad one ends the command with one line, ``tinyvec CMD: error: …``, and exit status 2
(the values of the flags are checked by their types, `tinyvec.experiments.flags`).

``--config FILE`` reads a JSON object whose keys are the flags (``epochs``, ``no_plots``, …);
options given on the command line override it. Every study writes such a ``config.json``, so
``tinyvec CMD --config OUT/config.json`` reruns it.

``--out`` is always a folder. A single run is written into ``OUT.incomplete`` and renamed to
``OUT`` when it is complete, so ``OUT`` holds one whole run (the new one, or the previous one
after a Ctrl-C), never a mix. A sweep (`tinyvec.experiments.sweep`) writes into ``OUT``
itself, with a file ``INCOMPLETE`` until it is done, and resumes from it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import tinyvec as tv

from .errors import UsageError
from .flags import dask_address, nonnegative_int, positive_int, seed_list, seeds_name
from .sweep import cpu_count, executor_for, run_sweep
from .tables import write_json

FORMATS = ("png", "pdf", "svg")
# extras to install for an optional module, as the error message says
EXTRAS = {
    "matplotlib": "experiments",
    "sklearn": "experiments",
    "distributed": "distributed",
}
# flags that choose how and where a study runs, not what it computes: not in config.json
EXECUTION = ("config", "out", "quiet", "jobs", "dask", "stack", "help")
# names that look like a file, refused as --out (a folder) so `--out my.npz` is no surprise
FILE_SUFFIXES = {".npz", ".npy", ".json", ".jsonl", ".csv", ".md", ".png", ".pdf", ".svg", ".txt"}
INCOMPLETE = "INCOMPLETE"


def fail(prog: str, message: str) -> NoReturn:
    """Print ``prog: error: message`` on one line and exit with status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class StudyParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see {self.prog} --help)")


# --- the parser -------------------------------------------------------------------------------
def study_parser(command: str, doc: str | None, *, out: str, quick: str) -> StudyParser:
    """The parser of ``tinyvec command`` (or ``command`` itself, "python -m …", for a study
    that is no `tinyvec` command) with the flags every study shares; the study adds
    its own. ``out`` is the default folder, ``quick`` says what ``--quick`` does."""
    from .. import science_notes_path

    p = StudyParser(  # (a study of docs/results that is no `tinyvec` command: "python -m …")
        prog=command if command.startswith("python -m ") else f"tinyvec {command}",
        description=doc,
        # the help cites the formulas as "science.md §N": say where the installed file is
        epilog=f"science.md: {science_notes_path()}" if doc and "science.md" in doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("every study")
    g.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    g.add_argument("--quick", action="store_true", help=quick)
    g.add_argument("--out", type=Path, default=None, help=f"output folder (default {out})")
    g.add_argument("--no-plots", action="store_true", help="write tables only, no figures")
    g.add_argument("--plots", dest="no_plots", action="store_false",
                   help="draw the figures (overrides no_plots of a --config file)")  # fmt: skip
    g.add_argument("--config", type=Path, help="rerun from a config.json; flags given override it")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--format", choices=FORMATS, default="png", help="figure format (png)")
    g.add_argument("--dpi", type=positive_int, default=200, help="figure resolution (200)")
    p.set_defaults(_default_out=out)
    return p


def add_sweep_flags(parser: argparse.ArgumentParser, seeds: str | None = None) -> None:
    """``--seeds``, ``--jobs`` and ``--dask``: the flags of a study that runs a sweep
    (`tinyvec.experiments.sweep`). ``seeds``: the default of ``--seeds`` (None: one run)."""

    g = parser.add_argument_group("sweeps")
    g.add_argument("--seeds", type=seed_list, default=seed_list(seeds) if seeds else None,
                   help="seeds as a range 0-4 or a list 1,4,9"
                   + (f" (default {seeds})" if seeds else " (a sweep; default: --seed only)"))  # fmt: skip
    g.add_argument("--stack", type=positive_int, default=32,
                   help="train up to this many runs that differ only in seed, data, η, κ or ε "
                   "as one stack of models (tv.stack), each exactly as alone (default 32; "
                   "1: one by one)")  # fmt: skip
    g.add_argument("--jobs", type=positive_int, default=cpu_count(),
                   help="worker processes on this machine (default: every core)")  # fmt: skip
    g.add_argument(
        "--dask",
        metavar="tcp://HOST:PORT",
        type=dask_address,
        help='run on this dask.distributed scheduler instead (pip install "tinyvec-autograd[distributed]")',
    )
    parser.set_defaults(_seeds_name_out=seeds is None)


def parse(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    needs: Sequence[str] = (),
    plot_needs: Sequence[str] = ("matplotlib",),
) -> argparse.Namespace:
    """Parse ``argv`` over the ``--config`` file's values, check ``--out`` and that the
    optional modules ``needs`` (and ``plot_needs`` unless ``--no-plots``) are installed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.config is not None:
        args = parser.parse_args([*config_argv(parser, args.config), *argv])
    if args.out is None:
        # a sweep over seeds that one run would not make is named by them
        many = getattr(args, "_seeds_name_out", False) and getattr(args, "seeds", None)
        args.out = Path(args._default_out + (f"-seeds-{seeds_name(args.seeds)}" if many else ""))
    check_out(parser.prog, args.out)
    dask = ["distributed"] if getattr(args, "dask", None) else []
    require(parser.prog, [*needs, *dask, *([] if args.no_plots else plot_needs)])
    return args


def config_argv(parser: argparse.ArgumentParser, path: Path) -> list[str]:
    """The command-line words that a config.json stands for (its keys are the flags' names
    with ``_``), so its values are checked exactly like typed ones."""
    prog = parser.prog
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        fail(prog, f"--config {path}: cannot read it ({e.__class__.__name__}: {e})")
    except json.JSONDecodeError as e:
        fail(prog, f"--config {path}: not JSON ({e})")
    if not isinstance(stored, dict):
        fail(prog, f"--config {path}: holds a JSON {type(stored).__name__}, not an object of flags")
    actions: dict[str, argparse.Action] = {}
    for a in parser._actions:  # the first flag of a dest: --no-plots, not its undoing --plots
        if a.option_strings:
            actions.setdefault(a.dest, a)
    unknown = sorted(set(stored) - set(actions) - set(EXECUTION))
    if unknown:
        fail(prog, f"--config {path}: unknown keys {unknown}; the keys are the flags of {prog}")
    words: list[str] = []
    for key, value in stored.items():
        if key in EXECUTION or value is None:
            continue
        action = actions[key]
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                fail(prog, f"--config {path}: {key} must be true or false, got {value!r}")
            words += [flag] if value else []
        elif isinstance(value, list):
            words += [flag, *map(str, value)] if value else []
        elif isinstance(value, dict | bool):
            fail(prog, f"--config {path}: {key} must be a number, a string or a list")
        else:
            words += [flag, str(value)]
    return words


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of a parsed command as config.json stores them (not where or how it ran)."""
    stored = {k: v for k, v in vars(args).items() if k not in EXECUTION and not k.startswith("_")}
    if stored.get("seeds") is not None:
        stored["seeds"] = seeds_name(stored["seeds"])
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in stored.items()}


def check_out(prog: str, out: Path) -> None:
    """``--out`` is a folder: refuse an existing file, a file-like name such as ``my.npz``,
    and an existing folder that holds something other than a tinyvec run."""
    if out.suffix.lower() in FILE_SUFFIXES:
        fail(prog, f"--out is a folder, and {str(out)!r} looks like a file name; "
                   f"give a folder such as {str(out.with_suffix(''))!r}")  # fmt: skip
    if out.exists() and not out.is_dir():
        fail(prog, f"--out {str(out)!r} is an existing file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not is_run_folder(out):
        fail(prog, f"--out {str(out)!r} is a folder that holds no tinyvec run (no config.json); "
                   "give a new or empty folder")  # fmt: skip
    # the run writes OUT.incomplete beside OUT, making the folders above: try that here, at
    # the nearest folder that exists, so a place nobody can write to fails before any work
    above = next(p for p in out.absolute().parents if p.exists())
    try:
        tempfile.TemporaryDirectory(dir=above).cleanup()
    except OSError as e:
        fail(prog, f"--out {str(out)!r}: cannot write into {str(above)!r} ({e.strerror}); "
                   "give a folder you can write to")  # fmt: skip


def is_run_folder(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / INCOMPLETE).is_file()


def require(prog: str, modules: Sequence[str]) -> None:
    """Fail at the start, naming the extra to install, when an optional module is missing."""
    for name in dict.fromkeys(modules):
        if importlib.util.find_spec(name) is None:
            extra = EXTRAS.get(name, "experiments")
            fail(prog, f'needs {name}, which is not installed: pip install "tinyvec-autograd[{extra}]"'
                       + (" (or pass --no-plots)" if name == "matplotlib" else ""))  # fmt: skip


@contextlib.contextmanager
def run_folder(out: Path) -> Iterator[Path]:
    """Yield the folder to write a single run into, ``OUT.incomplete``; when the block ends
    without an error it replaces ``OUT``. After an error or Ctrl-C, ``OUT`` is untouched (the
    previous run, if any) and ``OUT.incomplete`` holds what was written, marked INCOMPLETE."""
    stage = out.with_name(out.name + ".incomplete")
    if stage.exists():
        if not (stage / INCOMPLETE).is_file():
            raise UsageError(f"{stage} exists and is not an unfinished tinyvec run; remove it")
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    (stage / INCOMPLETE).write_text(
        f"an unfinished run of {out}; the finished run replaces {out}\n"
    )
    yield stage
    (stage / INCOMPLETE).unlink()
    old = out.with_name(out.name + ".previous")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    stage.rename(out)
    if old.exists():
        shutil.rmtree(old)


def figure_kw(args: argparse.Namespace) -> dict[str, Any]:
    """The figure flags as keyword arguments of the `tinyvec.plots` functions."""
    return {"fmt": args.format, "dpi": args.dpi}


# flags that change only the figures: a sweep may be resumed or redrawn with others
FIGURE_FLAGS = ("no_plots", "format", "dpi")


@contextlib.contextmanager
def sweep_folder(prog: str, out: Path, config: dict[str, Any]) -> Iterator[Path]:
    """The folder of a resumable sweep: ``OUT`` itself, holding config.json and, until the
    block ends without an error, a file INCOMPLETE. A folder that holds a sweep of another
    config is refused (its runs would mix with this one's)."""
    path = out / "config.json"
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            before = None
        same = lambda c: {k: v for k, v in c.items() if k not in FIGURE_FLAGS}  # noqa: E731
        if not isinstance(before, dict) or same(before) != same(config):
            changed = sorted(
                k
                for k in set(same(config)) | set(same(before or {}))
                if (before or {}).get(k) != config.get(k)
            )
            fail(prog, f"--out {str(out)!r} holds a sweep with another config (differs in "
                       f"{', '.join(changed) or 'format'}); give another --out, or rerun it "
                       f"with --config {path}")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE).write_text("this sweep is unfinished: run the same command to resume\n")
    write_json(path, config)
    yield out
    (out / INCOMPLETE).unlink()


@contextlib.contextmanager
def study_sweep(
    prog: str, fn: Any, specs: Sequence[dict[str, Any]], args: argparse.Namespace, desc: str
) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """A study's sweep as its flags ask: the runs of ``fn`` over ``specs`` in the resumable
    folder ``--out`` (`sweep_folder`), on the executor of ``--jobs`` / ``--dask``, with a
    progress bar unless ``--quiet``. Yields (folder, runs) for the study to write its tables
    into; the folder is marked complete when the block ends without an error."""

    with (
        executor_for(args.jobs, args.dask) as ex,
        sweep_folder(prog, args.out, config_of(args)) as out,
    ):
        stack = getattr(args, "stack", 1)
        runs = run_sweep(fn, specs, out, executor=ex, progress=not args.quiet, desc=desc,
                         stack=stack)  # fmt: skip
        yield out, runs


def without(model: Any, state: Any, gone: Sequence[int]) -> tuple[list[Any], list[int], Any, Any]:
    """The stack of models ``model`` (`tv.stack`) and its optimiser state ``state`` less the
    members at positions ``gone`` (a run that diverged, failed or is done, while the others
    go on): (every member alone as a (model, state) pair (`tv.unstack`), the positions kept,
    the stack of those and its state; None, None when none is kept)."""
    pairs = tv.unstack(model, state)
    keep = [i for i in range(len(pairs)) if i not in gone]
    if not keep:
        return pairs, keep, None, None
    return pairs, keep, *tv.stack([pairs[i][0] for i in keep], [pairs[i][1] for i in keep])
