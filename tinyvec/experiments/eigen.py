"""The eigen-operator experiment (science.md §4, seed 001): a network N learns mean-zero
eigenfunctions of ``(T f)(x) = f(Ax) + f(Bx)`` on unit vectors x ∈ R^h, from targets
``y = N(Ax) + N(Bx)`` that the current network makes: with one output (the seed's) by
gradient ascent on the R² between N(x) and y, with K outputs (``--k K``) by subspace ascent.

Each step draws r fresh unit vectors x (h × r), computes y with N held fixed (a call on plain
arrays builds no graph, so no gradient flows through y), and takes one optimiser step.

**One output.** The step is on ``−R²(N(x), y)``; the eigenvalue estimate is ``λ̂ =
cov(N(x), y)/var(N(x))``. Which eigenvalue? With a = f − mean f and b = y − mean y,
``∂R²/∂a = (2 cov/(var a var b))·(b − λ̂ a)``, so a step in function space is
``f ← f + η·sign(λ̂)·(T f − λ̂ f)``: a power iteration on ``I + η·sign(λ̂)(T − λ̂)``, under
which an eigencomponent μ grows relative to the current one when ``sign(λ̂)(Re μ − λ̂) > 0``.
The real fixed points that survive are the end of the spectrum along the real axis on λ̂'s
side (largest Re μ for λ̂ > 0, smallest for λ̂ < 0), not the eigenvalue of largest modulus;
when that end is a complex pair no real f is a fixed point and the learned function turns in
the pair's plane. The network's own kernel weighs this (it favours degree 1: it starts nearly
linear), so this is a prediction to check, which `run` reports as ``extreme_degree1``.

**K outputs.** F = N(x) is K × r, Y = T F its targets (both centred). The K × K Ritz matrix
``M = Y Fᵀ(F Fᵀ)⁻¹`` is the least-squares fit ``Y ≈ M F`` (`ritz`); when span F is invariant
under T, ``TF = MF`` and the eigenvalues of M are eigenvalues of T, a complex pair as a pair
(one real function cannot be an eigenfunction of a complex pair; a 2-D real subspace can).
The objective reported is the multi-output ``R² = 1 − ‖E‖²/‖Y‖²``, ``E = Y − M F`` the
residual: the share of the targets' variance in the span of the outputs. Its exact gradient
with respect to F, at fixed targets and optimal M, is ``∝ MᵀE``; in function space a step
along it is ``F ← F + η Mᵀ(TF − MF)``, and on an eigencomponent μ of T outside span F
(``T g = μ g``, so the component grows like ``η μ g`` times the coefficient M gives it) the
factor Mᵀ multiplies the growth by μ itself: modes are ranked by |μ|², the largest modulus
wins (measured: seed 3, K = 2, to 1.370 ± 1.150i, the pair of largest modulus, 51% off the
pair of largest real part; `tests/experiments/test_eigen.py` reproduces it with a linear
model). We drop Mᵀ and step along E itself (`ascent_loss`: ``−⟨F, E⟩/r`` with E held fixed,
whose gradient in F is ``−E/r``): ``F ← F + η(TF − MF) = (I − ηM)F + η TF``. The span of the
new outputs is, to first order in η, the span of ``(I + ηT)F``: subspace iteration on
``I + ηT``, whose dominant modes are those of largest ``|1 + ημ|² = 1 + 2η Re μ + O(η²)``,
i.e. of **largest real part**, the same order as one output; K = 1 is the same step up to
the positive factor ``2/(var b)`` and ``sign(λ̂)``, which is why ``--k 1`` keeps the R²
gradient (and reproduces the seed's runs to the last digit). Subspace iteration needs the
basis kept well-conditioned, or every output is pulled toward the leading mode and M becomes
singular: before each step the last (linear) layer is **re-whitened**, its weight and bias
multiplied by ``C^(-1/2)``, C the covariance of the K outputs at Ax and Bx (`whiten_last_layer`;
the span, hence the Ritz values, is unchanged; with ``--opt momentum`` or ``adam`` this rescales
the last layer under the optimiser's state, which we have measured only with plain descent).
The cut at K must not split a complex pair:
``--k auto`` picks the smallest K ≥ 3 that splits no degree-1 pair, and an explicit K that
splits a pair of the degree ≤ 2 spectrum warns. The head is ``Dense(m, max(3, K), atan)``,
``Dense(max(3, K), K)``.

The network is the seed's, ``Chain(Dense(h,m,atan), SkipConnection(Dense(m,m,atan), +) ×3,
Dense(m,3,atan))``, with our choice of the "very simple last layer" the seed leaves open: a
trainable ``Dense(3, 1)`` without activation (R² and λ̂ are unchanged by an affine map of N,
so it only chooses the mix of the three atan features). The skip layers start at
``scaled(glorot_uniform, skip_init)`` (default 1e-3: "nearly zero"), the others at Glorot.

What is measured, besides λ̂ (for K outputs: the real part of the leading Ritz value) and R²
(on each batch, and on a fixed probe set of unit vectors every ``record_every`` steps), and
the K Ritz values: the three skip weight matrices W_r, W_g, W_b (the red, green,
blue channels of one image per recorded step, `tinyvec.plots.eigen`), their singular values
and effective rank ``exp(H(σ/Σσ))`` (the exponential of the entropy of the normalised
singular values; Roy & Vetterli 2007), their relative differences ``‖W_r − W_g‖_F / ‖W‖``
with ``‖W‖ = √((‖W_r‖²_F + ‖W_g‖²_F + ‖W_b‖²_F)/3)`` (≈ √2 for independent random matrices,
0 for equal ones), the exact spectrum (`tinyvec.analysis.eigen_operator`), and completion: the
`CompletionMonitor` of science.md §6 on the parameters and on the outputs on a fixed probe
(not on the loss, which is on a fresh batch each step, so that its change measures sampling
noise), with the trend test on R² and the Ritz values (`observables`) that tells a run at
its noise floor from one still drifting; and the period-p test on λ̂ (on the monitor's probe)
at each of the last ``tail`` steps. With a constant rate the batch noise keeps the parameters
moving; ``lr_final`` makes the rate decay geometrically so that a run can settle. When the
degree-1 eigenvalue of largest real part is a complex pair and K = 1, the angle of the
learned linear part in its invariant plane is tracked too (`rotation`): a rotation there is
an oscillation whose period is far longer than the monitor's ``max_period``.

    tinyvec eigen [--k K|auto] [--steps N] [--seed S | --seeds a-b] [--out DIR] [--quick] ...
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import tinyvec as tv
from tinyvec.analysis import CompletionMonitor, classify_trajectory, effective_rank_from_sigma
from tinyvec.analysis.eigen_operator import (
    Spectrum,
    alignment,
    lambda_hat,
    linear_part,
    make_operators,
    plane_angle,
    r_squared,
    unit_vectors,
)
from tinyvec.backend import to_numpy
from tinyvec.experiments.common import (
    StudyParser,
    add_sweep_flags,
    config_of,
    nonnegative_float,
    nonnegative_int,
    parse,
    positive_float,
    positive_int,
    run_folder,
    study_parser,
    sweep_folder,
)
from tinyvec.experiments.sweep import executor_for, run_sweep

OPTIMISERS = {"descent": tv.Descent, "momentum": tv.Momentum, "adam": tv.Adam}


@dataclass
class Config:
    """Everything a run needs: config.json holds it, ``--config config.json`` reruns it, and
    the same values give the same numbers."""

    seed: int = 1
    k: int = 1  # outputs (the subspace dimension); 0 = "auto": 3, or 4 where 3 splits a pair
    steps: int | None = None  # None: 3000 for K = 1 (the seed's runs), 6000 for K > 1
    t: float = 1.0  # A, B = expm(t·K): 0 is the identity; see eigen_operator
    h: int = 20
    m: int = 40
    r: int = 20  # batch: fresh unit vectors per step
    skip_init: float = 1e-3  # scale of the skip layers' Glorot initialisation
    # > 0: the first layer's biases start uniform in ±bias_init (0: zero biases, and the network
    # starts exactly odd, N(−x) = −N(x), with no even, e.g. degree-2, part; see degree_gains)
    bias_init: float = 0.0
    degree_every: int = 0  # > 0: per-degree shares and step gains every this many steps
    # > 0: an even branch x ↦ (Vx)² of this width beside the seed's trunk, into the last layer
    # (degree-2 functions as cheap as degree-1 ones; 0: the seed's network)
    even: int = 0
    opt: str = "descent"
    lr: float = 0.1
    # > 0: the rate decays geometrically from lr to this at the last step; None: 0 (constant)
    # for K = 1, 0.01 for K > 1 (the Ritz values' noise floor falls with the rate)
    lr_final: float | None = None
    probe: int = 1000  # fixed unit vectors for smooth λ̂, R² curves
    record_every: int = 10  # probe metrics and a weight snapshot every this many steps
    frames: int = 120  # animation frames (records spaced quadratically: denser early)
    tail: int = 200  # last steps with λ̂ at every step (oscillation test, monitor probe)
    monitor_probe: int = 256  # probe of the CompletionMonitor and of the λ̂ tail test
    monitor_every: int = 5  # a completion check every this many steps
    eps: float = 1e-3  # completion tolerance (monitor and λ̂ test)
    patience: int = 5
    max_period: int = 4
    # the monitor's drift test (noise floor or moving): over the last trend_window checks, a
    # trend of R² or a Ritz value below trend_tol·(1 + |value|) counts as settled
    trend_window: int = 100
    trend_tol: float = 5e-3
    analysis: int = 4000  # fresh unit vectors for the final degree analysis

    def check(self) -> Config:
        if self.opt not in OPTIMISERS:
            raise ValueError(f"--opt must be one of {', '.join(OPTIMISERS)}, got {self.opt!r}")
        if self.k < 0:
            raise ValueError(f"--k takes a number of outputs ≥ 1 or 'auto', got {self.k}")
        counts: tuple[str, ...] = ("steps", "h", "m", "r", "probe", "record_every", "frames")
        counts += ("tail",)
        counts += ("monitor_probe", "monitor_every", "patience", "max_period", "analysis")
        counts += ("trend_window",)
        if self.even < 0:
            raise ValueError(f"even must be ≥ 0 (0: no even branch), got {self.even}")
        if self.degree_every < 0:
            raise ValueError(f"degree_every must be ≥ 0 (0: off), got {self.degree_every}")
        for name in counts:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 2:
            raise ValueError(
                f"steps must be ≥ 2 (the completion tests compare steps), got {self.steps}"
            )
        if self.trend_window < 8:
            raise ValueError(f"trend_window must be ≥ 8 (8 blocks), got {self.trend_window}")
        if self.bias_init < 0:
            raise ValueError(f"bias_init must be ≥ 0, got {self.bias_init}")
        if self.r < 3 or self.probe < 3:
            raise ValueError("R² needs a batch and a probe of at least 3 vectors")
        if not (self.lr > 0 and self.t >= 0 and self.skip_init >= 0 and self.eps > 0
                and self.trend_tol > 0):  # fmt: skip
            raise ValueError("lr, eps and trend_tol must be > 0, t and skip_init ≥ 0")
        if self.lr_final is not None and self.lr_final < 0:
            raise ValueError(f"lr_final must be ≥ 0 (0: constant rate), got {self.lr_final}")
        return self


QUICK = {"steps": 300, "probe": 200, "frames": 30, "tail": 50, "monitor_probe": 64,
         "analysis": 1000}  # fmt: skip


def _square(A: Any) -> Any:
    return A * A


def _square_derivative(A: Any, O: Any) -> Any:
    return 2 * A


SQUARE = tv.Activation("square", _square, _square_derivative)


def build_network(c: Config, rng: np.random.Generator) -> tv.Chain:
    """The seed's network with a trainable linear last layer ``Dense(w, K)`` (see the module
    doc); the atan head has width ``w = max(3, K)`` so that K outputs can span K dimensions.
    With ``even`` = q > 0 the last layer also reads an even branch ``Dense(h, q, square)``,
    ``x ↦ (Vx)²`` (quadratic forms: degree 0 and 2), beside the trunk:
    ``Chain(Parallel(vcat, trunk, Dense(h, q, square)), Dense(w + q, K))``."""
    skip = tv.scaled(tv.glorot_uniform, c.skip_init)
    width = max(3, c.k)
    trunk = [
        tv.Dense(c.h, c.m, tv.atan, rng=rng),
        *(tv.SkipConnection(tv.Dense(c.m, c.m, tv.atan, init=skip, rng=rng), tv.add)
          for _ in range(3)),
        tv.Dense(c.m, width, tv.atan, rng=rng),
    ]  # fmt: skip
    if c.even == 0:
        return tv.Chain(*trunk, tv.Dense(width, c.k, rng=rng))
    branch = tv.Dense(c.h, c.even, SQUARE, bias=False, rng=rng)
    return tv.Chain(tv.Parallel(tv.vcat, tv.Chain(*trunk), branch),
                    tv.Dense(width + c.even, c.k, rng=rng))  # fmt: skip


def trunk_layers(model: tv.Chain) -> Any:
    """The seed's part of the network: the Chain itself, or the trunk beside the even branch."""
    first = model[0]
    return first.layers[0] if isinstance(first, tv.Parallel) else model


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


def resolve(c: Config, spectrum: Spectrum) -> Config:
    """The config that runs: K (`resolve_k`), and the steps and final rate that depend on it
    where they were left to their defaults (None)."""
    k = resolve_k(c, spectrum)
    steps = c.steps if c.steps is not None else (3000 if k == 1 else 6000)
    lr_final = c.lr_final if c.lr_final is not None else (0.0 if k == 1 else 0.01)
    return replace(c, k=k, steps=steps, lr_final=lr_final)


def resolve_k(c: Config, spectrum: Spectrum) -> int:
    """``k = 0`` ("auto") → the smallest K ≥ 3 whose cut splits no complex pair of the
    degree-1 spectrum: the network's outputs live in degree 1 when degree 2 is not reached,
    and a subspace asked to hold half a degree-1 pair keeps turning (measured on seed 4: with
    K = 4 the leading 1.838 drifted to 3% off after 20000 steps; with K = 5, 0.0%)."""
    if c.k > 0:
        return c.k
    k = 3
    while k < spectrum.values1.size and leading_by_real_part(spectrum, k, degree1=True)[2]:
        k += 1
    return k


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


def whiten_last_layer(model: tv.Chain, Z: np.ndarray, floor: float = 1e-12) -> np.ndarray:
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


def skip_weights(model: tv.Chain) -> np.ndarray:
    """W_r, W_g, W_b: the weights of the three skip layers, stacked (3 × m × m)."""
    trunk = trunk_layers(model)
    return np.stack([to_numpy(trunk[i].layer.weight) for i in (1, 2, 3)])


def targets(model: Any, A: np.ndarray, B: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y = N(Ax) + N(Bx) with N held fixed: one call on plain arrays (no graph)."""
    n = x.shape[1]
    Z = model(np.concatenate([A @ x, B @ x], axis=1))
    return Z[:, :n] + Z[:, n:]


def weight_stats(W: np.ndarray) -> dict[str, float]:
    """Per skip matrix the effective rank, the top singular value and ``energy5``, the share
    of ‖W‖²_F in the 5 largest singular values; and the pairwise relative differences
    ‖W_i − W_j‖_F / ‖W‖ (‖W‖ the RMS of the three Frobenius norms)."""
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


def probe_metrics(model: Any, A, B, xp: np.ndarray) -> tuple[float, float, np.ndarray]:
    """λ̂ and R² on the probe set, and N on it (one output: λ̂ = cov/var, R² the squared
    correlation, f flat; K outputs: the leading Ritz value's real part, the multi-output R²,
    F as K × n)."""
    F, Y = model(xp), targets(model, A, B, xp)
    if F.shape[0] > 1:
        _, values, r2 = ritz(F, Y)
        return float(values[0].real), r2, F
    f, y = np.ravel(F), np.ravel(Y)
    return lambda_hat(f, y), r_squared(f, y), f


def ascent_gradient(model: tv.Chain, A: np.ndarray, B: np.ndarray, x: np.ndarray) -> tuple:
    """One step of subspace ascent for K outputs, before the update: re-whiten the last layer
    on the outputs at Ax and Bx (uniform unit vectors too, so this costs no extra forward
    pass), form the targets Y = N(Ax) + N(Bx) of the whitened network, and take the gradient
    of `ascent_loss` at x. Returns (Y, gradient)."""
    n = x.shape[1]
    Z = model(np.concatenate([A @ x, B @ x], axis=1))
    Z = whiten_last_layer(model, Z) @ Z
    Y = Z[:, :n] + Z[:, n:]
    return Y, tv.gradient(lambda m: ascent_loss(m(x), Y), model)


def observables(model: Any, A, B, xp: np.ndarray) -> np.ndarray:
    """What the completion monitor watches for a trend (noise floor or drift): R² and the
    Ritz values on a fixed probe (real parts, and |imaginary parts| so that a conjugate pair
    does not swap), which do not depend on the batch, nor on the basis of the K outputs."""
    F, Y = np.atleast_2d(model(xp)), np.atleast_2d(targets(model, A, B, xp))
    _, values, r2 = ritz(F, Y)
    return np.concatenate([[r2], values.real, np.abs(values.imag)])


def ascent_loss(F: Any, Y: np.ndarray) -> Any:
    """The subspace-ascent loss ``−⟨F, E⟩/n`` of K outputs F (a Tensor, K × n) with the
    residual ``E = Y − M F`` of the Ritz fit (`ritz`) held fixed: its gradient with respect to
    F is ``−E/n``, so a descent step moves the outputs along E (see the module doc for why E
    and not the gradient of the multi-output R², ``∝ MᵀE``). E is centred, so the constant
    part of F gets no gradient."""
    Fd = F.data if isinstance(F, tv.Tensor) else F
    Fc = Fd - Fd.mean(axis=1, keepdims=True)
    M, _, _ = ritz(Fd, Y)
    E = (Y - Y.mean(axis=1, keepdims=True)) - M @ Fc
    return -tv.ops.sum(F * E) / Fd.shape[1]


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


def _fit_share(design: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares of each row of F on the design: coefficients and the share of the total
    variance of F explained."""
    coef, *_ = np.linalg.lstsq(design, F.T, rcond=None)
    residual = F.T - design @ coef
    return coef, float(1 - residual.var(axis=0).sum() / F.var(axis=1).sum())


def degree_analysis(model: Any, spectrum: Spectrum, lam: float, x: np.ndarray) -> dict:
    """How much of the learned outputs' variance is of degree 1 and of degree ≤ 2 (least
    squares on fresh samples), and the alignment of the linear part with eigenvectors of
    (A+B)ᵀ: the cosine of `alignment` for one output, `subspace_alignment` of the K linear
    parts for K outputs."""
    F = np.atleast_2d(model(x))
    ones = np.ones((x.shape[1], 1))
    coef1, frac1 = _fit_share(np.column_stack([ones, x.T]), F)
    _, frac2 = _fit_share(np.column_stack([ones, x.T, quadratic_features(x).T]), F)
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


def degree_gains(F: np.ndarray, Y: np.ndarray, F_next: np.ndarray, design: tuple) -> dict:
    """Per degree d ∈ {1, 2}: the share of the outputs' variance of degree d, and the step's gain
    in function space on that degree, ``g_d = ⟨ΔF_d, E_d⟩/‖E_d‖²``, with E the step's direction
    (``Y − MF``, the Ritz residual; for one output the same with M = λ̂) and X_d the part of X
    of degree d (least squares on the design of `degree_design`). An out-of-span eigenfunction
    of degree d and eigenvalue μ grows relative to the learned ones, of real part about λ, at
    about ``g_d (Re μ − λ)`` per step: a small g₂ keeps degree 2 out, whatever the gap.

    >>> x = unit_vectors(3, 400, np.random.default_rng(0))
    >>> F, Y = x[:1] + x[1:2] * x[2:3], 2 * x[:1] + 0.5 * x[1:2] * x[2:3]
    >>> E = Y - Y.mean() - ritz(F, Y)[0] @ (F - F.mean())
    >>> D, d1, d2 = degree_design(x)
    >>> lin = D[:, d1] @ (np.linalg.pinv(D) @ E.T)[d1]  # E's degree-1 part, moved with gain 0.3
    >>> g = degree_gains(F, Y, F + 0.3 * lin.T, (D, d1, d2))
    >>> round(g["gain_degree1"], 6), abs(round(g["gain_degree2"], 6))
    (0.3, 0.0)
    """
    D, d1, d2 = design
    _, _, r2 = ritz(F, Y)
    Fc = F - F.mean(axis=1, keepdims=True)
    M, _, _ = ritz(F, Y)
    E = (Y - Y.mean(axis=1, keepdims=True)) - M @ Fc
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
    return out


def _weight_part(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: v for k, v in row.items() if k.split("_")[0] in ("erank", "sigma1", "energy5", "diff")
    }


def plane_coordinates(v: np.ndarray, eigenvector: np.ndarray) -> np.ndarray:
    """Coordinates c of v ≈ c₁a + c₂b in the invariant plane of u = a + ib (least squares), in
    which T acts as ``[[α, β], [−β, α]]``, μ = α + iβ (see `plane_angle`)."""
    u = np.asarray(eigenvector)
    c, *_ = np.linalg.lstsq(np.column_stack([u.real, u.imag]), v, rcond=None)
    return c


def plane_gain(c: np.ndarray, lam: float, mu: complex, c_next: np.ndarray) -> float:
    """The step's gain in the plane: with ``e = (T − λ̂)c`` in plane coordinates, ``g =
    ⟨Δc, e⟩/‖e‖²``, so that a step is ``c ← c + g·e`` plus the batch noise.

    >>> c, mu = np.array([1.0, 0.0]), 1.5 + 0.3j
    >>> e = np.array([[1.5, 0.3], [-0.3, 1.5]]) @ c - 1.4 * c
    >>> round(plane_gain(c, 1.4, mu, c + 0.2 * e), 12)
    0.2
    """
    a, b = complex(mu).real, complex(mu).imag
    e = np.array([[a, b], [-b, a]]) @ c - lam * c
    return float((c_next - c) @ e / (e @ e))


def rotation(angles: list[float], cosines: list[float], gains: list[float] | None = None,
             mu: complex | None = None) -> dict[str, float]:  # fmt: skip
    """How the linear part turns in the invariant plane of a complex pair μ = α + iβ, from its
    angle at consecutive steps (`plane_angle`): the mean angular velocity ω (rad/step,
    unwrapped), the period 2π/|ω| in steps, the mean cosine of the linear part with the plane;
    and the prediction from the step ``c ← c + g(T − λ̂)c`` in the plane. There T is |μ| times
    a rotation by −arg μ (`plane_angle`), so with λ̂ ≈ α the step turns c by
    ``−atan(gβ/(1 + g(α − λ̂))) ≈ −gβ``: ``predicted_angular_velocity = −ḡβ`` with ḡ the mean
    measured gain (`plane_gain`). ω is proportional to the rate and to Im μ, not to
    arg μ: a period of ``2π/(ḡ|β|)`` steps, and f and −f being one solution, the learned
    eigenvalue swings with half that period.

    >>> r = rotation([0.1 * k for k in range(100)], [1.0] * 100)
    >>> round(r["angular_velocity"], 9), round(r["period_steps"], 3)
    (0.1, 62.832)
    """
    omega = float(np.mean(np.diff(np.unwrap(angles)))) if len(angles) > 1 else math.nan
    out = {
        "angular_velocity": omega,
        "period_steps": 2 * math.pi / abs(omega) if omega else math.inf,
        "plane_cosine": float(np.mean(cosines)) if cosines else math.nan,
    }
    if gains and mu is not None:
        g = float(np.mean(gains))
        out.update({"plane_gain": g, "plane_gain_std": float(np.std(gains)),
                    "predicted_angular_velocity": -g * complex(mu).imag,
                    "arg_mu": float(np.angle(mu))})  # fmt: skip
    return out


def lag1_autocorrelation(a: np.ndarray) -> float:
    """Correlation of consecutive values: near −1 for a period-2 alternation."""
    d = np.asarray(a) - np.mean(a)
    den = float(d @ d)
    return float(d[1:] @ d[:-1] / den) if den > 0 else math.nan


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _finite(o: Any) -> Any:
    """NaN/inf → None, recursively, so the JSON is standard."""
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_finite(obj), indent=2, default=_json_default) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str] = ()) -> None:
    """``rows`` as CSV, with the given ``columns`` (default: every key of the first row)."""
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns or rows[0]), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


# --- one run: build, step, measure, write ---------------------------------------------------
@dataclass
class Experiment:
    """What one seed trains and measures against, built once by `build`: the operators and
    their exact spectrum, the network with its optimiser and learning-rate decay, the fixed
    probes, and the degree-1 eigenvector u_top of largest real part (the one small steps
    favour), against which the learned linear part is measured."""

    c: Config
    A: np.ndarray
    B: np.ndarray
    spectrum: Spectrum
    model: tv.Chain
    rule: Any
    state: Any
    decay: float  # rule.eta = lr · decay^(step − 1)
    monitor: CompletionMonitor
    data_rng: np.random.Generator  # the fresh batch of every step
    probe: np.ndarray  # λ̂, R², Ritz values every record_every steps
    mon_probe: np.ndarray  # the monitor's probe, also that of the λ̂ tail
    sym_probe: np.ndarray  # ±probe, for the per-degree shares
    design: tuple | None  # degree_design(sym_probe) when degree_every > 0
    top: int
    u_top: np.ndarray
    leading: np.ndarray  # the K exact eigenvalues of largest real part, with their degrees
    leading_degrees: np.ndarray
    split: bool  # the K-th cuts a complex pair in half

    @property
    def rotating(self) -> bool:
        """One output and a complex u_top: the linear part turns in u_top's plane."""
        return self.c.k == 1 and abs(self.spectrum.values1[self.top].imag) > 1e-9


@dataclass
class Records:
    """Everything a run writes, one list of row dicts per file: ``metrics`` (metrics.csv, with
    ``frames``, the skip weights of each of its rows, in skip_weights.npz), ``steps``
    (steps.csv: every step's batch λ̂ and R²), ``tail`` (tail.csv: λ̂ on the monitor's probe
    over the last steps, with the plane angle, cosine and gain when rotating) and ``degrees``
    (degrees.csv); and the time spent training."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    tail: list[dict[str, Any]] = field(default_factory=list)
    degrees: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    cpu_time: float = 0.0

    def add_measurement(self, row: dict[str, Any], W: np.ndarray) -> None:
        """A metrics row and its skip weights (float32: the animation needs no more)."""
        self.metrics.append(row)
        self.frames.append(W.astype(np.float32))


def build(c: Config) -> Experiment:
    """Operators, spectrum, network, optimiser, monitor and probes of one seed; each draw has
    its own stream ``[seed, i]``, so that an option changes no other draw. ``e.c`` is ``c``
    resolved (`resolve`): the K, steps and rate that run."""
    A, B = make_operators(c.h, c.t, c.seed)
    spectrum = Spectrum.of(A, B)
    c = resolve(c, spectrum)
    assert c.steps is not None and c.lr_final is not None  # `resolve` fills them in
    leading, leading_degrees, split = leading_by_real_part(spectrum, c.k)
    model = build_network(c, np.random.default_rng([c.seed, 1]))
    if c.bias_init > 0:  # its own stream: the other draws stay those of bias_init = 0
        first = trunk_layers(model)[0]
        first.bias = np.random.default_rng([c.seed, 6]).uniform(-c.bias_init, c.bias_init,
                                                                first.bias.shape)  # fmt: skip
    data_rng = np.random.default_rng([c.seed, 2])
    probe = unit_vectors(c.h, c.probe, np.random.default_rng([c.seed, 3]))
    mon_probe = unit_vectors(c.h, c.monitor_probe, np.random.default_rng([c.seed, 4]))
    rule = OPTIMISERS[c.opt](c.lr)
    state = tv.setup(rule, model)  # every parameter shares `rule`, so setting rule.eta decays all
    decay = (c.lr_final / c.lr) ** (1 / max(c.steps - 1, 1)) if c.lr_final > 0 else 1.0
    monitor = CompletionMonitor(mon_probe, eps=c.eps, patience=c.patience,
                                max_period=c.max_period, every=c.monitor_every,
                                observe=lambda m: observables(m, A, B, mon_probe),
                                window=c.trend_window, trend_tol=c.trend_tol)  # fmt: skip
    # ±x: on a symmetric sample the even (degree 2) and odd columns are exactly orthogonal, so
    # an odd network (bias_init = 0) shows no degree-2 share from sampling alone
    sym_probe = np.concatenate([probe, -probe], axis=1)
    top = int(np.argmax(spectrum.values1.real))
    return Experiment(c=c, A=A, B=B, spectrum=spectrum, model=model, rule=rule, state=state,
                      decay=decay, monitor=monitor, data_rng=data_rng, probe=probe,
                      mon_probe=mon_probe, sym_probe=sym_probe,
                      design=degree_design(sym_probe) if c.degree_every else None,
                      top=top, u_top=spectrum.vectors1[:, top], leading=leading,
                      leading_degrees=leading_degrees, split=split)  # fmt: skip


def train_step(e: Experiment, step: int, rec: Records) -> dict[str, Any]:
    """One ascent step on a fresh batch; returns its steps.csv row (the batch λ̂ and R²,
    measured on the forward pass before the update) and adds a degrees.csv row when due."""
    c, model = e.c, e.model
    t0, c0 = time.perf_counter(), time.process_time()
    e.rule.eta = c.lr * e.decay ** (step - 1)
    x = unit_vectors(c.h, c.r, e.data_rng)
    if c.k == 1:
        y = targets(model, e.A, e.B, x)
        loss, grads = tv.withgradient(lambda m, x=x, y=y: -tv.r2(m(x), y), model)
    else:
        y, grads = ascent_gradient(model, e.A, e.B, x)
    f = model[-1].output  # N(x) of this forward pass, before the update
    before = None
    if e.design is not None and (step - 1) % c.degree_every == 0:
        before = (np.atleast_2d(model(e.sym_probe)),
                  np.atleast_2d(targets(model, e.A, e.B, e.sym_probe)))  # fmt: skip
    tv.update(e.state, model, grads)
    if before is not None and e.design is not None:
        after = np.atleast_2d(model(e.sym_probe))
        rec.degrees.append({"step": step - 1, **degree_gains(*before, after, e.design)})
    # no loss for the monitor: each step's loss is on a fresh batch, so its change measures
    # sampling noise (≈1e-3 in R² at convergence), not training; the probe residuals remain
    e.monitor(step, model, math.nan)
    rec.train_time += time.perf_counter() - t0
    rec.cpu_time += time.process_time() - c0
    if c.k == 1:
        lam_b, r2_b = lambda_hat(f, y), -float(loss)
    else:
        _, values_b, r2_b = ritz(f, y)
        lam_b = float(values_b[0].real)
    if not math.isfinite(r2_b):
        raise FloatingPointError(f"R² is {r2_b} at step {step} (N(x) constant?)")
    return {"step": step, "lambda_batch": lam_b, "r2_batch": r2_b}


def measure(e: Experiment, step: int, lam_b: float, r2_b: float) -> tuple[dict, np.ndarray]:
    """A metrics.csv row (λ̂, R², Ritz values and linear part on the probe, skip-weight
    statistics, the monitor's residuals) and the skip weights W it describes."""
    c = e.c
    lam, r2, f = probe_metrics(e.model, e.A, e.B, e.probe)
    if c.k == 1:
        values = np.array([lam])
        v, var1 = linear_part(e.probe, f)
        angle = plane_angle(v, e.u_top) if e.rotating else math.nan
        cos_top = alignment(v, e.u_top)
    else:
        values = ritz(f, targets(e.model, e.A, e.B, e.probe))[1]
        coef, var1 = _fit_share(np.column_stack([np.ones(c.probe), e.probe.T]), f)
        cos_top, angle = subspace_alignment(coef[1:], e.u_top), math.nan
    W = skip_weights(e.model)
    status = e.monitor.status()
    row = {"step": step, "lambda": lam, "r2": r2, "lambda_batch": lam_b, "r2_batch": r2_b,
           "var_degree1": var1, "cos_top1": cos_top, "angle_top1": angle,
           **{f"ritz{i}_{part}": float(getattr(mu, part))
              for i, mu in enumerate(values) for part in ("real", "imag")},
           **weight_stats(W),
           "function_residual": status["function_residual"],
           "param_residual": status["param_residual_max"],
           "completion": status["kind"]}  # fmt: skip
    return row, W


def measure_tail(e: Experiment, step: int, previous: dict[str, Any] | None) -> dict[str, Any]:
    """A tail row: λ̂ on the monitor's probe and, when rotating, the angle and cosine of the
    linear part in u_top's plane, its plane coordinates and the gain of the step from
    ``previous`` (NaN on the first)."""
    lam, _, f = probe_metrics(e.model, e.A, e.B, e.mon_probe)
    row: dict[str, Any] = {"step": step, "lambda": lam, "angle_top1": math.nan}
    if e.rotating:
        v, _ = linear_part(e.mon_probe, f)
        mu = e.spectrum.values1[e.top]
        row["angle_top1"] = plane_angle(v, e.u_top)
        row["cos_top1"] = alignment(v, e.u_top)
        row["plane"] = plane_coordinates(v, e.u_top)
        row["gain"] = (plane_gain(previous["plane"], previous["lambda"], mu, row["plane"])
                       if previous is not None else math.nan)  # fmt: skip
    return row


def summarise(e: Experiment, rec: Records) -> dict[str, Any]:
    """summary.json: the final λ̂ and R² against the exact spectrum, the degree analysis, the
    verdicts of the monitor and of the tail test, the rotation in u_top's plane, speed."""
    c, spectrum, final = e.c, e.spectrum, rec.metrics[-1]
    assert c.steps is not None  # `build` resolves it
    lam, r2 = final["lambda"], final["r2"]
    x_analysis = unit_vectors(c.h, c.analysis, np.random.default_rng([c.seed, 5]))
    status = e.monitor.status()
    tail = np.array([r["lambda"] for r in rec.tail])
    tail_class = classify_trajectory([np.array([v]) for v in tail], eps=c.eps,
                                     patience=min(c.patience, len(tail) - 1),
                                     max_period=c.max_period)  # fmt: skip
    nearest = spectrum.nearest(lam)
    turning: dict[str, float] | None = None
    if e.rotating:
        turning = rotation([r["angle_top1"] for r in rec.tail], [r["cos_top1"] for r in rec.tail],
                            [r["gain"] for r in rec.tail[1:]], spectrum.values1[e.top])  # fmt: skip
    return {
        "seed": c.seed,
        "lambda": lam,
        "abs_lambda": abs(lam),
        "r2": r2,
        "nearest": nearest,
        "nearest_degree": nearest["by_value"]["degree"],
        "dominant": spectrum.dominant(),
        "largest_real_part": _largest_real(spectrum),
        "extreme_degree1": spectrum.extreme_degree1(lam),
        "degrees": degree_analysis(e.model, spectrum, lam, x_analysis),
        "completion": {**{k: status[k] for k in ("kind", "period", "step", "function_residual",
                                                  "param_residual_max", "prediction_change",
                                                  "loss_residual", "cycle_residual")},
                       "trend": status.get("trend")},
        "lambda_tail": {"kind": tail_class["kind"], "period": tail_class["period"],
                        "steps": len(tail), "mean": float(np.mean(tail)),
                        "std": float(np.std(tail)),
                        "lag1_autocorrelation": lag1_autocorrelation(tail)},
        "rotation": turning,
        "k": c.k,
        "spectrum": spectrum_report(final, spectrum),
        "leading": leading_report(final, e.leading, e.leading_degrees, e.split),
        "skip_weights": _weight_part(final),
        "skip_weights_initial": _weight_part(rec.metrics[0]),
        "steps": c.steps,
        "steps_per_second": c.steps / rec.train_time,
        # CPU time of this process: the wall clock counts other jobs on a shared machine
        "steps_per_cpu_second": c.steps / rec.cpu_time if rec.cpu_time > 0 else math.nan,
    }  # fmt: skip


def write(out: Path, e: Experiment, rec: Records, summary: dict[str, Any]) -> None:
    """Every file of the run but config.json and operators.npz (written before training)."""
    write_csv(out / "metrics.csv", rec.metrics)
    write_csv(out / "steps.csv", rec.steps)
    write_csv(out / "tail.csv", rec.tail, columns=("step", "lambda", "angle_top1"))
    if rec.degrees:
        write_csv(out / "degrees.csv", rec.degrees)
    np.savez_compressed(out / "skip_weights.npz", W=np.stack(rec.frames),
                        step=np.array([r["step"] for r in rec.metrics]))  # fmt: skip
    tv.save(out / "model.npz", e.model)
    write_json(out / "summary.json", summary)


def run(c: Config, out: Path, progress: bool = True, plots: bool = True, fmt: str = "png",
        dpi: int = 100) -> dict[str, Any]:  # fmt: skip
    """One seed: train, measure, write every output file into ``out``; returns the summary."""
    c.check()
    e = build(c)
    c = e.c  # config.json holds the K, steps and rate that ran
    assert c.steps is not None  # `resolve` fills it in
    if e.split:
        warnings.warn(
            f"seed {c.seed}: --k {c.k} splits the complex pair {_fmt_complex(e.leading[-1].real, abs(e.leading[-1].imag))}"
            f" (one real {c.k}-dimensional subspace cannot hold half of it); --k {c.k + 1}"
            " keeps it whole",
            stacklevel=2,
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(c))
    np.savez(out / "operators.npz", A=e.A, B=e.B)

    rec = Records()
    rec.add_measurement(*measure(e, 0, math.nan, math.nan))
    # no tqdm object at all without a bar: in a spawned worker it would leave a semaphore behind
    steps = range(1, c.steps + 1)
    for step in tqdm(steps, desc=f"eigen seed {c.seed}") if progress else steps:
        row = train_step(e, step, rec)
        rec.steps.append(row)
        if step > c.steps - c.tail:
            rec.tail.append(measure_tail(e, step, rec.tail[-1] if rec.tail else None))
        if step % c.record_every == 0 or step == c.steps:
            rec.add_measurement(*measure(e, step, row["lambda_batch"], row["r2_batch"]))

    summary = summarise(e, rec)
    write(out, e, rec, summary)
    if plots:
        from tinyvec.plots import eigen as eplots

        eplots.all_plots(out, rec.metrics, rec.steps, np.stack(rec.frames), e.spectrum,
                         summary, c.frames, fmt=fmt, dpi=dpi)  # fmt: skip
    return summary


def final_ritz(row: dict[str, Any]) -> np.ndarray:
    """The Ritz values of a metrics row (columns ritz<i>_real, ritz<i>_imag)."""
    n = sum(1 for key in row if key.startswith("ritz") and key.endswith("_real"))
    return np.array([complex(row[f"ritz{i}_real"], row[f"ritz{i}_imag"]) for i in range(n)])


def spectrum_report(row: dict[str, Any], spectrum: Spectrum) -> list[dict[str, Any]]:
    """Each learned Ritz value with the nearest exact eigenvalue (degree 1 or 2) and the
    relative distance |ritz − μ|/|μ|."""
    out = []
    for value in final_ritz(row):
        i = int(np.argmin(np.abs(spectrum.values - value)))
        mu = spectrum.values[i]
        out.append({"real": value.real, "imag": value.imag,
                    "nearest": {"real": mu.real, "imag": mu.imag,
                                "degree": int(spectrum.degrees[i])},
                    "relative_distance": float(abs(value - mu) / abs(mu))})  # fmt: skip
    return out


def leading_report(row: dict[str, Any], leading: np.ndarray, degrees: np.ndarray,
                   split: bool, tolerance: float = 0.02) -> dict[str, Any]:  # fmt: skip
    """The acceptance test of issue 11: each exact eigenvalue among the K of largest real
    part, with the learned Ritz value matched to it one to one (the matching of least total
    relative error: one Ritz value cannot account for two eigenvalues) and the relative
    error; ``met`` when every one is within ``tolerance`` (2%), the half of a pair split by
    the cut excepted."""
    values = final_ritz(row)
    cost = np.abs(values[None, :] - leading[:, None]) / np.abs(leading)[:, None]
    match = min(itertools.permutations(range(len(values))),
                key=lambda p: sum(cost[i, j] for i, j in enumerate(p)))  # fmt: skip
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
        "met": all(x["met"] for x in counted) if counted else None,
        "degree1_met": all(x["met"] for x in degree1) if degree1 else None,
    }


def _largest_real(spectrum: Spectrum) -> dict[str, Any]:
    """The eigenvalue of largest real part over degrees 1 and 2 (the end of the real axis
    when λ̂ > 0; compare ``extreme_degree1``: the network tends to stay at degree 1)."""
    i = int(np.argmax(spectrum.values.real))
    mu = spectrum.values[i]
    return {"real": float(mu.real), "imag": float(mu.imag), "degree": int(spectrum.degrees[i])}


# --- several seeds --------------------------------------------------------------------------
def seed_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of a sweep (`tinyvec.experiments.sweep`): the spec is a Config as JSON plus
    ``out`` (the run's folder) and the figure options; returns the summary as plain JSON."""
    spec = dict(spec)
    out, plots = Path(spec.pop("out")), spec.pop("plots")
    fmt, dpi = spec.pop("format", "png"), spec.pop("dpi", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a split pair is in the table ("split" column)
        summary = run(Config(**spec), out, progress=False, plots=plots, fmt=fmt, dpi=dpi)
    return {"summary": json.loads(json.dumps(_finite(summary), default=_json_default))}


def table_row(s: dict[str, Any]) -> dict[str, Any]:
    """One line of the multi-seed table."""
    d, deg, lead = s["nearest"]["by_value"], s["degrees"], s["leading"]
    trend = s["completion"].get("trend") or {}
    return {
        "seed": s["seed"],
        "k": s["k"],
        "steps": s["steps"],
        "r2": round(s["r2"], 5) if s["r2"] is not None else "-",
        "ritz": " ".join(_fmt_complex(v["real"], v["imag"]) for v in s["spectrum"]),
        "leading": " ".join(_fmt_complex(v["real"], v["imag"]) + f"(d{v['degree']})"
                            + ("*" if v["split_pair"] else "")
                            for v in lead["eigenvalues"]),
        "errors_%": " ".join(f"{100 * v['relative_error']:.2f}" for v in lead["eigenvalues"]),
        "met": _yes(lead["met"]),
        "degree1_met": _yes(lead["degree1_met"]),
        "nearest_to_lambda": _fmt_complex(d["real"], d["imag"]) + f" (d{d['degree']})",
        "var_deg1": round(deg["variance_degree1"], 4),
        "var_deg_le2": round(deg["variance_degree_le2"], 4),
        "completion": s["completion"]["kind"] + _period(s["completion"]["period"]),
        "trend_r2": _trend_cell(trend, 0),
        "trend_lambda": _trend_cell(trend, 1),
        "lag1": round(s["lambda_tail"]["lag1_autocorrelation"], 2),
        "rotation_period": round(s["rotation"]["period_steps"]) if s["rotation"] else "-",
        "erank_rgb": "/".join(f"{s['skip_weights'][f'erank_{c}']:.1f}" for c in "rgb"),
        "diff_rg_gb_rb": "/".join(f"{s['skip_weights'][f'diff_{p}']:.2f}" for p in ("rg", "gb", "rb")),
        "steps_per_cpu_s": round(s["steps_per_cpu_second"]) if s["steps_per_cpu_second"] else "-",
    }  # fmt: skip


def _yes(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


def _trend_cell(trend: dict[str, Any], i: int) -> str:
    """Δ ± SE over the monitor's window (the drift test of `CompletionMonitor`)."""
    if not trend:
        return "-"
    return f"{trend['change'][i]:+.1e}±{trend['se'][i]:.0e}"


def _fmt_complex(re: float, im: float) -> str:
    return f"{re:.4f}" if abs(im) < 1e-9 else f"{re:.3f}{im:+.3f}i"


def _period(p: int | None) -> str:
    return f"({p})" if p and p > 1 else ""


def write_table(summaries: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """summary.csv and summary.md of several runs."""
    table = [table_row(s) for s in summaries]
    write_csv(out / "summary.csv", table)
    head = list(table[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in table]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return table


def run_seeds(c: Config, seeds: list[int], out: Path, jobs: int = 1, plots: bool = True, *,
              dask: str | None = None, progress: bool = True, fmt: str = "png",
              dpi: int = 100) -> list[dict]:  # fmt: skip
    """Run ``seeds`` through the sweep runner (``jobs`` processes, or a Dask cluster),
    resuming from ``out/runs.jsonl``; then write summary.md, summary.csv and the grid figure
    into ``out``. Returns the summaries, in the order of ``seeds``."""
    specs = [{**asdict(replace(c, seed=s)), "out": str(out / f"seed-{s}"), "plots": plots,
              "format": fmt, "dpi": dpi} for s in seeds]  # fmt: skip
    with executor_for(jobs, dask) as ex:
        runs = run_sweep(seed_run, specs, out, executor=ex, progress=progress, desc="seeds")
    summaries = [r["summary"] for r in runs]
    write_table(summaries, out)
    if plots:
        from tinyvec.plots import eigen as eplots

        eplots.plot_grid([out / f"seed-{s}" for s in seeds], out / "grid", fmt=fmt)
    return summaries


def parse_k(text: str) -> int:
    """``--k``: a number of outputs ≥ 1, or ``auto`` (stored as 0 until the run resolves it).

    >>> parse_k("3"), parse_k("auto")
    (3, 0)
    """
    if str(text).strip().lower() in ("auto", "0"):
        return 0
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"takes a number of outputs ≥ 1 or 'auto', got {text!r}"
        ) from None


HELPS = {
    "k": "outputs K ≥ 1, or auto (the smallest K ≥ 3 that splits no degree-1 pair); default 1",
    "steps": "default 3000 for K = 1, 6000 for K > 1 (300 with --quick)",
    "lr_final": "default 0 (a constant rate) for K = 1, 0.01 for K > 1",
    "degree_every": "log per-degree shares and step gains every N steps (degrees.csv); 0: off",
    "bias_init": "first-layer biases uniform in ±this (default 0: the network starts odd)",
    "even": "width of an even branch x ↦ (Vx)² into the last layer (default 0: none)",
}  # fmt: skip
POSITIVE_FLOATS = ("lr", "eps", "trend_tol")


def parser() -> StudyParser:
    p = study_parser("eigen", __doc__.split("\n\n")[0], out="runs/eigen",
                     quick="a short run (300 steps, smaller probes): a smoke test")  # fmt: skip
    defaults = Config()
    for action in p._actions:  # the seed's runs are seed 1: keep it the default
        if action.dest == "seed":
            action.default, action.help = defaults.seed, f"random seed (default {defaults.seed})"
    g = p.add_argument_group("the experiment")
    for f in fields(Config):
        if f.name == "seed":
            continue
        default = getattr(defaults, f.name)
        if f.name == "k":
            kind: Any = parse_k
        elif f.name == "opt":
            kind = str
        elif f.name in ("degree_every", "even"):
            kind = nonnegative_int
        elif f.name in ("steps",) or isinstance(default, int):
            kind = positive_int
        elif f.name in POSITIVE_FLOATS:
            kind = positive_float
        else:
            kind = nonnegative_float
        g.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                       choices=list(OPTIMISERS) if f.name == "opt" else None,
                       help=HELPS.get(f.name, f"default {default}"))  # fmt: skip
    add_sweep_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = parse(p, argv)
    values = {f.name: getattr(args, f.name) for f in fields(Config)
              if f.name != "seed" and getattr(args, f.name) is not None}  # fmt: skip
    try:
        c = replace(Config(), seed=args.seed, **{**(QUICK if args.quick else {}), **values})
        c.check()
    except ValueError as e:
        p.error(str(e))
    fig = {"fmt": args.format, "dpi": args.dpi}
    if args.seeds:
        with sweep_folder(p.prog, args.out, config_of(args)) as out:
            run_seeds(c, args.seeds, out, args.jobs, not args.no_plots, dask=args.dask,
                      progress=not args.quiet, **fig)  # fmt: skip
        print((args.out / "summary.md").read_text() + f"→ {args.out}")
        return 0
    with run_folder(args.out) as stage:
        s = run(c, stage, progress=not args.quiet, plots=not args.no_plots, **fig)
    out = args.out
    n = s["nearest"]["by_value"]
    if s["k"] == 1:
        print(f"λ̂ = {s['lambda']:.4f}  R² = {s['r2']:.5f}  nearest true eigenvalue "
              f"{_fmt_complex(n['real'], n['imag'])} (degree {n['degree']}, distance "
              f"{n['distance']:.4f})  completion: {s['completion']['kind']}  "
              f"{s['steps_per_second']:.0f} steps/s  → {out}")  # fmt: skip
        return 0
    for v in s["spectrum"]:
        near = v["nearest"]
        print(f"Ritz {_fmt_complex(v['real'], v['imag'])}  nearest exact "
              f"{_fmt_complex(near['real'], near['imag'])} (degree {near['degree']}, "
              f"{100 * v['relative_distance']:.2f}%)")  # fmt: skip
    lead = s["leading"]
    print(f"K = {s['k']}  R² = {s['r2']:.5f}  the {s['k']} of largest real part within 2%: "
          f"{_yes(lead['met'])} (max error {100 * lead['max_relative_error']:.2f}%)  "
          f"completion: {s['completion']['kind']}  {s['steps_per_second']:.0f} steps/s"
          f"  → {out}")  # fmt: skip
    return 0
