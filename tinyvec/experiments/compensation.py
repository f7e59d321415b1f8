"""The compensation study (seed 004): does rewriting δ^k cut the error of function
approximation, and does orthogonalizing the activation vectors help?

``tinyvec compensation [--quick | --full] [--out DIR] [--jobs N | --dask ADDRESS]`` trains
small MLPs on sin(πx), Runge's 1/(1+25x²) and sin(x₁)cos(x₂), for every combination of the
grid below and several seeds, as a sweep (`tinyvec.experiments.sweep`: each run is kept in
``runs.jsonl`` as it finishes, and the same command resumes), and writes to ``--out``:

- ``results.md``: the verdict in numbers, each rule against plain backprop at the same η and
  at its own best η (with divergence counts and the spread over seeds), and every cell;
- ``results.csv``: one row per cell (everything but the seed): mean, std, median and IQR of
  the error, the ratio to plain backprop, the stagnation and divergence shares;
- ``runs.csv``: one row per run; ``config.json``: the flags, to rerun with ``--config``;
- ``curves_<task>_<activation>_<mode>.png``: learning curves, a panel per η and rule group;
  ``eta_<activation>_<mode>.png``: the error against η, every seed.

Definitions (ours; the seed gives none):

- error: the mean training-set MSE over the last tenth of the epochs (``tail``; SGD with a
  constant step keeps jittering, so one epoch's MSE is noisy), measured after enough epochs
  to converge (2000 on 24 points); ``final`` is the MSE after the last epoch and ``eval_mse``
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

import csv
import itertools
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import tinyvec as tv
from tinyvec.deltarules import Compensation, Orthogonalization

from .common import (
    add_sweep_flags,
    figure_kw,
    nonnegative_float,
    parse,
    positive_float,
    positive_int,
    study_parser,
    study_sweep,
)
from .tables import atomic_write

TASKS = ("sin", "runge", "sincos")
ACTIVATIONS = ("tanh", "relu")
MODES = ("sample", "batch")  # per-sample SGD, mini-batch SGD

DEFAULT = dict(
    tasks=list(TASKS),
    activations=list(ACTIVATIONS),
    widths=[32],
    depths=[3],
    kappas=[0.0, 0.1, 0.2, 0.5, 1.0],
    variants=["exact", "first_order"],
    ortho=[False, True],
    ortho_kappas=[0.0, 0.2],
    eps=[1e-3, 0.1],
    modes=list(MODES),
    etas_sample=[0.005, 0.02, 0.05],
    etas_batch=[0.02, 0.05, 0.1],
    batch=8,
    points=24,
    epochs_sample=100,
    epochs_batch=300,
    seeds=5,
    seed=0,
)
QUICK = dict(
    DEFAULT,
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
    DEFAULT,
    widths=[20, 50],
    depths=[2, 4],
    etas_sample=[0.002, 0.005, 0.01, 0.02, 0.05],
    etas_batch=[0.01, 0.02, 0.05, 0.1, 0.2],
    ortho_kappas=[0.0, 0.1, 0.2, 0.5, 1.0],
    eps=[1e-3, 1e-2, 0.1, 1.0],
    seeds=10,
)

STAGNATION_GAIN, STAGNATION_TARGET, DIVERGED = 0.05, 1e-3, 1e6


# --- data and model ---------------------------------------------------------------------------
def task_data(task: str, points: int) -> tuple[np.ndarray, ...]:
    """(x, y, x_eval, y_eval), features × samples: ``points`` equispaced training inputs on
    [-1, 1] (sin(πx), Runge) or a √points × √points grid on [-2, 2]² (sin(x₁)cos(x₂)), and a
    dense evaluation grid on the same domain."""
    if task in ("sin", "runge"):
        f = (lambda x: np.sin(np.pi * x)) if task == "sin" else (lambda x: 1 / (1 + 25 * x * x))
        x, xe = np.linspace(-1, 1, points)[None, :], np.linspace(-1, 1, 401)[None, :]
        return x, f(x), xe, f(xe)
    if task == "sincos":
        side = max(2, round(math.sqrt(points)))
        grid = lambda n: np.stack(  # noqa: E731
            [a.ravel() for a in np.meshgrid(np.linspace(-2, 2, n), np.linspace(-2, 2, n))]
        )
        x, xe = grid(side), grid(41)
        f = lambda x: (np.sin(x[0]) * np.cos(x[1]))[None, :]  # noqa: E731
        return x, f(x), xe, f(xe)
    raise ValueError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")


def mlp(inputs: int, width: int, depth: int, activation: str, rng: np.random.Generator) -> Any:
    """``depth`` hidden Dense layers of ``width`` units and a linear output: Glorot-uniform
    weights for tanh, Kaiming-normal for ReLU, biases 0."""
    init = tv.kaiming_normal if activation == "relu" else tv.glorot_uniform
    sizes = [inputs] + [width] * depth
    hidden = [tv.Dense(a, b, activation, init=init, rng=rng) for a, b in itertools.pairwise(sizes)]
    return tv.Chain(*hidden, tv.Dense(width, 1, rng=rng))


def delta_rules(kappa: float, variant: str, ortho: bool, eps: float) -> list[Any]:
    rules: list[Any] = [Compensation(kappa, variant)] if kappa else []
    return [*rules, Orthogonalization(eps)] if ortho else rules


# --- one run ----------------------------------------------------------------------------------
def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one network as ``spec`` says; return its errors, flags and curve (a
    `tinyvec.experiments.sweep` function)."""
    start = time.perf_counter()
    x, y, xe, ye = task_data(spec["task"], spec["points"])
    rng = np.random.default_rng([spec["seed"], spec["seed_index"]])
    model = mlp(x.shape[0], spec["width"], spec["depth"], spec["activation"], rng)
    rules = delta_rules(spec["kappa"], spec["variant"], spec["ortho"], spec["eps"])
    state = tv.setup(tv.Descent(spec["eta"]), model, delta=rules or None)
    n, B = x.shape[1], 1 if spec["mode"] == "sample" else spec["batch"]
    curve, diverged = [], False
    with np.errstate(all="ignore"):  # a diverging run is detected below, not by warnings
        for _ in range(spec["epochs"]):
            order = rng.permutation(n)
            for s in range(0, n, B):
                xb, yb = x[:, order[s : s + B]], y[:, order[s : s + B]]
                loss, grads = tv.withgradient(lambda m: tv.mse(m(xb), yb), model)
                if not float(loss) < DIVERGED:
                    diverged = True
                    break
                tv.update(state, model, grads)
            if diverged:
                break
            curve.append(float(np.mean((model(x) - y) ** 2)))
    final = math.nan if diverged else curve[-1]
    # at convergence: the mean over the last tenth of the epochs smooths SGD's jitter
    tail = math.nan if diverged else float(np.mean(curve[-max(1, len(curve) // 10) :]))
    eval_mse = math.nan if diverged else float(np.mean((model(xe) - ye) ** 2))
    return dict(
        final=final,
        tail=tail,
        eval_mse=eval_mse,
        diverged=diverged,
        stagnated=stagnated(curve, float(np.var(y))) if not diverged else False,
        seconds=time.perf_counter() - start,
        curve=curve + [math.nan] * (spec["epochs"] - len(curve)),
    )


def stagnated(curve: list[float], var_y: float) -> bool:
    """Less than 5% improvement of the median training MSE from the tenth of the epochs that
    ends at 75% to the last tenth, while the final MSE is above 1e-3·var(y).

    >>> stagnated([1.0] * 20, 1.0), stagnated(list(np.geomspace(1, 1e-2, 20)), 1.0)
    (True, False)
    """
    E = len(curve)
    tenth = max(1, E // 10)
    before = np.median(curve[max(0, 3 * E // 4 - tenth) : max(1, 3 * E // 4)])
    last = np.median(curve[E - tenth :])
    return bool(curve[-1] > STAGNATION_TARGET * var_y and last > (1 - STAGNATION_GAIN) * before)


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


CELL = ("task", "activation", "width", "depth", "mode", "eta", "kappa", "variant", "ortho", "eps")
BASE = ("task", "activation", "width", "depth", "mode", "eta")


def _base(run: dict[str, Any]) -> tuple:
    """What identifies a run's plain-backprop twin."""
    return (*(run[k] for k in BASE), run["seed_index"])


def paired_ratios(results: list[dict[str, Any]]) -> None:
    """Set ``ratio`` on every run: its error / that of its plain twin (NaN when either
    diverged)."""
    plain = {_base(r): r["tail"] for r in results if r["kappa"] == 0 and not r["ortho"]}
    for r in results:
        p = plain.get(_base(r), math.nan)
        r["ratio"] = r["tail"] / p if p > 0 else math.nan  # NaN stays NaN


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell: statistics of the error over seeds, the ratio of the mean
    error to plain backprop's (over the seeds where neither diverged: the claim's measure) and
    the median of the per-seed ratios."""
    paired_ratios(results)
    plain = {_base(r): r["tail"] for r in results if r["kappa"] == 0 and not r["ortho"]}
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        cells.setdefault(tuple(r[k] for k in CELL), []).append(r)
    rows = []
    for key, runs in cells.items():
        ok = np.array([r["tail"] for r in runs if not r["diverged"]])
        pairs = [(r["tail"], plain[_base(r)]) for r in runs if math.isfinite(r["ratio"])]
        ratios = [r["ratio"] for r in runs if math.isfinite(r["ratio"])]
        q25, med, q75 = np.percentile(ok, [25, 50, 75]) if len(ok) else (math.nan,) * 3
        rows.append(
            dict(
                zip(CELL, key, strict=True),
                runs=len(runs),
                mean=float(np.mean(ok)) if len(ok) else math.nan,
                std=float(np.std(ok)) if len(ok) else math.nan,
                median=float(med),
                q25=float(q25),
                q75=float(q75),
                eval_mean=float(np.mean([r["eval_mse"] for r in runs if not r["diverged"]]))
                if len(ok)
                else math.nan,
                mean_ratio=float(np.mean([a for a, _ in pairs]) / np.mean([b for _, b in pairs]))
                if pairs
                else math.nan,
                median_ratio=float(np.median(ratios)) if ratios else math.nan,
                wins=sum(q < 1 for q in ratios) / len(ratios) if ratios else math.nan,
                stagnated=sum(r["stagnated"] for r in runs) / len(runs),
                diverged=sum(r["diverged"] for r in runs) / len(runs),
            )
        )
    return rows


# --- output -----------------------------------------------------------------------------------
def label(row: dict[str, Any]) -> str:
    name = "plain" if row["kappa"] == 0 else f"κ={row['kappa']:g} {row['variant']}"
    return name + (f" + ortho ε={row['eps']:g}" if row["ortho"] else "")


def write_outputs(
    out: Path, cfg: dict[str, Any], results: list[dict[str, Any]], wall: float,
    figures: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """results.csv, runs.csv, the figures (unless ``figures`` is None: format and dpi) and
    results.md of the runs ``results`` (each its spec and its results in one dict)."""
    rows = summarise(results)
    fields = [
        *CELL,
        "runs",
        "mean",
        "std",
        "median",
        "q25",
        "q75",
        "eval_mean",
        "mean_ratio",
        "median_ratio",
        "wins",
        "stagnated",
        "diverged",
    ]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    run_fields = [
        *CELL,
        "seed",
        "seed_index",
        "epochs",
        "final",
        "tail",
        "eval_mse",
        "ratio",
        "diverged",
        "stagnated",
        "seconds",
    ]
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=run_fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    plots = write_curves(out, results, figures) if figures is not None else []
    atomic_write(out / "results.md", markdown(cfg, rows, results, wall, plots))


def panel(r: dict[str, Any]) -> str:
    """The panel of a run's learning curve: its κ variant, or orthogonalization and its ε
    (plain backprop is drawn in every panel, as the reference)."""
    if r["ortho"]:
        return f"orthogonalization, ε = {r['eps']:g}"
    return "κ, exact ΔO" if r["variant"] == "exact" else "κ, first-order ΔO"


def write_curves(out: Path, results: list[dict[str, Any]], figures: dict[str, Any]) -> list[str]:
    """A figure per task, activation and mode: a panel per step size and κ variant or
    orthogonalization ε, with plain backprop in each, at most six lines per panel."""
    from ..plots.compensation import MAX_LINES, learning_curves

    names = []
    for task, act, mode in sorted({(r["task"], r["activation"], r["mode"]) for r in results}):
        sel = [r for r in results if (r["task"], r["activation"], r["mode"]) == (task, act, mode)]
        shown = [r for r in sel if r["width"] == sel[0]["width"] and r["depth"] == sel[0]["depth"]]
        panels: dict[str, dict[str, np.ndarray]] = {}
        for eta in sorted({r["eta"] for r in shown}):
            at = [r for r in shown if r["eta"] == eta]
            plain = [r["curve"] for r in at if r["kappa"] == 0 and not r["ortho"]]
            groups: dict[str, dict[str, list[list[float]]]] = {}
            for r in sorted(
                at, key=lambda r: (r["ortho"], str(r["eps"]), r["kappa"], r["variant"])
            ):
                if r["kappa"] or r["ortho"]:
                    groups.setdefault(panel(r), {}).setdefault(label(r), []).append(r["curve"])
            for name, curves in (groups or {"plain backprop": {}}).items():
                items = list(curves.items())
                step = MAX_LINES - 1
                chunks = [items[i : i + step] for i in range(0, len(items), step)] or [[]]
                for i, chunk in enumerate(chunks):
                    part = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
                    panels[f"{name}, η = {eta:g}{part}"] = {
                        "plain": np.array(plain),
                        **{k: np.array(v) for k, v in chunk},
                    }
        title = (f"{task}, {act} {sel[0]['width']}×{sel[0]['depth']}, "
                 f"{'per-sample' if mode == 'sample' else 'mini-batch'} SGD")  # fmt: skip
        path = learning_curves(panels, out / f"curves_{task}_{act}_{mode}", title, **figures)
        names.append(path.name)
    names += write_eta_figures(out, results, figures)
    return names


def write_eta_figures(
    out: Path, results: list[dict[str, Any]], figures: dict[str, Any]
) -> list[str]:
    """A figure per activation, network and mode with two step sizes or more: the error at
    convergence against η, a panel per task (rules without orthogonalization)."""
    from ..plots.compensation import MAX_LINES, error_vs_eta

    names = []
    for act, width, depth, mode in sorted({(r["activation"], r["width"], r["depth"], r["mode"])
                                           for r in results}):  # fmt: skip
        sel = [r for r in results if (r["activation"], r["width"], r["depth"], r["mode"])
               == (act, width, depth, mode) and not r["ortho"]]  # fmt: skip
        if len({r["eta"] for r in sel}) < 2:
            continue
        panels: dict[str, dict[str, dict[float, list[float]]]] = {}
        for task in sorted({r["task"] for r in sel}):
            rules: dict[str, dict[float, list[float]]] = {}
            for r in sorted(sel, key=lambda r: (r["kappa"], r["variant"], r["seed_index"])):
                if r["task"] == task:
                    rules.setdefault(label(r), {}).setdefault(r["eta"], []).append(r["tail"])
            items = list(rules.items())
            for i in range(0, len(items), MAX_LINES):
                panels[task + (f" ({i // MAX_LINES + 1})" if len(items) > MAX_LINES else "")] = (
                    dict(items[i : i + MAX_LINES])
                )
        title = (f"error at convergence against the step size: {act} {width}×{depth}, "
                 f"{'per-sample' if mode == 'sample' else 'mini-batch'} SGD\n(lines: median "
                 "over seeds; dots: seeds; rings: some seed diverged)")  # fmt: skip
        path = error_vs_eta(panels, out / f"eta_{act}_{mode}", title, **figures)
        names.append(path.name)
    return names


def _fmt(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.3g}"


def markdown(
    cfg: dict[str, Any],
    rows: list[dict[str, Any]],
    results: list[dict[str, Any]],
    wall: float,
    plots: list[str],
) -> str:
    lines = [
        "# Compensation study (seed 004)",
        "",
        f"Command: `{cfg['command']}`  ",
        f"{len(results)} runs, {sum(r['seconds'] for r in results) / 60:.1f} CPU-minutes of "
        f"training (last invocation: {wall / 60:.1f} min wall on {cfg['workers']}); "
        f"tinyvec {tv.__version__}, NumPy {np.__version__}, Python {platform.python_version()}.",
        "",
        "Claim (seed 004): with a compensation coefficient κ ≈ 0.2, ReLU and tanh networks improve, "
        "tanh most — mean error at convergence ≈ 1/10 of plain backprop — and stagnate less.",
        "",
        "Definitions: *error* = mean training MSE over the last tenth of the epochs (of "
        f"{cfg['epochs_sample']} epochs per-sample, {cfg['epochs_batch']} epochs in mini-batches "
        f"of {cfg['batch']}); *plain twin* = plain backprop (κ = 0, no orthogonalization) with "
        "the same task, network, initial weights, data order, mode and step size; *ratio of "
        "means* = mean error / mean error of the plain twins, over the seeds where "
        "neither diverged (the claim's measure; < 1 is better, 0.1 is the claim); *per-seed "
        "ratio* = error / the plain twin's; *wins* = share of seeds with a per-seed ratio "
        "< 1; *stagnated* = not diverged, final MSE > 1e-3·var(y) and less than 5% improvement "
        "of the median training MSE from the tenth of the epochs ending at 75% to the last tenth; "
        "*diverged* = loss above 1e6 or not finite (such runs have no error).",
        "",
    ]
    lines += ["## Verdict, in numbers", "",
              "Error of each rule relative to plain backprop (ratio of means over the seeds; "
              "the claim is 10× lower):", "", *verdict(results), ""]  # fmt: skip
    lines += convergence(results)
    lines += [
        "",
        "## Ratio to plain backprop at the same η (pooled over tasks and step sizes)",
        "",
    ]
    lines += overview(rows, results)
    lines += [
        "",
        "## Every cell",
        "",
        "| task | σ | mode | η | rule | mean ± std | median [IQR] | ratio of means | "
        "per-seed ratio (median) | wins | stagnated | diverged |",
        "|" + "---|" * 12,
    ]
    for r in sorted(
        rows,
        key=lambda r: (
            r["task"],
            r["activation"],
            r["mode"],
            r["eta"],
            r["width"],
            r["depth"],
            r["ortho"],
            str(r["eps"]),
            r["kappa"],
            r["variant"],
        ),
    ):
        lines.append(
            f"| {r['task']} | {r['activation']} {r['width']}×{r['depth']} | {r['mode']} | "
            f"{r['eta']:g} | {label(r)} | {_fmt(r['mean'])} ± {_fmt(r['std'])} | "
            f"{_fmt(r['median'])} [{_fmt(r['q25'])}, {_fmt(r['q75'])}] | {_fmt(r['mean_ratio'])} | "
            f"{_fmt(r['median_ratio'])} | {_fmt(r['wins'])} | {r['stagnated']:.2f} | {r['diverged']:.2f} |"
        )
    lines += ["", "## Learning curves", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _mean_std(values: list[float]) -> str:
    ok = [v for v in values if math.isfinite(v)]
    return f"{np.mean(ok):.3g} ± {np.std(ok):.2g}" if ok else "–"


def _spread(values: list[float]) -> str:
    ok = [v for v in values if math.isfinite(v)]
    if not ok:
        return "–"
    return f"{np.median(ok):.3g} [{min(ok):.3g}, {max(ok):.3g}]"


def best_eta(runs: list[dict[str, Any]]) -> float:
    """The step size with the lowest mean error over the seeds, among those at which no seed
    diverged (all of them if every step size lost a seed).

    >>> r = lambda eta, tail: dict(eta=eta, tail=tail, diverged=not math.isfinite(tail))
    >>> best_eta([r(0.1, 1.0), r(0.2, 0.5), r(0.2, math.nan), r(0.05, 2.0)])
    0.1
    """
    by_eta: dict[float, list[dict[str, Any]]] = {}
    for r in runs:
        by_eta.setdefault(r["eta"], []).append(r)
    stable = {e: rs for e, rs in by_eta.items() if not any(r["diverged"] for r in rs)} or by_eta

    def mean(rs: list[dict[str, Any]]) -> float:
        ok = [r["tail"] for r in rs if not r["diverged"]]
        return float(np.mean(ok)) if ok else math.inf

    return min(stable, key=lambda e: (mean(stable[e]), e))


def convergence(results: list[dict[str, Any]]) -> list[str]:
    """The two comparisons side by side, per task, activation, network and mode: each rule
    against plain backprop at the same η, and each at its own best η; with the divergence
    rate and the spread over seeds."""
    out = ["## At convergence: the same η, and each rule at its best η", ""]
    setups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        setups.setdefault(tuple(r[k] for k in BASE[:5]), []).append(r)
    verdict: list[str] = []
    for setup, runs in sorted(setups.items()):
        rules: dict[str, list[dict[str, Any]]] = {}
        for r in sorted(runs, key=lambda r: (r["ortho"], str(r["eps"]), r["kappa"], r["variant"])):
            rules.setdefault(label(r), []).append(r)
        plain = rules.pop("plain", [])
        if not plain or not rules:
            continue
        task, act, width, depth, mode = setup
        out += [f"### {task}, {act} {width}×{depth}, {mode}", ""]
        etas = sorted({r["eta"] for r in runs})
        out += ["At the same η (ratios against the plain twin: same seed, same η):", "",
                "| η | rule | error (mean ± std) | diverged | ratio of means | per-seed ratio "
                "median [min, max] |", "|---|---|---|---|---|---|"]  # fmt: skip
        for eta in etas:
            p = [r for r in plain if r["eta"] == eta]
            out.append(f"| {eta:g} | plain | {_mean_std([r['tail'] for r in p])} | "
                       f"{sum(r['diverged'] for r in p)}/{len(p)} | 1 | |")  # fmt: skip
            for name, rs in rules.items():
                q = [r for r in rs if r["eta"] == eta]
                both = [(r["tail"], t["tail"]) for r in q for t in p
                        if t["seed_index"] == r["seed_index"]
                        and math.isfinite(r["tail"]) and math.isfinite(t["tail"])]  # fmt: skip
                ratio = (np.mean([a for a, _ in both]) / np.mean([b for _, b in both])
                         if both else math.nan)  # fmt: skip
                out.append(f"| {eta:g} | {name} | {_mean_std([r['tail'] for r in q])} | "
                           f"{sum(r['diverged'] for r in q)}/{len(q)} | {_fmt(float(ratio))} | "
                           f"{_spread([a / b for a, b in both])} |")  # fmt: skip
                if both and ratio <= 0.1:
                    pe = best_eta(plain)
                    p_best = np.mean([r["tail"] for r in plain if r["eta"] == pe
                                      and math.isfinite(r["tail"])])  # fmt: skip
                    p_here = np.mean([b for _, b in both])
                    verdict.append(
                        f"{task} {name} at η = {eta:g} ({_fmt(float(ratio))} over the "
                        f"{len(both)} seeds where neither diverged; {name} diverged in "
                        f"{sum(r['diverged'] for r in q)}/{len(q)} seeds, plain in "
                        f"{sum(r['diverged'] for r in p)}/{len(p)}; plain's error there is "
                        f"{p_here / p_best:.3g}× its error at its best η, {pe:g})"
                    )
        out += ["", "Each rule at its own best η (the lowest mean error among the η where no seed "
                "diverged), against plain at plain's best η:", "",
                "| rule | best η | error at best η (mean ± std) | diverged over the η grid "
                "| ratio to plain at plain's best η | per-seed ratio median [min, max] |",
                "|---|---|---|---|---|---|"]  # fmt: skip
        pe = best_eta(plain)
        p_best = {r["seed_index"]: r["tail"] for r in plain if r["eta"] == pe}
        for name, rs in {"plain": plain, **rules}.items():
            e = best_eta(rs)
            at = [r for r in rs if r["eta"] == e]
            per_seed = [r["tail"] / p_best[r["seed_index"]] for r in at
                        if math.isfinite(r["tail"]) and r["seed_index"] in p_best]  # fmt: skip
            ratio = (np.mean([r["tail"] for r in at if math.isfinite(r["tail"])])
                     / np.mean([v for v in p_best.values() if math.isfinite(v)]))  # fmt: skip
            out.append(f"| {name} | {e:g} | {_mean_std([r['tail'] for r in at])} | "
                       f"{sum(r['diverged'] for r in rs)}/{len(rs)} | {_fmt(float(ratio))} | "
                       f"{_spread(per_seed)} |")  # fmt: skip
        out.append("")
    out += ["Where a rule's ratio of means at the same η is 0.1 or lower (the seed's tenfold "
            "claim): " + ("; ".join(verdict) if verdict else "nowhere") + ".", ""]  # fmt: skip
    return out


def _times(ratio: float) -> str:
    """A ratio of errors in words: 0.25 → "4× lower", 2 → "2× higher"."""
    if not math.isfinite(ratio):
        return "–"
    return f"{1 / ratio:.3g}× lower" if ratio < 1 else f"{ratio:.3g}× higher"


def verdict(results: list[dict[str, Any]]) -> list[str]:
    """The claim against the numbers, per setup and rule: the range of the same-η ratios of
    means and the best-η ratio, in words."""
    lines = []
    holds: dict[str, list[float]] = {}
    setups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        setups.setdefault(tuple(r[k] for k in BASE[:5]), []).append(r)
    for (task, act, width, depth, mode), runs in sorted(setups.items()):
        plain = [r for r in runs if r["kappa"] == 0 and not r["ortho"]]
        rules = sorted({label(r) for r in runs} - {"plain"})
        for name in rules:
            rs = [r for r in runs if label(r) == name]
            per_eta = []
            for eta in sorted({r["eta"] for r in rs}):
                pairs = [(r["tail"], t["tail"]) for r in rs for t in plain
                         if r["eta"] == t["eta"] == eta and r["seed_index"] == t["seed_index"]
                         and math.isfinite(r["tail"]) and math.isfinite(t["tail"])]  # fmt: skip
                if pairs:
                    per_eta.append((eta, np.mean([a for a, _ in pairs])
                                    / np.mean([b for _, b in pairs])))  # fmt: skip
            if not per_eta or not plain:
                continue
            pe, e = best_eta(plain), best_eta(rs)
            mean = lambda xs: float(np.mean([x for x in xs if math.isfinite(x)]))  # noqa: E731
            best = mean([r["tail"] for r in rs if r["eta"] == e]) / mean(
                [r["tail"] for r in plain if r["eta"] == pe]
            )
            same = ", ".join(f"η = {eta:g}: {_times(float(q))}" for eta, q in per_eta)
            lines.append(
                f"- {task}, {act} {width}×{depth}, {mode}, {name}: at the same η, error "
                f"{same}; each at its best η ({e:g} against plain's {pe:g}): "
                f"**{_times(best)}**."
            )
            holds.setdefault(name, []).append(best)
    lines.append("")
    for name, ratios in holds.items():
        k = sum(q <= 0.1 for q in ratios)
        lines.append(
            f"**{name}: the tenfold claim {'holds' if k == len(ratios) else 'does not hold'}**"
            f" when each method runs at its own best η — {k} of {len(ratios)} setups reach a "
            f"ratio of 0.1 or lower; the ratios are "
            + ", ".join(_times(q) for q in ratios)
            + ". Ratios of 0.1 or lower at the same η are listed at the end of the next section."
        )
    return lines


def _group(r: dict[str, Any]) -> tuple:
    return (r["mode"], r["activation"], r["ortho"], str(r["eps"]), r["kappa"], r["variant"])


def overview(rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[str]:
    """Per training mode, activation and rule, pooled over tasks, step sizes and seeds: the
    median over cells of the ratio of means, the median and the distribution of the per-seed
    ratios, and the stagnation and divergence shares."""
    out = [
        "| mode | σ | rule | cells | ratio of means (median over cells) | per-seed ratio: "
        "median | < 1 | ≤ 0.1 | stagnated | diverged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault(_group(r), []).append(r)
    runs: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        runs.setdefault(_group(r), []).append(r)
    for k in sorted(cells, key=lambda k: (MODES.index(k[0]), *k[1:])):
        g, rs = cells[k], runs[k]
        cell_ratio = [r["mean_ratio"] for r in g if math.isfinite(r["mean_ratio"])]
        q = np.array([r["ratio"] for r in rs if math.isfinite(r["ratio"])])
        share = lambda mask: f"{mask.mean():.2f}" if len(q) else "–"  # noqa: E731
        out.append(
            f"| {k[0]} | {k[1]} | {label(g[0])} | {len(g)} | "
            f"{_fmt(float(np.median(cell_ratio)) if cell_ratio else math.nan)} | "
            f"{_fmt(float(np.median(q)) if len(q) else math.nan)} | {share(q < 1)} | "
            f"{share(q <= 0.1)} | {np.mean([r['stagnated'] for r in rs]):.2f} | "
            f"{np.mean([r['diverged'] for r in rs]):.2f} |"
        )
    return out


# --- command line -----------------------------------------------------------------------------
LISTS = dict(
    tasks=str, activations=str, widths=positive_int, depths=positive_int,
    kappas=nonnegative_float, variants=str, modes=str, etas_sample=positive_float,
    etas_batch=positive_float, ortho_kappas=nonnegative_float, eps=positive_float,
)  # fmt: skip
COUNTS = ("batch", "points", "epochs_sample", "epochs_batch")
CHOICES = dict(tasks=TASKS, activations=ACTIVATIONS, modes=MODES,
               variants=("exact", "first_order"))  # fmt: skip
ORTHO = {"both": [False, True], "off": [False], "on": [True]}


def parser() -> Any:
    p = study_parser("compensation", __doc__, out="runs/compensation",
                     quick="a tiny grid (seconds)")  # fmt: skip
    p.add_argument("--full", action="store_true", help="the full grid (hours on 2 cores)")
    for name, kind in LISTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, nargs="+",
                       choices=CHOICES.get(name), help=f"default {DEFAULT[name]}")  # fmt: skip
    p.add_argument("--ortho", choices=list(ORTHO), help="default both (mini-batch only)")
    for name in COUNTS:
        p.add_argument(f"--{name.replace('_', '-')}", type=positive_int,
                       help=f"default {DEFAULT[name]}")  # fmt: skip
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
    cfg = dict(QUICK if args.quick else FULL if args.full else DEFAULT)
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
