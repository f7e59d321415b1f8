"""The eigen-operator experiment (science.md §4, seed 001): a network N learns mean-zero
eigenfunctions of ``(T f)(x) = f(Ax) + f(Bx)`` on unit vectors x ∈ R^h, from targets
``y = N(Ax) + N(Bx)`` that the current network makes: with one output (the seed's) by
gradient ascent on the R² between N(x) and y, with K outputs (``--k K``) by subspace ascent.

The study is in three parts: `tinyvec.experiments.eigen_config` (the `Config` of a run and
its network), `tinyvec.experiments.eigen_run` (one seed: train, measure, write) and this
module (several seeds, their table, the command). The mathematics is library code:
`tinyvec.analysis.eigen_operator` (T and its exact spectrum), `tinyvec.analysis.ritz` (Ritz
values, subspace ascent, and which eigenvalues each step finds), `tinyvec.analysis.degrees`,
`tinyvec.analysis.oscillation` and `tinyvec.analysis.weights` (what is measured).

    tinyvec eigen [--k K|auto] [--steps N] [--seed S | --seeds a-b] [--out DIR] [--quick] ...
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from .common import (
    StudyParser,
    add_sweep_flags,
    config_of,
    parse,
    run_folder,
    study_parser,
    sweep_folder,
)
from .eigen_config import OPTIMISERS, QUICK, Config
from .eigen_run import fmt_complex, run, run_spec
from .eigen_stack import run_stack, stack_key
from .flags import nonnegative_float, nonnegative_int, positive_float, positive_int
from .sweep import executor_for, run_sweep, stackable
from .tables import markdown_table, write_csv


def seed_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of a sweep (`tinyvec.experiments.sweep`): the spec is a Config as JSON plus
    ``out`` (the run's folder) and the figure options; returns the summary as plain JSON
    (`eigen_run.run_spec`). ``seed_run.stacked``: several seeds as one stack of models."""
    return run_spec(spec)


stackable(seed_run, run_stack, stack_key)


def table_row(s: dict[str, Any]) -> dict[str, Any]:
    """One line of the multi-seed table."""
    d, deg, lead = s["nearest"]["by_value"], s["degrees"], s["leading"]
    trend = s["completion"].get("trend") or {}
    return {
        "seed": s["seed"],
        "k": s["k"],
        "steps": s["steps"],
        "r2": round(s["r2"], 5) if s["r2"] is not None else "-",
        "ritz": " ".join(fmt_complex(v["real"], v["imag"]) for v in s["spectrum"]),
        "leading": " ".join(fmt_complex(v["real"], v["imag"]) + f"(d{v['degree']})"
                            + ("*" if v["split_pair"] else "")
                            for v in lead["eigenvalues"]),
        "errors_%": " ".join(f"{100 * v['relative_error']:.2f}" for v in lead["eigenvalues"]),
        "met": _yes(lead["met"]),
        "degree1_met": _yes(lead["degree1_met"]),
        "nearest_to_lambda": fmt_complex(d["real"], d["imag"]) + f" (d{d['degree']})",
        "var_deg1": round(deg["variance_degree1"], 4),
        "var_deg_le2": round(deg["variance_degree_le2"], 4),
        "completion": s["completion"]["kind"] + _period(s["completion"]["period"]),
        "trend_r2": _trend_cell(trend, 0),
        "trend_lambda": _trend_cell(trend, 1),
        "lag1": round(s["lambda_tail"]["lag1_autocorrelation"], 2),
        "rotation_period": round(s["rotation"]["period_steps"]) if s["rotation"] else "-",
        "erank_rgb": "/".join(f"{s['skip_weights'][f'erank_{c}']:.1f}" for c in "rgb"),
        "diff_rg_gb_rb": "/".join(f"{s['skip_weights'][f'diff_{p}']:.2f}" for p in ("rg", "gb", "rb")),
        "steps_per_cpu_s": round(s["steps_per_cpu_second"]) if s["steps_per_cpu_second"] else "-",
    }  # fmt: skip


def _yes(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


def _trend_cell(trend: dict[str, Any], i: int) -> str:
    """Δ ± SE over the monitor's window (the drift test of `CompletionMonitor`)."""
    if not trend:
        return "-"
    return f"{trend['change'][i]:+.1e}±{trend['se'][i]:.0e}"


def _period(p: int | None) -> str:
    return f"({p})" if p and p > 1 else ""


def write_table(summaries: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """summary.csv and summary.md of several runs."""
    table = [table_row(s) for s in summaries]
    write_csv(out / "summary.csv", table)
    (out / "summary.md").write_text(markdown_table(table))
    return table


def run_seeds(c: Config, seeds: list[int], out: Path, jobs: int = 1, plots: bool = True, *,
              dask: str | None = None, progress: bool = True, fmt: str = "png",
              dpi: int = 100, stack: int = 1) -> list[dict]:  # fmt: skip
    """Run ``seeds`` through the sweep runner (``jobs`` processes, or a Dask cluster; up to
    ``stack`` seeds of one `eigen_stack.stack_key` trained as one stack of models),
    resuming from ``out/runs.jsonl``; then write summary.md, summary.csv and the grid figure
    into ``out``. Returns the summaries, in the order of ``seeds``."""
    specs = [{**asdict(replace(c, seed=s)), "out": str(out / f"seed-{s}"), "plots": plots,
              "format": fmt, "dpi": dpi} for s in seeds]  # fmt: skip
    with executor_for(jobs, dask) as ex:
        runs = run_sweep(seed_run, specs, out, executor=ex, progress=progress, desc="seeds",
                         stack=stack)  # fmt: skip
    summaries = [r["summary"] for r in runs]
    write_table(summaries, out)
    if plots:
        from tinyvec.plots import eigen as eplots

        eplots.plot_grid([out / f"seed-{s}" for s in seeds], out / "grid", fmt=fmt)
    return summaries


def parse_k(text: str) -> int | str:
    """``--k``: a number of outputs ≥ 1, or ``auto`` (kept as the word, so that a sweep's
    config.json reruns as ``--k auto``; `k_of` turns it into the Config's 0). ``0`` is
    refused: it would read as "no outputs", not as auto.

    >>> parse_k("3"), parse_k("auto")
    (3, 'auto')
    """
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"takes a number of outputs ≥ 1 or 'auto', got {text!r}"
        ) from None


def k_of(value: int | str) -> int:
    """The Config's K: the number given, or 0 for ``auto`` (resolved when the run starts)."""
    return 0 if value == "auto" else int(value)


HELPS = {
    "k": "outputs K ≥ 1, or auto (the smallest K ≥ 3 that splits no degree-1 pair); default 1",
    "steps": "default 3000 for K = 1, 6000 for K > 1 (300 with --quick)",
    "lr_final": "default 0 (a constant rate) for K = 1, 0.01 for K > 1",
    "degree_every": "log per-degree shares and step gains every N steps (degrees.csv); 0: off",
    "bias_init": "first-layer biases uniform in ±this (default 0: the network starts odd)",
    "even": "width of an even branch x ↦ (Vx)² into the last layer (default 0: none)",
}  # fmt: skip


POSITIVE_FLOATS = ("lr", "eps", "trend_tol")


def parser() -> StudyParser:
    p = study_parser("eigen", __doc__.split("\n\n")[0], out="runs/eigen",
                     quick="a short run (300 steps, smaller probes): a smoke test")  # fmt: skip
    defaults = Config()
    for action in p._actions:  # the seed's runs are seed 1: keep it the default
        if action.dest == "seed":
            action.default, action.help = defaults.seed, f"random seed (default {defaults.seed})"
    g = p.add_argument_group("the experiment")
    for f in fields(Config):
        if f.name == "seed":
            continue
        default = getattr(defaults, f.name)
        if f.name == "k":
            kind: Any = parse_k
        elif f.name == "opt":
            kind = str
        elif f.name in ("degree_every", "even"):
            kind = nonnegative_int
        elif f.name in ("steps",) or isinstance(default, int):
            kind = positive_int
        elif f.name in POSITIVE_FLOATS:
            kind = positive_float
        else:
            kind = nonnegative_float
        g.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                       choices=list(OPTIMISERS) if f.name == "opt" else None,
                       help=HELPS.get(f.name, f"default {default}"))  # fmt: skip
    add_sweep_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = parse(p, argv)
    values = {f.name: getattr(args, f.name) for f in fields(Config)
              if f.name != "seed" and getattr(args, f.name) is not None}  # fmt: skip
    if "k" in values:
        values["k"] = k_of(values["k"])
    try:
        c = replace(Config(), seed=args.seed, **{**(QUICK if args.quick else {}), **values})
        c.check()
    except ValueError as e:
        p.error(str(e))
    fig = {"fmt": args.format, "dpi": args.dpi}
    if args.seeds:
        with sweep_folder(p.prog, args.out, config_of(args)) as out:
            run_seeds(c, args.seeds, out, args.jobs, not args.no_plots, dask=args.dask,
                      progress=not args.quiet, stack=args.stack, **fig)  # fmt: skip
        print((args.out / "summary.md").read_text() + f"→ {args.out}")
        return 0
    with run_folder(args.out) as stage:
        s = run(c, stage, progress=not args.quiet, plots=not args.no_plots, **fig)
    out = args.out
    n = s["nearest"]["by_value"]
    if s["k"] == 1:
        print(f"λ̂ = {s['lambda']:.4f}  R² = {s['r2']:.5f}  nearest true eigenvalue "
              f"{fmt_complex(n['real'], n['imag'])} (degree {n['degree']}, distance "
              f"{n['distance']:.4f})  completion: {s['completion']['kind']}  "
              f"{s['steps_per_second']:.0f} steps/s  → {out}")  # fmt: skip
        return 0
    for v in s["spectrum"]:
        near = v["nearest"]
        print(f"Ritz {fmt_complex(v['real'], v['imag'])}  nearest exact "
              f"{fmt_complex(near['real'], near['imag'])} (degree {near['degree']}, "
              f"{100 * v['relative_distance']:.2f}%)")  # fmt: skip
    lead = s["leading"]
    print(f"K = {s['k']}  R² = {s['r2']:.5f}  the {s['k']} of largest real part within 2%: "
          f"{_yes(lead['met'])} (max error {100 * lead['max_relative_error']:.2f}%)  "
          f"completion: {s['completion']['kind']}  {s['steps_per_second']:.0f} steps/s"
          f"  → {out}")  # fmt: skip
    return 0
