"""The δ-compensation study of seed 004, as a script: ``python examples/compensation.py
--quick`` (any option of ``tinyvec compensation --help`` works here too).

The δ-rules themselves, in four lines::

    from tinyvec.deltarules import Compensation, Orthogonalization
    state = tv.setup(tv.Descent(0.05), model, delta=[Compensation(0.2), Orthogonalization()])
    loss, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
    tv.update(state, model, grads)       # model[0].delta_used: the δ̃ each layer was updated with
"""

import sys

from tinyvec.experiments.compensation import main

if __name__ == "__main__":  # the study spawns worker processes, which import this file
    sys.exit(main())
