"""`tv.stack` and `tv.unstack`: E models of one architecture trained as one stack (a leading
member axis on every parameter, `tinyvec.layers.stack`), each member exactly as alone, with
its optimiser state.

>>> import numpy as np, tinyvec as tv
>>> models = [tv.Chain(tv.Dense(1, 4, tv.tanh, rng=s), tv.Dense(4, 1, rng=s)) for s in range(3)]
>>> model = tv.stack(models)
>>> model
Chain(Dense(1 => 4, tanh, members=3), Dense(4 => 1, members=3))
>>> state = tv.setup(tv.Descent([0.1, 0.05, 0.02]), model)  # η per member
>>> x, y = np.linspace(-1, 1, 8)[None, :], np.zeros((1, 8))
>>> loss, grads = tv.withgradient(lambda m: tv.mse(m(x), np.stack([y] * 3), members=True), model)
>>> loss.shape, grads.layers[0].weight.shape
((3,), (3, 4, 1))
>>> tv.update(state, model, grads)
>>> member, member_state = tv.unstack(model, state)[2]
>>> member_state.rule
Descent(0.02)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import is_array, namespace
from ..layers.base import nodes, trainables
from ..layers.stack import member_walks, stack_members, stack_models, unstack_model
from .rules import Rule, member_of
from .training import OptState, setup

__all__ = ["stack", "unstack"]


def _stack(values: list[Any], where: str) -> Any:
    """The E members' values of one entry as the stack's: arrays stacked on a new leading axis,
    numbers kept where all are equal and made a per-member vector (E,) otherwise, tuples,
    lists, dicts and rule objects entry by entry; anything else must be the same for all."""
    first = values[0]
    if is_array(first):
        return namespace(first).stack(values)
    if isinstance(first, numbers.Real) and not isinstance(first, bool):
        if all(v == first for v in values):
            return first
        vector = np.array([float(v) for v in values])
        vector.flags.writeable = False
        return vector
    if isinstance(first, tuple | list) and all(len(v) == len(first) for v in values):
        return type(first)(
            _stack(list(c), f"{where}[{i}]") for i, c in enumerate(zip(*values, strict=True))
        )
    if isinstance(first, dict) and all(v.keys() == first.keys() for v in values):
        return {k: _stack([v[k] for v in values], f"{where}[{k!r}]") for k in first}
    if isinstance(first, Rule) or hasattr(first, "rewrite"):  # a rule or a δ-rule
        if any(type(v) is not type(first) for v in values):
            raise ValueError(f"tv.stack: {where}: rules of different kinds, {values}")
        new = object.__new__(type(first))
        for name in vars(first):
            setattr(new, name, _stack([vars(v)[name] for v in values], f"{where}.{name}"))
        return new
    if any(not (v is first or v == first) for v in values):
        raise ValueError(f"tv.stack: {where} differs between the members: {values}")
    return first


def _member(value: Any, e: int) -> Any:
    """Member ``e``'s part of a stack's optimiser state entry (see `_stack`)."""
    if type(value) is np.ndarray and value.ndim == 1:  # a per-member number (Adam's β₁ᵗ)
        return float(value[e])
    if is_array(value):
        return value[e, ...]
    if isinstance(value, tuple | list):
        return type(value)(_member(v, e) for v in value)
    if isinstance(value, dict):
        return {k: _member(v, e) for k, v in value.items()}
    return value


def _delta_member(rule: Any, e: int) -> Any:
    new = object.__new__(type(rule))
    for name, value in vars(rule).items():
        setattr(new, name, member_of(value, e))
    return new


def stack(models: Sequence[Any], states: Sequence[OptState] | None = None) -> Any:
    """``tv.stack(models)``: E models of one architecture as one model whose every parameter
    has a leading member axis E (Dense: weight (E, out, in), bias (E, out)). It takes inputs
    (E, in, B), or (in, B) shared by all members, and gives (E, out, B); a loss of it is the E
    member losses (``tv.mse(ŷ, y, members=True)``), and `tv.gradient` gives each member
    exactly its own gradient. ``tv.setup(rule, stack)`` takes rules and δ-rules whose
    hyperparameters may be vectors of E values (``tv.Descent([0.1, 0.05])``).

    ``tv.stack(models, states)``: also their optimiser states (one `tv.setup` per model, the
    same kind of rule and δ-rules), as ``(stack, state)``, the hyperparameters that differ
    made per-member vectors. `tv.unstack` is its inverse.
    """
    model = stack_models(models)
    if states is None:
        return model
    if len(states) != len(models) or not all(isinstance(s, OptState) for s in states):
        raise TypeError(f"tv.stack(models, states): one tv.setup state per model, got {states!r}")
    rule = _stack([s.rule for s in states], "the rule")
    deltas = [_stack([s.delta[i] for s in states], "δ-rule") for i in range(len(states[0].delta))]
    if any(len(s.delta) != len(deltas) for s in states):
        raise ValueError("tv.stack: the models' states have different δ-rules")
    state = setup(rule, model, delta=deltas or None)
    _fill(state, model, states, lambda parts, where: _stack(parts, f"state {where}"))
    return model, state


def _fill(state: OptState, model: Any, parts: Sequence[OptState], combine: Any) -> None:
    """Set every Leaf's state of ``state`` (and a δ-rule's memory) from those of ``parts``."""
    for path, _, _ in trainables(model):
        state.tree[path].state = combine([p.tree[path].state for p in parts], path)
    memory = getattr(state.transform, "memory", None)
    if memory is not None:
        state.transform.memory = combine([p.transform.memory for p in parts], "memory")


def unstack(model: Any, state: OptState | None = None, *, into: Sequence[Any] = ()) -> list[Any]:
    """``tv.unstack(stack)``: the E members of a stack (`tv.stack`) as ordinary models, with
    their parameters, the records of the last pass and the steps of the last update.
    ``tv.unstack(stack, state)``: E pairs (model, optimiser state), each state as `tv.setup`
    would make it for that member alone (its own hyperparameters), holding its part of the
    stack's state.

    ``into``: the E members of an earlier ``tv.unstack(stack)``, made to hold the stack's
    parameters, records and steps now, in place, rather than E new models: for looking at
    each member after every step (a recorder, a monitor), as its run alone would be looked
    at, without building and planning E models per step.

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.stack([tv.Dense(2, 1, rng=s) for s in range(3)])
    >>> alone = tv.unstack(model)
    >>> model.weight = model.weight * 2  # (as a step would)
    >>> [m is a for m, a in zip(tv.unstack(model, into=alone), alone)]
    [True, True, True]
    >>> np.array_equal(alone[1].weight, model.weight[1])
    True
    """
    walked = nodes(model)
    E = stack_members(trainables(model, walked))
    if E is None:
        raise ValueError(f"tv.unstack takes a stack of models (tv.stack), got {model!r}")
    if into and len(into) != E:
        raise ValueError(f"tv.unstack(stack, into=…): {len(into)} models for {E} members")
    theirs = member_walks(walked, into) if into else [None] * E  # (all checked first)
    out = []
    for e in range(E):
        member = unstack_model(model, e, walked, into[e] if into else None, theirs[e])
        if state is None:
            out.append(member)
            continue
        if not isinstance(state, OptState):
            raise TypeError(f"tv.unstack(stack, state): state must be an OptState, got {state!r}")
        alone = setup(
            member_of(state.rule, e), member, [_delta_member(d, e) for d in state.delta] or None
        )
        _fill(alone, member, [state], lambda parts, where, e=e: _member(parts[0], e))
        out.append((member, alone))
    return out
