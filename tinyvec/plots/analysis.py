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

# Figure labels for the recorder's columns (science.md §1).
LABELS = {
    "dA_norm": "‖ΔA^k‖ (measured)",
    "own_norm": "‖ΔW^k O^{k-1} + Δb^k‖ (own)",
    "inherited_norm": "‖W^k ΔO^{k-1}‖ (inherited)",
    "second_norm": "‖ΔW^k ΔO^{k-1}‖ (second order)",
    "ratio": "‖inherited‖ / ‖own‖",
    "cos_own_inherited": "cos(own, inherited)",
    "cos_total_delta": "cos(ΔA^k, −δ^k)",
    "cos_own_delta": "cos(own, −δ^k)",
    "o_norm2": "mean ‖o_n^{k-1}‖²",
    "delta_norm2": "mean ‖δ_n^k‖²",
    "grad_norm_mean": "mean per-sample ‖∇_{W,b} ℓ_n‖",
    "grad_norm_max": "max per-sample ‖∇_{W,b} ℓ_n‖",
    "coherence": "batch coherence of O^{k-1}",
    "effective_rank": "effective rank of O^{k-1}",
    "residual": "decomposition residual",
}


def pyplot() -> Any:
    """matplotlib.pyplot with the file-only Agg backend."""
    try:
        import matplotlib
    except ImportError as e:
        raise RuntimeError('plots need matplotlib: pip install "tinyvec[experiments]"') from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


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
    recorder: Any, names: Sequence[str], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """One panel per figure in ``names``, a line per Dense layer k over the measured steps;
    log scale where no value is negative and the positive ones span more than 20× (zeros,
    such as the inherited part of layer 1, are then not drawn)."""
    fig, axes = _grid(len(names), ncols=2 if len(names) == 4 else 3)
    for ax, name in zip(axes, names, strict=True):
        M = recorder.matrix(name)
        for k, row in enumerate(M, start=1):
            ax.plot(recorder.steps(name), row, lw=1, label=f"k = {k}")
        finite = M[np.isfinite(M)]
        positive = finite[finite > 0]
        if positive.size and np.all(finite >= 0) and positive.max() / positive.min() > 20:
            ax.set_yscale("log")
        ax.set_title(LABELS.get(name, name), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def layer_heatmap(
    recorder: Any,
    names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    log: Sequence[bool] | None = None,
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
        ax.set_ylabel("layer k")
        ax.set_title(("log10 " if lg else "") + LABELS.get(name, name), fontsize=10)
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    return _save(fig, path)


def completion_plot(
    monitor: Any, path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """The residuals of a `CompletionMonitor` over its checks, log scale, with ε and the
    classification of the last check."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = monitor.series("step")
    for name, label in (
        ("function_residual", "function ‖Δf(X_p)‖/‖f‖"),
        ("param_residual_max", "parameters max_k ‖Δθ_k‖/(α‖θ_k‖)"),
        ("loss_residual", "loss |ΔL|/|L_1|"),
        ("prediction_change", "fraction of probe predictions changed"),
    ):
        values = np.array(monitor.series(name), dtype=float)
        if np.any(values > 0):
            ax.plot(steps, np.where(values > 0, values, np.nan), lw=1, label=label)
    cycles = sorted({p for r in monitor.history for p in r["cycle_residual"]})
    for p in cycles:
        values = np.array([r["cycle_residual"].get(p, np.nan) for r in monitor.history])
        ax.plot(steps, values, lw=0.8, ls=":", label=f"cycle p={p} ‖θ_t−θ_(t−p)‖/(α‖θ‖)")
    ax.axhline(monitor.eps, color="k", ls="--", lw=0.8, label=f"ε = {monitor.eps:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    s = monitor.status()
    kind = s["kind"] + (f" (period {s['period']})" if s["kind"] == "limit_cycle" else "")
    ax.set_title(title or f"training completion: {kind} at step {s['step']}", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
