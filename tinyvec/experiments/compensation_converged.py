"""Compensation at convergence, on enough seeds (issue 24): κ against plain backprop on the
cells a verdict rests on, each run trained until a stated convergence criterion is met.

``python -m tinyvec.experiments.compensation_converged [--cells sin:0.01 runge:0.05 ...]
[--seeds 0-19] [--max-epochs 10000] [--quick] [--out DIR] [--jobs N] [--stack E]``

The default cells: the committed compensation grid (sin, Runge, sin·cos; η = 0.01 … 0.2) and
sin at η = 0.005, 20 seeds, at most 10 000 epochs.

Every run is the compensation study's run (`tinyvec.experiments.compensation`: the same task,
network, initial weights and data order for the same ``(--seed, seed index)``; per-sample SGD
on 24 points), with a different stopping rule: it trains at least ``min_epochs`` epochs, then
checks every ``window`` epochs the relative change of the windowed training MSE
(`tinyvec.analysis.convergence.Criterion`) and stops when it is below ``tol``, or at
``max_epochs``, where it is reported **not converged**. The run's error is the mean training
MSE over its last window. With ``min_epochs`` = 2000 every run also gives the committed
fixed-budget error (the mean over epochs 1801–2000, ``fixed``), so both are reported from the
same runs.

The comparison of a cell (`tinyvec.analysis.convergence.paired_comparison`): per seed the
ratio of κ's error to its plain twin's, both floored at ``floor · var(y)`` (errors below count
as interpolation and tie); the median ratio with a seeded percentile-bootstrap interval, the
ratio of medians, per-seed wins / losses / ties, divergences, and the converged fraction of
each method.

``--activation relu`` runs the same grid with ReLU (Kaiming-normal weights, as the compensation
study); ``--memory M`` compares orthogonalization over time
(`tinyvec.deltarules.OrthogonalizationOverTime` (M, ``--eps``), κ = 0) with plain backprop in
place of κ (the legacy table docs/results/orthogonalization/over-time.md: M = 4, ε = 1e-3,
``--depth 3``).

Runs that share a stack key (the compensation study's `stack_key`: plain runs apart from κ
runs) train as one stack of models (``--stack``, default 32; `train_stack`): a member that
meets the criterion or diverges leaves the stack, and every run's line is bit for bit that of
its run alone (``--stack 1``).

Files in ``--out``: ``runs.jsonl`` (the sweep runner's, resumable), ``config.json``,
``results.md``, ``results.json``.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np

import tinyvec as tv
from tinyvec.analysis.convergence import (
    Criterion,
    outcome,
    train_to_convergence,
)
from tinyvec.deltarules import OrthogonalizationOverTime

from .common import add_sweep_flags, parse, study_parser, study_sweep
from .compensation_converged_report import at_best_eta, parse_cell, report, summarise
from .compensation_runs import (
    ACTIVATIONS,
    DIVERGED,
    TASKS,
    delta_rules,
    mlp,
    stack_key,
    task_data,
    train_stack,
)
from .flags import nonnegative_float, positive_float, positive_int, seeds_name
from .sweep import stackable
from .tables import atomic_write, write_json

# the committed compensation grid (docs/results/compensation/config.json: three tasks, five η)
# and the η = 0.005 of the fixed-budget verdict on sin
GRID_ETAS = (0.01, 0.02, 0.05, 0.1, 0.2)
DEFAULT: dict[str, Any] = dict(
    cells=[f"{t}:{eta:g}" for t in TASKS for eta in GRID_ETAS] + ["sin:0.005"],
    activation="tanh", width=32, depth=2, kappa=0.2, variant="exact", points=24, tol=0.01,
    window=200, min_epochs=2000, max_epochs=10000, fixed_epochs=2000, floor=1e-6, seeds="0-19",
    memory=0, eps=1e-3,
)  # fmt: skip
QUICK: dict[str, Any] = dict(
    DEFAULT, cells=["sin:0.05"], width=16, points=16, window=10, min_epochs=40, max_epochs=80,
    fixed_epochs=40, seeds="0-2",
)  # fmt: skip


def criterion(spec: dict[str, Any]) -> Criterion:
    """The stopping rule of a run."""
    return Criterion(spec["tol"], spec["window"], spec["min_epochs"], spec["max_epochs"])


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one network until the criterion of ``spec`` is met (a sweep function); returns
    its error, whether it converged or diverged, its epochs, the fixed-budget error and a
    thinned curve (every 10th epoch)."""
    start = time.perf_counter()
    x, y, _, _ = task_data(spec["task"], spec["points"])
    rng = np.random.default_rng([spec["seed"], spec["seed_index"]])
    model = mlp(x.shape[0], spec["width"], spec["depth"], spec["activation"], rng)
    rules = delta_rules(spec["kappa"], spec["variant"], False, 0.0) + over_time([spec])
    state = tv.setup(tv.Descent(spec["eta"]), model, delta=rules or None)
    n = x.shape[1]

    def epoch() -> float:
        order = rng.permutation(n)
        with np.errstate(all="ignore"):
            for s in order:
                xb, yb = x[:, s : s + 1], y[:, s : s + 1]
                loss, grads = tv.withgradient(lambda m: tv.mse(m(xb), yb), model)
                if not float(loss) < DIVERGED:
                    return math.nan
                tv.update(state, model, grads)
            return float(np.mean((model(x) - y) ** 2))

    r = train_to_convergence(epoch, criterion(spec))
    return {**result(spec, r, float(np.var(y))), "seconds": time.perf_counter() - start}


def result(spec: dict[str, Any], r: dict[str, Any], var_y: float) -> dict[str, Any]:
    """A run's line from its `train_to_convergence` record ``r``: the fixed-budget error
    (the mean over the last tenth of ``fixed_epochs``; NaN when the run stopped before) and
    the curve thinned to every 10th epoch in place of the curve."""
    r = dict(r)
    curve, fixed_n = r.pop("curve"), spec["fixed_epochs"]
    tail = max(1, fixed_n // 10)
    fixed = (float(np.mean(curve[fixed_n - tail : fixed_n])) if len(curve) >= fixed_n
             else math.nan)  # fmt: skip
    return {**r, "fixed": fixed, "var_y": var_y, "curve10": curve[::10]}


def over_time(specs: list[dict[str, Any]]) -> list[Any]:
    """``[OrthogonalizationOverTime(M, ε)]`` for runs whose spec names a ``memory`` M (one
    ε per member for a stack of several), else none."""
    if "memory" not in specs[0]:
        return []
    eps: Any = specs[0]["eps"] if len(specs) == 1 else [s["eps"] for s in specs]
    return [OrthogonalizationOverTime(specs[0]["memory"], eps)]


# per-sample SGD without in-batch orthogonalization: the compensation study's run in these fields
SAMPLE_RUN = {"mode": "sample", "batch": 1, "ortho": False, "eps": 0.0}


def run_stack(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`run_one` of every spec (one `stack_key`), trained as one stack of models
    (`tinyvec.experiments.compensation_runs.train_stack`): a member that meets the criterion or
    diverges leaves the stack, and every result is `run_one`'s."""
    start = time.perf_counter()
    rule = criterion(specs[0])
    members = train_stack([{**s, **SAMPLE_RUN} for s in specs], rule.max_epochs, rule.stops,
                          over_time(specs) or None)  # fmt: skip
    _, y, _, _ = task_data(specs[0]["task"], specs[0]["points"])
    results = [result(s, outcome(m["curve"], m["diverged"], rule), float(np.var(y)))
               for s, m in zip(specs, members, strict=True)]  # fmt: skip
    seconds = (time.perf_counter() - start) / len(specs)  # (a stack's time, shared)
    return [{**r, "seconds": seconds} for r in results]


stackable(run_one, run_stack, stack_key)


def grid(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Per cell and seed, the plain run (κ = 0) and the rule's run: κ, or with ``memory`` > 0
    orthogonalization over time (`OrthogonalizationOverTime(memory, eps)`, κ = 0)."""
    keys = ("activation", "width", "depth", "variant", "points", "tol", "window", "min_epochs",
            "max_epochs", "fixed_epochs")  # fmt: skip
    specs = []
    for cell in cfg["cells"]:
        task, eta = parse_cell(cell)
        for s in cfg["seed_list"]:
            for rule in (False, True):
                kappa = cfg["kappa"] if rule and not cfg["memory"] else 0.0
                specs.append({"task": task, "eta": eta, "kappa": kappa, "seed": cfg["seed"],
                              "seed_index": s, **{k: cfg[k] for k in keys}})  # fmt: skip
                if rule and cfg["memory"]:
                    specs[-1].update(memory=cfg["memory"], eps=cfg["eps"])
    return specs


def parser() -> Any:
    p = study_parser("python -m tinyvec.experiments.compensation_converged",
                     __doc__.split("\n\n")[0], out="runs/compensation-converged",
                     quick="a tiny grid (seconds)")  # fmt: skip
    p.add_argument(
        "--cells",
        nargs="+",
        help="TASK:ETA cells (default: the committed grid, sin runge sincos at η "
        f"{' '.join(map(str, GRID_ETAS))}, and sin:0.005)",
    )
    p.add_argument("--activation", choices=ACTIVATIONS, help="of the hidden layers (tanh)")
    p.add_argument("--kappa", type=positive_float, help="κ of the compensated runs (0.2)")
    for name in ("width", "depth", "points", "window", "min_epochs", "max_epochs",
                 "fixed_epochs"):  # fmt: skip
        p.add_argument(f"--{name.replace('_', '-')}", type=positive_int,
                       help=f"default {DEFAULT[name]}")  # fmt: skip
    p.add_argument(
        "--memory",
        type=positive_int,
        help="compare OrthogonalizationOverTime(memory, --eps) with plain in place of κ",
    )
    p.add_argument("--eps", type=positive_float, help="ε of --memory (1e-3)")
    p.add_argument("--tol", type=positive_float, help="relative change per window (0.01)")
    p.add_argument("--floor", type=nonnegative_float, help="error floor / var(y) (1e-6)")
    add_sweep_flags(p, seeds="0-19")
    p.set_defaults(seeds=None)
    return p


def config(args: Any) -> dict[str, Any]:
    """The preset (--quick or the default) with every flag given overriding it; the flags are
    set to the values used, so config.json states all of them."""
    cfg = dict(QUICK if args.quick else DEFAULT)
    for name in cfg:
        if name != "seeds" and getattr(args, name, None) is not None:
            cfg[name] = getattr(args, name)
        if name not in ("seeds", "variant"):
            setattr(args, name, cfg[name])
    if args.seeds is None:
        from .flags import seed_list

        args.seeds = seed_list(cfg["seeds"])
    for cell in cfg["cells"]:
        parse_cell(cell)
    criterion(cfg)
    return {**cfg, "seeds": seeds_name(args.seeds), "seed_list": list(args.seeds),
            "seed": args.seed}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = parse(p, argv)
    try:
        cfg = config(args)
    except ValueError as e:
        p.error(str(e))
    specs = grid(cfg)
    start = time.perf_counter()
    cfg["command"] = "python -m tinyvec.experiments.compensation_converged " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    with study_sweep(p.prog, run_one, specs, args, desc="compensation at convergence") as (
        out,
        runs,
    ):
        wall = time.perf_counter() - start
        rows, best = summarise(cfg, runs), at_best_eta(cfg, runs)
        write_json(out / "results.json", {"config": cfg, "cells": rows, "best_eta": best})
        cpu = sum(r["seconds"] for r in runs)
        atomic_write(out / "results.md", report(cfg, rows, best, wall, cpu))
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
