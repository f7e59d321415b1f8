"""Errors at convergence: stagnation, the best step size, the ratio of means."""

import math

from tinyvec.analysis.convergence import best_eta, ratio_of_means, stagnated


def test_stagnation():
    assert stagnated([1.0] * 40, var_y=1.0)
    assert not stagnated([1e-5] * 40, var_y=1.0)  # flat, but below the target
    assert not stagnated([1.0] * 30 + [0.5] * 10, var_y=1.0)


def test_best_eta_skips_step_sizes_where_a_seed_diverged():
    def run(eta, tail):
        return dict(eta=eta, tail=tail, diverged=not math.isfinite(tail))

    runs = [run(0.01, 1.0), run(0.01, 1.0), run(0.2, math.nan), run(0.2, 0.5)]
    assert best_eta(runs) == 0.01
    # every step size lost a seed: all of them count, and the lowest mean error wins
    assert best_eta([run(0.01, math.nan), run(0.01, 2.0), run(0.2, math.nan), run(0.2, 0.5)]) == 0.2


def test_ratio_of_means_is_not_the_mean_of_ratios():
    assert ratio_of_means([(1.0, 1.0), (1.0, 3.0)]) == 0.5
    assert math.isnan(ratio_of_means([]))
