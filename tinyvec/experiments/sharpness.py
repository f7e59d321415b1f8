"""``tinyvec sharpness``: the largest eigenvalue of the loss Hessian (the sharpness λ_max)
along training, against the stability threshold 2/η of gradient descent (issue 22; science.md §7;
Cohen et al., ICLR 2021, the edge of stability).

Part 1, full-batch gradient descent, Descent(η), on two tasks, tanh and ReLU networks:

- ``analyze``: the regression of ``tinyvec analyze`` (y = sin(πx₁) cos(πx₂/2), 128 points in
  [−1, 1]², MLP 2 → 32 → 32 → 32 → 1, mse);
- ``digits``: a class-balanced subset of scikit-learn's digits (``--per-class`` images of
  each of the 10 classes, pixels scaled to [0, 1]), MLP 64 → 32 → 32 → 10, mse on one-hot
  targets.

Every ``--every`` steps λ_max is measured by Lanczos on exact Hessian-vector products
(`tinyvec.analysis.sharpness.SharpnessMonitor`), with the alignment |cos(u₁, θ_t − θ_{t−1})|
of its eigenvector with the step. At the end, the completion monitor's verdict (limit cycle of
period 2 or not) and whether λ_max ≥ 2/η there.

Part 2, the compensation tasks (sin, runge, sincos; tanh 32 × 2; 24 points; per-sample SGD):
the sharpness of the full-batch loss that plain SGD and κ = 0.2 compensation reach, at the
same η, and the mean length of their steps over the last epoch.

Output folder (``--out``, default ``runs/sharpness``): ``config.json``, ``runs.jsonl`` (the
sweep's runs), ``results.md`` and the figures ``gd-<task>.png`` (λ_max η/2 and the loss over
training) and ``sgd.png`` (written by `tinyvec.experiments.sharpness_report`).
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import tinyvec as tv

from ..analysis import CompletionMonitor
from ..analysis.hessian import hessian_eigs
from ..analysis.sharpness import SharpnessMonitor
from .common import add_sweep_flags, figure_kw, parse, study_parser, study_sweep
from .flags import positive_float, positive_int
from .sharpness_report import write

GD_TASKS = ("analyze", "digits")
SGD_TASKS = ("sin", "runge", "sincos")
ACTIVATIONS = ("tanh", "relu")


# --- part 1: full-batch gradient descent ------------------------------------------------------
def gd_data(task: str, seed: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), features × samples, of a part-1 task."""
    if task == "analyze":
        from .analyze import target

        x = np.random.default_rng(seed).uniform(-1, 1, size=(2, 128))
        return x, target(x)
    if task == "digits":
        from sklearn.datasets import load_digits

        X, labels = load_digits(return_X_y=True)
        rng = np.random.default_rng(seed)
        take = np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
        )
        return X[take].T / 16.0, tv.onehot(labels[take], 10)
    raise ValueError(f"unknown task {task!r}: use one of {', '.join(GD_TASKS)}")


def gd_model(task: str, activation: str, seed: int) -> Any:
    rng = np.random.default_rng([seed, 1])
    sizes = [2, 32, 32, 32, 1] if task == "analyze" else [64, 32, 32, 10]
    layers = [
        tv.Dense(a, b, activation if k < len(sizes) - 2 else tv.identity, rng=rng)
        for k, (a, b) in enumerate(itertools.pairwise(sizes))
    ]
    return tv.Chain(*layers)


def gd_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One full-batch run (a `tinyvec.experiments.sweep` function): λ_max, the loss and the
    alignment every ``every`` steps, and the verdict at the end."""
    start = time.perf_counter()
    x, y = gd_data(spec["task"], spec["seed"], spec["per_class"])
    model = gd_model(spec["task"], spec["activation"], spec["seed"])
    eta, steps = spec["eta"], spec["steps"]

    def loss(m: Any) -> Any:
        return tv.mse(m(x), y)

    sharp = SharpnessMonitor(loss, eta, every=spec["every"], tol=1e-5, maxiter=80)
    sharp(0, model, float(loss(model)))  # λ_max at initialisation, step 0
    completion = CompletionMonitor(None, eps=1e-3, patience=20, lr=eta, sharpness=sharp)
    state = tv.setup(tv.Descent(eta), model)
    with np.errstate(all="ignore"):
        try:
            history = tv.train(
                tv.mse, model, [(x, y)] * steps, state, progress=False,
                callbacks=[sharp, completion],
            )  # fmt: skip
            diverged = not math.isfinite(history[-1]) or history[-1] > 1e6
        except tv.NonFiniteLoss:
            history, diverged = [], True
    status = completion.status()
    eos = status.get("edge_of_stability")
    return {
        "steps": [h["step"] for h in sharp.history],
        "sharpness": [h["sharpness"] for h in sharp.history],
        "loss_at": [float(h["loss"]) for h in sharp.history],
        "alignment": [h["alignment"] for h in sharp.history],
        "loss": history[:: max(1, steps // 500)],
        "loss_every": max(1, steps // 500),
        "final_loss": history[-1] if history else math.nan,
        "loss_increases": int(np.sum(np.diff(history) > 0)) if history else 0,
        "diverged": diverged,
        "completion": status["kind"],
        "period": status["period"],
        # the period with which the parameters come back, also when the loss still falls and
        # the loss-trend test (issue 24) calls the run "moving"
        "returns": (status.get("cycle_trend") or {}).get("period"),
        "eos": eos,
        "seconds": time.perf_counter() - start,
    }


# --- part 2: per-sample SGD, plain and κ = 0.2 compensation ---------------------------------
def sgd_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One per-sample SGD run on a compensation task: λ_max of the full-batch loss every
    ``every_epochs`` epochs, the loss, and the mean step length over the last epoch."""
    from .compensation_runs import delta_rules, mlp, task_data

    start = time.perf_counter()
    x, y, _, _ = task_data(spec["task"], spec["points"])
    rng = np.random.default_rng([spec["seed"], 2])
    model = mlp(x.shape[0], 32, 2, "tanh", rng)
    rules = delta_rules(spec["kappa"], "exact", False, 0.1)
    state = tv.setup(tv.Descent(spec["eta"]), model, delta=rules or None)

    def full(m: Any) -> Any:
        return tv.mse(m(x), y)

    n, lam, epochs_at, losses, diverged = x.shape[1], [], [], [], False
    step_lengths: list[float] = []
    with np.errstate(all="ignore"):
        for epoch in range(1, spec["epochs"] + 1):
            last = epoch == spec["epochs"]
            for i in rng.permutation(n):
                xb, yb = x[:, i : i + 1], y[:, i : i + 1]
                value, grads = tv.withgradient(lambda m: tv.mse(m(xb), yb), model)
                if not float(value) < 1e6:
                    diverged = True
                    break
                before = [getattr(layer, name) for _, layer, name in tv.trainables(model)]
                tv.update(state, model, grads)
                if last:
                    after = [getattr(layer, name) for _, layer, name in tv.trainables(model)]
                    step_lengths.append(
                        math.sqrt(
                            sum(
                                float(np.sum((a - b) ** 2))
                                for a, b in zip(after, before, strict=True)
                            )
                        )
                    )
            if diverged:
                break
            if epoch % spec["every_epochs"] == 0 or last:
                epochs_at.append(epoch)
                lam.append(hessian_eigs(full, model, tol=1e-5, maxiter=80).sharpness)
                losses.append(float(full(model)))
    return {
        "epochs": epochs_at,
        "sharpness": lam,
        "loss": losses,
        "step_length": float(np.mean(step_lengths)) if step_lengths else math.nan,
        "diverged": diverged,
        "seconds": time.perf_counter() - start,
    }


# --- the study --------------------------------------------------------------------------------
DEFAULTS = dict(
    etas=[0.02, 0.05, 0.1], digits_etas=[0.05, 0.2, 0.5], steps=3000, every=100, per_class=20,
    sgd_etas=[0.05, 0.1], sgd_epochs=500, sgd_every=50, points=24,
)  # fmt: skip
QUICK = dict(
    etas=[0.05, 0.1], digits_etas=[0.2, 0.5], steps=200, every=50, per_class=5,
    sgd_etas=[0.1], sgd_epochs=10, sgd_every=5, points=16,
)  # fmt: skip


def parser() -> Any:
    p = study_parser("sharpness", __doc__.split("\n\n")[0], out="runs/sharpness",
                     quick="a smoke test: 2 step sizes, 200 steps, tiny SGD runs")  # fmt: skip
    p.add_argument("--tasks", nargs="+", choices=GD_TASKS, default=list(GD_TASKS))
    p.add_argument("--activations", nargs="+", choices=ACTIVATIONS, default=list(ACTIVATIONS))
    p.add_argument("--etas", nargs="+", type=positive_float,
                   help="GD step sizes on analyze (0.02 0.05 0.1)")  # fmt: skip
    p.add_argument("--digits-etas", nargs="+", type=positive_float,
                   help="GD step sizes on digits (0.05 0.2 0.5)")  # fmt: skip
    p.add_argument("--steps", type=positive_int, help="GD steps (3000)")
    p.add_argument("--every", type=positive_int, help="steps between measurements (100)")
    p.add_argument("--per-class", type=positive_int, help="digits images per class (20)")
    p.add_argument("--sgd-tasks", nargs="*", choices=SGD_TASKS, default=list(SGD_TASKS))
    p.add_argument("--sgd-etas", nargs="+", type=positive_float, help="SGD step sizes (0.05 0.1)")
    p.add_argument("--sgd-epochs", type=positive_int, help="SGD epochs (500)")
    p.add_argument("--sgd-every", type=positive_int, help="epochs between measurements (50)")
    p.add_argument("--points", type=positive_int, help="compensation task points (24)")
    add_sweep_flags(p, seeds="0-2")
    return p


def specs(args: Any) -> list[dict[str, Any]]:
    gd = [
        {"part": "gd", "task": t, "activation": a, "eta": e, "seed": s, "steps": args.steps,
         "every": args.every, "per_class": args.per_class}
        for t in args.tasks for a in args.activations
        for e in (args.etas if t == "analyze" else args.digits_etas) for s in args.seeds
    ]  # fmt: skip
    sgd = [
        {"part": "sgd", "task": t, "kappa": k, "eta": e, "seed": s, "epochs": args.sgd_epochs,
         "every_epochs": args.sgd_every, "points": args.points}
        for t in args.sgd_tasks for e in args.sgd_etas for k in (0.0, 0.2) for s in args.seeds
    ]  # fmt: skip
    return gd + sgd


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of either part (the sweep's function), on one BLAS thread."""
    with threadpool_limits(limits=1):
        return gd_run(spec) if spec["part"] == "gd" else sgd_run(spec)


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(), argv, needs=["sklearn"])
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    figures = None if args.no_plots else figure_kw(args)
    with study_sweep("tinyvec sharpness", run_spec, specs(args), args, desc="runs") as (out, runs):
        written = write(runs, args, out, figures)
    for path in written:
        print(args.out / path.name)
    return 0
