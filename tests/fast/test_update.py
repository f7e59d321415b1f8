"""`tv.update`'s written program (`tinyvec.fast.update_program`): every unusual step left to
the reference road, which says what is wrong. (Its equality with the reference road, bit for
bit, is proven in `test_equivalence`.)"""

import weakref

import numpy as np
import pytest
from nets import RULES, general_update, model_from, records, state_bytes

import tinyvec as tv
from tinyvec.layers.stack import members


def grads_of(model, seed, batch=4):
    x = np.random.default_rng(seed).standard_normal((3, batch))
    return tv.gradient(lambda m: tv.mse(m(x), np.tanh(x[:2])), model)


def net():
    return tv.Chain(tv.Dense(3, 4, tv.tanh, rng=0), tv.Dense(4, 2, rng=1))


def test_a_missing_gradient_leaves_its_parameter_alone():
    m = net()
    state = tv.setup(tv.Descent(0.1), m)
    grads = grads_of(m, 0)
    grads.layers[0]["bias"] = None
    before = m[0].bias.copy()
    tv.update(state, m, grads)
    assert (m[0].bias == before).all() and not (m[0].weight == net()[0].weight).all()


def test_a_gradient_of_another_dtype_is_cast_as_the_general_code_does():
    a, b = net(), net()
    sa, sb = tv.setup(tv.Momentum(0.1), a), tv.setup(tv.Momentum(0.1), b)
    ga, gb = grads_of(a, 1), grads_of(b, 1)
    ga.layers[1]["weight"] = ga.layers[1].weight.astype(np.float32)
    gb.layers[1]["weight"] = gb.layers[1].weight.astype(np.float32)
    tv.update(sa, a, ga)
    general_update(sb, b, gb)
    assert records(a) == records(b) and a[1].weight.dtype == np.float64


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda g, s: g.layers[0].__setitem__("weight", np.ones((4, 4))), "has shape"),
        (lambda g, s: g.__setitem__("layers", g.layers[:1]), "do not match the model"),
        (lambda g, s: s.tree.layers[1].__setitem__("bias", 0.1), "optimiser state"),
    ],
    ids=["shape", "tree", "leaf"],
)
def test_what_does_not_fit_gets_the_general_codes_error_and_changes_nothing(spoil, message):
    m = net()
    state = tv.setup(tv.Descent(0.1), m)
    grads = grads_of(m, 2)
    spoil(grads, state)
    before = records(m)
    with pytest.raises(ValueError, match=message):
        tv.update(state, m, grads)
    assert records(m) == before


def test_a_non_finite_step_is_refused_naming_the_parameter():
    m = net()
    state = tv.setup(tv.Descent(0.1), m)
    grads = grads_of(m, 3)
    grads.layers[1]["bias"] = np.array([np.inf, 0.0])
    before = records(m)
    with pytest.raises(tv.NonFiniteStep, match=r"model\.layers\[1\]\.bias"):
        tv.update(state, m, grads)
    assert records(m) == before


@pytest.mark.parametrize(
    "rule, flat",
    [(tv.Descent(0.1), True), (tv.OptimiserChain(tv.ClipNorm(1.0), tv.Descent(0.1)), False)],
    ids=["elementwise", "per-parameter"],
)
def test_the_program_reads_like_the_update(rule, flat):
    m = net()
    state = tv.setup(rule, m)
    tv.update(state, m, grads_of(m, 4))
    source = state._tinyvec_fast[2].source
    assert "model.layers[1].bias" in source
    if flat:  # one call of the rule on θ, every parameter a view of the new θ
        assert "RULE.apply(state, theta, grad)" in source and "θ ← θ - step" in source
        assert m[0].weight.base is m[1].bias.base is not None
    else:
        assert "leaf1.rule.apply" in source and "x1 ← x1 - step" in source


class Normalised(tv.Descent):
    """A Descent whose new apply looks at the whole array (not elementwise, and not saying so)."""

    def apply(self, state, x, dx):
        return state, self.eta * dx / (float(np.sqrt((dx * dx).sum())) + 1.0)


def test_a_subclass_with_its_own_apply_is_stepped_parameter_by_parameter():
    """Inheriting ``elementwise = True`` is not enough: θ would normalise across parameters."""
    a, b = net(), net()
    sa, sb = tv.setup(Normalised(0.1), a), tv.setup(Normalised(0.1), b)
    for step in range(2):
        tv.update(sa, a, grads_of(a, step))
        general_update(sb, b, grads_of(b, step))
        assert records(a) == records(b)
    assert "x1 ← x1 - step" in sa._tinyvec_fast[2].source


def test_a_model_too_large_for_theta_is_stepped_parameter_by_parameter(monkeypatch):
    from tinyvec.fast import update_program

    monkeypatch.setattr(update_program, "FLAT", 12)  # net() has 3·4 + 4 + 4·2 + 2 entries
    m = net()
    state = tv.setup(tv.Descent(0.1), m)
    tv.update(state, m, grads_of(m, 4))
    assert "x1 ← x1 - step" in state._tinyvec_fast[2].source and m[0].weight.base is None


def replace_weight(m, s):
    m[0].weight = m[0].weight.copy()


def write_into_weight(m, s):
    m[0].weight[0, 0] += 1.0


def replace_state(m, s):
    s.tree.layers[1]["bias"].state = tuple(
        x.copy() if isinstance(x, np.ndarray) else x for x in s.tree.layers[1].bias.state
    )


def restart_state(m, s):  # a fresh Adam state among stepped ones: θ's state cannot be one array
    s.tree.layers[1]["bias"].state = s.tree.layers[1].bias.rule.init(m[1].bias)


def cast_weight(m, s):  # another dtype in the model: θ cannot hold it
    m[0].weight = m[0].weight.astype(np.float32)


def cast_state(m, s):  # a state of another dtype than its parameter's
    leaf = s.tree.layers[0].weight
    leaf.state = (leaf.state[0].astype(np.float32), *leaf.state[1:])


@pytest.mark.parametrize(
    "change",
    [replace_weight, write_into_weight, replace_state, restart_state, cast_weight, cast_state],
)
@pytest.mark.filterwarnings("ignore:layer Dense")  # (cast_weight: the input is converted)
def test_theta_follows_what_is_done_to_the_model_between_steps(change):
    """θ is reused only while the model holds the views of the last step (a write into one is
    a write into θ); anything else lays the parameters end to end again, or leaves the step to
    the general code. Bit for bit the general code in every case."""
    a, b = net(), net()
    sa, sb = tv.setup(tv.Adam(0.01), a), tv.setup(tv.Adam(0.01), b)
    for step in range(4):
        if step == 2:
            change(a, sa)
            change(b, sb)
        tv.update(sa, a, grads_of(a, step))
        general_update(sb, b, grads_of(b, step))
        assert records(a) == records(b)
        assert state_bytes(sa, a) == state_bytes(sb, b)


def test_an_elementwise_rule_that_raises_changes_nothing():
    class Failing(tv.Momentum):
        armed = False
        elementwise = True  # (its apply says so again: `update` steps θ at once)

        def apply(self, state, x, dx):
            if self.armed:
                raise RuntimeError("boom")
            return super().apply(state, x, dx)

    a, b = net(), net()
    rule = Failing(0.1)
    assert tv.optimise.rules.elementwise(rule)
    sa, sb = tv.setup(rule, a), tv.setup(tv.Momentum(0.1), b)
    tv.update(sa, a, grads_of(a, 0))
    general_update(sb, b, grads_of(b, 0))
    grads = grads_of(a, 1)
    before = records(a)
    rule.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        tv.update(sa, a, grads)
    assert records(a) == before
    rule.armed = False
    tv.update(sa, a, grads)
    general_update(sb, b, grads_of(b, 1))
    assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)


@pytest.mark.parametrize("rule", ["Descent", "Adam", "ClipNorm+Descent"])
def test_every_array_library_gets_the_written_update(xp, rule):
    """The program checks finiteness with NumPy's vdot for NumPy arrays and with the array
    API's sum for the others (array-api-strict here, CuPy on a GPU)."""
    a, b = (tv.to(xp, model_from([("skip+", 1, True, 3, None)], 0)) for _ in "ab")
    sa, sb = tv.setup(RULES[rule](), a), tv.setup(RULES[rule](), b)
    x = xp.asarray(np.linspace(-1, 1, 12).reshape(3, 4))
    for _ in range(2):
        ga, gb = (tv.gradient(lambda m: tv.mse(m(x), x[:2, :]), m) for m in (a, b))
        tv.update(sa, a, ga)
        general_update(sb, b, gb)
        assert records(a) == records(b)
    assert sa._tinyvec_fast[2] is not None
    assert xp is np or "finite(" in sa._tinyvec_fast[2].source  # (the array API's Σ x²)


def stack_of(E):
    return tv.stack([tv.Chain(tv.Dense(3, 4, tv.tanh, rng=e), tv.Dense(4, 2, rng=e + 9)) for e in range(E)])  # fmt: skip


def stack_grads(model, seed, E=3, batch=4):
    g = np.random.default_rng(seed)
    x, y = g.standard_normal((E, 3, batch)), g.standard_normal((E, 2, batch))
    return tv.gradient(lambda m: tv.mse(m(x), y, members=True), model)


def test_a_stack_steps_theta_as_rows_one_per_member():
    """A stack of E models (`tv.stack`) takes the flat step too: θ is (E, P), member e's
    parameters end to end in row e, so that per-member hyperparameters scale its row. (On main
    the written update declined stacks.)"""
    a, b = stack_of(3), stack_of(3)
    rule = lambda: tv.Adam([0.01, 0.02, 0.03], ([0.9, 0.8, 0.7], 0.999))  # noqa: E731
    sa, sb = tv.setup(rule(), a), tv.setup(rule(), b)
    for step in range(3):
        tv.update(sa, a, stack_grads(a, step))
        general_update(sb, b, stack_grads(b, step))
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)
    assert "RULE.apply(state, theta, grad)" in sa._tinyvec_fast[2].source
    theta = a[0].weight.base
    assert theta is a[1].bias.base and theta.shape == (3, 3 * 4 + 4 + 4 * 2 + 2)


@pytest.mark.parametrize("make", [net, lambda: stack_of(2)], ids=["model", "stack"])
def test_the_parameters_of_an_earlier_step_keep_their_values(make):
    """The new θ is written into the θ of two steps ago, but only when nothing holds it any
    more: parameters kept from an earlier step keep their values, and are not reused."""
    m = make()
    state = tv.setup(tv.Descent(0.1), m)
    E = members(m)
    grads = grads_of if E is None else lambda m, seed: stack_grads(m, seed, E)
    kept, bases = [], []
    for step in range(5):
        kept.append((m[0].weight, m[0].weight.copy()))
        tv.update(state, m, grads(m, step))
        assert all((w == copy).all() for w, copy in kept)
    kept.clear()
    for step in range(4):  # nothing held: two θ take turns
        tv.update(state, m, grads(m, step))
        bases.append(weakref.ref(m[0].weight.base))
    assert bases[0]() is bases[2]() is not None and bases[1]() is bases[3]() is not None


@pytest.mark.parametrize("change", ["none", "scaled in place", "replaced"])
def test_a_stacks_gradients_are_views_of_the_buffer_its_update_steps(change):
    """A stack's backward pass writes its gradients into views of one (E, P) buffer laid out
    as θ, and the update steps that buffer as it is (no concatenation of E × P entries); a
    gradient replaced by another array is concatenated as before, one changed in place is
    changed in the buffer too. Bit for bit the reference road in every case."""
    a, b = stack_of(3), stack_of(3)
    sa, sb = tv.setup(tv.Momentum([0.1, 0.2, 0.3]), a), tv.setup(tv.Momentum([0.1, 0.2, 0.3]), b)
    for step in range(3):
        ga, gb = stack_grads(a, step), stack_grads(b, step)
        assert ga.layers[0].weight.base is ga.layers[1].bias.base is not None
        assert ga.layers[0].weight.base.shape == (3, 3 * 4 + 4 + 4 * 2 + 2)
        for g in (ga, gb):
            if change == "scaled in place":
                g.layers[1].weight *= 0.5
            elif change == "replaced":
                g.layers[1]["weight"] = g.layers[1].weight * 0.5
        program = sa._tinyvec_fast[2] if step else None
        if program is not None and change != "replaced":  # the buffer, not a concatenation
            program.update.__globals__["concatenate"] = None
        tv.update(sa, a, ga)
        if program is not None:
            program.update.__globals__["concatenate"] = np.concatenate
        general_update(sb, b, gb)
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)


def test_a_stacks_gradient_buffer_is_reused_only_when_no_one_holds_it():
    """The default step's backward pass writes a stack's gradients into a buffer its plan
    keeps, again at every step, but never into one that something still holds: a loop's
    ``grads`` of the last step (rebound only after the next backward pass), or gradients a
    user kept. What is kept keeps its values; bit for bit the reference road."""
    a, b = stack_of(3), stack_of(3)
    sa, sb = tv.setup(tv.Momentum([0.1, 0.2, 0.3]), a), tv.setup(tv.Momentum([0.1, 0.2, 0.3]), b)
    kept, bases, grads = [], [], None
    for step in range(8):
        grads = stack_grads(a, step)  # (the last step's grads are held meanwhile)
        bases.append(weakref.ref(grads.layers[0].weight.base))
        if step in (2, 3):  # a user keeps these
            kept.append((grads, grads.layers[1].weight.copy(), grads.layers[0].bias.copy()))
        tv.update(sa, a, grads)
        general_update(sb, b, stack_grads(b, step))
        assert records(a) == records(b) and state_bytes(sa, a) == state_bytes(sb, b)
        for g, weight, bias in kept:
            assert g.layers[1].weight.tobytes() == weight.tobytes()
            assert g.layers[0].bias.tobytes() == bias.tobytes()
    buffers = [base() for base in bases]  # (all alive: those of steps 2 and 3 are kept)
    assert buffers[0] is buffers[2] and buffers[1] is buffers[3]  # two buffers take turns,
    assert buffers[4] is buffers[6] and buffers[5] is buffers[7]  # then two others: the first
    assert len({id(G) for G in buffers}) == 4  # two are kept by the user, never written again


def test_a_rule_that_keeps_a_stacks_gradient_gets_a_new_buffer():
    """A rule of one's own that keeps the gradient it was given (the (E, P) buffer itself,
    stepped as it is) holds that buffer: the next backward pass writes another one, and what
    the rule kept keeps its values."""
    kept = []

    class Keeping(tv.Descent):
        elementwise = True

        def apply(self, state, x, dx):
            kept.append((dx, dx.copy()))  # (a reference to the gradient, outliving the step)
            return state, self.eta * dx

    a, b = stack_of(3), stack_of(3)
    sa, sb = tv.setup(Keeping(0.1), a), tv.setup(tv.Descent(0.1), b)
    for step in range(4):
        tv.update(sa, a, stack_grads(a, step))
        general_update(sb, b, stack_grads(b, step))
        assert records(a) == records(b)
    assert len({id(dx) for dx, _ in kept}) == 4 and kept[0][0].shape == (3, 3 * 4 + 4 + 4 * 2 + 2)
    assert all(dx.tobytes() == copy.tobytes() for dx, copy in kept)
