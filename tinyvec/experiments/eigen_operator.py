"""Moved to :mod:`tinyvec.analysis.eigen_operator` (it is library maths, not a study); this
name stays so that existing imports keep working."""

from tinyvec.analysis.eigen_operator import *  # noqa: F403
