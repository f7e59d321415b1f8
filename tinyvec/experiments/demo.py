"""``tinyvec demo``: train the seed network (science.md §4's architecture) on a small
regression task and show what tinyvec exposes at every step: O^{k-1}, δ^k and ΔW^k of each
Dense layer, and the identity ΔW^k o^{k-1} + Δb^k = -α(‖o^{k-1}‖²+1) δ^k of a one-sample step.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import tinyvec as tv
from tinyvec.experiments.common import config_of, parse, run_folder, study_parser
from tinyvec.experiments.flags import positive_float, positive_int
from tinyvec.experiments.tables import write_json


def seed_network(h: int = 20, m: int = 40, rng: int = 0) -> tv.Chain:
    """Chain(Dense(h,m,atan), SkipConnection(Dense(m,m,atan),+)×3, Dense(m,3,atan), Dense(3,1))."""
    r = np.random.default_rng(rng)
    return tv.Chain(
        tv.Dense(h, m, tv.atan, rng=r),
        *[tv.SkipConnection(tv.Dense(m, m, tv.atan, rng=r), tv.add) for _ in range(3)],
        tv.Dense(m, 3, tv.atan, rng=r),
        tv.Dense(3, 1, rng=r),
    )


def task(n: int, h: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """y = sin(u·x) + 0.5 cos(v·x) on Gaussian inputs: smooth, and not linear."""
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((2, h)) / np.sqrt(h)
    x = rng.standard_normal((h, n))
    return x, (np.sin(u @ x) + 0.5 * np.cos(v @ x))[None, :]


def main(argv: list[str] | None = None) -> int:
    p = study_parser("demo", __doc__.split("\n\n")[0], out="runs/demo",
                     quick="5 epochs instead of 30")  # fmt: skip
    p.add_argument("--epochs", type=positive_int, help="epochs (default 30, 5 with --quick)")
    p.add_argument("--batch", type=positive_int, default=20, help="batch size (default 20)")
    p.add_argument("--lr", type=positive_float, default=0.05, help="step size (default 0.05)")
    args = parse(p, argv, plot_needs=())  # demo draws no figure
    if args.epochs is None:
        args.epochs = 5 if args.quick else 30
    with threadpool_limits(limits=1), run_folder(args.out) as out:
        report(args, out)
    print(f"\nmodel saved to {args.out / 'model.npz'}")
    return 0


def report(args: Any, out: Path) -> None:
    """Train, print what each layer exposes, and save the model and config.json into ``out``."""
    model = seed_network(rng=args.seed)
    print(model)
    n = 400
    x, y = task(n, seed=args.seed)
    batches = tv.batches(x, y, args.batch)  # column slices, in order
    state = tv.setup(tv.Descent(args.lr), model)
    recorder = tv.Recorder()
    loss = lambda m, x, y: tv.mse(m(x), y)  # noqa: E731
    history = tv.train(
        loss, model, batches, state, epochs=args.epochs, recorder=recorder,
        progress=not args.quiet,
    )  # fmt: skip
    print(f"\nmse: first epoch {np.mean(history[: len(batches)]):.4f}, "
          f"last epoch {np.mean(history[-len(batches):]):.4f}")  # fmt: skip

    last_batch = n - (len(batches) - 1) * args.batch
    print("\nlast step, per Dense layer k (batch of", last_batch, "samples):")
    print("  k  shape       ‖O^{k-1}‖   ‖δ^k‖      ‖ΔW^k‖     cos(ΔW O + Δb, -δ)")
    last = max(r["step"] for r in recorder.rows)
    for r in (r for r in recorder.rows if r["step"] == last):
        d = tv.dense_layers(model)[r["layer"] - 1]
        print(f"  {r['layer']}  {d.weight.shape!s:10}  {r['o_norm']:9.3g}   "
              f"{r['delta_norm']:9.3g}  {r['dW_norm']:9.3g}  {r['cos_dA_delta']:8.4f}")  # fmt: skip

    # One sample, plain descent: each layer's own update moves A^k straight along -δ^k.
    alpha = args.lr
    _, grads = tv.withgradient(lambda m: tv.mse(m(x[:, :1]), y[:, :1]), model)
    tv.update(tv.setup(tv.Descent(alpha), model), model, grads)
    print("\none-sample step: max |ΔW o + Δb + α(‖o‖²+1)δ| per layer (0 up to rounding):")
    for k, d in enumerate(tv.dense_layers(model), start=1):
        o, delta = d.input, d.delta
        own = d.dW @ o + d.db[:, None]
        err = np.max(np.abs(own + alpha * (np.sum(o * o) + 1) * delta))
        print(f"  layer {k}: {err:.2e}")
    tv.save(out / "model.npz", model)
    write_json(out / "config.json", config_of(args))


if __name__ == "__main__":
    sys.exit(main())
