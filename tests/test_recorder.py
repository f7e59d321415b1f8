"""The Recorder: summaries per layer and step, and .npz snapshots."""

import math

import numpy as np
import pytest

import tinyvec as tv

KEYS = {"step", "layer", "loss", "o_norm", "delta_norm", "dW_norm", "cos_dA_delta"}


def model():
    return tv.Chain(
        tv.Dense(3, 5, tv.tanh, rng=0),
        tv.SkipConnection(tv.Dense(5, 5, tv.atan, rng=1), tv.add),
        tv.Dense(5, 2, rng=2),
    )


def mse_loss(m, x, y):
    return tv.mse(m(x), y)


def batches(n, batch, rng=0):
    g = np.random.default_rng(rng)
    return [(g.standard_normal((3, batch)), g.standard_normal((2, batch))) for _ in range(n)]


def test_rows_have_the_documented_keys_and_values():
    m = model()
    rec = tv.Recorder()
    seen = []

    def copy_layer_2(step, mm, loss):
        d = tv.dense_layers(mm)[1]
        seen.append((d.input.copy(), d.delta.copy(), d.dW.copy(), loss))

    tv.train(
        mse_loss, m, batches(3, 4), tv.setup(tv.Descent(0.1), m),
        recorder=rec, callbacks=[copy_layer_2], progress=False,
    )  # fmt: skip
    assert len(rec.rows) == 3 * 3 and all(set(r) == KEYS for r in rec.rows)
    for step, (O, delta, dW, loss) in enumerate(seen, start=1):
        (row,) = [r for r in rec.rows if r["step"] == step and r["layer"] == 2]
        assert row["loss"] == loss
        assert row["o_norm"] == pytest.approx(np.linalg.norm(O), rel=1e-12)
        assert row["delta_norm"] == pytest.approx(np.linalg.norm(delta), rel=1e-12)
        assert row["dW_norm"] == pytest.approx(np.linalg.norm(dW), rel=1e-12)
    assert len(rec.column("o_norm", 2)) == 3


def test_cos_dA_delta_is_one_for_one_sample_descent_and_less_for_a_batch():
    m = model()
    rec = tv.Recorder()
    tv.train(
        mse_loss, m, batches(4, 1), tv.setup(tv.Descent(0.05), m), recorder=rec, progress=False
    )
    assert all(abs(r["cos_dA_delta"] - 1) < 1e-12 for r in rec.rows)
    m = model()
    rec = tv.Recorder()
    tv.train(
        mse_loss, m, batches(2, 16), tv.setup(tv.Descent(0.05), m), recorder=rec, progress=False
    )
    cosines = [r["cos_dA_delta"] for r in rec.rows]
    assert all(-1 <= c <= 1 for c in cosines) and min(cosines) < 0.999  # samples interfere


def test_snapshots_every_n_steps(tmp_path):
    m = model()
    path = tmp_path / "snap.npz"
    rec = tv.Recorder(every=2, path=path)
    kept = {}

    def keep(step, mm, loss):
        for k, d in enumerate(tv.dense_layers(mm), start=1):
            kept[step, k] = (d.input.copy(), d.delta.copy(), d.dW.copy())

    tv.train(
        mse_loss, m, batches(5, 3), tv.setup(tv.Momentum(0.05), m),
        recorder=rec, callbacks=[keep], progress=False,
    )  # fmt: skip
    with np.load(path, allow_pickle=False) as f:
        files = set(f.files)
        assert files == {
            f"step{s}/layer{k}/{name}" for s in (2, 4) for k in (1, 2, 3)
            for name in ("input", "delta", "dW")
        }  # fmt: skip
        for s in (2, 4):  # the values of that step, not overwritten by later steps
            for k in (1, 2, 3):
                for name, want in zip(("input", "delta", "dW"), kept[s, k], strict=True):
                    np.testing.assert_array_equal(f[f"step{s}/layer{k}/{name}"], want)


def test_recorder_called_by_hand():
    m = model()
    rec = tv.Recorder()
    rec.record(m, 0)  # nothing recorded yet: no rows
    assert rec.rows == []
    x, y = batches(1, 2)[0]
    grads = tv.gradient(lambda mm: mse_loss(mm, x, y), m)
    tv.update(tv.setup(tv.Descent(0.1), m), m, grads)
    rec.record(m, 1)
    assert [r["layer"] for r in rec.rows] == [1, 2, 3] and math.isnan(rec.rows[0]["loss"])


def test_snapshots_need_both_every_and_path(tmp_path):
    with pytest.raises(ValueError, match="both"):
        tv.Recorder(every=2)
    with pytest.raises(ValueError, match="both"):
        tv.Recorder(path=tmp_path / "x.npz")


def test_snapshots_are_written_when_a_callback_stops_training(tmp_path):
    m = model()
    path = tmp_path / "early.npz"
    rec = tv.Recorder(every=1, path=path)
    tv.train(
        mse_loss, m, batches(5, 2), tv.setup(tv.Descent(0.05), m),
        recorder=rec, callbacks=[lambda step, mm, loss: step == 2], progress=False,
    )  # fmt: skip
    with np.load(path, allow_pickle=False) as f:
        assert {k.split("/")[0] for k in f.files} == {"step1", "step2"}


def test_a_recorder_displays_what_it_holds_and_flags_non_finite_summaries(tmp_path):
    class Printer:
        out = ""

        def text(self, s):
            self.out += s

    m = model()
    rec = tv.Recorder(every=2, path=tmp_path / "run.npz")
    state = tv.setup(tv.Descent(0.1), m)
    tv.train(mse_loss, m, batches(4, 3), state, recorder=rec, progress=False)
    p = Printer()
    rec._repr_pretty_(p, False)
    lines = p.out.splitlines()
    assert lines[0].startswith("Recorder: 4 steps × 3 layers (12 rows); snapshots every 2 steps")
    last = [r for r in rec.rows if r["layer"] == 3][-1]
    assert lines[3] == (
        f"  layer 3 at step 4: ‖O^{{k-1}}‖ {last['o_norm']:.4g}, ‖δ^k‖ {last['delta_norm']:.4g}, "
        f"‖ΔW^k‖ {last['dW_norm']:.4g}, cos(ΔA_own, −δ) {last['cos_dA_delta']:.4g}"
    )  # no δ-rule: no ‖δ̃‖ column
    assert "<th>layer k</th>" in rec._repr_html_() and "&#9888;" not in rec._repr_html_()
    rec.rows[4]["delta_norm"] = math.nan  # step 2, layer 2
    p = Printer()
    rec._repr_pretty_(p, False)
    assert p.out.splitlines()[-1] == "! layer 2: delta_norm not finite at 1 of 4 steps, first 2"
    assert "&#9888; layer 2: delta_norm" in rec._repr_html_()
    assert "0 steps × 0 layers" in tv.Recorder()._repr_html_()
