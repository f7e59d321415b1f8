"""What every δ-rule reads: the per-layer context, and the step size α of the optimiser rule it
runs with (which checks that rule). The rules' protocol is in `rule`.

A δ-rule rewrites the error vectors δ^k of one Dense layer into δ̃^k just before that layer is
updated, so that the layer's step becomes ``ΔW^k = -α δ̃^k O^{k-1}ᵀ``, ``Δb^k = -α Σ δ̃^k``.
It sees the layer through a `LayerContext` (W^k, O^{k-1}, ΔO^{k-1}, α) and returns δ̃^k.

The bias is a weight on a constant input 1 (science.md §2), so every sample's squared input
norm is ``‖ō_i‖² = ‖o_i‖² + 1`` for a layer with a trained bias and ``‖o_i‖²`` otherwise; a
single sample then moves its own pre-activation by exactly ``ΔW o + Δb = -α ‖ō‖² δ̃``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import namespace
from ..optimise.rules import (
    Descent,
    Momentum,
    Nesterov,
    OptimiserChain,
    Rule,
    WeightDecay,
    hyper,
)


def nonnegative(rule: str, name: str, value: Any) -> Any:
    """A δ-rule's hyperparameter that must be ≥ 0 (Orthogonalization's ε), as the rule keeps
    it: a float, or a read-only vector of one per member of a stack (`tv.stack`)."""
    v = hyper(value)
    if isinstance(v, np.ndarray):
        ok = bool(np.all(v >= 0))  # (NaN is not ≥ 0)
    else:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
    if not ok:
        raise ValueError(
            f"{rule}: {name} must be a number ≥ 0 (or one per member of a stack), got {value!r}"
        )
    return v if isinstance(v, np.ndarray) else float(v)


class LayerContext:
    """What a δ-rule may read about Dense layer k during an update.

    - ``W``: W^k before its update; ``O``: O^{k-1} (in, batch) of the gradient's forward pass;
    - ``dO``: ΔO^{k-1} = Õ^{k-1} − O^{k-1}, the change of the layer's input caused by the
      already updated layers < k (None when no rule asked for it, or when it is exactly 0);
    - ``alpha``: the step size α, the factor of the gradient in the optimiser's step;
    - ``bias``: whether the layer trains a bias (then Ō = [O; 1]).

    In a stack of E models (`tv.stack`) every array has a leading member axis (O (E, in, B),
    an input shared by the members broadcast to it), ``alpha`` may be a vector of E step
    sizes, and ``norms2`` and ``gram`` are (E, 1, B) and (E, B, B): the same formulas.

    ``norms2`` and ``gram`` are computed on first use and kept, so the δ-rules of one list
    share them. (A class with slots rather than a dataclass with cached properties: one is made
    per layer and step.)
    """

    __slots__ = ("O", "W", "_gram", "_norms2", "alpha", "bias", "dO")

    def __init__(self, W: Any, O: Any, dO: Any, alpha: float, bias: bool) -> None:
        self.W, self.O, self.dO, self.alpha, self.bias = W, O, dO, alpha, bias
        self._norms2: Any = None
        self._gram: Any = None

    def __repr__(self) -> str:
        shape = None if self.O is None else tuple(self.O.shape)
        return f"LayerContext(O: {shape}, alpha={self.alpha!r}, bias={self.bias!r})"

    @property
    def norms2(self) -> Any:
        """‖ō_i‖² for every sample, shape (1, batch) ((E, 1, batch) for a stack): the diagonal D
        of the Gram matrix."""
        if self._norms2 is None:
            O = self.O
            if type(O) is np.ndarray:  # the method: NumPy's sum without the dispatch
                n2 = (O * O).sum(axis=-2, keepdims=True)
            else:
                n2 = namespace(O).sum(O * O, axis=-2, keepdims=True)
            self._norms2 = n2 + 1 if self.bias else n2
        return self._norms2

    @property
    def gram(self) -> Any:
        """G = Ōᵀ Ō (batch × batch; (E, batch, batch) for a stack): G_ij = o_i·o_j (+ 1 with a
        bias)."""
        if self._gram is None:
            G = self.O.mT @ self.O
            if self.bias:
                if type(G) is np.ndarray:
                    G += 1  # a new array: add in place (other namespaces may not allow it)
                else:
                    G = G + 1
            self._gram = G
        return self._gram


def step_size(rule: Rule) -> Any:
    """α such that the optimiser's step is ``α · gradient`` plus terms that do not depend on
    this step's gradient: Descent η; Momentum η (the momentum ρv is the history, not part of
    α); Nesterov (1+ρ)η; an OptimiserChain of WeightDecay rules and one of these, the same α.

    For a stack of models (`tv.stack`) with η per member, α is a vector of E values.

    Adaptive rules (Adam, AdamW) and ClipNorm rescale the gradient in a way that depends on the
    gradient itself, so ``ΔW = -α δ̃ Oᵀ`` — the relation every δ-rule is built on — does not
    hold: they are refused.

    >>> import tinyvec as tv
    >>> step_size(tv.Momentum(0.1, 0.9)), step_size(tv.Nesterov(0.1, 0.5))
    (0.1, 0.15000000000000002)
    """
    if isinstance(rule, Descent | Momentum):
        return rule.eta
    if isinstance(rule, Nesterov):
        rho: Any = rule.rho  # (a number, or a vector: one per member of a stack)
        return (1 + rho) * rule.eta
    if isinstance(rule, OptimiserChain):
        linear = [r for r in rule.rules if not isinstance(r, WeightDecay)]
        if len(linear) == 1:
            return step_size(linear[0])
    raise ValueError(
        f"δ-rules need an optimiser whose step is α·gradient (+ terms not depending on this "
        f"gradient): Descent, Momentum, Nesterov, optionally chained after WeightDecay. "
        f"{rule!r} rescales the gradient by quantities of the gradient itself (as Adam does), "
        f"so the step would not be -α δ̃ Oᵀ and the δ-rules would not do what they say"
    )
