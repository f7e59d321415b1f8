"""The plan of a model: its layers and parameters, listed once, without recursion.

Every part of tinyvec that needs to go through a model (gradients, optimiser state, update,
the δ-rules, save/load, the Recorder, printing, `tv.analysis`) reads the same `Plan` instead
of walking ``params`` and ``children`` on its own:

- ``nodes``: every occurrence of every layer in forward (depth-first) order, each with its
  path (``model.layers[1].layer``), its parameter names and the positions of its children;
- ``trainables``: (path, layer, name) for every parameter array, a shared layer only at its
  first occurrence (it has one set of arrays, so it gets one update).

A plan is made by one iterative walk (no recursive closures, so no reference cycles per step)
and kept: by the model itself (`plan_of`), and by the optimiser state. Before each use
`Plan.valid` checks, cheaply, that the model still has the structure it was made from: the
same child objects in every container, the same parameters present and the same objects in
the attributes a layer names as its ``structure`` (Dense's σ, a SkipConnection's connection).
Replacing a layer (``chain.layers = ...``), a list entry, an activation, or setting a
parameter to None makes a new plan; replacing a parameter's array by another (what every
update does) does not.

You can skip this module when reading the engine: `tv.trainables(model)` shows what it lists.

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

import re
from collections.abc import Callable
from typing import Any

_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")


class Tree(dict):
    """A dict whose entries can also be read as attributes: ``tree.layers[0].weight``. Gradients
    and optimiser state are Trees mirroring the model; a path of `tv.trainables` indexes them
    too: ``grads["model.layers[0].weight"]``.

    >>> t = Tree(layers=(Tree(weight=1.0),))
    >>> t.layers[0].weight, t["model.layers[0].weight"]
    (1.0, 1.0)
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __missing__(self, key: Any) -> Any:
        # only reached when `key` is not an entry: a path such as "model.layers[0].weight"
        if not isinstance(key, str) or not key.startswith(("model.", "model[", ".", "[")):
            raise KeyError(key)
        rest = key[len("model") :] if key.startswith("model") else key
        value: Any = self
        end = 0
        for m in _STEP.finditer(rest):
            if m.start() != end:
                break
            end = m.end()
            try:
                value = value[m.group(1)] if m.group(1) else value[int(m.group(2))]
            except (KeyError, IndexError, TypeError):
                raise KeyError(f"{key}: nothing at {key[: len(key) - len(rest) + end]}") from None
        if end != len(rest):
            raise KeyError(f"{key}: not a path like model.layers[0].weight")
        return value


class Node:
    """One occurrence of a layer: its path, its parameter names (``names``, in the order of
    ``params``; ``present`` those holding an array), and its children as slots
    ``(attribute, indices of the child nodes, is a tuple/list)``."""

    __slots__ = ("empty", "first", "layer", "named", "names", "path", "present", "slots")

    def __init__(self, path: str, layer: Any, names: tuple[str, ...], present: tuple[str, ...]):
        self.path, self.layer, self.names, self.present = path, layer, names, present
        self.named = tuple((name, f"{path}.{name}") for name in present)  # (name, its path)
        self.slots: list[tuple[str, list[int], bool]] = []
        self.empty: list[str] = []  # child attributes holding None
        self.first = True  # False for the second and later occurrences of a shared layer


class Plan:
    """The layers and parameters of ``model`` (see the module text)."""

    __slots__ = ("_check", "_tree", "checks", "fused", "model", "nodes", "trainables")

    def __init__(self, model: Any) -> None:
        self.model = model
        # the model's written programs by kind of input (`tinyvec.layers.fused`): they belong
        # to this structure, so a new plan starts without them
        self.fused: dict[Any, Any] = {}
        self._tree: Callable[[list[Any]], Tree] | None = None  # `tree`, once written
        self._check: Callable[[], bool] | None = None  # `valid`'s checks, once written
        self.nodes: list[Node] = []
        # (layer, attribute, value seen, items of a list): what `valid` compares
        # (layer, attribute, what `valid` compares it with): a parameter's presence (a bool),
        # a child or a `structure` attribute (the same object), a list of layers (its items)
        self.checks: list[tuple[Any, str, str, Any]] = []
        seen: set[int] = set()
        ancestors: list[tuple[int, int]] = []  # (id of layer, end of its subtree on the stack)
        stack: list[tuple[str, Any, int, int, int]] = [("model", model, -1, 0, 0)]
        while stack:
            path, layer, parent, slot, pos = stack.pop()
            while ancestors and ancestors[-1][1] > len(stack):
                ancestors.pop()
            if any(a == id(layer) for a, _ in ancestors):
                raise ValueError(
                    f"the model contains itself at {path}: a layer cannot be its own child"
                )
            names = tuple(getattr(layer, "params", ()))
            present = tuple(n for n in names if getattr(layer, n) is not None)
            node = Node(path, layer, names, present)
            node.first = id(layer) not in seen
            seen.add(id(layer))
            i = len(self.nodes)
            self.nodes.append(node)
            if parent >= 0:
                self.nodes[parent].slots[slot][1][pos] = i
            for name in names:
                self.checks.append((layer, name, "present", name in present))
            for attr in getattr(layer, "structure", ()):
                self.checks.append((layer, attr, "is", getattr(layer, attr, None)))
            kids = []
            for attr in getattr(layer, "children", ()):
                value = getattr(layer, attr)
                many = isinstance(value, tuple | list)
                if isinstance(value, list):  # (a list can change in place)
                    self.checks.append((layer, attr, "list", (value, tuple(value))))
                else:
                    self.checks.append((layer, attr, "is", value))
                if value is None:
                    node.empty.append(attr)
                    continue
                subs = list(value) if many else [value]
                node.slots.append((attr, [-1] * len(subs), many))
                for j, sub in enumerate(subs):
                    kids.append(
                        (
                            f"{path}.{attr}[{j}]" if many else f"{path}.{attr}",
                            sub,
                            i,
                            len(node.slots) - 1,
                            j,
                        )
                    )
            ancestors.append((id(layer), len(stack)))
            stack.extend(reversed(kids))
        self.trainables = [
            (path, node.layer, name)
            for node in self.nodes
            if node.first
            for name, path in node.named
        ]

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # a copied or pickled plan leaves its programs behind (they are written again)
        state = {name: getattr(self, name) for name in self.__slots__}
        state["fused"], state["_tree"], state["_check"] = {}, None, None
        return None, state

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

    def layers(self) -> list[tuple[str, Any]]:
        """(path, layer) for every occurrence of every layer, in forward (depth) order."""
        return [(node.path, node.layer) for node in self.nodes]

    def mirror(self, leaf: Callable[[Any, str], Any]) -> Tree:
        """A Tree shaped like the model with ``leaf(layer, name)`` for every parameter (None
        where the parameter is None), a tuple of Trees for a tuple or list of layers."""
        trees = [Tree() for _ in self.nodes]
        for node, tree in zip(self.nodes, trees, strict=True):
            for name in node.names:
                tree[name] = leaf(node.layer, name) if name in node.present else None
            for attr, kids, many in node.slots:
                tree[attr] = tuple(trees[k] for k in kids) if many else trees[kids[0]]
            for attr in node.empty:
                tree[attr] = None
        return trees[0]

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

    def zip(self, trees: tuple[Any, ...], what: tuple[str, ...]) -> list[tuple[Any, ...]]:
        """(path, layer, name, entry₁, entry₂, …) for each parameter (a shared layer once) and
        its entry in each of ``trees`` (named by ``what`` in errors). A tree of another shape
        than the model is refused, naming where it differs."""
        try:
            return self._zip(trees)
        except (KeyError, IndexError, TypeError, ValueError):
            pass
        return self._zip_checked(trees, what)  # the same walk, finding what differs

    def _zip(self, trees: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """`zip` for trees of the model's shape (each step's case): anything else raises."""
        out: list[tuple[Any, ...]] = []
        entries: list[Any] = [None] * len(self.nodes)
        entries[0] = trees
        # plain loops, no comprehensions: each comprehension is a function call, and this
        # runs at every step for every parameter
        for node, here in zip(self.nodes, entries, strict=True):
            for e in here:
                if not isinstance(e, dict):
                    raise TypeError
            if node.first:
                layer = node.layer
                for name, path in node.named:
                    row = [path, layer, name]
                    for e in here:
                        row.append(e[name])
                    out.append(tuple(row))
            for attr, kids, many in node.slots:
                subs = []
                for e in here:
                    subs.append(e[attr])
                if many:
                    for sub in subs:
                        if type(sub) is not tuple or len(sub) != len(kids):
                            raise ValueError
                    for j, k in enumerate(kids):
                        column = entries[k] = []
                        for sub in subs:
                            column.append(sub[j])
                else:
                    entries[kids[0]] = subs
        return out

    def _zip_checked(self, trees: tuple[Any, ...], what: tuple[str, ...]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        entries: list[Any] = [None] * len(self.nodes)
        entries[0] = trees
        for node, here in zip(self.nodes, entries, strict=True):
            for e, w in zip(here, what, strict=True):
                if not isinstance(e, dict):
                    raise ValueError(
                        f"{w} do not match the model at {node.path} ({type(node.layer).__name__})"
                    )
            if node.first:
                for name, path in node.named:
                    try:
                        out.append((path, node.layer, name, *[e[name] for e in here]))
                    except KeyError:
                        missing = " / ".join(
                            w for e, w in zip(here, what, strict=True) if name not in e
                        )
                        raise ValueError(
                            f"{missing} do not match the model: nothing at {path}"
                        ) from None
            for attr, kids, many in node.slots:
                subs = [e.get(attr) for e in here]
                if many:
                    for sub, w in zip(subs, what, strict=True):
                        if not isinstance(sub, tuple) or len(sub) != len(kids):
                            raise ValueError(
                                f"{w} do not match the model at {node.path}.{attr}: {len(kids)} "
                                f"layers, {'no' if sub is None else len(sub)} entries"
                            )
                    for j, k in enumerate(kids):
                        entries[k] = [sub[j] for sub in subs]
                else:
                    if any(sub is None for sub in subs):
                        w = next(w for sub, w in zip(subs, what, strict=True) if sub is None)
                        raise ValueError(f"{w} do not match the model at {node.path}.{attr}")
                    entries[kids[0]] = subs
        return out


# The attribute of a model that keeps its last plan (a model is the root it was made for;
# the plan is remade whenever `Plan.valid` says the structure changed).
CACHE = "_tinyvec_plan"


def plan_of(model: Any, cached: Plan | None = None) -> Plan:
    """The plan of ``model``: ``cached`` or the one the model keeps, when still valid, else a
    new one (which the model then keeps, when it takes attributes). The model and its plan
    refer to each other: that cycle is made once per model, never per step."""
    if cached is not None and cached.valid(model):
        return cached
    kept = getattr(model, CACHE, None)
    if type(kept) is Plan and kept is not cached and kept.valid(model):
        return kept
    plan = Plan(model)
    try:
        setattr(model, CACHE, plan)
    except (AttributeError, TypeError):  # __slots__ or a frozen object: no cache, still right
        pass
    return plan
