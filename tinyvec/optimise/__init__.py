"""Optimisation: rules (`rules`), gradient / setup / update and the atomic commit
(`training`), the training loop (`loop`) and Hessian-vector products (`curvature`). `tv.compile` is the fast road's
(`tinyvec.fast`)."""

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
    "ClipNorm",
    "Descent",
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
    "gradient",
    "hvp",
    "setup",
    "stack",
    "train",
    "unstack",
    "update",
    "withgradient",
]
