"""``tinyvec analyze``: train a small network with the vector-analysis recorder and the
completion monitor, and write every figure of the run with a short summary.

The default task (ours): regression of ``y = sin(πx₁) cos(πx₂/2)`` from 128 points drawn
uniformly in [−1, 1]², by a tanh MLP 2 → 32 → 32 → 32 → 1 (mse) trained with full-batch
gradient descent, Descent(0.1), for 3000 steps (300 with ``--quick``); 256 further points are
the test set and the completion monitor's probe set. Every step is measured.

Output folder (``--out``, default ``runs/analyze``): ``steps.csv`` (one row per layer and
step), ``completion.csv`` (one row per check), ``series.png``, ``decomposition.png``,
``heatmaps.png``, ``completion.png``, ``loss.png`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

import tinyvec as tv

from ..analysis import CompletionMonitor, VectorRecorder


def target(X: np.ndarray) -> np.ndarray:
    """The default task's function, on inputs 2 × N."""
    return (np.sin(np.pi * X[0]) * np.cos(np.pi * X[1] / 2))[None, :]


def build(seed: int, width: int = 32, depth: int = 3) -> Any:
    rng = np.random.default_rng(seed)
    sizes = [2] + [width] * depth
    hidden = [tv.Dense(i, o, tv.tanh, rng=rng) for i, o in itertools.pairwise(sizes)]
    return tv.Chain(*hidden, tv.Dense(width, 1, rng=rng))


def mse_loss(m: Any, x: Any, y: Any) -> Any:
    return tv.mse(m(x), y)


def run(
    *, seed: int = 0, steps: int = 3000, lr: float = 0.1, n: int = 128,
    width: int = 32, depth: int = 3, batch: int | None = None, eps: float = 1e-3,
    patience: int = 20,
) -> dict[str, Any]:  # fmt: skip
    """Train, record and monitor; returns what the summary reports."""
    rng = np.random.default_rng(seed)
    X, Xt = rng.uniform(-1, 1, size=(2, n)), rng.uniform(-1, 1, size=(2, 256))
    Y, Yt = target(X), target(Xt)
    model = build(seed, width, depth)
    state = tv.setup(tv.Descent(lr), model)
    batch = n if batch is None else batch
    recorder = VectorRecorder()
    monitor = CompletionMonitor(Xt, eps=eps, patience=patience, lr=lr)
    test_loss: list[tuple[int, float]] = []

    def evaluate(step: int, m: Any, loss: float) -> None:
        if step % 10 == 0 or step == steps:
            with tv.no_grad():
                test_loss.append((step, float(tv.mse(m(Xt), Yt))))

    # one list of `steps` batches (a fresh shuffle per epoch), so that one tv.train call
    # numbers the steps 1..steps for the recorder and the monitor
    data: list[tuple[np.ndarray, np.ndarray]] = [(X, Y)] * steps if batch >= n else []
    while len(data) < steps:
        order = rng.permutation(n) if batch < n else np.arange(n)
        data += [
            (X[:, order[i : i + batch]], Y[:, order[i : i + batch]]) for i in range(0, n, batch)
        ]
    start = time.perf_counter()
    history = tv.train(mse_loss, model, data[:steps], state, progress=False, recorder=recorder,
                       callbacks=[monitor, evaluate])  # fmt: skip
    seconds = time.perf_counter() - start
    return {
        "recorder": recorder, "monitor": monitor, "history": history, "test_loss": test_loss,
        "seconds": seconds, "config": {
            "seed": seed, "steps": steps, "lr": lr, "n": n, "width": width, "depth": depth,
            "batch": batch, "eps": eps, "patience": patience,
        },
    }  # fmt: skip


SERIES = ("ratio", "cos_own_inherited", "cos_total_delta", "cos_own_delta", "grad_norm_mean",
          "grad_norm_max", "coherence", "effective_rank", "delta_norm2")  # fmt: skip
PARTS = ("dA_norm", "own_norm", "inherited_norm", "second_norm")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def _median(rec: Any, name: str, k: int) -> float:
    values = rec.matrix(name)[k - 1]
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else math.nan


def write(result: dict[str, Any], out: Path) -> list[Path]:
    """CSV files, figures and summary.md of a `run` in folder ``out``."""
    from ..plots.analysis import completion_plot, layer_heatmap, layer_series, pyplot

    out.mkdir(parents=True, exist_ok=True)
    rec, mon, cfg = result["recorder"], result["monitor"], result["config"]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))  # everything needed to rerun
    _write_csv(out / "steps.csv", rec.rows)
    checks = [
        {k: v for k, v in r.items() if not isinstance(v, dict)}
        | {f"param_residual[{k}]": v for k, v in r["param_residual"].items()}
        | {f"cycle_residual[{p}]": v for p, v in r["cycle_residual"].items()}
        for r in mon.history
    ]
    _write_csv(out / "completion.csv", checks)
    figures = [
        layer_series(rec, SERIES, out / "series.png", title="vector analysis, per Dense layer k"),
        layer_series(
            rec, PARTS, out / "decomposition.png", title="ΔA^k = own + inherited + second order"
        ),
        layer_heatmap(
            rec,
            ("ratio", "cos_total_delta", "grad_norm_mean"),
            out / "heatmaps.png",
            log=(True, False, True),
        ),
        completion_plot(mon, out / "completion.png"),
    ]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(result["history"]) + 1), result["history"], lw=1, label="train (batch)")
    steps, test = zip(*result["test_loss"], strict=True)
    ax.plot(steps, test, lw=1, label="test")
    ax.set(yscale="log", xlabel="step", ylabel="mse")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)
    plt.close(fig)
    figures.append(out / "loss.png")

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
        f"- completion (ε = {cfg['eps']:g}, patience {cfg['patience']} checks): **{kind}** at "
        f"step {s['step']}; function residual {s['function_residual']:.2e}, parameter residual "
        f"(max over layers, α = {cfg['lr']}) {s['param_residual_max']:.2e}, loss residual "
        f"{s['loss_residual']:.2e}, probe predictions changed {s['prediction_change']:.3f}",
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
        cells = [_median(rec, name, k) for name in ("ratio", "cos_own_inherited", "cos_total_delta",
                                                      "cos_own_delta", "grad_norm_mean",
                                                      "coherence", "effective_rank")]  # fmt: skip
        lines.append(f"| {k} | " + " | ".join(f"{c:.3g}" for c in cells) + " |")
    lines += ["", "Figures: " + ", ".join(f"[{p.name}]({p.name})" for p in figures), ""]
    (out / "summary.md").write_text("\n".join(lines))
    return [*figures, out / "summary.md"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tinyvec analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/analyze"), help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="300 steps instead of 3000")
    p.add_argument("--steps", type=int, help="number of training steps")
    p.add_argument("--lr", type=float, default=0.1, help="Descent step size")
    p.add_argument("--batch", type=int, help="batch size (default: the full 128 points)")
    p.add_argument("--eps", type=float, default=1e-3, help="completion threshold ε")
    args = p.parse_args(argv)
    steps = args.steps if args.steps is not None else (300 if args.quick else 3000)
    if steps < 1 or args.lr <= 0 or (args.batch is not None and args.batch < 1):
        p.error("--steps, --lr and --batch must be positive")
    result = run(seed=args.seed, steps=steps, lr=args.lr, batch=args.batch, eps=args.eps)
    for path in write(result, args.out):
        print(path)
    s = result["monitor"].status()
    print(f"completion: {s['kind']} (period {s['period']}) at step {s['step']}")
    return 0
