"""``tinyvec analyze``: train a small network with the vector-analysis recorder and the
completion monitor, and write every figure of the run with a short summary.

The default task (ours): regression of ``y = sin(πx₁) cos(πx₂/2)`` from 128 points drawn
uniformly in [−1, 1]², by a tanh MLP 2 → 32 → 32 → 32 → 1 (mse) trained with full-batch
gradient descent, Descent(0.1), for 3000 steps (300 with ``--quick``); 256 further points are
the test set and the completion monitor's probe set. Every step is measured.

Output folder (``--out``, default ``runs/analyze``): ``steps.csv`` (one row per layer and
step), ``completion.csv`` (one row per check), ``series.png``, ``decomposition.png``,
``heatmaps.png``, ``completion.png``, ``loss.png`` and ``summary.md``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import tinyvec as tv

from ..analysis import CompletionMonitor, MemberMonitors, VectorRecorder, record_members
from ..engine.tensor import data as raw
from ..layers.base import trainables
from .analyze_report import layer_median, write, write_seeds
from .common import (
    add_sweep_flags,
    config_of,
    figure_kw,
    parse,
    run_folder,
    study_parser,
    study_sweep,
)
from .flags import positive_float, positive_int
from .sweep import all_but_seed, stackable, stacked_or_alone
from .tables import write_json


def target(X: np.ndarray) -> np.ndarray:
    """The default task's function, on inputs 2 × N."""
    return (np.sin(np.pi * X[0]) * np.cos(np.pi * X[1] / 2))[None, :]


def build(seed: int, width: int = 32, depth: int = 3) -> Any:
    rng = np.random.default_rng(seed)
    sizes = [2] + [width] * depth
    hidden = [tv.Dense(i, o, tv.tanh, rng=rng) for i, o in itertools.pairwise(sizes)]
    return tv.Chain(*hidden, tv.Dense(width, 1, rng=rng))


def run(*, seed: int = 0, **settings: Any) -> dict[str, Any]:
    """Train, record and monitor; returns what the summary reports (`runs` of one seed)."""
    return runs([seed], **settings)[0]


def runs(
    seeds: Sequence[int], *, steps: int = 3000, lr: float = 0.1, n: int = 128, width: int = 32,
    depth: int = 3, batch: int | None = None, eps: float = 1e-3, patience: int = 20,
    window: int = 200, progress: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Train, record and monitor one run per seed (its own data, weights and shuffles);
    returns per run what the summary reports (``progress``: a progress bar over the steps).
    Several runs train as one stack of models (`tv.stack`), each reading its own batches
    (`tv.stack_batches`) and taking exactly the steps of its run alone; its recorder, monitor,
    test loss and θ drift are measured on the stack, every member at once, each member's
    numbers those of its run alone (`record_members`, `MemberMonitors`).

    The monitor watches ``ln`` of the MSE on the probe (the test set) as its observable, so
    that under SGD it can tell a noise floor from a drift (science.md §6, issue 24), and
    tests the training loss for a trend before it calls a limit cycle; both over the last
    ``window`` checks. On a log scale the trend test's tolerance ``ε·(1 + |ln L|)`` is
    relative: with ε = 10⁻³ and L ≈ 4·10⁻³, a change of about 0.65 % over the window."""
    batch = n if batch is None else batch
    lookback = min(1000, steps - 1)  # θ then, for the drift over the last `lookback` steps
    stacked = len(seeds) > 1
    members = [_member(seed, steps, lr, n, width, depth, batch, eps, patience, window, lookback)
               for seed in seeds]  # fmt: skip
    models = [member.pop("model") for member in members]
    model = tv.stack(models) if stacked else models[0]
    state = tv.setup(tv.Descent(lr), model)
    loaders = [member.pop("loader") for member in members]
    loader = tv.stack_batches(loaders) if stacked else loaders[0]
    epochs = math.ceil(steps / len(loader))  # type: ignore[arg-type]  # (tv.batches: a length)

    recorders = [member["recorder"] for member in members]
    if stacked:  # the test sets, stacked: each member's test loss from one pass of the stack
        Xt, Yt = (np.stack([member["test"][i] for member in members]) for i in (0, 1))
        monitors = MemberMonitors(
            [member["monitor"] for member in members],
            observe=lambda s: [[math.log(v)] for v in _loss(monitors.outputs, Yt)],
        )

    def each(step: int, m: Any, loss: Any) -> None:
        """The recorders, monitors, test losses and θ of every run, in `tv.train`'s order."""
        if not stacked:
            recorders[0].record(m, step, loss)
            members[0]["monitor"](step, m, loss)
            _evaluate(step, steps, lookback, members, lambda: [_flat(m)],
                      lambda: _test(m, *members[0]["test"]))  # fmt: skip
            return
        record_members(recorders, m, step, loss)
        monitors(step, m, loss)
        _evaluate(step, steps, lookback, members, lambda: [_flat(m, e) for e in range(len(seeds))],
                  lambda: _test(m, Xt, Yt))  # fmt: skip

    start = time.perf_counter()
    try:
        history: list[Any] = tv.train(
            lambda m, x, y: tv.mse(m(x), y, members=stacked), model, loader, state,
            epochs=epochs, steps=steps, progress=progress, callbacks=[each],
        )  # fmt: skip
    finally:
        for member in members:
            member["recorder"].close()
    seconds = (time.perf_counter() - start) / len(seeds)  # (a stack's time, shared)
    results = []
    for e, member in enumerate(members):
        theta = member.pop("theta")
        drift = (float(np.linalg.norm(theta["now"] - theta["then"])
                       / np.linalg.norm(theta["then"]))
                 if "then" in theta else math.nan)  # fmt: skip
        del member["test"]
        results.append({
            "lookback": lookback, "theta_drift": drift, **member,
            "history": [h[e] for h in history] if stacked else history,
            "seconds": seconds, "config": {
                "seed": seeds[e], "steps": steps, "lr": lr, "n": n, "width": width,
                "depth": depth, "batch": batch, "eps": eps, "patience": patience,
                "window": window,
            },
        })  # fmt: skip
    return results


def _member(
    seed: int, steps: int, lr: float, n: int, width: int, depth: int, batch: int, eps: float,
    patience: int, window: int, lookback: int,
) -> dict[str, Any]:  # fmt: skip
    """One run of `runs` before training: its data and model, its loader (a fresh shuffle
    per epoch; none for one full batch), its recorder, monitor, test set and test losses,
    and θ (kept at ``steps − lookback`` and at the end by `_evaluate`)."""
    rng = np.random.default_rng(seed)
    X, Xt = rng.uniform(-1, 1, size=(2, n)), rng.uniform(-1, 1, size=(2, 256))
    Y, Yt = target(X), target(Xt)
    model = build(seed, width, depth)
    # the observable: ln of the test loss, from the probe's outputs (the probe is the test set)
    monitor = CompletionMonitor(
        Xt,
        eps=eps,
        patience=patience,
        lr=lr,
        window=window,
        observe=lambda m: [math.log(v) for v in _loss(monitor.outputs, Yt)],
    )
    test_loss: list[tuple[int, float]] = []
    theta: dict[str, Any] = {}
    # a fresh shuffle per epoch (none for one full batch); one tv.train call of `steps`
    # steps numbers them 1..steps for the recorder and the monitor
    loader = tv.batches(X, Y, batch, shuffle=True, rng=rng) if batch < n else tv.batches(X, Y, n)
    return {"model": model, "loader": loader, "recorder": VectorRecorder(), "monitor": monitor,
            "test": (Xt, Yt), "test_loss": test_loss, "theta": theta}  # fmt: skip


def _test(model: Any, Xt: Any, Yt: Any) -> list[float]:
    """The test loss of a model, or of each member of a stack on its own test set (stacked)."""
    with tv.no_grad():
        return _loss(model(Xt), Yt)


def _loss(outputs: Any, Yt: Any) -> list[float]:
    """The mean squared error of outputs, of a model or of each member of a stack."""
    stacked = np.ndim(Yt) == 3
    loss = raw(tv.mse(outputs, Yt, members=stacked))
    return np.asarray(loss).tolist() if stacked else [float(loss)]


def _flat(model: Any, e: int | None = None) -> np.ndarray:
    """θ of a model, or of member e of a stack, as one vector."""
    return np.concatenate([np.ravel(raw(getattr(layer, name))[e] if e is not None else
                                    raw(getattr(layer, name)))
                           for _, layer, name in trainables(model)])  # fmt: skip


def _evaluate(step: int, steps: int, lookback: int, members: list[dict[str, Any]],
              thetas: Any, tests: Any) -> None:  # fmt: skip
    """After a step: every run's θ at ``steps − lookback`` and at the end (``thetas()``), its
    test loss every 10 steps and at the end (``tests()``)."""
    if step in (steps - lookback, steps):
        for member, theta in zip(members, thetas(), strict=True):
            member["theta"]["then" if step == steps - lookback else "now"] = theta
    if step % 10 == 0 or step == steps:
        for member, value in zip(members, tests(), strict=True):
            member["test_loss"].append((step, value))


def parser() -> Any:
    p = study_parser("analyze", __doc__.split("\n\n")[0], out="runs/analyze",
                     quick="300 steps instead of 3000")  # fmt: skip
    p.add_argument("--steps", type=positive_int, help="training steps (default 3000, 300 quick)")
    p.add_argument("--lr", type=positive_float, default=0.1, help="Descent step size (0.1)")
    p.add_argument("--n", type=positive_int, default=128, help="training points (128)")
    p.add_argument("--width", type=positive_int, default=32, help="hidden width (32)")
    p.add_argument("--depth", type=positive_int, default=3, help="hidden layers (3)")
    p.add_argument("--batch", type=positive_int, help="batch size (default: all n points)")
    p.add_argument("--eps", type=positive_float, default=1e-3, help="completion threshold ε")
    p.add_argument("--patience", type=positive_int, default=20,
                   help="completion checks below ε before it is declared (20)")  # fmt: skip
    p.add_argument("--window", type=positive_int, default=200,
                   help="checks in the completion monitor's trend tests (200)")  # fmt: skip
    add_sweep_flags(p)
    return p


def _kwargs(args: Any) -> dict[str, Any]:
    return {k: getattr(args, k) for k in
            ("steps", "lr", "n", "width", "depth", "batch", "eps", "patience", "window")}  # fmt: skip


def seed_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One seed of a ``--seeds`` sweep (a `tinyvec.experiments.sweep` function): the
    summary of the run, as JSON."""
    return _summary(run(**spec))


def seed_runs(specs: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
    """`seed_run` of every spec (they differ only in the seed), trained as
    one stack of models (`runs`); the results are `seed_run`'s. When a seed's loss or step is
    not finite, the stack stops and its seeds are run again one by one: each gives its result
    or, in its place, the error it gives alone, which the sweep raises after writing the
    others."""

    def train(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shared = all_but_seed(specs[0])
        return [_summary(result) for result in runs([s["seed"] for s in specs], **shared)]

    return stacked_or_alone(train, specs)


stackable(seed_run, seed_runs, all_but_seed)  # the runs of one stack differ in the seed


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What a ``--seeds`` sweep keeps of a `run`."""
    s, rec = result["monitor"].status(), result["recorder"]
    layers = sorted({r["layer"] for r in rec.rows})
    return {
        "train_loss": result["history"][-1], "test_loss": result["test_loss"][-1][1],
        "completion": s["kind"], "period": s["period"], "completion_step": s["step"],
        "ratio": [layer_median(rec, "ratio", k) for k in layers],
        "cos_total_delta": [layer_median(rec, "cos_total_delta", k) for k in layers],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse(parser(), argv)
    if args.steps is None:
        args.steps = 300 if args.quick else 3000
    figures = None if args.no_plots else figure_kw(args)
    if args.seeds:
        return main_seeds(args)
    with threadpool_limits(limits=1), run_folder(args.out) as out:
        result = run(seed=args.seed, progress=not args.quiet, **_kwargs(args))
        written = write(result, out, figures)
        write_json(out / "config.json", config_of(args))
    for path in written:
        print(args.out / path.name)
    s = result["monitor"].status()
    print(f"completion: {s['kind']} (period {s['period']}) at step {s['step']}")
    return 0


def main_seeds(args: Any) -> int:
    """``--seeds``: one run per seed through the sweep runner; a table of the seeds
    (`write_seeds`)."""
    specs = [{**_kwargs(args), "seed": s} for s in args.seeds]
    with study_sweep("tinyvec analyze", seed_run, specs, args, desc="seeds") as (out, runs):
        write_seeds(runs, args.steps, args.seeds, out)
    print((args.out / "summary.md").read_text() + f"→ {args.out}")
    return 0
