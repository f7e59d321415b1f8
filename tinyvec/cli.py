"""The ``tinyvec`` command: ``tinyvec <command> [options]``; ``tinyvec <command> --help``."""

from __future__ import annotations

import importlib
import sys

# command → (module with a `main(argv) -> int`, one-line description)
COMMANDS = {
    "demo": ("tinyvec.experiments.demo", "train the seed network and show δ^k and ΔW^k"),
    "bench": ("tinyvec.experiments.bench", "time a training step against hand-written NumPy"),
    "compensation": ("tinyvec.experiments.compensation", "the δ-compensation study (seed 004)"),
    "eigen": ("tinyvec.experiments.eigen", "the eigen-operator experiment (seed 001)"),
    "collapse": ("tinyvec.experiments.collapse", "neural collapse on the digits data set"),
    "analyze": ("tinyvec.experiments.analyze", "vector analysis and completion of a training run"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        print("usage: tinyvec <command> [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name.ljust(width)}  {text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module, _ = COMMANDS[argv[0]]
    return importlib.import_module(module).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
