"""The Optimizer base: groups, hooks, zero_grad, closures, state dicts, errors."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import numopt

from .optim_db import ERROR_DB, OPTIM_DB, ErrorCase, reference_for, reference_signature


def _params(n: int = 3) -> list[numopt.Parameter]:
    return [numopt.Parameter(np.full(i + 1, float(i), np.float32)) for i in range(n)]


@pytest.mark.parametrize("case", ERROR_DB, ids=lambda c: f"{c.name}-{sorted(c.kwargs)}")
def test_invalid_hyperparameters_raise_at_construction(case: ErrorCase) -> None:
    p = numopt.Parameter((2,))
    with pytest.raises(case.error, match=case.match):
        getattr(numopt, case.name)([p], **case.kwargs)
    assert p._flat is None  # nothing was packed


def test_invalid_group_override_raises_and_leaves_optimizer_unchanged() -> None:
    a, b = _params(2)
    opt = numopt.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        opt.add_param_group({"params": [b], "lr": -1.0})
    assert len(opt.param_groups) == 1 and b._flat is None


@pytest.mark.parametrize(
    "params, error, match",
    [
        ([], ValueError, "empty parameter list"),
        (numopt.Parameter((2,)), TypeError, "iterable of Parameters"),
        ({numopt.Parameter((2,))}, TypeError, "not a set"),
        ([np.zeros(2, np.float32)], TypeError, "numopt.Parameter"),
        ([{"lr": 0.1}], ValueError, "'params'"),
        ([("w", numopt.Parameter((2,))), numopt.Parameter((2,))], ValueError, "with/without names"),
    ],
)
def test_bad_params_argument(params, error, match) -> None:
    with pytest.raises(error, match=match):
        numopt.SGD(params)


def test_param_listed_twice() -> None:
    p = numopt.Parameter((2,))
    with pytest.raises(ValueError, match="duplicate parameters"):
        numopt.SGD([p, p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        numopt.SGD([{"params": [p]}, {"params": [p]}])
    assert p._flat is None


def test_param_owned_by_another_live_optimizer() -> None:
    p = numopt.Parameter((2,))
    first = numopt.SGD([p])
    with pytest.raises(ValueError, match="another live optimizer"):
        numopt.SGD([p])
    del first
    numopt.SGD([p])  # the first one is gone: allowed


def test_same_array_in_two_parameters() -> None:
    a = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="share memory"):
        numopt.SGD([numopt.Parameter(a), numopt.Parameter(a)])
    with pytest.raises(ValueError, match="share memory"):
        numopt.SGD([numopt.Parameter(a[:2]), numopt.Parameter(a[1:])])


def test_generator_of_params() -> None:
    ps = _params()
    opt = numopt.SGD(p for p in ps)
    assert opt.param_groups[0]["params"] == ps


def test_add_param_group_fills_defaults_and_requires_lr() -> None:
    a, b = _params(2)
    opt = numopt.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 1e-4})
    g = opt.param_groups[1]
    assert g["lr"] == 1e-4 and g["momentum"] == 0.9 and g["params"] == [b]

    class NeedsLr(numopt.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": numopt.optimizer.required})

    with pytest.raises(ValueError, match="required optimization parameter lr"):
        NeedsLr([numopt.Parameter((1,))])
    NeedsLr([{"params": [numopt.Parameter((1,))], "lr": 0.1}])


def test_named_params_recorded() -> None:
    a, b = _params(2)
    opt = numopt.SGD([("a", a), ("b", b)])
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["a", "b"]


def test_closure_and_loss() -> None:
    (p,) = _params(1)
    opt = numopt.SGD([p], lr=0.5)
    calls = []

    def closure():
        calls.append(1)
        p.grad = np.ones(1, np.float32)
        return 3.0

    assert opt.step(closure) == 3.0 and calls == [1]
    np.testing.assert_allclose(p.data, -0.5)


def test_closure_that_raises_updates_nothing() -> None:
    (p,) = _params(1)
    opt = numopt.SGD([p], lr=0.5)
    p.grad = np.ones(1, np.float32)

    def closure():
        raise RuntimeError("model blew up")

    with pytest.raises(RuntimeError, match="model blew up"):
        opt.step(closure)
    np.testing.assert_array_equal(p.data, 0.0)


def test_step_hooks() -> None:
    (p,) = _params(1)
    opt = numopt.SGD([p], lr=1.0)
    seen = []
    h1 = opt.register_step_pre_hook(lambda o, a, k: seen.append(("pre", float(p.data[0]))))
    h2 = opt.register_step_post_hook(lambda o, a, k: seen.append(("post", float(p.data[0]))))
    hg = numopt.register_optimizer_step_pre_hook(lambda o, a, k: seen.append(("global", o is opt)))
    p.grad = np.ones(1, np.float32)
    opt.step()
    assert seen == [("global", True), ("pre", 0.0), ("post", -1.0)]
    for h in (h1, h2, hg):
        h.remove()
    opt.step()
    assert len(seen) == 3


def test_pre_hook_can_replace_arguments() -> None:
    (p,) = _params(1)
    opt = numopt.SGD([p], lr=1.0)

    def closure():
        p.grad = np.full(1, 2.0, np.float32)
        return "loss"

    opt.register_step_pre_hook(lambda o, a, k: ((), {"closure": closure}))
    assert opt.step() == "loss"
    np.testing.assert_allclose(p.data, -2.0)


def test_lr_edit_takes_effect_next_step() -> None:
    (p,) = _params(1)
    opt = numopt.SGD([p], lr=1.0)
    p.grad = np.ones(1, np.float32)
    opt.step()
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    np.testing.assert_allclose(p.data, -1.25)


def test_state_dict_is_a_copy_and_plain_data() -> None:
    ps = _params()
    opt = numopt.SGD(ps, lr=0.1, momentum=0.9)
    for p in ps:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    sd = opt.state_dict()
    buf = sd["state"][0]["momentum_buffer"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["momentum_buffer"], buf)
    assert sd["param_groups"][0]["params"] == [0, 1, 2]


def test_load_state_dict_validates_before_changing_anything() -> None:
    ps = _params()
    opt = numopt.SGD(ps, lr=0.1, momentum=0.9)
    for p in ps:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    good = opt.state_dict()
    before = [opt.state[p]["momentum_buffer"].copy() for p in ps]

    def broken(mutate):
        sd = opt.state_dict()
        mutate(sd)
        return sd

    cases = [
        (broken(lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0]))), "number of parameter groups"),
        (broken(lambda sd: sd["param_groups"][0]["params"].pop()), "doesn't match the size"),
        (broken(lambda sd: sd["state"][2].update(momentum_buffer=np.zeros(7, np.float32))), r"shape \(7,\)"),
        (broken(lambda sd: sd["state"][1].update(exp_avg=np.zeros(2, np.float32))), "unexpected state key"),
        (broken(lambda sd: sd["param_groups"][0].update(lr=-3.0)), "learning rate"),
        (broken(lambda sd: sd.pop("state")), "missing the key 'state'"),
        (broken(lambda sd: sd["state"].update({9: {}})), "parameter 9"),
    ]
    for sd, match in cases:
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(sd)
        assert opt.param_groups[0]["lr"] == 0.1
        for p, b in zip(ps, before):
            np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], b)
    opt.load_state_dict(good)


def test_load_state_dict_casts_state_to_param_dtype() -> None:
    (p,) = _params(1)
    opt = numopt.SGD([p], lr=0.1, momentum=0.9)
    sd = {
        "state": {0: {"momentum_buffer": np.full(1, 0.5, np.float64)}},
        "param_groups": [dict(opt.state_dict()["param_groups"][0])],
    }
    opt.load_state_dict(sd)
    assert opt.state[p]["momentum_buffer"].dtype == np.float32
    p.grad = np.zeros(1, np.float32)
    opt.step()  # buffer initialized: decays instead of restarting from the grad
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"], 0.45)


def test_torch_switches() -> None:
    numopt.SGD([numopt.Parameter((1,))], foreach=True)  # numopt always runs one fused pass
    numopt.SGD([numopt.Parameter((1,))], fused=True)
    with pytest.raises(RuntimeError, match="cannot be `True` together"):  # torch refuses both at once
        numopt.SGD([numopt.Parameter((1,))], foreach=True, fused=True)
    with pytest.raises(ValueError, match="differentiable"):
        numopt.SGD([numopt.Parameter((1,))], differentiable=True)


def test_repr() -> None:
    opt = numopt.SGD(_params(1), lr=0.1)
    assert "SGD (" in repr(opt) and "lr: 0.1" in repr(opt)


def test_kernel_compiles_once_per_dtype() -> None:
    from numopt.kernels.sgd import sgd_step

    before = {d: set(d.signatures) for d in (sgd_step, sgd_step.serial)}  # other tests compile variants too
    for dtype in (np.float32, np.float64):
        p = numopt.Parameter(np.zeros(3, dtype))
        opt = numopt.SGD([p], lr=1, momentum=0)
        for lr, mom in ((1, 0), (0.5, 0.9), (np.float64(0.1), 0.5)):
            opt.param_groups[0].update(lr=lr, momentum=mom)
            p.grad = np.ones(3, dtype)
            opt.step()
    for dispatcher in (sgd_step, sgd_step.serial):  # the parallel kernel and its twin for small runs
        by_dtype: dict[str, list] = {}
        for s in set(dispatcher.signatures) - before[dispatcher]:
            if str(s[0].dtype) in ("float32", "float64"):
                by_dtype.setdefault(str(s[0].dtype), []).append(s)
                # scalars: Python floats, cast inside; the optional grad_scale left out (clipping not pending)
                assert all(
                    str(t) in ("float64", "bool", "omitted(default=1.0)", "omitted(default=None)") for t in s[3:]
                ), s
        assert all(len(v) == 1 for v in by_dtype.values()), by_dtype


def test_every_shared_doc_placeholder_is_filled() -> None:
    """Class docstrings share argument docs through ``%(name)s`` placeholders: none is left unfilled."""
    import numopt.optim
    from numopt.optimizer import registered

    classes = {*registered(), *(getattr(numopt.optim, n) for n in numopt.optim.__all__)}
    left = [c.__name__ for c in classes if isinstance(c, type) and c.__doc__ and "%(" in c.__doc__]
    assert left == []


#: constructor arguments numopt adds to its reference's (keyword-only, after the reference's own)
_NUMOPT_EXTRAS = {"state_dtype", "min_8bit_size", "rounding", "compensation", "seed", "c1", "c2", "max_ls"}


@pytest.mark.parametrize("name", sorted({c.name for c in OPTIM_DB}))
def test_constructor_signature_follows_the_reference(name: str) -> None:
    """Every argument the reference takes too has its name, order, kind and default; a torch.optim
    reference's signature is matched exactly (numopt's own extras come last, keyword-only)."""
    ours = inspect.signature(getattr(numopt, name)).parameters
    theirs = reference_signature(reference_for(name)).parameters
    common = [k for k in ours if k in theirs]
    assert common == [k for k in theirs if k in ours]
    for k in common:
        if not callable(theirs[k].default):  # a function (ADOPT's clip_lambda): checked by the parity rows
            assert ours[k].default == theirs[k].default, k
    if all(c.reference_is_torch for c in OPTIM_DB if c.name == name):
        extras = [k for k in ours if k not in theirs]
        assert set(extras) <= _NUMOPT_EXTRAS and list(ours)[len(ours) - len(extras) :] == extras, extras
        assert all(ours[k].kind is inspect.Parameter.KEYWORD_ONLY for k in extras), extras
        assert common == list(theirs)
        for k in common:
            assert ours[k].kind == theirs[k].kind, k
    annotated = [k for k, p in ours.items() if p.annotation is inspect.Parameter.empty]
    assert annotated == [], f"arguments without a type: {annotated}"


def test_every_optimizer_module_docstring_example_runs() -> None:
    """The Examples sections (most start from the shared ``%(example)s`` text) run as rendered."""
    import doctest
    import importlib
    import pkgutil

    import numopt.optim

    failed = {}
    for info in pkgutil.iter_modules(numopt.optim.__path__):
        result = doctest.testmod(importlib.import_module(f"numopt.optim.{info.name}"), optionflags=doctest.ELLIPSIS)
        if result.failed:
            failed[info.name] = result
    assert failed == {}


def test_declared_constructor_types_defaults_and_errors() -> None:
    from numopt._arguments import constructor

    class Declared(numopt.Optimizer, register=False):
        __init__ = constructor("lr=1e-3, rate=0.5, flag=False, *, limit=None", types={"limit": "float | None"})

    sig = inspect.signature(Declared.__init__)
    assert str(sig) == (
        "(self, params: 'Any', lr: 'float' = 0.001, rate: 'float' = 0.5, flag: 'bool' = False, *, "
        "limit: 'float | None' = None) -> 'None'"
    )
    assert Declared.__init__.__qualname__.endswith("Declared.__init__")
    with pytest.raises(TypeError, match=r"'other' \(default None\) needs a type"):
        constructor("lr=1e-3, other=None")
    with pytest.raises(TypeError, match="every constructor argument after params needs a default"):
        constructor("lr")
    with pytest.raises(TypeError, match="do not parse"):
        constructor("lr=1e-3,, eps")
    with pytest.raises(TypeError, match=r"no \*args"):
        constructor("lr=1e-3, **kwargs")
