"""Neural collapse (Papyan, Han & Donoho, PNAS 2020; seed 003; science.md §5): in the terminal
phase of training the last-layer features of each class collapse to their class mean (NC1),
the centred class means form a simplex equiangular tight frame (NC2), the classifier's rows
align with them (NC3), and the network classifies like the nearest class mean (NC4).

Notation: features H (p × N, a column per sample h_i with label y_i), C classes, class means
μ_c, global mean μ_G (the mean of all samples), ``M = [μ_1 − μ_G, ..., μ_C − μ_G]`` (p × C),
the classifier W (C × p) and bias b::

    Σ_W = 1/N Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ      Σ_B = 1/C Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import has_kind, namespace, to_namespace


def _stdmean(x: Any) -> float:
    """std / mean of a vector (population std)."""
    xp = namespace(x)
    mean = xp.mean(x)
    return float(xp.sqrt(xp.mean((x - mean) ** 2)) / mean) if float(mean) > 0 else math.nan


def _equiangularity(V: Any) -> float:
    """avg_{c≠c′} |cos(v_c, v_c′) + 1/(C−1)| over the columns v_c of V (0 for a simplex ETF)."""
    xp = namespace(V)
    C = V.shape[1]
    norms = xp.linalg.vector_norm(V, axis=0)
    if float(xp.min(norms)) == 0:
        return math.nan
    U = V / norms
    off = (U.mT @ U + 1 / (C - 1)) * (1 - xp.eye(C, dtype=V.dtype))
    return float(xp.sum(xp.abs(off))) / (C * (C - 1))


def neural_collapse(features: Any, labels: Any, W: Any, b: Any = None) -> dict[str, float]:
    """The neural-collapse metrics of last-layer ``features`` (p × N), integer ``labels``
    (N, in 0..C−1) and the classifier ``W`` (C × p, C = number of classes) with bias ``b``;
    every metric is 0 at perfect collapse:

    - ``NC1`` = Tr(Σ_W Σ_B⁺) / C, within-class variability relative to the between-class
      one. Papyan et al. define it with the /C; some public code omits it; we include it.
      Σ_B⁺ is the pseudo-inverse on the span of M (rank ≤ C−1): with the thin SVD
      M = U S Vᵀ, Σ_B⁺ = C U S⁻² Uᵀ, so NC1 = Σ_j (u_jᵀ Σ_W u_j) / s_j² (s_j above
      max(p, C)·ε·s_max); NaN when all class means coincide;
    - ``NC2_equinorm`` = std_c ‖μ_c − μ_G‖ / mean_c ‖μ_c − μ_G‖ and ``NC2_equinorm_W``, the
      same for the rows w_c of W;
    - ``NC2_equiangular`` = avg_{c≠c′} |cos(μ_c − μ_G, μ_c′ − μ_G) + 1/(C−1)| (a simplex ETF
      has every cosine −1/(C−1)) and ``NC2_equiangular_W`` for the rows of W;
    - ``NC3`` = ‖Wᵀ/‖W‖_F − M/‖M‖_F‖_F², self-duality of classifier and class means;
    - ``NC4``: the fraction of samples where the nearest class mean (Euclidean) disagrees
      with the network's prediction argmax_c (W h + b)_c.

    Every class must have a sample. Rotating the features (H → QH, W → WQᵀ) changes nothing.

    >>> import numpy as np
    >>> M = np.array([[1.0, -0.5, -0.5], [0.0, 0.75**0.5, -(0.75**0.5)]])  # a 2-d simplex
    >>> H = np.repeat(M, 4, axis=1); y = np.repeat(np.arange(3), 4)
    >>> nc = neural_collapse(H, y, 2 * M.T)
    >>> {k: round(v, 12) + 0 for k, v in nc.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'NC1': 0.0, 'NC2_equinorm': 0.0, 'NC2_equinorm_W': 0.0, 'NC2_equiangular': 0.0,
     'NC2_equiangular_W': 0.0, 'NC3': 0.0, 'NC4': 0.0}
    """
    H = features
    xp = namespace(H)
    if H.ndim != 2 or W.ndim != 2 or W.shape[1] != H.shape[0]:
        raise ValueError(
            "neural_collapse takes features p × N and W C × p, "
            f"got {tuple(H.shape)} and {tuple(W.shape)}"
        )
    p, N = H.shape
    C = W.shape[0]
    labels = to_namespace(xp, labels)
    if labels.shape != (N,):
        raise ValueError(
            f"labels must have one entry per sample ({N}), got shape {tuple(labels.shape)}"
        )
    if C < 2:
        raise ValueError("neural collapse needs at least two classes")
    if has_kind(labels, ("real floating",)) and not bool(xp.all(labels == xp.round(labels))):
        raise ValueError(  # (1.5 would be taken as class 1: a silent wrong class)
            f"labels must be class indices in 0..{C - 1}, whole numbers; got "
            f"{float(labels[xp.argmax(xp.astype(labels != xp.round(labels), xp.int8))])}"
        )
    Y = xp.astype(xp.arange(C)[:, None] == xp.astype(labels, xp.int64)[None, :], H.dtype)  # C × N
    counts = xp.sum(Y, axis=1)
    if float(xp.min(counts)) == 0 or float(xp.sum(counts)) != N:
        raise ValueError(f"every label must be in 0..{C - 1} and every class must have a sample")
    means = (H @ Y.mT) / counts  # p × C, μ_c
    mu_G = xp.mean(H, axis=1, keepdims=True)
    M = means - mu_G

    U, S, _ = xp.linalg.svd(M, full_matrices=False)
    keep = S > max(p, C) * xp.finfo(H.dtype).eps * S[0]
    Z = U.mT @ (H - means @ Y)  # within-class deviations in the basis of span(M)
    # no spread between the class means (e.g. every feature 0): NC1 is undefined
    spread = xp.sum(Z * Z, axis=1) / N / xp.where(keep, S, 1.0) ** 2  # u_jᵀ Σ_W u_j / s_j²
    nc1 = math.nan if float(S[0]) == 0 else float(xp.sum(xp.where(keep, spread, 0.0)))

    Wt = W.mT
    W_norm, M_norm = float(xp.linalg.vector_norm(W)), float(xp.linalg.vector_norm(M))
    nc3 = Wt / W_norm - M / M_norm if W_norm > 0 and M_norm > 0 else None

    logits = W @ H if b is None else W @ H + b[:, None]
    nearest = xp.argmin(xp.sum(means * means, axis=0)[:, None] - 2 * (means.mT @ H), axis=0)
    disagree = xp.astype(nearest != xp.argmax(logits, axis=0), H.dtype)
    return {
        "NC1": nc1,
        "NC2_equinorm": _stdmean(xp.linalg.vector_norm(M, axis=0)),
        "NC2_equinorm_W": _stdmean(xp.linalg.vector_norm(W, axis=1)),
        "NC2_equiangular": _equiangularity(M),
        "NC2_equiangular_W": _equiangularity(Wt),
        "NC3": math.nan if nc3 is None else float(xp.sum(nc3 * nc3)),
        "NC4": float(xp.mean(disagree)),
    }
