"""One seed of the eigen-operator study (`tinyvec.experiments.eigen`): build it, train it,
measure it, write its files.

Each step draws r fresh unit vectors x (h × r), computes the targets y = N(Ax) + N(Bx) with N
held fixed (`tinyvec.analysis.eigen_operator.apply_operator`: no gradient flows through y),
and takes one optimiser step: with one output on ``−R²(N(x), y)`` (the seed's; λ̂ =
cov(N(x), y)/var(N(x))), with K outputs by subspace ascent after re-whitening the last layer
(`tinyvec.analysis.ritz`, whose module doc says which eigenvalues each finds; ``--k 1`` keeps
the R² gradient and reproduces the seed's runs to the last digit; with ``--opt momentum`` or
``adam`` the whitening rescales the last layer under the optimiser's state, which we have
measured only with plain descent).

What is measured, besides λ̂ (for K outputs: the real part of the leading Ritz value) and R²
(on each batch, and on a fixed probe set of unit vectors every ``record_every`` steps), and
the K Ritz values: the three skip weight matrices W_r, W_g, W_b (the red, green, blue
channels of one image per recorded step, `tinyvec.plots.eigen`) and their statistics
(`tinyvec.analysis.weights`), the exact spectrum (`tinyvec.analysis.eigen_operator`), the
shares of degree 1 and 2 (`tinyvec.analysis.degrees`), and completion: the
`CompletionMonitor` of science.md §6 on the parameters and on the outputs on a fixed probe
(not on the loss, which is on a fresh batch each step, so that its change measures sampling
noise), with the trend test on R² and the Ritz values
(`tinyvec.analysis.ritz.ritz_observables`) that tells a run at its noise floor from one still
drifting; and the period-p test on λ̂ (on the monitor's probe) at each of the last ``tail``
steps. With a constant rate the batch noise keeps the parameters moving; ``lr_final`` makes
the rate decay geometrically so that a run can settle. When the degree-1 eigenvalue of
largest real part is a complex pair and K = 1, the angle of the learned linear part in its
invariant plane is tracked too (`tinyvec.analysis.oscillation`): a rotation there is an
oscillation whose period is far longer than the monitor's ``max_period``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import tinyvec as tv
from tinyvec.analysis import classify_trajectory
from tinyvec.analysis.degrees import (
    degree_analysis,
    degree_gains,
    fit_share,
    subspace_alignment,
)
from tinyvec.analysis.eigen_operator import (
    Spectrum,
    alignment,
    apply_operator,
    lambda_hat,
    linear_part,
    plane_angle,
    unit_vectors,
)
from tinyvec.analysis.oscillation import (
    lag1_autocorrelation,
    plane_rayleigh_range,
    rayleigh_quotient,
    rotation,
)
from tinyvec.analysis.ritz import (
    ascent_gradient,
    leading_errors,
    nearest_eigenvalues,
    probe_metrics,
    ritz,
)
from tinyvec.analysis.weights import weight_stats

from .eigen_config import Config, skip_weights
from .eigen_seed import Experiment, Records, build
from .tables import json_ready, write_csv, write_json


def train_step(e: Experiment, step: int, rec: Records) -> dict[str, Any]:
    """One ascent step on a fresh batch; returns its steps.csv row (the batch λ̂ and R²,
    measured on the forward pass before the update) and adds a degrees.csv row when due."""
    c, model = e.c, e.model
    t0, c0 = time.perf_counter(), time.process_time()
    tv.adjust(e.state, eta=e.schedule(step - 1))
    x = unit_vectors(c.h, c.r, e.data_rng)
    r2_b = None
    if c.k == 1:
        y = apply_operator(model, e.A, e.B, x)
        loss, grads = tv.withgradient(lambda m, x=x, y=y: -tv.r2(m(x), y), model)
        r2_b = -float(loss)
    else:
        y, grads = ascent_gradient(model, e.A, e.B, x)
    f = model[-1].output  # N(x) of this forward pass, before the update
    before = degrees_before(e, step)
    tv.update(e.state, model, grads)
    after_update(e, step, rec, before)
    rec.train_time += time.perf_counter() - t0
    rec.cpu_time += time.process_time() - c0
    return batch_row(e, step, f, y, r2_b)


def degrees_before(e: Experiment, step: int) -> tuple[np.ndarray, np.ndarray] | None:
    """N and T N on the ±probe before the update of ``step``, when a degrees.csv row is due."""
    if e.design is None or (step - 1) % e.c.degree_every != 0:
        return None
    return (np.atleast_2d(e.model(e.sym_probe)),
            np.atleast_2d(apply_operator(e.model, e.A, e.B, e.sym_probe)))  # fmt: skip


def after_update(
    e: Experiment, step: int, rec: Records, before: tuple[np.ndarray, np.ndarray] | None
) -> None:
    """What follows the update of ``step`` (``e.model`` updated): the degrees.csv row of the
    step's gains, when due, and the completion monitor."""
    if before is not None and e.design is not None:
        after = np.atleast_2d(e.model(e.sym_probe))
        rec.degrees.append({"step": step - 1,
                            **degree_gains(*before, after, e.design, e.mode2)})  # fmt: skip
    # no loss for the monitor: each step's loss is on a fresh batch, so its change measures
    # sampling noise (≈1e-3 in R² at convergence), not training; the probe residuals remain
    e.monitor(step, e.model, math.nan)


def batch_row(e: Experiment, step: int, f: np.ndarray, y: np.ndarray,
              r2_b: float | None) -> dict[str, Any]:  # fmt: skip
    """The steps.csv row of ``step``: λ̂ and R² of the batch outputs f and targets y (K = 1:
    ``r2_b``, the loss's R²; K > 1: the Ritz fit's)."""
    if r2_b is not None:
        lam_b = lambda_hat(f, y)
    else:
        _, values_b, r2_b = ritz(f, y)
        lam_b = float(values_b[0].real)
    if not math.isfinite(r2_b):
        raise FloatingPointError(f"R² is {r2_b} at step {step} (N(x) constant?)")
    return {"step": step, "lambda_batch": lam_b, "r2_batch": r2_b}


def measure(e: Experiment, step: int, lam_b: float, r2_b: float) -> tuple[dict, np.ndarray]:
    """A metrics.csv row (λ̂, R², Ritz values and linear part on the probe, skip-weight
    statistics, the monitor's residuals) and the skip weights W it describes."""
    c = e.c
    lam, r2, f = probe_metrics(e.model, e.A, e.B, e.probe)
    if c.k == 1:
        values = np.array([lam])
        v, var1 = linear_part(e.probe, f)
        angle = plane_angle(v, e.u_top) if e.rotating else math.nan
        cos_top = alignment(v, e.u_top)
    else:
        values = ritz(f, apply_operator(e.model, e.A, e.B, e.probe))[1]
        coef, var1 = fit_share(np.column_stack([np.ones(c.probe), e.probe.T]), f)
        cos_top, angle = subspace_alignment(coef[1:], e.u_top), math.nan
    W = skip_weights(e.model)
    status = e.monitor.status()
    row = {"step": step, "lambda": lam, "r2": r2, "lambda_batch": lam_b, "r2_batch": r2_b,
           "var_degree1": var1, "cos_top1": cos_top, "angle_top1": angle,
           **{f"ritz{i}_{part}": float(getattr(mu, part))
              for i, mu in enumerate(values) for part in ("real", "imag")},
           **weight_stats(W),
           "function_residual": status["function_residual"],
           "param_residual": status["param_residual_max"],
           "completion": status["kind"]}  # fmt: skip
    return row, W


def measure_tail(e: Experiment, step: int, previous: dict[str, Any] | None) -> dict[str, Any]:
    """A tail row: λ̂ on the monitor's probe and, when rotating, the angle and cosine of the
    linear part v in u_top's plane and its Rayleigh quotient ρ(v) = vᵀ(A+B)ᵀv/vᵀv
    (``previous`` is unused, kept for callers)."""
    lam, _, f = probe_metrics(e.model, e.A, e.B, e.mon_probe)
    row: dict[str, Any] = {"step": step, "lambda": lam, "angle_top1": math.nan,
                           "rayleigh": math.nan}  # fmt: skip
    if e.rotating:
        v, _ = linear_part(e.mon_probe, f)
        row["angle_top1"] = plane_angle(v, e.u_top)
        row["cos_top1"] = alignment(v, e.u_top)
        row["rayleigh"] = rayleigh_quotient(v, e.A, e.B)
    return row


def summarise(e: Experiment, rec: Records) -> dict[str, Any]:
    """summary.json: the final λ̂ and R² against the exact spectrum, the degree analysis, the
    verdicts of the monitor and of the tail test, the rotation in u_top's plane, speed."""
    c, spectrum, final = e.c, e.spectrum, rec.metrics[-1]
    assert c.steps is not None  # `build` resolves it
    lam, r2 = final["lambda"], final["r2"]
    x_analysis = unit_vectors(c.h, c.analysis, np.random.default_rng([c.seed, 5]))
    status = e.monitor.status()
    tail = np.array([r["lambda"] for r in rec.tail])
    tail_class = classify_trajectory([np.array([v]) for v in tail], eps=c.eps,
                                     patience=min(c.patience, len(tail) - 1),
                                     max_period=c.max_period)  # fmt: skip
    nearest = spectrum.nearest(lam)
    turning: dict[str, Any] | None = None
    if e.rotating:
        turning = rotation([r["angle_top1"] for r in rec.tail], [r["cos_top1"] for r in rec.tail],
                           [r["lambda"] for r in rec.tail], [r["rayleigh"] for r in rec.tail],
                           plane_rayleigh_range(e.A, e.B, e.u_top))  # fmt: skip
        turning["mu"] = [float(spectrum.values1[e.top].real), float(spectrum.values1[e.top].imag)]
    return {
        "seed": c.seed,
        "lambda": lam,
        "abs_lambda": abs(lam),
        "r2": r2,
        "nearest": nearest,
        "nearest_degree": nearest["by_value"]["degree"],
        "dominant": spectrum.dominant(),
        "largest_real_part": _largest_real(spectrum),
        "extreme_degree1": spectrum.extreme_degree1(lam),
        "degrees": degree_analysis(e.model, spectrum, lam, x_analysis),
        "completion": {**{k: status[k] for k in ("kind", "period", "step", "function_residual",
                                                  "param_residual_max", "prediction_change",
                                                  "loss_residual", "cycle_residual")},
                       "trend": status.get("trend")},
        "lambda_tail": {"kind": tail_class["kind"], "period": tail_class["period"],
                        "steps": len(tail), "mean": float(np.mean(tail)),
                        "std": float(np.std(tail)),
                        "lag1_autocorrelation": lag1_autocorrelation(tail)},
        "rotation": turning,
        "k": c.k,
        "spectrum": nearest_eigenvalues(final_ritz(final), spectrum),
        "leading": leading_errors(final_ritz(final), e.leading, e.leading_degrees, e.split),
        "skip_weights": _weight_part(final),
        "skip_weights_initial": _weight_part(rec.metrics[0]),
        "steps": c.steps,
        "steps_per_second": c.steps / rec.train_time,
        # CPU time of this process: the wall clock counts other jobs on a shared machine
        "steps_per_cpu_second": c.steps / rec.cpu_time if rec.cpu_time > 0 else math.nan,
    }  # fmt: skip


def write(out: Path, e: Experiment, rec: Records, summary: dict[str, Any]) -> None:
    """Every file of the run but config.json and operators.npz (written before training)."""
    write_csv(out / "metrics.csv", rec.metrics)
    write_csv(out / "steps.csv", rec.steps)
    write_csv(out / "tail.csv", rec.tail, columns=("step", "lambda", "angle_top1", "rayleigh"))
    if rec.degrees:
        write_csv(out / "degrees.csv", rec.degrees)
    np.savez_compressed(out / "skip_weights.npz", W=np.stack(rec.frames),
                        step=np.array([r["step"] for r in rec.metrics]))  # fmt: skip
    tv.save(out / "model.npz", e.model)
    write_json(out / "summary.json", summary, indent=2)


def run(c: Config, out: Path, progress: bool = True, plots: bool = True, fmt: str = "png",
        dpi: int = 100) -> dict[str, Any]:  # fmt: skip
    """One seed: train, measure, write every output file into ``out``; returns the summary."""
    e, rec = start(c, out)
    assert e.c.steps is not None  # `resolve` fills it in
    # no tqdm object at all without a bar: in a spawned worker it would leave a semaphore behind
    steps = range(1, e.c.steps + 1)
    for step in tqdm(steps, desc=f"eigen seed {e.c.seed}") if progress else steps:
        record(e, step, rec, train_step(e, step, rec))
    return finish(e, rec, out, plots, fmt, dpi)


FIGURES = ("out", "plots", "format", "dpi")  # a sweep spec's entries that are not the Config's


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """`run` of a sweep's spec (`tinyvec.experiments.eigen.seed_run`): a Config as JSON plus
    ``out`` (the run's folder) and the figure options; returns the summary as plain JSON."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a split pair is in the table ("split" column)
        summary = run(config_of(spec), Path(spec["out"]), progress=False, plots=spec["plots"],
                      fmt=spec.get("format", "png"), dpi=spec.get("dpi", 100))  # fmt: skip
    return seed_result(summary)


def config_of(spec: dict[str, Any]) -> Config:
    """The Config of a sweep's spec (`run_spec`)."""
    return Config(**{k: v for k, v in spec.items() if k not in FIGURES})


def seed_result(summary: dict[str, Any]) -> dict[str, Any]:
    """The sweep's result of one seed: its summary as plain JSON."""
    return {"summary": json_ready(summary)}


def start(c: Config, out: Path) -> tuple[Experiment, Records]:
    """A seed before its first step: built (`build`), config.json and operators.npz written
    into ``out``, and the records with the measurement at step 0."""
    c.check()
    e = build(c)
    c = e.c  # config.json holds the K, steps and rate that ran
    if e.split:
        warnings.warn(
            f"seed {c.seed}: --k {c.k} splits the complex pair {fmt_complex(e.leading[-1].real, abs(e.leading[-1].imag))}"
            f" (one real {c.k}-dimensional subspace cannot hold half of it); --k {c.k + 1}"
            " keeps it whole",
            stacklevel=3,
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(c), indent=2)
    np.savez(out / "operators.npz", A=e.A, B=e.B)
    rec = Records()
    rec.add_measurement(*measure(e, 0, math.nan, math.nan))
    return e, rec


def record(e: Experiment, step: int, rec: Records, row: dict[str, Any]) -> None:
    """The records of ``step`` after its update: its steps.csv ``row``, a tail row over the
    last ``tail`` steps, and a metrics row every ``record_every`` steps and at the end."""
    c = e.c
    assert c.steps is not None  # `resolve` fills it in
    rec.steps.append(row)
    if step > c.steps - c.tail:
        rec.tail.append(measure_tail(e, step, rec.tail[-1] if rec.tail else None))
    if step % c.record_every == 0 or step == c.steps:
        rec.add_measurement(*measure(e, step, row["lambda_batch"], row["r2_batch"]))


def finish(e: Experiment, rec: Records, out: Path, plots: bool = True, fmt: str = "png",
           dpi: int = 100) -> dict[str, Any]:  # fmt: skip
    """A seed after its last step: the summary, every file and the figures written into
    ``out``; returns the summary."""
    summary = summarise(e, rec)
    write(out, e, rec, summary)
    if plots:
        from tinyvec.plots import eigen as eplots

        eplots.all_plots(out, rec.metrics, rec.steps, np.stack(rec.frames), e.spectrum,
                         summary, e.c.frames, fmt=fmt, dpi=dpi)  # fmt: skip
    return summary


def final_ritz(row: dict[str, Any]) -> np.ndarray:
    """The Ritz values of a metrics row (columns ritz<i>_real, ritz<i>_imag)."""
    n = sum(1 for key in row if key.startswith("ritz") and key.endswith("_real"))
    return np.array([complex(row[f"ritz{i}_real"], row[f"ritz{i}_imag"]) for i in range(n)])


def _weight_part(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: v for k, v in row.items() if k.split("_")[0] in ("erank", "sigma1", "energy5", "diff")
    }


def _largest_real(spectrum: Spectrum) -> dict[str, Any]:
    """The eigenvalue of largest real part over degrees 1 and 2 (the end of the real axis
    when λ̂ > 0; compare ``extreme_degree1``: the network tends to stay at degree 1)."""
    i = int(np.argmax(spectrum.values.real))
    mu = spectrum.values[i]
    return {"real": float(mu.real), "imag": float(mu.imag), "degree": int(spectrum.degrees[i])}


def fmt_complex(re: float, im: float) -> str:
    return f"{re:.4f}" if abs(im) < 1e-9 else f"{re:.3f}{im:+.3f}i"
