"""Optimisation: rules (`rules`), gradient / setup / update (`training`), the compiled step
(`compiled`) and the training loop (`loop`)."""

from .compiled import CompiledStep, compile_step
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
    "CompiledStep",
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
    "compile_step",
    "gradient",
    "setup",
    "train",
    "update",
    "withgradient",
]
