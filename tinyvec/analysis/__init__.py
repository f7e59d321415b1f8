"""Analysis of training: the vector analysis of each step, neural-collapse metrics, and a
monitor that tells when training is complete (science.md §1, §5, §6)."""

from .collapse import neural_collapse
from .completion import CompletionMonitor, classify_trajectory
from .vector import (
    VectorRecorder,
    analyze_step,
    batch_coherence,
    decompose,
    effective_rank,
    per_sample_grad_norms,
    step_summary,
)
