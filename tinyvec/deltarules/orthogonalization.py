"""Orthogonalization of activation vectors (science.md §3, seed 004).

In a batch, layer k's own step moves sample i's pre-activation by
``ΔA_i = -α Σ_j (ō_j·ō_i) δ_j``: samples interfere through the Gram matrix ``G = Ōᵀ Ō``
(Ō = [O; 1] with a bias). Asking each sample to move as in single-sample training,
``ΔA_i = -α ‖ō_i‖² δ_i``, i.e. ``δ̃ G = δ D`` with ``D = diag(G)``, gives

    δ̃ = δ D G⁻¹.

Regularised here as ``δ̃ = (1+ε) δ D (G + εD)⁻¹``: ε is relative to each sample's own
‖ō_i‖² (dimensionless, the same for any scale of the activations), and the factor (1+ε) makes
mutually orthogonal samples — and so a batch of one — give exactly the plain update, since
then G = D. For a batch narrower than the layer (G invertible) the per-sample moves are
reached up to O(ε). For a batch larger than the layer width, or repeated inputs with
different δ, G is singular: no update can give every sample its own move. δ̃ then grows like
1/ε along directions of the batch that Ō cannot see (‖δ̃‖ in the Recorder can be large), those
cancel in ``ΔW = -α δ̃ Ōᵀ``, and as ε → 0 ΔW tends to the least-squares solution of
``ΔW ō_i = -α‖ō_i‖² δ_i`` with each sample weighted by 1/‖ō_i‖² (least squares on unit-length
inputs): ``ΔW = -α δ D^½ (Ō D^-½)⁺``. Away from that limit ε also caps how far nearly parallel
samples with different δ can push the weights: the step grows like 1/ε there.

Cost per layer: the Gram matrix (in·B²) and one linear solve (B³/3 + out·B²), B the batch
size. G + εD is symmetric positive definite for ε > 0, so with NumPy arrays the solve is a
Cholesky solve (LAPACK's ``potrf`` and two triangular solves ``trsm`` through SciPy, when
SciPy is installed): half the factorisation work of the LU in ``solve``, and fewer
microseconds of Python per call, which is most of the cost on small layers. A matrix that is not numerically positive definite (a
singular Gram with ε = 0), another array library, or no SciPy: ``xp.linalg.solve`` (LU). Both
are backward stable, so they agree up to rounding (relative to the condition of G + εD).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..backend import device, namespace
from ..optimise.rules import per_member
from .base import LayerContext, nonnegative
from .rule import DeltaRule


class Orthogonalization(DeltaRule):
    """``Orthogonalization(eps=1e-3)``: δ̃ = (1+ε) δ D (G + εD)⁻¹, G = Ōᵀ Ō, D = diag G.

    >>> import numpy as np, tinyvec as tv
    >>> from tinyvec.deltarules import Orthogonalization
    >>> model = tv.Dense(4, 2, rng=0)
    >>> state = tv.setup(tv.Descent(0.1), model, delta=Orthogonalization(eps=1e-9))
    >>> x = np.random.default_rng(0).standard_normal((4, 3))
    >>> _, grads = tv.withgradient(lambda m: tv.mse(m(x), np.zeros((2, 3))), model)
    >>> delta = model.delta
    >>> tv.update(state, model, grads)
    >>> dA = model.dW @ x + model.db[:, None]  # each sample moves as if trained alone:
    >>> bool(np.allclose(dA, -0.1 * ((x * x).sum(0) + 1) * delta))
    True
    """

    def __init__(self, eps: Any = 1e-3) -> None:
        self.eps = nonnegative("Orthogonalization", "eps", eps)  # (one per member of a stack)

    def rewrite(self, delta: Any, ctx: LayerContext) -> Any:
        B = delta.shape[-1]
        if B == 1:  # G = D: the plain update, exactly
            return delta
        G = ctx.gram
        if type(G) is np.ndarray and type(delta) is np.ndarray:
            return self._rewrite_numpy(delta, G, ctx.bias)
        xp = namespace(delta)
        D = xp.linalg.diagonal(G)  # ‖ō_i‖²
        # a zero input column (no bias) has D_i = 0; regularise it with 1 instead (its right-hand
        # side is 0, so it gets δ̃_i = 0 and leaves the other samples alone)
        ridge = per_member(self.eps, D) * (D if ctx.bias else xp.where(D > 0, D, 1.0))
        M = G + xp.eye(B, dtype=G.dtype, device=device(G)) * ridge[..., None, :]
        # δ̃ᵀ = (G + εD)⁻¹ (1+ε) D δᵀ, as G and D are symmetric: a solve, not an inverse
        rhs = delta * (per_member(1 + self.eps, D) * D)[..., None, :]
        return xp.linalg.solve(M, rhs.mT).mT

    def _rewrite_numpy(self, delta: np.ndarray, G: np.ndarray, bias: bool) -> np.ndarray:
        """`rewrite` for NumPy arrays: the same M = G + εD and right-hand side (1+ε) D δ, bit
        for bit, with array methods (no dispatch), and a Cholesky solve where it applies."""
        D = G.diagonal(axis1=-2, axis2=-1).copy()  # ‖ō_i‖² (a copy: G's diagonal is a view)
        ridge = per_member(self.eps, D) * (D if bias else np.where(D > 0, D, 1.0))
        rhs = delta * (per_member(1 + self.eps, D) * D)[..., None, :]
        if G.ndim == 3:  # a stack: each member's system, as alone
            return np.stack([_solve(G[e], ridge[e], rhs[e]) for e in range(G.shape[0])])
        return _solve(G, ridge, rhs)


def _solve(G: np.ndarray, ridge: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """X with X (G + diag(ridge)) = rhs: Cholesky where it applies, else LU."""
    solved = _cholesky_solve(_ridged(G, ridge), rhs)
    if solved is not None:
        return solved
    # not numerically positive definite (a singular G with ε = 0), or no SciPy: LU, which
    # raises LinAlgError for a singular M
    return np.linalg.solve(_ridged(G, ridge), rhs.T).T


def _ridged(G: np.ndarray, ridge: np.ndarray) -> np.ndarray:
    """G + diag(ridge), a new array (G is the context's, which a later rule may read)."""
    M = G.copy()
    M.reshape(-1)[:: M.shape[0] + 1] += ridge  # the diagonal only: the bits of G + I·ridge
    return M


def _cholesky_solve(M: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """X with X M = rhs for a symmetric positive definite M (overwritten), by LAPACK through
    SciPy: M = L Lᵀ (``potrf``), then two triangular solves from the right
    (``trsm``: Y Lᵀ = rhs, X L = Y). None when M is not numerically positive definite, or
    there is no SciPy for this dtype."""
    routines = _cholesky_routines(M.dtype)
    if routines is None:
        return None
    potrf, trsm = routines
    # M is symmetric: its transpose is the same matrix in Fortran order, factorised in place
    L, info = potrf(M.T, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        if info < 0:  # pragma: no cover - an argument LAPACK refused: a bug here
            raise RuntimeError(f"LAPACK potrf refused argument {-info}")
        return None
    Y = trsm(1.0, L, rhs, side=1, lower=1, trans_a=1)  # Y Lᵀ = rhs
    return trsm(1.0, L, Y, side=1, lower=1, overwrite_b=1)  # X L = Y, so X L Lᵀ = rhs


@functools.cache
def _cholesky_routines(dtype: np.dtype) -> tuple[Any, Any] | None:
    """LAPACK's ``potrf`` and BLAS's ``trsm`` for real ``dtype`` (float32, float64) from SciPy,
    or None (no SciPy, or another dtype). Looked up once per dtype: SciPy is imported on the
    first use only."""
    if dtype not in (np.float32, np.float64):
        return None
    try:
        from scipy.linalg import blas, lapack  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    return lapack.get_lapack_funcs("potrf", dtype=dtype), blas.get_blas_funcs("trsm", dtype=dtype)
