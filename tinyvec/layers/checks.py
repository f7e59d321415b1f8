"""The misuses of the layer protocol (`tinyvec.layers.base`) that training would otherwise get
silently wrong, refused when `nodes` walks a model (so by `setup`, `gradient`, `update`, `save`,
…) with one error that says what to do. Kept out of base.py, whose walk a student reads."""

from __future__ import annotations

from typing import Any

from ..backend import has_kind, is_array


def refuse_misnamed(layer: Any) -> None:
    """What training would silently get wrong: a parameter of integers (its steps rounded
    away), and a floating-point array or a layer held by a layer that names it nowhere (not a
    parameter, child, record or constant): one someone forgot to list, never trained."""
    kinds = ("params", "children", "structure", "records", "constants")
    named: set[str] = set()
    for kind in kinds:
        if isinstance(names := getattr(layer, kind, ()), str):
            raise TypeError(
                f"{type(layer).__name__}.{kind} must be a tuple of names: ({names!r},), "
                f"not the string {names!r}"
            )
        named.update(names)
    for name in getattr(layer, "params", ()):  # (in a gradient, a Tensor: checked before)
        value = getattr(layer, name)
        if is_array(value) and not has_kind(value, ("real floating",)):
            raise TypeError(
                f"{type(layer).__name__}.{name} holds {value.dtype} values, which a step cannot "
                "move by a fraction: a parameter must be floating-point (use .astype(float))"
            )
    for attr, value in getattr(layer, "__dict__", {}).items():
        if attr in named or attr.startswith("_"):
            continue  # (a private attribute, such as the array behind a property, is its own)
        if is_array(value) and has_kind(value, ("real floating",)):
            what, kind = "a floating-point array", "params"
        elif any(not isinstance(v, type) and is_layer(v)  # (a class is not a sub-layer)
                 for v in (value if isinstance(value, tuple | list) else [value])):  # fmt: skip
            what, kind = "a layer", "children"
        else:
            continue
        raise TypeError(
            f"{type(layer).__name__}.{attr} holds {what} that the layer does not name: add "
            f"{attr!r} to its `{kind}` to train it, or to its `constants` to keep it fixed "
            "(training would silently never move it)"
        )


def is_layer(x: Any) -> bool:
    """A layer, or a model: an object naming its ``params`` or ``children`` (the protocol of
    `tinyvec.layers.base.Layer`), not an array."""
    return (hasattr(x, "params") or hasattr(x, "children")) and not is_array(x)
