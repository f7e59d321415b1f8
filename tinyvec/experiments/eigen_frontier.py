"""The degree-2 frontier of the eigen study, like for like (issue 11 item 4, issue 24 item 6):
does the leading degree-2 mode grow as the linear picture predicts?

``python -m tinyvec.experiments.eigen_frontier [--quick] [--out DIR]``

Runs of `tinyvec.experiments.eigen_run` with ``degree_every`` (6000 steps, the K > 1
defaults): seeds 5 and 6 with K = 3, with and without first-layer biases at ±0.5, and seed 5
with K = 4 (also with biases ±0.5 and batch 128). At every logged step
(`tinyvec.analysis.degrees.degree_gains` with the leading degree-2 `Mode`), in that mode's own
(dual) coordinates c over the K outputs:

- measured growth ``⟨Δc, c⟩/‖c‖²`` per step, and the growth rate of ‖c‖ fitted over the late
  steps (≥ 1000): the slope of ln ‖c‖;
- the mode's gain ``g = ⟨Δc, e⟩/‖e‖²`` (e: the mode's part of the step direction E) and its
  gap ``⟨e, c⟩/‖c‖²``; the linear prediction with the mode's own gain, ``g·gap``, and with the
  rate, ``η·gap``.

Files in ``--out``: one folder per run (``degrees.csv`` has the per-step values),
``frontier.json`` and ``frontier-table.md``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.degrees import leading_degree2_mode
from ..analysis.eigen_operator import make_operators
from .common import parse, study_parser
from .eigen_config import Config
from .eigen_run import fmt_complex, run
from .tables import atomic_write, json_ready, write_json

RUNS: dict[str, dict[str, Any]] = {
    "seed 5, K = 3": dict(seed=5, k=3),
    "seed 5, K = 3, bias ±0.5": dict(seed=5, k=3, bias_init=0.5),
    "seed 5, K = 4": dict(seed=5, k=4),
    "seed 5, K = 4, bias ±0.5, r = 128": dict(seed=5, k=4, bias_init=0.5, r=128),
    "seed 6, K = 3": dict(seed=6, k=3),
    "seed 6, K = 3, bias ±0.5": dict(seed=6, k=3, bias_init=0.5),
}
LATE = 1000  # steps from which the late medians and the fitted growth count


def summarise_run(folder: Path, summary: dict[str, Any], lr_of: Any, late: int) -> dict[str, Any]:
    """The late medians and the fitted growth rate of one run's degrees.csv."""
    with (folder / "degrees.csv").open() as fh:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    tail = [r for r in rows if r["step"] >= late] or rows
    col = lambda name: np.array([r[name] for r in tail])  # noqa: E731
    steps, amp = col("step"), col("mode_amplitude")
    ok = amp > 0
    slope = float(np.polyfit(steps[ok], np.log(amp[ok]), 1)[0]) if ok.sum() > 2 else math.nan
    eta = np.array([lr_of(s) for s in steps])
    med = lambda a: float(np.nanmedian(a))  # noqa: E731
    return {
        "share2_start": rows[0]["share_degree2"], "share2_late": med(col("share_degree2")),
        "share2_max": float(np.max(col("share_degree2"))),
        "gain1": med(col("gain_degree1")), "gain2_all": med(col("gain_degree2")),
        "mode_gain": med(col("mode_gain")), "mode_gap": med(col("mode_gap")),
        "mode_growth_step": med(col("mode_growth")),
        "mode_predicted": med(col("mode_predicted")),
        "eta_gap": med(eta * col("mode_gap")),
        "mode_growth_fit": slope,
        "amplitude_start": rows[0]["mode_amplitude"], "amplitude_end": rows[-1]["mode_amplitude"],
        "predicted_sign_agrees": float(np.mean(np.sign(col("mode_predicted"))
                                               == np.sign(col("mode_growth")))),
        "ritz": [fmt_complex(v["real"], abs(v["imag"])) for v in summary["spectrum"]]
        if isinstance(summary.get("spectrum"), list) else None,
        "r2": summary["r2"],
    }  # fmt: skip


def _e(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:+.2e}"


def table(rows: dict[str, dict[str, Any]], mu2: dict[int, str]) -> list[str]:
    lines = [
        "| run | leading degree-2 μ₂ | degree-2 share at 0 / late median (max) | g₁ late | "
        "g₂ (whole degree 2) late | **mode gain g** | mode gap | **predicted g·gap** | η·gap "
        "| **measured growth, median per step** | **fitted growth of ‖c‖ (late)** | sign agrees "
        "| ‖c‖ start → end | R² |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {mu2[r['seed']]} | {r['share2_start']:.2g} / {r['share2_late']:.2g} "
            f"({r['share2_max']:.2g}) | {r['gain1']:.3g} | {r['gain2_all']:.2g} | "
            f"{_e(r['mode_gain'])} | {r['mode_gap']:+.3f} | {_e(r['mode_predicted'])} | "
            f"{_e(r['eta_gap'])} | {_e(r['mode_growth_step'])} | {_e(r['mode_growth_fit'])} | "
            f"{r['predicted_sign_agrees']:.0%} | {r['amplitude_start']:.2g} → "
            f"{r['amplitude_end']:.2g} | {r['r2']:.3f} |"
        )
    return lines


def parser() -> Any:
    return study_parser("python -m tinyvec.experiments.eigen_frontier", __doc__.split("\n\n")[0],
                        out="runs/eigen-frontier", quick="one run of 300 steps")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    warnings.simplefilter("ignore", UserWarning)  # K = 3 splits pairs on these seeds: known
    args = parse(parser(), argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    runs = dict(list(RUNS.items())[:1]) if args.quick else RUNS
    steps, every, late = (300, 25, 100) if args.quick else (6000, 50, LATE)
    rows: dict[str, dict[str, Any]] = {}
    mu2: dict[int, str] = {}
    for name, kw in runs.items():
        c = replace(Config(), steps=steps, degree_every=every, **kw)
        folder = out / name.replace(", ", "-").replace(" ", "").replace("±", "pm")
        s = run(c, folder, progress=False, plots=False)
        mode = leading_degree2_mode(*make_operators(c.h, c.t, c.seed))
        mu2[c.seed] = fmt_complex(mode.mu.real, abs(mode.mu.imag))
        cfg = json.loads((folder / "config.json").read_text())
        decay = (cfg["lr_final"] / cfg["lr"]) ** (1 / max(cfg["steps"] - 1, 1))
        lr_of = lambda step, cfg=cfg, decay=decay: cfg["lr"] * decay**step  # noqa: E731
        rows[name] = {"seed": c.seed, **summarise_run(folder, s, lr_of, late)}
    write_json(out / "frontier.json", json_ready({"runs": rows, "mu2": mu2, "late": late}),
               indent=2)  # fmt: skip
    text = "\n".join(table(rows, mu2)) + "\n"
    atomic_write(out / "frontier-table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
