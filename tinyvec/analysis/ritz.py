"""Ritz values of a learned subspace of functions, and the subspace ascent that learns it
(science.md §4, seed 001; the formulation of K outputs is ours).

A network N with K outputs spans, on samples x, the K functions F = N(x) (K × n); with an
operator T (here `tinyvec.analysis.eigen_operator`: ``(T f)(x) = f(Ax) + f(Bx)``) its
targets are Y = T F. Both centred, the K × K **Ritz matrix** ``M = Y Fᵀ(F Fᵀ)⁻¹`` is the
least-squares fit ``Y ≈ M F`` (`ritz`); when span F is invariant under T, ``TF = MF`` and the
eigenvalues of M are eigenvalues of T, a complex pair as a pair (one real function cannot be
an eigenfunction of a complex pair; a 2-D real subspace can). The multi-output
``R² = 1 − ‖E‖²/‖Y‖²``, ``E = Y − M F`` the residual (`ritz_residual`), is the share of the
targets' variance in the span of the outputs.

**Which eigenvalue does ascent find? One output.** A step on ``−R²(N(x), y)`` estimates
``λ̂ = cov(N(x), y)/var(N(x))``. With a = f − mean f and b = y − mean y,
``∂R²/∂a = (2 cov/(var a var b))·(b − λ̂ a)``, so a step in function space is
``f ← f + η·sign(λ̂)·(T f − λ̂ f)``: a power iteration on ``I + η·sign(λ̂)(T − λ̂)``, under
which an eigencomponent μ grows relative to the current one when ``sign(λ̂)(Re μ − λ̂) > 0``.
The real fixed points that survive are the end of the spectrum along the real axis on λ̂'s
side (largest Re μ for λ̂ > 0, smallest for λ̂ < 0), not the eigenvalue of largest modulus;
when that end is a complex pair no real f is a fixed point and the learned function turns in
the pair's plane (`tinyvec.analysis.oscillation`).

**K outputs.** The exact gradient of the multi-output R² with respect to F, at fixed targets
and optimal M, is ``∝ MᵀE``; in function space a step along it is
``F ← F + η Mᵀ(TF − MF)``, and on an eigencomponent μ of T outside span F the factor Mᵀ
multiplies the growth by μ itself: modes are ranked by |μ|², the largest modulus wins
(measured: seed 3, K = 2, to 1.370 ± 1.150i, the pair of largest modulus, 51% off the pair of
largest real part; `tests/experiments/test_eigen.py` reproduces it with a linear model). We
drop Mᵀ and step along E itself (`ascent_loss`: ``−⟨F, E⟩/n`` with E held fixed, whose
gradient in F is ``−E/n``): ``F ← F + η(TF − MF) = (I − ηM)F + η TF``. The span of the new
outputs is, to first order in η, the span of ``(I + ηT)F``: subspace iteration on
``I + ηT``, whose dominant modes are those of largest ``|1 + ημ|² = 1 + 2η Re μ + O(η²)``,
i.e. of **largest real part** (`leading_by_real_part`), the same order as one output; K = 1
is the same step up to the positive factor ``2/(var b)`` and ``sign(λ̂)``. Subspace iteration
needs the basis kept well-conditioned, or every output is pulled toward the leading mode and
M becomes singular: before each step the last (linear) layer is **re-whitened**
(`whiten_last_layer`; the span, hence the Ritz values, is unchanged).

`nearest_eigenvalues` and `leading_errors` compare learned Ritz values with the exact
spectrum; `probe_metrics` and `ritz_observables` measure a network against T on a fixed
probe set.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from ..engine.ops import reduce_sum
from ..engine.tensor import Tensor
from ..optimise import gradient
from .eigen_operator import Spectrum, apply_operator, lambda_hat, r_squared


def ritz(F: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The K × K Ritz matrix of the outputs F (K × n) and targets Y = T F (K × n), both
    centred: ``M = Y Fᵀ (F Fᵀ)⁻¹`` (least squares ``Y ≈ M F``); its eigenvalues, sorted by
    decreasing real part; and the multi-output ``R² = 1 − ‖Y − MF‖²/‖Y‖²``, the share of the
    targets' variance in the span of the outputs. When span F is T-invariant, ``TF = MF``
    exactly and the eigenvalues of M are eigenvalues of T.

    >>> F = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    >>> Mt = np.array([[1.0, -0.5], [0.5, 1.0]])  # eigenvalues 1 ± 0.5i
    >>> M, values, r2 = ritz(F, Mt @ F)
    >>> np.round(values, 12).tolist(), round(r2, 12)
    ([(1+0.5j), (1-0.5j)], 1.0)
    """
    Fc = F - F.mean(axis=1, keepdims=True)
    Yc = Y - Y.mean(axis=1, keepdims=True)
    M = np.linalg.solve(Fc @ Fc.T, Fc @ Yc.T).T
    E = Yc - M @ Fc
    values = np.linalg.eigvals(M)
    values = values[np.lexsort((-values.imag, -values.real.round(12)))]
    return M, values, float(1 - (E * E).sum() / (Yc * Yc).sum())


def ritz_residual(F: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Ritz matrix M of `ritz` and the residual of its fit, ``E = Yc − M Fc`` (Fc, Yc the
    centred outputs and targets): the direction that subspace ascent moves the outputs along.

    >>> F = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
    >>> M, E = ritz_residual(F, 2 * F)
    >>> np.round(M, 12).tolist(), float(np.abs(E).max())
    ([[2.0, 0.0], [0.0, 2.0]], 0.0)
    """
    M, _, _ = ritz(F, Y)
    E = (Y - Y.mean(axis=1, keepdims=True)) - M @ (F - F.mean(axis=1, keepdims=True))
    return M, E


def whiten_last_layer(model: Any, Z: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    """Re-whiten the outputs: with C the covariance of the outputs Z (K × n) of the current
    network, multiply the last (linear) layer's weight and bias by ``S = C^(-1/2)``, so the
    outputs become S·N, with identity covariance on these samples. Returns S (``S·Z`` is the
    new network's output on the same inputs: the last layer is linear). Without it K outputs
    trained by subspace ascent drift toward one direction (every output is pulled toward the
    leading mode) and the Ritz fit becomes ill-conditioned."""
    C = np.cov(Z)
    w, U = np.linalg.eigh(np.atleast_2d(C))
    S = (U / np.sqrt(np.maximum(w, floor * max(w.max(), floor)))) @ U.T
    last = model[-1]
    last.weight = S @ last.weight
    last.bias = S @ last.bias
    return S


def ascent_gradient(
    model: Any, A: np.ndarray, B: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, Any]:
    """One step of subspace ascent for K outputs, before the update: re-whiten the last layer
    on the outputs at Ax and Bx (uniform unit vectors too, so this costs no extra forward
    pass), form the targets Y = N(Ax) + N(Bx) of the whitened network, and take the gradient
    of `ascent_loss` at x. Returns (Y, gradient)."""
    n = x.shape[1]
    Z = model(np.concatenate([A @ x, B @ x], axis=1))
    Z = whiten_last_layer(model, Z) @ Z
    Y = Z[:, :n] + Z[:, n:]
    return Y, gradient(lambda m: ascent_loss(m(x), Y), model)


def ascent_loss(F: Any, Y: np.ndarray) -> Any:
    """The subspace-ascent loss ``−⟨F, E⟩/n`` of K outputs F (a Tensor, K × n) with the
    residual ``E = Y − M F`` of the Ritz fit (`ritz_residual`) held fixed: its gradient with
    respect to F is ``−E/n``, so a descent step moves the outputs along E (see the module doc
    for why E and not the gradient of the multi-output R², ``∝ MᵀE``). E is centred, so the
    constant part of F gets no gradient."""
    Fd = F.data if isinstance(F, Tensor) else F
    _, E = ritz_residual(Fd, Y)
    return -reduce_sum(F * E) / Fd.shape[1]


def leading_by_real_part(
    spectrum: Spectrum, k: int, degree1: bool = False
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The k exact eigenvalues (degree 1 and 2, or degree 1 only) of largest real part, their
    degrees, and whether the cut at k separates a complex pair (the k-th is complex, its
    conjugate the (k+1)-th: one k-dimensional real subspace cannot hold half a pair)."""
    values = spectrum.values1 if degree1 else spectrum.values
    degrees = np.ones(values.size, int) if degree1 else spectrum.degrees
    order = np.argsort(-values.real, kind="stable")
    mu, deg = values[order], degrees[order]
    last = mu[k - 1]
    split = bool(abs(last.imag) > 1e-9 and not np.isclose(mu[: k - 1], np.conj(last)).any())
    return mu[:k], deg[:k], split


def nearest_eigenvalues(values: np.ndarray, spectrum: Spectrum) -> list[dict[str, Any]]:
    """Each Ritz value with the nearest exact eigenvalue μ (degree 1 or 2) and the relative
    distance ``|ritz − μ|/|μ|``."""
    out = []
    for value in values:
        i = int(np.argmin(np.abs(spectrum.values - value)))
        mu = spectrum.values[i]
        out.append({"real": value.real, "imag": value.imag,
                    "nearest": {"real": mu.real, "imag": mu.imag,
                                "degree": int(spectrum.degrees[i])},
                    "relative_distance": float(abs(value - mu) / abs(mu))})  # fmt: skip
    return out


def leading_errors(values: np.ndarray, leading: np.ndarray, degrees: np.ndarray, split: bool,
                   tolerance: float = 0.02) -> dict[str, Any]:  # fmt: skip
    """Each exact eigenvalue μ_j among the K of largest real part (`leading_by_real_part`)
    with the learned Ritz value matched to it one to one, the matching π of least total
    relative error ``Σ_j |ritz_π(j) − μ_j|/|μ_j|`` (one Ritz value cannot account for two
    eigenvalues), and that relative error; ``met`` when every one is within ``tolerance``,
    the half of a pair split by the cut included (``split``: K real outputs cannot hold half
    a pair, so a split cut is not met unless a learned value happens to lie within the
    tolerance of that half; issue 24: excepting it called seed 6, K = 3 "all within 2 %"
    though its third Ritz value matches no leading eigenvalue); ``met_unsplit`` the same
    with the split half left out; ``unmatched``: how many learned values are not within the
    tolerance of the eigenvalue they are matched to.

    >>> r = leading_errors(np.array([2.0, 1.01]), np.array([1.0, 2.0]), np.array([1, 2]), False)
    >>> [round(x["relative_error"], 6) for x in r["eigenvalues"]], r["met"]
    ([0.01, 0.0], True)
    """
    cost = np.abs(values[None, :] - leading[:, None]) / np.abs(leading)[:, None]
    match = _least_matching(cost)
    items = []
    for j, (mu, d) in enumerate(zip(leading, degrees, strict=True)):
        err = float(cost[j, match[j]])
        excepted = split and j == len(leading) - 1
        items.append({"real": mu.real, "imag": mu.imag, "degree": int(d), "relative_error": err,
                      "met": err <= tolerance, "split_pair": excepted})  # fmt: skip
    counted = [x for x in items if not x["split_pair"]]
    degree1 = [x for x in counted if x["degree"] == 1]
    return {  # None: nothing to meet (K = 1 on half a pair; no degree-1 leader)
        "eigenvalues": items,
        "max_relative_error": max((x["relative_error"] for x in counted), default=math.nan),
        "met": all(x["met"] for x in items),
        "met_unsplit": all(x["met"] for x in counted) if counted else None,
        "unmatched": sum(not x["met"] for x in items),
        "degree1_met": all(x["met"] for x in degree1) if degree1 else None,
    }


def _least_matching(cost: np.ndarray) -> tuple[int, ...]:
    """The permutation p of least total ``Σ_i cost[i, p(i)]``: every permutation for K ≤ 8
    (the first of least cost, in order), else the Hungarian method (SciPy's
    ``linear_sum_assignment``, the same least total; K! permutations would never end)."""
    k = cost.shape[0]
    if k <= 8:
        return min(itertools.permutations(range(k)),
                   key=lambda p: sum(cost[i, j] for i, j in enumerate(p)))  # fmt: skip
    from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped, unused-ignore]

    rows, cols = linear_sum_assignment(cost)
    return tuple(int(c) for _, c in sorted(zip(rows, cols, strict=True)))


def probe_metrics(model: Any, A, B, xp: np.ndarray) -> tuple[float, float, np.ndarray]:
    """λ̂ and R² of the network ``model`` against T (``T f(x) = f(Ax) + f(Bx)``) on the probe
    set ``xp`` (h × n unit vectors), and N on it: with one output f = N(xp) and y = T f,
    λ̂ = cov(f, y)/var(f) and R² their squared correlation, f flat; with K outputs the real
    part of the leading Ritz value of `ritz`, the multi-output R², and F = N(xp) as K × n."""
    F, Y = model(xp), apply_operator(model, A, B, xp)
    if F.shape[0] > 1:
        _, values, r2 = ritz(F, Y)
        return float(values[0].real), r2, F
    f, y = np.ravel(F), np.ravel(Y)
    return lambda_hat(f, y), r_squared(f, y), f


def ritz_observables(model: Any, A, B, xp: np.ndarray) -> np.ndarray:
    """[R², Re μ_1 … Re μ_K, |Im μ_1| … |Im μ_K|]: the multi-output R² and the Ritz values μ
    of the network ``model`` against T on the probe set ``xp`` (`ritz`), as observables for
    a trend test (a completion monitor's): none depends on a batch, nor on the basis of the K
    outputs, and |Im μ| keeps a conjugate pair from swapping places."""
    F, Y = np.atleast_2d(model(xp)), np.atleast_2d(apply_operator(model, A, B, xp))
    _, values, r2 = ritz(F, Y)
    return np.concatenate([[r2], values.real, np.abs(values.imag)])
