"""tinyvec: a transparent reverse-mode autograd engine with Flux-style layers that expose the
quantities of vector analysis (O^{k-1}, A^k, δ^k, ΔW^k) at every step.

Map of the package:

The reference road, the definition of every number:

- `engine`: Tensor and tracing, the derivative table (`ops`), activations, losses;
- `layers`: the layer protocol and the walk over a model, Dense, Chain / SkipConnection /
  Parallel, initialisers;
- `optimise`: optimiser rules, gradient / setup / update (the atomic commit) / train, and
  the Hessian-vector product `hvp` (gradients of gradients);
  `stack` / `unstack` (E models trained as one, a member axis);
  `batches` / `stack_batches`, `schedules`, `adjust` / `freeze` / `thaw`;

The fast road, `fast` (the same numbers, sooner; ``with tv.fast.off():`` turns it off), which
the reference road knows only through `seam`. On top of both:

- `gradcheck` (the engine's gradient against finite differences);
- `deltarules`: δ-rules (compensation, orthogonalization of activation vectors);
- `analysis`: vector analysis of a step, neural collapse, training completion;
- `experiments` (the ``tinyvec`` commands) and `plots`;
- `recorder`, `io` (save / load), `devices` (to / gpu / cpu / f32 / f64), `backend`.
"""

from pathlib import Path as _Path

from . import analysis, fast, ops
from .deltarules import Compensation, DeltaRule, Orthogonalization, OrthogonalizationOverTime
from .devices import cpu, f32, f64, gpu, to
from .engine import (
    Activation,
    Tensor,
    atan,
    crossentropy,
    gelu,
    identity,
    leakyrelu,
    mse,
    no_grad,
    onehot,
    r2,
    relu,
    sigmoid,
    softplus,
    tanh,
)
from .engine.ops import concat, vcat
from .fast import compile_step as compile  # noqa: A004, RUF100 - tv.compile, as torch.compile
from .gradcheck import GradcheckError, GradcheckReport, gradcheck
from .io import load, save
from .layers import (
    Chain,
    Dense,
    DimensionMismatch,
    Layer,
    Parallel,
    SkipConnection,
    activations,
    add,
    dense_layers,
    fmap,
    glorot_normal,
    glorot_uniform,
    kaiming_normal,
    mul,
    scaled,
    seed,
    show,
    trainables,
)
from .optimise import (
    Adam,
    AdamW,
    ClipNorm,
    Descent,
    Momentum,
    Nesterov,
    NonFiniteLoss,
    NonFiniteStep,
    OptimiserChain,
    OptState,
    Rule,
    Tree,
    WeightDecay,
    adjust,
    batches,
    freeze,
    gradient,
    hvp,
    schedules,
    setup,
    stack,
    stack_batches,
    thaw,
    train,
    unstack,
    update,
    withgradient,
)
from .recorder import Recorder

# The version, written here only: pyproject.toml reads it (dynamic), `tinyvec --version` prints it.
__version__ = "0.2.0"


def science_notes_path() -> _Path:
    """Where the installed copy of science.md is: the formulas that docstrings and help texts
    cite as "science.md §N" (docs/science.md in a checkout).

    >>> science_notes_path().name
    'science.md'
    """
    return _Path(__file__).with_name("science.md")


# what `from tinyvec import *` gives and what help(tinyvec) lists
__all__ = [
    "Activation",
    "Adam",
    "AdamW",
    "Chain",
    "ClipNorm",
    "Compensation",
    "DeltaRule",
    "Dense",
    "Descent",
    "DimensionMismatch",
    "GradcheckError",
    "GradcheckReport",
    "Layer",
    "Momentum",
    "Nesterov",
    "NonFiniteLoss",
    "NonFiniteStep",
    "OptState",
    "OptimiserChain",
    "Orthogonalization",
    "OrthogonalizationOverTime",
    "Parallel",
    "Recorder",
    "Rule",
    "SkipConnection",
    "Tensor",
    "Tree",
    "WeightDecay",
    "activations",
    "add",
    "adjust",
    "analysis",
    "atan",
    "batches",
    "compile",
    "concat",
    "cpu",
    "crossentropy",
    "dense_layers",
    "f32",
    "f64",
    "fast",
    "fmap",
    "freeze",
    "gelu",
    "glorot_normal",
    "glorot_uniform",
    "gpu",
    "gradcheck",
    "gradient",
    "hvp",
    "identity",
    "kaiming_normal",
    "leakyrelu",
    "load",
    "mse",
    "mul",
    "no_grad",
    "onehot",
    "ops",
    "r2",
    "relu",
    "save",
    "scaled",
    "schedules",
    "science_notes_path",
    "seed",
    "setup",
    "show",
    "sigmoid",
    "softplus",
    "stack",
    "stack_batches",
    "tanh",
    "thaw",
    "to",
    "train",
    "trainables",
    "unstack",
    "update",
    "vcat",
    "withgradient",
]
