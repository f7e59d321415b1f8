import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyvec.analysis.collapse import neural_collapse


def simplex_etf(C, p, rng):
    """p × C centred class means forming a simplex ETF (unit norms, cosines −1/(C−1)),
    embedded in R^p by a random orthonormal basis."""
    E = np.sqrt(C / (C - 1)) * (np.eye(C) - np.ones((C, C)) / C)
    Q = np.linalg.qr(rng.normal(size=(p, p)))[0][:, :C]
    return Q @ E


def random_rotation(p, rng):
    return np.linalg.qr(rng.normal(size=(p, p)))[0]


@given(
    C=st.integers(2, 8), extra=st.integers(0, 5), per=st.integers(1, 6), seed=st.integers(0, 999)
)
@settings(max_examples=30, deadline=None)
def test_collapsed_simplex_etf_gives_zero(C, extra, per, seed):
    rng = np.random.default_rng(seed)
    p = C + extra
    M = simplex_etf(C, p, rng)
    labels = np.repeat(np.arange(C), per)
    rng.shuffle(labels)
    H = M[:, labels]  # every feature sits on its class mean; global mean 0
    nc = neural_collapse(H, labels, 3.0 * M.T, np.zeros(C))
    for key, value in nc.items():
        assert value == pytest.approx(0, abs=1e-10), key


def test_known_scatter_matrices_give_the_exact_nc1():
    # C = 3 classes in R^3: Σ_B = diag(a, b, 0), Σ_W = diag(s1, s2, s3) by construction
    a, b, s = 2.0, 0.5, np.array([0.3, 0.7, 5.0])
    M = np.array([np.sqrt(1.5 * a) * np.array([1, -1, 0]), np.sqrt(b / 2) * np.array([1, 1, -2]),
                  np.zeros(3)])  # fmt: skip
    assert np.allclose(M @ M.T / 3, np.diag([a, b, 0]))
    deviations = np.hstack([np.diag(np.sqrt(3 * s)), -np.diag(np.sqrt(3 * s))])  # 6 per class
    H = np.hstack([M[:, [c]] + deviations for c in range(3)]) + np.array([[1.0], [2.0], [3.0]])
    labels = np.repeat(np.arange(3), 6)
    within = H - (H.reshape(3, 3, 6).mean(axis=2))[:, labels]
    assert np.allclose(within @ within.T / 18, np.diag(s))
    W = np.random.default_rng(0).normal(size=(3, 3))
    nc = neural_collapse(H, labels, W)
    assert nc["NC1"] == pytest.approx((s[0] / a + s[1] / b) / 3, rel=1e-12)  # s3: outside span(M)
    # the same through an explicit pseudo-inverse
    Sw, Sb = np.diag(s), np.diag([a, b, 0.0])
    assert nc["NC1"] == pytest.approx(np.trace(Sw @ np.linalg.pinv(Sb)) / 3, rel=1e-12)


@given(seed=st.integers(0, 10**6), C=st.integers(2, 6), p=st.integers(6, 10))
@settings(max_examples=30, deadline=None)
def test_rotations_leave_the_metrics_unchanged(seed, C, p):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(C), rng.integers(0, C, 20)])
    H = rng.normal(size=(p, len(labels))) + 2 * rng.normal(size=(p, C))[:, labels]
    W, b = rng.normal(size=(C, p)), rng.normal(size=C)
    Q = random_rotation(p, rng)
    nc, rotated = neural_collapse(H, labels, W, b), neural_collapse(Q @ H, labels, W @ Q.T, b)
    for key in nc:
        assert rotated[key] == pytest.approx(nc[key], rel=1e-8, abs=1e-12), key
    # and a permutation of the samples
    order = rng.permutation(len(labels))
    shuffled = neural_collapse(H[:, order], labels[order], W, b)
    assert all(shuffled[k] == pytest.approx(nc[k], rel=1e-9) for k in nc)


def test_each_metric_sees_its_own_defect():
    rng = np.random.default_rng(1)
    C, p = 4, 6
    M = simplex_etf(C, p, rng)
    labels = np.repeat(np.arange(C), 3)
    scaled = M * np.array([1.0, 1.0, 1.0, 2.0])  # one class mean longer: equinorm > 0
    nc = neural_collapse(scaled[:, labels], labels, M.T)
    assert nc["NC2_equinorm"] > 0.1 and nc["NC1"] == pytest.approx(0, abs=1e-12)
    assert nc["NC2_equinorm_W"] == pytest.approx(0, abs=1e-12)
    nc = neural_collapse(M[:, labels], labels, M.T[::-1].copy())  # W rows in the wrong order
    assert (
        nc["NC3"] > 0.5
        and nc["NC4"] == 1.0
        and nc["NC2_equiangular"] == pytest.approx(0, abs=1e-12)
    )
    noisy = M[:, labels] + 0.1 * rng.normal(size=(p, len(labels)))
    assert neural_collapse(noisy, labels, M.T)["NC1"] > 1e-3
    # NC4 is the fraction of samples whose nearest class mean is not the network's choice
    b = np.zeros(C)
    b[0] = 10.0  # the network now says class 0 for everything
    assert neural_collapse(M[:, labels], labels, M.T, b)["NC4"] == pytest.approx(0.75)


def test_bad_input():
    H, W = np.zeros((3, 4)), np.zeros((2, 3))
    with pytest.raises(ValueError, match="p × N"):
        neural_collapse(H, np.zeros(4, dtype=int), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="one entry per sample"):
        neural_collapse(H, np.zeros(3, dtype=int), W)
    with pytest.raises(ValueError, match="every class must have a sample"):
        neural_collapse(H, np.zeros(4, dtype=int), W)
    with pytest.raises(ValueError, match="every label"):
        neural_collapse(H, np.array([0, 1, 2, 1]), W)
    with pytest.raises(ValueError, match="two classes"):
        neural_collapse(H, np.zeros(4, dtype=int), np.zeros((1, 3)))


def test_a_fractional_label_is_refused_not_taken_as_its_integer_part():
    """A label 1.5 was read as class 1 (a float array of labels passed straight through)."""
    rng = np.random.default_rng(0)
    H, W = rng.random((4, 6)), rng.random((2, 4))
    with pytest.raises(ValueError, match=r"whole numbers; got 1\.5"):
        neural_collapse(H, np.array([0.0, 1.5, 0, 1, 0, 1]), W)
    whole = neural_collapse(H, np.array([0.0, 1, 0, 1, 0, 1]), W)  # (floats that are whole: fine)
    assert whole == neural_collapse(H, np.array([0, 1, 0, 1, 0, 1]), W)


def test_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(2)
    labels = np.arange(12) % 3
    H, W, b = rng.normal(size=(4, 12)), rng.normal(size=(3, 4)), rng.normal(size=3)
    ref = neural_collapse(H, labels, W, b)
    got = neural_collapse(xp.asarray(H), xp.asarray(labels), xp.asarray(W), xp.asarray(b))
    assert all(got[k] == pytest.approx(ref[k], rel=1e-12) for k in ref)


def test_coinciding_class_means_leave_nc1_undefined():
    H = np.zeros((3, 6))  # e.g. a dead ReLU layer
    nc = neural_collapse(H, np.arange(6) % 2, np.ones((2, 3)))
    assert np.isnan(nc["NC1"]) and np.isnan(nc["NC2_equinorm"]) and np.isnan(nc["NC3"])
