"""The report of the neural-collapse study (`tinyvec.experiments.collapse`): the acceptance
check (each NC metric should fall at least tenfold from epoch 1 to the last epoch), the
CSV tables, the figure and summary.md of one seed's run, and summary.md of a ``--seeds``
sweep.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .flags import seeds_name
from .tables import atomic_write

# the metrics of the acceptance check (`tinyvec.analysis.neural_collapse`; science.md §5)
METRICS = ("NC1", "NC2_equinorm", "NC2_equiangular", "NC3", "NC4")


def acceptance(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float, float]]:
    """Per metric: (value after epoch 1, value after the last epoch, fall factor first / last)."""
    first, last = rows[1], rows[-1]
    out = {}
    for key in (*METRICS, "NC2_equinorm_W", "NC2_equiangular_W"):
        fall = first[key] / last[key] if last[key] > 0 else float("inf")
        out[key] = (first[key], last[key], fall)
    return out


def write(
    tables: dict[str, list[dict[str, Any]]], config: dict[str, Any], out: Path,
    figures: dict[str, Any] | None = None,
) -> list[Path]:  # fmt: skip
    """CSV tables, the figure (unless ``figures`` is None: the format and dpi) and
    summary.md of one seed's run in folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for loss, rows in tables.items():
        path = out / f"collapse_{loss}.csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        paths.append(path)
    if figures is not None:
        from ..plots.collapse import collapse_figure

        title = "neural collapse on digits (log scale: zeros are not drawn)"
        paths.append(collapse_figure(tables, out / "collapse", title=title, **figures))
    lines = [
        "# Neural collapse on the digits data set",
        "",
        f"ReLU MLPs 64 → {config['width']} → … → {config['width']} → 10 (hidden layers below) "
        "on "
        f"{config['n_train']} {'class-balanced ' if config['balanced'] else ''}training and "
        f"{config['n_test']} test images "
        f"({'standardised' if config['standardize'] else 'pixels / 16'}), batch "
        f"{config['batch']}, SGD with momentum 0.9 (gradients clipped to norm 1), weight decay on "
        "the last Dense layer(s) only, "
        f"{config['epochs']} epochs (step size / 10 at half and at three quarters), seed "
        f"{config['seed']}.",
        "",
        "| loss | hidden layers | step size | weight decay | decayed layers | final train error "
        "| final test error | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for loss, rows in tables.items():
        c = config["losses"][loss]
        lines.append(f"| {loss} | {c['depth']} | {c['lr']:g} | {c['wd']:g} | "
                     f"last {c['decay_layers']} | "
                     f"{rows[-1]['train_error']:.4f} | {rows[-1]['test_error']:.4f} | "
                     f"{c['seconds']:.0f} s |")  # fmt: skip
    zero = {
        loss: next((r["epoch"] for r in rows if r["train_error"] == 0), None)
        for loss, rows in tables.items()
    }
    first_zero = ", ".join(f"{loss} {e if e is not None else 'never'}" for loss, e in zero.items())
    lines += ["", f"First epoch with zero training error: {first_zero}", ""]
    lines += [
        "Acceptance: every metric (NC1 with the /C; NC4 is a fraction of samples) should fall "
        "at least tenfold from epoch 1 to the last epoch. The `_W` rows (the same measures for the "
        "rows of W) are reported, not part of the check.",
        "",
        "| loss | metric | epoch 1 | last epoch | fall | ≥ 10× |",
        "|---|---|---|---|---|---|",
    ]
    for loss, rows in tables.items():
        for key, (a, b, fall) in acceptance(rows).items():
            ok = ("yes" if fall >= 10 else "**no**") if key in METRICS else "(not checked)"
            lines.append(f"| {loss} | {key} | {a:.3g} | {b:.3g} | {fall:.3g}× | {ok} |")
    lines += [
        "",
        "Effective rank of the centred class means M (9 for a simplex ETF of 10 classes), epoch 1 "
        "→ last: "
        + ", ".join(
            f"{loss} {rows[1]['rank_M']:.2f} → {rows[-1]['rank_M']:.2f}"
            for loss, rows in tables.items()
        ),
        "",
    ]
    if figures is not None:
        lines += [f"![neural collapse](collapse.{figures['fmt']})", ""]
    (out / "summary.md").write_text("\n".join(lines))
    paths.append(out / "summary.md")
    return paths


def write_seeds(
    runs: list[dict[str, Any]], base: dict[str, Any], seeds: list[int], out: Path,
    figures: dict[str, Any] | None,
) -> None:  # fmt: skip
    """summary.md of a ``--seeds`` sweep in ``out``: per loss and metric the fall from epoch 1
    to the last epoch over the seeds (`acceptance`), the final errors, and (unless
    ``figures`` is None) the figure of the median over the seeds."""
    lines = [
        f"# Neural collapse on digits over seeds {seeds_name(seeds)}",
        "",
        f"{len(runs)} seeds, {base['epochs']} epochs each (settings: config.json); the "
        "fall of each metric from epoch 1 to the last epoch, per seed.",
        "",
        "| loss | metric | median fall | min | max | seeds ≥ 10× |",
        "|---|---|---|---|---|---|",
    ]
    for loss in base["losses"]:
        for metric in METRICS:
            falls = np.array([acceptance(r["tables"][loss])[metric][2] for r in runs])
            lines.append(f"| {loss} | {metric} | {np.median(falls):.3g}× | "
                         f"{falls.min():.3g}× | {falls.max():.3g}× | "
                         f"{int(np.sum(falls >= 10))}/{len(falls)} |")  # fmt: skip
    lines += ["", "| loss | final train error (mean ± std) | final test error |",
              "|---|---|---|"]  # fmt: skip
    for loss in base["losses"]:
        tr = [r["tables"][loss][-1]["train_error"] for r in runs]
        te = [r["tables"][loss][-1]["test_error"] for r in runs]
        lines.append(f"| {loss} | {np.mean(tr):.4f} ± {np.std(tr):.4f} | "
                     f"{np.mean(te):.4f} ± {np.std(te):.4f} |")  # fmt: skip
    if figures is not None:
        from ..plots.collapse import collapse_figure

        median = {loss: [{k: float(np.median([r["tables"][loss][e][k] for r in runs]))
                          for k in runs[0]["tables"][loss][e]}
                         for e in range(len(runs[0]["tables"][loss]))]
                  for loss in base["losses"]}  # fmt: skip
        title = f"neural collapse on digits, median over seeds {seeds_name(seeds)}"
        path = collapse_figure(median, out / "collapse", title=title, **figures)
        lines += ["", f"![median over seeds]({path.name})"]
    atomic_write(out / "summary.md", "\n".join(lines) + "\n")
