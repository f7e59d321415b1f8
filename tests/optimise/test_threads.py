"""Threads: gradient mode and the δ-rule forward override belong to the thread that sets them,
so two threads training two models, or one running a model under `no_grad` while another
trains a different one, give exactly (bit for bit) what running them one after the other
gives. (Two threads stepping the same model is not supported.)"""

import sys
import threading

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.deltarules import Compensation, Orthogonalization

STEPS = 40


def seed_like(rng):
    return tv.Chain(
        tv.Dense(3, 8, tv.atan, rng=rng),
        tv.SkipConnection(tv.Dense(8, 8, tv.tanh, rng=rng + 1), tv.add),
        tv.Dense(8, 1, rng=rng + 2),
    )


def batches(seed):
    g = np.random.default_rng(seed)
    xs = [g.standard_normal((3, 10)) for _ in range(STEPS)]
    return [(x, np.sin(x[:1]) * x[1:2]) for x in xs]


def run(seed, delta):
    """Train a fresh model; returns the loss history and the final weights as bytes."""
    model = seed_like(seed)
    state = tv.setup(tv.Descent(0.05), model, delta=delta)
    history = tv.train(lambda m, x, y: tv.mse(m(x), y), model, batches(seed), state, progress=False)
    return history, [np.asarray(getattr(la, n)).tobytes() for _, la, n in tv.trainables(model)]


@pytest.fixture
def fast_switching():
    """Switch threads as often as Python allows, so the two runs interleave finely."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def in_threads(*jobs):
    results = [None] * len(jobs)
    errors = []
    start = threading.Barrier(len(jobs))

    def worker(i, job):
        start.wait()
        try:
            results[i] = job()
        except BaseException as e:  # reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i, j)) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.usefixtures("fast_switching")
@pytest.mark.parametrize(
    "deltas",
    [(None, None), (Compensation(0.3), None), ([Compensation(0.3), Orthogonalization()], None)],
    ids=["plain+plain", "compensation+plain", "both-rules+plain"],
)
def test_two_threads_training_two_models_equal_sequential(deltas):
    sequential = [run(1, deltas[0]), run(2, deltas[1])]
    threaded = in_threads(lambda: run(1, deltas[0]), lambda: run(2, deltas[1]))
    assert threaded == sequential


@pytest.mark.usefixtures("fast_switching")
def test_inference_under_no_grad_in_one_thread_does_not_disturb_training_in_another():
    sequential = run(3, Compensation(0.2))
    other = seed_like(9)
    x = np.ones((3, 5))
    stop = threading.Event()
    outputs = []

    def infer():
        while not stop.is_set():
            with tv.no_grad():
                outputs.append(other(x))

    def train():
        try:
            return run(3, Compensation(0.2))
        finally:
            stop.set()

    _, threaded = in_threads(infer, train)
    assert threaded == sequential
    assert outputs and all(type(o) is np.ndarray for o in outputs)  # never a Tensor
