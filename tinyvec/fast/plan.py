"""The plan of a model: its reference walk (`tinyvec.layers.base.nodes`), made once and kept
while the model keeps its structure, with what the fast road writes for it.

- ``nodes``, ``trainables``: the walk and the parameters, as the reference road lists them;
- ``programs``: the model's written forward and backward passes by kind of input
  (`tinyvec.fast.chain`);
- `tree`: the gradient Tree of a list of values, written out once as straight lines.

Before each use `Plan.valid` checks, cheaply, that the model still has the structure it was
made from: the same child objects in every container, the same parameters present, and the
same objects in the attributes a layer names as its ``structure`` (Dense's σ, a
SkipConnection's connection). Replacing a layer (``chain.layers = ...``), a list entry or an
activation, or setting a parameter to None, makes a new plan; replacing a parameter's array
by another (what every update does) does not: each written program checks the type, dtype
and shape of the arrays it is given, and leaves any other to the reference road.

    >>> import tinyvec as tv
    >>> model = tv.Chain(tv.Dense(2, 3, rng=0), tv.SkipConnection(tv.Dense(3, 3, rng=1), tv.add))
    >>> plan = Plan(model)
    >>> [path for path, _, _ in plan.trainables]
    ['model.layers[0].weight', 'model.layers[0].bias', 'model.layers[1].layer.weight', 'model.layers[1].layer.bias']
    >>> plan.valid(model)
    True
    >>> model.layers = model.layers[:1]
    >>> plan.valid(model)
    False
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..layers.base import Tree, nodes, trainables
from ..seam import CACHE


class Plan:
    """The layers and parameters of ``model`` (see the module text)."""

    __slots__ = (
        "_check",
        "_tree",
        "checks",
        "layouts",
        "memory",
        "model",
        "nodes",
        "programs",
        "trainables",
    )

    def __init__(self, model: Any) -> None:
        self.model = model
        self.nodes = nodes(model)
        self.trainables = trainables(model, self.nodes)
        # the written programs by kind of input (`tinyvec.fast.chain`): they belong to this
        # structure, so a new plan starts without them
        self.programs: dict[Any, Any] = {}
        # the gradient buffers of the model or stack (`tinyvec.fast.update_program.
        # gradient_memory`): their layout, the two of them, and the one written last
        self.memory: tuple[Any, Any, Any] | None = None
        self.layouts: list[Any] = []  # (`layout`)
        self._tree: Callable[[list[Any]], Tree] | None = None  # `tree`, once written
        self._check: Callable[[], bool] | None = None  # `valid`'s checks, once written
        # (layer, attribute, kind, what `valid` compares): a parameter ("present": whether it
        # holds an array), a child or a `structure` attribute ("is": the same object), a list
        # of layers ("list": the same list with the same items)
        self.checks: list[tuple[Any, str, str, Any]] = []
        for node in self.nodes:
            layer = node.layer
            for name in node.names:
                self.checks.append((layer, name, "present", name in node.present))
            for attr in getattr(layer, "structure", ()):
                self.checks.append((layer, attr, "is", getattr(layer, attr, None)))
            for attr in getattr(layer, "children", ()):
                value = getattr(layer, attr)
                if isinstance(value, list):  # (a list can change in place)
                    self.checks.append((layer, attr, "list", (value, tuple(value))))
                else:
                    self.checks.append((layer, attr, "is", value))

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # a copied or pickled plan leaves its programs behind (they are written again)
        state = {name: getattr(self, name) for name in self.__slots__}
        state.update(programs={}, _tree=None, _check=None, memory=None)
        return None, state

    def layout(self, dtype: Any, shapes: list[tuple[int, ...]], lead: tuple[int, ...]) -> Any:
        """(dtype, shapes, lead), the layout of a flat buffer of the parameters, as one object
        for equal layouts: the programs written for this plan compare theirs by identity at
        every step."""
        new = (dtype, shapes, lead)
        for known in self.layouts:
            if known == new:
                return known
        self.layouts.append(new)
        return new

    def valid(self, model: Any) -> bool:
        """Whether ``model`` still has the structure this plan was made from (cheap: one
        attribute read per parameter and per child attribute, written out as straight lines
        the first time, since every step asks)."""
        if model is not self.model:
            return False
        if self._check is None:
            self._check = self._write_check()
        return self._check()

    def _write_check(self) -> Callable[[], bool]:
        scope: dict[str, Any] = {}
        lines = ["def check():", "  try:"]  # (a missing attribute: another structure)
        for i, (layer, attr, kind, seen) in enumerate(self.checks):
            scope[f"L{i}"] = layer
            value = f"L{i}.{attr}"
            if kind == "present":  # a parameter: present or None
                test = f"{value} is {'' if seen else 'not '}None"
            elif kind == "is":
                scope[f"S{i}"] = seen
                test = f"{value} is not S{i}"
            else:  # a list of layers: the same list, with the same layers in it
                scope[f"S{i}"] = seen[0]
                scope.update({f"I{i}_{j}": item for j, item in enumerate(seen[1])})
                same = "".join(f" or V[{j}] is not I{i}_{j}" for j in range(len(seen[1])))
                lines.append(f"    V = {value}")
                test = f"V is not S{i} or len(V) != {len(seen[1])}{same}"
            lines += [f"    if {test}:", "      return False"]
        lines += ["  except AttributeError:", "    return False", "  return True"]
        exec("\n".join(lines), scope)  # our own generated code
        return scope["check"]

    def tree(self, values: list[Any]) -> Tree:
        """``mirror``'s Tree with ``values[i]`` at the i-th of ``trainables``: what
        `withgradient` builds at every step, so written out once per plan as straight lines.

        >>> import tinyvec as tv
        >>> plan = Plan(tv.Chain(tv.Dense(2, 1), tv.Dense(1, 1, bias=False)))
        >>> plan.tree([1, 2, 3])
        {'layers': ({'weight': 1, 'bias': 2}, {'weight': 3, 'bias': None})}
        """
        if self._tree is None:
            index = {(id(layer), name): i for i, (_, layer, name) in enumerate(self.trainables)}
            lines = ["def tree(v):"]
            for j in reversed(range(len(self.nodes))):  # (a node's children come after it)
                node = self.nodes[j]
                items = [
                    f"{name!r}: v[{index[id(node.layer), name]}]"
                    if name in node.present
                    else f"{name!r}: None"
                    for name in node.names
                ]
                for attr, kids, many in node.slots:
                    kid = "(" + "".join(f"t{k}, " for k in kids) + ")" if many else f"t{kids[0]}"
                    items.append(f"{attr!r}: {kid}")
                items += [f"{attr!r}: None" for attr in node.empty]
                lines.append(f"    t{j} = Tree({{{', '.join(items)}}})")
            scope: dict[str, Any] = {"Tree": Tree}
            exec("\n".join([*lines, "    return t0"]), scope)  # our own generated code
            self._tree = scope["tree"]
        return self._tree(values)


def plan_of(model: Any, cached: Plan | None = None) -> Plan:
    """The plan of ``model``: ``cached`` or the one the model keeps, when still valid, else a
    new one (which the model then keeps, when it takes attributes). The model and its plan
    refer to each other: that cycle is made once per model, never per step."""
    if cached is not None and cached.valid(model):
        return cached
    kept = getattr(model, CACHE, None)  # (the seam's one attribute for the fast road's caches)
    if type(kept) is Plan and kept is not cached and kept.valid(model):
        return kept
    plan = Plan(model)
    try:
        setattr(model, CACHE, plan)
    except (AttributeError, TypeError):  # __slots__ or a frozen object: no cache, still right
        pass
    return plan
