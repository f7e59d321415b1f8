"""The eigen study on eight seeds per setting (issue 24 regenerates the table that
``docs/results/eigen/settings.md`` held): t ∈ {0.5, 1, 1.5, 3}, momentum, Adam, a decaying rate.

``python -m tinyvec.experiments.eigen_settings [--quick] [--out DIR] [--jobs N]``

Each setting is ``tinyvec eigen --seeds 0-7 --no-plots`` with its options (one sweep folder
each, resumable); per setting the table counts, over the seeds: R² ≥ 0.99 on the probe;
λ̂ < 0; λ̂ within 2 % of the degree-1 eigenvalue at the end of the real axis on λ̂'s side
(``extreme_degree1``: where R² ascent with fixed targets settles, `tinyvec.analysis.ritz`);
that eigenvalue a complex pair; the linear part turning in its plane (a period < 1000 steps
over the tail); the completion monitor's verdict at the last step (fixed point / limit cycle /
noise floor / moving); the median effective rank of the skip matrices (runs with R² ≥ 0.99 /
the others) and the median relative differences ‖W_i − W_j‖_F/‖W‖ (√2 for independent
matrices, 0 for equal ones). Files: ``settings-table.md``, ``settings.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from .common import parse, study_parser
from .flags import positive_int
from .tables import atomic_write, write_json

SETTINGS: dict[str, list[str]] = {
    "t = 0.5": ["--t", "0.5"],
    "t = 1.0 (default)": [],
    "t = 1.5": ["--t", "1.5"],
    "t = 3.0": ["--t", "3"],
    "t = 1.0, --opt momentum --lr 0.01": ["--opt", "momentum", "--lr", "0.01"],
    "t = 1.0, --opt adam --lr 3e-4": ["--opt", "adam", "--lr", "3e-4"],
    "t = 1.0, --opt adam --lr 3e-4 --steps 10000": ["--opt", "adam", "--lr", "3e-4", "--steps",
                                                     "10000"],
    "t = 1.0, --lr-final 5e-4": ["--lr-final", "5e-4"],
}  # fmt: skip
KINDS = ("fixed_point", "limit_cycle", "noise_floor", "moving")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "–"


def row(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The table's cells for one setting's summaries (one per seed)."""
    n = len(summaries)
    converged = [s["r2"] >= 0.99 for s in summaries]
    ends = [s["extreme_degree1"] for s in summaries]
    within = sum(e["distance"] <= 0.02 * e["modulus"] for e in ends)
    rotating = sum(s["rotation"] is not None and s["rotation"]["period_steps"] < 1000
                   for s in summaries)  # fmt: skip
    kinds = [s["completion"]["kind"] for s in summaries]
    erank = [statistics.mean(s["skip_weights"][f"erank_{c}"] for c in "rgb") for s in summaries]
    diffs = {p: statistics.median(s["skip_weights"][f"diff_{p}"] for s in summaries)
             for p in ("rg", "gb", "rb")}  # fmt: skip
    return {
        "seeds": n, "r2_099": sum(converged), "negative": sum(s["lambda"] < 0 for s in summaries),
        "within_2pc": within, "complex_end": sum(not e["is_real"] for e in ends),
        "rotating": rotating, "monitor": {k: kinds.count(k) for k in KINDS},
        "erank_converged": _median([e for e, c in zip(erank, converged, strict=True) if c]),
        "erank_other": _median([e for e, c in zip(erank, converged, strict=True) if not c]),
        "diffs": diffs,
    }  # fmt: skip


def table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| setting (`tinyvec eigen --seeds 0-7 ...`) | R² ≥ 0.99 | λ̂ < 0 | λ̂ within 2 % of the "
        "degree-1 μ at the end of the real axis | that μ is a complex pair | rotating (tail) | "
        "monitor: fixed / cycle / noise floor / moving | erank (conv. / not) | diffs r-g, g-b, "
        "r-b (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        n, m, d = r["seeds"], r["monitor"], r["diffs"]
        lines.append(
            f"| {name} | {r['r2_099']}/{n} | {r['negative']} | {r['within_2pc']}/{n} | "
            f"{r['complex_end']}/{n} | {r['rotating']}/{n} | "
            f"{' / '.join(str(m[k]) for k in KINDS)} | {r['erank_converged']} / "
            f"{r['erank_other']} | {d['rg']:.2f}, {d['gb']:.2f}, {d['rb']:.2f} |"
        )
    return lines


def parser() -> Any:
    p = study_parser("python -m tinyvec.experiments.eigen_settings", __doc__.split("\n\n")[0],
                     out="runs/eigen-settings",
                     quick="two settings, two seeds, 300 steps")  # fmt: skip
    p.add_argument("--jobs", type=positive_int, default=2, help="worker processes (2)")
    return p


def main(argv: list[str] | None = None) -> int:
    from . import eigen

    args = parse(parser(), argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(list(SETTINGS.items())[:2]) if args.quick else SETTINGS
    rows = {}
    for i, (name, flags) in enumerate(settings.items()):
        folder = out / f"setting-{i}"
        seeds = ["--seeds", "0-1", "--quick"] if args.quick else ["--seeds", "0-7"]
        eigen.main([*flags, *seeds, "--no-plots", "--quiet", "--jobs", str(args.jobs), "--out",
                    str(folder)])  # fmt: skip
        with (folder / "runs.jsonl").open() as fh:
            summaries = sorted((json.loads(line)["summary"] for line in fh if line.strip()),
                               key=lambda s: s["seed"])  # fmt: skip
        rows[name] = {"flags": flags, **row(summaries)}
    write_json(out / "settings.json", {"settings": rows}, indent=2)
    atomic_write(out / "settings-table.md", "\n".join(table(rows)) + "\n")
    print((out / "settings-table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
