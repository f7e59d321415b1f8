"""Changing an optimiser state after `setup`, as Optimisers.jl's ``adjust!``, ``freeze!`` and
``thaw!``: `adjust` sets a hyperparameter (η, ρ, λ, …) in the rules of every parameter or of
a subtree, `freeze` stops a subtree's parameters from moving (`Frozen`) and `thaw` lets them
move again. And `rules_by_path`, which `setup` uses for a rule per subtree.

Paths are those of `tv.trainables` and of the state's tree: ``"model"`` (everything),
``"model.layers[2]"`` (a layer and all inside it), ``"model.layers[2].bias"`` (one array).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any

from ..backend import namespace
from .rules import OptimiserChain, Rule
from .training import Leaf, OptState

__all__ = ["Frozen", "adjust", "freeze", "thaw"]


class Frozen(Rule):
    """A frozen parameter's rule: the step is 0, so x stays x, and the optimiser state is kept
    as it was for `thaw`, which puts the original ``rule`` back (Optimisers.jl's frozen Leaf).
    Its layer's step record (``layer.step``, Dense's ``dW``) is then 0: the move it made."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def init(self, x: Any) -> Any:
        return self.rule.init(x)

    def apply(self, state: Any, x: Any, dx: Any) -> tuple[Any, Any]:
        return state, namespace(dx).zeros_like(dx)


def _inner(rule: Rule) -> tuple[Rule, ...]:
    """The rules a rule is made of (a chain's, a frozen one's), or () for a plain rule."""
    if isinstance(rule, OptimiserChain):
        return tuple(rule.rules)
    if isinstance(rule, Frozen):
        return (rule.rule,)
    return ()


def _plain_rules(rule: Rule) -> Iterator[Rule]:
    """The rules holding hyperparameters inside ``rule``, chains and Frozen opened."""
    inner = _inner(rule)
    if not inner:
        yield rule
    for r in inner:
        yield from _plain_rules(r)


def _leaves(subtree: Any) -> list[Any]:
    """Every Leaf of a subtree of the state's tree (a Tree, a tuple of Trees or a Leaf)."""
    found, stack = [], [subtree]
    while stack:
        item = stack.pop()
        if isinstance(item, Leaf):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(item.values()))
        elif isinstance(item, tuple | list):
            stack.extend(reversed(item))
    return found


def _subtree(state: Any, at: Any, what: str) -> Any:
    """The part of ``state``'s tree at path ``at`` (None: all of it), or ``at`` itself when it
    is a part of that tree already (``state.tree.layers[2]``)."""
    if not isinstance(state, OptState):
        raise TypeError(
            f"{what} takes the optimiser state from tv.setup, got {type(state).__name__}"
        )
    if at is None:
        return state.tree
    if isinstance(at, str):
        try:
            return state.tree[at]
        except KeyError as e:
            raise KeyError(
                f"{what}: the optimiser state has nothing at {at!r} ({e.args[0]}); paths look "
                "like 'model.layers[2]' or 'model.layers[2].weight' (see tv.trainables)"
            ) from None
    if not _leaves(at):
        raise TypeError(
            f"{what}: {at!r} is neither a path such as 'model.layers[2]' nor a part of "
            "state.tree holding optimiser leaves"
        )
    return at


def adjust(state: Any, at: Any = None, /, **hyperparameters: float) -> None:
    """Set hyperparameters of the rules in ``state`` in place (Optimisers.jl's ``adjust!``):
    ``tv.adjust(state, eta=0.01)`` sets η in every rule that has an ``eta``, inside
    OptimiserChains and frozen parameters too; ``tv.adjust(state, "model.layers[2]", eta=…)``
    only in that subtree. Each new value is checked as the rule's constructor checks it. A
    name that no rule there has is refused. The rule objects change in place, so a rule you
    also hold (``rule.eta``), or share with another state, shows the new value too. The
    δ-rules read their α from the rules at every step, so they follow (`tinyvec.deltarules`).

    AdamW's weight decay is the chained ``WeightDecay(η λ)``, fixed when it was made: adjust
    ``lam`` for it.

    >>> import tinyvec as tv
    >>> state = tv.setup(tv.OptimiserChain(tv.WeightDecay(1e-4), tv.Momentum(0.1)), tv.Dense(2, 1))
    >>> tv.adjust(state, eta=0.01)
    >>> state.tree["model.weight"].rule
    OptimiserChain(WeightDecay(0.0001), Momentum(0.01, 0.9))
    >>> tv.adjust(state, lr=0.01)
    Traceback (most recent call last):
    ...
    ValueError: adjust: no rule in this state has a hyperparameter 'lr'; they have: eta, lam, rho
    """
    subtree = _subtree(state, at, "adjust")
    if not hyperparameters:
        raise TypeError("adjust: name the hyperparameters to set, e.g. tv.adjust(state, eta=0.01)")
    rules: dict[int, Rule] = {}  # each rule object once, in order
    for leaf in _leaves(subtree):
        for rule in _plain_rules(leaf.rule):
            rules.setdefault(id(rule), rule)
    names = {name for rule in rules.values() for name in vars(rule)}
    for name in hyperparameters:
        if name not in names:
            raise ValueError(
                f"adjust: no rule in this state has a hyperparameter {name!r}; they have: "
                f"{', '.join(sorted(names))}"
            )
    # check every new value before changing any rule: a refused value changes nothing
    changes = []
    for rule in rules.values():
        mine = {k: v for k, v in hyperparameters.items() if k in vars(rule)}
        if mine:
            _check(rule, mine)
            changes.append((rule, mine))
    for rule, mine in changes:
        for name, value in mine.items():
            setattr(rule, name, value)


def _check(rule: Rule, new: dict[str, Any]) -> None:
    """Refuse values the rule's constructor would refuse, by making the rule anew with them
    (every rule of tinyvec's takes its attributes by name); for a constructor that does not,
    at least a number must be finite."""
    try:
        type(rule)(**{**vars(rule), **new})  # raises the rule's own ValueError for a bad value
    except TypeError:  # another constructor (a rule of yours): check what can be checked
        for name, value in new.items():
            if isinstance(value, numbers.Real) and not math.isfinite(value):
                raise ValueError(f"adjust: {name} must be a finite number, got {value!r}") from None


def freeze(state: Any, at: Any = None, /) -> None:
    """Stop the parameters at path ``at`` (a layer, one array, or None: all) from moving, as
    Optimisers.jl's ``freeze!``: each takes a zero step (`Frozen`), its optimiser state kept,
    until `thaw`. The gradient is still computed; the layers record ΔW = 0.

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.Chain(tv.Dense(1, 1, rng=0), tv.Dense(1, 1, rng=1))
    >>> state = tv.setup(tv.Descent(0.1), model)
    >>> tv.freeze(state, "model.layers[0]")
    >>> before = model[0].weight.copy()
    >>> _ = tv.train(tv.mse, model, [(np.ones((1, 4)), np.zeros((1, 4)))], state, progress=False)
    >>> bool((model[0].weight == before).all()), bool((model[0].dW == 0).all())
    (True, True)
    >>> tv.thaw(state)
    """
    for leaf in _leaves(_subtree(state, at, "freeze")):
        if not isinstance(leaf.rule, Frozen):
            leaf.rule = Frozen(leaf.rule)


def thaw(state: Any, at: Any = None, /) -> None:
    """Let the frozen parameters at path ``at`` (None: all) move again with their own rule
    and the optimiser state they had when frozen (Optimisers.jl's ``thaw!``)."""
    for leaf in _leaves(_subtree(state, at, "thaw")):
        if isinstance(leaf.rule, Frozen):
            leaf.rule = leaf.rule.rule
