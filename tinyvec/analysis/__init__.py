"""Analysis of training: the vector analysis of each step, neural-collapse metrics, and a
monitor that tells when training is complete (science.md §1, §5, §6)."""

from .completion import CompletionMonitor, classify_trajectory
