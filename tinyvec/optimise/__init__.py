"""Optimisation: rules (`rules`) and the training loop (`training`)."""

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
from .training import (
    NonFiniteLoss,
    NonFiniteStep,
    OptState,
    StepTransform,
    Tree,
    gradient,
    setup,
    train,
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
    "setup",
    "train",
    "update",
    "withgradient",
]
