"""How much of a learned function on the unit sphere is of polynomial degree 1 and of degree
≤ 2, and how a training step moves each degree (science.md §4: T keeps each degree's
harmonics invariant, `tinyvec.analysis.eigen_operator`, so a degree is a set of eigenmodes).

The parts are least-squares fits on samples x (features × samples) of the design
``[1, x, x_i x_j (i ≤ j)]`` (`degree_design`): the share of degree ≤ d is the share of the
outputs' variance the columns of degree ≤ d explain (`fit_share`). On the sphere
``Σ x_i² = 1``, so the constant and the quadratic columns overlap; centred quantities ignore
that constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .eigen_operator import Spectrum, alignment, degree2_matrix, traceless_basis
from .ritz import ritz, ritz_residual


def quadratic_features(x: np.ndarray) -> np.ndarray:
    """The monomials x_i x_j (i ≤ j) of each column, as rows."""
    i, j = np.triu_indices(x.shape[0])
    return x[i] * x[j]


def subspace_alignment(V: np.ndarray, eigenvector: np.ndarray) -> float:
    """How well the span of the columns of V holds an eigenvector's real invariant space
    (its line, or the plane span(Re u, Im u) of a complex one): the smallest cosine between
    a vector of that space and the span, 1 when the space lies in the span."""
    u = np.asarray(eigenvector)
    plane = u.real[:, None] if np.allclose(u.imag, 0) else np.column_stack([u.real, u.imag])
    P, _ = np.linalg.qr(plane)
    Q, _ = np.linalg.qr(V)
    return float(np.linalg.svd(Q.T @ P, compute_uv=False).min())


def fit_share(design: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares of each row of F (K × n) on the design (n × p): the coefficients C
    (p × K) and the share of the total variance of F explained,
    ``1 − Σ_k var(F_k − (D C)_k) / Σ_k var(F_k)``.

    >>> x = np.linspace(-1, 1, 9)
    >>> C, share = fit_share(np.column_stack([np.ones(9), x]), np.array([3 * x + 1]))
    >>> np.round(C.ravel(), 12).tolist(), round(share, 12)
    ([1.0, 3.0], 1.0)
    """
    coef, *_ = np.linalg.lstsq(design, F.T, rcond=None)
    residual = F.T - design @ coef
    return coef, float(1 - residual.var(axis=0).sum() / F.var(axis=1).sum())


def degree_analysis(model: Any, spectrum: Spectrum, lam: float, x: np.ndarray) -> dict[str, Any]:
    """How much of the learned outputs' variance is of degree 1 and of degree ≤ 2 (least
    squares on fresh samples), and the alignment of the linear part with eigenvectors of
    (A+B)ᵀ: the cosine of `alignment` for one output, `subspace_alignment` of the K linear
    parts for K outputs."""
    F = np.atleast_2d(model(x))
    ones = np.ones((x.shape[1], 1))
    coef1, frac1 = fit_share(np.column_stack([ones, x.T]), F)
    _, frac2 = fit_share(np.column_stack([ones, x.T, quadratic_features(x).T]), F)
    V = coef1[1:]  # h × K linear parts
    mu1, V1 = spectrum.values1, spectrum.vectors1
    near = int(np.argmin(np.abs(mu1 - lam)))
    top = int(np.argmax(np.abs(mu1)))

    def cos(i: int) -> float:
        return alignment(V[:, 0], V1[:, i]) if V.shape[1] == 1 else subspace_alignment(V, V1[:, i])

    return {
        "variance_degree1": frac1,
        "variance_degree_le2": frac2,
        "nearest_degree1": {"real": float(mu1[near].real), "imag": float(mu1[near].imag),
                            "cosine": cos(near)},
        "dominant_degree1": {"real": float(mu1[top].real), "imag": float(mu1[top].imag),
                             "cosine": cos(top)},
    }  # fmt: skip


def degree_design(x: np.ndarray) -> tuple[np.ndarray, slice, slice]:
    """The least-squares design ``[1, x, x_i x_j]`` on samples x and the column slices of
    degree 1 and of degree 2 (``Σ x_i² = 1`` on the sphere, so the constant and the quadratic
    columns overlap; lstsq's minimum-norm solution splits that part between them, a constant
    which centred quantities ignore)."""
    h = x.shape[0]
    D = np.column_stack([np.ones(x.shape[1]), x.T, quadratic_features(x).T])
    return D, slice(1, 1 + h), slice(1 + h, D.shape[1])


@dataclass(frozen=True)
class Mode:
    """One eigenmode of T on degree 2 (issue 24: the frontier like for like): its eigenvalue
    ``mu`` (for a pair, the one with Im ≥ 0), the traceless basis ``P`` of `traceless_basis`
    and the **left** eigenvector ``w`` of `degree2_matrix` (the row of V⁻¹, so w·v = 1). The
    mode's coordinate of a degree-2 function xᵀSx is ``c = w·Pᵀvec(S)``, and T multiplies it
    by μ exactly: ``w·(D₂φ) = μ w·φ``, whatever the other modes (T is not normal, so the
    coordinate is the dual one, not an orthogonal projection)."""

    mu: complex
    P: np.ndarray
    w: np.ndarray


def leading_degree2_mode(A: np.ndarray, B: np.ndarray) -> Mode:
    """The degree-2 eigenmode of largest real part (`Mode`).

    >>> from tinyvec.analysis.eigen_operator import make_operators
    >>> A, B = make_operators(4, 1.0, 0)
    >>> m = leading_degree2_mode(A, B)
    >>> mu = np.linalg.eigvals(degree2_matrix(A, B))
    >>> bool(np.isclose(m.mu.real, mu.real.max()))
    True
    """
    D2 = degree2_matrix(A, B)
    mu, V = np.linalg.eig(D2)
    order = np.lexsort((-mu.imag, -mu.real))  # largest Re first, Im ≥ 0 first within a pair
    i = int(order[0])
    return Mode(mu=complex(mu[i]), P=traceless_basis(A.shape[0]), w=np.linalg.inv(V)[i])


def mode_coordinates(quadratic: np.ndarray, mode: Mode) -> np.ndarray:
    """The coordinates c (complex, one per column) along ``mode`` of degree-2 functions given
    by their coefficients on the monomials x_i x_j, i ≤ j (`quadratic_features` order; p × K):
    S_ii = q_ii, S_ij = S_ji = q_ij / 2, then ``c = w·Pᵀvec(S)`` (the trace part, a constant
    on the sphere, drops out)."""
    h = math.isqrt(mode.P.shape[0])
    i, j = np.triu_indices(h)
    K = quadratic.shape[1]
    S = np.zeros((h, h, K))
    S[i, j] = np.where((i == j)[:, None], quadratic, quadratic / 2)
    S[j, i] = S[i, j]
    return np.asarray(mode.w @ (mode.P.T @ S.reshape(h * h, K)))


def degree_gains(
    F: np.ndarray, Y: np.ndarray, F_next: np.ndarray, design: tuple[np.ndarray, slice, slice],
    mode: Mode | None = None,
) -> dict[str, float]:  # fmt: skip
    """Per degree d ∈ {1, 2}: the share of the outputs' variance of degree d, and the step's gain
    in function space on that degree, ``g_d = ⟨ΔF_d, E_d⟩/‖E_d‖²``, with E the step's direction
    (``Y − MF``, the Ritz residual; for one output the same with M = λ̂) and X_d the part of X
    of degree d (least squares on the design of `degree_design`). An out-of-span eigenfunction
    of degree d and eigenvalue μ grows relative to the learned ones, of real part about λ, at
    about ``g_d (Re μ − λ)`` per step: a small g₂ keeps degree 2 out, whatever the gap.

    >>> from tinyvec.analysis.eigen_operator import unit_vectors
    >>> x = unit_vectors(3, 400, np.random.default_rng(0))
    >>> F, Y = x[:1] + x[1:2] * x[2:3], 2 * x[:1] + 0.5 * x[1:2] * x[2:3]
    >>> E = ritz_residual(F, Y)[1]
    >>> D, d1, d2 = degree_design(x)
    >>> lin = D[:, d1] @ (np.linalg.pinv(D) @ E.T)[d1]  # E's degree-1 part, moved with gain 0.3
    >>> g = degree_gains(F, Y, F + 0.3 * lin.T, (D, d1, d2))
    >>> round(g["gain_degree1"], 6), abs(round(g["gain_degree2"], 6))
    (0.3, 0.0)

    With ``mode`` (`leading_degree2_mode`), the same measures on that one mode, in its
    coordinates c = (c_1 … c_K) of the K outputs, e of the step's direction E, Δc of the step
    (complex inner products ⟨a, b⟩ = Re Σ āb): ``mode_amplitude`` ‖c‖; ``mode_growth`` the
    measured growth rate of the step, ``⟨Δc, c⟩/‖c‖²``; ``mode_gain`` ``g = ⟨Δc, e⟩/‖e‖²``;
    ``mode_gap`` ``⟨e, c⟩/‖c‖²`` (≈ Re μ₂ − the learned Ritz values as the mode sees them);
    ``mode_predicted`` ``g·mode_gap``, the growth a step along E with the mode's own gain
    would give. Measured and predicted differ by the part of Δc along c that is not along e.
    """
    D, d1, d2 = design
    _, _, r2 = ritz(F, Y)
    Fc = F - F.mean(axis=1, keepdims=True)
    _, E = ritz_residual(F, Y)
    pinv = np.linalg.pinv(D)
    cf, ce, cd = pinv @ F.T, pinv @ E.T, pinv @ (F_next - F).T
    out: dict[str, float] = {"r2": r2}
    total = float((Fc**2).sum())
    for name, sl in (("degree1", d1), ("degree2", d2)):
        part_f = D[:, sl] @ cf[sl]
        part_f = part_f - part_f.mean(axis=0)
        part_e, part_d = D[:, sl] @ ce[sl], D[:, sl] @ cd[sl]
        part_e, part_d = part_e - part_e.mean(axis=0), part_d - part_d.mean(axis=0)
        ee = float((part_e**2).sum())
        out[f"share_{name}"] = float((part_f**2).sum()) / total
        # no degree-d residual to move along (an odd network has none of degree 2): no gain
        small = ee <= 1e-12 * float((E**2).sum())
        out[f"gain_{name}"] = math.nan if small else float((part_d * part_e).sum()) / ee
    if mode is not None:
        c, e, dc = (mode_coordinates(coef[d2], mode) for coef in (cf, ce, cd))
        cc, ee_ = float(np.vdot(c, c).real), float(np.vdot(e, e).real)
        gain = float(np.vdot(e, dc).real) / ee_ if ee_ > 0 else math.nan
        gap = float(np.vdot(c, e).real) / cc if cc > 0 else math.nan
        out.update({"mode_amplitude": math.sqrt(cc),
                    "mode_growth": float(np.vdot(c, dc).real) / cc if cc > 0 else math.nan,
                    "mode_gain": gain, "mode_gap": gap, "mode_predicted": gain * gap})  # fmt: skip
    return out
