"""`tv.update`'s plain step written out once per model as straight lines (with δ-rules it
steps the gradients they rewrote, committing what they record with it).

For every parameter x with gradient g and optimiser Leaf, the step is what the reference
road's `Commit` computes: ``(state, step) = rule.apply(state, x, g)``,
``x_new, step = descend(x, step)``; then one finiteness check for the whole step (the
reference `finite`, then `refuse_non_finite` naming the parameter) and one commit. Written out for a given model (its
`Plan`) it needs no per-parameter loop, no tuples of entries and no dictionaries of writes
at every step; `update` and `tv.compile` replay it. Anything it does not expect at a step (a
missing gradient, another shape or dtype, a Leaf replaced by something else) makes it return
False before writing anything, and the general code of `update` takes over and says what is
wrong: the written program is never the one that reports an error.

For an elementwise rule (Descent, Momentum, Adam, …: `tinyvec.optimise.rules.elementwise`)
and a small model of NumPy arrays, the program runs the rule once on θ, all parameters laid
end to end, instead of once per parameter: NumPy's cost per call, not per entry, is what a
small model's step spends (`UpdateProgram._flat`). A stack of E models (`tv.stack`) takes
the same step on θ of shape (E, P), member e's parameters end to end in row e.

You can skip this module when reading the optimisers: it is an optimisation of `update`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from operator import is_
from typing import Any

import numpy as np

from ..layers.stack import stack_members
from ..optimise.rules import Rule, elementwise
from ..optimise.training import Leaf, descend, finite, refuse_non_finite
from ..seam import CACHE
from .plan import Plan

__all__ = ["UpdateProgram", "gradient_memory", "last_gradients", "written"]

# the flat step of an elementwise rule (`UpdateProgram._flat`) for models of at most this many
# parameter entries: it saves NumPy calls, which matters for small arrays, and costs a copy of
# the gradient, which matters for large ones (peak memory)
FLAT = 1 << 16


class UpdateProgram:
    """``update(grads, leaves, writes=(), trusted=False) -> bool``: the step of every
    parameter of ``plan`` (in ``plan.trainables`` order), checked and committed with the
    ``writes`` (object, attribute, value) a step transform asks for; False: nothing written
    (``trusted``: the gradients are arrays of the parameters' type, dtype and shape, as the
    model's program makes them, and need no check). And
    ``gather(grads, state_tree) -> (grads, leaves) | None``, which reads the entries of a
    gradient tree and an optimiser tree of the model's shape (None: another shape), and
    ``leaves(state_tree)``, the second half (`tv.compile` has the gradients in order already).
    ``rule``: the optimiser's rule; when it is elementwise and the parameters are
    NumPy arrays of one dtype, the step runs on all of them laid end to end as one vector θ
    (`_flat`)."""

    __slots__ = ("gather", "layout", "leaves", "memory", "source", "update")

    def __init__(self, plan: Plan, rule: Any = None) -> None:
        scope: dict[str, Any] = {
            "concatenate": np.concatenate,
            "Leaf": Leaf,
            "descend": descend,
            "finite": finite,
            "refuse_non_finite": refuse_non_finite,
        }
        values = [getattr(layer, name) for _, layer, name in plan.trainables]
        # a stack of E models (`tv.stack`): θ is (E, P), each member's parameters end to end
        members = stack_members(plan.trainables)
        lead = () if members is None else (members,)
        flat = (
            isinstance(rule, Rule)
            and elementwise(rule)
            and values
            and all(type(x) is np.ndarray and x.dtype == values[0].dtype for x in values)
            and all(x.shape[: len(lead)] == lead for x in values)
            and sum(x.size for x in values) <= FLAT * (members or 1)  # (per member)
        )
        body = self._flat(plan, scope, rule, values, lead) if flat else self._each(plan, scope)
        # the flat step's θ: its dtype, parameter shapes and (E,) of a stack (the layout of a
        # gradient buffer it steps as it is, `gradient_memory`)
        self.layout = (
            plan.layout(values[0].dtype, [x.shape for x in values], lead) if flat else None
        )
        # the flat step's memory for θ_new and the step (`_Buffers`)
        self.memory: _Buffers | None = scope.get("BUFFERS")
        gather, leaves = self._gather(plan, ("G", "S")), self._gather(plan, ("S",))
        self.source = "\n".join([*body, "", *gather, "", *leaves]) + "\n"
        exec(compile(self.source, "<tinyvec update>", "exec"), scope)  # our own generated code
        self.update: Callable[..., bool] = scope["update"]
        self.gather: Callable[[Any, Any], Any] = scope["gather"]
        self.leaves: Callable[[Any], Any] = scope["leaves"]

    @staticmethod
    def _each(plan: Plan, scope: dict[str, Any]) -> list[str]:
        """The step parameter by parameter, for any rule and array library."""
        names, layers = _names(plan, scope)
        for i, (_, layer, name) in enumerate(plan.trainables, 1):
            x = getattr(layer, name)
            scope[f"ARRAY{i}"], scope[f"DT{i}"] = type(x), x.dtype
        lines = [
            "def update(grads, leaves, writes=(), trusted=False):",
            '    """x ← x - step, (state, step) = rule.apply(state, x, ∂L/∂x), for every parameter:',
            "    all computed and checked (finite) before one commit writes them (and the writes,",
            "    (object, attribute, value)). False: nothing written (something unusual: the",
            '    general update handles it)."""',
            *_unpack(names),
        ]
        for (x, L, name), (path, _, _) in zip(names, plan.trainables, strict=True):
            n = x[1:]  # the parameter's number
            lines += [
                f"    # {path}",
                f"    {x} = {L}.{name}",
                f"    if (type({x}) is not ARRAY{n} or type(g{n}) is not ARRAY{n} or type(leaf{n}) is not Leaf",
                f"            or {x}.dtype != DT{n} or g{n}.dtype != DT{n} or g{n}.shape != {x}.shape):",
                "        return False",
                f"    state{n}, step{n} = leaf{n}.rule.apply(leaf{n}.state, {x}, g{n})",
                f"    {x}_new, step{n} = descend({x}, step{n})  # {x} ← {x} - step",
            ]
        paths = [path for path, _, _ in plan.trainables]
        new = [(path, f"{x}_new") for (x, _, _), path in zip(names, paths, strict=True)]
        lines.append(f"    if not ({' and '.join(f'finite({v})' for _, v in new)}):")
        return lines + _refuse(new) + _commit(layers)

    @staticmethod
    def _flat(
        plan: Plan, scope: dict[str, Any], rule: Any, values: list[Any], lead: tuple[int, ...]
    ) -> list[str]:
        """The step of an elementwise rule on θ, every parameter laid end to end: one call of
        the rule, one subtraction and one finiteness check for the whole model, where the
        parameter by parameter step makes a dozen NumPy calls per parameter (PyTorch's
        "foreach" optimisers, in spirit). Each parameter the step commits is a view of the new
        θ; while the model still holds those views (and the Leafs those states), the next step
        starts from the same θ without copying anything. The numbers are the same: every
        entry goes through the same operations.

        A stack of E models (``lead`` = (E,), `tv.stack`): θ is (E, P), row e member e's
        parameters end to end, so that a per-member hyperparameter, (E, 1) there as (E, 1, 1)
        on a weight (`tinyvec.optimise.rules.per_member`), scales each member's row alike."""
        names, layers = _names(plan, scope)
        # the step into memory whose views are made once (one copy, where slicing it would make
        # two NumPy calls per parameter), for a θ of at most FLAT entries; a larger one (a
        # stack's) is sliced: there the copy costs more than the calls
        copied = sum(x.size for x in values) <= FLAT
        scope.update(
            RULE=rule,
            ARRAY=np.ndarray,
            DT=values[0].dtype,
            SHAPES=[x.shape for x in values],
            LAST=[None],  # what the last step committed (see the generated code)
            LEAD=lead,
            lay_end_to_end=_lay_end_to_end,
            part=_part,
            BUFFERS=_Buffers(values[0].dtype, [x.shape for x in values], lead, copied),
            copyto=np.copyto,
        )
        stateless = rule.init(values[0]) is None  # (Descent: nothing to cut into parts)
        n = len(names)
        # a gradient as its part of θ's: a stack's (E, …) as E rows; else axis None flattens
        rows, axis = (f".reshape({lead[0]}, -1)", 1) if lead else ("", None)
        lines = [
            "def update(grads, leaves, writes=(), trusted=False, grad=None):",
            '    """θ ← θ - step, (state, step) = rule.apply(state, θ, ∂L/∂θ), θ every parameter',
            "    laid end to end: computed and checked (finite) before one commit writes it (and",
            "    the writes, (object, attribute, value)). False: nothing written (something",
            "    unusual: the general update handles it). ``grad``: the gradients laid end to",
            '    end already (`gradient_memory`), the parameters\' views of it in ``grads``."""',
            *_unpack(names),
        ]
        lines.append("    if grad is None and not trusted:")
        for (x, _, _), value in zip(names, values, strict=True):
            k = x[1:]
            lines += [
                f"        if type(g{k}) is not ARRAY or g{k}.dtype != DT or g{k}.shape != {value.shape}:",
                "            return False",
            ]
        for x, _, _ in names:
            k = x[1:]
            lines += [
                f"    if type(leaf{k}) is not Leaf or leaf{k}.rule is not RULE:",
                "        return False",
            ]
        xs = ", ".join(x for x, _, _ in names)
        states = ", ".join(f"leaf{x[1:]}.state" for x, _, _ in names)
        lines += [f"    {xs}, = {', '.join(f'{L}.{name}' for _, L, name in names)},"]
        same = [f"{x} is last[{i}]" for i, (x, _, _) in enumerate(names, 2)]
        same += [f"leaf{x[1:]}.state is last[{i}]" for i, (x, _, _) in enumerate(names, 2 + n)]
        lines += [
            "    last = LAST[0]  # (θ, its state, the views of θ and of the state last committed)",
            f"    if last is not None and {' and '.join(same)}:",
            "        theta, state = last[0], last[1]",
            "    else:  # the first step, or a parameter or a state replaced: a new θ",
            f"        theta, state = lay_end_to_end(({xs},), ({states},), SHAPES, DT, LEAD)",
            "        if theta is None:",
            "            return False",
            "    if grad is None:",
            f"        grad = concatenate(({', '.join(f'g{x[1:]}{rows}' for x, _, _ in names)},), {axis})",
            "    state, step = RULE.apply(state, theta, grad)",
            "    if type(step) is not ARRAY or step.dtype != DT or step.shape != theta.shape:",
            "        return False",
            *(["    if state is not None:", "        return False"] if stateless else []),
            "    into = BUFFERS.spare(theta)  # memory for θ_new and the step that no one else holds",
            "    theta_new, step = descend(theta, step, into.theta)  # θ ← θ - step",
            f"    {', '.join(f'{x}_new' for x, _, _ in names)}, = into.params",
        ]
        if copied:
            lines += [
                "    copyto(into.step, step)  # (the parameters' views of both are made once)",
                f"    {', '.join(f'step{x[1:]}' for x, _, _ in names)}, = into.steps",
            ]
        new, offset = [], 0
        for (x, _, _), value, (path, _, _) in zip(names, values, plan.trainables, strict=True):
            k, shape = x[1:], value.shape
            end = offset + value.size // (lead[0] if lead else 1)  # (a stack's: θ's columns)
            new.append((path, f"{x}_new"))
            if not copied:  # each parameter's part of the step (a stack's: of θ's rows)
                part = f"[{':, ' if lead else ''}{offset}:{end}]"
                part += f".reshape({shape})" if len(shape) != 1 else ""
                lines.append(f"    step{k} = step{part}")
            if stateless:
                lines.append(f"    state{k} = None  # {path}")
            else:
                rows = ", True" if lead else ""
                lines.append(
                    f"    state{k} = part(state, {offset}, {end}, {shape}{rows})  # {path}"
                )
            offset = end
        last = ", ".join([f"{x}_new" for x, _, _ in names] + [f"state{x[1:]}" for x, _, _ in names])
        views = (f"LAST[0] = (theta_new, state, {last})",)
        lines.append("    if not finite(theta_new):")
        return lines + _refuse(new) + _commit(layers, views)

    @staticmethod
    def _gather(plan: Plan, trees: tuple[str, ...]) -> list[str]:
        """Read the gradient tree G and the optimiser tree S (``trees``: both, or S alone) as
        `tinyvec.layers.base.match` does, refusing (None) any other shape: a non-dict node, a
        missing entry, a tuple of layers of another length or type."""
        if trees == ("G", "S"):
            head = [
                "def gather(grads, tree):",
                '    """(the gradients, the Leafs) in the order of the parameters; None: the trees',
                '    do not have the model\'s shape."""',
            ]
            lines = ["    G0, S0 = grads, tree"]
        else:
            head = [
                "def leaves(tree):",
                '    """The Leafs in the order of the parameters; None: the tree does not have the',
                '    model\'s shape."""',
            ]
            lines = ["    S0 = tree"]

        def each(template: str, sep: str) -> str:  # the template for every tree, joined
            return sep.join(template.format(T=T) for T in trees)

        for i, node in enumerate(plan.nodes):
            lines += [
                f"    if {each(f'not isinstance({{T}}{i}, dict)', ' or ')}:",
                "        return None",
            ]
            for attr, kids, many in node.slots:
                if many:
                    lines += [
                        f"    {each('{T}s', ', ')} = {each(f'{{T}}{i}[{attr!r}]', ', ')}",
                        f"    if {each(f'type({{T}}s) is not tuple or len({{T}}s) != {len(kids)}', ' or ')}:",
                        "        return None",
                    ]
                    lines += [
                        f"    {each(f'{{T}}{k}', ', ')} = {each(f'{{T}}s[{j}]', ', ')}"
                        for j, k in enumerate(kids)
                    ]
                else:
                    k = kids[0]
                    lines.append(
                        f"    {each(f'{{T}}{k}', ', ')} = {each(f'{{T}}{i}[{attr!r}]', ', ')}"
                    )
        where = {id(node.layer): i for i, node in reversed(list(enumerate(plan.nodes)))}
        entries: dict[str, list[str]] = {T: [] for T in trees}
        for _, layer, name in plan.trainables:
            for T in trees:
                entries[T].append(f"{T}{where[id(layer)]}[{name!r}]")
        lists = ", ".join("[" + ", ".join(entries[T]) + "]" for T in trees)
        # (subscripts, not .get: a Tree's .get is the slower call; a missing entry is a tree
        # of another shape too)
        body = [f"    {line}" for line in [*lines, f"    return {lists}"]]
        return [*head, "    try:", *body, "    except LookupError:", "        return None"]


def _names(plan: Plan, scope: dict[str, Any]) -> tuple[list[tuple[str, str, str]], dict]:
    """x1, x2, … for the parameters with their layer's name (layer1, …, put in ``scope``) and
    attribute; and each layer's name with its (attribute, x) pairs, and the layer."""
    names: list[tuple[str, str, str]] = []
    layers: dict[int, tuple[str, list[tuple[str, str]], Any]] = {}
    for i, (_, layer, name) in enumerate(plan.trainables, 1):
        if id(layer) not in layers:
            L = f"layer{len(layers) + 1}"
            scope[L], layers[id(layer)] = layer, (L, [], layer)
        L, params, _ = layers[id(layer)]
        params.append((name, f"x{i}"))
        names.append((f"x{i}", L, name))
    return names, layers


def _unpack(names: list[tuple[str, str, str]]) -> list[str]:
    return [
        f"    {', '.join(f'g{x[1:]}' for x, _, _ in names)}, = grads",
        f"    {', '.join(f'leaf{x[1:]}' for x, _, _ in names)}, = leaves",
    ]


def _refuse(new: list[tuple[str, str]]) -> list[str]:
    """The body of ``if not finite(…):``: raise `NonFiniteStep`, naming the parameter."""
    return [
        "        refuse_non_finite([",
        *(f"            ({path!r}, {value})," for path, value in new),
        "        ])",
    ]


def _commit(layers: dict, extra: tuple[str, ...] = ()) -> list[str]:
    """Each layer's step record, then every parameter and its state (and ``extra``)."""
    lines = ["    # the commit: each layer's step record, then every parameter and its state"]
    writes = []
    for L, params, layer in layers.values():
        record = ", ".join(f'"{name}": step{x[1:]}' for name, x in params)
        stepped = {name for name, _ in params}
        if all(
            getattr(layer, p, None) is None or p in stepped
            for p in getattr(type(layer), "params", ())
        ):
            lines.append(f"    {L}_step = {{{record}}}  # (every parameter of {L} steps)")
        else:  # the step records of the others are kept
            lines.append(f'    {L}_step = {{**(getattr({L}, "step", None) or {{}}), {record}}}')
        writes.append(f"{L}.step = {L}_step")
        for name, x in params:
            writes += [f"{L}.{name} = {x}_new", f"leaf{x[1:]}.state = state{x[1:]}"]
    writes += [*extra, "for obj, name, value in writes:", "    setattr(obj, name, value)"]
    # a write cannot be half done, but an exception may land between two (a Ctrl-C, which
    # the fast road does not hold back, or a signal handler of your own): every write is then
    # repeated before it propagates, so all of them are done
    lines += ["    try:", *(f"        {w}" for w in writes), "    except BaseException:"]
    return [*lines, *(f"        {w}" for w in writes), "        raise", "    return True"]


def gradient_memory(plan: Plan, layout: Any) -> tuple[Any, ...]:
    """(G, each parameter's view of it): memory for one backward pass's gradients of ``plan``'s
    model, laid out (``layout``: dtype, shapes, and ``()``, or a stack's ``(E,)``) as the flat
    update's θ, so that the update steps G as it is instead of concatenating the gradients at
    every step. It hands out a buffer that nothing else holds (no reference to it or to any
    of its views: a gradient tree kept from the step before, a rule that kept the gradient in
    its state, a parameter's Tensor whose ``.grad`` it is); a held one is left to its holders
    and a new one made. The one written last is written again while it is free; the plan
    keeps a second one for a loop that holds one step's gradients while it computes the next
    (``_, grads = tv.withgradient(...)`` rebinds ``grads`` only afterwards), so the two take
    turns. ``plan.memory`` says which was written last (`last_gradients`)."""
    kept = plan.memory
    if kept is None or kept[0] is not layout:  # (the first time, or another layout)
        kept = (layout, _Buffers(layout[0], layout[1], layout[2], copied=False), None)
    last = kept[2]
    if last is not None and last.free():  # (the usual case: the same memory, warm in cache)
        into = last
    else:  # the other buffer
        into = kept[1].spare(None if last is None else last.theta)
    plan.memory = (layout, kept[1], into)
    return into.theta, into.params


def last_gradients(plan: Plan, layout: Any, grads: list[Any]) -> Any:
    """G when ``grads`` are the very views of the buffer `gradient_memory` gave last, laid out
    as ``layout`` (an update's θ; layouts are `Plan.layout`'s, one object for equal ones),
    else None."""
    kept = plan.memory
    if kept is None or kept[2] is None or kept[0] is not layout:
        return None
    views = kept[2].params
    if len(grads) != len(views) or not all(map(is_, grads, views)):
        return None
    return kept[2].theta


def _flat_array(dtype: Any, shapes: list[tuple[int, ...]], lead: tuple[int, ...]) -> Any:
    """Memory for the parameters of ``shapes`` end to end: (P,), or a stack's (E, P)."""
    E = lead[0] if lead else 1
    return np.empty((*lead, sum(math.prod(shape) for shape in shapes) // E), dtype)


def _views(flat: Any, shapes: list[tuple[int, ...]], lead: tuple[int, ...]) -> tuple[Any, ...]:
    """Each parameter's view of ``flat``, the parameters of ``shapes`` laid end to end (a
    stack's: along the rows of (E, P))."""
    E = lead[0] if lead else 1
    views, offset = [], 0
    for shape in shapes:
        views.append(flat[..., offset : offset + math.prod(shape) // E].reshape(shape))
        offset += math.prod(shape) // E
    return tuple(views)


class _Buffers:
    """Memory for the flat step's θ_new and step, reused: a step writes them into a set of
    two flat arrays whose views for each parameter are made once (slicing θ_new and the step
    into a dozen parameters costs more, on a small model, than computing them), and the commit
    shows that set's views as the parameters and the step records. The next step writes the
    other set, and the one after that this one again, while nothing but these sets holds any
    of its arrays or views (`spare`): a parameter or a record that a user, a Recorder or the
    optimiser state kept is never written into; its set is left to them and a new one made."""

    __slots__ = ("copied", "dtype", "lead", "sets", "shapes")

    def __init__(
        self, dtype: Any, shapes: list[tuple[int, ...]], lead: tuple[int, ...], copied: bool
    ) -> None:
        self.dtype, self.shapes, self.lead, self.copied = dtype, shapes, lead, copied
        self.sets: list[_Set] = []

    def spare(self, theta: Any) -> _Set:
        """A set that only this object holds and whose θ is not ``theta`` (the step's input)."""
        for held in self.sets:
            if held.theta is not theta and held.free():
                return held
        made = _Set(self.dtype, self.shapes, self.lead, self.copied)
        # kept: θ's set (the next step's spare) and the new one; a set held elsewhere is theirs
        self.sets = [held for held in self.sets if held.theta is theta] + [made]
        return made


class _Set:
    """θ_new's and the step's memory (``theta``, ``step``: None when the step is not copied)
    and each parameter's views of them (``params``, ``steps``); ``free()``: nothing else holds
    any of them."""

    __slots__ = ("arrays", "held", "params", "step", "steps", "theta")

    def __init__(
        self, dtype: Any, shapes: list[tuple[int, ...]], lead: tuple[int, ...], copied: bool
    ) -> None:
        self.theta = _flat_array(dtype, shapes, lead)
        self.step = _flat_array(dtype, shapes, lead) if copied else None
        self.params = _views(self.theta, shapes, lead)
        self.steps = _views(self.step, shapes, lead) if copied else ()
        self.arrays = (self.theta, *self.params, *self.steps)
        self.arrays += (self.step,) if copied else ()
        # the references this set makes itself (its attributes, each view's base)
        self.held = sum(map(sys.getrefcount, self.arrays))

    def free(self) -> bool:  # (what __init__ counted: no one else's)
        return sum(map(sys.getrefcount, self.arrays)) == self.held


def _lay_end_to_end(
    xs: tuple[Any, ...],
    states: tuple[Any, ...],
    shapes: list[tuple[int, ...]],
    dtype: Any,
    lead: tuple[int, ...],
) -> tuple[Any, Any]:
    """θ, the parameters laid end to end (a stack's, ``lead`` = (E,): member by member, as
    rows), and its state, the parameters' states laid end to end alike (arrays concatenated,
    equal numbers kept, a stack's per-member numbers too); (None, None) when they do not fit
    (another array type, dtype or shape, states that differ otherwise)."""
    if any(
        type(x) is not np.ndarray or x.dtype != dtype or x.shape != shape
        for x, shape in zip(xs, shapes, strict=True)
    ):
        return None, None
    try:
        state = _stack(states, shapes, lead)
    except _Unfit:
        return None, None
    return np.concatenate([x.reshape(*lead, -1) for x in xs], axis=-1), state


class _Unfit(Exception):
    pass


def _stack(states: Any, shapes: list[tuple[int, ...]], lead: tuple[int, ...]) -> Any:
    first = states[0]
    if type(first) is np.ndarray and lead and first.shape == lead:  # per-member numbers (E,)
        if all(type(s) is np.ndarray and np.array_equal(s, first) for s in states):
            return first  # (as Adam's β₁ᵗ, one per member: the same in every parameter's state)
        raise _Unfit
    if type(first) is np.ndarray:
        if any(
            type(s) is not np.ndarray or s.shape != shape or s.dtype != first.dtype
            for s, shape in zip(states, shapes, strict=True)
        ):
            raise _Unfit
        return np.concatenate([s.reshape(*lead, -1) for s in states], axis=-1)
    if type(first) is tuple:
        if any(type(s) is not tuple or len(s) != len(first) for s in states):
            raise _Unfit
        return tuple(_stack(column, shapes, lead) for column in zip(*states, strict=True))
    if first is None or type(first) in (int, float, bool):
        if all(type(s) is type(first) and s == first for s in states):
            return first
    raise _Unfit


def _part(state: Any, start: int, end: int, shape: tuple[int, ...], rows: bool = False) -> Any:
    """One parameter's state: its entries of θ's state (numbers as they are). ``rows``: a
    stack's θ, (E, P), whose state may hold per-member numbers too, a vector (E,) kept as is."""
    if type(state) is np.ndarray and rows:
        return state[:, start:end].reshape(shape) if state.ndim == 2 else state
    if type(state) is np.ndarray:
        return state[start:end].reshape(shape)
    if type(state) is tuple:
        return tuple(_part(s, start, end, shape, rows) for s in state)
    return state


def written(state: Any, plan: Plan) -> UpdateProgram | None:
    """The UpdateProgram of optimiser ``state`` for ``plan``: kept on the state (in the seam's
    `CACHE` attribute) while the plan and the state's tree are the same, else written now.
    None: it cannot be written (a parameter that is not an array, say); the reference road
    then takes every step, and says what is wrong."""
    kept = getattr(state, CACHE, None)
    if kept is None or kept[0] is not plan or kept[1] is not state.tree:
        try:
            program = UpdateProgram(plan, state.rule)
        except Exception:
            program = None
        kept = (plan, state.tree, program)
        setattr(state, CACHE, kept)
    return kept[2]
