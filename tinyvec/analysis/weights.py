"""Statistics of a stack of weight matrices (the three skip layers of the eigen-operator
network, drawn as the red, green and blue channels of one image): their singular values,
effective rank ``exp(H(σ/Σσ))`` (Roy & Vetterli 2007, `effective_rank_from_sigma`) and
relative differences."""

from __future__ import annotations

import math

import numpy as np

from .vector import effective_rank_from_sigma


def weight_stats(W: np.ndarray) -> dict[str, float]:
    """For W = (W_r, W_g, W_b), three matrices stacked: per matrix the effective rank, the
    top singular value σ₁ and ``energy5 = Σ_{i≤5} σ_i² / Σ_i σ_i²``, the share of ‖W_c‖²_F
    in the 5 largest singular values; and the pairwise relative differences
    ``‖W_i − W_j‖_F / ‖W‖`` with ``‖W‖ = √((‖W_r‖²_F + ‖W_g‖²_F + ‖W_b‖²_F)/3)`` (≈ √2 for
    independent random matrices, 0 for equal ones).

    >>> u = np.outer([1.0, 2.0], [1.0, 2.0])
    >>> s = weight_stats(np.stack([u, u, 2 * u]))
    >>> round(s["erank_r"], 6), s["diff_rg"], round(s["diff_gb"] ** 2, 12)
    (1.0, 0.0, 0.5)
    """
    s = np.linalg.svd(W, compute_uv=False)
    norm = math.sqrt(float((W**2).sum()) / 3)
    out: dict[str, float] = {}
    for c, si in zip("rgb", s, strict=True):
        out[f"erank_{c}"] = effective_rank_from_sigma(si)
        out[f"sigma1_{c}"] = float(si[0])
        out[f"energy5_{c}"] = float((si[:5] ** 2).sum() / (si**2).sum()) if si[0] > 0 else 1.0
    for a, b in ("rg", "gb", "rb"):
        i, j = "rgb".index(a), "rgb".index(b)
        out[f"diff_{a}{b}"] = float(np.linalg.norm(W[i] - W[j]) / norm) if norm else 0.0
    return out
