"""Learning curves of the compensation study (`tinyvec.experiments.compensation`)."""

from __future__ import annotations

import os

import numpy as np


def learning_curves(
    curves: dict[str, np.ndarray], path: str | os.PathLike[str], title: str = ""
) -> None:
    """One PNG: for each label, the median over runs of the training MSE per epoch (log scale)
    with the band between the 25th and 75th percentiles. ``curves[label]`` is (runs, epochs);
    a diverged run (NaN or inf) is left out of the band but counted in the legend.

    >>> import tempfile, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     learning_curves({"plain": np.ones((3, 5))}, f"{d}/c.png", "t")
    ...     os.path.getsize(f"{d}/c.png") > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, runs in curves.items():
        runs = np.asarray(runs, dtype=float)
        ok = runs[np.all(np.isfinite(runs), axis=1)]
        lost = len(runs) - len(ok)
        name = f"{label} ({len(ok)} runs" + (f", {lost} diverged)" if lost else ")")
        if not len(ok):
            continue
        epochs = np.arange(1, ok.shape[1] + 1)
        q25, q50, q75 = np.percentile(ok, [25, 50, 75], axis=0)
        (line,) = ax.plot(epochs, q50, label=name, lw=1.4)
        ax.fill_between(epochs, q25, q75, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training MSE (median, IQR band)")
    ax.set_title(title, fontsize=9)
    if ax.lines:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "every run diverged", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    from PIL import Image

    # 64 colours are plenty for lines and light bands, and keep each file near 40 kB
    Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)
