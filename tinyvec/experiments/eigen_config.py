"""What one run of the eigen-operator study is (`tinyvec.experiments.eigen`): its `Config`, the
K, steps and rate that the config leaves to the spectrum (`resolve`), and its network.

The network is the seed's, ``Chain(Dense(h,m,atan), SkipConnection(Dense(m,m,atan), +) ×3,
Dense(m,3,atan))``, with our choice of the "very simple last layer" the seed leaves open: a
trainable ``Dense(3, 1)`` without activation (R² and λ̂ are unchanged by an affine map of N,
so it only chooses the mix of the three atan features). The skip layers start at
``scaled(glorot_uniform, skip_init)`` (default 1e-3: "nearly zero"), the others at Glorot.
With K outputs the head is ``Dense(m, max(3, K), atan)``, ``Dense(max(3, K), K)``.

The cut at K must not split a complex pair (one K-dimensional real subspace cannot hold half
of it; `tinyvec.analysis.ritz.leading_by_real_part`): ``--k auto`` picks the smallest K ≥ 3
that splits no degree-1 pair, and an explicit K that splits a pair of the degree ≤ 2
spectrum warns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import tinyvec as tv
from tinyvec.analysis.eigen_operator import Spectrum
from tinyvec.analysis.ritz import leading_by_real_part
from tinyvec.backend import to_numpy

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
        if self.steps is not None:  # (None: the default of the K that runs, ≥ 300)
            for name in ("tail", "record_every", "monitor_every"):
                if getattr(self, name) > self.steps:
                    raise ValueError(
                        f"{name} ({getattr(self, name)}) is more than the {self.steps} steps "
                        "of the run"
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
        if self.lr_final is not None and self.lr_final > self.lr:
            raise ValueError(
                f"lr_final ({self.lr_final}) is above lr ({self.lr}): the rate decays from lr "
                "to lr_final (0: a constant rate)"
            )
        self._check_k()
        return self

    def _check_k(self) -> None:
        """K against the other values (each valid alone): T has ``eigenvalue_count(h)``
        eigenvalues of degree ≤ 2 to find, and the Ritz fit of K centred outputs needs more
        than K vectors in the batch and in each probe."""
        k = self.k if self.k > 0 else 3  # (auto: at least 3)
        flag = f"--k {self.k}" if self.k > 0 else "--k auto (K ≥ 3)"
        count = eigenvalue_count(self.h)
        if k > count:
            raise ValueError(
                f"{flag} asks for more eigenfunctions than T has of degree ≤ 2 on R^{self.h} "
                f"({count}): lower --k or raise --h"
            )
        for name in ("r", "probe", "monitor_probe"):
            if k >= getattr(self, name):
                raise ValueError(
                    f"{flag} needs --{name.replace('_', '-')} > {k} (the Ritz fit of K "
                    f"outputs needs more than K vectors), got {getattr(self, name)}"
                )


def eigenvalue_count(h: int) -> int:
    """How many eigenvalues of degree 1 and 2 T has on unit vectors of R^h: h of degree 1 and
    h(h+1)/2 − 1 of degree 2 (the traceless symmetric h × h matrices).

    >>> eigenvalue_count(1), eigenvalue_count(3)
    (1, 8)
    """
    return h + h * (h + 1) // 2 - 1


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


def skip_weights(model: tv.Chain) -> np.ndarray:
    """W_r, W_g, W_b: the weights of the three skip layers, stacked (3 × m × m)."""
    trunk = trunk_layers(model)
    return np.stack([to_numpy(trunk[i].layer.weight) for i in (1, 2, 3)])


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
