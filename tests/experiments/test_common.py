"""The flags every study shares: their types refuse bad values, --config reads back what
config.json holds, and run folders are whole or marked."""

import argparse
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvec.experiments import common, flags


@given(st.lists(st.integers(0, 50), min_size=2, max_size=6, unique=True))
def test_seed_lists_round_trip_through_their_names(seeds):
    assert flags.seed_list(flags.seeds_name(seeds)) == seeds


@pytest.mark.parametrize("text", ["3", "", "a-b", "2-1", "1,1", "-1"])
def test_bad_seed_lists(text):
    with pytest.raises(argparse.ArgumentTypeError):
        flags.seed_list(text)


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        (flags.positive_int, ["0", "-1", "x", "1.5"]),
        (flags.nonnegative_int, ["-1", "x"]),
        (flags.positive_float, ["0", "-1", "nan", "inf", "x"]),
        (flags.nonnegative_float, ["-0.1", "nan", "x"]),
    ],
)
def test_number_types_refuse_bad_values(kind, bad):
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


def test_config_json_holds_the_flags_and_reads_back(tmp_path):
    p = common.study_parser("x", None, out="runs/x", quick="q")
    p.add_argument("--sizes", type=flags.positive_int, nargs="+", default=[1])
    p.add_argument("--name", default="a")
    common.add_sweep_flags(p)
    args = common.parse(p, ["--sizes", "3", "4", "--quick", "--seeds", "0-2", "--no-plots",
                            "--out", str(tmp_path / "o")])  # fmt: skip
    config = common.config_of(args)
    assert config["sizes"] == [3, 4] and config["seeds"] == "0-2" and "out" not in config
    (tmp_path / "config.json").write_text(json.dumps(config))
    again = common.parse(p, ["--config", str(tmp_path / "config.json"),
                             "--out", str(tmp_path / "o")])  # fmt: skip
    assert common.config_of(again) == config
    plots = common.parse(p, ["--config", str(tmp_path / "config.json"), "--plots",
                             "--out", str(tmp_path / "o")])  # fmt: skip
    assert again.no_plots and not plots.no_plots
    assert common.parse(p, ["--out", str(tmp_path / "o")]).out == tmp_path / "o"
    assert common.parse(p, ["--seeds", "1,4", "--no-plots"]).out.name == "x-seeds-1,4"


def test_run_folder_replaces_a_run_only_when_complete(tmp_path):
    out = tmp_path / "run"
    with common.run_folder(out) as stage:
        (stage / "config.json").write_text("{}")
        (stage / "old.csv").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "old.csv"]
    with pytest.raises(RuntimeError), common.run_folder(out) as stage:
        (stage / "new.csv").write_text("2")
        raise RuntimeError
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "old.csv"]
    assert (tmp_path / "run.incomplete" / "INCOMPLETE").is_file()
    with common.run_folder(out) as stage:
        (stage / "config.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
