"""`tv.update`'s plain step (no δ-rules) written out once per model as straight lines.

For every parameter x with gradient g and optimiser Leaf, the step is what `PendingStep`
computes: ``(state, step) = rule.apply(state, x, g)``, ``x_new = x - step``; then one
finiteness check for the whole step and one commit. Written out for a given model (its
`Plan`) it needs no per-parameter loop, no tuples of entries and no dictionaries of records
at every step; `update` and `tv.compile` replay it. Anything it does not expect at a step (a
missing gradient, another shape or dtype, a Leaf replaced by something else) makes it return
False before writing anything, and the general code of `update` takes over and says what is
wrong: the written program is never the one that reports an error.

You can skip this module when reading the optimisers: it is an optimisation of `update`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..engine.plan import Plan

__all__ = ["UpdateProgram"]

SMALL = 1 << 14  # parameters of at most this many entries are checked for finiteness together


class UpdateProgram:
    """``update(grads, leaves) -> bool``: the step of every parameter of ``plan`` (in
    ``plan.trainables`` order), checked and committed; False: nothing written. And
    ``gather(grads, state_tree) -> (grads, leaves) | None``, which reads the entries of a
    gradient tree and an optimiser tree of the model's shape (None: another shape; `tv.compile`
    has the gradients in order already). ``helpers``: the Leaf class, ``refuse_non_finite``
    and ``norm2`` (Σ x² of an array that is not NumPy's)."""

    __slots__ = ("gather", "source", "update")

    def __init__(self, plan: Plan, helpers: dict[str, Any]) -> None:
        scope: dict[str, Any] = {
            "isfinite": math.isfinite,
            "vdot": np.vdot,
            "concatenate": np.concatenate,
            **helpers,
        }
        lines = [*self._update(plan, scope), "", *self._gather(plan)]
        self.source = "\n".join(lines) + "\n"
        exec(compile(self.source, "<tinyvec update>", "exec"), scope)  # our own generated code
        self.update: Callable[[Any, Any], bool] = scope["update"]
        self.gather: Callable[[Any, Any], Any] = scope["gather"]

    @staticmethod
    def _update(plan: Plan, scope: dict[str, Any]) -> list[str]:
        names: list[tuple[str, str, str]] = []  # (x1, x2, …, its layer's name, attribute)
        layers: dict[int, tuple[str, list[tuple[str, str]]]] = {}  # a name per layer
        small, norms = [], []  # (Σ x²: NumPy's small arrays together, the others one by one)
        for i, (_, layer, name) in enumerate(plan.trainables, 1):
            x = getattr(layer, name)
            if id(layer) not in layers:
                L = f"layer{len(layers) + 1}"
                scope[L], layers[id(layer)] = layer, (L, [])
            L, params = layers[id(layer)]
            params.append((name, f"x{i}"))
            names.append((f"x{i}", L, name))
            scope[f"ARRAY{i}"], scope[f"DT{i}"] = type(x), x.dtype
            if type(x) is not np.ndarray:
                norms.append(f"norm2(x{i}_new)")
            elif x.size > SMALL:
                norms.append(f"vdot(x{i}_new, x{i}_new)")
            else:
                small.append(f"x{i}_new.ravel()")
        gs = ", ".join(f"g{n[1:]}" for n, _, _ in names)
        leaves = ", ".join(f"leaf{n[1:]}" for n, _, _ in names)
        lines = [
            "def update(grads, leaves):",
            '    """x ← x - step, (state, step) = rule.apply(state, x, ∂L/∂x), for every parameter:',
            "    all computed and checked (finite) before one commit writes them. False: nothing",
            '    written (something unusual: the general update handles it)."""',
            f"    {gs}, = grads",
            f"    {leaves}, = leaves",
        ]
        for (x, L, name), (path, _, _) in zip(names, plan.trainables, strict=True):
            n = x[1:]  # the parameter's number
            lines += [
                f"    # {path}",
                f"    {x} = {L}.{name}",
                f"    if (type({x}) is not ARRAY{n} or type(g{n}) is not ARRAY{n} or type(leaf{n}) is not Leaf",
                f"            or {x}.dtype is not DT{n} or g{n}.dtype is not DT{n} or g{n}.shape != {x}.shape):",
                "        return False",
                f"    state{n}, step{n} = leaf{n}.rule.apply(leaf{n}.state, {x}, g{n})",
                f"    {x}_new = {x} - step{n}  # {x} ← {x} - step",
                f"    if {x}_new.dtype is not DT{n}:",
                "        return False",
            ]
        if small:  # one copy of the small ones costs less than a reduction each
            lines.append(f"    small = concatenate(({', '.join(small)},))")
            norms.insert(0, "vdot(small, small)")
        # Σ x² by BLAS is NumPy's cheapest reduction; NaN and ±inf propagate into the total, so
        # only a non-finite total needs the search (an overflow at |x| ~ 1e154 finds nothing)
        lines.append(f"    total = {' + '.join(norms)}")
        lines += [
            "    if not isfinite(float(total)):",
            "        refuse_non_finite([",
            *(
                f"            ({path!r}, {x}_new),"
                for (x, _, _), (path, _, _) in zip(names, plan.trainables, strict=True)
            ),
            "        ])",
            "    # the commit: each layer's step record, then every parameter and its state",
        ]
        writes = []
        for L, params in layers.values():
            record = ", ".join(f'"{name}": step{x[1:]}' for name, x in params)
            lines.append(f'    {L}_step = {{**(getattr({L}, "step", None) or {{}}), {record}}}')
            writes.append(f"{L}.step = {L}_step")
            for name, x in params:
                writes += [f"{L}.{name} = {x}_new", f"leaf{x[1:]}.state = state{x[1:]}"]
        # a write cannot be half done, but an exception (a signal handler of your own) may land
        # between two: every write is repeated before it propagates, so all of them are done
        lines += ["    try:", *(f"        {w}" for w in writes), "    except BaseException:"]
        lines += [*(f"        {w}" for w in writes), "        raise", "    return True"]
        return lines

    @staticmethod
    def _gather(plan: Plan) -> list[str]:
        """Read the gradient and the optimiser tree as `Plan.zip` does, refusing (None) any
        other shape: a non-dict node, a tuple of layers of another length or type."""
        lines = [
            "def gather(grads, tree):",
            '    """(the gradients, the Leafs) in the order of the parameters; None: the trees',
            '    do not have the model\'s shape."""',
        ]
        for i, node in enumerate(plan.nodes):
            if i == 0:
                lines += ["    G0, S0 = grads, tree"]
            lines += [
                f"    if not isinstance(G{i}, dict) or not isinstance(S{i}, dict):",
                "        return None",
            ]
            for attr, kids, many in node.slots:
                if many:
                    lines += [
                        f"    Gs, Ss = G{i}.get({attr!r}), S{i}.get({attr!r})",
                        f"    if type(Gs) is not tuple or type(Ss) is not tuple or len(Gs) != {len(kids)} or len(Ss) != {len(kids)}:",
                        "        return None",
                    ]
                    lines += [f"    G{k}, S{k} = Gs[{j}], Ss[{j}]" for j, k in enumerate(kids)]
                else:
                    lines.append(
                        f"    G{kids[0]}, S{kids[0]} = G{i}.get({attr!r}), S{i}.get({attr!r})"
                    )
        where = {id(node.layer): i for i, node in reversed(list(enumerate(plan.nodes)))}
        gs, leaves = [], []
        for _, layer, name in plan.trainables:
            i = where[id(layer)]
            gs.append(f"G{i}.get({name!r})")
            leaves.append(f"S{i}.get({name!r})")
        lines += [f"    return [{', '.join(gs)}], [{', '.join(leaves)}]"]
        return lines
