"""The compensation study (seed 004): does rewriting δ^k cut the error of function
approximation, and does orthogonalizing the activation vectors help?

``tinyvec compensation [--quick | --full] [--out DIR] [--jobs N | --dask ADDRESS]`` trains
small MLPs on sin(πx), Runge's 1/(1+25x²) and sin(x₁)cos(x₂), for every combination of a
grid and several seeds, as a sweep (`tinyvec.experiments.sweep`: each run is kept in
``runs.jsonl`` as it finishes, and the same command resumes), and writes to ``--out``:

- ``results.md``: the verdict in numbers, each rule against plain backprop at the same η and
  at its own best η (with divergence counts and the spread over seeds), and every cell;
- ``results.csv``: one row per cell (everything but the seed): mean, std, median and IQR of
  the error, the ratio to plain backprop, the stagnation and divergence shares;
- ``runs.csv``: one row per run; ``config.json``: the flags, to rerun with ``--config``;
- ``curves_<task>_<activation>_<mode>.png``: learning curves, a panel per η and rule group;
  ``eta_<activation>_<mode>.png``: the error against η, every seed.

The grid: by default the study behind the README's headline table (the same as
``--config docs/results/compensation/config.json``): per-sample SGD to convergence, tanh
1-32-32-1, κ = 0.2 (exact ΔO) against plain backprop, η = 0.01 … 0.2, 2000 epochs on 24
points, seeds 0-4 (150 runs, about 40 CPU-minutes). ``--full`` is the earlier fixed-budget
grid, widened (every κ and variant, orthogonalization, mini-batches, ReLU; 100 epochs
per-sample, 300 in mini-batches; hours); ``--quick`` a tiny corner of that grid (seconds).
Each flag's help gives its value under each.

Definitions (ours; the seed gives none):

- error: the mean training-set MSE over the last tenth of the epochs (``tail``; SGD with a
  constant step keeps jittering, so one epoch's MSE is noisy), after a fixed budget of epochs
  (the default 2000 on 24 points, which is not convergence for every run: see
  `tinyvec.experiments.compensation_converged` for a stated criterion); ``final`` is the MSE
  after the last epoch and ``eval_mse``
  the MSE on a dense grid of the same domain;
- plain twin: the run of plain backprop (κ = 0, no orthogonalization) with the same task,
  network, initial weights, data order, training mode and step size;
- ratio of means (the claim's measure): mean error of the cell / mean error of the plain
  twins, over the seeds where neither diverged; per-seed ratio: error / the plain twin's (the
  cell reports its median and the share of seeds with a ratio < 1, "wins");
- best η of a rule: the step size with the lowest mean error among those where no seed
  diverged;
- diverged: a non-finite loss or a loss above 1e6 (the run stops; it has no error);
- stagnated: not diverged, the final MSE is above 1e-3·var(y), and the median training MSE of
  the last tenth of the epochs is more than 0.95 times that of the tenth ending at 75% of the
  epochs (less than 5% improvement over the last quarter of training).

Every run is seeded (``--seed`` + its seed index: weights and data order), independent, and
the same command gives the same numbers.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from typing import Any

from .common import add_sweep_flags, figure_kw, parse, study_parser, study_sweep
from .compensation_report import MODES, write_outputs
from .compensation_runs import ACTIVATIONS, TASKS, run_one
from .flags import nonnegative_float, positive_float, positive_int

# The default: the study behind the README's headline table, per-sample SGD to convergence
# (docs/results/compensation/config.json): tanh 1-32-32-1 on the three tasks, κ = 0.2 (exact
# ΔO) against plain backprop, η from 0.01 to 0.2, 2000 epochs on 24 points, seeds 0-4: 150
# runs, about 40 CPU-minutes.
DEFAULT = dict(
    tasks=list(TASKS),
    activations=["tanh"],
    widths=[32],
    depths=[2],
    kappas=[0.2],
    variants=["exact"],
    ortho=[False],
    ortho_kappas=[0.0, 0.2],
    eps=[1e-3, 0.1],
    modes=["sample"],
    etas_sample=[0.01, 0.02, 0.05, 0.1, 0.2],
    etas_batch=[0.02, 0.05, 0.1],
    batch=8,
    points=24,
    epochs_sample=2000,
    epochs_batch=300,
    seeds=5,
    seed=0,
)
# The earlier fixed-budget grid (100 epochs per-sample, 300 in mini-batches of 8, every rule,
# orthogonalization too): --quick is a tiny corner of it and --full widens it (hours).
BUDGET = dict(
    DEFAULT,
    activations=list(ACTIVATIONS),
    depths=[3],
    kappas=[0.0, 0.1, 0.2, 0.5, 1.0],
    variants=["exact", "first_order"],
    ortho=[False, True],
    modes=list(MODES),
    etas_sample=[0.005, 0.02, 0.05],
    epochs_sample=100,
)
QUICK = dict(
    BUDGET,
    tasks=["sin"],
    activations=["tanh"],
    widths=[16],
    depths=[2],
    kappas=[0.0, 0.2],
    eps=[0.1],
    etas_sample=[0.05],
    etas_batch=[0.2],
    epochs_sample=20,
    epochs_batch=40,
    seeds=2,
    points=16,
)
FULL = dict(
    BUDGET,
    widths=[20, 50],
    depths=[2, 4],
    etas_sample=[0.002, 0.005, 0.01, 0.02, 0.05],
    etas_batch=[0.01, 0.02, 0.05, 0.1, 0.2],
    ortho_kappas=[0.0, 0.1, 0.2, 0.5, 1.0],
    eps=[1e-3, 1e-2, 0.1, 1.0],
    seeds=10,
)


# --- the grid ---------------------------------------------------------------------------------
def grid(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of the study. Per-sample SGD does not get orthogonalization (a batch of one is
    left unchanged by it); mini-batch SGD gets it with the κ of ``ortho_kappas`` and every ε of
    ``eps``; κ = 0 has no variant."""
    kappas = [(0.0, "-")] + [(k, v) for k in cfg["kappas"] if k for v in cfg["variants"]]
    rules = [(k, v, False, "-") for k, v in kappas]
    rules += [(k, v, True, e) for k, v in kappas if k in cfg["ortho_kappas"] for e in cfg["eps"]]
    runs = []
    for task, act, width, depth, mode in itertools.product(
        cfg["tasks"], cfg["activations"], cfg["widths"], cfg["depths"], cfg["modes"]
    ):
        etas = cfg["etas_sample"] if mode == "sample" else cfg["etas_batch"]
        modes_rules = [
            r for r in rules if (r[2] in cfg["ortho"]) and not (mode == "sample" and r[2])
        ]
        for eta, (kappa, variant, ortho, eps), s in itertools.product(
            etas, modes_rules, cfg["seeds"]
        ):
            runs.append(
                dict(
                    task=task,
                    activation=act,
                    width=width,
                    depth=depth,
                    mode=mode,
                    eta=eta,
                    kappa=kappa,
                    variant=variant,
                    ortho=ortho,
                    seed=cfg["seed"],
                    seed_index=s,
                    batch=cfg["batch"],
                    points=cfg["points"],
                    eps=eps,
                    epochs=cfg["epochs_sample"] if mode == "sample" else cfg["epochs_batch"],
                )
            )
    return runs


# --- command line -----------------------------------------------------------------------------
LISTS: dict[str, Callable[[str], Any]] = dict(
    tasks=str, activations=str, widths=positive_int, depths=positive_int,
    kappas=nonnegative_float, variants=str, modes=str, etas_sample=positive_float,
    etas_batch=positive_float, ortho_kappas=nonnegative_float, eps=positive_float,
)  # fmt: skip
COUNTS = ("batch", "points", "epochs_sample", "epochs_batch")
CHOICES = dict(tasks=TASKS, activations=ACTIVATIONS, modes=MODES,
               variants=("exact", "first_order"))  # fmt: skip
ORTHO = {"both": [False, True], "off": [False], "on": [True]}


def preset_help(name: str) -> str:
    """ "default X" for a flag, with its value under --quick and --full where it differs."""
    words = [f"default {' '.join(map(str, v)) if isinstance(v := DEFAULT[name], list) else v}"]
    for flag, preset in (("--quick", QUICK), ("--full", FULL)):
        if preset[name] != DEFAULT[name]:
            v = preset[name]
            words.append(f"{' '.join(map(str, v)) if isinstance(v, list) else v} with {flag}")
    return "; ".join(words)


def parser() -> Any:
    p = study_parser("compensation", __doc__, out="runs/compensation",
                     quick="a tiny grid (seconds)")  # fmt: skip
    p.add_argument("--full", action="store_true",
                   help="the earlier fixed-budget grid widened: every rule, both modes, ReLU "
                        "too, 100 / 300 epochs (hours on 2 cores)")  # fmt: skip
    for name, kind in LISTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, nargs="+",
                       choices=CHOICES.get(name), help=preset_help(name))  # fmt: skip
    p.add_argument("--ortho", choices=list(ORTHO),
                   help="orthogonalization (mini-batch only): default off; both with --quick "
                        "and --full")  # fmt: skip
    for name in COUNTS:
        p.add_argument(f"--{name.replace('_', '-')}", type=positive_int,
                       help=preset_help(name))  # fmt: skip
    add_sweep_flags(p, seeds="0-4")
    p.set_defaults(seeds=None)  # the preset's seeds unless given
    for action in p._actions:
        if action.dest == "seeds":
            action.help = "run i uses the seeds (--seed, i): a range or a list (default 0-4; "
            action.help += "0-1 with --quick, 0-9 with --full)"
    return p


def config(args: Any) -> dict[str, Any]:
    """The grid of ``args``: the preset (--quick, --full or the default) with every flag given
    overriding it. The flags are set to the values used, so config.json states all of them."""
    cfg: dict[str, Any] = dict(QUICK if args.quick else FULL if args.full else DEFAULT)
    cfg["seeds"] = list(range(cfg["seeds"]))
    cfg["ortho"] = next(k for k, v in ORTHO.items() if v == cfg["ortho"])
    for name in cfg:
        if getattr(args, name, None) is not None:
            cfg[name] = getattr(args, name)
        setattr(args, name, cfg[name])
    return {**cfg, "ortho": ORTHO[cfg["ortho"]]}


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = parse(p, argv)
    if args.quick and args.full:
        p.error("choose --quick or --full, not both")
    cfg = config(args)
    if cfg["points"] < 4:  # (sin·cos rounds it to a √points × √points grid)
        p.error(f"--points must be ≥ 4 (a 2 × 2 grid for sincos), got {cfg['points']}")
    specs = grid(cfg)
    start = time.perf_counter()
    with study_sweep(p.prog, run_one, specs, args, desc="compensation") as (out, runs):
        wall = time.perf_counter() - start
        results = [{**r["spec"], **{k: v for k, v in r.items() if k != "spec"}} for r in runs]
        cfg["command"] = "tinyvec compensation " + " ".join(sys.argv[1:] if argv is None else argv)
        cfg["workers"] = (f"the Dask cluster {args.dask}" if args.dask else
                          f"{args.jobs} worker process(es)")  # fmt: skip
        write_outputs(out, cfg, results, wall, None if args.no_plots else figure_kw(args))
    print(f"{len(specs)} runs in {wall / 60:.1f} min; results in {args.out}/results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
