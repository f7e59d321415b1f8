"""hessian_eigs (Lanczos on hvps) against the dense Hessian built column by column from hvps,
which is itself checked against central differences of gradients; the sharpness monitor and
the completion monitor's edge-of-stability verdict."""

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.analysis import CompletionMonitor, SharpnessMonitor, hessian_eigs, hessian_matrix
from tinyvec.analysis.hessian import lanczos, layer_sharpness


def small(seed=0, sigma=tv.tanh):
    rng = np.random.default_rng(seed)
    model = tv.Chain(tv.Dense(3, 5, sigma, rng=seed), tv.Dense(5, 4, sigma, rng=seed + 1),
                     tv.Dense(4, 2, rng=seed + 2))  # fmt: skip
    x, y = rng.standard_normal((3, 12)), rng.standard_normal((2, 12))
    return model, (lambda m: tv.mse(m(x), y))


def test_the_dense_hessian_matches_central_differences_of_gradients():
    model, loss = small()
    H = hessian_matrix(loss, model)
    paths = [p for p, _, _ in tv.trainables(model)]
    eps, n = 1e-5, H.shape[0]
    columns = []
    sizes = [tv.gradient(loss, model)[p].size for p in paths]
    for i in range(n):
        grads = []
        for s in (eps, -eps):
            m = tv.fmap(lambda a: a.copy(), model)
            flat_at = 0
            for (_, layer, name), size in zip(tv.trainables(m), sizes, strict=True):
                if flat_at <= i < flat_at + size:
                    a = getattr(layer, name).copy()
                    a.reshape(-1)[i - flat_at] += s
                    setattr(layer, name, a)
                flat_at += size
            g = tv.gradient(loss, m)
            grads.append(np.concatenate([g[p].ravel() for p in paths]))
        columns.append((grads[0] - grads[1]) / (2 * eps))
    np.testing.assert_allclose(H, np.stack(columns, axis=1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(H, H.T, atol=1e-12)


@pytest.mark.parametrize("sigma", [tv.tanh, tv.relu, tv.gelu], ids=lambda s: s.name)
def test_lanczos_finds_the_extreme_eigenvalues_and_vectors_of_the_dense_hessian(sigma):
    model, loss = small(1, sigma)
    H = hessian_matrix(loss, model)
    w, V = np.linalg.eigh(H)
    eigs = hessian_eigs(loss, model, k=3, smallest=True, vectors=True, tol=1e-10)
    np.testing.assert_allclose(eigs.values, w[::-1][:3], rtol=1e-8, atol=1e-10)
    assert eigs.smallest == pytest.approx(w[0], rel=1e-8, abs=1e-10)
    paths = [p for p, _, _ in tv.trainables(model)]
    u = np.concatenate([eigs.vectors[0][p].ravel() for p in paths])
    assert abs(u @ V[:, -1]) == pytest.approx(1.0, abs=1e-6)  # the top eigenvector, as a tree
    assert eigs.products <= H.shape[0]


def test_a_block_of_one_layer_is_the_hessian_restricted_to_it():
    model, loss = small(2)
    path = "model.layers[1].weight"
    H = hessian_matrix(loss, model, paths=[path])
    assert H.shape == (20, 20)
    top = np.linalg.eigvalsh(H)[-1]
    assert hessian_eigs(loss, model, paths=[path], tol=1e-10).sharpness == pytest.approx(top)
    assert layer_sharpness(loss, model, tol=1e-10)[path] == pytest.approx(top)
    with pytest.raises(ValueError, match=r"no parameter .model\.layers\[9\]\.weight."):
        hessian_eigs(loss, model, paths=["model.layers[9].weight"])


def test_lanczos_refuses_a_bad_k_and_is_exact_at_full_dimension():
    A = np.diag([4.0, 1.0, -3.0])
    with pytest.raises(ValueError, match=r"k must be in 1\.\.3"):
        lanczos(lambda q: A @ q, 3, k=4)
    found = lanczos(lambda q: A @ q, 3, k=3, tol=0.0)
    np.testing.assert_allclose(np.sort(found.values), [-3.0, 1.0, 4.0], atol=1e-12)


def test_the_edge_of_stability_verdict_names_the_sharpness_at_a_limit_cycle():
    # L = 10 w²: H = 20 = 2/η for η = 0.1, so descent maps w to −w, a period-2 cycle
    model = tv.Dense(1, 1, bias=False, init=lambda shape, rng: np.full(shape, 1.0))
    loss = lambda m: 10.0 * tv.ops.sum(m.weight * m.weight)  # noqa: E731
    rec = tv.Recorder()
    sharp = SharpnessMonitor(loss, lr=0.1, every=1, recorder=rec)
    completion = CompletionMonitor(None, eps=1e-6, patience=3, lr=0.1, sharpness=sharp)
    state = tv.setup(tv.Descent(0.1), model)
    tv.train(lambda m, x: loss(m), model, [(np.zeros(1),)] * 8, state, progress=False,
             callbacks=[sharp, completion])  # fmt: skip
    status = completion.status()
    assert (status["kind"], status["period"]) == ("limit_cycle", 2)
    eos = status["edge_of_stability"]
    assert eos["sharpness"] == pytest.approx(20.0) and eos["two_over_lr"] == 20.0
    assert eos["alignment"] == pytest.approx(1.0)  # the step is along the top eigenvector
    assert rec.noted("ratio") == pytest.approx([1.0] * 8)
    with pytest.raises(ValueError, match="lr must be a positive step size"):
        SharpnessMonitor(loss, lr=0.0)
