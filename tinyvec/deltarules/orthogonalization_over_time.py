"""Orthogonalization across time: the second reading of seed 004 (science.md §3), in the
spirit of orthogonal weight modification (OWM, Zeng et al. 2019).

`Orthogonalization` stops the samples of one batch from disturbing each other. Here each
sample's step must not move the pre-activations of the samples seen just before it. Dense
layer k remembers the augmented inputs ``ō_j = [o_j; 1]`` (``o_j`` alone without a trained
bias) of its last M samples, ``Ō_m`` (columns, oldest first). Let

    K = Ō_mᵀ Ō_m,   D_m = diag K,   P_ε = I − Ō_m (K + ε D_m)⁻¹ Ō_mᵀ

(P_0 is the orthogonal projector onto the complement of the remembered inputs, OWM's P).
Each sample i of the batch is then stepped on its projected input ``P_ε ō_i``:

    ΔW̄ = [ΔW  Δb] = -α δ̃ (P_ε Ō)ᵀ,   δ̃ = δ                                   (OWM)

or, with ``keep_own_move=True``, with a δ rescaled so that the sample's own pre-activation
still moves as in single-sample training:

    δ̃_i = δ_i (1+ε)‖ō_i‖² / (ε‖ō_i‖² + ō_iᵀ P_ε ō_i).

With ε = 0 and linearly independent remembered inputs (so M < in + 1 at most), ``P_0 Ō_m = 0``
and ``ΔW̄ Ō_m = 0``: the remembered samples' pre-activations do not move at all (the layer's own
step; the layers before it still change its inputs). One sample moves its own by
``-α ‖P_0 ō_i‖² δ_i`` (OWM: less than alone, nothing if ō_i lies in the span of the memory), or
by ``-α‖ō_i‖² δ_i``, exactly as alone, with ``keep_own_move``. The price of the latter: when
ō_i is nearly in that span (a neighbouring sample, a layer with few inputs) δ̃_i grows up to
(1+ε)/ε times δ_i, and so does the move of every sample outside the memory. In a pilot
(sin(πx), tanh 32×3, per-sample η = 0.1, one seed, 300 epochs) it diverged for M = 1, 4 and 16,
where OWM (M = 1, 4) did not.

How the rescaled form reduces to the in-batch rule: for one sample, its step is exactly
``Orthogonalization(ε)`` — ``δ̃ = (1+ε) δ D (G + εD)⁻¹`` — applied to the batch made of the
sample and its remembered predecessors, in which the remembered samples ask for no move
(δ = 0); by block elimination of that (1+m)×(1+m) system the remembered samples' share of δ̃
is ``-δ̃_i ō_iᵀ Ō_m (K + εD_m)⁻¹`` and ``δ̃ Ōᵀ + δ̃_m Ō_mᵀ = δ̃_i (P_ε ō_i)ᵀ``. So it inherits
that rule's regularisation: ε is relative to each ‖ō‖², and when the sample lies in the span
of the memory (M ≥ in + 1, or a sample seen again) the conflicting requests — move sample i,
keep the others still — are met in the least-squares sense as ε → 0. OWM's step is the same
direction with the factor of the rescaling taken out (δ̃ = δ), so ‖ΔW̄‖ never exceeds the plain
step's. In a batch of B > 1, every sample is orthogonalized against the memory but not against
the other samples of its batch (that is `Orthogonalization`'s job), and M = 0 is the plain
step.

"Recent" means the last M samples this layer was trained on, in training order, over the
steps (a batch of B adds its B columns; the memory keeps the last M). It holds the inputs as
they were seen: the layers before k keep training, so a remembered O^{k-1} is the input of the
sample at that step, not now, as in OWM. The memory lives in the optimiser state and changes
only with a committed step (see `MemoryRule`).

Cost per layer and step: the m×m system (m³ + in·m·B), m ≤ M.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import device, namespace
from ..optimise.rules import per_member
from .base import LayerContext, nonnegative
from .rule import MemoryRule


class OrthogonalizationOverTime(MemoryRule):
    """``OrthogonalizationOverTime(memory=8, eps=1e-3, keep_own_move=False)``: step each
    sample on ``P_ε ō_i``, ``P_ε = I − Ō_m (Ō_mᵀŌ_m + εD_m)⁻¹ Ō_mᵀ`` over the inputs of the last
    ``memory`` samples, with δ̃ = δ (OWM), or ``δ̃_i = δ_i (1+ε)‖ō_i‖² / (ε‖ō_i‖² + ō_iᵀP_εō_i)``
    with ``keep_own_move`` (see the module text).

    After a step on a new sample the remembered samples' pre-activations have not moved:

    >>> import numpy as np, tinyvec as tv
    >>> from tinyvec.deltarules import OrthogonalizationOverTime
    >>> layer = tv.Dense(5, 2, rng=0)
    >>> state = tv.setup(tv.Descent(0.1), layer, delta=OrthogonalizationOverTime(3, eps=0))
    >>> x = np.random.default_rng(1).standard_normal((5, 4))
    >>> for i in range(4):
    ...     xi = x[:, i : i + 1]
    ...     tv.update(state, layer, tv.gradient(lambda m: tv.mse(m(xi), np.ones((2, 1))), layer))
    ...     if i == 2:
    ...         before = layer(x[:, :3]).copy()
    >>> bool(np.allclose(layer(x[:, :3]), before, rtol=0, atol=1e-12))  # samples 0-2 stay
    True
    """

    def __init__(self, memory: int = 8, eps: float = 1e-3, keep_own_move: bool = False) -> None:
        if not isinstance(memory, int) or isinstance(memory, bool) or memory < 0:
            raise ValueError(
                f"OrthogonalizationOverTime: memory must be a whole number of samples ≥ 0, "
                f"got {memory!r}"
            )
        eps = nonnegative("OrthogonalizationOverTime", "eps", eps)  # (one per member of a stack)
        if not isinstance(keep_own_move, bool):
            raise ValueError(
                f"OrthogonalizationOverTime: keep_own_move must be True or False, got "
                f"{keep_own_move!r}"
            )
        self.memory, self.eps = memory, eps
        self.keep_own_move = keep_own_move

    def rewrite_remembering(
        self, delta: Any, ctx: LayerContext, memory: Any
    ) -> tuple[Any, Any, Any]:
        if self.memory == 0:  # nothing remembered: the plain step, bit for bit
            return delta, None, None
        xp = namespace(delta)
        O = ctx.O  # (in, B); (E, in, B) in a stack (tv.stack): the same formulas, batched
        ones = xp.ones((*O.shape[:-2], 1, O.shape[-1]), dtype=O.dtype, device=device(O))
        O_bar = xp.concat([O, ones], axis=-2) if ctx.bias else O
        if memory is not None and (
            namespace(memory) is not xp
            or memory.dtype != O.dtype
            or memory.shape[:-1] != O_bar.shape[:-1]
        ):
            raise ValueError(
                f"OrthogonalizationOverTime remembers inputs of {memory.shape[-2]} rows "
                f"({memory.dtype}) for a layer that now takes {O_bar.shape[-2]} ({O.dtype}): "
                "the model changed under its optimiser state; call tv.setup again"
            )
        if memory is None:  # the first step: nothing to keep still; O may be the caller's
            # array (without a bias Ō is O itself), and a memory must not change with it
            remembered = O_bar if ctx.bias else xp.asarray(O, copy=True)
            return delta, None, remembered[..., max(0, O.shape[-1] - self.memory) :]
        remembered = xp.concat([memory, O_bar], axis=-1)  # a new array: the old memory stays
        remembered = remembered[..., max(0, remembered.shape[-1] - self.memory) :]
        Om = memory
        K = Om.mT @ Om
        D = xp.linalg.diagonal(K)
        # ε relative to each ‖ō_j‖² (a zero input, possible without a bias, gets 1 instead)
        ridge = per_member(self.eps, D) * xp.where(D > 0, D, 1.0)
        U = Om.mT @ O_bar  # ō_jᵀ ō_i, memory × batch
        try:
            eye = xp.eye(K.shape[-1], dtype=K.dtype, device=device(K))
            Z = xp.linalg.solve(K + eye * ridge[..., None, :], U)
        except Exception as error:  # NumPy's LinAlgError, and its kin in other namespaces
            if np.any(self.eps > 0):  # K + εD is positive definite: not the case below
                raise
            raise ValueError(
                "OrthogonalizationOverTime(eps=0): the remembered inputs are linearly "
                "dependent (a repeated sample, or more samples than the layer's inputs + 1), so "
                "no step can keep them all still; use eps > 0"
            ) from error
        inputs = O_bar - Om @ Z  # P_ε Ō
        if not self.keep_own_move:  # OWM
            return delta, inputs, remembered
        n2 = ctx.norms2
        grow = per_member(1 + self.eps, n2)
        s = grow * n2 - xp.sum(U * Z, axis=-2, keepdims=True)  # ε‖ō‖² + ōᵀP_εō
        if np.all(self.eps == 0) and bool(xp.any((n2 > 0) & (s <= 1e-12 * n2))):
            raise ValueError(
                "OrthogonalizationOverTime(eps=0): a sample's input lies in the span of the "
                "remembered ones, so it cannot move without moving them; use eps > 0"
            )
        # a zero input has n2 = s = 0: its step is 0 whatever δ̃, keep δ
        scale = xp.where(n2 > 0, grow * n2 / xp.where(n2 > 0, s, 1.0), 1.0)
        return delta * scale, inputs, remembered
