"""Orthogonalization, both readings (issue 10, item 8), on the compensation study's tasks:

- plain per-sample SGD, and `OrthogonalizationOverTime(M, ε)`: each sample's step leaves the
  pre-activations of the last M samples where they are (across time, as OWM);
- plain mini-batch SGD, and `Orthogonalization(ε)`: the samples of one batch stop disturbing
  each other (in-batch).

The networks, data and seeding are the study's (`tinyvec.experiments.compensation`: the MLP of
``--width`` × ``--depth``, ``--points`` equispaced points; seed index s gives every method the
same initial weights and data order). The error of a run is its mean training MSE over the last
10% of the epochs (a fixed budget of 2000 epochs on 24 points, not a convergence test: many
runs still improve; see `tinyvec.analysis.convergence.Criterion`); a run diverges when its
loss is not finite or above 1e6. For each method and η the table shows, over the seeds that
did not diverge, the mean ± std and the median of that error, and how many diverged; "best η"
is the η with the lowest median among those where at most half of the runs diverged.

    python examples/orthogonalization_over_time.py            # sin(πx): 120 runs, ~7 min
    python examples/orthogonalization_over_time.py --tasks sin sincos runge   # ~21 min
    python examples/orthogonalization_over_time.py --quick    # a smoke run (seconds)
    python examples/orthogonalization_over_time.py --keep-own-move   # the rescaled variant

One process, one BLAS thread; the same ``--seed`` gives the same numbers.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import tinyvec as tv
from tinyvec.deltarules import Orthogonalization, OrthogonalizationOverTime
from tinyvec.experiments.compensation_runs import DIVERGED, mlp, task_data

DEFAULT = dict(
    tasks=["sin"],
    activations=["tanh", "relu"],
    etas=[0.02, 0.1, 0.2],
    memory=4,
    eps=1e-3,
    keep_own_move=False,
    width=32,
    depth=3,
    points=24,
    batch=8,
    epochs=2000,
    seeds=5,
)
QUICK = dict(DEFAULT, activations=["tanh"], etas=[0.1], epochs=20, seeds=2, width=8, depth=2)

METHODS = ("plain", "over-time", "plain", "in-batch")  # per-sample ×2, then mini-batch ×2
MODES = ("sample", "sample", "batch", "batch")


def rules_of(method: str, cfg: dict[str, Any]) -> list[Any] | None:
    if method == "over-time":
        return [OrthogonalizationOverTime(cfg["memory"], cfg["eps"], cfg["keep_own_move"])]
    if method == "in-batch":
        return [Orthogonalization(cfg["eps"])]
    return None


def run_one(task: str, activation: str, method: str, mode: str, eta: float, seed: int,
            index: int, cfg: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Train one network; its error (mean training MSE over the last 10% of epochs) or
    divergence."""
    x, y, _, _ = task_data(task, cfg["points"])
    rng = np.random.default_rng([seed, index])
    model = mlp(x.shape[0], cfg["width"], cfg["depth"], activation, rng)
    state = tv.setup(tv.Descent(eta), model, delta=rules_of(method, cfg))
    step = tv.compile(lambda m, xb, yb: tv.mse(m(xb), yb), model, state)
    n, B = x.shape[1], 1 if mode == "sample" else cfg["batch"]
    curve: list[float] = []
    with np.errstate(all="ignore"):  # a diverging run is detected below, not by warnings
        for _ in range(cfg["epochs"]):
            order = rng.permutation(n)
            try:
                for s in range(0, n, B):
                    if not float(step(x[:, order[s : s + B]], y[:, order[s : s + B]])) < DIVERGED:
                        raise tv.NonFiniteLoss
            except tv.NonFiniteLoss:  # a loss above 1e6, or a step refused as non-finite
                return dict(error=math.nan, diverged=True)
            curve.append(float(np.mean((model(x) - y) ** 2)))
    tail = curve[len(curve) - max(1, len(curve) // 10) :]
    return dict(error=float(np.mean(tail)), diverged=False)


def measure(cfg: dict[str, Any], seed: int, quiet: bool = False) -> list[dict[str, Any]]:
    """Every run of the grid, as dicts (spec and result); a progress bar on stderr."""
    specs = [
        dict(task=task, activation=act, method=method, mode=mode, eta=eta, index=index)
        for task in cfg["tasks"]
        for act in cfg["activations"]
        for method, mode in zip(METHODS, MODES, strict=True)
        for eta in cfg["etas"]
        for index in range(cfg["seeds"])
    ]
    runs = []
    for spec in tqdm(specs, desc="runs", disable=quiet):
        result = run_one(
            spec["task"], spec["activation"], spec["method"], spec["mode"], spec["eta"], seed,
            spec["index"], cfg,
        )  # fmt: skip
        runs.append(dict(spec, **result))
    return runs


def table(runs: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    """The Markdown table: one row per task, activation, mode, method and η."""
    rows = [
        "| task | act | mode | method | η | error mean ± std | median | diverged | best η |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        key = (r["task"], r["activation"], r["mode"], r["method"])
        cells.setdefault(key, []).append(r)
    for (task, act, mode, method), cell in cells.items():
        by_eta = {eta: [r for r in cell if r["eta"] == eta] for eta in cfg["etas"]}
        medians = {}
        for eta, rs in by_eta.items():
            ok = [r["error"] for r in rs if not r["diverged"]]
            if len(ok) * 2 >= len(rs) and ok:
                medians[eta] = float(np.median(ok))
        best = min(medians, key=medians.__getitem__) if medians else None
        name = method if method in ("plain", "in-batch") else f"over-time M={cfg['memory']}"
        if method == "over-time" and cfg["keep_own_move"]:
            name += " own move kept"
        if method != "plain":
            name += f" ε={cfg['eps']:g}"
        for eta, rs in by_eta.items():
            ok = np.array([r["error"] for r in rs if not r["diverged"]])
            stats = (
                f"{ok.mean():.3g} ± {ok.std():.2g} | {np.median(ok):.3g}" if ok.size else "– | –"
            )
            rows.append(
                f"| {task} | {act} | {mode} | {name} | {eta:g} | {stats} | "
                f"{len(rs) - ok.size}/{len(rs)} | {'◀' if eta == best else ''} |"
            )
    return "\n".join(rows)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    parser.add_argument("--seeds", type=positive_int, help="runs per cell (default 5)")
    parser.add_argument("--epochs", type=positive_int, help="epochs per run (default 2000)")
    parser.add_argument("--tasks", nargs="+", choices=["sin", "runge", "sincos"])
    parser.add_argument("--activations", nargs="+", choices=["tanh", "relu"])
    parser.add_argument("--etas", nargs="+", type=float, help="step sizes (default 0.02 0.1 0.2)")
    parser.add_argument("--memory", type=int, help="M of OrthogonalizationOverTime (default 4)")
    parser.add_argument("--eps", type=float, help="ε of both rules (default 1e-3)")
    parser.add_argument(
        "--keep-own-move", action="store_true", help="OrthogonalizationOverTime(keep_own_move=True)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else DEFAULT)
    for key in ("seeds", "epochs", "tasks", "activations", "etas", "memory", "eps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["keep_own_move"] = args.keep_own_move
    OrthogonalizationOverTime(cfg["memory"], cfg["eps"])  # bad M or ε: one clear error, now
    if any(not (0 < eta < math.inf) for eta in cfg["etas"]):
        parser.error(f"--etas must be positive, got {cfg['etas']}")
    start = time.perf_counter()
    with threadpool_limits(1):
        runs = measure(cfg, args.seed, args.quiet)
    print(table(runs, cfg))
    print(
        f"\n{len(runs)} runs, {cfg['epochs']} epochs on {cfg['points']} points, width "
        f"{cfg['width']} × depth {cfg['depth']}, mini-batch {cfg['batch']}, seed {args.seed}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
