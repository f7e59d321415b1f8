"""Every rule against PyTorch's ``torch.optim`` and against optax over 50 steps of the same
gradients, in float64. Optional legs: each runs when its library is installed
(``pip install torch optax``) and skips otherwise."""

import math

import numpy as np
import pytest

import tinyvec as tv

STEPS = 50


def gradients(n=STEPS, size=(3, 4), seed=0):
    """A fixed gradient sequence, scaled so some steps clip and some do not."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(size) * rng.choice([0.1, 1.0, 10.0]) for _ in range(n)]


def run_tinyvec(rule, x0, grads):
    x, state = x0.copy(), rule.init(x0)
    for g in grads:
        state, step = rule.apply(state, x, g)
        x = x - step
    return x


# (tinyvec rule, torch optimiser factory, whether gradients are clipped first by torch)
TORCH_CASES = {
    "Descent": (lambda: tv.Descent(0.1), lambda o, p: o.SGD(p, lr=0.1)),
    "Momentum": (lambda: tv.Momentum(0.01, 0.9), lambda o, p: o.SGD(p, lr=0.01, momentum=0.9)),
    "Nesterov": (
        lambda: tv.Nesterov(0.01, 0.9),
        lambda o, p: o.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    ),
    "Adam": (
        lambda: tv.Adam(0.01, (0.9, 0.99), 1e-8),
        lambda o, p: o.Adam(p, lr=0.01, betas=(0.9, 0.99), eps=1e-8),
    ),
    "WeightDecay+Descent": (
        lambda: tv.OptimiserChain(tv.WeightDecay(0.05), tv.Descent(0.1)),
        lambda o, p: o.SGD(p, lr=0.1, weight_decay=0.05),
    ),
    "AdamW": (
        lambda: tv.AdamW(0.01, (0.9, 0.999), 0.1, 1e-8),
        lambda o, p: o.AdamW(p, lr=0.01, betas=(0.9, 0.999), weight_decay=0.1, eps=1e-8),
    ),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_rules_match_torch_optim(case):
    torch = pytest.importorskip("torch")
    ours, theirs = TORCH_CASES[case]
    x0, grads = np.linspace(-1, 1, 12).reshape(3, 4), gradients()
    p = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = theirs(torch.optim, [p])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    np.testing.assert_allclose(run_tinyvec(ours(), x0, grads), p.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, math.inf])
def test_clipnorm_matches_torch_clip_grad_norm(norm_type):
    torch = pytest.importorskip("torch")
    x0, grads = np.zeros((3, 4)), gradients()
    p = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.1)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        torch.nn.utils.clip_grad_norm_([p], max_norm=1.0, norm_type=norm_type)
        opt.step()
    ours = tv.OptimiserChain(tv.ClipNorm(1.0, p=norm_type), tv.Descent(0.1))
    # torch divides by (norm + 1e-6), so the two agree to about 1e-6 relative, not 1e-12
    np.testing.assert_allclose(run_tinyvec(ours, x0, grads), p.detach().numpy(), rtol=1e-5)


OPTAX_CASES = {
    "Descent": (lambda: tv.Descent(0.1), lambda optax: optax.sgd(0.1)),
    "Momentum": (lambda: tv.Momentum(0.01, 0.9), lambda optax: optax.sgd(0.01, momentum=0.9)),
    "Nesterov": (
        lambda: tv.Nesterov(0.01, 0.9),
        lambda optax: optax.sgd(0.01, momentum=0.9, nesterov=True),
    ),
    "Adam": (
        lambda: tv.Adam(0.01, (0.9, 0.99), 1e-8),
        lambda optax: optax.adam(0.01, b1=0.9, b2=0.99, eps=1e-8),
    ),
    "WeightDecay+Descent": (
        lambda: tv.OptimiserChain(tv.WeightDecay(0.05), tv.Descent(0.1)),
        lambda optax: optax.chain(optax.add_decayed_weights(0.05), optax.sgd(0.1)),
    ),
    "AdamW": (
        lambda: tv.AdamW(0.01, (0.9, 0.999), 0.1, 1e-8),
        lambda optax: optax.adamw(0.01, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1),
    ),
    "ClipNorm+Descent": (
        lambda: tv.OptimiserChain(tv.ClipNorm(1.0), tv.Descent(0.1)),
        lambda optax: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1)),
    ),
}


@pytest.mark.parametrize("case", list(OPTAX_CASES))
def test_rules_match_optax(case):
    optax = pytest.importorskip("optax")
    import jax

    ours, theirs = OPTAX_CASES[case]
    x0, grads = np.linspace(-1, 1, 12).reshape(3, 4), gradients()
    with jax.enable_x64(True):
        opt = theirs(optax)
        x = jax.numpy.asarray(x0)
        state = opt.init(x)
        for g in grads:
            updates, state = opt.update(jax.numpy.asarray(g), state, x)
            x = optax.apply_updates(x, updates)
        theirs_x = np.asarray(x)
    assert theirs_x.dtype == np.float64
    np.testing.assert_allclose(run_tinyvec(ours(), x0, grads), theirs_x, rtol=1e-12)
