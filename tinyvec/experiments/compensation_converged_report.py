"""The tables of the compensation study at convergence
(`tinyvec.experiments.compensation_converged`): per cell (task, η) the paired comparison of
the rule's runs with their plain twins at the stop and at the fixed budget, each method at
its own best η, and results.md. The statistics are `tinyvec.analysis.convergence`'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinyvec.analysis.convergence import best_eta, paired_comparison

from .compensation_runs import TASKS


def parse_cell(text: str) -> tuple[str, float]:
    """``"sin:0.01"`` → ("sin", 0.01)."""
    task, _, eta = text.partition(":")
    if task not in TASKS or not eta:
        raise ValueError(f"a cell is TASK:ETA with TASK one of {', '.join(TASKS)}, got {text!r}")
    value = float(eta)
    if not value > 0:
        raise ValueError(f"η must be > 0, got {text!r}")
    return task, value


def treated(spec: dict[str, Any]) -> bool:
    """Whether a run is the rule's (κ > 0, or orthogonalization over time), not plain."""
    return spec["kappa"] > 0 or "memory" in spec


def summarise(cfg: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell: the paired comparison at convergence and at the fixed budget, and
    the converged fractions."""
    rows = []
    for cell in cfg["cells"]:
        task, eta = parse_cell(cell)
        mine = [r for r in runs if r["spec"]["task"] == task and r["spec"]["eta"] == eta]
        by = {(treated(r["spec"]), r["spec"]["seed_index"]): r for r in mine}
        seeds = sorted({r["spec"]["seed_index"] for r in mine})
        plain = [by[(False, s)] for s in seeds]
        comp = [by[(True, s)] for s in seeds]
        floor = cfg["floor"] * plain[0]["var_y"]
        row: dict[str, Any] = {"task": task, "eta": eta, "seeds": len(seeds)}
        for name, key in (("converged", "error"), ("fixed", "fixed")):
            row[name] = paired_comparison([r[key] for r in comp], [r[key] for r in plain], floor)
        for who, rs in (("plain", plain), ("rule", comp)):
            row[f"{who}_converged"] = sum(r["converged"] for r in rs)
            row[f"{who}_epochs_median"] = float(np.median([r["epochs"] for r in rs]))
            changes = [r["change"] for r in rs if not r["diverged"]]
            row[f"{who}_change_median"] = float(np.median(changes)) if changes else math.nan
        rows.append(row)
    return rows


def at_best_eta(cfg: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task, plain and the rule each at its own best η (`best_eta` by the median error at
    the stop, among the cells' η at which no seed diverged), compared per seed (the same
    weights and data order; `paired_comparison`)."""
    rows = []
    for task in dict.fromkeys(parse_cell(c)[0] for c in cfg["cells"]):
        etas = {parse_cell(c)[1] for c in cfg["cells"] if parse_cell(c)[0] == task}
        mine = [r for r in runs if r["spec"]["task"] == task and r["spec"]["eta"] in etas]
        best, errors = {}, {}
        for who in (False, True):
            rs = [r for r in mine if treated(r["spec"]) == who]
            flat = [{"eta": r["spec"]["eta"], "tail": r["error"], "diverged": r["diverged"]}
                    for r in rs]  # fmt: skip
            best[who] = best_eta(flat, np.median)
            at = sorted((r for r in rs if r["spec"]["eta"] == best[who]),
                        key=lambda r: r["spec"]["seed_index"])  # fmt: skip
            errors[who] = [r["error"] for r in at]
        floor = cfg["floor"] * mine[0]["var_y"]
        rows.append({"task": task, "plain_eta": best[False], "rule_eta": best[True],
                     **paired_comparison(errors[True], errors[False], floor)})  # fmt: skip
    return rows


def _g(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.3g}"


def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:.1%}"


def _cmp(c: dict[str, Any]) -> str:
    if c["both_interpolate"]:
        return "both interpolate"
    lo, hi = c["ci"]
    return f"{_g(c['median_ratio'])} [{_g(lo)}, {_g(hi)}]"


def report(
    cfg: dict[str, Any],
    rows: list[dict[str, Any]],
    best: list[dict[str, Any]],
    wall: float,
    cpu: float,
) -> str:
    """results.md (``cpu``: the runs' training seconds, summed; ``wall``: this invocation's)."""
    k, what = "κ", f"Compensation κ = {cfg['kappa']}"
    if cfg["memory"]:
        k, what = "OT", f"Orthogonalization over time (OT) M = {cfg['memory']}, ε = {cfg['eps']:g},"
    lines = [
        f"# {what} against plain backprop, trained to a stated convergence "
        f"criterion or {cfg['max_epochs']} epochs, {len(cfg['seed_list'])} seeds per cell",
        "",
        "Where the criterion is not met (column *converged*), a run's error is its error at "
        f"{cfg['max_epochs']} epochs: a fixed-budget error, reported as such.",
        "",
        f"{cfg['activation']} 1-{'-'.join([str(cfg['width'])] * cfg['depth'])}-1, "
        f"per-sample SGD on {cfg['points']} points{'' if cfg['memory'] else ', exact ΔO'} "
        f"(`{cfg['command']}`; "
        f"{cpu / 60:.0f} minutes of training summed over the runs; this invocation "
        f"{wall / 60:.1f} min wall, the sweep runner reusing the runs its runs.jsonl held).",
        "",
        f"**Convergence criterion** (`tinyvec.analysis.convergence.Criterion`): train at least "
        f"{cfg['min_epochs']} epochs, then every {cfg['window']} epochs compare the mean "
        f"training MSE of the last {cfg['window']} epochs with that of the {cfg['window']} "
        f"before; **converged** when the relative change is below {cfg['tol']:g}; **not "
        f"converged** at {cfg['max_epochs']} epochs. Error: the mean training MSE over the last "
        f"window. *Fixed budget*: the same runs' mean MSE over the last tenth of "
        f"{cfg['fixed_epochs']} epochs (the committed study's measure).",
        "",
        f"**Comparison**: per seed, ratio = {k}'s error / its plain twin's (same weights and data "
        f"order), both floored at {cfg['floor']:g}·var(y) (below: interpolation, a tie). Median "
        f"ratio with a 95 % percentile-bootstrap interval (10 000 resamples of the seeds, "
        f"generator seed 0); wins / losses / ties of {k} per seed (a diverged run loses to a "
        f"finite one); diverged runs are counted, not averaged. Ratio < 1: {k} is better.",
        "",
        f"| task | η | seeds | converged plain / {k} | median epochs plain / {k} | median last "
        f"change per window plain / {k} | diverged plain / {k} | median error plain / {k} | "
        f"**median ratio {k}/plain at the stop [95 % CI]** | ratio of medians | {k} wins / "
        "losses / ties | fixed budget: median ratio [95 % CI] | fixed: wins / losses |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, f = r["converged"], r["fixed"]
        lines.append(
            f"| {r['task']} | {r['eta']:g} | {r['seeds']} | {r['plain_converged']} / "
            f"{r['rule_converged']} of {r['seeds']} | {r['plain_epochs_median']:.0f} / "
            f"{r['rule_epochs_median']:.0f} | {_pct(r['plain_change_median'])} / "
            f"{_pct(r['rule_change_median'])} | {c['twin_diverged']} / {c['diverged']} | "
            f"{_g(c['twin_median'])} / {_g(c['median'])} | **{_cmp(c)}** | "
            f"{_g(c['ratio_of_medians'])} | {c['wins']} / {c['losses']} / {c['ties']} | "
            f"{_cmp(f)} | {f['wins']} / {f['losses']} |"
        )
    lines += [
        "",
        f"**Each at its own best η** (the η of the cells above with the lowest median error at "
        f"the stop, among those at which no seed diverged; per seed, {k}'s error at its η over "
        "plain's at its η, the same weights and data order):",
        "",
        f"| task | best η plain / {k} | median error plain / {k} | diverged plain / {k} | "
        f"**median ratio {k}/plain [95 % CI]** | ratio of medians | {k} wins / losses / ties |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in best:
        lines.append(
            f"| {b['task']} | {b['plain_eta']:g} / {b['rule_eta']:g} | {_g(b['twin_median'])} / "
            f"{_g(b['median'])} | {b['twin_diverged']} / {b['diverged']} | **{_cmp(b)}** | "
            f"{_g(b['ratio_of_medians'])} | {b['wins']} / {b['losses']} / {b['ties']} |"
        )
    return "\n".join(lines) + "\n"
