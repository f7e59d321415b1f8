"""Learning curves of the compensation study (`tinyvec.experiments.compensation`)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import pyplot, save, styles

MAX_LINES = 6  # per panel: more lines than this no longer tell apart


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
    and line style; a panel of more than six lines is an error (split it).

    >>> import tempfile, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = learning_curves({"a": {"plain": np.ones((3, 5))}}, f"{d}/c.png", "t")
    ...     p.stat().st_size > 0
    True
    """
    for name, curves in panels.items():
        if len(curves) > MAX_LINES:
            raise ValueError(f"panel {name!r} has {len(curves)} lines; split it (≤ {MAX_LINES})")
    plt = pyplot()
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows), squeeze=False,
                             sharey=True)  # fmt: skip
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, curves) in zip(axes.ravel(), panels.items(), strict=False):
        for (label, runs), style in zip(curves.items(), styles(len(curves)), strict=True):
            runs = np.asarray(runs, dtype=float)
            ok = runs[np.all(np.isfinite(runs), axis=1)]
            lost = len(runs) - len(ok)
            text = f"{label} ({len(ok)} runs" + (f", {lost} diverged)" if lost else ")")
            if not len(ok):
                ax.plot([], [], label=text, **style)
                continue
            epochs = np.arange(1, ok.shape[1] + 1)
            q25, q50, q75 = np.percentile(ok, [25, 50, 75], axis=0)
            ax.plot(epochs, q50, label=text, lw=1.4, **style)
            ax.fill_between(epochs, q25, q75, color=style["color"], alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    for ax in axes[:, 0]:
        ax.set_ylabel("training MSE (median, IQR band)")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)
