"""The operator of the eigen-operator experiment (science.md §4, seed 001) and its exact spectrum.

On functions of a unit vector x ∈ S^{h-1}, with A, B orthogonal h × h matrices::

    (T f)(x) = f(Ax) + f(Bx)

T maps polynomials of degree d to polynomials of degree d and commutes with nothing in
particular, but because A and B are orthogonal it keeps each space of degree-d harmonics
(homogeneous harmonic polynomials restricted to the sphere) invariant. So its spectrum is the
union over d of the spectra of finite matrices:

- d = 0, constants: eigenvalue 2 (excluded: the experiment wants f with mean 0);
- d = 1, ``f(x) = v·x``: ``f(Ax) = (Aᵀv)·x``, so T acts on v as ``(A+B)ᵀ``; its eigenvalues
  are those of A+B;
- d = 2, ``f(x) = xᵀSx`` with S symmetric and traceless (``xᵀIx = 1`` on the sphere is a
  constant): ``S ↦ AᵀSA + BᵀSB``, a linear map of the h(h+1)/2 − 1 dimensional space of
  such S, written here as a matrix on an orthonormal basis.

Every eigenvalue has |μ| ≤ 2, and for a unit eigenfunction ``|μ|² = 4 − ‖f∘A − f∘B‖²``
(U_A f = f∘A and U_B f = f∘B are unitary on L²(S^{h-1})): the dominant eigenfunctions are the
ones A and B move alike, and low degrees tend to win because harmonics of higher degree vary
faster. We compute d ≤ 2 exactly; degree 3 and higher are not computed.

A and B are ``expm(t·K)`` with K a random skew-symmetric matrix (ours; the seed only says
"random but not Haar"): t = 0 gives the identity, small t matrices near it, and as t grows
the rotation angles spread over (−π, π]. K is scaled so that its eigenvalues ±iω fill
roughly ω ∈ [−2, 2] (a semicircle), so t·2 is about the largest rotation angle.

    >>> import numpy as np
    >>> A, B = make_operators(5, t=0.5, seed=0)
    >>> bool(np.allclose(A.T @ A, np.eye(5)))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# An eigenvalue whose imaginary part is below this (relative to 2, the bound on |μ|) is real.
REAL_TOL = 1e-9


def skew_symmetric(h: int, rng: np.random.Generator) -> np.ndarray:
    """K = (G − Gᵀ)/√(2h), G with standard normal entries: skew-symmetric (Kᵀ = −K), with
    off-diagonal entries of variance 1/h, so its eigenvalues ±iω have |ω| ≲ 2."""
    G = rng.standard_normal((h, h))
    return (G - G.T) / math.sqrt(2 * h)


def expm_skew(K: np.ndarray, t: float = 1.0) -> np.ndarray:
    """exp(t·K) for skew-symmetric K, an orthogonal matrix (NumPy only).

    iK is Hermitian, so ``iK = U diag(w) Uᴴ`` with real w and unitary U, and
    ``exp(tK) = U diag(e^{−itw}) Uᴴ``, real up to rounding.

    >>> K = np.array([[0.0, -1.0], [1.0, 0.0]])
    >>> np.round(expm_skew(K, np.pi / 2), 12) + 0.0
    array([[ 0., -1.],
           [ 1.,  0.]])
    """
    K = np.asarray(K, dtype=float)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or not np.allclose(K, -K.T):
        raise ValueError(f"expm_skew needs a square skew-symmetric matrix, got shape {K.shape}")
    w, U = np.linalg.eigh(1j * K)
    return ((U * np.exp(-1j * t * w)) @ U.conj().T).real


def random_orthogonal(h: int, t: float, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal h × h matrix ``expm(t·K)``, K from `skew_symmetric` (not Haar:
    its distribution concentrates at the identity as t → 0)."""
    if h < 1:
        raise ValueError(f"the dimension h must be ≥ 1, got {h}")
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"the non-Haar parameter t must be a finite number ≥ 0, got {t}")
    return expm_skew(skew_symmetric(h, rng), t)


def make_operators(h: int, t: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The pair (A, B) of independent `random_orthogonal` matrices for an experiment seed."""
    rng = np.random.default_rng([seed, 0])  # stream 0 of the seed: the operators
    return random_orthogonal(h, t, rng), random_orthogonal(h, t, rng)


def unit_vectors(h: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n independent uniform unit vectors in R^h, as the columns of an h × n matrix."""
    x = rng.standard_normal((h, n))
    return x / np.linalg.norm(x, axis=0)


# --- the exact spectrum ---------------------------------------------------------------------
def apply_operator(f: Any, A: np.ndarray, B: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(T f)(x) = f(Ax) + f(Bx)`` on the columns of x, for f a model (or any function of
    features × samples arrays) with outputs K × n: one call on ``[Ax, Bx]``. Called on plain
    arrays, a tinyvec model builds no graph, so no gradient flows through these targets.
    For a stack of E models (`tv.stack`), A and B are (E, h, h), x is (E, h, n) and
    ``(T f)(x)`` (E, K, n): each member's own operators on its own vectors.

    >>> A, B = make_operators(4, t=0.3, seed=1)
    >>> x = unit_vectors(4, 5, np.random.default_rng(0))
    >>> v = np.array([[1.0, 0.0, -2.0, 0.5]])
    >>> bool(np.allclose(apply_operator(lambda z: v @ z, A, B, x), v @ (A + B) @ x))
    True
    >>> A2, B2 = make_operators(4, t=0.3, seed=2)  # a stack of two: each its own operators
    >>> Y = apply_operator(lambda z: v @ z, np.stack([A, A2]), np.stack([B, B2]), np.stack([x, x]))
    >>> Y.shape, bool(np.allclose(Y[1], v @ (A2 + B2) @ x))
    ((2, 1, 5), True)
    """
    n = x.shape[-1]  # (the samples are the last axis, of one model's or of a stack's x)
    Z = f(np.concatenate([A @ x, B @ x], axis=-1))
    return Z[..., :n] + Z[..., n:]


def degree1_spectrum(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues μ and eigenvectors (columns) v of ``(A+B)ᵀ``: ``T(v·x) = μ v·x``."""
    return np.linalg.eig((A + B).T)


def traceless_basis(h: int) -> np.ndarray:
    """An orthonormal basis (Frobenius inner product) of the symmetric traceless h × h
    matrices, as the columns of an h² × (h(h+1)/2 − 1) matrix (each column a row-major vec).

    >>> P = traceless_basis(3)
    >>> P.shape, bool(np.allclose(P.T @ P, np.eye(5)))
    ((9, 5), True)
    """
    columns = []
    for i in range(h):
        for j in range(i + 1, h):
            E = np.zeros((h, h))
            E[i, j] = E[j, i] = 1 / math.sqrt(2)
            columns.append(E.ravel())
    # diagonal part: an orthonormal basis of the vectors orthogonal to (1, …, 1)
    Q, _ = np.linalg.qr(np.column_stack([np.ones(h), np.eye(h)[:, : h - 1]]))
    columns.extend(np.diag(Q[:, k]).ravel() for k in range(1, h))
    return np.array(columns).T.reshape(h * h, -1)


def degree2_matrix(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The matrix of ``S ↦ AᵀSA + BᵀSB`` on the basis of `traceless_basis` (the subspace is
    invariant: tr(AᵀSA) = tr S). With row-major vec, ``vec(XSY) = (X ⊗ Yᵀ) vec(S)``."""
    P = traceless_basis(A.shape[0])
    return P.T @ (np.kron(A.T, A.T) + np.kron(B.T, B.T)) @ P


def degree2_spectrum(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues μ and eigenvectors of the degree-2 map, each eigenvector as an h × h
    symmetric traceless matrix S (stacked on axis 0): ``T(xᵀSx) = μ xᵀSx``."""
    h = A.shape[0]
    mu, V = np.linalg.eig(degree2_matrix(A, B))
    S = (traceless_basis(h) @ V).T.reshape(-1, h, h)
    return mu, S


@dataclass
class Spectrum:
    """Eigenvalues of T on harmonics of degree 1 and 2 (``values``, complex) with their
    ``degrees``, sorted by decreasing modulus; ``vectors1`` are the eigenvectors of (A+B)ᵀ
    (columns, in the order of ``values1``)."""

    values: np.ndarray
    degrees: np.ndarray
    values1: np.ndarray
    vectors1: np.ndarray

    @classmethod
    def of(cls, A: np.ndarray, B: np.ndarray) -> Spectrum:
        mu1, V1 = degree1_spectrum(A, B)
        mu2, _ = degree2_spectrum(A, B)
        values = np.concatenate([mu1, mu2])
        degrees = np.concatenate([np.ones(mu1.size, int), np.full(mu2.size, 2)])
        order = np.argsort(-np.abs(values), kind="stable")
        return cls(values[order], degrees[order], mu1, V1)

    def dominant(self) -> dict:
        """The eigenvalue of largest modulus and the gap in modulus to the next distinct one
        (a complex pair counts once)."""
        mu = self.values[0]
        rest = self.values[1:][~np.isclose(self.values[1:], np.conj(mu))]
        return {
            **describe(mu, int(self.degrees[0])),
            "gap": float(abs(mu) - abs(rest[0])) if rest.size else math.nan,
        }

    def nearest(self, lam: float) -> dict:
        """The true eigenvalue nearest to a learned λ̂, in value (|μ − λ̂|) and in modulus
        (| |μ| − |λ̂| |), each with its degree and the distance."""
        by_value = int(np.argmin(np.abs(self.values - lam)))
        by_modulus = int(np.argmin(np.abs(np.abs(self.values) - abs(lam))))
        return {
            "by_value": {
                **describe(self.values[by_value], int(self.degrees[by_value])),
                "distance": float(abs(self.values[by_value] - lam)),
            },
            "by_modulus": {
                **describe(self.values[by_modulus], int(self.degrees[by_modulus])),
                "distance": float(abs(abs(self.values[by_modulus]) - abs(lam))),
                "relative_distance": float(
                    abs(abs(self.values[by_modulus]) - abs(lam)) / abs(self.values[by_modulus])
                ),
            },
        }

    def extreme_degree1(self, lam: float) -> dict:
        """The degree-1 eigenvalue at the end of the real axis on λ̂'s side: largest real part
        for λ̂ ≥ 0, smallest for λ̂ < 0, with its distance to λ̂. This is where R² ascent with
        targets held fixed settles (see `tinyvec.experiments.eigen`) when it is real."""
        mu = self.values1
        i = int(np.argmax(mu.real) if lam >= 0 else np.argmin(mu.real))
        return {**describe(mu[i], 1), "distance": float(abs(mu[i] - lam))}


def describe(mu: complex, degree: int) -> dict:
    """A JSON-friendly eigenvalue: real and imaginary parts, modulus, degree, real or not."""
    mu = complex(mu)
    return {
        "real": mu.real,
        "imag": mu.imag,
        "modulus": abs(mu),
        "degree": degree,
        "is_real": abs(mu.imag) <= REAL_TOL * 2,
    }


# --- estimates from samples -----------------------------------------------------------------
def lambda_hat(f: np.ndarray, y: np.ndarray) -> float:
    """λ̂ = cov(f, y) / var(f): the least-squares slope of the targets y = (Tf)(x) on f(x).
    For an eigenfunction (mean 0 or not: cov ignores constants) it is the eigenvalue.

    >>> x = np.linspace(-1, 1, 11)
    >>> round(lambda_hat(x, 1.5 * x + 2.0), 12)
    1.5
    """
    f, y = np.ravel(f), np.ravel(y)
    a = f - f.mean()
    return float(a @ (y - y.mean()) / (a @ a))


def r_squared(f: np.ndarray, y: np.ndarray) -> float:
    """R² = cov(f, y)² / (var f · var y), the squared correlation (1 for an eigenfunction
    with a real eigenvalue, whatever its sign).

    >>> x = np.linspace(-1, 1, 11)
    >>> round(r_squared(x, -0.5 * x + 1.0), 12)
    1.0
    """
    f, y = np.ravel(f), np.ravel(y)
    a, b = f - f.mean(), y - y.mean()
    return float((a @ b) ** 2 / ((a @ a) * (b @ b)))


def linear_part(x: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, float]:
    """The degree-1 part of f from samples: least squares ``f(x) ≈ c + v·x`` over the columns
    of x. Returns v and the fraction of the variance of f it explains.

    >>> rng = np.random.default_rng(0)
    >>> x = unit_vectors(3, 200, rng)
    >>> v, frac = linear_part(x, np.array([1.0, -2.0, 0.5]) @ x + 3.0)
    >>> np.round(v, 9) + 0.0, round(frac, 9)
    (array([ 1. , -2. ,  0.5]), 1.0)
    """
    f = np.ravel(f)
    design = np.column_stack([np.ones(x.shape[1]), x.T])
    coef, *_ = np.linalg.lstsq(design, f, rcond=None)
    residual = f - design @ coef
    return coef[1:], float(1 - residual.var() / f.var())


def alignment(v: np.ndarray, eigenvector: np.ndarray) -> float:
    """|cos| of the angle between a real vector v and an eigenvector: for a real eigenvector
    the plain cosine, for a complex one the cosine with its real invariant plane
    span(Re u, Im u), i.e. ‖projection of v on the plane‖ / ‖v‖.

    >>> round(alignment(np.array([1.0, 1.0, 0.0]), np.array([1j, 1.0, 0.0])), 12)
    1.0
    """
    u = np.asarray(eigenvector)
    if np.allclose(u.imag, 0):
        plane = u.real[:, None]
    else:
        plane = np.column_stack([u.real, u.imag])
    Q, _ = np.linalg.qr(plane)
    return float(np.linalg.norm(Q.T @ v) / np.linalg.norm(v))


def plane_angle(v: np.ndarray, eigenvector: np.ndarray) -> float:
    """The angle of v in the invariant plane of a complex eigenvector u = a + ib of (A+B)ᵀ,
    eigenvalue μ: with v ≈ c₁a + c₂b (least squares), ``atan2(c₂, c₁)``. One application of
    (A+B)ᵀ turns this angle by −arg μ, so a rotating linear part shows as a drifting angle.

    >>> round(plane_angle(np.array([0.0, 2.0]), np.array([1.0, 1j])), 6)
    1.570796
    """
    u = np.asarray(eigenvector)
    c, *_ = np.linalg.lstsq(np.column_stack([u.real, u.imag]), v, rcond=None)
    return float(np.arctan2(c[1], c[0]))
