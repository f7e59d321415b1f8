"""What one seed of the eigen-operator study (`tinyvec.experiments.eigen_run`) is made of:
`build` makes, from a Config, the operators A, B and their exact spectrum, the network with
its optimiser, learning-rate decay and completion monitor, and the fixed probes (an
`Experiment`); `Records` holds the rows of every file the seed writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

import tinyvec as tv
from tinyvec.analysis import CompletionMonitor
from tinyvec.analysis.degrees import Mode, degree_design, leading_degree2_mode
from tinyvec.analysis.eigen_operator import Spectrum, make_operators, unit_vectors
from tinyvec.analysis.ritz import leading_by_real_part, ritz_observables

from .eigen_config import OPTIMISERS, Config, build_network, resolve, trunk_layers


@dataclass
class Experiment:
    """What one seed trains and measures against, built once by `build`: the operators and
    their exact spectrum, the network with its optimiser and learning-rate decay, the fixed
    probes, and the degree-1 eigenvector u_top of largest real part (the one small steps
    favour), against which the learned linear part is measured."""

    c: Config
    A: np.ndarray
    B: np.ndarray
    spectrum: Spectrum
    model: tv.Chain
    rule: Any
    state: Any
    schedule: Any  # η of step s (from 1): schedule(s − 1)
    monitor: CompletionMonitor
    data_rng: np.random.Generator  # the fresh batch of every step
    probe: np.ndarray  # λ̂, R², Ritz values every record_every steps
    mon_probe: np.ndarray  # the monitor's probe, also that of the λ̂ tail
    sym_probe: np.ndarray  # ±probe, for the per-degree shares
    design: tuple | None  # degree_design(sym_probe) when degree_every > 0
    top: int
    u_top: np.ndarray
    leading: np.ndarray  # the K exact eigenvalues of largest real part, with their degrees
    leading_degrees: np.ndarray
    split: bool  # the K-th cuts a complex pair in half
    mode2: Mode | None = None  # the leading degree-2 mode, logged with the degrees

    @property
    def rotating(self) -> bool:
        """One output and a complex u_top: the linear part turns in u_top's plane."""
        return self.c.k == 1 and abs(self.spectrum.values1[self.top].imag) > 1e-9


@dataclass
class Records:
    """Everything a run writes, one list of row dicts per file: ``metrics`` (metrics.csv, with
    ``frames``, the skip weights of each of its rows, in skip_weights.npz), ``steps``
    (steps.csv: every step's batch λ̂ and R²), ``tail`` (tail.csv: λ̂ on the monitor's probe
    over the last steps, with the plane angle, cosine and gain when rotating) and ``degrees``
    (degrees.csv); and the time spent training."""

    metrics: list[dict[str, Any]] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    tail: list[dict[str, Any]] = field(default_factory=list)
    degrees: list[dict[str, Any]] = field(default_factory=list)
    train_time: float = 0.0
    cpu_time: float = 0.0

    def add_measurement(self, row: dict[str, Any], W: np.ndarray) -> None:
        """A metrics row and its skip weights (float32: the animation needs no more)."""
        self.metrics.append(row)
        self.frames.append(W.astype(np.float32))


def build(c: Config) -> Experiment:
    """Operators, spectrum, network, optimiser, monitor and probes of one seed; each draw has
    its own stream ``[seed, i]``, so that an option changes no other draw. ``e.c`` is ``c``
    resolved (`resolve`): the K, steps and rate that run."""
    A, B = make_operators(c.h, c.t, c.seed)
    spectrum = Spectrum.of(A, B)
    c = resolve(c, spectrum)
    assert c.steps is not None and c.lr_final is not None  # `resolve` fills them in
    leading, leading_degrees, split = leading_by_real_part(spectrum, c.k)
    model = build_network(c, np.random.default_rng([c.seed, 1]))
    if c.bias_init > 0:  # its own stream: the other draws stay those of bias_init = 0
        first = trunk_layers(model)[0]
        first.bias = np.random.default_rng([c.seed, 6]).uniform(-c.bias_init, c.bias_init,
                                                                first.bias.shape)  # fmt: skip
    data_rng = np.random.default_rng([c.seed, 2])
    probe = unit_vectors(c.h, c.probe, np.random.default_rng([c.seed, 3]))
    mon_probe = unit_vectors(c.h, c.monitor_probe, np.random.default_rng([c.seed, 4]))
    rule = OPTIMISERS[c.opt](c.lr)
    state = tv.setup(rule, model)
    # lr_final > 0: η decays geometrically from lr at the first step to lr_final at the last
    schedule = (
        tv.schedules.Exponential.between(c.lr, c.lr_final, c.steps)
        if c.lr_final > 0
        else tv.schedules.Constant(c.lr)
    )
    monitor = CompletionMonitor(mon_probe, eps=c.eps, patience=c.patience,
                                max_period=c.max_period, every=c.monitor_every,
                                observe=lambda m: ritz_observables(m, A, B, mon_probe),
                                window=c.trend_window, trend_tol=c.trend_tol)  # fmt: skip
    # ±x: on a symmetric sample the even (degree 2) and odd columns are exactly orthogonal, so
    # an odd network (bias_init = 0) shows no degree-2 share from sampling alone
    sym_probe = np.concatenate([probe, -probe], axis=1)
    top = int(np.argmax(spectrum.values1.real))
    return Experiment(c=c, A=A, B=B, spectrum=spectrum, model=model, rule=rule, state=state,
                      schedule=schedule, monitor=monitor, data_rng=data_rng, probe=probe,
                      mon_probe=mon_probe, sym_probe=sym_probe,
                      design=degree_design(sym_probe) if c.degree_every else None,
                      top=top, u_top=spectrum.vectors1[:, top], leading=leading,
                      leading_degrees=leading_degrees, split=split,
                      mode2=leading_degree2_mode(A, B) if c.degree_every else None)  # fmt: skip
