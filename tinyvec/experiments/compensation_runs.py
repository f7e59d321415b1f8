"""The runs of the compensation study (`tinyvec.experiments.compensation`, whose module doc
defines what they measure): the tasks' data, the network, the δ-rules of a run, one run
(`run_one`, a sweep function) and many runs as one stack of models (`train_stack`,
`run_stack`), each member taking exactly the steps of its run alone. The study at
convergence (`tinyvec.experiments.compensation_converged`) and the sharpness study's SGD part
train the same runs with other stopping rules.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tinyvec as tv
from tinyvec.analysis.convergence import stagnated
from tinyvec.deltarules import Compensation, Orthogonalization

from .common import without
from .sweep import stackable

TASKS = ("sin", "runge", "sincos")
ACTIVATIONS = ("tanh", "relu")


DIVERGED = 1e6  # a loss above this, or not finite: the run diverged and stops


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


def delta_rules(kappa: Any, variant: str, ortho: bool, eps: Any) -> list[Any]:
    """The δ-rules of a run (κ, ε: numbers, or one per member of a stack)."""
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
    # a fresh permutation per epoch from the stream that drew the weights
    loader = tv.batches(x, y, 1 if spec["mode"] == "sample" else spec["batch"], shuffle=True,
                        rng=rng)  # fmt: skip
    curve, diverged = [], False
    with np.errstate(all="ignore"):  # a diverging run is detected below, not by warnings
        for _ in range(spec["epochs"]):
            for xb, yb in loader:
                loss, grads = tv.withgradient(lambda m: tv.mse(m(xb), yb), model)
                if not float(loss) < DIVERGED:
                    diverged = True
                    break
                tv.update(state, model, grads)
            if diverged:
                break
            curve.append(float(np.mean((model(x) - y) ** 2)))
    final = math.nan if diverged else curve[-1]
    # a fixed budget, not a convergence test (issue 24: compensation_converged has one): the
    # mean over the last tenth of the epochs smooths SGD's jitter
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


# --- many runs as one stack of models (tv.stack) ---------------------------------------------
MEMBER_FIELDS = ("seed", "seed_index", "eta", "kappa", "eps")  # what a stack's members may vary


def stack_key(spec: dict[str, Any]) -> dict[str, Any]:
    """What the runs of one stack share: everything but the seed, η, κ and ε (κ = 0, plain
    backprop, runs without a sweep, apart from the variants of κ > 0)."""
    shared = {k: v for k, v in spec.items() if k not in MEMBER_FIELDS}
    return {**shared, "plain": spec["kappa"] == 0}


def train_stack(
    specs: list[dict[str, Any]],
    epochs: int,
    leaves: Callable[[list[float]], bool] = lambda curve: False,
    rules: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """Train the runs of ``specs`` (one `stack_key`) as one stack of models for up to
    ``epochs`` epochs: each member takes exactly the steps of its run alone (`run_one`). A
    member leaves the stack when it diverges, or after an epoch at which ``leaves(its curve)``
    holds (it has met a stopping rule); the others go on without it. ``rules``: the stack's
    δ-rules in place of the specs' (`delta_rules`). Per member: ``curve``
    (the training MSE after each epoch it trained), ``diverged``, and ``model``: the member as
    an ordinary model (`tv.unstack`) when it left or at the end, None when it diverged."""
    first = specs[0]
    x, y, _, _ = task_data(first["task"], first["points"])
    rngs = [np.random.default_rng([s["seed"], s["seed_index"]]) for s in specs]
    models = [mlp(x.shape[0], s["width"], s["depth"], s["activation"], r) for s, r in zip(specs, rngs, strict=True)]  # fmt: skip
    pick = lambda name: [s[name] for s in specs]  # noqa: E731
    model = tv.stack(models)
    kappas, ortho, eps = pick("kappa"), first["ortho"], pick("eps")
    if rules is None:
        rules = delta_rules(kappas if any(kappas) else 0.0, first["variant"], ortho, eps)
    state = tv.setup(tv.Descent(pick("eta")), model, delta=rules or None)
    n, B = x.shape[1], 1 if first["mode"] == "sample" else first["batch"]
    alive = list(range(len(specs)))  # the members still in the stack
    members: list[dict[str, Any]] = [dict(curve=[], diverged=False, model=None) for _ in specs]

    def leave(gone: list[int], diverged: bool) -> None:
        """Take the members at positions ``gone`` of ``alive`` out of the stack."""
        nonlocal model, state, alive
        pairs, keep, model, state = without(model, state, gone)
        for i in gone:
            members[alive[i]].update(diverged=diverged, model=None if diverged else pairs[i][0])
        alive = [alive[i] for i in keep]

    with np.errstate(all="ignore"):
        for _ in range(epochs):
            orders = {e: rngs[e].permutation(n) for e in alive}
            for s in range(0, n, B):
                while alive:
                    batch = [orders[e][s : s + B] for e in alive]
                    xb = np.stack([x[:, b] for b in batch])
                    yb = np.stack([y[:, b] for b in batch])
                    loss, grads = tv.withgradient(lambda m: tv.mse(m(xb), yb, members=True), model)
                    bad = [i for i, v in enumerate(loss.tolist()) if not v < DIVERGED]
                    if not bad:
                        tv.update(state, model, grads)
                        break
                    leave(bad, diverged=True)  # the others go on, without it (the gradient again)
            if not alive:
                break
            out = model(x)
            for i, e in enumerate(alive):
                members[e]["curve"].append(float(np.mean((out[i] - y) ** 2)))
            done = [i for i, e in enumerate(alive) if leaves(members[e]["curve"])]
            if done:
                leave(done, diverged=False)
            if not alive:
                break
    if alive:
        for e, m in zip(alive, tv.unstack(model), strict=True):
            members[e]["model"] = m
    return members


def run_stack(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`run_one` of every spec (one `stack_key`), trained as one stack of models
    (`train_stack`): the results are `run_one`'s. A member that diverges stops (its run is
    marked diverged) and the others go on without it."""
    start = time.perf_counter()
    _, y, xe, ye = task_data(specs[0]["task"], specs[0]["points"])
    results = []
    for spec, member in zip(specs, train_stack(specs, specs[0]["epochs"]), strict=True):
        curve = member["curve"]
        if member["diverged"]:
            results.append(dict(final=math.nan, tail=math.nan, eval_mse=math.nan, diverged=True,
                                stagnated=False, curve=curve + [math.nan] * (spec["epochs"] - len(curve))))  # fmt: skip
            continue
        eval_mse = float(np.mean((member["model"](xe) - ye) ** 2))
        results.append(
            dict(
                final=curve[-1],
                tail=float(np.mean(curve[-max(1, len(curve) // 10) :])),
                eval_mse=eval_mse,
                diverged=False,
                stagnated=stagnated(curve, float(np.var(y))),
                curve=curve,
            )
        )
    seconds = (time.perf_counter() - start) / len(specs)  # (a stack's time, shared)
    return [{**r, "seconds": seconds} for r in results]


stackable(run_one, run_stack, stack_key)
