"""``tinyvec demo``: trains, prints what each layer exposes, saves the model in its folder."""

import json

import numpy as np

import tinyvec as tv
from tinyvec.experiments import demo


def test_demo_saves_a_model_that_loads_and_repeats(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert demo.main(["--quick", "--quiet", "--out", str(a)]) == 0
    out = capsys.readouterr().out
    assert "one-sample step" in out and "layer 6:" in out
    # the printed identity ΔW o + Δb = -α(‖o‖²+1)δ holds to rounding on every layer
    errors = [float(line.split(":")[1]) for line in out.splitlines() if line.startswith("  layer")]
    assert len(errors) == 6 and max(errors) < 1e-12
    model = demo.seed_network(rng=5)
    tv.load(a / "model.npz", model)
    assert demo.main(["--config", str(a / "config.json"), "--quiet", "--out", str(b)]) == 0
    again = demo.seed_network(rng=5)
    tv.load(b / "model.npz", again)
    for d, e in zip(tv.dense_layers(model), tv.dense_layers(again), strict=True):
        assert np.array_equal(d.weight, e.weight) and np.array_equal(d.bias, e.bias)
    assert json.loads((a / "config.json").read_text())["epochs"] == 5
