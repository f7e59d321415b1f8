"""Rules per subtree: which optimiser rule each parameter of a model gets when `tv.setup` is
given several, by path (the longest path that holds the parameter wins)."""

from __future__ import annotations

from collections.abc import Mapping

from ..layers.base import Node
from .rules import Rule


def rules_by_path(rules: Mapping[str, Rule], walked: list[Node]) -> dict[tuple[int, str], Rule]:
    """The rule of every parameter, {(id(layer), name): rule}, from ``rules`` {path: rule}:
    a parameter takes the rule of the longest path that is it or holds it (``"model"`` covers
    everything not named more precisely). Every path must hold a parameter (a typo is
    refused) and every parameter must get a rule."""
    for path, rule in rules.items():
        if not isinstance(path, str):
            raise TypeError(f"setup: the keys are paths such as 'model.layers[2]', got {path!r}")
        if not isinstance(rule, Rule):
            raise TypeError(
                f"setup: {path!r} must map to an optimisation rule such as tv.Descent(0.1), "
                f"got {rule!r}"
            )
    holding: set[str] = set()  # the paths that are or hold a parameter
    chosen: dict[tuple[int, str], Rule] = {}
    for node in walked:
        if not node.first:  # a shared layer: its first place decides
            continue
        for name in node.present:
            path = f"{node.path}.{name}"
            holders = [p for p in rules if path == p or path.startswith((p + ".", p + "["))]
            if not holders:
                raise ValueError(
                    f"setup: no rule for {path}; give one for it, a layer holding it, or "
                    f"'model' for everything not named"
                )
            holding.update(holders)
            chosen[id(node.layer), name] = rules[max(holders, key=len)]
    for path in rules:
        if path not in holding:  # a typo, or a layer without parameters
            layers = ", ".join(node.path for node in walked[:6])
            more = ", …" if len(walked) > 6 else ""
            raise ValueError(
                f"setup: {path!r} names no parameter of the model; its layers are {layers}{more}"
            )
    return chosen
