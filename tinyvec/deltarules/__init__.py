"""δ-rules: rewrite each Dense layer's error vectors δ^k into δ̃^k before its update
(science.md §2-3, seed 004).

- `Compensation(kappa, variant)`: cancel the share κ of the move that layer k inherits from
  the training of the layers before it;
- `Orthogonalization(eps)`: let every sample of a batch move as if trained alone;
- `OrthogonalizationOverTime(memory, eps)`: let a sample's step leave the pre-activations of
  the last ``memory`` samples where they are (across steps, as orthogonal weight modification).

``tv.setup(rule, model, delta=[Compensation(0.2), Orthogonalization()])`` applies them in the
order given, as one step transform (`DeltaStep`) that rewrites the gradients `tv.update` then
steps with; each Dense layer shows the δ̃^k it was updated with in ``delta_used`` (``delta``
stays δ^k). Optimisers: Descent,
Momentum, Nesterov (adaptive ones such as Adam are refused, see `base.step_size`).
"""

from .base import LayerContext, step_size
from .compensation import Compensation
from .orthogonalization import Orthogonalization
from .orthogonalization_over_time import OrthogonalizationOverTime
from .rule import DeltaRule, MemoryRule
from .sweep import DeltaStep, check_rules

__all__ = [
    "Compensation",
    "DeltaRule",
    "DeltaStep",
    "LayerContext",
    "MemoryRule",
    "Orthogonalization",
    "OrthogonalizationOverTime",
    "check_rules",
    "step_size",
]
