"""Plots (matplotlib, an optional extra: pip install "tinyvec-autograd[experiments]"), one module
per study, and what they share: the Agg backend, the line styles and `save`.

Every line of a panel differs from the others in colour and in line style (`STYLES`), so a
figure reads in grey and for colour-blind readers; figures are saved as PNG (200 dpi by
default), PDF or SVG, without colour reduction.
"""

from __future__ import annotations

import os
from itertools import cycle, islice
from pathlib import Path
from typing import Any

# Okabe & Ito's colour-blind-safe palette, paired with line styles that differ as well
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))


def styles(n: int) -> list[dict[str, Any]]:
    """``n`` (colour, line style) pairs, all different from one another.

    >>> s = styles(3)
    >>> len({x["color"] for x in s}), len({str(x["ls"]) for x in s})
    (3, 3)
    """
    return [
        {"color": c, "ls": d}
        for c, d in islice(zip(cycle(COLOURS), cycle(DASHES), strict=False), n)
    ]


def pyplot() -> Any:
    """matplotlib.pyplot with the file-only Agg backend."""
    try:
        import matplotlib
    except ImportError as e:
        raise RuntimeError(
            'plots need matplotlib: pip install "tinyvec-autograd[experiments]"'
        ) from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | os.PathLike[str], fmt: str = "png", dpi: int = 200) -> Path:
    """Save ``fig`` as ``path`` with the suffix ``fmt`` (png, pdf or svg) and close it."""
    path = Path(path).with_suffix("." + fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return path
