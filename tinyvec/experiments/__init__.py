"""Experiments, each a module with ``main(argv) -> int`` run by the ``tinyvec`` command."""
