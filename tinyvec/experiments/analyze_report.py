"""The report of ``tinyvec analyze`` (`tinyvec.experiments.analyze`): the CSV files of the
recorder and of the completion monitor, the figures and summary.md of one run (what the
monitor's verdict rests on, the per-layer medians of the vector analysis), and summary.md of
a ``--seeds`` sweep.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from .flags import seeds_name
from .tables import atomic_write

SERIES = ("ratio", "cos_own_inherited", "cos_total_delta", "cos_own_delta", "grad_norm_mean",
          "grad_norm_max", "coherence", "effective_rank", "delta_norm2")  # fmt: skip


PARTS = ("dA_norm", "own_norm", "inherited_norm", "second_norm")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def layer_median(rec: Any, name: str, k: int) -> float:
    """The median over the steps of the recorder series ``name`` of layer k (NaN steps left
    out; NaN when none is left)."""
    values = rec.matrix(name)[k - 1]
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else math.nan


def write(result: dict[str, Any], out: Path, figures: dict[str, Any] | None = None) -> list[Path]:
    """CSV files, figures (unless ``figures`` is None: the format and dpi) and summary.md of
    a `run` in folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rec, mon, cfg = result["recorder"], result["monitor"], result["config"]
    _write_csv(out / "steps.csv", rec.rows)
    checks = [
        {k: v for k, v in r.items() if not isinstance(v, dict)}
        | {f"param_residual[{k}]": v for k, v in r["param_residual"].items()}
        | {f"cycle_residual[{p}]": v for p, v in r["cycle_residual"].items()}
        for r in mon.history
    ]
    _write_csv(out / "completion.csv", checks)
    written = [out / "steps.csv", out / "completion.csv"]
    if figures is not None:
        written += draw(result, out, figures)
    s = mon.status()
    kind = s["kind"] + (f" of period {s['period']}" if s["kind"] == "limit_cycle" else "")
    layers = sorted({r["layer"] for r in rec.rows})
    lines = [
        "# Vector analysis and completion of a training run",
        "",
        f"Task: y = sin(πx₁) cos(πx₂/2) on {cfg['n']} points in [−1, 1]², tanh MLP "
        f"2 → {' → '.join([str(cfg['width'])] * cfg['depth'])} → 1, mse, Descent({cfg['lr']}), "
        f"batch {cfg['batch']}, {cfg['steps']} steps, seed {cfg['seed']} "
        f"({result['seconds']:.1f} s with the recorder and the monitor).",
        "",
        f"- loss: {result['history'][0]:.4g} → {result['history'][-1]:.4g} (train), "
        f"test {result['test_loss'][-1][1]:.4g}",
        f"- completion (ε = {cfg['eps']:g}, patience {cfg['patience']} checks, trend window "
        f"{cfg['window']} checks): **{kind}** at step {s['step']}; function residual "
        f"{s['function_residual']:.2e}, parameter residual (max over layers, α = {cfg['lr']}) "
        f"{s['param_residual_max']:.2e}, loss residual {s['loss_residual']:.2e}, probe "
        f"predictions changed {s['prediction_change']:.3f}",
        *_completion_lines(result),
        "- decomposition ΔA^k = own + inherited + second order: largest relative residual "
        f"{np.nanmax(rec.matrix('residual')):.1e} over all layers and steps (rounding)",
        "",
        "Per layer, median over the steps:",
        "",
        "| k | ‖inherited‖/‖own‖ | cos(own, inherited) | cos(ΔA, −δ) | cos(own, −δ) "
        "| mean ‖∇ℓ_n‖ | coherence of O^{k-1} | effective rank of O^{k-1} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in layers:
        cells = [layer_median(rec, name, k) for name in ("ratio", "cos_own_inherited", "cos_total_delta",
                                                      "cos_own_delta", "grad_norm_mean",
                                                      "coherence", "effective_rank")]  # fmt: skip
        lines.append(f"| {k} | " + " | ".join(f"{c:.3g}" for c in cells) + " |")
    lines += ["", "Files: " + ", ".join(f"[{p.name}]({p.name})" for p in written), ""]
    (out / "summary.md").write_text("\n".join(lines))
    return [*written, out / "summary.md"]


def _completion_lines(result: dict[str, Any]) -> list[str]:
    """What the monitor's verdict rests on: the cycle residuals against the one-step residual,
    the trend of the loss averaged over the cycle, the probe's trend, and the drift of loss
    and parameters over the last ``lookback`` steps."""
    s, h, n = result["monitor"].status(), result["history"], result["lookback"]
    cycles = ", ".join(f"p = {p}: {v:.2e}" for p, v in s["cycle_residual"].items())
    lines = [f"- cycle residuals ‖θ_t − θ_(t−p)‖/(α‖θ‖): {cycles}; one step: "
             f"{s['param_residual_max']:.2e}"]  # fmt: skip
    ct = s.get("cycle_trend")
    if ct and not ct.get("observables"):
        change, mean, se = ct["change"][0], ct["mean"][0], ct["se"][0]
        verdict = "settled" if ct["settled"] else "drifting" if ct["drifting"] else "undetermined"
        lines.append(
            f"- the parameters come back every {ct['period']} steps, but a limit cycle also "
            f"needs a loss without trend: the training loss averaged over {ct['period']} steps "
            f"changes by {change / mean:+.2%} (± {se / mean:.2%}) over the last "
            f"{result['config']['window']} checks: **{verdict}**"
        )
    tr = s.get("trend")
    if tr:
        word = "settled" if tr["settled"] else "drifting" if tr["drifting"] else "undetermined"
        lines.append(f"- probe observable ln(test MSE): change {tr['change'][0]:+.4f} "
                     f"(± {tr['se'][0]:.4f}) over the window, spread {tr['spread'][0]:.4f}: "
                     f"{word}")  # fmt: skip
    if len(h) > n:
        lines.append(f"- over the last {n} steps the training loss changes by "
                     f"{h[-1] / h[-1 - n] - 1:+.1%} and the parameters move by "
                     f"‖θ_T − θ_(T−{n})‖/‖θ_(T−{n})‖ = {result['theta_drift']:.2%}")  # fmt: skip
    return lines


def draw(result: dict[str, Any], out: Path, figures: dict[str, Any]) -> list[Path]:
    """The figures of a `run`: per-layer series, the ΔA^k decomposition, heatmaps,
    completion residuals and the loss."""
    from ..plots import pyplot, save, styles
    from ..plots.analysis import completion_plot, layer_heatmap, layer_series

    rec, mon = result["recorder"], result["monitor"]
    paths = [
        layer_series(rec, SERIES, out / "series", title="vector analysis, per Dense layer k",
                     **figures),
        layer_series(rec, PARTS, out / "decomposition",
                     title=r"$\Delta A^k$ = own + inherited + second order", **figures),
        layer_heatmap(rec, ("ratio", "cos_total_delta", "grad_norm_mean"), out / "heatmaps",
                      log=(True, False, True), **figures),
        completion_plot(mon, out / "completion", **figures),
    ]  # fmt: skip
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    train, test = styles(2)
    ax.plot(range(1, len(result["history"]) + 1), result["history"], lw=1.2,
            label="train (batch)", **train)  # fmt: skip
    steps, values = zip(*result["test_loss"], strict=True)
    ax.plot(steps, values, lw=1.2, label="test", **test)
    ax.set(yscale="log", xlabel="step", ylabel="MSE")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.grid(alpha=0.3)
    paths.append(save(fig, out / "loss", **figures))
    return paths


def write_seeds(runs: list[dict[str, Any]], steps: int, seeds: list[int], out: Path) -> None:
    """summary.md of a ``--seeds`` sweep in ``out``: a row per seed (its losses, completion
    verdict and per-layer medians) and the spread of the test loss over the seeds."""
    lines = [
        f"# Vector analysis over seeds {seeds_name(seeds)}",
        "",
        f"{steps} steps each (settings: config.json). Per layer k: the median over "
        "the steps of ‖inherited‖/‖own‖ and of cos(ΔA^k, −δ^k).",
        "",
        "| seed | train loss | test loss | completion | at step | ‖inherited‖/‖own‖ per k "
        "| cos(ΔA, −δ) per k |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        kind = r["completion"] + (f" ({r['period']})" if r["period"] else "")
        lines.append(
            f"| {r['spec']['seed']} | {r['train_loss']:.3g} | {r['test_loss']:.3g} | {kind} "
            f"| {r['completion_step']} | {' / '.join(f'{v:.3g}' for v in r['ratio'])} | "
            f"{' / '.join(f'{v:.3f}' for v in r['cos_total_delta'])} |"
        )
    test = np.array([r["test_loss"] for r in runs])
    lines += ["", f"Test loss over the seeds: mean {test.mean():.3g}, std {test.std():.3g}."]
    atomic_write(out / "summary.md", "\n".join(lines) + "\n")
