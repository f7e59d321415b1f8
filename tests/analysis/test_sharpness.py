"""The sharpness along training against the stability threshold 2/η, summarised."""

import math

import pytest

from tinyvec.analysis.sharpness import threshold_summary


def test_the_summary_finds_where_the_threshold_is_reached_and_the_hover_after_it():
    s = threshold_summary([0, 10, 20, 30], [5.0, 15.0, 21.0, 19.0], lr=0.1)
    assert s["reached"] == 20 and s["start"] == pytest.approx(0.25)
    assert s["peak"] == pytest.approx(1.05) and s["end"] == pytest.approx(0.95)
    assert s["hover"] == pytest.approx(1.0)  # the median of 1.05 and 0.95
    assert s["sharpening"] == pytest.approx(1.05 / 0.25)


def test_a_run_below_the_threshold_never_reaches_it():
    s = threshold_summary([0, 5], [1.0, 3.0], lr=0.5)
    assert s["reached"] is None and math.isnan(s["hover"])
    assert s["end"] == pytest.approx(0.75) and s["sharpening"] == pytest.approx(3.0)


def test_no_sharpening_is_defined_from_a_flat_start():
    assert math.isnan(threshold_summary([0, 1], [0.0, 2.0], lr=1.0)["sharpening"])
