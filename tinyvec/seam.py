"""The one seam between the reference road and the fast road.

The reference road — `tinyvec.engine`, `tinyvec.layers`, `tinyvec.optimise` — is the
definition of every number tinyvec computes, written to be read. The fast road,
`tinyvec.fast`, computes the same numbers, bit for bit (the suite in ``tests/fast`` proves
it), with the work that repeats at every step done once. It imports the reference road; the
reference road knows it only through this module. Four places offer their work to it first:

=============================================  ===========================================
reference road                                 fast road (NotImplemented: "not this one")
=============================================  ===========================================
``Chain.__call__(x)``                          ``road.chain_call(chain, x)``
``optimise.training.differentiate(f, args)``   ``road.differentiate(f, args, check)``
``optimise.training.update(state, m, grads)``  ``road.update(state, m, grads)`` (True: done)
``train(..., compile=True)``                   ``road.compile(loss, model, state)``
=============================================  ===========================================

When the answer is NotImplemented (or False), the reference code runs as written.
``import tinyvec`` imports `tinyvec.fast`, which calls `install` once. Inside
``with tinyvec.fast.off():`` `road` returns None in that thread, and every step runs on the
reference road alone: to read it, to debug it, and to prove the fast road against it.

The fast road keeps its caches (a model's plan, a state's written update) in one attribute,
`CACHE`, of the model or state; copies, pickles and `fmap` leave it out.
"""

from __future__ import annotations

import contextvars
from typing import Any

CACHE = "_tinyvec_fast"

# Per context (thread, asyncio task), like `tv.no_grad`: one thread's `off()` is not another's.
OFF: contextvars.ContextVar[bool] = contextvars.ContextVar("tinyvec_fast_off", default=False)

# The fast road, once it is installed: written at the import of tinyvec.fast (again only if
# that module is imported again), so it is configuration, not state that steps change.
_INSTALLED: list[Any] = []


def install(road: Any) -> None:
    """Make ``road`` (the module `tinyvec.fast`) the fast road: done by its import."""
    if getattr(road, "__name__", None) != "tinyvec.fast":
        raise ValueError(f"the fast road is the module tinyvec.fast, got {road!r}")
    _INSTALLED[:] = [road]


def road() -> Any:
    """The fast road, or None: inside `tinyvec.fast.off()`, or before it is installed."""
    if not _INSTALLED or OFF.get():
        return None
    return _INSTALLED[0]
