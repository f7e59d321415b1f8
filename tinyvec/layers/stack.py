"""A member axis: E models of one architecture as one model (a stack), every parameter with a
leading axis E, trained as one and each member exactly as alone.

A stack is the same model with the same formulas: Dense's ``A = W O + b`` with W (E, out, in),
b (E, out) and O (E, in, B), or (in, B) shared by all members, is a batched matrix product
(`tinyvec.layers.dense.affine`); its output is (E, out, B). A layer that holds parameters says
that it takes a member axis with ``members`` (E, or None in an ordinary model), as Dense does;
containers pass the (E, features, batch) arrays on as they are.

Records keep the member axis: an array recorded by a pass (``input``, ``delta``, …) is
(E, features, batch), or (features, batch) where it is shared by all members (the input);
a layer's ``step`` is shaped like its parameters.

`tv.stack` / `tv.unstack` (in `tinyvec.optimise.stack`) also carry the optimiser state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backend import is_array, namespace, same_namespace
from ..engine.tensor import data
from .base import Node, fmap, nodes, trainables

__all__ = ["member_walks", "members", "stack_members", "stack_models", "unstack_model"]


def stack_members(params: list[tuple[str, Any, str]]) -> int | None:
    """E when ``params`` (path, layer, name: `trainables`) are those of a stack of E models (a
    layer says so with ``members``), None for an ordinary model."""
    for _, layer, _ in params:
        if hasattr(layer, "members"):  # (the first layer that can tell: a stack stacks them all)
            count = layer.members
            return None if count is None else int(count)
    return None


def members(model: Any) -> int | None:
    """The number of members E of a stack (`tv.stack`), None for an ordinary model.

    >>> import tinyvec as tv
    >>> members(tv.Dense(2, 1)), members(tv.stack([tv.Dense(2, 1), tv.Dense(2, 1)]))
    (None, 2)
    """
    return stack_members(trainables(model))


def _check_alike(models: Sequence[Any]) -> list[list[Node]]:
    """The walks of ``models``, after checking that they are E ≥ 1 ordinary models of one
    architecture whose every layer with parameters takes a member axis."""
    if not isinstance(models, list | tuple) or not models:
        raise TypeError(f"tv.stack takes a non-empty list of models, got {models!r}")
    walks = [nodes(m) for m in models]
    first = walks[0]
    for node in first:
        if node.present and not hasattr(type(node.layer), "members"):
            raise TypeError(
                f"tv.stack: {type(node.layer).__name__} at {node.path} holds parameters but "
                "does not take a member axis (a layer says so with `members`, as Dense does)"
            )
        if getattr(node.layer, "members", None) is not None:
            raise ValueError(f"tv.stack: the models are stacks already ({node.path})")
    for i, walked in enumerate(walks[1:], 1):
        where = f"tv.stack: model {i} is not of model 0's architecture"
        if [(n.path, type(n.layer), n.present, n.first) for n in walked] != [
            (n.path, type(n.layer), n.present, n.first) for n in first
        ]:
            raise ValueError(f"{where} (other layers or parameters)")
        for a, b in zip(first, walked, strict=True):
            for attr in getattr(a.layer, "structure", ()):
                x, y = getattr(a.layer, attr, None), getattr(b.layer, attr, None)
                if not (x is y or x == y):
                    raise ValueError(f"{where}: {b.path}.{attr} is {y!r}, not {x!r}")
            for name in a.present:
                x, y = data(getattr(a.layer, name)), data(getattr(b.layer, name))
                same_namespace(x, y, what="tv.stack")
                if tuple(x.shape) != tuple(y.shape) or x.dtype != y.dtype:
                    raise ValueError(
                        f"{where}: {b.path}.{name} is {tuple(y.shape)} {y.dtype}, "
                        f"not {tuple(x.shape)} {x.dtype}"
                    )
    return walks


def stack_models(models: Sequence[Any]) -> Any:
    """One model whose every parameter is the E parameters of ``models`` stacked on a leading
    axis (the model part of `tv.stack`); its records are cleared."""
    walks = _check_alike(models)
    params = [trainables(m, w) for m, w in zip(models, walks, strict=True)]
    stacked = {}
    for i, (_, _layer, _name) in enumerate(params[0]):
        arrays = [data(getattr(p[i][1], p[i][2])) for p in params]
        stacked[id(arrays[0])] = namespace(arrays[0]).stack(arrays)
    return fmap(lambda a: stacked[id(a)], models[0])


def take(value: Any, e: int) -> Any:
    """Member ``e`` of a record: an array (E, features, batch) → its e-th; a (features,
    batch) array is shared by the members and kept as it is."""
    return value[e, ...] if is_array(value) and value.ndim == 3 else value


def _shapes(walked: list[Node], skip: int) -> list[Any]:
    """Each layer's path, type and parameter shapes (less the first ``skip`` axes: a member
    axis), to tell whether two models are of one architecture."""
    return [(n.path, type(n.layer), [tuple(data(getattr(n.layer, name)).shape)[skip:]
                                     for name in n.present]) for n in walked]  # fmt: skip


def member_walks(walked: list[Node], into: Sequence[Any]) -> list[list[Node]]:
    """The walks of the models ``into`` (the members of an earlier unstack of the stack whose
    walk is ``walked``), each checked to be an ordinary model of the stack's architecture,
    all of them before `unstack_model` writes into any."""
    ours = _shapes(walked, 1)  # (a stack given as ``into`` has an axis more: not these shapes)
    walks = [nodes(m) for m in into]
    for m, theirs in zip(into, walks, strict=True):
        if _shapes(theirs, 0) != ours:
            raise ValueError(
                f"tv.unstack(stack, into=…): {m!r} is not an ordinary model of the stack's "
                "architecture; give the members of an earlier tv.unstack(stack)"
            )
    return walks


def unstack_model(
    stack: Any, e: int, walked: list[Node], into: Any = None, theirs: list[Node] | None = None
) -> Any:
    """Member ``e`` of ``stack`` (``walked``: its walk, checked to be a stack's) as an ordinary
    model, with its parameters, the records of the last pass (``records``) and the steps of
    the last update (``step``). ``into``: an ordinary model of the stack's architecture
    (member e of an earlier unstack, ``theirs`` its walk, `member_walks`) made to hold them in
    place of a new one, its records cleared first; its layers stay, and so does what the
    fast road keeps for them (a model it has seen runs without being planned again)."""
    member = fmap(lambda a: a[e, ...], stack) if into is None else into
    theirs = nodes(member) if theirs is None else theirs
    for a, b in zip(walked, theirs, strict=True):
        if not a.first:
            continue
        if into is not None:
            if hasattr(b.layer, "forget"):
                b.layer.forget()
            for name in a.present:
                setattr(b.layer, name, data(getattr(a.layer, name))[e, ...])
        for name in getattr(a.layer, "records", ()):
            if hasattr(a.layer, name):
                setattr(b.layer, name, take(getattr(a.layer, name), e))
        steps = getattr(a.layer, "step", None)
        if isinstance(steps, dict):  # shaped like the parameters: always a member axis
            b.layer.step = {k: v[e, ...] for k, v in steps.items()}
    return member
