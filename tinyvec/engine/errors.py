"""The engine's own error, shared by the losses and the layers."""


class DimensionMismatch(ValueError):
    """An input of the wrong shape for a layer or a loss (the message names it and the sizes)."""
