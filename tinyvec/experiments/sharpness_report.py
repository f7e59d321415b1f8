"""The report of the sharpness study (`tinyvec.experiments.sharpness`): results.md, a table
per part built from the sweep's runs (λ_max η/2 against the threshold 1 by
`tinyvec.analysis.sharpness.threshold_summary`, the completion verdict, the SGD sharpness of
plain and compensated runs), and the figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

import tinyvec as tv

from ..analysis.sharpness import threshold_summary
from .flags import seeds_name
from .tables import atomic_write


def _by_spec(
    runs: list[dict[str, Any]], keys: tuple[str, ...]
) -> dict[tuple, list[dict[str, Any]]]:
    """The runs grouped by the values of ``keys`` in their spec, each group in run order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(tuple(r["spec"][k] for k in keys), []).append(r)
    return groups


def _spread(values: list[float]) -> str:
    v = np.array([x for x in values if x is not None and math.isfinite(x)])
    if not v.size:
        return "–"
    return f"{v.mean():.3g} ± {v.std():.2g}" if v.size > 1 else f"{v[0]:.3g}"


def verdict(run: dict[str, Any]) -> str:
    """A part-1 run's verdict cell: the completion monitor's kind and period, ", back every p"
    when the parameters return every p steps while the loss still falls (issue 24's
    loss-trend rule calls that "moving"), and the alignment |cos(u₁, Δθ)| wherever they
    return."""
    if run["diverged"]:
        return "diverged"
    v = run["completion"] + (f" {run['period']}" if run["period"] else "")
    if run["completion"] != "limit_cycle" and run.get("returns"):
        v += f", back every {run['returns']}"
    if run["eos"] is not None:
        v += f" ({run['eos']['alignment']:.2f})"
    return v


def write(
    runs: list[dict[str, Any]], args: Any, out: Path, figures: dict[str, Any] | None
) -> list[Path]:
    """results.md (and the figures, unless ``figures`` is None) of the sweep's runs."""
    gd = [r for r in runs if r["spec"]["part"] == "gd"]
    sgd = [r for r in runs if r["spec"]["part"] == "sgd"]
    lines = [
        "# Sharpness and the edge of stability (issue 22)",
        "",
        f"Command: `tinyvec sharpness --config config.json` (seeds {seeds_name(args.seeds)}); "
        f"tinyvec {tv.__version__}, NumPy {np.__version__}. λ_max: the largest eigenvalue of "
        "the Hessian of the full-batch training loss, by Lanczos with full reorthogonalisation "
        "on exact Hessian-vector products (relative residual ≤ 1e-5, ≤ 80 products).",
        "",
        "## Part 1: full-batch gradient descent",
        "",
        f"Descent(η), {args.steps} steps, λ_max every {args.every} steps (and at step 0). "
        "Columns: λ_max η/2 (= λ_max / (2/η); ≥ 1 is beyond the stability threshold) at "
        "initialisation, at its peak and at the end; the first measured step where it reached "
        "1; its median from there on (*hover*); the final loss; the number of steps at which "
        "the loss rose; the completion verdict at the end (ε = 1e-3; *moving, back every "
        "p*: the parameters come back every p steps but the loss, averaged over p steps, "
        "still falls) with, where they come back, |cos(u₁, θ_t − θ_{t−1})| at the last "
        "measurement. Each cell: one seed per line "
        "(seeds in order), then mean ± std over the seeds.",
        "",
        "| task | σ | η | 2/η | λη/2 start | peak | end | reaches 1 at step | hover | "
        "final loss | loss rises | verdict (alignment) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = _by_spec(gd, ("task", "activation", "eta"))
    for (task, act, eta), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["spec"]["seed"])
        sums = [threshold_summary(r["steps"], r["sharpness"], eta) for r in rs]

        def col(key: str, fmt: str = "{:.3g}", sums: list[dict[str, Any]] = sums) -> str:
            each = " / ".join(
                "–" if s[key] is None or s[key] != s[key] else fmt.format(s[key]) for s in sums
            )
            values = [s[key] for s in sums]
            return f"{each} ({_spread(values)})" if len(sums) > 1 else each

        verdicts = [verdict(r) for r in rs]
        lines.append(
            f"| {task} | {act} | {eta:g} | {2 / eta:g} | {col('start')} | {col('peak')} | "
            f"{col('end')} | {col('reached', '{}')} | {col('hover')} | "
            f"{' / '.join(format(r['final_loss'], '.2g') for r in rs)} | "
            f"{' / '.join(str(r['loss_increases']) for r in rs)} | {' / '.join(verdicts)} |"
        )
    if sgd:
        lines += [
            "",
            "## Part 2: per-sample SGD, plain and κ = 0.2 compensation",
            "",
            f"tanh 32 × 2, {args.points} points, {args.sgd_epochs} epochs of per-sample SGD "
            "(the compensation study's sample mode), Descent(η), the same initial weights and "
            "sample order for both rules. λ_max of the full-batch loss at the end, its ratio "
            "to 2/η, the full-batch loss, and the mean length ‖Δθ‖ of a step over the last "
            "epoch: mean ± std over the seeds.",
            "",
            "| task | η | rule | λ_max at the end | λη/2 | loss | mean ‖Δθ‖ per step | diverged |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (task, eta, kappa), rs in sorted(_by_spec(sgd, ("task", "eta", "kappa")).items()):
            ok = [r for r in rs if not r["diverged"]]
            lam = [r["sharpness"][-1] for r in ok]
            lines.append(
                f"| {task} | {eta:g} | {'κ = 0.2' if kappa else 'plain'} | {_spread(lam)} | "
                f"{_spread([v * eta / 2 for v in lam])} | "
                f"{_spread([r['loss'][-1] for r in ok])} | "
                f"{_spread([r['step_length'] for r in ok])} | {len(rs) - len(ok)}/{len(rs)} |"
            )
    written: list[Path] = []
    if figures is not None:
        written += draw(groups, sgd, out, figures)
        lines += ["", "Figures: " + ", ".join(f"![{p.stem}]({p.name})" for p in written)]
    atomic_write(out / "results.md", "\n".join(lines) + "\n")
    return [out / "results.md", *written]


def draw(
    groups: dict[tuple[str, str, float], list[dict[str, Any]]],
    sgd: list[dict[str, Any]],
    out: Path,
    figures: dict[str, Any],
) -> list[Path]:
    """Per part-1 task: λ_max η/2 (top) and the loss (bottom) over training, a column per
    activation, a colour per η, a line per seed. Part 2: λ_max over the epochs."""
    from ..plots import pyplot, save

    plt = pyplot()
    paths = []
    for task in sorted({t for t, _, _ in groups}):
        acts = sorted({a for t, a, _ in groups if t == task})
        fig, axes = plt.subplots(2, len(acts), figsize=(5 * len(acts), 6), squeeze=False)
        for j, act in enumerate(acts):
            etas = sorted(e for t, a, e in groups if t == task and a == act)
            for c, eta in enumerate(etas):
                colour = f"C{c}"
                for i, r in enumerate(groups[task, act, eta]):
                    label = f"η = {eta:g}" if i == 0 else None
                    axes[0, j].plot(r["steps"], np.array(r["sharpness"]) * eta / 2, color=colour,
                                    lw=1, label=label)  # fmt: skip
                    t = np.arange(len(r["loss"])) * r["loss_every"] + 1
                    axes[1, j].plot(t, r["loss"], color=colour, lw=0.8, label=label)
            axes[0, j].axhline(1.0, color="k", ls="--", lw=0.8)
            axes[0, j].set(title=f"{task}, {act}", ylabel=r"$\lambda_{max}\,\eta/2$")
            axes[1, j].set(yscale="log", xlabel="step", ylabel="training loss (mse)")
            for ax in axes[:, j]:
                ax.grid(alpha=0.3)
            axes[0, j].legend(frameon=False, fontsize=8)
        fig.tight_layout()
        paths.append(save(fig, out / f"gd-{task}", **figures))
        plt.close(fig)
    if sgd:
        tasks = sorted({r["spec"]["task"] for r in sgd})
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.5), squeeze=False)
        for j, task in enumerate(tasks):
            for r in (r for r in sgd if r["spec"]["task"] == task and not r["diverged"]):
                s = r["spec"]
                style = "-" if s["kappa"] else ":"
                colour = f"C{sorted({q['spec']['eta'] for q in sgd}).index(s['eta'])}"
                axes[0, j].plot(r["epochs"], r["sharpness"], style, color=colour, lw=1)
            axes[0, j].set(title=f"{task}: plain (dotted), κ = 0.2 (solid)", xlabel="epoch",
                           ylabel=r"$\lambda_{max}$ (full batch)", yscale="log")  # fmt: skip
            axes[0, j].grid(alpha=0.3)
        fig.tight_layout()
        paths.append(save(fig, out / "sgd", **figures))
        plt.close(fig)
    return paths
