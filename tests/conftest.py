"""Shared fixtures: the array namespaces every backend-agnostic test runs on, a central
finite-difference gradient, the `gpu` marker and the hypothesis profiles.

Hypothesis profiles: "ci" (the default, small and fast) and "thorough" (more examples); pick
one with ``HYPOTHESIS_PROFILE=thorough pytest ...``.
"""

import os
import signal

import array_api_strict
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

from tinyvec.backend import has_gpu

# No example database: the table-driven tests share one function across parameters, and an
# example saved by one case (an expected failure, say) must not be replayed into another.
# No "explain" phase: it reruns a failing example many times, slow for an expected failure.
_common = dict(
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("ci", max_examples=12, **_common)
settings.register_profile("thorough", max_examples=200, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where CuPy sees a CUDA device."""
    if has_gpu():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


class OnDevice:
    """An array namespace whose new arrays go to ``device`` unless told otherwise: ``asarray``,
    ``zeros``, ``ones``, ``empty``, ``full``, ``arange``, ``linspace`` and ``eye`` default to it;
    everything else is the namespace's own. With array-api-strict's ``Device("device1")``, a
    simulated second device, every implicit copy to the host (``np.asarray``) and every
    operation mixing two devices fails: what CuPy refuses on a GPU, caught on this machine."""

    CREATE = ("asarray", "zeros", "ones", "empty", "full", "arange", "linspace", "eye")

    def __init__(self, namespace, device):
        self._namespace, self.device = namespace, device
        self.__name__ = f"{namespace.__name__} on {device!r}"
        for name in self.CREATE:
            setattr(self, name, self._on_device(getattr(namespace, name)))

    def _on_device(self, create):
        def on_device(*args, device=None, **kw):
            return create(*args, device=self.device if device is None else device, **kw)

        on_device.__name__ = create.__name__
        return on_device

    def __getattr__(self, name):
        return getattr(self._namespace, name)

    def __repr__(self):
        return f"<{self.__name__}>"


@pytest.fixture(
    scope="session",
    params=[
        "numpy",
        "array_api_strict",
        "array_api_strict-device1",
        pytest.param("cupy", marks=pytest.mark.gpu),
    ],
)
def xp(request):
    """An array namespace: NumPy, array-api-strict (a CPU stand-in for any standard library)
    on its CPU device and on its simulated ``Device("device1")`` (`OnDevice`: the arrays a
    test creates with it go there, and so must every array tinyvec creates from them), or
    CuPy on a GPU. Session-scoped, so hypothesis tests may use it."""
    if request.param == "numpy":
        return np
    if request.param == "array_api_strict":
        return array_api_strict
    if request.param == "array_api_strict-device1":
        return OnDevice(array_api_strict, array_api_strict.Device("device1"))
    import tinyvec.backend

    return tinyvec.backend.cupy()


def central_differences(f, x, eps=1e-6):
    """∂f/∂x for a scalar function f of a float64 NumPy array x, by (f(x+εe) - f(x-εe)) / 2ε
    for every element e (x is restored afterwards)."""
    x = np.asarray(x)
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = float(f(x))
        x[i] = old - eps
        down = float(f(x))
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


@pytest.fixture(scope="session")
def numgrad():
    """`central_differences(f, x, eps=1e-6)` as a fixture (test files cannot import
    conftest under --import-mode=importlib)."""
    return central_differences


@pytest.fixture
def ctrl_c():
    """Ctrl-C (SIGINT) raises KeyboardInterrupt during this test even when the test run itself
    was started with SIGINT ignored, as a background job of a non-interactive shell is. Yields
    the `subprocess.Popen` keyword arguments that give a child process the same."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield {"preexec_fn": _sigint_by_default}
    finally:
        signal.signal(signal.SIGINT, previous)


def _sigint_by_default():
    # in the child before exec: Python installs its KeyboardInterrupt handler only for a
    # SIGINT that is not ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)
