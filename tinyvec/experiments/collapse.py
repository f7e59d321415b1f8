"""``tinyvec collapse``: neural collapse (science.md §5) of an MLP trained on scikit-learn's
bundled digits data set (8 × 8 images, 10 classes, 1797 samples, no download) to zero training
error and beyond, once with cross-entropy and once with MSE on one-hot targets.

Setup (ours): pixels / 16 (``--standardize``: each pixel standardised), a stratified 75/25
train/test split whose training part is then balanced (the first n_min samples of each class,
1310 of 1347 for seed 0; ``--unbalanced`` keeps them all), a ReLU MLP 64 → 128 → … → 128 → 10
with 8 (cross-entropy) or 5 (MSE) hidden layers, the last of which gives the features h (the
input of the last Dense layer, the classifier W, b). Minibatches of 64, SGD with momentum 0.9
on gradients clipped to norm 1 (per array), weight decay only on the last ``decay_layers``
Dense layers (the classifier W, b for MSE; W, b and the last hidden layer for cross-entropy),
step size divided by 10 at half and at three quarters of the 600 epochs. After every epoch (and
at initialisation, epoch 0) the NC metrics of the training set and the train and test errors
are recorded. ``--quick`` trains for 60 epochs.

Why these settings (tuned on seed 0, checked on seeds 1 and 2): weight decay on every layer
pulls the class means towards a low-rank configuration (their effective rank falls below
C − 1 = 9 as the decay grows) and leaves NC2 at 0.05-0.3; decay on the last layer(s) only,
strong enough (5e-3 to 1e-2), lets the features keep C − 1 dimensions while the classifier is
pushed towards a simplex ETF. A constant step size leaves the features jittering (SGD noise):
the step decay is what lets them settle; a deeper network helps cross-entropy. With MSE every
metric then falls tenfold on seeds 0-2; with cross-entropy all but the equinorm of the class
means (NC2, 2-6×) do on seeds 0 and 1, and NC3 only 8× on seed 2 (see the summary).

Output folder (``--out``, default ``runs/collapse``): ``collapse_<loss>.csv``,
``collapse.png`` and ``summary.md`` with the acceptance check: each metric from epoch 1 to the
last epoch should fall at least tenfold.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import tinyvec as tv

from ..analysis import effective_rank, neural_collapse
from .collapse_report import METRICS, acceptance, write, write_seeds
from .common import (
    add_sweep_flags,
    config_of,
    figure_kw,
    parse,
    run_folder,
    study_parser,
    study_sweep,
)
from .flags import nonnegative_float, nonnegative_int, positive_float, positive_int
from .sweep import all_but_seed, stackable, stacked_or_alone
from .tables import write_json

LOSSES = {"crossentropy": tv.crossentropy, "mse": tv.mse}  # of (ŷ, y)
# per loss: hidden layers, step size, weight decay and how many of the last Dense layers it
# applies to (tuned on seed 0, see the module docstring)
DEFAULTS: dict[str, dict[str, Any]] = {
    "crossentropy": {"depth": 8, "lr": 0.1, "wd": 5e-3, "decay_layers": 2},
    "mse": {"depth": 5, "lr": 0.5, "wd": 1e-2, "decay_layers": 1},
}


def load_digits_split(
    seed: int, standardize: bool = False, balanced: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test), X features × samples: pixels / 16 in [0, 1], then
    (``standardize``) each pixel centred and divided by its training-set standard deviation
    + 0.1 (the + 0.1 keeps the always-blank border pixels finite). ``balanced``: keep the first
    n_min training samples of each class (n_min the smallest class count), since unequal
    class sizes alone make the class means unequal in norm."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise RuntimeError(
            'tinyvec collapse needs scikit-learn: pip install "tinyvec-autograd[experiments]"'
        ) from e
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(
        X / 16.0, y, test_size=0.25, stratify=y, random_state=seed
    )
    if balanced:
        n_min = np.bincount(ytr).min()
        keep = np.sort(np.concatenate([np.flatnonzero(ytr == c)[:n_min] for c in np.unique(y)]))
        Xtr, ytr = Xtr[keep], ytr[keep]
    Xtr, Xte = np.ascontiguousarray(Xtr.T), np.ascontiguousarray(Xte.T)
    if standardize:
        mean, std = Xtr.mean(axis=1, keepdims=True), Xtr.std(axis=1, keepdims=True) + 0.1
        Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    return Xtr, ytr, Xte, yte


def build(seed: int, width: int = 128, depth: int = 5, classes: int = 10, inputs: int = 64) -> Any:
    rng = np.random.default_rng(seed)
    sizes = [inputs] + [width] * depth
    hidden = [tv.Dense(sizes[i], sizes[i + 1], tv.relu, rng=rng) for i in range(depth)]
    return tv.Chain(*hidden, tv.Dense(width, classes, rng=rng))


def measure(model: Any, Xtr: Any, ytr: Any, Xte: Any, yte: Any) -> dict[str, float]:
    """NC metrics of the training set's features, the effective rank of the centred class means
    M (C − 1 = 9 for a simplex ETF) and the train / test errors."""
    classifier = tv.dense_layers(model)[-1]
    with tv.no_grad():
        logits = model(Xtr)
        features = classifier.input
        test_logits = model(Xte)
    nc = neural_collapse(features, ytr, classifier.weight, classifier.bias)
    means = np.stack([features[:, ytr == c].mean(axis=1) for c in range(logits.shape[0])], axis=1)
    nc["rank_M"] = effective_rank(means - features.mean(axis=1, keepdims=True))
    nc["train_error"] = float(np.mean(np.argmax(logits, axis=0) != ytr))
    nc["test_error"] = float(np.mean(np.argmax(test_logits, axis=0) != yte))
    return nc


def train_run(
    loss: str, data: Sequence[np.ndarray], *, seed: int = 0, **settings: Any
) -> list[dict[str, Any]]:
    """Train one model with ``loss`` ("crossentropy" or "mse"); one row per epoch (0: at
    initialisation) with the loss, the NC metrics and the errors (`train_runs` of one run)."""
    return train_runs(loss, [data], seeds=[seed], **settings)[0]


def train_runs(
    loss: str, datas: Sequence[Sequence[np.ndarray]], *, seeds: Sequence[int], epochs: int = 600,
    width: int = 128, depth: int | None = None, batch: int = 64, lr: float | None = None,
    wd: float | None = None, decay_layers: int | None = None, momentum: float = 0.9,
    progress: bool = False,
) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Train one model per seed with ``loss`` ("crossentropy" or "mse"), seed ``seeds[e]`` on
    data ``datas[e]``; per run one row per epoch (0: at initialisation) with the loss, the NC
    metrics and the errors. Several runs train as one stack of models (`tv.stack`), each
    reading its own batches (`tv.stack_batches`) and taking exactly the steps of its run
    alone; its rows are measured on it alone (`tv.unstack`). Weight decay ``wd`` applies
    to the last ``decay_layers`` Dense layers only (1: the classifier W, b). ``progress``:
    a progress bar over the steps."""
    depth = DEFAULTS[loss]["depth"] if depth is None else depth
    lr = DEFAULTS[loss]["lr"] if lr is None else lr
    wd = DEFAULTS[loss]["wd"] if wd is None else wd
    decay_layers = DEFAULTS[loss]["decay_layers"] if decay_layers is None else decay_layers
    if not 0 <= decay_layers <= depth + 1:
        raise ValueError(f"decay_layers must be in 0..{depth + 1} (the Dense layers), got "
                         f"{decay_layers}")  # fmt: skip
    stacked = len(seeds) > 1
    models = [build(seed, width, depth) for seed in seeds]
    model = tv.stack(models) if stacked else models[0]
    descent = tv.Momentum(lr, momentum)  # shared: one step size for every layer
    # clipping each gradient array to norm 1 keeps the first steps of cross-entropy at step size
    # 0.1 from diverging (seeds 1 and 2 did without it); the MSE gradients never reach it
    # (on a stack, ClipNorm clips each member's array alone)
    clip = tv.ClipNorm(1.0)
    plain, decayed = (
        tv.OptimiserChain(clip, descent),
        tv.OptimiserChain(clip, tv.WeightDecay(wd), descent),
    )
    last = len(tv.dense_layers(model))  # the Dense layers are model.layers[0 … last − 1]
    rules = {"model": plain, **{f"model.layers[{k}]": decayed
                                for k in range(last - decay_layers, last)}}  # fmt: skip
    state = tv.setup(rules, model)
    loaders = [tv.batches(Xtr, tv.onehot(ytr, 10), batch, shuffle=True, rng=seed + 1)
               for (Xtr, ytr, *_), seed in zip(datas, seeds, strict=True)]  # fmt: skip
    loader = tv.stack_batches(loaders) if stacked else loaders[0]
    per_epoch = len(loader)  # type: ignore[arg-type]  # (tv.batches have a length)
    # step decay: the step size / 10 after half, / 100 after three quarters of the epochs;
    # epoch e (from 1) is past E/2 from e = ⌊E/2⌋ + 1 on, whose first step is t = ⌊E/2⌋·batches
    schedule = tv.schedules.Step(
        lr, boundaries=((epochs // 2) * per_epoch, (3 * epochs // 4) * per_epoch), factor=0.1
    )

    alone = tv.unstack(model) if stacked else [model]  # each run's model, as it is after a step
    runs = [[{"epoch": 0, "loss": float("nan"), "lr": 0.0, **measure(m, *data)}]
            for m, data in zip(alone, datas, strict=True)]  # fmt: skip
    losses: list[tuple[float, ...]] = []  # of the epoch so far, one per run

    def after_step(step: int, m: Any, value: Any) -> None:
        losses.append(value if stacked else (value,))
        if step % per_epoch == 0:  # the epoch's last step: its row
            if stacked:
                tv.unstack(m, into=alone)
            for e, (rows, member, data) in enumerate(zip(runs, alone, datas, strict=True)):
                rows.append({"epoch": step // per_epoch,
                             "loss": float(np.mean([v[e] for v in losses])),
                             "lr": descent.eta, **measure(member, *data)})  # fmt: skip
            losses.clear()

    tv.train(lambda m, x, y: LOSSES[loss](m(x), y, members=stacked), model, loader, state,
             epochs=epochs, schedule=schedule, progress=progress,
             callbacks=[after_step])  # fmt: skip
    return runs


def settings(args: Any, loss: str) -> dict[str, Any]:
    """depth, lr, wd and decay_layers of ``loss``: the flags where given, else its DEFAULTS."""
    return {key: DEFAULTS[loss][key] if getattr(args, key) is None else getattr(args, key)
            for key in ("depth", "lr", "wd", "decay_layers")}  # fmt: skip


def seed_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One seed of a ``--seeds`` sweep (a `tinyvec.experiments.sweep` function): the epoch
    tables of every loss."""
    return _train_seeds([spec])[0]


def seed_runs(specs: list[dict[str, Any]]) -> list[dict[str, Any] | Exception]:
    """`seed_run` of every spec (they differ only in the seed), each loss's
    runs trained as one stack of models (`train_runs`); the results are `seed_run`'s. Seeds
    whose balanced training sets differ in size (their batches could not be stacked) train
    as separate stacks. When a seed's loss or step is not finite (or its metrics fail), the
    stack stops and its seeds are run again one by one: each gives its result or, in its
    place, the error it gives alone, which the sweep raises after writing the others."""
    return stacked_or_alone(_train_seeds, specs)


def _train_seeds(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`seed_runs`, raising the stack's error."""
    first = specs[0]
    datas = [load_digits_split(s["seed"], standardize=first["standardize"],
                               balanced=first["balanced"]) for s in specs]  # fmt: skip
    groups: dict[int, list[int]] = {}  # training set size → the specs with it
    for i, data in enumerate(datas):
        groups.setdefault(data[0].shape[1], []).append(i)
    results: list[dict[str, Any]] = [{"tables": {}, "seconds": {}, "n_train": data[0].shape[1],
                                      "n_test": data[2].shape[1]} for data in datas]  # fmt: skip
    for group in groups.values():
        for loss, c in first["losses"].items():
            start = time.perf_counter()
            tables = train_runs(loss, [datas[i] for i in group],
                                seeds=[specs[i]["seed"] for i in group], epochs=first["epochs"],
                                width=first["width"], batch=first["batch"],
                                progress=first.get("progress", False), **c)  # fmt: skip
            seconds = (time.perf_counter() - start) / len(group)  # (a stack's time, shared)
            for i, table in zip(group, tables, strict=True):
                results[i]["tables"][loss], results[i]["seconds"][loss] = table, seconds
    return results


stackable(seed_run, seed_runs, all_but_seed)  # the runs of one stack differ in the seed


def parser() -> Any:
    p = study_parser("collapse", __doc__.split("\n\n")[0], out="runs/collapse",
                     quick="60 epochs instead of 600")  # fmt: skip
    p.add_argument("--epochs", type=positive_int, help="epochs (default 600, 60 with --quick)")
    p.add_argument("--width", type=positive_int, default=128, help="hidden width (default 128)")
    p.add_argument("--depth", type=positive_int, help="hidden layers (default: per loss)")
    p.add_argument("--batch", type=positive_int, default=64, help="batch size (default 64)")
    p.add_argument("--losses", default="crossentropy,mse",
                   help="comma-separated: crossentropy, mse (default both)")  # fmt: skip
    p.add_argument("--standardize", action="store_true", help="standardise each pixel")
    p.add_argument("--unbalanced", action="store_true", help="keep every training sample")
    p.add_argument("--lr", type=positive_float, help="step size for every loss (default: per loss)")
    p.add_argument("--wd", type=nonnegative_float,
                   help="weight decay for every loss (default: per loss)")  # fmt: skip
    p.add_argument("--decay-layers", type=nonnegative_int,
                   help="weight decay on the last N Dense layers (default: per loss)")  # fmt: skip
    add_sweep_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = parse(p, argv, needs=["sklearn"])
    losses = [s.strip() for s in args.losses.split(",") if s.strip()]
    if not losses or any(s not in LOSSES for s in losses):
        p.error(f"--losses takes a comma-separated list of {', '.join(LOSSES)}")
    if args.epochs is None:
        args.epochs = 60 if args.quick else 600
    depths = [settings(args, loss)["depth"] for loss in losses]
    if args.decay_layers is not None and args.decay_layers > min(depths) + 1:
        p.error(f"--decay-layers must be in 0..{min(depths) + 1} (the Dense layers)")
    figures = None if args.no_plots else figure_kw(args)
    base = {"epochs": args.epochs, "width": args.width, "batch": args.batch,
            "standardize": args.standardize, "balanced": not args.unbalanced,
            "losses": {loss: settings(args, loss) for loss in losses}}  # fmt: skip
    if args.seeds:
        return main_seeds(args, base, figures)
    with threadpool_limits(limits=1), run_folder(args.out) as out:
        result = seed_run({**base, "seed": args.seed, "progress": not args.quiet})
        for loss, table in result["tables"].items():
            fall = acceptance(table)
            print(f"{loss}: " + ", ".join(f"{k} ÷{fall[k][2]:.3g}" for k in METRICS))
        config = {**base, "seed": args.seed, "n_train": result["n_train"],
                  "n_test": result["n_test"],
                  "losses": {loss: {**c, "seconds": result["seconds"][loss]}
                             for loss, c in base["losses"].items()}}  # fmt: skip
        written = write(result["tables"], config, out, figures)
        write_json(out / "config.json", config_of(args))
    for path in written:
        print(args.out / path.name)
    return 0


def main_seeds(args: Any, base: dict[str, Any], figures: dict[str, Any] | None) -> int:
    """``--seeds``: one run per seed through the sweep runner, and a table of the
    acceptance check over the seeds (`write_seeds`)."""
    specs = [{**base, "seed": s} for s in args.seeds]
    with study_sweep("tinyvec collapse", seed_run, specs, args, desc="seeds") as (out, runs):
        write_seeds(runs, base, args.seeds, out, figures)
    print((args.out / "summary.md").read_text() + f"→ {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
