"""Optimisation: rules (`rules`), gradient / setup / update and the atomic commit
(`training`), the training loop (`loop`), Hessian-vector products (`curvature`), and the
helpers around them: mini-batches (`batches`), learning-rate schedules (`schedules`), and
adjusting, freezing and thawing a state's rules (`adjust`). `tv.compile` is the fast road's
(`tinyvec.fast`)."""

from . import schedules
from .adjust import Frozen, adjust, freeze, thaw
from .batches import Batches, StackedBatches, batches, stack_batches
from .curvature import hvp
from .loop import train
from .rules import (
    Adam,
    AdamW,
    ClipNorm,
    Descent,
    Momentum,
    Nesterov,
    OptimiserChain,
    Rule,
    WeightDecay,
)
from .stack import stack, unstack
from .training import (
    NonFiniteLoss,
    NonFiniteStep,
    OptState,
    StepTransform,
    Tree,
    gradient,
    setup,
    update,
    withgradient,
)

__all__ = [
    "Adam",
    "AdamW",
    "Batches",
    "ClipNorm",
    "Descent",
    "Frozen",
    "Momentum",
    "Nesterov",
    "NonFiniteLoss",
    "NonFiniteStep",
    "OptState",
    "OptimiserChain",
    "Rule",
    "StepTransform",
    "Tree",
    "WeightDecay",
    "adjust",
    "batches",
    "freeze",
    "gradient",
    "hvp",
    "schedules",
    "setup",
    "stack",
    "stack_batches",
    "thaw",
    "train",
    "unstack",
    "update",
    "withgradient",
]
