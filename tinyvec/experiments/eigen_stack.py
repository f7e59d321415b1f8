"""Seeds of the eigen-operator study trained as one stack of models (`tv.stack`, issue 21):
``tinyvec eigen --seeds 0-7 --stack 8`` (``--stack`` defaults to 32) trains the seeds of one
`stack_key` together, and every seed writes the files of its run alone
(`tinyvec.experiments.eigen_run.run`), to the last digit.

Only the training steps are stacked: each member has its own operators A, B (stacked, so
that the targets ``y = N(Ax) + N(Bx)`` are each member's own, `apply_operator`), its own
batch stream, and its loss is ``−R²`` of its own outputs (`tv.r2` per member). Everything
measured (the completion monitor, the probes, the tail, the summary, the figures) runs per
member with the functions of `eigen_run`, on the member's parameters as an ordinary model
(`members_of`).

What the members share (`stack_key`): the config but the seed. With K = 1 the steps and the
final rate that `resolve` fills in are the same for every seed, so the members take the
same number of steps at the same rates and end together. K ≠ 1 (given, or auto's K ≥ 3) runs
alone, a stack of one: subspace ascent re-whitens the last layer of one model
(`tinyvec.analysis.ritz.ascent_gradient`), and auto's K, and with it the network, the steps
and the rate, is each seed's own.

A member whose step fails (a loss that is not finite, an update refused as not finite, R² not
finite) leaves the stack and the others go on; its run is then done again alone, so that it
ends exactly as it ends one by one: with its error (`run_stack` returns the exception in its
place; the sweep writes the others' lines and raises it) or, should it not fail alone, with
its result.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tinyvec as tv
from tinyvec.analysis.eigen_operator import apply_operator, unit_vectors

from .common import without
from .eigen_run import (
    after_update,
    batch_row,
    config_of,
    degrees_before,
    finish,
    record,
    run_spec,
    seed_result,
    start,
)
from .eigen_seed import Experiment, Records


def stack_key(spec: dict[str, Any]) -> dict[str, Any]:
    """What the seeds of one stack share: the spec but its seed and folder; K ≠ 1 keeps its
    seed, a stack of one (see the module doc)."""
    shared = {name: v for name, v in spec.items() if name not in ("seed", "out")}
    return {**shared, "seed": None if spec["k"] == 1 else spec["seed"]}


def run_alone(spec: dict[str, Any]) -> dict[str, Any] | Exception:
    """The seed of ``spec`` alone (`eigen_run.run_spec`); its error in place of a result."""
    try:
        return run_spec(spec)
    except (ArithmeticError, np.linalg.LinAlgError) as err:
        return err


@dataclass
class Member:
    """One seed in a stack: its experiment (``e.model``: the member's current parameters as
    an ordinary model), its records and its position among the specs."""

    index: int
    e: Experiment
    rec: Records


def members_of(model: Any) -> tuple[list[Any], list[tuple[Any, Any, str, int]]]:
    """The members of the stack ``model`` as ordinary models (`tv.unstack`) and the bindings
    that `refresh` follows: (member's layer, stack's layer, name, member). They are made once
    per stack, not at every step: the fast road writes a program for each model it meets."""
    stacked = tv.trainables(model)
    views, bindings = tv.unstack(model), []
    for i, view in enumerate(views):
        for (_, layer, name), (_, owner, _) in zip(tv.trainables(view), stacked, strict=True):
            bindings.append((layer, owner, name, i))
    return views, bindings


def refresh(bindings: list[tuple[Any, Any, str, int]]) -> None:
    """After an update (which gives the stack new parameter arrays): each member's
    parameters, views of the new ones."""
    for layer, owner, name, i in bindings:
        setattr(layer, name, getattr(owner, name)[i, ...])


def member_losses(F: Any, y: np.ndarray) -> Any:
    """The E member losses ``−R²(N_e(x_e), y_e)`` of a stack's outputs F (E, 1, r), each
    `tv.r2` of one member (the stack's loss: `tv.gradient` gives each its own gradient)."""
    return tv.concat([tv.ops.reshape(-tv.r2(F[i], y[i]), (1,)) for i in range(y.shape[0])])


def run_stack(specs: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
    """`tinyvec.experiments.eigen.seed_run` of every spec (one `stack_key`), the seeds trained
    as one stack of models: the results are seed_run's, a failing seed's error in its place
    (see the module doc)."""
    if len(specs) == 1 or specs[0]["k"] != 1:
        return [run_alone(spec) for spec in specs]
    first = specs[0]
    out = [Path(s["out"]) for s in specs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in run_spec: a split pair is in the table
        seeds = [Member(i, *start(config_of(spec), out[i])) for i, spec in enumerate(specs)]
        failed = train_stack(seeds)
        results: list[dict[str, Any] | Exception] = []
        for i, spec in enumerate(specs):
            if i in failed:
                results.append(run_alone(spec))
                continue
            m = seeds[i]
            fig = {"fmt": first.get("format", "png"), "dpi": first.get("dpi", 100)}
            results.append(seed_result(finish(m.e, m.rec, out[i], first["plots"], **fig)))
    return results


def train_stack(members: list[Member]) -> set[int]:
    """Train ``members`` (seeds of one `stack_key`, each after `start`) as one stack for the
    steps of their config, recording each as `eigen_run.run` does; returns the indices of
    the members that failed and left the stack."""
    model, state = tv.stack([m.e.model for m in members], [m.e.state for m in members])
    alive, failed = list(members), set[int]()
    c, schedule = members[0].e.c, members[0].e.schedule
    assert c.steps is not None  # `resolve` fills it in
    bindings: list[tuple[Any, Any, str, int]] = []
    A = B = np.empty(0)

    def bind() -> None:
        """Each member's ``e.model``, its parameters in the stack (`members_of`), and the
        members' operators, stacked."""
        nonlocal bindings, A, B
        views, bindings = members_of(model)
        for m, view in zip(alive, views, strict=True):
            m.e.model = view
        A, B = np.stack([m.e.A for m in alive]), np.stack([m.e.B for m in alive])

    def leave(gone: list[int]) -> None:
        """Take the members at positions ``gone`` of ``alive`` out of the stack."""
        nonlocal model, state, alive
        _, keep, model, state = without(model, state, gone)
        failed.update(alive[i].index for i in gone)
        alive = [alive[i] for i in keep]
        if alive:
            bind()

    bind()

    for step in range(1, c.steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        x = np.stack([unit_vectors(c.h, c.r, m.e.data_rng) for m in alive])
        while alive:
            tv.adjust(state, eta=schedule(step - 1))
            y = apply_operator(model, A, B, x)
            loss, grads = tv.withgradient(lambda m, x=x, y=y: member_losses(m(x), y), model)
            r2_b = [-v for v in loss.tolist()]
            bad = [i for i, v in enumerate(r2_b) if not math.isfinite(v)]
            if not bad:
                f = model[-1].output  # N(x) of this forward pass, before the update
                before = [degrees_before(m.e, step) for m in alive]
                try:
                    tv.update(state, model, grads)
                    break
                except tv.NonFiniteStep:  # (nothing changed) whose step is not finite?
                    bad = [i for i in range(len(alive)) if not _finite_member(model, grads, i)]
                    bad = bad or list(range(len(alive)))
            keep = [i for i in range(len(alive)) if i not in bad]
            x = x[keep]
            leave(bad)  # the others go on without them (their gradient again)
        if not alive:
            break
        refresh(bindings)
        rows = []
        for i, m in enumerate(alive):
            after_update(m.e, step, m.rec, before[i])
            rows.append(batch_row(m.e, step, f[i], y[i], r2_b[i]))
        share_t, share_c = (
            (time.perf_counter() - t0) / len(alive),
            (time.process_time() - c0) / len(alive),
        )
        for m, row in zip(alive, rows, strict=True):
            m.rec.train_time += share_t  # (the stack's time, shared)
            m.rec.cpu_time += share_c
            record(m.e, step, m.rec, row)
    return failed


def _finite_member(model: Any, grads: Any, i: int) -> bool:
    """Whether member ``i``'s part of every gradient of the stack ``model`` is finite."""
    return all(np.isfinite(grads[path][i, ...]).all() for path, _, _ in tv.trainables(model))
