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
from .training import NonFiniteLoss, OptState, Tree, gradient, setup, train, update, withgradient

__all__ = [
    "Adam",
    "AdamW",
    "ClipNorm",
    "Descent",
    "Momentum",
    "Nesterov",
    "NonFiniteLoss",
    "OptState",
    "OptimiserChain",
    "Rule",
    "Tree",
    "WeightDecay",
    "gradient",
    "setup",
    "train",
    "update",
    "withgradient",
]
