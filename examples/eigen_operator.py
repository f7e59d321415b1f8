"""The eigen-operator experiment (seed 001): a network learns an eigenfunction of
f ↦ f(A·) + f(B·) by gradient ascent on R² against targets it makes itself.

    python examples/eigen_operator.py                 # default seed 1 → runs/eigen
    python examples/eigen_operator.py --seeds 0-7     # several seeds in parallel
    python examples/eigen_operator.py --help

Same as ``tinyvec eigen``; see tinyvec/experiments/eigen_run.py for what is measured.
"""

import sys

from tinyvec.experiments.eigen import main

if __name__ == "__main__":
    sys.exit(main())
