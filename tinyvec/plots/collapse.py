"""The neural-collapse figure: NC1-NC4 and the train and test errors per epoch, log scale,
one colour per loss."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import pyplot

PANELS = (
    ("NC1", "NC1  Tr(Σ_W Σ_B⁺)/C", ("NC1",)),
    ("NC2_equinorm", "NC2 equinorm (dashed: rows of W)", ("NC2_equinorm", "NC2_equinorm_W")),
    ("NC2_equiangular", "NC2 equiangularity (dashed: W)", ("NC2_equiangular", "NC2_equiangular_W")),
    ("NC3", "NC3  ‖Wᵀ/‖W‖ − M/‖M‖‖²", ("NC3",)),
    ("NC4", "NC4  nearest mean ≠ network", ("NC4",)),
    ("error", "error (solid: train, dashed: test)", ("train_error", "test_error")),
)


def collapse_figure(
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """``tables``: loss name → rows (one per epoch, with ``epoch`` and the metrics). Zeros
    (e.g. NC4 or the train error once they vanish) are not drawn on the log scale."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (_, label, keys) in zip(axes.ravel(), PANELS, strict=True):
        for colour, (loss, rows) in zip(colours, tables.items(), strict=False):
            epochs = np.array([r["epoch"] for r in rows])
            for key, style in zip(keys, ("-", "--"), strict=False):
                values = np.array([r[key] for r in rows], dtype=float)
                ax.plot(epochs, np.where(values > 0, values, np.nan), style, color=colour, lw=1.2,
                        label=loss if style == "-" else None)  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlim(0, max(r["epoch"] for rows in tables.values() for r in rows))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
