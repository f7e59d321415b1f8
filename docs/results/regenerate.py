"""Rebuild ``docs/results/`` from the studies' configs, with one command (issue 24).

    python docs/results/regenerate.py --list                 # the studies, their cost
    python docs/results/regenerate.py [study ...]            # rebuild these (default: all)
    python docs/results/regenerate.py --quick --out /tmp/q   # every study's --quick, elsewhere
    python docs/results/regenerate.py --resume STUDY         # reuse the runs a sweep holds

Each study runs its command into a work folder (``runs/regenerate/<study>``, or ``--out``)
and copies the files it owns into ``docs/results/<folder>/`` (never with ``--quick``, whose
numbers are smoke tests). Beside them, ``provenance.json`` records for every file the study
that made it, the tinyvec version, the git commit of the code (with ``dirty`` when the code,
``CODE``, differed from it), the command, the study's config (its config.json) and the BLAS
kernels NumPy ran (``blas``). A generated Markdown file ends with the same in one line. Files
not in any study are hand-written pages (``NARRATIVE``: they cite the generated tables) or
``LEGACY``: made by older code, kept for the record, each labelled so at its top.
``tests/test_results.py`` checks all of this, and that the studies' quick configs run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent
ROOT = RESULTS.parents[1]


@dataclass
class Study:
    """``commands``: (module, argv) pairs run in order, ``{work}`` in argv replaced by the work
    folder; ``files``: produced path (relative to the work folder) → name in ``folder``;
    ``config``: the produced config.json to record; ``quick``: extra argv for --quick."""

    folder: str
    commands: list[tuple[str, list[str]]]
    files: dict[str, str]
    config: list[str]
    cost: str
    quick: list[str] = field(default_factory=lambda: ["--quick"])
    quick_commands: list[tuple[str, list[str]]] | None = None  # replaces commands + quick
    quick_files: bool = True  # with --quick the same files exist (checked by the test)


def _k_sweeps() -> list[tuple[str, list[str]]]:
    runs = [("tinyvec.experiments.eigen", ["--seeds", "0-7", "--k", k, "--no-plots", "--jobs",
                                            "2", "--quiet", "--out", f"{{work}}/k{k}"])
            for k in ("1", "2", "3", "auto")]  # fmt: skip
    runs += [("tinyvec.experiments.eigen", ["--seed", "0", "--k", "auto", "--quiet", "--dpi", "100",
                                             "--out", "{work}/ritz-seed-0-kauto"]),
             ("tinyvec.experiments.eigen", ["--seed", "3", "--k", "3", "--quiet", "--dpi", "100",
                                             "--out", "{work}/ritz-seed-3-k3"])]  # fmt: skip
    return runs


# the committed compensation grid (compensation/config.json) as compensation_converged's cells
GRID_CELLS = [f"{t}:{eta}" for t in ("sin", "runge", "sincos")
              for eta in ("0.01", "0.02", "0.05", "0.1", "0.2")]  # fmt: skip


def _converged(folder: str, work: str, cells: list[str], flags: list[str], quick: list[str],
               cost: str) -> Study:  # fmt: skip
    """A study of `tinyvec.experiments.compensation_converged`: ``cells`` with ``flags``,
    stacked, into ``{work}/<work>``; --quick: its quick grid with the flags ``quick``."""
    module = "tinyvec.experiments.compensation_converged"
    shown = ["--quiet", "--no-plots", "--out", f"{{work}}/{work}"]
    return Study(
        folder,
        [(module, ["--cells", *cells, *flags, "--stack", "100", "--jobs", "2", *shown])],
        {f"{work}/results.md": "results.md", f"{work}/results.json": "results.json"},
        [f"{work}/config.json"],
        cost,
        quick_commands=[(module, ["--quick", *quick, "--jobs", "1", *shown])],
    )


STUDIES: dict[str, Study] = {
    "analyze": Study(
        "analysis",
        [("tinyvec.experiments.analyze", ["--quiet", "--dpi", "100", "--out", "{work}/run"])],
        {
            "run/summary.md": "analyze.md",
            "run/heatmaps.png": "vector_heatmaps.png",
            "run/series.png": "vector_series.png",
            "run/completion.png": "completion.png",
        },
        ["run/config.json"],
        "≈ 1.5 min",
    ),
    "collapse": Study(
        "analysis",
        [("tinyvec.experiments.collapse", ["--quiet", "--dpi", "100", "--out", "{work}/run"])],
        {"run/summary.md": "collapse.md", "run/collapse.png": "collapse.png"},
        ["run/config.json"],
        "≈ 1.5 min",
    ),
    "collapse-seeds": Study(
        "analysis",
        [
            (
                "tinyvec.experiments.collapse",
                ["--seeds", "0-2", "--jobs", "1", "--quiet", "--no-plots", "--out", "{work}/seeds"],
            )
        ],
        {"seeds/summary.md": "collapse-seeds-0-2.md"},
        ["seeds/config.json"],
        "≈ 4 min on one busy core",
        quick=["--quick", "--seeds", "0-1"],
    ),
    "eigen-default": Study(
        "eigen",
        [("tinyvec.experiments.eigen", ["--quiet", "--dpi", "100", "--out", "{work}/run"])],
        {
            "run/summary.json": "summary-seed-1.json",
            "run/frame.png": "frame.png",
            "run/lambda_r2.png": "lambda_r2.png",
            "run/singular_values.png": "singular_values.png",
            "run/differences.png": "differences.png",
        },
        ["run/config.json"],
        "≈ 15 s",
    ),
    "eigen-seeds": Study(
        "eigen",
        [
            (
                "tinyvec.experiments.eigen",
                [
                    "--seeds",
                    "0-7",
                    "--jobs",
                    "2",
                    "--quiet",
                    "--dpi",
                    "100",
                    "--out",
                    "{work}/seeds",
                ],
            )
        ],
        {
            "seeds/summary.md": "seeds-0-7.md",
            "seeds/summary.csv": "seeds-0-7.csv",
            "seeds/grid.png": "grid-seeds-0-7.png",
        },
        ["seeds/config.json"],
        "≈ 2 min",
        quick=["--quick", "--seeds", "0-1"],
    ),
    "eigen-k": Study(
        "eigen",
        _k_sweeps(),
        {
            "k1/summary.md": "k-outputs-k1.md",
            "k2/summary.md": "k-outputs-k2.md",
            "k3/summary.md": "k-outputs-k3.md",
            "kauto/summary.md": "k-outputs-kauto.md",
            "ritz-seed-0-kauto/ritz.png": "ritz-seed-0-kauto.png",
            "ritz-seed-3-k3/ritz.png": "ritz-seed-3-k3.png",
        },
        ["k1/config.json", "k2/config.json", "k3/config.json", "kauto/config.json"],
        "≈ 6 min",
    ),
    "eigen-settings": Study(
        "eigen",
        [("tinyvec.experiments.eigen_settings", ["--jobs", "2", "--out", "{work}/settings"])],
        {
            "settings/settings-table.md": "settings-table.md",
            "settings/settings.json": "settings.json",
        },
        [],
        "≈ 5 min",
    ),
    "eigen-rotation": Study(
        "eigen",
        [("tinyvec.experiments.eigen_rotation", ["--dpi", "100", "--out", "{work}/rotation"])],
        {
            "rotation/rotation-table.md": "rotation-table.md",
            "rotation/two-solutions-seed-3.png": "two-solutions-seed-3.png",
        },
        [],
        "≈ 3 min",
    ),
    "eigen-frontier": Study(
        "eigen",
        [("tinyvec.experiments.eigen_frontier", ["--out", "{work}/frontier"])],
        {"frontier/frontier-table.md": "frontier-table.md"},
        [],
        "≈ 3 min",
    ),
    "sharpness": Study(
        "sharpness",
        [
            (
                "tinyvec.experiments.sharpness",
                ["--jobs", "1", "--quiet", "--dpi", "100", "--out", "{work}/run"],
            )
        ],
        {
            "run/results.md": "results.md",
            "run/runs.jsonl": "runs.jsonl",
            "run/gd-analyze.png": "gd-analyze.png",
            "run/gd-digits.png": "gd-digits.png",
            "run/sgd.png": "sgd.png",
            "run/config.json": "config.json",
        },
        ["run/config.json"],
        "≈ 3 min on one busy core",
        quick=["--quick", "--seeds", "0-1", "--sgd-tasks", "sin"],
    ),
    "compensation-converged": _converged(
        "compensation/converged",
        "cells",
        [*GRID_CELLS, "sin:0.005"],
        ["--max-epochs", "10000"],
        [],
        "≈ 17 CPU-min (stacked)",
    ),
    "compensation-converged-relu": _converged(
        "compensation/converged-relu",
        "cells",
        GRID_CELLS,
        ["--activation", "relu", "--max-epochs", "10000"],
        ["--activation", "relu"],
        "≈ 12 CPU-min (stacked)",
    ),
    "over-time-converged": _converged(
        "orthogonalization/over-time-converged",
        "tanh",
        [f"{t}:{eta}" for t in ("sin", "runge", "sincos") for eta in ("0.02", "0.1", "0.2")],
        ["--memory", "4", "--eps", "0.001", "--depth", "3", "--max-epochs", "6000"],
        ["--memory", "4"],
        "≈ 14 CPU-min (stacked)",
    ),
    "over-time-converged-relu": _converged(
        "orthogonalization/over-time-converged-relu",
        "relu",
        [f"{t}:{eta}" for t in ("sin", "runge", "sincos") for eta in ("0.02", "0.1", "0.2")],
        [
            "--memory",
            "4",
            "--eps",
            "0.001",
            "--depth",
            "3",
            "--activation",
            "relu",
            "--max-epochs",
            "6000",
        ],
        ["--memory", "4", "--activation", "relu"],
        "≈ 12 CPU-min (stacked)",
    ),
    "compensation": Study(
        "compensation",
        [
            (
                "tinyvec.experiments.compensation",
                [
                    "--config",
                    str(RESULTS / "compensation/config.json"),
                    "--jobs",
                    "2",
                    "--quiet",
                    "--out",
                    "{work}/tanh",
                ],
            )
        ],
        {
            "tanh/results.md": "results.md",
            "tanh/results.csv": "results.csv",
            "tanh/runs.csv": "runs.csv",
            "tanh/eta_tanh_sample.png": "eta_tanh_sample.png",
            **{
                f"tanh/curves_{t}_tanh_sample.png": f"curves_{t}_tanh_sample.png"
                for t in ("sin", "runge", "sincos")
            },
        },
        ["tanh/config.json"],
        "≈ 40 CPU-min",
        quick=["--quick", "--tasks", "sin"],
        quick_files=False,
    ),
}

# Hand-written pages: they state what the generated tables beside them show.
NARRATIVE = {
    "index.md",
    "eigen/settings.md",
    "eigen/rotation.md",
    "eigen/frontier.md",
    "eigen/k-outputs.md",
}
# Made by older code and not regenerated in this commit: kept for the record, labelled as such
# at their top (a Markdown or CSV file) or by the page that shows them (a figure).
LEGACY = {
    "compensation/relu/results.md": "fixed budget of 2000 epochs, 5 seeds",
    "compensation/relu/results.csv": "fixed budget of 2000 epochs, 5 seeds",
    "compensation/relu/runs.csv": "fixed budget of 2000 epochs, 5 seeds",
    "compensation/relu/config.json": "fixed budget of 2000 epochs, 5 seeds",
    "compensation/relu/eta_relu_sample.png": "fixed budget",
    "compensation/relu/curves_sin_relu_sample.png": "fixed budget",
    "compensation/relu/curves_runge_relu_sample.png": "fixed budget",
    "compensation/relu/curves_sincos_relu_sample.png": "fixed budget",
    "compensation/results.md": "fixed budget of 2000 epochs, 5 seeds",
    "compensation/results.csv": "fixed budget of 2000 epochs, 5 seeds",
    "compensation/runs.csv": "fixed budget of 2000 epochs, 5 seeds",
    "compensation/config.json": "the config the 'compensation' study reruns",
    "compensation/eta_tanh_sample.png": "fixed budget",
    "compensation/curves_sin_tanh_sample.png": "fixed budget",
    "compensation/curves_runge_tanh_sample.png": "fixed budget",
    "compensation/curves_sincos_tanh_sample.png": "fixed budget",
    "orthogonalization/over-time.md": "fixed budget of 2000 epochs, 5 seeds",
}
CODE = ["tinyvec", "examples", "pyproject.toml", "docs/results/regenerate.py"]
TOOLS = {"regenerate.py", "analysis/blas_threads.py", "speed/phases.py", "speed/instructions.py"}


def version() -> str:
    import tinyvec

    return tinyvec.__version__


def git_commit() -> dict[str, Any]:
    """HEAD and whether the code (``CODE``) differs from it (None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *CODE],
                               cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def blas() -> list[dict[str, Any]]:
    """The BLAS libraries NumPy loaded and the kernels they chose (OpenBLAS's
    ``architecture``, which ``OPENBLAS_CORETYPE`` overrides). The studies' processes inherit
    this environment, so they run the same kernels. Recorded because a run that does not
    settle amplifies the last bit: eigen seed 3 at η = 0.2 turns in 26 steps on OpenBLAS's
    Haswell kernels and in 36 on its SkylakeX ones, with the same code (eigen/rotation.md)."""
    import numpy  # noqa: F401  (loads the BLAS that threadpool_info lists)
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture")
    return [
        {k: lib.get(k) for k in keys} for lib in threadpool_info() if lib.get("user_api") == "blas"
    ]


MAIN = "import importlib, sys; sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))"


def run_module(module: str, argv: list[str]) -> None:
    """``module.main(argv)`` in a fresh process (each study sets up its own state), one BLAS
    thread, figures without a display."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    print(f"  $ python -m {module} {' '.join(argv)}", flush=True)
    subprocess.run([sys.executable, "-c", MAIN, module, *argv], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, env=env)  # fmt: skip


def regenerate(name: str, work: Path, quick: bool, runner: Callable[[str, list[str]], None] = run_module, resume: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run study ``name`` into ``work``; returns its provenance record. ``resume``: keep what
    ``work`` holds, so that a sweep reuses the runs its runs.jsonl already has (the same
    specs give the same numbers)."""
    study = STUDIES[name]
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    argvs = []
    commands = study.commands
    if quick:
        commands = study.quick_commands or [(m, [*a, *study.quick]) for m, a in commands]
    try:  # the recorded commands name the work folder relative to the checkout when inside it
        shown = str(work.resolve().relative_to(ROOT))
    except ValueError:
        shown = str(work)
    for module, argv in commands:  # run in ROOT: a relative work folder names the same place
        argv = [a.replace("{work}", shown) for a in argv]
        runner(module, argv)
        argvs.append(f"python -m {module} " + " ".join(argv))
    configs = {c: json.loads((work / c).read_text()) for c in study.config}
    return {"study": name, "tinyvec_version": version(), **git_commit(),
            "command": f"python docs/results/regenerate.py {name}", "commands": argvs,
            "config": configs, "blas": blas(), "quick": quick,
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def footer(record: dict[str, Any]) -> str:
    commit = record["commit"] or "unknown"
    dirty = " + uncommitted changes" if record["dirty"] else ""
    return (f"\n<!-- provenance -->\n_Regenerated by `{record['command']}` with tinyvec "
            f"{record['tinyvec_version']} (commit {commit[:12]}{dirty}); its config is in "
            f"`provenance.json`._\n")  # fmt: skip


def relink(text: str, files: dict[str, str]) -> str:
    """A generated page's links to its run's files: to the installed name where the study
    keeps the file, to plain text where it does not."""
    names = {Path(src).name: target for src, target in files.items()}

    def link(m: re.Match[str]) -> str:
        label, href = m.group(1), m.group(2)
        if "/" in href or ":" in href or href.startswith("#"):
            return m.group(0)
        if href in names:
            return f"[{names[href] if label == href else label}]({names[href]})"
        return f"`{label}` (in the run folder, not kept here)"

    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", link, text)


def install(name: str, work: Path, record: dict[str, Any], dest: Path) -> list[str]:
    """Copy the study's files from ``work`` into ``dest/<folder>`` and update its
    provenance.json; returns the paths written (relative to dest)."""
    study = STUDIES[name]
    folder = dest / study.folder
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for src, target in study.files.items():
        path = folder / target
        shutil.copyfile(work / src, path)
        if path.suffix == ".md":
            text = relink(path.read_text(), study.files)
            path.write_text(text.rstrip("\n") + "\n" + footer(record))
        written.append(f"{study.folder}/{target}")
    prov_path = folder / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {"files": {},
                                                                             "studies": {}}  # fmt: skip
    prov["studies"][name] = record
    for target in study.files.values():
        prov["files"][target] = name
    prov_path.write_text(json.dumps(prov, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("studies", nargs="*", help=f"default: all of {', '.join(STUDIES)}")
    p.add_argument("--quick", action="store_true", help="each study's --quick, into --out")
    p.add_argument("--out", type=Path, help="work folder (default runs/regenerate)")
    p.add_argument("--list", action="store_true", help="list the studies and their cost")
    p.add_argument("--resume", action="store_true",
                   help="keep the work folders: sweeps reuse the runs they already hold")  # fmt: skip
    args = p.parse_args(argv)
    if args.list:
        for name, s in STUDIES.items():
            print(f"{name:24} → docs/results/{s.folder:24} {s.cost}")
        return 0
    unknown = sorted(set(args.studies) - set(STUDIES))
    if unknown:
        p.error(f"unknown studies {unknown}; see --list")
    if args.quick and args.out is None:
        p.error("--quick writes smoke-test numbers: give --out, away from docs/results")
    work = args.out or ROOT / "runs" / "regenerate"
    for name in args.studies or list(STUDIES):
        print(f"{name}:", flush=True)
        record = regenerate(name, work / name, args.quick, resume=args.resume)
        if args.quick:
            with contextlib.redirect_stdout(io.StringIO()):
                install(name, work / name, record, work / "results")
        else:
            for path in install(name, work / name, record, RESULTS):
                print(f"  → docs/results/{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
