"""Figures of the analysis toolkit: per-layer time series and layer × step heatmaps of a
`tinyvec.analysis.VectorRecorder`, and the residuals of a `CompletionMonitor`.
matplotlib is imported on first use (the optional ``experiments`` extra)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import pyplot, save, styles

# Figure labels for the recorder's columns (science.md §1), in mathtext.
LABELS = {
    "dA_norm": r"$\|\Delta A^k\|$ (measured)",
    "own_norm": r"$\|\Delta W^k O^{k-1} + \Delta b^k\|$ (own)",
    "inherited_norm": r"$\|W^k \Delta O^{k-1}\|$ (inherited)",
    "second_norm": r"$\|\Delta W^k \Delta O^{k-1}\|$ (second order)",
    "ratio": r"$\|$inherited$\|\,/\,\|$own$\|$",
    "cos_own_inherited": r"$\cos($own, inherited$)$",
    "cos_total_delta": r"$\cos(\Delta A^k, -\delta^k)$",
    "cos_own_delta": r"$\cos($own$, -\delta^k)$",
    "o_norm2": r"mean $\|o_n^{k-1}\|^2$",
    "delta_norm2": r"mean $\|\delta_n^k\|^2$",
    "grad_norm_mean": r"mean per-sample $\|\nabla_{W,b}\,\ell_n\|$",
    "grad_norm_max": r"max per-sample $\|\nabla_{W,b}\,\ell_n\|$",
    "coherence": r"batch coherence of $O^{k-1}$",
    "effective_rank": r"effective rank of $O^{k-1}$",
    "residual": "decomposition residual",
}


def _grid(n: int, ncols: int = 3, size: tuple[float, float] = (4.2, 3.0)) -> tuple[Any, list[Any]]:
    plt = pyplot()
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def layer_series(
    recorder: Any,
    names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    fmt: str = "png",
    dpi: int = 200,
) -> Path:
    """One panel per figure in ``names``, a line per Dense layer k over the measured steps;
    log scale where no value is negative and the positive ones span more than 20× (zeros,
    such as the inherited part of layer 1, are then not drawn)."""
    fig, axes = _grid(len(names), ncols=2 if len(names) == 4 else 3)
    for ax, name in zip(axes, names, strict=True):
        M = recorder.matrix(name)
        for k, (row, style) in enumerate(zip(M, styles(len(M)), strict=True), start=1):
            ax.plot(recorder.steps(name), row, lw=1.2, label=f"$k = {k}$", **style)
        finite = M[np.isfinite(M)]
        positive = finite[finite > 0]
        if positive.size and np.all(finite >= 0) and positive.max() / positive.min() > 20:
            ax.set_yscale("log")
        ax.set_ylabel(LABELS.get(name, name), fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncols=len(labels), title="Dense layer",
               bbox_to_anchor=(0.5, 0.0), frameon=False)  # fmt: skip
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


def layer_heatmap(
    recorder: Any,
    names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    log: Sequence[bool] | None = None,
    fmt: str = "png",
    dpi: int = 200,
) -> Path:
    """One layer × step heatmap per figure in ``names`` (log10 colour scale where ``log``)."""
    plt = pyplot()
    log = [False] * len(names) if log is None else list(log)
    fig, axes = plt.subplots(
        len(names), 1, figsize=(10, 1.2 + 0.45 * len(names) * 4), squeeze=False
    )
    for ax, name, lg in zip(axes[:, 0], names, log, strict=True):
        M = recorder.matrix(name)
        steps = recorder.steps(name)
        shown = np.log10(np.where(M > 0, M, np.nan)) if lg else M
        extent = (steps[0] - 0.5, steps[-1] + 0.5, M.shape[0] + 0.5, 0.5)
        im = ax.imshow(shown, aspect="auto", interpolation="nearest", extent=extent, cmap="viridis")
        ax.set_yticks(range(1, M.shape[0] + 1))
        ax.set_ylabel("layer $k$")
        label = LABELS.get(name, name)
        ax.set_title(label, fontsize=10)
        bar = fig.colorbar(im, ax=ax, pad=0.01)
        bar.set_label(r"$\log_{10}$" if lg else "value")
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


RESIDUALS = (
    ("function_residual", r"function $\|\Delta f(X_p)\| / \|f\|$"),
    ("param_residual_max", r"parameters $\max_k \|\Delta\theta_k\| / (\alpha\|\theta_k\|)$"),
    ("loss_residual", r"loss $|\Delta L| / |L_1|$"),
    ("prediction_change", "share of probe predictions changed"),
)


def completion_plot(
    monitor: Any,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    fmt: str = "png",
    dpi: int = 200,
) -> Path:
    """The residuals of a `CompletionMonitor` over its checks (left) and its period-p cycle
    residuals (right), log scale, with ε and the classification of the last check."""
    plt = pyplot()
    fig, (ax, cx) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    steps = monitor.series("step")
    for (name, label), style in zip(RESIDUALS, styles(len(RESIDUALS)), strict=True):
        values = np.array(monitor.series(name), dtype=float)
        if np.any(values > 0):
            ax.plot(steps, np.where(values > 0, values, np.nan), lw=1.2, label=label, **style)
    cycles = sorted({p for r in monitor.history for p in r["cycle_residual"]})
    for p, style in zip(cycles, styles(len(cycles)), strict=True):
        values = np.array([r["cycle_residual"].get(p, np.nan) for r in monitor.history])
        values = np.where(values > 0, values, np.nan)
        cx.plot(steps, values, lw=1.2, label=f"$p = {p}$", **style)
    s = monitor.status()
    kind = s["kind"] + (f" (period {s['period']})" if s["kind"] == "limit_cycle" else "")
    for a, heading in ((ax, "residuals"),
                       (cx, r"cycle $\|\theta_t - \theta_{t-p}\| / (\alpha\|\theta\|)$")):  # fmt: skip
        a.axhline(
            monitor.eps,
            color="0.3",
            ls=(0, (1, 3)),
            lw=1,
            label=rf"$\varepsilon = {monitor.eps:g}$",
        )
        a.set(yscale="log", xlabel="step", title=heading)
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.18), frameon=False)
    ax.set_ylabel("relative change per check")
    fig.suptitle(title or f"training completion: {kind} at step {s['step']}", fontsize=11)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)
