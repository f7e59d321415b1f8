"""When is training complete? A monitor that classifies a run as a fixed point, a limit cycle
of period p, or still moving (science.md §6; seed 002 asks the question and gives no formula,
so the definitions below are ours).

At a check after step t, on a fixed probe set X_p (features × N):

- function residual ``‖f_t(X_p) − f_{t−1}(X_p)‖ / ‖f_{t−1}(X_p)‖`` (Frobenius);
- parameter residual per layer ``‖θ_t − θ_{t−1}‖ / (α ‖θ_{t−1}‖)``, θ all parameters of the
  layer. α is the constructor's ``lr``: with the optimiser's learning rate it is
  ``‖∇L‖/‖θ‖`` for plain descent, a measure that does not shrink with the step size; the
  default α = 1 gives the plain relative change;
- prediction change: the fraction of probe samples whose prediction changed, the argmax
  over the output rows for a classifier, and for a regression a sample whose output moved,
  in some coordinate, by more than ``tol · (1 + |f_{t−1}|)`` (absolute and relative, like
  ``isclose`` with atol = rtol = tol);
- loss plateau ``|L_t − L_{t−1}| / |L_1|``, the step's change of the training loss relative
  to the first loss the monitor saw (relative to L_{t−1} it would never settle on a loss that
  decays geometrically to 0);
- cycle residual of period p ``‖θ_t − θ_{t−p}‖ / (α ‖θ_{t−p}‖)`` (the largest over layers).

Classification over the last ``patience`` checks: a **fixed point** when every residual is
below ``eps`` at each of them; a **limit cycle** of the smallest period 2 ≤ p ≤ max_period
whose cycle residual is below ``eps`` while each of the last p one-step parameter residuals
is not (with ``every`` > 1: those of the last p checks), **and whose loss has no trend**
(issue 24: parameters that nearly come back every p steps while the loss still falls are a
slow descent, not a cycle): the loss averaged over p consecutive checks,
``L̃_t = mean(L_{t−p+1} … L_t)`` (constant on an exact cycle), over the last ``window``
checks, must be *settled* by the trend test below with the relative tolerance
``|Δ| + z·SE(Δ) ≤ trend_tol·|mean L̃|``. When no loss is measured (NaN, e.g. a fresh batch each
step) the observables' trend test must be settled instead; with neither, the cycle cannot be
tested for a trend and the check says so (``cycle_trend``: None). A **noise floor** when
neither holds but the observables have no trend (below); otherwise **moving**.

Why a cycle (issue 22): given a `SharpnessMonitor` (``sharpness=``, run as a callback before
this one), a check whose parameters come back every p steps (a limit-cycle verdict, or one
turned into "moving" by the loss-trend test) carries ``edge_of_stability``: the latest λ_max, 2/η,
whether λ_max ≥ 2/η (plain descent is unstable along the top eigenvector there, and flips
sign every step), and the alignment |cos(u₁, θ_{t+1} − θ_t)| of that eigenvector with the step.

Noise floor or drift (seed 002 under SGD noise, issue 11): with a fresh batch every step the
parameters never stop, so the residuals above stay at the size of the step noise whether the
run has converged or not. What tells them apart is a trend in quantities that do not depend
on the batch. Given observables o_t (``observe(model)``: a few scalars, e.g. a loss on a fixed
probe, an eigenvalue estimate) at the last ``window`` checks, cut into ``blocks`` consecutive
blocks with means b̄_1 … b̄_B, fit ``b̄_j ≈ c + s·j`` per observable: the trend over the window
is ``Δ = s·(B − 1)``, its standard error ``SE(Δ)`` from the scatter of the block means about
the line (block means are close to independent when a block is longer than the noise's
correlation time; when it is not, SE is too small and the test leans to "drifting", the safe
side). With ``τ = trend_tol·(1 + |mean|)``, an observable is **settled** when even the upper
confidence bound of its trend is small, ``|Δ| + z·SE(Δ) ≤ τ``, and **drifts** when the trend
is both real and large, ``|Δ| > z·SE(Δ)`` and ``|Δ| > τ``. A run is at its noise floor when
every observable is settled at each of the last ``patience`` checks: absence of a visible
trend is not enough, since a slow drift under large noise shows none in a short window (such
a run stays "moving": make the window longer). The spread of the observables (their standard
deviation over the window) is the floor, reported beside.

Parameter arrays are replaced, not mutated, by `tv.update` (``setattr(layer, name, x - step)``),
so the ring of the last ``max_period + 1`` parameter sets holds references, not copies
(pass ``copy=True`` for an optimiser that updates in place).
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..backend import is_array, namespace
from ..engine.tensor import data, no_grad
from ..layers.base import trainables, walk
from ..measures import sqnorm

# What a forward pass records on a layer: the probe's forward pass must not overwrite the
# training batch's values that other callbacks may still read.
_RECORDED = ("input", "preact", "output")


@contextlib.contextmanager
def preserved_forward(model: Any) -> Iterator[None]:
    """Run an extra forward pass inside this block without losing what the last one recorded:
    every layer's ``input``, ``preact`` and ``output`` are put back on exit (references)."""
    saved = [
        (layer, {k: getattr(layer, k) for k in _RECORDED if hasattr(layer, k)})
        for _, layer in walk(model)
    ]
    try:
        yield
    finally:
        for layer, values in saved:
            for k, v in values.items():
                setattr(layer, k, v)


# √ and num / den of a run alone (floats), or with ``members`` of each member of a stack
# (arrays over the leading member axis; √ and / are IEEE's in NumPy as in math).
def _sqrt(v: Any) -> Any:
    return math.sqrt(v) if isinstance(v, int | float) else namespace(v).sqrt(v)


def _ratio(num: Any, den: Any) -> Any:
    """A residual num / den that still says something at den = 0: 0 when nothing moved
    (0 / 0: finished), +inf when something moved from nothing, NaN only from a NaN. (A
    measurement of `tinyvec.analysis.vector` divides by a norm that is 0 only when the
    quantity has no direction, and gives NaN there instead.)"""
    if not isinstance(den, float):  # each member's
        xp = namespace(den)
        ratio = xp.where(den > 0, num / xp.where(den > 0, den, 1.0),
                         xp.where(num == 0, 0.0, math.inf))  # fmt: skip
        return xp.where(xp.isnan(num) | xp.isnan(den), math.nan, ratio)
    if math.isnan(num) or math.isnan(den):
        return math.nan
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.inf


def parameter_residuals(
    new: Mapping[str, Sequence[Any]], old: Mapping[str, Sequence[Any]], lr: float = 1.0,
    members: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """``‖θ_new − θ_old‖ / (lr ‖θ_old‖)`` per layer; a layer is a name → list of arrays.
    ``members``: the arrays of a stack (member axis first), each member's residual (E,).

    >>> import numpy as np
    >>> r = parameter_residuals({"w": [np.array([3.0, 4.4])]}, {"w": [np.array([3.0, 4.0])]})
    >>> round(r["w"], 12)  # 0.4 / 5
    0.08
    """
    out = {}
    for name, arrays in new.items():
        diff = sum(sqnorm(a - b, members) for a, b in zip(arrays, old[name], strict=True))
        size = sum(sqnorm(b, members) for b in old[name])
        out[name] = _ratio(_sqrt(diff), lr * _sqrt(size))
    return out


def prediction_change(f_new: Any, f_old: Any, mode: str = "auto", tol: float = 1e-3) -> float:
    """Fraction of probe samples (columns) whose prediction changed: the argmax over rows
    (``mode="argmax"``; ``"auto"`` picks it for more than one output row) or, for a
    regression (``"tolerance"``), an output moving by more than ``tol · (1 + |f_old|)``.
    Outputs of a stack (E, outputs, N) give each member's fraction, an array (E,).

    >>> import numpy as np
    >>> prediction_change(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 0.0]]))
    0.5
    """
    xp = namespace(f_new)
    if f_new.ndim == 1:
        f_new, f_old = f_new[None, :], f_old[None, :]
    if mode == "auto":
        mode = "argmax" if f_new.shape[-2] > 1 else "tolerance"
    if mode == "argmax":
        changed = xp.argmax(f_new, axis=-2) != xp.argmax(f_old, axis=-2)
    elif mode == "tolerance":
        moved = xp.abs(f_new - f_old) > tol * (1 + xp.abs(f_old))
        changed = xp.any(moved, axis=-2)
    else:
        raise ValueError(f"prediction mode must be 'auto', 'argmax' or 'tolerance', got {mode!r}")
    # (counted in float64, so that a member's fraction of a float32 stack is its run's float)
    count = xp.sum(xp.astype(changed, xp.float64), axis=-1)
    return float(count) / f_new.shape[-1] if f_new.ndim == 2 else count / f_new.shape[-1]


def _residuals(
    ring: Sequence[Mapping[str, Sequence[Any]]],
    lr: float,
    max_period: int,
    f_new: Any = None,
    f_old: Any = None,
    predictions: str = "auto",
    tol: float = 1e-3,
    members: bool = False,
) -> dict[str, Any]:
    """The residuals of one check that the parameters and the probe give, from the ring of
    parameter sets (oldest first); ``members``: of a stack's (arrays over the members)."""
    out: dict[str, Any] = {"param_residual": parameter_residuals(ring[-1], ring[-2], lr, members)}
    out["cycles"] = {p: parameter_residuals(ring[-1], ring[-1 - p], lr, members)
                     for p in range(2, max_period + 1) if p < len(ring)}  # fmt: skip
    out["function_residual"] = out["prediction_change"] = math.nan
    if f_new is not None and f_old is not None:
        out["function_residual"] = _ratio(
            _sqrt(sqnorm(f_new - f_old, members)), _sqrt(sqnorm(f_old, members))
        )
        out["prediction_change"] = prediction_change(f_new, f_old, predictions, tol)
    return out


def _members(residuals: Mapping[str, Any], E: int) -> list[dict[str, Any]]:
    """Each member's part of `_residuals` of a stack of E, as Python numbers like those of a
    run alone."""

    def each(v: Any) -> list[Any]:
        return [v] * E if isinstance(v, float) else v.tolist()

    layers = {k: each(v) for k, v in residuals["param_residual"].items()}
    cycles = {p: {k: each(v) for k, v in c.items()} for p, c in residuals["cycles"].items()}
    function, prediction = (each(residuals[k]) for k in ("function_residual", "prediction_change"))
    return [{"param_residual": {k: v[e] for k, v in layers.items()},
             "cycles": {p: {k: v[e] for k, v in c.items()} for p, c in cycles.items()},
             "function_residual": function[e], "prediction_change": prediction[e]}
            for e in range(E)]  # fmt: skip


def _record(
    residuals: Mapping[str, Any],
    loss: float = math.nan,
    loss_old: float = math.nan,
    loss_first: float = math.nan,
) -> dict[str, Any]:
    """One check's record from its `_residuals` (of a run, or a member's of a stack) and the
    losses."""
    rec: dict[str, Any] = {"param_residual": residuals["param_residual"]}
    rec["param_residual_max"] = max(rec["param_residual"].values(), default=0.0)
    rec["cycle_residual"] = {p: max(c.values(), default=0.0)
                             for p, c in residuals["cycles"].items()}  # fmt: skip
    rec["function_residual"] = residuals["function_residual"]
    rec["prediction_change"] = residuals["prediction_change"]
    rec["loss"] = loss
    rec["loss_residual"] = _ratio(abs(loss - loss_old), abs(loss_first))
    return rec


def _below(rec: Mapping[str, Any], eps: float) -> bool:
    """Every residual of the check below eps (a residual not measured, NaN, is skipped)."""
    values = [rec["param_residual_max"], rec["function_residual"], rec["prediction_change"]]
    values.append(rec["loss_residual"])
    return all(v < eps for v in values if not math.isnan(v))


def trend_test(series: Any, blocks: int = 8, z: float = 3.0, tol: float = 1e-3,
               relative: bool = False) -> dict[str, Any]:  # fmt: skip
    """The drift test of the module doc on observables (n points × q, or n): per observable
    the trend ``Δ`` over the window, its standard error, the spread (std) and the mean;
    ``drifting`` (some observable drifts) and ``settled`` (every observable is settled).
    ``relative``: the tolerance is ``τ = tol·|mean|`` instead of ``tol·(1 + |mean|)`` (for a
    loss, whose scale is arbitrary).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> noise = 1.0 + 0.01 * rng.standard_normal(400)
    >>> flat, ramp = trend_test(noise, tol=0.01), trend_test(noise + np.linspace(0, 0.1, 400))
    >>> flat["settled"], flat["drifting"], ramp["settled"], ramp["drifting"]
    (True, False, False, True)
    """
    o = np.asarray(series, dtype=float)
    o = o[:, None] if o.ndim == 1 else o
    n = o.shape[0]
    if blocks < 3 or n < blocks:
        raise ValueError(f"the trend test needs ≥ 3 blocks and ≥ 1 point per block, "
                         f"got {n} points in {blocks} blocks")  # fmt: skip
    means = np.stack([b.mean(axis=0) for b in np.array_split(o, blocks)])  # blocks × q
    j = np.arange(blocks) - (blocks - 1) / 2
    slope = j @ (means - means.mean(axis=0)) / (j @ j)
    residual = means - means.mean(axis=0) - np.outer(j, slope)
    se_slope = np.sqrt((residual**2).sum(axis=0) / (blocks - 2) / (j @ j))
    change, se = slope * (blocks - 1), se_slope * (blocks - 1)
    mean = o.mean(axis=0)
    tau = tol * (np.abs(mean) if relative else 1 + np.abs(mean))
    drifts = (np.abs(change) > z * se) & (np.abs(change) > tau)
    settled = np.abs(change) + z * se <= tau
    return {"drifting": bool(drifts.any()), "settled": bool(settled.all()),
            "change": change.tolist(), "se": se.tolist(), "spread": o.std(axis=0).tolist(),
            "mean": mean.tolist()}  # fmt: skip


def cycle_trend(
    losses: Sequence[float],
    period: int,
    window: int = 40,
    blocks: int = 8,
    z: float = 3.0,
    tol: float = 1e-3,
) -> dict[str, Any] | None:
    """The loss-trend test of a candidate cycle of ``period`` p (module doc): the trend test,
    relative, on the loss averaged over p consecutive checks, over the last ``window`` checks.
    None when fewer than two finite losses are measured (nothing to test). With fewer averaged
    points than ``blocks`` (too few for the test), settled only when the averaged loss stays
    within ``tol·|mean|`` of its mean (its range, not a fit).

    >>> flat = [1.0, 2.0] * 30
    >>> cycle_trend(flat, 2)["settled"], cycle_trend([v * 0.999**t for t, v in enumerate(flat)], 2)["settled"]
    (True, False)
    """
    values = np.asarray([v for v in losses[-(window + period - 1) :] if math.isfinite(v)])
    if values.size < 2:
        return None
    if values.size < period + 1:
        return {"settled": False, "drifting": False, "change": [math.nan], "se": [math.nan],
                "spread": [math.nan], "mean": [math.nan], "period": period}  # fmt: skip
    smooth = np.convolve(values, np.ones(period) / period, mode="valid")
    if smooth.size < blocks:
        mean, width = float(smooth.mean()), float(np.ptp(smooth))
        settled = width <= tol * abs(mean)
        return {"settled": settled, "drifting": not settled, "change": [width], "se": [0.0],
                "spread": [float(smooth.std())], "mean": [mean], "period": period}  # fmt: skip
    return {**trend_test(smooth, blocks, z, tol, relative=True), "period": period}


def classify(
    records: Sequence[Mapping[str, Any]], eps: float, patience: int, *, window: int = 40,
    blocks: int = 8, z: float = 3.0, trend_tol: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``{"kind", "period", "cycle_trend"}`` from the last ``patience`` check records (see the
    module doc; ``cycle_trend``: the loss-trend test of the cycle found by the parameters, if
    any, which a limit cycle must pass)."""
    last = records[-patience:]
    if len(last) < patience:
        return {"kind": "moving", "period": None, "cycle_trend": None}
    if all(_below(r, eps) for r in last):
        return {"kind": "fixed_point", "period": 1, "cycle_trend": None}
    # (only the last records are read: a check costs the same at step 10 and at step 10⁵)
    window_ = range(len(records) - patience, len(records))
    tol = eps if trend_tol is None else trend_tol
    for p in sorted(set.intersection(*(set(r["cycle_residual"]) for r in last))):
        if window_.start - p + 1 >= 0 and all(
            records[j]["cycle_residual"][p] < eps
            and min(records[i]["param_residual_max"] for i in range(j - p + 1, j + 1)) >= eps
            for j in window_
        ):
            losses = [r["loss"] for r in records[-(window + p - 1) :]]  # what cycle_trend reads
            trend = cycle_trend(losses, p, window, blocks, z, tol)
            if trend is None and any("trend" in r for r in last):
                # no loss measured: the observables' trend test stands in for it
                settled = all(r.get("trend") is not None and r["trend"]["settled"] for r in last)
                trend = {"settled": settled, "observables": True, "period": p}
            if trend is None or trend["settled"]:
                return {"kind": "limit_cycle", "period": p, "cycle_trend": trend}
            break  # the parameters nearly come back, but the loss (or observables) still moves
    else:
        trend = None
    if all(r.get("trend") is not None and r["trend"]["settled"] for r in last):
        return {"kind": "noise_floor", "period": None, "cycle_trend": trend}
    return {"kind": "moving", "period": None, "cycle_trend": trend}


def _as_layers(theta: Any) -> dict[str, list[Any]]:
    """One point of a trajectory as layer name → arrays: an array, a list of arrays (one per
    layer) or a dict of arrays or lists of arrays."""
    if is_array(theta):
        return {"theta": [theta]}
    if isinstance(theta, Mapping):
        return {str(k): list(v) if isinstance(v, list | tuple) else [v] for k, v in theta.items()}
    if isinstance(theta, list | tuple):
        return {str(i): [a] for i, a in enumerate(theta)}
    raise TypeError(
        f"a trajectory point is an array, a list or a dict of arrays, got {type(theta).__name__}"
    )


def classify_trajectory(
    params: Sequence[Any],
    outputs: Sequence[Any] | None = None,
    losses: Sequence[float] | None = None,
    *,
    eps: float = 1e-3,
    patience: int = 5,
    max_period: int = 4,
    lr: float = 1.0,
    predictions: str = "auto",
    tol: float | None = None,
    observables: Sequence[Any] | None = None,
    window: int = 40,
    blocks: int = 8,
    z: float = 3.0,
    trend_tol: float | None = None,
) -> dict[str, Any]:
    """Classify a given trajectory θ_0, θ_1, ... (and optionally the probe outputs f_t, the
    losses L_t and the observables o_t of the same steps) exactly as `CompletionMonitor` does
    during training, with a check at every point.

    Returns the last check's residuals with ``kind``, ``period`` and ``history`` (all checks).

    >>> import numpy as np
    >>> converge = [np.array([1.0 + 0.5**t, 2.0]) for t in range(40)]
    >>> classify_trajectory(converge)["kind"]
    'fixed_point'
    >>> flip = [np.array([1.0, (-1.0) ** t]) for t in range(20)]
    >>> r = classify_trajectory(flip)
    >>> r["kind"], r["period"]
    ('limit_cycle', 2)
    >>> classify_trajectory([np.array([1.0 + 0.1 * t]) for t in range(20)])["kind"]
    'moving'
    """
    if len(params) < 2:
        raise ValueError("a trajectory needs at least two points")
    for name, seq in (("outputs", outputs), ("losses", losses), ("observables", observables)):
        if seq is not None and len(seq) != len(params):
            raise ValueError(f"{name} has {len(seq)} points, params {len(params)}")
    tol = eps if tol is None else tol
    points = [_as_layers(p) for p in params]
    flat = [] if observables is None else [_flat(o) for o in observables]
    history = []
    for t in range(1, len(points)):
        ring = points[max(0, t - max_period) : t + 1]
        history.append(
            _record(
                _residuals(ring, lr, max_period,
                           f_new=None if outputs is None else outputs[t],
                           f_old=None if outputs is None else outputs[t - 1],
                           predictions=predictions, tol=tol),
                loss=math.nan if losses is None else float(losses[t]),
                loss_old=math.nan if losses is None else float(losses[t - 1]),
                loss_first=math.nan if losses is None else float(losses[0]),
            )
        )  # fmt: skip
        if observables is not None:
            history[-1]["trend"] = _trend(flat[: t + 1], window, blocks, z,
                                          eps if trend_tol is None else trend_tol)  # fmt: skip
    verdict = classify(history, eps, patience, window=window, blocks=blocks, z=z,
                       trend_tol=trend_tol)  # fmt: skip
    return {**history[-1], **verdict, "history": history}


def _trend(observed: Sequence[Any], window: int, blocks: int, z: float, tol: float) -> Any:
    """The trend test on the last ``window`` observations (each a flat float array, `_flat`),
    None until there are that many. (One np.array of them all: at every check of a run,
    converting each again cost 190 µs of the 250 at window 200.)"""
    if len(observed) < window:
        return None
    return trend_test(np.array(list(observed)[-window:]), blocks, z, tol)


def _flat(observation: Any) -> Any:
    """An observation ``observe(model)`` gave, as the trend test reads it: a flat float array."""
    return np.ravel(np.asarray(observation, dtype=float))


class CompletionMonitor:
    """``CompletionMonitor(probe, eps=1e-3, patience=5, max_period=4, every=1, *, lr=1.0,
    stop=False, predictions="auto", tol=None, copy=False, observe=None, window=40, blocks=8,
    z=3.0, trend_tol=None, sharpness=None)``: a `train` callback that tells whether training has reached a
    fixed point, a limit cycle of period p, its noise floor, or is moving.

    ``mon(step, model, loss)`` after every update; every ``every`` steps it runs a check: the
    residuals of the module doc (one step apart, so f is evaluated at steps t−1 and t) and the
    classification over the last ``patience`` checks. It returns None, or True at a fixed
    point when constructed with ``stop=True`` (which stops `train`). ``probe``: X_p, features
    × N, or None to skip the function and prediction residuals. ``tol`` (default eps): the
    regression tolerance of the prediction change. ``status()`` gives the latest check,
    ``history`` all of them. ``observe(model)`` → a few scalars (an array) evaluated at each
    check: with it, the trend test of the module doc over the last ``window`` checks
    (``trend_tol`` default eps) tells a run at its noise floor from one still drifting; each
    check then has ``trend`` (None until ``window`` checks). While ``observe`` runs,
    ``outputs`` holds the probe's outputs f_t(X_p) of that step (an observable of them, such
    as a loss on the probe, needs no second forward pass).

    >>> import numpy as np, tinyvec as tv
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(3, 32)); y = np.array([[1.0, -2.0, 0.5]]) @ x
    >>> m = tv.Dense(3, 1, rng=0)
    >>> from tinyvec.analysis import CompletionMonitor
    >>> mon = CompletionMonitor(x, eps=1e-6, lr=0.1, stop=True)
    >>> hist = tv.train(lambda m, x, y: tv.mse(m(x), y), m, [(x, y)], tv.setup(tv.Descent(0.1), m),
    ...                 epochs=2000, progress=False, callbacks=[mon])
    >>> s = mon.status()
    >>> s["kind"], len(hist) < 2000, s["function_residual"] < 1e-6
    ('fixed_point', True, True)
    """

    def __init__(
        self,
        probe: Any,
        eps: float = 1e-3,
        patience: int = 5,
        max_period: int = 4,
        every: int = 1,
        *,
        lr: float = 1.0,
        stop: bool = False,
        predictions: str = "auto",
        tol: float | None = None,
        copy: bool = False,
        observe: Callable[[Any], Any] | None = None,
        window: int = 40,
        blocks: int = 8,
        z: float = 3.0,
        trend_tol: float | None = None,
        sharpness: Any = None,
    ) -> None:
        self.sharpness = sharpness  # a SharpnessMonitor: why a cycle (module doc)
        if not (eps > 0 and patience >= 1 and max_period >= 1 and every >= 1 and lr > 0):
            raise ValueError(
                "CompletionMonitor needs eps > 0, lr > 0, patience, max_period, every ≥ 1"
            )
        if not (3 <= blocks <= window and z > 0 and (trend_tol is None or trend_tol > 0)):
            raise ValueError("CompletionMonitor needs 3 ≤ blocks ≤ window, z > 0, trend_tol > 0")
        if observe is not None and not callable(observe):
            raise TypeError(
                f"observe must be callable (model → array), got {type(observe).__name__}"
            )
        self.observe, self.window, self.blocks, self.z = observe, window, blocks, z
        self.trend_tol = eps if trend_tol is None else trend_tol
        self.observed: deque[Any] = deque(maxlen=window)
        if probe is not None and not is_array(probe):
            raise TypeError(
                f"probe must be an array (features × N) or None, got {type(probe).__name__}"
            )
        self.probe, self.eps, self.patience, self.max_period = probe, eps, patience, max_period
        self.every, self.lr, self.stop, self.copy = every, lr, stop, copy
        self.predictions, self.tol = predictions, eps if tol is None else tol
        self.ring: deque[dict[str, list[Any]]] = deque(maxlen=max_period + 1)
        self.history: list[dict[str, Any]] = []
        self._f: tuple[int, Any] | None = None  # (step, f(X_p)) of the last evaluation
        # f_t(X_p) of the step being checked, for an ``observe`` that is a function of it
        # (a loss on the probe): it need not run the model on the probe a second time
        self.outputs: Any = None
        self._loss: tuple[float, float] | None = None  # (first loss, previous loss)
        self._last: dict[str, Any] = {"kind": "moving", "period": None, "cycle_trend": None}

    def _params(self, model: Any) -> dict[str, list[Any]]:
        layers: dict[str, list[Any]] = {}
        for path, layer, name in trainables(model):
            a = data(getattr(layer, name))
            layers.setdefault(path.rsplit(".", 1)[0], []).append(
                namespace(a).asarray(a, copy=True) if self.copy else a
            )
        return layers

    def _due(self, step: int) -> tuple[bool, bool]:
        """(whether step is checked, whether the probe is evaluated at it)."""
        check = step % self.every == 0 and len(self.ring) >= 1  # (with this step's: ≥ 2)
        return check, self.probe is not None and (check or (step + 1) % self.every == 0)

    def __call__(self, step: int, model: Any, loss: float = math.nan) -> bool | None:
        params = self._params(model)
        check, probe = self._due(step)
        f_new = self.outputs = _outputs(model, self.probe) if probe else None
        observed = None
        if check and self.observe is not None:
            with preserved_forward(model), no_grad():
                observed = self.observe(model)
        return self._step(step, params, loss, f_new, observed, check)

    def _step(self, step: int, params: dict[str, list[Any]], loss: float, f_new: Any,
              observed: Any, check: bool,
              residuals: Mapping[str, Any] | None = None) -> bool | None:  # fmt: skip
        """One step's check (``check``: whether `_due` says it is one) from what the model
        gave (`__call__`, or `MemberMonitors` from a stack, which gives its `_residuals` too)."""
        self.ring.append(params)
        first, previous = self._loss if self._loss is not None else (loss, math.nan)
        self._loss = (first, loss)
        f_old = None
        if f_new is not None:
            f_old, self._f = _outputs_before(self._f, step), (step, f_new)
        if not check:
            return None
        if residuals is None:
            residuals = _residuals(list(self.ring), self.lr, self.max_period,
                                   f_new=None if f_old is None else f_new, f_old=f_old,
                                   predictions=self.predictions, tol=self.tol)  # fmt: skip
        rec = _record(residuals, loss=loss, loss_old=previous, loss_first=first)
        rec["step"] = step
        if self.observe is not None:
            self.observed.append(_flat(observed))
            rec["trend"] = _trend(self.observed, self.window, self.blocks, self.z,
                                  self.trend_tol)  # fmt: skip
        self.history.append(rec)
        self._last = classify(self.history, self.eps, self.patience, window=self.window,
                              blocks=self.blocks, z=self.z, trend_tol=self.trend_tol)  # fmt: skip
        rec.update(self._last)
        latest = None if self.sharpness is None else self.sharpness.latest()
        # the parameters come back every p steps (a limit cycle, or a cycle on a descending
        # loss that issue 24's trend test calls "moving"): say why
        cycling = self._last["kind"] == "limit_cycle" or self._last.get("cycle_trend") is not None
        if cycling and latest is not None:
            rec["edge_of_stability"] = {
                "step": latest["step"],
                "sharpness": latest["sharpness"],
                "two_over_lr": latest["two_over_lr"],
                "above": latest["sharpness"] >= latest["two_over_lr"],
                "alignment": latest["alignment"],
            }
        return True if self.stop and self._last["kind"] == "fixed_point" else None

    def status(self) -> dict[str, Any]:
        """The latest check: ``kind`` ("fixed_point" | "limit_cycle" | "noise_floor" |
        "moving"), ``trend`` (with ``observe``), ``period``
        (1 for a fixed point, p for a cycle, None), ``step``, ``function_residual``,
        ``param_residual`` (layer path → value), ``param_residual_max``,
        ``prediction_change``, ``loss_residual``, ``cycle_residual`` (p → value), ``checks``."""
        if not self.history:
            return {"kind": "moving", "period": None, "step": None, "function_residual": math.nan,
                    "param_residual": {}, "param_residual_max": math.nan,
                    "prediction_change": math.nan, "loss_residual": math.nan,
                    "cycle_residual": {}, "checks": 0}  # fmt: skip
        return {**self.history[-1], "checks": len(self.history)}

    def series(self, name: str) -> list[float]:
        """One residual over all checks, e.g. ``series("function_residual")``."""
        return [r[name] for r in self.history]


class MemberMonitors:
    """``MemberMonitors(monitors, observe=None)``: the `CompletionMonitor` of every member of a
    stack (`tv.stack`), monitor e for member e, as one `train` callback on the stack,
    ``mm(step, stack, losses)``. Each monitor's checks are those it makes of its member alone
    (`tv.unstack`), measured on the stack at once: the parameter and cycle residuals of
    every member from the stack's arrays, the probe outputs from one forward pass of the
    stack (the members' probes stacked, or one shared), and ``observe(stack)`` → each
    member's observables (E × q), which monitors with an ``observe`` need in its place (while
    it runs, ``outputs`` holds the stack's probe outputs of that step, (E, outputs, N)).

    The monitors must agree in what makes a check (``every``, ``max_period``, ``lr``,
    ``predictions``, ``tol``, a probe or none, an ``observe`` or none) and not ask to stop
    training (a monitor cannot stop its member alone); a ValueError says so.
    """

    def __init__(self, monitors: Sequence[CompletionMonitor],
                 observe: Callable[[Any], Any] | None = None) -> None:  # fmt: skip
        self.monitors = list(monitors)
        if not self.monitors or any(m.ring or m.history for m in self.monitors):
            raise ValueError("MemberMonitors takes new CompletionMonitors, one per member")
        if len({(m.every, m.max_period, m.lr, m.predictions, m.tol, m.probe is None,
                 m.observe is None) for m in self.monitors}) > 1:  # fmt: skip
            raise ValueError("MemberMonitors: the monitors differ in every, max_period, lr, "
                             "predictions, tol, or in having a probe or an observe")  # fmt: skip
        if any(m.stop for m in self.monitors):
            raise ValueError("MemberMonitors: a monitor with stop=True would stop every member "
                             "of the stack; give stop=False (or run that member alone)")  # fmt: skip
        if (self.monitors[0].observe is None) != (observe is None):
            raise ValueError("MemberMonitors: give observe(stack) → E × q exactly when the "
                             "monitors have an observe")  # fmt: skip
        self.observe = observe
        first = self.monitors[0]
        probes = [m.probe for m in self.monitors]
        shared = first.probe is None or all(p is first.probe for p in probes)
        self.probe = first.probe if shared else namespace(first.probe).stack(probes)
        self.ring: deque[dict[str, list[Any]]] = deque(maxlen=first.max_period + 1)
        self._f: tuple[int, Any] | None = None  # (step, the stack's outputs on the probe)
        self.outputs: Any = None  # the stack's outputs on the probe at this step (E, out, N)

    def __call__(self, step: int, stack: Any, losses: Sequence[float]) -> bool | None:
        first, E = self.monitors[0], len(self.monitors)
        if len(losses) != E:
            raise ValueError(f"MemberMonitors: {len(losses)} losses for {E} monitors")
        params = first._params(stack)
        self.ring.append(params)
        check, probe = first._due(step)
        f_new = f_old = residuals = observed = None
        if probe:
            f_new = self.outputs = _outputs(stack, self.probe)
            f_old, self._f = _outputs_before(self._f, step), (step, f_new)
        if check:
            residuals = _residuals(list(self.ring), first.lr, first.max_period, f_new, f_old,
                                   first.predictions, first.tol, members=True)  # fmt: skip
            if self.observe is not None:
                with preserved_forward(stack), no_grad():
                    observed = self.observe(stack)
        each = [None] * E if residuals is None else _members(residuals, E)
        for e, monitor in enumerate(self.monitors):
            monitor._step(step, {k: [a[e] for a in v] for k, v in params.items()}, losses[e],
                          None if f_new is None else f_new[e],
                          None if observed is None else observed[e],
                          check, each[e])  # fmt: skip
        return None  # (no monitor stops a stack: see __init__)


def _outputs_before(kept: tuple[int, Any] | None, step: int) -> Any:
    """f_{t-1}(X_p): the probe's outputs of the step before ``step``, from ``kept`` (step,
    outputs) of the last evaluation; None when that was another step."""
    return kept[1] if kept is not None and kept[0] == step - 1 else None


def _outputs(model: Any, probe: Any) -> Any:
    """f(X_p): the model's outputs on the probe, its records left as they were."""
    with preserved_forward(model), no_grad():
        return data(model(probe))
