"""Compensation of the inherited movement (science.md §2, seed 004).

When every layer takes its step at once, the pre-activation of layer k moves by (exactly)

    ΔA^k = ΔW^k O^{k-1}  +  W^k ΔO^{k-1}  +  ΔW^k ΔO^{k-1}
           (own step)       (inherited)       (second order)

The inherited part comes from the training of the layers before k and disturbs the move
``-α ‖ō‖² δ^k`` that δ^k asks for. Compensation rewrites, per sample i,

    δ̃^k_i = δ^k_i + κ · W^k ΔO^{k-1}_i / (α ‖ō^{k-1}_i‖²)        (‖ō‖² = ‖o‖² + 1 with a bias)

so that for one sample ``ΔW o + Δb = -α‖ō‖² δ̃ = -α‖ō‖² δ - κ W ΔO`` and
``ΔA^k = -α‖ō‖² δ^k + (1-κ) W^k ΔO^{k-1} + ΔW^k ΔO^{k-1}``: κ = 0 is plain backprop, κ = 1
moves A^k as if layer k alone were trained (up to the second-order term). In a batch the
samples still interact through the Gram matrix: sample j's correction also moves sample i by
``-κ (ō_i·ō_j)/‖ō_j‖² W ΔO_j``, so with B similar samples the total correction is about B
times what one asked for (an effective κ near Bκ). `Orthogonalization` after it removes that
interaction. With Momentum α = η: only the fresh part η·gradient of the step compensates.

ΔO^{k-1} comes from a sweep from input to output through the already updated layers
(`tinyvec.deltarules.sweep`):

- ``variant="exact"``: Õ^{k-1} is recomputed, ``ΔO^{k-1} = φ(Ã^{k-1}) − φ(A^{k-1})`` with
  ``Ã^{k-1} = W̃ Õ^{k-2} + b̃`` (updated weights, changed input);
- ``variant="first_order"``: only the activation is linearised,
  ``ΔO^{k-1} ≈ φ′(A^{k-1}) ⊙ (Ã^{k-1} − A^{k-1})``; both cost one matrix product per layer
  here, so the variant exists to measure whether the linearisation is enough.

Connections between layers (SkipConnection, Parallel) are evaluated on the changed values as
they are, in both variants: through a residual block ``x + layer(x)`` the skip path passes the
change of the block's input unchanged, ``ΔO_out = ΔO_in + ΔO_layer``, and the next Dense layer
compensates the sum. Parameters outside Dense layers are updated first, plainly, so the
change they cause is part of ΔO too. The ΔO of the network input is 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import namespace
from ..optimise.rules import hyper, per_member
from .base import LayerContext
from .rule import DeltaRule

VARIANTS = ("exact", "first_order")


def _nonzero(kappa: Any) -> bool:
    """Whether κ (a number, or one per member of a stack) is not 0 everywhere."""
    return kappa != 0 if type(kappa) is float else bool(np.any(kappa != 0))


class Compensation(DeltaRule):
    """``Compensation(kappa=0.2, variant="exact")``: δ̃^k = δ^k + κ W^k ΔO^{k-1} / (α ‖ō^{k-1}‖²),
    per sample (see the module text). κ = 0 is exactly plain backprop (no sweep is run).

    >>> import numpy as np, tinyvec as tv
    >>> from tinyvec.deltarules import Compensation
    >>> model = tv.Chain(tv.Dense(1, 8, tv.tanh, rng=0), tv.Dense(8, 1, rng=1))
    >>> state = tv.setup(tv.Descent(0.1), model, delta=Compensation(0.2))
    >>> x, y = np.linspace(-1, 1, 5)[None, :], np.zeros((1, 5))
    >>> loss, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    >>> tv.update(state, model, grads)
    >>> model[0].delta_used is model[0].delta  # ΔO^0 = 0: the first layer is not rewritten
    True
    >>> bool(np.allclose(model[1].delta_used, model[1].delta))
    False
    """

    def __init__(self, kappa: Any = 0.2, variant: str = "exact") -> None:
        kappa = hyper(kappa)  # a number, or one per member of a stack (tv.stack)
        if isinstance(kappa, np.ndarray):
            if not np.all(np.isfinite(kappa)):
                raise ValueError(f"Compensation: kappa must be real numbers, got {kappa!r}")
        elif not isinstance(kappa, int | float) or isinstance(kappa, bool) or kappa != kappa:
            raise ValueError(f"Compensation: kappa must be a real number, got {kappa!r}")
        if variant not in VARIANTS:
            raise ValueError(
                f"Compensation: unknown variant {variant!r}, use one of {', '.join(VARIANTS)}"
            )
        self.kappa = kappa if isinstance(kappa, np.ndarray) else float(kappa)
        self.variant = variant

    @property
    def sweep(self) -> str | None:  # type: ignore[override]
        """The ΔO^{k-1} it needs: its variant; none at κ = 0 (plain backprop, no sweep)."""
        return self.variant if _nonzero(self.kappa) else None

    def rewrite(self, delta: Any, ctx: LayerContext) -> Any:
        if not _nonzero(self.kappa) or ctx.dO is None or not _nonzero(ctx.alpha):
            return delta  # (α = 0: no step, nothing to compensate; κ/α is undefined)
        n2 = ctx.norms2
        if not ctx.bias:  # a zero input: no step can move that sample, nothing to compensate
            xp = namespace(n2)
            n2 = xp.where(n2 > 0, n2, xp.inf)
        return delta + (ctx.W @ ctx.dO) * (per_member(self.kappa / ctx.alpha, n2) / n2)
