"""The sharpness of the loss along training, against the stability threshold 2/η of gradient
descent (science.md §7; Cohen et al., ICLR 2021, the edge of stability).

On the quadratic model L(θ) ≈ L(θ*) + ½ (θ−θ*)ᵀ H (θ−θ*), a step θ ← θ − η ∇L multiplies the
component along an eigenvector u_i of H by (1 − η λ_i): it shrinks while λ_i < 2/η and grows,
flipping sign every step, beyond. So λ_max = 2/η is where plain descent turns into an
oscillation of period 2 along the top eigenvector u₁, and the alignment
|cos(u₁, θ_{t+1} − θ_t)| says how much of a step is that oscillation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..engine.tensor import data
from ..layers.base import trainables
from .hessian import hessian_eigs

__all__ = ["SharpnessMonitor", "threshold_summary"]


class SharpnessMonitor:
    """``SharpnessMonitor(loss, lr, every=10, *, recorder=None, tol=1e-4, maxiter=60)``: a `train`
    callback that every ``every`` steps measures λ_max, the largest eigenvalue of the Hessian
    of ``loss(model)`` (a fixed batch: the full batch, for gradient descent), by Lanczos on
    exact Hessian-vector products (`hessian_eigs`, warm-started from the last top
    eigenvector), and the alignment |cos(u₁, θ_t − θ_{t−1})| of the top eigenvector with the
    step just taken. ``lr`` is the step size η of the rule (2/η, the stability threshold).

    Each measurement is a dict in ``history`` (``step``, ``sharpness``, ``two_over_lr``,
    ``ratio`` = λ_max η/2, ``alignment``, ``products``) and, with a ``recorder``, a row of
    `tv.Recorder.note`. `latest` gives the last one.

    >>> import numpy as np, tinyvec as tv
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2, 16)); y = np.array([[1.0, -2.0]]) @ x
    >>> model = tv.Dense(2, 1, rng=0)
    >>> mon = SharpnessMonitor(lambda m: tv.mse(m(x), y), lr=0.1, every=5)
    >>> _ = tv.train(lambda m, x, y: tv.mse(m(x), y), model, [(x, y)], tv.setup(tv.Descent(0.1), model),
    ...              epochs=10, progress=False, callbacks=[mon])
    >>> [h["step"] for h in mon.history], mon.latest()["two_over_lr"]
    ([5, 10], 20.0)
    >>> ones = np.ones((1, 16))                       # mse of W x + b: H = 2/N [x; 1][x; 1]ᵀ
    >>> H = 2 * np.vstack([x, ones]) @ np.vstack([x, ones]).T / 16
    >>> bool(np.isclose(mon.latest()["sharpness"], np.linalg.eigvalsh(H)[-1]))   # linear: H fixed
    True
    """

    def __init__(
        self,
        loss: Callable[[Any], Any],
        lr: float,
        every: int = 10,
        *,
        recorder: Any = None,
        tol: float = 1e-4,
        maxiter: int = 60,
    ) -> None:
        if not callable(loss):
            raise TypeError(f"SharpnessMonitor: loss must be a function of the model, got {loss!r}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"SharpnessMonitor: lr must be a positive step size, got {lr!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"SharpnessMonitor: every must be a whole number ≥ 1, got {every!r}")
        self.loss, self.lr, self.every = loss, float(lr), every
        self.recorder, self.tol, self.maxiter = recorder, tol, maxiter
        self.history: list[dict[str, Any]] = []
        self._previous: list[Any] | None = None  # θ_{t−1}: references (update replaces arrays)
        self._vector: Any = None  # the last top eigenvector: the next warm start

    def __call__(self, step: int, model: Any, loss: float = math.nan) -> None:
        theta = [data(getattr(layer, name)) for _, layer, name in trainables(model)]
        previous, self._previous = self._previous, theta
        if step % self.every != 0:
            return
        eigs = hessian_eigs(
            self.loss, model, vectors=True, tol=self.tol, maxiter=self.maxiter, start=self._vector
        )
        assert eigs.vectors is not None
        self._vector = eigs.vectors[0]
        alignment = math.nan
        if previous is not None:
            u = [to_numpy(eigs.vectors[0][p]).ravel() for p, _, _ in trainables(model)]
            d = [
                to_numpy(a).ravel() - to_numpy(b).ravel()
                for a, b in zip(theta, previous, strict=True)
            ]
            norm = math.sqrt(sum(float(np.vdot(di, di)) for di in d))
            if norm > 0:
                alignment = (
                    abs(sum(float(np.vdot(ui, di)) for ui, di in zip(u, d, strict=True))) / norm
                )
        measured = {
            "step": step,
            "loss": loss,
            "sharpness": eigs.sharpness,
            "two_over_lr": 2 / self.lr,
            "ratio": eigs.sharpness * self.lr / 2,
            "alignment": alignment,
            "products": eigs.products,
        }
        self.history.append(measured)
        if self.recorder is not None:
            self.recorder.note(**measured)

    def latest(self) -> dict[str, Any] | None:
        """The last measurement (None before the first)."""
        return self.history[-1] if self.history else None

    def series(self, name: str) -> np.ndarray:
        """One quantity over all measurements, e.g. ``series("ratio")``."""
        return np.array([h[name] for h in self.history])


def threshold_summary(steps: Any, sharpness: Any, lr: float) -> dict[str, Any]:
    """λ_max along training (``sharpness`` measured at ``steps``, as in a `SharpnessMonitor`'s
    history) against the stability threshold 2/η of descent with step size η = ``lr``, in the
    ratio r_t = λ_max(t) η / 2 (≥ 1: beyond the threshold):

    - ``start``, ``peak``, ``end``: r at the first measurement, its maximum, its last value;
    - ``reached``: the first measured step with r ≥ 1 (None when r stays below 1);
    - ``hover``: the median of r from that measurement on (NaN when it is never reached): at
      the edge of stability r hovers about 1;
    - ``sharpening``: peak / start, the progressive sharpening (NaN when start is 0).

    >>> s = threshold_summary([0, 10, 20, 30], [5.0, 15.0, 21.0, 19.0], lr=0.1)
    >>> s["reached"], round(s["start"], 3), round(s["peak"], 3), round(s["hover"], 3)
    (20, 0.25, 1.05, 1.0)
    """
    ratio = np.array(sharpness) * lr / 2
    at = np.array(steps)
    reached = np.flatnonzero(ratio >= 1.0)
    first = int(at[reached[0]]) if reached.size else None
    after = ratio[reached[0] :] if reached.size else ratio[-1:]
    return {
        "start": float(ratio[0]),
        "peak": float(ratio.max()),
        "end": float(ratio[-1]),
        "reached": first,
        "hover": float(np.median(after)) if reached.size else math.nan,
        "sharpening": float(ratio.max() / ratio[0]) if ratio[0] > 0 else math.nan,
    }
