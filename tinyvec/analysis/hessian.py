"""The curvature of a loss: the Hessian's extreme eigenvalues by Lanczos on Hessian-vector
products (science.md §7), the dense Hessian of a small model, and the sharpness
of each Dense layer's weight block.

The largest eigenvalue λ_max of the Hessian H = ∇²L(θ) is the *sharpness*: gradient descent
with step η is stable on the quadratic model of L only while λ_max < 2/η. Lanczos needs H only
through products H q (`tv.hvp`, a few gradients' cost each), never the n × n matrix:

    β_j q_{j+1} = H q_j − α_j q_j − β_{j−1} q_{j−1},    α_j = q_jᵀ H q_j,

with every new q reorthogonalised against all earlier ones (in floating point the plain
three-term recurrence loses orthogonality and repeats eigenvalues). The eigenvalues θ_i of the
tridiagonal T_m = tridiag(β, α, β) (Ritz values) approach H's extreme eigenvalues first; the
Ritz pair (θ_i, Q_m s_i) has residual ‖H Q_m s_i − θ_i Q_m s_i‖ = β_m |s_{m,i}|, which is what
decides convergence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import namespace, to_namespace, to_numpy
from ..layers.base import Tree, mirror, nodes, trainables
from ..optimise.curvature import hvp

__all__ = [
    "HessianEigs",
    "Lanczos",
    "hessian_eigs",
    "hessian_matrix",
    "lanczos",
    "layer_sharpness",
]


class Flat:
    """The parameters of ``model`` named by ``paths`` (all, by default) as one float64 vector,
    and back: `tree` makes a direction tree (zeros outside ``paths``), `vector` reads one."""

    def __init__(self, model: Any, paths: Sequence[str] | None = None) -> None:
        self.walked = nodes(model)
        every = trainables(model, self.walked)
        known = [p for p, _, _ in every]
        wanted = known if paths is None else list(paths)
        for p in wanted:
            if p not in known:
                raise ValueError(f"no parameter {p!r} in the model; its parameters: {known}")
        self.entries = [(p, layer, name) for p, layer, name in every if p in wanted]
        self.slots: dict[tuple[int, str], tuple[int, int, tuple[int, ...]]] = {}
        at = 0
        for _, layer, name in self.entries:
            shape = tuple(getattr(layer, name).shape)
            size = math.prod(shape)
            self.slots[id(layer), name] = (at, at + size, shape)
            at += size
        self.size = at

    def tree(self, vector: np.ndarray) -> Tree:
        def entry(layer: Any, name: str) -> Any:
            x = getattr(layer, name)
            slot = self.slots.get((id(layer), name))
            xp = namespace(x)
            if slot is None:
                return xp.zeros_like(x)
            start, stop, shape = slot
            return xp.astype(to_namespace(xp, vector[start:stop].reshape(shape)), x.dtype)

        return mirror(self.walked, entry)

    def vector(self, tree: Any) -> np.ndarray:
        return np.concatenate(
            [to_numpy(tree[p]).astype(np.float64).reshape(-1) for p, _, _ in self.entries]
        )


def hessian_matrix(
    f: Callable[[Any], Any], model: Any, paths: Sequence[str] | None = None
) -> np.ndarray:
    """The dense Hessian of scalar ``f`` at ``model``'s parameters (those of ``paths``: the
    block H_PP), built column by column, H e_i = `tv.hvp`(f, model, e_i), in the order of
    `tv.trainables`. For small models and tests: n Hessian-vector products.

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.Dense(1, 1, init=lambda shape, rng: np.full(shape, 3.0))
    >>> x, y = np.array([[1.0, 2.0]]), np.zeros((1, 2))
    >>> hessian_matrix(lambda m: tv.mse(m(x), y), model)   # mse of w x + b: 2 mean [[x², x], [x, 1]]
    array([[5., 3.],
           [3., 2.]])
    """
    flat = Flat(model, paths)
    columns = []
    for i in range(flat.size):
        e = np.zeros(flat.size)
        e[i] = 1.0
        columns.append(flat.vector(hvp(f, model, flat.tree(e))))
    return np.stack(columns, axis=1) if columns else np.zeros((0, 0))


@dataclass
class Lanczos:
    """What `lanczos` found: the Ritz values in ascending order, their vectors (columns, or
    None), their residual bounds β_m |s_{m,i}|, and the number of products with H."""

    values: np.ndarray
    vectors: np.ndarray | None
    residuals: np.ndarray
    products: int


def lanczos(
    matvec: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    k: int = 1,
    smallest: bool = False,
    tol: float = 1e-6,
    maxiter: int | None = None,
    vectors: bool = False,
    seed: int = 0,
    start: np.ndarray | None = None,
) -> Lanczos:
    """Lanczos with full reorthogonalisation for the symmetric n × n operator ``matvec``:
    iterates until the ``k`` largest Ritz values (and the smallest, with ``smallest``) have
    residual ≤ ``tol`` · max(1, |θ|), or the Krylov space is all of Rⁿ (then exact), or
    ``maxiter`` products. The start vector is ``start`` or random (``seed``): a previous
    eigenvector (a warm start) converges in fewer products.

    >>> import numpy as np
    >>> A = np.diag([3.0, -2.0, 1.0, 0.5])
    >>> found = lanczos(lambda q: A @ q, 4, k=2, smallest=True)
    >>> np.round(found.values, 12).tolist()
    [-2.0, 0.5, 1.0, 3.0]
    """
    if n < 1:
        raise ValueError(f"lanczos needs an operator of size n ≥ 1, got {n}")
    if not 1 <= k <= n:
        raise ValueError(f"lanczos: k must be in 1..{n} (the operator's size), got {k}")
    limit = n if maxiter is None else min(n, maxiter)
    q = np.random.default_rng(seed).standard_normal(n)
    if start is not None and np.linalg.norm(start) > 0:
        q = start + 1e-3 * np.linalg.norm(start) / math.sqrt(n) * q  # (not exactly an eigvec)
    Q = [q / np.linalg.norm(q)]
    alphas: list[float] = []
    betas: list[float] = []
    while True:
        w = matvec(Q[-1])
        alphas.append(float(Q[-1] @ w))
        basis = np.stack(Q, axis=1)
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w = w - basis @ (basis.T @ w)
        beta = float(np.linalg.norm(w))
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, S = np.linalg.eigh(T)
        residuals = beta * np.abs(S[-1, :])
        wanted = list(range(len(theta) - min(k, len(theta)), len(theta)))
        if smallest:
            wanted.append(0)
        done = all(residuals[i] <= tol * max(1.0, abs(theta[i])) for i in wanted)
        exhausted = beta <= 1e-12 * max(1.0, float(np.max(np.abs(theta))))  # invariant subspace
        if (done and len(alphas) >= min(k + 1, n)) or exhausted or len(alphas) >= limit:
            break
        betas.append(beta)
        Q.append(w / beta)
    return Lanczos(theta, basis @ S if vectors else None, residuals, len(alphas))


@dataclass
class HessianEigs:
    """`hessian_eigs`'s answer: the ``k`` largest eigenvalues (descending) and, when asked,
    their eigenvectors as trees shaped like the model; the most negative eigenvalue and its
    vector (``smallest``); the residual bounds, and the Hessian-vector products spent."""

    values: np.ndarray
    vectors: list[Tree] | None
    smallest: float | None
    smallest_vector: Tree | None
    residuals: np.ndarray
    products: int

    @property
    def sharpness(self) -> float:
        """λ_max, the largest eigenvalue."""
        return float(self.values[0])


def hessian_eigs(
    f: Callable[[Any], Any],
    model: Any,
    k: int = 1,
    *,
    smallest: bool = False,
    vectors: bool = False,
    paths: Sequence[str] | None = None,
    tol: float = 1e-6,
    maxiter: int | None = None,
    seed: int = 0,
    start: Any = None,
) -> HessianEigs:
    """The ``k`` largest eigenvalues of the Hessian of scalar ``f`` at ``model``'s parameters
    (λ₁ = λ_max, the sharpness, first), by Lanczos with full reorthogonalisation on exact
    Hessian-vector products (`tv.hvp`). ``smallest``: also the most negative (smallest)
    eigenvalue; ``vectors``: also the unit eigenvectors, as trees shaped like
    ``tv.gradient(f, model)``; ``paths``: only the block of those parameters (a path of
    `tv.trainables`, e.g. ``"model.layers[0].weight"``: that layer's own curvature, with the
    other parameters held fixed). Converged to ``tol`` relative residual; at most ``maxiter``
    products (all n, where n is small, which makes it exact). ``start``: a tree to start
    from (say the last top eigenvector, when tracking λ_max along training).

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.Dense(1, 1, init=lambda shape, rng: np.full(shape, 3.0))
    >>> x, y = np.array([[1.0, 2.0]]), np.zeros((1, 2))
    >>> eigs = hessian_eigs(lambda m: tv.mse(m(x), y), model, smallest=True)
    >>> round(eigs.sharpness, 6), round(eigs.smallest, 6)       # eig [[5, 3], [3, 2]]
    (6.854102, 0.145898)
    """
    flat = Flat(model, paths)
    if flat.size == 0:
        raise ValueError("hessian_eigs: the model has no parameters to differentiate")
    found = lanczos(
        lambda q: flat.vector(hvp(f, model, flat.tree(q))),
        flat.size,
        k=k,
        smallest=smallest,
        tol=tol,
        maxiter=maxiter,
        vectors=vectors,
        seed=seed,
        start=None if start is None else flat.vector(start),
    )
    top = np.argsort(found.values)[::-1][:k]
    return HessianEigs(
        values=found.values[top],
        vectors=None if found.vectors is None else [flat.tree(found.vectors[:, i]) for i in top],
        smallest=float(found.values[0]) if smallest else None,
        smallest_vector=(
            flat.tree(found.vectors[:, 0]) if smallest and found.vectors is not None else None
        ),
        residuals=found.residuals[top],
        products=found.products,
    )


def layer_sharpness(
    f: Callable[[Any], Any], model: Any, *, tol: float = 1e-6, seed: int = 0
) -> dict[str, float]:
    """λ_max of each weight block: ``{path: largest eigenvalue of ∂²f/∂W∂W}`` for every
    parameter named ``weight`` (each Dense layer's W), the others held fixed.

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.Chain(tv.Dense(1, 1, rng=0), tv.Dense(1, 1, rng=1))
    >>> x, y = np.array([[1.0, 2.0]]), np.zeros((1, 2))
    >>> sorted(layer_sharpness(lambda m: tv.mse(m(x), y), model))
    ['model.layers[0].weight', 'model.layers[1].weight']
    """
    return {
        path: hessian_eigs(f, model, paths=[path], tol=tol, seed=seed).sharpness
        for path, _, name in trainables(model)
        if name == "weight"
    }
