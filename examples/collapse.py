"""Neural collapse on the digits data set, as a script: ``python examples/collapse.py --quick``
(any option of ``tinyvec collapse --help`` works here too; needs scikit-learn and matplotlib).

The metrics themselves, for any classifier whose last Dense layer reads the features::

    from tinyvec.analysis import neural_collapse
    logits = model(X)                       # X: features × samples
    last = tv.dense_layers(model)[-1]       # its input O^{L-1} is the feature matrix H
    nc = neural_collapse(last.input, labels, last.weight, last.bias)   # NC1 … NC4
"""

import sys

from tinyvec.experiments.collapse import main

if __name__ == "__main__":
    sys.exit(main())
