"""The studies' one error type, below everything else in `tinyvec.experiments`."""


class UsageError(Exception):
    """A bad argument, found before any work (the command exits with status 2)."""
