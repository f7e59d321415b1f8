"""Figures of the eigen-operator experiment (`tinyvec.experiments.eigen`).

The animation shows the three m × m skip weight matrices as the red, green and blue channels
of one image per recorded step. Each frame uses one symmetric scale for all three channels,
``s = max |W|`` over the three matrices of that frame, and maps a weight w to ``(w/s + 1)/2``:
0 is mid-grey, and where the three matrices agree the pixel is grey (no colour), so colour
shows where they differ. The scale changes from frame to frame (the weights grow from ≈ 0).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import pyplot, save


def rgb_frame(W: np.ndarray) -> np.ndarray:
    """An m × m × 3 image in [0, 1] from W_r, W_g, W_b (shape 3 × m × m), with the shared
    symmetric scale of the module doc.

    >>> img = rgb_frame(np.stack([np.eye(2), np.eye(2), -np.eye(2)]))
    >>> img[0, 0].tolist(), img[0, 1].tolist()
    ([1.0, 1.0, 0.0], [0.5, 0.5, 0.5])
    """
    W = np.asarray(W, dtype=float)
    if W.ndim != 3 or W.shape[0] != 3:
        raise ValueError(f"rgb_frame takes 3 stacked matrices (3 × m × n), got shape {W.shape}")
    s = np.abs(W).max()
    return np.moveaxis((W / s + 1) / 2 if s > 0 else np.full_like(W, 0.5), 0, -1)


def animate(frames: np.ndarray, steps: list[int], lambdas: list[float], path: Path,
            fps: int = 10) -> list[Path]:  # fmt: skip
    """GIF (Pillow) of the RGB frames, ``|λ̂|`` and the step in the title; also an MP4 when
    ffmpeg is on the PATH. Returns the files written."""
    plt = pyplot()
    from matplotlib import animation

    fig, ax = plt.subplots(figsize=(3.6, 3.9), dpi=80)
    im = ax.imshow(rgb_frame(frames[0]), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    title = ax.set_title("")

    def draw(i: int):
        im.set_data(rgb_frame(frames[i]))
        title.set_text(f"step {steps[i]}   |λ̂| = {abs(lambdas[i]):.4f}")
        return im, title

    anim = animation.FuncAnimation(fig, draw, frames=len(frames), blit=False)
    written = [path]
    anim.save(path, writer=animation.PillowWriter(fps=fps))
    if shutil.which("ffmpeg"):
        mp4 = path.with_suffix(".mp4")
        anim.save(mp4, writer=animation.FFMpegWriter(fps=fps))
        written.append(mp4)
    plt.close(fig)
    return written


def rgb_key(ax: Any, fontsize: float = 8) -> None:
    """The key of an `rgb_frame` image, below it: which matrix each channel shows, and what
    grey, black and white mean (the scale is ±max |W|)."""
    from matplotlib.patches import Patch

    entries = [("red: W_r", (1, 0.5, 0.5)), ("green: W_g", (0.5, 1, 0.5)),
               ("blue: W_b", (0.5, 0.5, 1)), ("grey: all three agree", (0.5, 0.5, 0.5))]  # fmt: skip
    ax.legend(handles=[Patch(facecolor=c, edgecolor="k", lw=0.4, label=t) for t, c in entries],
              loc="upper center", bbox_to_anchor=(0.5, -0.02), ncols=2, fontsize=fontsize,
              frameon=False, handlelength=1.2, columnspacing=1.0,
              title="entry > 0: bright, < 0: dark (scale ±max |W|)",
              title_fontsize=fontsize)  # fmt: skip


def save_frame(
    W: np.ndarray, step: int, lam: float, path: Path, fmt: str = "png", dpi: int = 100
) -> Path:
    """One frame of the animation as a PNG, with the key of its colours (`rgb_key`)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.8, 4.6), dpi=100)
    ax.imshow(rgb_frame(W), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"skip weights at step {step}   |λ̂| = {abs(lam):.4f}", fontsize=10)
    rgb_key(ax)
    return save(fig, path, fmt, dpi)


def _col(rows: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in rows])


def plot_lambda_r2(
    rows, steps_rows, spectrum, path: Path, fmt: str = "png", dpi: int = 100
) -> Path:
    """|λ̂| (batch and probe; with K outputs the K Ritz values |μ̂_i| on the probe) against the
    moduli of the true eigenvalues, 1 − R², and how linear the learned function is."""
    from matplotlib.lines import Line2D

    plt = pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(7, 8.5), sharex=True)
    s, sb = _col(rows, "step"), _col(steps_rows, "step")
    k = sum(1 for name in rows[0] if name.startswith("ritz") and name.endswith("_real"))
    if k > 1:  # K outputs: each Ritz value's modulus, not only the first
        learned = [np.hypot(_col(rows, f"ritz{i}_real"), _col(rows, f"ritz{i}_imag"))
                   for i in range(k)]  # fmt: skip
        for i, values in enumerate(learned):
            ax1.plot(s, values, lw=1.5, label=f"|μ̂_{i + 1}| (probe)")
    else:
        learned = [np.abs(_col(rows, "lambda"))]
        ax1.plot(sb, np.abs(_col(steps_rows, "lambda_batch")), lw=0.4, alpha=0.4,
                 label="|λ̂| (batch)")  # fmt: skip
        ax1.plot(s, learned[0], lw=1.5, label="|λ̂| (probe)")
    seen: set[float] = set()
    for mu, d in zip(spectrum.values[:12], spectrum.degrees[:12], strict=True):
        key = round(abs(mu), 9)
        if key in seen:
            continue
        seen.add(key)
        ax1.axhline(abs(mu), color="k" if d == 1 else "tab:red", lw=0.6,
                    ls="-" if abs(mu.imag) < 1e-9 else ":")  # fmt: skip
    ax1.set_ylabel("modulus")
    tail = min(values[len(rows) // 5 :].min() for values in learned)
    ax1.set_ylim(min(abs(spectrum.values[11]), tail) - 0.05, abs(spectrum.values[0]) + 0.05)
    ax1.set_title("learned eigenvalues against the exact |μ|", fontsize=10)
    exact = [Line2D([], [], color=c, lw=0.8, ls=ls, label=f"|μ|, degree {d}, {kind}")
             for d, c in ((1, "k"), (2, "tab:red"))
             for kind, ls in (("real", "-"), ("complex", ":"))]  # fmt: skip
    handles = ax1.get_legend_handles_labels()[0] + exact
    ax1.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
               frameon=False)  # fmt: skip
    ax2.semilogy(sb, np.maximum(1 - _col(steps_rows, "r2_batch"), 1e-8), lw=0.4, alpha=0.4,
                 label="batch")  # fmt: skip
    ax2.semilogy(s, np.maximum(1 - _col(rows, "r2"), 1e-8), lw=1.5, label="probe")
    ax2.set_ylabel("1 − R²")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax3.plot(s, _col(rows, "var_degree1"), label="variance of N\nexplained by degree 1")
    what = "linear part" if k <= 1 else "the outputs' linear span"
    ax3.plot(s, _col(rows, "cos_top1"), ls="--", label=f"cos({what},\neigenvector of max Re μ₁)")
    ax3.set_ylim(0, 1.02)
    ax3.set_ylabel("share / cosine")
    ax3.set_xlabel("step")
    ax3.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


def plot_singular_values(
    frames: np.ndarray, steps: np.ndarray, rows, path: Path, fmt: str = "png", dpi: int = 100
) -> Path:
    """The 8 largest singular values of each skip matrix over time, and the effective rank."""
    plt = pyplot()
    s = np.linalg.svd(frames.astype(float), compute_uv=False)  # records × 3 × m
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    for c, (ax, colour) in enumerate(
        zip(axes[:3], ("tab:red", "tab:green", "tab:blue"), strict=True)
    ):
        ax.semilogy(steps, s[:, c, :8], color=colour, lw=1)
        ax.set_title(f"σ_i(W_{'rgb'[c]}), i ≤ 8")
        ax.set_xlabel("step")
    for name, colour in zip("rgb", ("tab:red", "tab:green", "tab:blue"), strict=True):
        axes[3].plot(
            _col(rows, "step"), _col(rows, f"erank_{name}"), color=colour, label=f"W_{name}"
        )
    axes[3].set_title("effective rank exp H(σ/Σσ)")
    axes[3].set_xlabel("step")
    axes[3].legend()
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


def plot_differences(rows, path: Path, fmt: str = "png", dpi: int = 100) -> Path:
    """‖W_i − W_j‖_F / ‖W‖ over time."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for pair in ("rg", "gb", "rb"):
        ax.plot(_col(rows, "step"), _col(rows, f"diff_{pair}"), label=f"W_{pair[0]} − W_{pair[1]}")
    ax.axhline(np.sqrt(2), color="k", lw=0.5, ls=":")
    ax.set_ylim(bottom=0)
    ax.set_title("relative differences ‖W_i − W_j‖ / ‖W‖ (√2: independent)", fontsize=9)
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


def ritz_values(rows: list[dict[str, Any]]) -> np.ndarray:
    """The Ritz values of each metrics row (records × K, complex)."""
    k = sum(1 for key in rows[0] if key.startswith("ritz") and key.endswith("_real"))
    return np.array([[complex(float(r[f"ritz{i}_real"]), float(r[f"ritz{i}_imag"]))
                      for i in range(k)] for r in rows])  # fmt: skip


def plot_ritz(rows, spectrum, path: Path, fmt: str = "png", dpi: int = 100) -> Path:
    """The learned Ritz values in the complex plane over training (colour: step), on the exact
    eigenvalues of degree 1 (black) and 2 (red); the final ones marked ×. Zoomed on the right
    end of the spectrum, where the learned values go."""
    plt = pyplot()
    values = ritz_values(rows)
    steps = _col(rows, "step")
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    late = values[len(values) // 10 :].ravel()
    lo = min(1.2, float(np.quantile(late.real, 0.05))) - 0.05
    top = min(1.2, max(0.3, float(np.abs(late.imag).max()) + 0.1))
    for d, colour, size in ((2, "tab:red", 14), (1, "k", 30)):
        mu = spectrum.values[spectrum.degrees == d]
        mu = mu[(mu.real >= lo) & (np.abs(mu.imag) <= top)]
        ax.scatter(mu.real, mu.imag, s=size, facecolors="none", edgecolors=colour, lw=1,
                   label=f"exact, degree {d}", zorder=3)  # fmt: skip
    for i in range(values.shape[1]):
        sc = ax.scatter(values[:, i].real, values[:, i].imag, c=steps, cmap="viridis", s=6,
                        alpha=0.6, label="Ritz values (colour: step)" if i == 0 else None)  # fmt: skip
    ax.scatter(values[-1].real, values[-1].imag, marker="x", s=70, color="tab:blue",
               label="final Ritz values", zorder=4)  # fmt: skip
    fig.colorbar(sc, ax=ax, label="step", pad=0.02)
    ax.set_xlim(lo, 2.02)
    ax.set_ylim(-top, top)
    ax.axhline(0, color="grey", lw=0.4)
    ax.set_xlabel("Re μ")
    ax.set_ylabel("Im μ")
    ax.set_title(f"K = {values.shape[1]}: learned Ritz values over training vs the exact spectrum",
                 fontsize=9)  # fmt: skip
    ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


def plot_spectrum(spectrum, lam: float, path: Path, fmt: str = "png", dpi: int = 100) -> Path:
    """True eigenvalues (degree 1 and 2) in the complex plane, and the learned λ̂."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for d, colour in ((2, "tab:red"), (1, "k")):
        mu = spectrum.values[spectrum.degrees == d]
        ax.scatter(mu.real, mu.imag, s=10 if d == 2 else 22, color=colour, label=f"degree {d}")
    ax.plot(2 * np.cos(np.linspace(0, 2 * np.pi, 200)), 2 * np.sin(np.linspace(0, 2 * np.pi, 200)),
            color="grey", lw=0.5)  # fmt: skip
    ax.scatter([lam], [0], marker="x", s=80, color="tab:blue", label="λ̂ (learned)")
    ax.set_aspect("equal")
    ax.set_xlabel("Re μ")
    ax.set_ylabel("Im μ")
    ax.set_title("spectrum of T on harmonics of degree ≤ 2 (|μ| ≤ 2)", fontsize=9)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


def all_plots(out: Path, rows, steps_rows, frames: np.ndarray, spectrum, summary, nframes: int,
              fmt: str = "png", dpi: int = 100) -> list[Path]:  # fmt: skip
    """Every figure of one run, and the animation: ``nframes`` records spaced quadratically
    in time, denser early, where the weights change most. Returns the files written."""
    steps = np.array([int(r["step"]) for r in rows])
    lambdas = [r["lambda"] for r in rows]
    spacing = np.linspace(0, 1, min(nframes, len(rows))) ** 2 * (len(rows) - 1)
    pick = np.unique(spacing.round().astype(int))
    kw: dict[str, Any] = {"fmt": fmt, "dpi": dpi}
    written = animate(frames[pick], steps[pick].tolist(), [lambdas[i] for i in pick],
                      out / "animation.gif")  # fmt: skip
    written += [
        save_frame(frames[-1], int(steps[-1]), lambdas[-1], out / "frame", **kw),
        plot_lambda_r2(rows, steps_rows, spectrum, out / "lambda_r2", **kw),
        plot_singular_values(frames, steps, rows, out / "singular_values", **kw),
        plot_differences(rows, out / "differences", **kw),
        plot_spectrum(spectrum, summary["lambda"], out / "spectrum", **kw),
        plot_ritz(rows, spectrum, out / "ritz", **kw),
    ]
    return written


def plot_grid(runs: list[Path], path: Path, ncols: int = 4, fmt: str = "png",
              dpi: int = 100) -> Path:  # fmt: skip
    """Several seeds: per seed the last RGB frame and |λ̂| (probe) with the dominant |μ|."""
    plt = pyplot()
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(3.4 * ncols, 5.8 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    for i, run in enumerate(runs):
        summary = json.loads((run / "summary.json").read_text())
        with (run / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        W = np.load(run / "skip_weights.npz")["W"][-1]
        top, bottom = axes[2 * (i // ncols), i % ncols], axes[2 * (i // ncols) + 1, i % ncols]
        top.set_visible(True)
        bottom.set_visible(True)
        top.imshow(rgb_frame(W), interpolation="nearest")
        top.set_xticks([])
        top.set_yticks([])
        kind = summary["completion"]["kind"]
        top.set_title(f"seed {summary['seed']}: R² = {summary['r2']:.4f}\ncompletion: {kind.replace('_', ' ')}",
                      fontsize=12)  # fmt: skip
        bottom.plot(_col(rows, "step"), np.abs(_col(rows, "lambda")), lw=1)
        bottom.axhline(summary["dominant"]["modulus"], color="k", lw=0.6, ls="--")
        bottom.set_ylim(1.0, 2.0)
        bottom.set_title(f"|λ̂| = {summary['abs_lambda']:.3f} (dashed: max |μ|)", fontsize=11)
        bottom.set_xlabel("step", fontsize=11)
        bottom.tick_params(labelsize=10)
    fig.tight_layout()
    return save(fig, path, fmt, dpi)


def plot_two_solutions(one: Path, two: Path, path: Path, fmt: str = "png", dpi: int = 100) -> Path:
    """The "two solutions" of a complex-pair seed: left, the angle of the one-output run's
    linear part in the pair's plane over its last steps (unwrapped), beside the slope −ḡβ
    predicted from the measured gain; middle, |λ̂| of that run over the same steps (f and −f
    are one solution, so it swings with half the rotation period); right, R² of the one-output
    run and the multi-output R² of the K = 2 run over training. ``one`` and ``two`` are run
    folders (tail.csv, metrics.csv, summary.json)."""
    plt = pyplot()
    with (one / "tail.csv").open() as fh:
        tail = list(csv.DictReader(fh))
    s1 = json.loads((one / "summary.json").read_text())
    rot = s1["rotation"]
    steps = _col(tail, "step")
    angle = np.unwrap(_col(tail, "angle_top1"))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    ax1.plot(steps, angle, label=f"measured, ω = {rot['angular_velocity']:+.3f} rad/step")
    pred = angle[0] + rot["predicted_angular_velocity"] * (steps - steps[0])
    ax1.plot(
        steps, pred, ls="--", label=f"predicted −ḡβ = {rot['predicted_angular_velocity']:+.3f}"
    )
    ax1.set_xlabel("step")
    ax1.set_ylabel("angle in the pair's plane (rad)")
    ax1.set_title(f"K = 1, seed {s1['seed']}: the linear part turns", fontsize=9)
    ax1.legend(fontsize=8, loc="best")
    ax2.plot(steps, np.abs(_col(tail, "lambda")))
    ax2.set_xlabel("step")
    ax2.set_ylabel("|λ̂| (monitor probe)")
    ax2.set_title(f"period {rot['period_steps']:.0f} steps; |λ̂| swings at half of it", fontsize=9)
    for run, label, ls in ((one, "K = 1: R²", "-"), (two, "K = 2: multi-output R²", "--")):
        with (run / "metrics.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        ax3.semilogy(_col(rows, "step"), np.maximum(1 - _col(rows, "r2"), 1e-6), ls=ls, label=label)
    ax3.set_xlabel("step")
    ax3.set_ylabel("1 − R² (probe)")
    ax3.set_title("the plane settles, the line in it does not", fontsize=9)
    ax3.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save(fig, path, fmt, dpi)
