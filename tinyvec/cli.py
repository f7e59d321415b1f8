"""The ``tinyvec`` command: ``tinyvec <command> [options]``; ``tinyvec <command> --help``.

Exit status: 0 done, 1 a fault while working (the message names it), 2 a bad argument
(found before any work), 130 interrupted (Ctrl-C). Errors are one line,
``tinyvec CMD: error: …``, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from . import __version__, science_notes_path
from .experiments.common import UsageError

# command → (module with a `main(argv) -> int`, one-line description)
COMMANDS = {
    "demo": ("tinyvec.experiments.demo", "train the seed network and show δ^k and ΔW^k"),
    "bench": ("tinyvec.experiments.bench", "time a training step against hand-written NumPy"),
    "compensation": ("tinyvec.experiments.compensation", "the δ-compensation study (seed 004)"),
    "eigen": ("tinyvec.experiments.eigen", "the eigen-operator experiment (seed 001)"),
    "collapse": ("tinyvec.experiments.collapse", "neural collapse on the digits data set"),
    "analyze": ("tinyvec.experiments.analyze", "vector analysis and completion of a training run"),
    "sharpness": ("tinyvec.experiments.sharpness", "the loss Hessian's λ_max against 2/η"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tinyvec <command> [options]   (tinyvec <command> --help, tinyvec --version)",
             "", "commands:"]  # fmt: skip
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", f"the formulas the help texts cite (science.md §N): {science_notes_path()}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tinyvec argv…``; return the exit status (see the module doc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if argv[:1] == ["--version"]:
        print(f"tinyvec {__version__}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        what = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"tinyvec: error: {what}\n\n{usage()}", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    prog = f"tinyvec {name}"
    try:
        return int(importlib.import_module(COMMANDS[name][0]).main(rest) or 0)
    except SystemExit as e:  # argparse: --help (0) and bad arguments (2, already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder that cannot be written, …
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
