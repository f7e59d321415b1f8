"""The fast road: the same numbers as the reference road, bit for bit, with the work that
repeats at every step done once.

- `plan`: a model's walk, kept while its structure stays (and checked cheaply at each use);
- `chain`: a Chain written out as one straight-line program, one graph node;
- `update`: `tv.update`'s step written out (on θ, all parameters end to end, for an
  elementwise rule on a small NumPy model; a stack's θ is (E, P), a row per member);
- `compiled`: `tv.compile`, a whole training step without the gradient Tree (and, for a loss
  of tinyvec's own, without a graph).

A step of this road is all or nothing, as on the reference road, without holding Ctrl-C
back where it need not: a step without a graph computes into memory of its own and commits
with writes that finish themselves when interrupted, so a Ctrl-C ends it before its commit
(nothing written) or after it, at once, rather than after the step.

It is an optimisation you can skip when reading tinyvec: the reference road
(`tinyvec.engine`, `tinyvec.layers`, `tinyvec.optimise`) defines every number, and this
package offers to do its work through the one seam `tinyvec.seam`. Inside
``with tinyvec.fast.off():`` nothing here runs (in that thread): to read a step in the
source, to debug, and to prove this road against the reference (``tests/fast``).

    >>> import numpy as np, tinyvec as tv
    >>> m = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))
    >>> x = tv.Tensor(np.ones((2, 4)))
    >>> m(x).op
    'Chain'
    >>> with tv.fast.off():
    ...     m(x).op
    'Dense'
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

from .. import seam
from ..backend import is_array
from ..engine.tensor import setting
from ..optimise.training import (
    Commit,
    NonFiniteStep,
    OptState,
    check_entries,
    gradients_of,
    interrupts_deferred,
    rewritten,
)
from .chain import chain_call
from .compiled import CompiledStep, compile_step
from .plan import plan_of
from .update_program import last_gradients, written

__all__ = ["CompiledStep", "chain_call", "compile_step", "differentiate", "off", "update"]


def off() -> contextlib.AbstractContextManager[None]:
    """Inside this block (in this thread) everything runs on the reference road: Chains layer
    by layer, gradients and updates as written in `tinyvec.optimise.training`, `tv.compile`'s
    step as `withgradient` + `update`."""
    return setting(seam.OFF, True)


def differentiate(
    f: Callable[..., Any], args: tuple[Any, ...], check: Callable[[Any], None] | None
) -> Any:
    """The reference `differentiate` of one model, with its walk and its gradient Tree's
    builder kept in its plan (NotImplemented for anything else)."""
    if len(args) != 1 or is_array(args[0]):
        return NotImplemented
    plan = plan_of(args[0])
    value, grads = gradients_of(f, list(args), plan.trainables, check)
    return value, plan.tree(grads)


def update(state: OptState, model: Any, grads: Any) -> bool:
    """The reference `update` through the written update of the model's plan; False (nothing
    done) when the trees are not of the model's shape or anything else is unusual: the
    reference road then takes the step, and says what is wrong."""
    plan = plan_of(model)
    program = written(state, plan)
    if program is None:
        return False
    gathered = program.gather(grads, state.tree)
    if gathered is None:
        return False
    if state.transform is None:
        # (no hold of Ctrl-C: the written update computes into memory of its own, and its
        # commit finishes itself when interrupted, so the step is all or nothing without it)
        G = last_gradients(plan, program.layout, gathered[0])  # (the gradients in one buffer)
        return program.update(*gathered) if G is None else program.update(*gathered, grad=G)
    if any(g is None for g in gathered[0]):
        return False
    entries = [(*at, g, leaf) for at, g, leaf in zip(plan.trainables, *gathered, strict=True)]
    check_entries(entries)
    with interrupts_deferred():
        commit = Commit()
        new_grads, writes = rewritten(state, entries, model, commit, plan.nodes)
        # the written update even after a sweep, which proposed some steps already (it takes
        # them again, the same numbers): its one check and commit of θ cost less than the
        # reference's check of each parameter. A step refused after a sweep is refused by the
        # reference, which names the first parameter in the order the sweep proposed them.
        try:
            done = program.update(new_grads, gathered[1], writes)
        except NonFiniteStep:
            if not commit.new:
                raise
            done = False
        if not done:
            commit.finish(entries, new_grads, writes)
    return True


def compile(loss: Callable[..., Any], model: Any, state: OptState) -> CompiledStep:  # noqa: A001
    """The seam's name for `compile_step` (``tv.train(..., compile=True)``)."""
    return compile_step(loss, model, state)


seam.install(sys.modules[__name__])
