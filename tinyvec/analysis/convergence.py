"""Errors at convergence over many runs: whether a run stagnated, the best step size of a
rule, and a rule's error relative to a baseline run on the same seed (the measures of the
compensation study, science.md §2, seed 004; the definitions are ours, the seed gives none).

A run is a dict with its step size ``eta``, its error ``tail`` (NaN when it diverged) and
``diverged``. The **ratio of means** of paired runs (a rule's run and its baseline twin, same
seed) is ``mean(error) / mean(error of the twins)`` over the pairs where neither diverged:
the measure of a claim such as "ten times lower error".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

STAGNATION_GAIN, STAGNATION_TARGET = 0.05, 1e-3


def stagnated(curve: Sequence[float], var_y: float) -> bool:
    """Less than 5% improvement of the median training MSE from the tenth of the epochs that
    ends at 75% to the last tenth, while the final MSE is above 1e-3·var(y).

    >>> stagnated([1.0] * 20, 1.0), stagnated(list(np.geomspace(1, 1e-2, 20)), 1.0)
    (True, False)
    """
    E = len(curve)
    tenth = max(1, E // 10)
    before = np.median(curve[max(0, 3 * E // 4 - tenth) : max(1, 3 * E // 4)])
    last = np.median(curve[E - tenth :])
    return bool(curve[-1] > STAGNATION_TARGET * var_y and last > (1 - STAGNATION_GAIN) * before)


def best_eta(
    runs: list[dict[str, Any]], statistic: Callable[[list[float]], Any] = np.mean
) -> float:
    """The step size with the lowest mean error over the seeds (or ``statistic``, such as
    ``np.median``), among those at which no seed diverged (all of them if every step size lost
    a seed).

    >>> r = lambda eta, tail: dict(eta=eta, tail=tail, diverged=not math.isfinite(tail))
    >>> best_eta([r(0.1, 1.0), r(0.2, 0.5), r(0.2, math.nan), r(0.05, 2.0)])
    0.1
    """
    by_eta: dict[float, list[dict[str, Any]]] = {}
    for r in runs:
        by_eta.setdefault(r["eta"], []).append(r)
    stable = {e: rs for e, rs in by_eta.items() if not any(r["diverged"] for r in rs)} or by_eta

    def score(rs: list[dict[str, Any]]) -> float:
        ok = [r["tail"] for r in rs if not r["diverged"]]
        return float(statistic(ok)) if ok else math.inf

    return min(stable, key=lambda e: (score(stable[e]), e))


def ratio_of_means(pairs: Sequence[tuple[float, float]]) -> float:
    """``mean(a) / mean(b)`` over pairs (a, b) of a run's error and its twin's; NaN when there
    are none.

    >>> ratio_of_means([(1.0, 4.0), (3.0, 4.0)]), ratio_of_means([])
    (0.5, nan)
    """
    if not pairs:
        return math.nan
    return float(np.mean([a for a, _ in pairs]) / np.mean([b for _, b in pairs]))


# --- a stated convergence criterion (issue 24) -------------------------------------------------
@dataclass(frozen=True)
class Criterion:
    """When a run counts as converged (ours; issue 24): the **relative change of the windowed
    loss** between two consecutive windows of ``window`` epochs,

        ``r_t = |L̄(t−W, t] − L̄(t−2W, t−W]| / L̄(t−2W, t−W]``,  L̄ the mean of the per-epoch
        training loss over the window,

    falls below ``tol`` at a check (every ``window`` epochs, from ``min_epochs`` on). A run
    that reaches ``max_epochs`` first is **not converged**; its error is reported all the same,
    as a fixed-budget error. The error of a run is ``L̄`` over its last window. With the
    defaults, a converged loss changes by less than 1 % per 200 epochs, i.e. an exponential
    decay would have a half-life above ≈ 14 000 epochs.

    >>> c = Criterion(tol=0.01, window=2, min_epochs=4, max_epochs=100)
    >>> c.converged([4.0, 3.0, 2.0, 1.0]), c.converged([1.0, 1.0, 1.0, 1.001])
    (False, True)
    """

    tol: float = 0.01
    window: int = 200
    min_epochs: int = 1000
    max_epochs: int = 4000

    def __post_init__(self) -> None:
        if not (self.tol > 0 and self.window >= 1 and 2 * self.window <= self.min_epochs
                <= self.max_epochs):  # fmt: skip
            raise ValueError("Criterion needs tol > 0, window ≥ 1, 2·window ≤ min ≤ max epochs")

    def change(self, curve: Sequence[float]) -> float:
        """``r_t`` on the last two windows of ``curve`` (NaN when shorter than 2 windows)."""
        return window_change(curve, self.window)

    def converged(self, curve: Sequence[float]) -> bool:
        """Whether ``curve`` (one loss per epoch) has converged by the criterion now."""
        return len(curve) >= self.min_epochs and self.change(curve) < self.tol

    def due(self, epochs: int) -> bool:
        """Whether a check falls after ``epochs`` epochs (every window, from min_epochs)."""
        return epochs >= self.min_epochs and (epochs - self.min_epochs) % self.window == 0

    def stops(self, curve: Sequence[float]) -> bool:
        """Whether a run with loss ``curve`` so far stops training now: converged at a check."""
        return self.due(len(curve)) and self.converged(curve)

    def as_dict(self) -> dict[str, Any]:
        return {"tol": self.tol, "window": self.window, "min_epochs": self.min_epochs,
                "max_epochs": self.max_epochs}  # fmt: skip


def window_change(curve: Sequence[float], window: int) -> float:
    """``|mean(last W) − mean(the W before)| / mean(the W before)``; NaN when the curve is
    shorter than two windows or not finite.

    >>> window_change([2.0, 2.0, 1.0, 1.0], 2)
    0.5
    """
    if len(curve) < 2 * window:
        return math.nan
    last = float(np.mean(curve[len(curve) - window :]))
    before = float(np.mean(curve[len(curve) - 2 * window : len(curve) - window]))
    if not (math.isfinite(last) and math.isfinite(before)) or before <= 0:
        return math.nan
    return abs(last - before) / before


def train_to_convergence(epoch: Callable[[], float], criterion: Criterion) -> dict[str, Any]:
    """Call ``epoch()`` (one epoch of training; returns the epoch's training loss, or NaN when
    the run diverged) until ``criterion`` is met or its budget is spent. Returns ``curve``,
    ``epochs``, ``converged``, ``diverged``, ``change`` (the last r_t) and ``error`` (the mean
    loss over the last window; NaN when diverged).

    >>> losses = iter([1.0 / (t + 1) for t in range(10)] + [0.1] * 100)
    >>> r = train_to_convergence(lambda: next(losses), Criterion(0.01, 2, 4, 40))
    >>> r["converged"], r["epochs"], r["error"]
    (True, 14, 0.1)
    """
    curve: list[float] = []
    while len(curve) < criterion.max_epochs:
        loss = float(epoch())
        if not math.isfinite(loss):
            return outcome(curve, True, criterion)
        curve.append(loss)
        if criterion.stops(curve):
            break
    return outcome(curve, False, criterion)


def outcome(curve: list[float], diverged: bool, criterion: Criterion) -> dict[str, Any]:
    """What `train_to_convergence` returns for a run that trained ``curve`` (its loss per
    epoch) and stopped there, by ``criterion`` or because it ``diverged``."""
    if diverged:
        return {"curve": curve, "epochs": len(curve), "converged": False, "diverged": True,
                "change": math.nan, "error": math.nan}  # fmt: skip
    return {"curve": curve, "epochs": len(curve), "converged": criterion.converged(curve),
            "diverged": False, "change": criterion.change(curve),
            "error": float(np.mean(curve[-criterion.window :]))}  # fmt: skip


# --- paired comparisons over many seeds (issue 24) ---------------------------------------------
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, BOOTSTRAP_LEVEL = 10_000, 0, 0.95


def floored(error: float, floor: float) -> float:
    """``max(error, floor)``: errors below the interpolation floor count as equal (a ratio of
    two errors at rounding level is no gain). NaN stays NaN."""
    return error if math.isnan(error) else max(error, floor)


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.median,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``values``: resample the values
    with replacement ``resamples`` times (generator ``default_rng(seed)``), take the
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the statistic. (NaN, NaN) for fewer
    than 2 values.

    >>> lo, hi = bootstrap_interval([1.0, 2.0, 3.0, 4.0, 5.0], resamples=2000)
    >>> 1.0 <= lo <= 3.0 <= hi <= 5.0
    True
    """
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(resamples, v.size))
    stats = np.array([statistic(v[i]) for i in idx])
    q = (1 - level) / 2
    return float(np.quantile(stats, q)), float(np.quantile(stats, 1 - q))


def paired_comparison(
    errors: Sequence[float],
    twins: Sequence[float],
    floor: float,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """A rule's errors against its baseline twins (same seeds, same order; NaN = diverged),
    each floored at ``floor`` (`floored`):

    - ``seeds``, ``diverged`` and ``twin_diverged`` (counts), ``pairs``: seeds where neither
      diverged;
    - per-seed ratio ``ρ_i = max(e_i, floor) / max(b_i, floor)`` on the pairs; ``median_ratio``
      with its percentile bootstrap interval ``ci`` (``resamples`` resamples of the pairs,
      seeded; ``level``), and ``ratio_of_medians``;
    - ``wins`` / ``losses`` / ``ties``: per seed, lower floored error wins; a diverged run loses
      to a finite one; two diverged runs, or two errors at the floor, tie;
    - ``both_interpolate``: every pair has both errors at or below the floor (then no ratio is
      a gain);
    - ``median``, ``twin_median``: medians of the finite errors.

    >>> r = paired_comparison([1.0, 2.0, math.nan, 1e-12], [2.0, 4.0, 1.0, 1e-13], 1e-9,
    ...                       resamples=200)
    >>> r["median_ratio"], r["wins"], r["losses"], r["ties"], r["diverged"]
    (0.5, 2, 1, 1, 1)
    """
    e = np.array([floored(float(x), floor) for x in errors])
    b = np.array([floored(float(x), floor) for x in twins])
    if e.shape != b.shape:
        raise ValueError(f"{e.size} errors against {b.size} twins")
    ok = np.isfinite(e) & np.isfinite(b)
    ratios = e[ok] / b[ok]
    wins = int(np.sum(ok & (e < b)) + np.sum(np.isfinite(e) & ~np.isfinite(b)))
    losses = int(np.sum(ok & (e > b)) + np.sum(~np.isfinite(e) & np.isfinite(b)))
    lo, hi = bootstrap_interval(ratios, resamples=resamples, level=level, seed=seed)
    fin_e, fin_b = e[np.isfinite(e)], b[np.isfinite(b)]
    return {
        "seeds": int(e.size), "pairs": int(ok.sum()),
        "diverged": int(np.sum(~np.isfinite(e))), "twin_diverged": int(np.sum(~np.isfinite(b))),
        "median_ratio": float(np.median(ratios)) if ratios.size else math.nan,
        "ci": [lo, hi], "level": level, "resamples": resamples, "bootstrap_seed": seed,
        "ratio_of_medians": (float(np.median(e[ok]) / np.median(b[ok])) if ok.any()
                             else math.nan),
        "wins": wins, "losses": losses, "ties": int(e.size) - wins - losses,
        "both_interpolate": bool(ok.any() and np.all((e[ok] <= floor) & (b[ok] <= floor))),
        "median": float(np.median(fin_e)) if fin_e.size else math.nan,
        "twin_median": float(np.median(fin_b)) if fin_b.size else math.nan,
        "floor": floor,
    }  # fmt: skip
