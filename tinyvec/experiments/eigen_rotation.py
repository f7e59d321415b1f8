"""The "two solutions" of the eigen study (science.md §4, issue 11 item 3, issue 24 item 4): one
output turns in the plane of a complex pair, with checks that can fail.

``python -m tinyvec.experiments.eigen_rotation [--seeds 3,5,6] [--lrs 0.05 0.1 0.2] [--quick]
[--out DIR] [--no-plots]``

For each seed whose degree-1 eigenvalue of largest real part is a complex pair μ = α + iβ and
each rate η, one run of `tinyvec.experiments.eigen_run` with one output (3000 steps, the
last ``tail`` logged at every step). What is measured on the last steps
(`tinyvec.analysis.oscillation.rotation`):

- the angle of the linear part in the pair's plane: ω and the period 2π/|ω|;
- the **in-plane cosine** of the linear part (it would fall if the function left the plane);
- **λ̂ against the Rayleigh quotient** ρ(v) = vᵀ(A+B)ᵀv/vᵀv of the measured linear part v:
  their correlation and median distance (they would differ if the output were not linear);
- **the half-period swing**: the period of λ̂ fitted on λ̂ alone, against half the turn
  period from the angle (f and −f are one solution, so λ̂ should swing twice per turn); and
  λ̂'s range against the range of ρ over the plane.

With ``--k2`` (default on), the K = 2 run of the first seed and rate 0.1 is made too, for the
figure: the pair's plane settles where its line does not.

Files in ``--out``: one folder per run, ``rotation.md``, ``rotation.json`` and, with plots,
``two-solutions-seed-S.png``.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from .common import figure_kw, parse, study_parser
from .eigen_config import QUICK, Config
from .eigen_run import run
from .flags import positive_float, seed_list
from .tables import atomic_write, json_ready, write_json


def _f(v: float, digits: int = 3) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The Markdown table of the runs' summaries."""
    lines = [
        "| seed | μ (degree 1, largest Re) | η | R² | cos(plane) mean (min) | ω (rad/step) "
        "| turn period | corr(λ̂, ρ) | median abs(λ̂ − ρ) | λ̂ swing period | half turn "
        "| swing / half turn | λ̂ 5–95 % | ρ range in the plane |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rot, mu = r["rotation"], r["rotation"]["mu"]
        lam_lo, lam_hi = rot["lambda_range"]
        rho_lo, rho_hi = rot["plane_rayleigh_range"]
        lines.append(
            f"| {r['seed']} | {mu[0]:.3f} ± {abs(mu[1]):.3f}i | {r['lr']:g} | {r['r2']:.3f} | "
            f"{rot['plane_cosine']:.3f} ({rot['plane_cosine_min']:.3f}) | "
            f"{rot['angular_velocity']:+.4f} | {rot['period_steps']:.0f} | "
            f"{rot['lambda_rayleigh_correlation']:.3f} | {rot['lambda_rayleigh_mad']:.3f} | "
            f"{rot['swing_period_steps']:.1f} | {rot['half_period_steps']:.1f} | "
            f"{rot['swing_ratio']:.2f} | {lam_lo:.3f}–{lam_hi:.3f} | {rho_lo:.3f}–{rho_hi:.3f} |"
        )
    return lines


def parser() -> Any:
    p = study_parser("python -m tinyvec.experiments.eigen_rotation", __doc__.split("\n\n")[0],
                     out="runs/eigen-rotation", quick="300 steps, seed 3, one rate")  # fmt: skip
    p.add_argument("--seeds", type=seed_list, default=None, help="seeds (default 3,5,6)")
    p.add_argument("--lrs", type=positive_float, nargs="+", help="rates (default 0.05 0.1 0.2)")
    p.add_argument("--no-k2", dest="k2", action="store_false", help="skip the K = 2 run")
    return p


def main(argv: list[str] | None = None) -> int:
    warnings.simplefilter("ignore", UserWarning)  # K = 1 splits the pair: that is the point
    p = parser()
    args = parse(p, argv)
    args.seeds = args.seeds or ([3] if args.quick else [3, 5, 6])
    args.lrs = args.lrs or ([0.1] if args.quick else [0.05, 0.1, 0.2])
    base = replace(Config(), **QUICK) if args.quick else Config()  # type: ignore[arg-type]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for lr in args.lrs:
            s = run(replace(base, seed=seed, lr=lr), out / f"seed-{seed}-lr-{lr:g}",
                    progress=False, plots=False)  # fmt: skip
            if s["rotation"] is None:
                print(f"seed {seed}: its degree-1 end is real, no rotation; skipped")
                continue
            rows.append({"seed": seed, "lr": lr, "r2": s["r2"], "rotation": s["rotation"]})
    figure = None
    if args.k2 and rows:
        seed, lr = rows[0]["seed"], 0.1
        two = out / f"seed-{seed}-k2"
        run(replace(base, seed=seed, k=2), two, progress=False, plots=False)
        if not args.no_plots:
            from ..plots.eigen import plot_two_solutions

            figure = plot_two_solutions(out / f"seed-{seed}-lr-{lr:g}", two,
                                        out / f"two-solutions-seed-{seed}",
                                        **figure_kw(args))  # fmt: skip
    write_json(out / "rotation.json", json_ready({"runs": rows}), indent=2)
    text = "\n".join(table(rows)) + "\n"
    if figure is not None:
        text += f"\n![K = 1 turns, K = 2 settles]({Path(figure).name})\n"
    atomic_write(out / "rotation-table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
