"""Plots (matplotlib, an optional extra: pip install "tinyvec[experiments]"), one module per study."""
