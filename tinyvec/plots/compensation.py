"""Learning curves of the compensation study (`tinyvec.experiments.compensation`), and the
study's figures drawn from its runs (`write_curves`, `write_eta_figures`)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import pyplot, save, styles

MAX_LINES = 6  # per panel: more lines than this no longer tell apart
POINTS = 200  # a longer curve is drawn as block medians: per-sample SGD jitters every epoch


def blocks(curves: np.ndarray, points: int = POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values): ``curves`` (runs × epochs) as the median of each block of epochs
    when there are more than ``points`` epochs, each block drawn at its last epoch.

    >>> e, v = blocks(np.arange(1.0, 9.0)[None, :], points=4)
    >>> e.tolist(), v.tolist()
    ([2, 4, 6, 8], [[1.5, 3.5, 5.5, 7.5]])
    """
    E = curves.shape[1]
    size = max(1, -(-E // points))
    n = E // size
    values = np.median(curves[:, : n * size].reshape(len(curves), n, size), axis=2)
    return np.arange(size, n * size + 1, size), values


def _grid(panels: Mapping[str, Mapping[str, object]], sharey: bool = False) -> tuple:
    """(figure, axes): a grid of up to three panels per row for ``panels`` (title → its
    lines), the cells left over hidden; a panel of more than `MAX_LINES` lines is refused."""
    for name, lines in panels.items():
        if len(lines) > MAX_LINES:
            raise ValueError(f"panel {name!r} has {len(lines)} lines; split it (≤ {MAX_LINES})")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = pyplot().subplots(
        nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows), squeeze=False, sharey=sharey
    )
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    return fig, axes


def _finish(fig: Any, axes: Any, ylabel: str, title: str, path: Any, fmt: str, dpi: int) -> Path:
    """The y label on the first column, the title, the layout, and the file written."""
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


def learning_curves(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    path: str | os.PathLike[str],
    title: str = "",
    *,
    fmt: str = "png",
    dpi: int = 200,
) -> Path:
    """One figure, one panel per entry of ``panels`` (title → curves): for each label, the
    median over runs of the training MSE per epoch (log scale) with the band between the 25th
    and 75th percentiles. ``curves[label]`` is (runs, epochs); a diverged run (NaN or inf) is
    left out of the band but counted in the legend. Every line of a panel has its own colour
    and line style; a panel of more than six lines is an error (split it). More than 200
    epochs are drawn as block medians (`blocks`).

    >>> import tempfile, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = learning_curves({"a": {"plain": np.ones((3, 5))}}, f"{d}/c.png", "t")
    ...     p.stat().st_size > 0
    True
    """
    fig, axes = _grid(panels, sharey=True)
    for ax, (name, curves) in zip(axes.ravel(), panels.items(), strict=False):
        for (label, runs), style in zip(curves.items(), styles(len(curves)), strict=True):
            runs = np.asarray(runs, dtype=float)
            ok = runs[np.all(np.isfinite(runs), axis=1)]
            lost = len(runs) - len(ok)
            text = f"{label} ({len(ok)} runs" + (f", {lost} diverged)" if lost else ")")
            if not len(ok):
                ax.plot([], [], label=text, **style)
                continue
            epochs, smooth = blocks(ok)
            q25, q50, q75 = np.percentile(smooth, [25, 50, 75], axis=0)
            ax.plot(epochs, q50, label=text, lw=1.4, **style)
            ax.fill_between(epochs, q25, q75, color=style["color"], alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return _finish(fig, axes, "training MSE (median, IQR band)", title, path, fmt, dpi)


def error_vs_eta(
    panels: Mapping[str, Mapping[str, Mapping[float, list[float]]]],
    path: str | os.PathLike[str],
    title: str = "",
    *,
    fmt: str = "png",
    dpi: int = 200,
) -> Path:
    """One panel per entry of ``panels`` (title → rule → η → errors over seeds, NaN for a
    diverged seed): the median error over the seeds that did not diverge, against η on log
    axes, with every seed as a dot; a step size where some seed diverged is ringed, and one
    where every seed diverged (no error to draw) is a × at the bottom of the panel.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = error_vs_eta({"sin": {"plain": {0.1: [1.0, 2.0], 0.2: [float("nan"), 3.0]}}},
    ...                      f"{d}/e.png")
    ...     p.stat().st_size > 0
    True
    """
    fig, axes = _grid(panels)
    markers = ("o", "s", "^", "D", "v", "P")
    for ax, (name, rules) in zip(axes.ravel(), panels.items(), strict=False):
        for j, ((label, by_eta), style, marker) in enumerate(
            zip(rules.items(), styles(len(rules)), markers, strict=False)
        ):
            etas = sorted(by_eta)
            med = [np.median([v for v in by_eta[e] if math.isfinite(v)])
                   if any(math.isfinite(v) for v in by_eta[e]) else np.nan for e in etas]  # fmt: skip
            ax.plot(etas, med, lw=1.4, marker=marker, ms=5, label=label, **style)
            for e in etas:
                ok = [v for v in by_eta[e] if math.isfinite(v)]
                ax.scatter([e] * len(ok), ok, s=8, color=style["color"], alpha=0.45, lw=0)
                if len(ok) < len(by_eta[e]) and ok:
                    ax.scatter([e], [np.median(ok)], s=110, facecolors="none",
                               edgecolors=style["color"], lw=1.1)  # fmt: skip
                elif not ok:  # every seed diverged: mark the gap in the line, one row per rule
                    ax.scatter([e], [0.05 + 0.08 * j], s=60, marker="x", color=style["color"],
                               lw=1.8, transform=ax.get_xaxis_transform())  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel=r"step size $\eta$", title=name)
        # every η on the axis, those where all seeds diverged (drawn off the data) included
        etas = [e for by_eta in rules.values() for e in by_eta]
        ax.set_xlim(min(etas) / 1.3, max(etas) * 1.3)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    return _finish(
        fig, axes, "training MSE (mean of the last 10% of epochs)", title, path, fmt, dpi
    )


# --- the study's figures from its runs (each run a dict: its spec, its results, its curve) ----
def label(row: dict[str, Any]) -> str:
    """A run's rule in words: ``plain``, ``κ=0.2 exact``, ``κ=0.2 first_order + ortho ε=0.1``."""
    name = "plain" if row["kappa"] == 0 else f"κ={row['kappa']:g} {row['variant']}"
    return name + (f" + ortho ε={row['eps']:g}" if row["ortho"] else "")


def panel(r: dict[str, Any]) -> str:
    """The panel of a run's learning curve: its κ variant, or orthogonalization and its ε
    (plain backprop is drawn in every panel, as the reference)."""
    if r["ortho"]:
        return f"orthogonalization, ε = {r['eps']:g}"
    return "κ, exact ΔO" if r["variant"] == "exact" else "κ, first-order ΔO"


def write_curves(out: Path, results: list[dict[str, Any]], figures: dict[str, Any]) -> list[str]:
    """A figure per task, activation and mode: a panel per step size and κ variant or
    orthogonalization ε, with plain backprop in each, at most six lines per panel."""
    names = []
    for task, act, mode in sorted({(r["task"], r["activation"], r["mode"]) for r in results}):
        sel = [r for r in results if (r["task"], r["activation"], r["mode"]) == (task, act, mode)]
        shown = [r for r in sel if r["width"] == sel[0]["width"] and r["depth"] == sel[0]["depth"]]
        panels: dict[str, dict[str, np.ndarray]] = {}
        for eta in sorted({r["eta"] for r in shown}):
            at = [r for r in shown if r["eta"] == eta]
            plain = [r["curve"] for r in at if r["kappa"] == 0 and not r["ortho"]]
            groups: dict[str, dict[str, list[list[float]]]] = {}
            for r in sorted(
                at, key=lambda r: (r["ortho"], str(r["eps"]), r["kappa"], r["variant"])
            ):
                if r["kappa"] or r["ortho"]:
                    groups.setdefault(panel(r), {}).setdefault(label(r), []).append(r["curve"])
            for name, curves in (groups or {"plain backprop": {}}).items():
                items = list(curves.items())
                step = MAX_LINES - 1
                chunks = [items[i : i + step] for i in range(0, len(items), step)] or [[]]
                for i, chunk in enumerate(chunks):
                    part = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
                    panels[f"{name}, η = {eta:g}{part}"] = {
                        "plain": np.array(plain),
                        **{k: np.array(v) for k, v in chunk},
                    }
        title = (f"{task}, {act} {sel[0]['width']}×{sel[0]['depth']}, "
                 f"{'per-sample' if mode == 'sample' else 'mini-batch'} SGD")  # fmt: skip
        path = learning_curves(panels, out / f"curves_{task}_{act}_{mode}", title, **figures)
        names.append(path.name)
    names += write_eta_figures(out, results, figures)
    return names


def write_eta_figures(
    out: Path, results: list[dict[str, Any]], figures: dict[str, Any]
) -> list[str]:
    """A figure per activation, network and mode with two step sizes or more: the error at
    convergence against η, a panel per task (rules without orthogonalization)."""
    names = []
    for act, width, depth, mode in sorted({(r["activation"], r["width"], r["depth"], r["mode"])
                                           for r in results}):  # fmt: skip
        sel = [r for r in results if (r["activation"], r["width"], r["depth"], r["mode"])
               == (act, width, depth, mode) and not r["ortho"]]  # fmt: skip
        if len({r["eta"] for r in sel}) < 2:
            continue
        panels: dict[str, dict[str, dict[float, list[float]]]] = {}
        for task in sorted({r["task"] for r in sel}):
            rules: dict[str, dict[float, list[float]]] = {}
            for r in sorted(sel, key=lambda r: (r["kappa"], r["variant"], r["seed_index"])):
                if r["task"] == task:
                    rules.setdefault(label(r), {}).setdefault(r["eta"], []).append(r["tail"])
            items = list(rules.items())
            for i in range(0, len(items), MAX_LINES):
                panels[task + (f" ({i // MAX_LINES + 1})" if len(items) > MAX_LINES else "")] = (
                    dict(items[i : i + MAX_LINES])
                )
        title = (f"error at convergence against the step size: {act} {width}×{depth}, "
                 f"{'per-sample' if mode == 'sample' else 'mini-batch'} SGD\n(lines: median "
                 "over seeds; dots: seeds; rings: some seed diverged; × at the bottom: every seed "
                 "diverged)")  # fmt: skip
        path = error_vs_eta(panels, out / f"eta_{act}_{mode}", title, **figures)
        names.append(path.name)
    return names
