"""The δ-rule protocol (`DeltaRule`, and `MemoryRule` for rules that remember past steps).

A δ-rule rewrites the error vectors δ^k of one Dense layer into δ̃^k just before that layer is
updated, so that the layer's step becomes ``ΔW^k = -α δ̃^k O^{k-1}ᵀ``, ``Δb^k = -α Σ δ̃^k``.
It sees the layer through a `LayerContext` (W^k, O^{k-1}, ΔO^{k-1}, α) and returns δ̃^k. To
the optimiser a list of δ-rules is one step transform, `DeltaStep` (`tinyvec.deltarules.sweep`).
"""

from __future__ import annotations

from typing import Any

from ..optimise.rules import Rule
from ..optimise.training import StepTransform
from .base import LayerContext
from .sweep import DeltaStep


class DeltaRule(StepTransform):
    """A δ-rule: ``rewrite(delta, ctx) -> δ̃`` for one Dense layer (shapes (out, batch)).
    Returning ``delta`` itself means "unchanged": the layer then gets exactly the plain step.

    To the optimiser a list of δ-rules is one step transform (`DeltaStep`, made by `bind`):
    `tv.setup` keeps it in the state, and `tv.update` steps with the gradients it rewrites."""

    def rewrite(self, delta: Any, ctx: LayerContext) -> Any:  # pragma: no cover
        raise NotImplementedError

    sweep: str | None = None  # the ΔO^{k-1} it needs: None, "exact" or "first_order" (`sweep`)
    remembers = False  # whether it is a `MemoryRule`

    def bind(self, transforms: tuple[Any, ...], rule: Rule) -> DeltaStep:
        return DeltaStep(transforms, rule)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class MemoryRule(DeltaRule):
    """A δ-rule that remembers something of past steps per Dense layer and may also change the
    inputs the step is taken on: ``ΔW^k = -α δ̃^k Õ^{k-1}ᵀ``, ``Δb^k = -α δ̃^k õ_b``, with
    ``[Õ; õ_b]`` a rewritten ``Ō = [O; 1]`` (`OrthogonalizationOverTime`).

    ``rewrite_remembering(delta, ctx, memory) -> (δ̃, Ō_used or None, new memory)``: ``memory``
    is this rule's memory of this layer after the last committed step (None at first). The
    memory lives in the optimiser state (`DeltaStep.memory`) and is replaced with the commit,
    so a refused or interrupted step leaves it as it was; the rule object holds none (one rule
    may serve several models). Changing the inputs, it must be the last δ-rule of the list."""

    remembers = True

    def rewrite_remembering(
        self, delta: Any, ctx: LayerContext, memory: Any
    ) -> tuple[Any, Any, Any]:  # pragma: no cover
        raise NotImplementedError

    def rewrite(self, delta: Any, ctx: LayerContext) -> Any:
        raise TypeError(
            f"{type(self).__name__} needs its memory: use it through tv.setup(..., delta=...)"
        )
