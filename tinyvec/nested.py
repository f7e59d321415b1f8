"""Trees of dicts and tuples as deep as a model, walked without recursion.

A gradient or optimiser-state `Tree` mirrors its model, and a model may be nested thousands
of containers deep (`tinyvec.layers.base.nodes` walks one with a stack of its own). Python's
repr, pickle and deepcopy of nested dicts recurse, a C stack frame per level, and fail at
about a thousand levels (RecursionError): the gradients of such a model could not be printed,
nor its optimiser state saved. `Nested` does all three with an explicit stack. Its branches
are Nested dicts and tuples (a layer's tuple of children); anything else in it is a value,
printed, pickled and copied as Python does it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Nested", "nested_repr"]


class Nested(dict):
    """A dict whose repr, pickle and deepcopy are the dict's, made without recursion (see the
    module text).

    >>> import copy, pickle
    >>> t = Nested(layers=(Nested(weight=1.0, bias=None),), scale=2)
    >>> t
    {'layers': ({'weight': 1.0, 'bias': None},), 'scale': 2}
    >>> pickle.loads(pickle.dumps(t)) == t == copy.deepcopy(t)
    True
    """

    def __repr__(self) -> str:
        return nested_repr(self)

    def __copy__(self) -> Nested:  # (the top dict only, as dict.copy: its entries are shared)
        return type(self)(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # every level at once, not one inside another: pickle and deepcopy then copy a flat
        # list of branches, each naming its children by position
        return _rebuild, (_flatten(self),)


def _is_branch(value: Any) -> bool:
    return isinstance(value, Nested) or type(value) is tuple


def _entries(branch: Any) -> list[tuple[Any, Any]]:
    return list(branch.items()) if isinstance(branch, dict) else list(enumerate(branch))


def nested_repr(root: Any) -> str:
    """``repr(root)`` of a Nested or tuple, as Python writes it, without recursion."""
    out: list[str] = []
    todo: list[tuple[bool, Any]] = [(False, root)]  # (True, text) or (False, an object)
    while todo:
        is_text, item = todo.pop()
        if is_text:
            out.append(item)
            continue
        if not _is_branch(item):
            out.append(repr(item))
            continue
        is_dict = isinstance(item, dict)
        parts: list[tuple[bool, Any]] = [(True, "{" if is_dict else "(")]
        for i, (key, value) in enumerate(_entries(item)):
            if i:
                parts.append((True, ", "))
            if is_dict:
                parts.append((True, f"{key!r}: "))
            parts.append((False, value))
        parts.append((True, "}" if is_dict else ",)" if len(item) == 1 else ")"))
        todo.extend(reversed(parts))
    return "".join(out)


def _flatten(root: Nested) -> list[tuple[Any, list[tuple[Any, bool, Any]]]]:
    """The branches of ``root``, each after every branch inside it (root last), as (its type,
    [(key or position, whether a branch, the branch's position in the list or the value)]).
    A branch met twice is listed once, so the rebuilt tree shares it too."""
    order: list[tuple[Any, list[tuple[Any, bool, Any]]]] = []
    position: dict[int, int] = {}
    open_: set[int] = set()  # the branches on the way down to the one at hand
    todo: list[tuple[Any, bool]] = [(root, False)]
    while todo:
        branch, children_done = todo.pop()
        if id(branch) in position:
            continue
        entries = _entries(branch)
        if not children_done:
            if id(branch) in open_:
                raise ValueError("a Tree that contains itself cannot be copied or pickled")
            open_.add(id(branch))
            todo.append((branch, True))
            todo.extend((v, False) for _, v in reversed(entries) if _is_branch(v))
            continue
        open_.discard(id(branch))
        position[id(branch)] = len(order)
        items = [(k, True, position[id(v)]) if _is_branch(v) else (k, False, v) for k, v in entries]
        order.append((type(branch), items))
    return order


def _rebuild(order: list[tuple[Any, list[tuple[Any, bool, Any]]]]) -> Any:
    """The tree that `_flatten` listed (each branch built after those inside it)."""
    built: list[Any] = []
    for kind, items in order:
        values = [(k, built[v] if is_branch else v) for k, is_branch, v in items]
        built.append(kind(values) if kind is not tuple else tuple(v for _, v in values))
    return built[-1]
