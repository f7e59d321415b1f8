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
from collections.abc import Sequence
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


def best_eta(runs: list[dict[str, Any]]) -> float:
    """The step size with the lowest mean error over the seeds, among those at which no seed
    diverged (all of them if every step size lost a seed).

    >>> r = lambda eta, tail: dict(eta=eta, tail=tail, diverged=not math.isfinite(tail))
    >>> best_eta([r(0.1, 1.0), r(0.2, 0.5), r(0.2, math.nan), r(0.05, 2.0)])
    0.1
    """
    by_eta: dict[float, list[dict[str, Any]]] = {}
    for r in runs:
        by_eta.setdefault(r["eta"], []).append(r)
    stable = {e: rs for e, rs in by_eta.items() if not any(r["diverged"] for r in rs)} or by_eta

    def mean(rs: list[dict[str, Any]]) -> float:
        ok = [r["tail"] for r in rs if not r["diverged"]]
        return float(np.mean(ok)) if ok else math.inf

    return min(stable, key=lambda e: (mean(stable[e]), e))


def ratio_of_means(pairs: Sequence[tuple[float, float]]) -> float:
    """``mean(a) / mean(b)`` over pairs (a, b) of a run's error and its twin's; NaN when there
    are none.

    >>> ratio_of_means([(1.0, 4.0), (3.0, 4.0)]), ratio_of_means([])
    (0.5, nan)
    """
    if not pairs:
        return math.nan
    return float(np.mean([a for a, _ in pairs]) / np.mean([b for _, b in pairs]))
