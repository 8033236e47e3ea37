"""Learning-rate schedules and gradient clipping, computed in the update kernel: against the numpy reference
(torch.optim.lr_scheduler and torch.nn.utils.clip_grad_norm_ step for step: tests/test_golden.py)."""

import math

import numpy as np
import pytest

import fastbp
from fastbp import schedules

from . import reference as ref
from .conftest import TOL, make_data, ref_layers

SIZES = [3, 5, 2]
STEPS = 12

SCHEDULES = {  # name: (fastbp schedule, reference kwargs)
    "constant": (0.1, dict(kind="constant")),
    "warmup": (schedules.Constant(0.1, warmup=4, warmup_start=0.25), dict(kind="constant", warmup=4,
                                                                           warmup_start=0.25)),
    "step": (schedules.StepDecay(0.1, step_size=3, gamma=0.5), dict(kind="step", step_size=3, gamma=0.5)),
    "exponential": (schedules.Exponential(0.1, gamma=0.8, warmup=2, warmup_start=0.5),
                    dict(kind="exponential", gamma=0.8, warmup=2, warmup_start=0.5)),
    "cosine": (schedules.Cosine(0.1, steps=8, lr_min=0.01, warmup=3, warmup_start=0.1),
               dict(kind="cosine", steps=8, lr_min=0.01, warmup=3, warmup_start=0.1)),
}


def optimizers(lr, clip_norm):
    return {"sgd": fastbp.SGD(lr, momentum=0.9, weight_decay=0.01, clip_norm=clip_norm),
            "adamw": fastbp.Adam(lr, weight_decay=0.05, clip_norm=clip_norm)}


def reference_optimizer(kind):
    return ref.SGD(0, momentum=0.9, weight_decay=0.01) if kind == "sgd" else ref.Adam(0, weight_decay=0.05)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clip_norm", [None, 0.05])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_and_clipping_against_reference(name, kind, clip_norm, dtype):
    """Every step's parameters equal the reference's: the scheduled rate of that step, the gradient clipped first."""
    schedule, lr_args = SCHEDULES[name]
    net = fastbp.Network(SIZES, hidden="tanh", output="softmax", loss="cross_entropy", dtype=dtype, seed=1,
                         optimizer=optimizers(schedule, clip_norm)[kind])
    X, Y = make_data(SIZES, 10, "softmax", "cross_entropy", dtype, seed=2)
    Ws, bs = ref_layers(net)
    Ws, bs = [W.astype(np.float64) for W in Ws], [b.astype(np.float64) for b in bs]
    opt = reference_optimizer(kind)
    clipped = 0
    for t in range(STEPS):
        _, dWs, dbs = ref.gradients(Ws, bs, "tanh", "softmax", "cross_entropy", X.astype(np.float64), Y)
        grads = dWs + dbs
        if clip_norm is not None:
            clipped += np.sqrt(sum(np.sum(g**2) for g in grads)) > clip_norm
            grads = ref.clip(grads, clip_norm)
        opt.lr = ref.scheduled_lr(lr=0.1, t=t, **lr_args)
        opt.step(Ws + bs, grads)
        net.train_step(X, Y)
        for (W, b), W_ref, b_ref in zip(net.layers(), Ws, bs):
            np.testing.assert_allclose(W, W_ref, **TOL[dtype])
            np.testing.assert_allclose(b, b_ref, **TOL[dtype])
    assert clip_norm is None or clipped == STEPS  # the clipping was exercised
    assert net.hyper[fastbp.optim.STEP] == STEPS


def test_schedule_values_and_checks():
    cos = schedules.Cosine(1.0, steps=4, lr_min=0.2, warmup=2)
    expected = [ref.scheduled_lr("cosine", 1.0, t, warmup=2, steps=4, lr_min=0.2) for t in range(10)]
    np.testing.assert_allclose([cos(t) for t in range(10)], expected, rtol=1e-15)
    assert cos(9) == pytest.approx(0.2)  # stays at lr_min after the decay
    for make, exc, match in [
            (lambda: schedules.StepDecay(0.1, step_size=0), ValueError, "step_size must be an integer >= 1"),
            (lambda: schedules.Exponential(0.1, gamma=1.5), ValueError, "gamma must be in"),
            (lambda: schedules.Cosine(-1.0, steps=3), ValueError, "lr must be in"),
            (lambda: schedules.Cosine(0.1, steps=3, lr_min=0.5), ValueError, "lr_min must be in"),
            (lambda: schedules.Constant(0.1, warmup=-1), ValueError, "warmup must be an integer"),
            (lambda: schedules.Constant(0.1, warmup_start=2.0), ValueError, "warmup_start must be in"),
            (lambda: schedules.Constant("0.1"), TypeError, "lr must be a real number"),
            (lambda: fastbp.SGD(0.1, clip_norm=0), ValueError, "clip_norm must be in"),
            (lambda: fastbp.Adam(clip_norm="1"), TypeError, "clip_norm must be a real number"),
            (lambda: schedules.ReduceOnPlateau(factor=1.0), ValueError, "factor must be in")]:
        with pytest.raises(exc, match=match):
            make()


# Every documented range, as (make an object with the value, low, high, which ends are open); an integer field has
# high None. Independent of the code: these are the ranges the docstrings state.
RANGES = {
    "lr": (lambda v: schedules.Constant(v), 0, math.inf, "low"),
    "warmup": (lambda v: schedules.Constant(0.1, warmup=v), 0, None, ""),
    "warmup_start": (lambda v: schedules.Constant(0.1, warmup_start=v), 0, 1, ""),
    "step": (lambda v: schedules.Constant(0.1)(v), 0, None, ""),
    "step_size": (lambda v: schedules.StepDecay(0.1, step_size=v), 1, None, ""),
    "StepDecay gamma": (lambda v: schedules.StepDecay(0.1, step_size=2, gamma=v), 0, 1, "low"),
    "Exponential gamma": (lambda v: schedules.Exponential(0.1, gamma=v), 0, 1, "low"),
    "steps": (lambda v: schedules.Cosine(0.1, steps=v), 1, None, ""),
    "lr_min": (lambda v: schedules.Cosine(0.1, steps=3, lr_min=v), 0, 0.1, ""),
    "factor": (lambda v: schedules.ReduceOnPlateau(factor=v), 0, 1, "low high"),
    "patience": (lambda v: schedules.ReduceOnPlateau(patience=v), 0, None, ""),
    "threshold": (lambda v: schedules.ReduceOnPlateau(threshold=v), 0, 1, "high"),
    "cooldown": (lambda v: schedules.ReduceOnPlateau(cooldown=v), 0, None, ""),
    "min_lr": (lambda v: schedules.ReduceOnPlateau(min_lr=v), 0, math.inf, ""),
    "SGD lr": (lambda v: fastbp.SGD(v), 0, math.inf, "low"),
    "momentum": (lambda v: fastbp.SGD(0.1, momentum=v), 0, 1, "high"),
    "weight_decay": (lambda v: fastbp.SGD(0.1, weight_decay=v), 0, math.inf, ""),
    "clip_norm": (lambda v: fastbp.SGD(0.1, clip_norm=v), 0, math.inf, "low"),
    "Adam lr": (lambda v: fastbp.Adam(lr=v), 0, math.inf, "low"),
    "beta1": (lambda v: fastbp.Adam(beta1=v), 0, 1, "high"),
    "beta2": (lambda v: fastbp.Adam(beta2=v), 0, 1, "high"),
    "eps": (lambda v: fastbp.Adam(eps=v), 0, math.inf, "low"),
    "Adam weight_decay": (lambda v: fastbp.Adam(weight_decay=v), 0, math.inf, ""),
    "Adam clip_norm": (lambda v: fastbp.Adam(clip_norm=v), 0, math.inf, "low"),
}


@pytest.mark.parametrize("name", RANGES)
def test_every_range_ends_where_documented(name):
    """Each end of each range: inside (a closed end itself) accepted, outside (an open end itself) refused."""
    make, low, high, opened = RANGES[name]
    if high is None:
        accepted, refused = [low, low + 1, 10**6], [low - 1, -10**6]
    else:
        tiny = 1e-9
        accepted = [low + tiny, (low + min(high, 1e6)) / 2] + ([] if "low" in opened else [low])
        refused = [low - tiny, -1.0] + ([low] if "low" in opened else [])
        if math.isinf(high):
            accepted.append(1e300)
        else:
            accepted += [high - tiny] + ([] if "high" in opened else [high])
            refused += [high + tiny, high + 1.0] + ([high] if "high" in opened else [])
    for value in accepted:
        make(value)
    for value in refused:
        with pytest.raises(ValueError, match="must be"):
            make(value)


@pytest.mark.parametrize("optimizer", [
    fastbp.SGD(schedules.StepDecay(0.1, step_size=2, gamma=0.5, warmup=1), clip_norm=1.5),
    fastbp.SGD(schedules.Constant(0.1, warmup=3, warmup_start=0.5)),  # a constant rate keeps its warm-up
    fastbp.Adam(schedules.Cosine(0.01, steps=100, lr_min=0.001, warmup=5, warmup_start=0.2), clip_norm=0.5),
    fastbp.Adam(schedules.Exponential(0.01, gamma=0.9)),
    fastbp.SGD(0.1, keep_grad=False),
])
def test_schedule_saved_and_loaded(tmp_path, optimizer):
    net = fastbp.Network(SIZES, optimizer=optimizer, seed=3)
    X, Y = make_data(SIZES, 4, "identity", "mse", np.float64)
    for _ in range(3):
        net.train_step(X, Y)
    net.save(tmp_path / "m.npz")
    back = fastbp.Network.load(tmp_path / "m.npz")
    assert back.optimizer == optimizer
    np.testing.assert_array_equal(back.hyper, net.hyper)
    assert back.train_step(X, Y) == net.train_step(X, Y)
    np.testing.assert_array_equal(back.flat, net.flat)


def test_file_with_a_negative_warmup_is_refused():
    """A constant rate with a warm-up of -1 (a corrupt file's hyper) is refused, not read as no warm-up; so is a
    keep_grad field of 0.5."""
    hyper = fastbp.SGD(0.1).hyper()
    hyper[fastbp.optim.WARMUP] = -1
    with pytest.raises(ValueError, match="warmup"):
        fastbp.optim.from_hyper(hyper)
    hyper[fastbp.optim.WARMUP] = 0
    assert fastbp.optim.from_hyper(hyper) == fastbp.SGD(0.1)
    hyper[fastbp.optim.NO_GRAD] = 0.5  # nor a keep_grad field that is no bool
    with pytest.raises(ValueError, match="keep_grad"):
        fastbp.optim.from_hyper(hyper)


@pytest.mark.parametrize("code", [-1, schedules.COSINE + 1])
def test_file_with_an_unknown_schedule_code_is_refused(code):
    """A schedule code outside the four (a corrupt file's hyper) is refused, not read as the nearest schedule."""
    hyper = fastbp.SGD(schedules.Cosine(0.1, steps=4)).hyper()
    hyper[fastbp.optim.SCHEDULE] = code
    with pytest.raises(ValueError, match="unknown schedule code"):
        fastbp.optim.from_hyper(hyper)


def test_schedules_are_immutable():
    """Schedules and ReduceOnPlateau are frozen values (hashable, equal by their fields), as the optimizers that
    hold them compare them."""
    for value in (schedules.Constant(0.1, warmup=2), schedules.Cosine(0.1, steps=4), schedules.ReduceOnPlateau()):
        with pytest.raises(AttributeError):
            value.warmup = 3
        assert hash(value) == hash(type(value)(**vars(value)))


@pytest.mark.parametrize("optimizer, code", [(fastbp.SGD(0.1, momentum=0.9), 0), (fastbp.Adam(0.01), 1)])
@pytest.mark.parametrize("entries", [8, 15])
def test_file_without_schedule_fields_loads(tmp_path, optimizer, code, entries):
    """A model file written before schedules (hyper of 8 entries) loads with a constant rate and no clipping, one
    written before keep_grad (15 entries) with keep_grad=True; its optimizer is named by the code files have always
    held (SGD 0, Adam 1)."""
    net = fastbp.Network(SIZES, optimizer=optimizer, seed=3)
    net.train_step(*make_data(SIZES, 4, "identity", "mse", np.float64))
    net.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as f:
        data = {k: f[k] for k in f.files}
    data["hyper"] = data["hyper"][:entries]
    assert data["hyper"][0] == code
    np.savez(tmp_path / "old.npz", **data)
    back = fastbp.Network.load(tmp_path / "old.npz")
    assert back.optimizer == optimizer
    np.testing.assert_array_equal(back.hyper, net.hyper)


def test_reduce_on_plateau_reference():
    """Without PyTorch: the rate halves exactly when the monitored loss has not improved for ``patience`` epochs."""
    net = fastbp.Network(SIZES, optimizer=fastbp.SGD(1e-9), seed=4)  # too small a rate to improve the loss
    X, Y = make_data(SIZES, 8, "identity", "mse", np.float64)
    history = net.fit(X, Y, epochs=7, batch_size=8, shuffle=False,
                      reduce_on_plateau=schedules.ReduceOnPlateau(factor=0.5, patience=2, threshold=0.01))
    # epoch 0 sets the best; epochs 1, 2 are bad (2 = patience, not yet), 3 reduces; 4, 5 bad, 6 reduces
    np.testing.assert_allclose(history["lr"], [1e-9, 1e-9, 1e-9, 5e-10, 5e-10, 5e-10, 2.5e-10])
    with pytest.raises(TypeError, match="ReduceOnPlateau"):
        net.fit(X, Y, reduce_on_plateau=0.5)


def test_population_schedules_and_no_clipping():
    """Members follow their schedule as a Network does; a Population refuses clip_norm."""
    opt = fastbp.SGD(schedules.StepDecay(0.2, step_size=1, gamma=0.5))
    pop = fastbp.Population(3, SIZES, optimizer=opt, seed=5)
    X = np.random.default_rng(0).normal(size=(3, 2, 3))
    Y = np.random.default_rng(1).normal(size=(3, 2, 2))
    nets = [pop.member(m) for m in range(3)]
    for _ in range(3):
        pop.train_step(X, Y)
        for m, net in enumerate(nets):
            net.train_step(X[m], Y[m])
    for m, net in enumerate(nets):
        np.testing.assert_allclose(pop.params[m], net.params, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="does not clip"):
        fastbp.Population(2, SIZES, optimizer=fastbp.SGD(0.1, clip_norm=1.0))


def test_reduce_on_plateau_defaults_are_pytorchs():
    """ReduceLROnPlateau(mode="min")'s defaults: factor 0.1, patience 10, threshold 1e-4 (relative), cooldown 0,
    min_lr 0."""
    defaults = {name: field.default for name, field in schedules.ReduceOnPlateau.__dataclass_fields__.items()}
    assert defaults == dict(factor=0.1, patience=10, threshold=1e-4, cooldown=0, min_lr=0.0)
