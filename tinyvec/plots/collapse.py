"""The neural-collapse figure: NC1-NC4 and the train and test errors per epoch, log scale.
One encoding for the whole figure: the colour is the loss (the same in every panel), the line
style what is measured (solid: the class means, or the training set; dashed: the rows of W, or
the test set)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import COLOURS, DASHES, pyplot, save

# (panel, y label, columns drawn, their names in the legend)
PANELS = (
    ("NC1", r"NC1  $\mathrm{Tr}(\Sigma_W \Sigma_B^{+}) / C$", ("NC1",), ("",)),
    ("NC2_equinorm", "NC2 equinorm", ("NC2_equinorm", "NC2_equinorm_W"), ("means", "rows of W")),
    ("NC2_equiangular", "NC2 equiangularity", ("NC2_equiangular", "NC2_equiangular_W"),
     ("means", "rows of W")),
    ("NC3", r"NC3  $\|W^T/\|W\| - M/\|M\|\|^2$", ("NC3",), ("",)),
    ("NC4", "NC4  share: nearest mean ≠ network", ("NC4",), ("",)),
    ("error", "classification error", ("train_error", "test_error"), ("train", "test")),
)  # fmt: skip


def collapse_figure(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    fmt: str = "png",
    dpi: int = 200,
) -> Path:
    """``tables``: loss name → rows (one per epoch, with ``epoch`` and the metrics). Zeros
    (e.g. NC4 or the train error once they vanish) are not drawn on the log scale."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    colour = {loss: COLOURS[i % len(COLOURS)] for i, loss in enumerate(tables)}
    for ax, (_, ylabel, keys, names) in zip(axes.ravel(), PANELS, strict=True):
        for loss, rows in tables.items():
            epochs = np.array([r["epoch"] for r in rows])
            for key, name, dash in zip(keys, names, DASHES, strict=False):
                values = np.array([r[key] for r in rows], dtype=float)
                label = f"{loss}, {name}" if name else loss
                ax.plot(epochs, np.where(values > 0, values, np.nan), lw=1.3, label=label,
                        color=colour[loss], ls=dash)  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlim(0, max(r["epoch"] for rows in tables.values() for r in rows))
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2,
                  frameon=False)  # fmt: skip
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)
