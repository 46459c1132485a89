"""The bad-input catalogue: every optimizer class, every way to hold it wrong.

Each case ends in a clear exception raised before anything changes, or in a
documented behaviour (0-d and empty parameters work; NaN/Inf gradients propagate
exactly as in torch). Never a crash inside a Numba kernel, never a half-updated
buffer. The classes come from OPTIM_DB, so each optimizer that lands is covered.

Behaviours documented here (and in the README):

* NaN/Inf in a gradient propagate as in torch: the affected elements of the
  parameter and its state become NaN/Inf, other elements and other parameters
  are untouched (elementwise optimizers). numopt does not check gradients.
* A hyperparameter edited to an invalid value (``group['lr'] = nan``) raises at
  the next ``step()``, before any group is updated (torch would fill the
  parameters with NaN).

Side-by-side checks run each class's reference (its OPTIM_DB rows' ``reference``,
``torch.optim``'s class of the same name by default). An exception from the
reference is caught only where a case names it (``reference_raises``): anything
else fails the test.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numopt

from .optim_db import OPTIM_DB, OptimCase, prepared, reference_signature
from .test_load_state_dict import assert_same_snapshot, snapshot

# One row per optimizer class: its first OPTIM_DB row is the configuration (and reference) the
# catalogue uses; classes without rows there (tested by dedicated parity tests) run with their defaults
# against torch.optim's class of the same name.
ROWS: dict[str, OptimCase] = {}
for _case in OPTIM_DB:
    ROWS.setdefault(_case.name, _case)
#: wrappers of another optimizer (Lookahead): not built from parameter groups, tested in their own files
WRAPPERS = {"Lookahead"}
for _name in numopt.optim.__all__:
    _cls = getattr(numopt.optim, _name)
    if isinstance(_cls, type) and issubclass(_cls, numopt.Optimizer) and _name not in WRAPPERS:
        ROWS.setdefault(_name, OptimCase(_name, {}, "default"))
CLASSES = sorted(ROWS)

#: classes whose parameters must be matrices (torch refuses others)
MATRIX_ONLY = {"Muon"}
#: classes that read row-sparse gradients only
SPARSE_ONLY = {"SparseAdam"}
#: classes that take one parameter group only
SINGLE_GROUP = {"LBFGS"}
#: classes whose step mixes elements (norms, factored moments, line searches): a NaN may spread
#: across a parameter
REDUCING = {"Adafactor", "Muon", "LBFGS", "Prodigy"}
#: classes that record state (evaluation counts, a group's step count) at a step even without gradients,
#: as their reference does (Prodigy: its groups' step counts and d_numerator)
COUNTS_EVALUATIONS = {"LBFGS", "Adan", "Prodigy"}
#: the Schedule-Free optimizers count every step in their groups (k, weight_sum, ...), as the reference does
COUNTS_EVALUATIONS |= {"SGDScheduleFree", "AdamWScheduleFree"}
#: classes whose first step only records state (ADOPT's second moment): the parameters move from the second
FIRST_STEP_RECORDS = {"ADOPT"}


def _shapes(name: str) -> list[tuple[int, ...]]:
    return [(4, 3), (2, 5)] if name in MATRIX_ONLY else [(4, 3), (5,)]


def _grad(name: str, p: numopt.Parameter, g: np.ndarray):
    if name in SPARSE_ONLY:  # every row (a 0-d parameter cannot take a SparseGrad: ValueError)
        return numopt.SparseGrad(np.arange(g.shape[0] if g.ndim else 1), g if g.ndim else g.reshape(1))
    return g


def _make(name: str, params, **over):
    case = ROWS[name]
    return prepared(case, getattr(numopt, name)(params, **{**case.kwargs, **over}))


def _params(name: str, dtype=None) -> list[numopt.Parameter]:
    dt = np.dtype(ROWS[name].dtype if dtype is None else dtype)
    rng = np.random.default_rng(0)
    return [numopt.Parameter(rng.standard_normal(s).astype(dt)) for s in _shapes(name)]


def _step(name: str, opt: numopt.Optimizer, params: list[numopt.Parameter], seed: int = 1):
    """One step with a closure (LBFGS needs one; the others accept it): gradients of 0.5*|x - c|^2."""
    rng = np.random.default_rng(seed)
    targets = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]

    def closure():
        loss = 0.0
        for p, c in zip(params, targets):
            d = p.data - c
            p.grad = _grad(name, p, d.copy())
            loss += 0.5 * float(np.sum(d.astype(np.float64) ** 2))
        return loss

    return opt.step(closure)


def _torch_grad(name: str, g: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.array(g))  # a copy, and an array even for a NumPy scalar (0-d arithmetic)
    if name in SPARSE_ONLY:
        if t.ndim == 0:
            return t.to_sparse()
        rows = torch.arange(g.shape[0])[None]
        return torch.sparse_coo_tensor(rows, t, tuple(g.shape), check_invariants=True)
    return t


Raises = type[Exception] | tuple[type[Exception], ...]


def _side_by_side(
    name: str,
    init: list[np.ndarray],
    grads_per_step: list[list[np.ndarray]],
    groups: bool = True,
    reference_raises: Raises = (),
    numopt_raises: Raises = (),
):
    """Run numopt and the class's reference from ``init`` on the same gradients; return both final
    parameter lists.

    The loss is ``0.5 * |x|^2 + g . x`` (gradient ``x + g``), set by a closure (LBFGS needs
    one; the others accept it). Where the reference is expected to raise, the caller names the
    exception: ``reference_raises=ZeroDivisionError`` ("the reference raises ZeroDivisionError
    here"); such an exception is returned in place of the reference's parameters. The same for
    numopt with ``numopt_raises``. Any other exception fails the test.
    """
    row = ROWS[name]
    two = groups and name not in SINGLE_GROUP and len(init) > 1

    def grouped(ps):
        return [{"params": ps[:1]}, {"params": ps[1:], **row.group2}] if two else ps

    def run(make_opt, make_param, set_grad, values):
        params = [make_param(a.copy()) for a in init]
        opt = make_opt(grouped(params))
        for grads in grads_per_step:

            def closure(grads=grads):
                loss = 0.0
                for p, g in zip(params, grads):
                    x = values(p)
                    set_grad(p, x + g)
                    loss += float(np.sum(0.5 * x.astype(np.float64) ** 2 + x * g.astype(np.float64)))
                return loss

            opt.step(closure)
        return [values(p) for p in params]

    try:
        ref = run(
            lambda ps: prepared(row, row.reference(ps, **row.kwargs)),
            lambda a: torch.tensor(a, requires_grad=True),
            lambda p, g: setattr(p, "grad", _torch_grad(name, g)),
            lambda p: p.detach().numpy().copy(),
        )
    except reference_raises as e:  # the reference refuses this input, as the caller expects
        ref = e
    try:
        ours = run(
            lambda ps: prepared(row, getattr(numopt, name)(ps, **row.kwargs)),
            numopt.Parameter,
            lambda p, g: setattr(p, "grad", _grad(name, p, g.copy())),
            lambda p: p.data.copy(),
        )
    except numopt_raises as e:
        ours = e
    return ours, ref


CATALOGUE = []


def case(fn):
    CATALOGUE.append(fn)
    return fn


# -- what a Parameter may hold ---------------------------------------------------------


@case
def integer_and_other_non_float_arrays(name: str) -> None:
    for arr in (np.arange(6).reshape(2, 3), np.ones(3, np.int32), np.ones(3, bool), np.ones(3, np.float16)):
        with pytest.raises(TypeError, match="float32 or float64"):
            numopt.Parameter(arr)
    with pytest.raises(TypeError, match="float32 or float64"):
        numopt.Parameter(np.ones(3, np.complex64))
    with pytest.raises(TypeError, match="numopt.Parameter"):
        _make(name, [np.ones(3, np.float32)])  # a raw array in the list
    with pytest.raises(TypeError, match="single ndarray"):
        _make(name, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="shape tuple"):
        numopt.Parameter([1.0, 2.0])


@case
def read_only_array(name: str) -> None:
    a = np.ones((4, 3), np.float32)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numopt.Parameter(a)


@case
def non_contiguous_view(name: str) -> None:
    with pytest.raises(ValueError, match="C-contiguous"):
        numopt.Parameter(np.ones((4, 6), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        numopt.Parameter(np.asfortranarray(np.ones((4, 3), np.float32)))


#: what the reference raises when it cannot step 0-d and empty parameters
REFERENCE_RAISES_ON_0D_OR_EMPTY: dict[str, type[Exception]] = {
    "Adafactor": ZeroDivisionError,  # torch divides by an empty parameter's size
    "Muon": ValueError,  # torch takes matrices only
}
#: classes whose float32 trajectories hinge on rounding (LBFGS's stopping tests and curvature pairs
#: flip on float32 rounding, in numopt as in torch with another summation order): compared in float64
ROUNDING_SENSITIVE = {"LBFGS"}


@case
def zero_d_and_empty_parameters_work_like_torch(name: str) -> None:
    """0-d and empty parameters step as in torch; where torch cannot step them, numopt refuses
    them with a clear error or leaves them alone (never a crash in a kernel)."""
    row = ROWS[name]
    if name in ROUNDING_SENSITIVE:
        row = replace(row, dtype=np.float64)
    dt = np.dtype(row.dtype)
    shapes = [(0, 3), (), (2, 3)]
    rng = np.random.default_rng(2)
    init = [rng.standard_normal(s).astype(dt) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dt) for s in shapes] for _ in range(4)]
    raises = REFERENCE_RAISES_ON_0D_OR_EMPTY.get(name)
    ours, ref = _side_by_side(name, init, grads, reference_raises=raises or (), numopt_raises=(ValueError, TypeError))
    if raises is not None:
        assert isinstance(ref, raises), f"{row.reference_name} was expected to raise {raises.__name__}"
    if isinstance(ours, Exception):  # refused up front, with a message
        e = ours
        assert "0" in str(e) or "dimension" in str(e) or "shape" in str(e) or "2D" in str(e), e
        return
    assert ours[0].shape == (0, 3) and ours[1].shape == ()
    if isinstance(ref, Exception):  # the reference fails (e.g. divides by zero on an empty parameter)
        assert all(np.isfinite(x).all() for x in ours)
        return
    for i, (x, r) in enumerate(zip(ours, ref)):
        np.testing.assert_allclose(x, r, **row.tolerances, err_msg=f"param {i} of shape {shapes[i]}")
    assert ours[1] != init[1]  # the 0-d parameter was updated


# -- gradients ---------------------------------------------------------------------------


@case
def grad_of_wrong_shape(name: str) -> None:
    params = _params(name)
    p = params[0]
    with pytest.raises(ValueError, match=r"grad has shape \(3, 4\), parameter has shape \(4, 3\)"):
        p.grad = np.ones((3, 4), p.dtype)
    opt = _make(name, params)
    with pytest.raises(ValueError, match="shape"):
        p.grad = np.ones(12, p.dtype)  # packed: the same check
    with pytest.raises(ValueError, match="shape"):
        p.grad = np.ones((), p.dtype)  # no broadcasting
    assert p.grad is None
    before = snapshot(opt)
    opt.step(lambda: 0.0)  # no gradients: nothing changes
    after = snapshot(opt)
    if name in COUNTS_EVALUATIONS:
        for fb, fa in zip(before["flats"], after["flats"]):
            np.testing.assert_array_equal(fb["data"], fa["data"])
    else:
        assert_same_snapshot(before, after)


@case
def grad_of_wrong_dtype(name: str) -> None:
    params = _params(name)
    p = params[0]
    other = np.float64 if p.dtype == np.float32 else np.float32
    for g in (np.ones(p.shape, other), np.ones(p.shape, np.int64), np.ones(p.shape, bool)):
        with pytest.raises(TypeError, match="dtype"):
            p.grad = g
    with pytest.raises(TypeError, match="dtype"):
        p.grad = [[1.0] * 3] * 4 if p.dtype == np.float32 else [[1] * 3] * 4
    _make(name, params)
    with pytest.raises(TypeError, match="dtype"):
        p.grad = np.ones(p.shape, other)


@case
def read_only_and_strided_grads_are_copied(name: str) -> None:
    params = _params(name)
    opt = _make(name, params)
    g = np.ones((4, 6), params[0].dtype)[:, ::2]
    ro = np.full(params[1].shape, 0.5, params[1].dtype)
    ro.flags.writeable = False
    before = [p.data.copy() for p in params]

    def closure():
        params[0].grad = _grad(name, params[0], g)
        params[1].grad = _grad(name, params[1], ro)
        return 1.0

    for _ in range(2 if name in FIRST_STEP_RECORDS else 1):
        opt.step(closure)
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, params))


@case
def nan_and_inf_grads_propagate_like_torch(name: str) -> None:
    """NaN/Inf in a gradient go where torch sends them, and nowhere else."""
    row = ROWS[name]
    dt = np.dtype(row.dtype)
    shapes = [(5, 3), (4, 4), (3, 6)] if name in MATRIX_ONLY else [(5, 3), (7,), (2, 3, 4)]
    rng = np.random.default_rng(3)
    init = [rng.standard_normal(s).astype(dt) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dt) for s in shapes] for _ in range(5)]
    grads[2][0].flat[0] = np.nan
    grads[2][0].flat[1] = np.inf
    grads[2][2].flat[3] = -np.inf
    with np.errstate(all="ignore"):
        ours, ref = _side_by_side(name, init, grads)
        _, ref_clean = _side_by_side(name, init, grads[:2])
    for i, (x, r) in enumerate(zip(ours, ref)):
        np.testing.assert_array_equal(np.isfinite(x), np.isfinite(r), err_msg=f"param {i}: NaN/Inf pattern")
        np.testing.assert_allclose(x, r, **row.tolerances, err_msg=f"param {i}")  # NaN == NaN here
    if name not in REDUCING:  # elementwise: param 1, whose gradients were finite, stays finite
        np.testing.assert_array_equal(np.isfinite(ours[1]), True)
    assert all(np.isfinite(r).all() for r in ref_clean)


# -- hyperparameters ----------------------------------------------------------------


@case
def nan_lr(name: str) -> None:
    for lr, err in ((float("nan"), ValueError), (float("inf"), ValueError), (-1.0, ValueError), ("0.1", TypeError)):
        with pytest.raises(err, match="lr|learning rate"):
            _make(name, _params(name), lr=lr)
    params = _params(name)
    opt = _make(name, params)
    _step(name, opt, params)
    before = snapshot(opt)
    opt.param_groups[0]["lr"] = float("nan")
    with pytest.raises(ValueError, match=r"param_groups\[0\]:.*nan"):
        _step(name, opt, params)
    after = snapshot(opt)
    after["groups"][0]["lr"] = before["groups"][0]["lr"]
    assert_same_snapshot(before, after)  # the closure never ran: even the gradients are as they were


@case
def unknown_keyword(name: str) -> None:
    with pytest.raises(TypeError, match="unexpected keyword|got an unexpected"):
        _make(name, _params(name), learning_rate=0.1)


@case
def invalid_group_rolls_back(name: str) -> None:
    """A bad second group fails the constructor and leaves the first group's parameters free."""
    a, b = _params(name)
    data = a.data.copy()
    with pytest.raises((ValueError, TypeError)):
        _make(name, [{"params": [a]}, {"params": [b], "lr": -1.0}])
    np.testing.assert_array_equal(a.data, data)
    assert a._flat is None  # unpacked again
    _make(name, [a, b])  # not "managed by another optimizer"


# -- parameter lists -------------------------------------------------------------------


@case
def empty_parameter_list(name: str) -> None:
    for params in ([], (), iter([]), [{"params": []}]):
        with pytest.raises(ValueError, match="empty parameter list"):
            _make(name, params)
    with pytest.raises(TypeError, match="set"):
        _make(name, set(_params(name)))


@case
def generator_consumed_twice(name: str) -> None:
    params = _params(name)
    gen = (p for p in params)
    opt = _make(name, gen)
    assert list(opt.parameters()) == params
    with pytest.raises(ValueError, match="empty parameter list"):
        _make(name, gen)  # already consumed: an error, not an optimizer over nothing


@case
def same_array_in_two_parameters(name: str) -> None:
    a = np.ones((4, 3), np.dtype(ROWS[name].dtype))
    with pytest.raises(ValueError, match="share memory"):
        _make(name, [numopt.Parameter(a), numopt.Parameter(a)])
    with pytest.raises(ValueError, match="share memory"):
        _make(name, [{"params": [numopt.Parameter(a)]}, {"params": [numopt.Parameter(a)]}])
    flat = np.ones(24, a.dtype)
    views = [flat[:12].reshape(4, 3), flat[9:21].reshape(4, 3)]  # overlapping, each C-contiguous
    with pytest.raises(ValueError, match="share memory"):
        _make(name, [numopt.Parameter(v) for v in views])
    p = numopt.Parameter(a)
    with pytest.raises(ValueError, match="duplicate"):
        _make(name, [p, p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        _make(name, [{"params": [p]}, {"params": [p]}])
    opt = _make(name, [p])
    with pytest.raises(ValueError, match="another live optimizer"):
        _make(name, [p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})


@case
def closure_that_raises(name: str) -> None:
    params = _params(name)
    opt = _make(name, params)
    _step(name, opt, params)
    _step(name, opt, params, seed=2)
    before = snapshot(opt)

    def closure():
        params[0].grad = _grad(name, params[0], np.full(params[0].shape, 9.0, params[0].dtype))
        raise FloatingPointError("loss diverged")

    with pytest.raises(FloatingPointError, match="loss diverged"):
        opt.step(closure)
    after = snapshot(opt)
    for fb, fa in zip(before["flats"], after["flats"]):
        fa["grad"] = fb["grad"]  # the closure assigned a gradient (not yet copied into the buffer)
    assert_same_snapshot(before, after)


@pytest.mark.parametrize("check", CATALOGUE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", CLASSES)
def test_bad_input(name: str, check) -> None:
    check(name)


def test_catalogue_size() -> None:
    """The number of (class, case) pairs the catalogue runs (reported in the issue note)."""
    assert len(CLASSES) >= 1 and len(CATALOGUE) >= 15
    print(f"\nbad-input catalogue: {len(CATALOGUE)} cases x {len(CLASSES)} classes = {len(CATALOGUE) * len(CLASSES)}")


# -- property test: random configurations -------------------------------------------------

_SWITCHES = {"foreach", "fused", "capturable", "differentiable"}
_FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 0.9, 0.999, 1e-8, 2.0, -0.1, -1.0, 10.0, math.nan, math.inf, -math.inf]),
    st.floats(-2.0, 2.0, allow_nan=False, width=32),
)
_WEIRD = st.sampled_from([None, "0.1", True, [0.1], object()])


def _hyperparameters(name: str) -> dict[str, tuple[object, bool]]:
    """The class's tunable constructor arguments: (default, whether it is a count) (torch's switches left out)."""
    sig = inspect.signature(getattr(numopt, name))
    reference_args = reference_signature(ROWS[name].reference).parameters
    out = {}
    for pname, prm in sig.parameters.items():
        if pname == "params" or pname in _SWITCHES or prm.default is inspect.Parameter.empty:
            continue
        if pname not in reference_args:  # numopt's own extras (e.g. LBFGS's c1) have no reference verdict
            continue
        if isinstance(prm.default, (bool, int, float, tuple)):
            out[pname] = (prm.default, str(prm.annotation).startswith("int"))
    return out


def _draw_value(data, default):
    if isinstance(default, bool):
        return data.draw(st.one_of(st.booleans(), _WEIRD), label="bool")
    if isinstance(default, (int, float)):
        return data.draw(st.one_of(_FLOATS, _FLOATS, _WEIRD), label="number")
    n = len(default)
    return data.draw(
        st.one_of(st.tuples(*[_FLOATS] * n), st.lists(_FLOATS, min_size=0, max_size=n + 1).map(tuple), _WEIRD),
        label="tuple",
    )


def _is_plain(value, default, count: bool = False) -> bool:
    """A value of the default's kind: a bool for a bool, an int for a count, a finite number for a
    number, finite numbers for a tuple."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if count:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, tuple) and len(value) == len(default) and all(_is_plain(v, 0.0) for v in value)


#: how the reference refuses an invalid configuration (torch indexes a too-short betas/etas/eps
#: tuple before it checks its length: IndexError)
REFERENCE_REFUSES = (ValueError, TypeError, IndexError)


def _own_refusals(reference_name: str) -> tuple[type[BaseException], ...]:
    """Exceptions of its own a third-party reference refuses a configuration with."""
    if reference_name.startswith("pytorch_optimizer."):
        from pytorch_optimizer.base.exception import NegativeLRError  # not a ValueError

        return (NegativeLRError,)
    return ()


#: bounds numopt documents and checks where the reference checks nothing: a plain value outside
#: them is refused by numopt alone
NUMOPT_ONLY_BOUNDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "Muon": {"eps": lambda v: v >= 0.0},  # the floor of a norm; torch.optim.Muon does not check eps
    # torch accepts history_size=0 and then fails with IndexError at its second iteration
    "LBFGS": {"history_size": lambda v: v >= 1},
    # schedulefree checks lr, weight_decay and momentum of SGD, nothing of AdamW; numopt checks each range
    "SGDScheduleFree": {"warmup_steps": lambda v: v >= 0, "weight_lr_power": lambda v: v >= 0},
    "AdamWScheduleFree": {
        "lr": lambda v: v >= 0,
        "eps": lambda v: v >= 0,
        "weight_decay": lambda v: v >= 0,
        "warmup_steps": lambda v: v >= 0,
        "weight_lr_power": lambda v: v >= 0,
        "betas": lambda v: 0 < v[0] < 1 and 0 <= v[1] < 1,
    },
    # pytorch_optimizer.Prodigy checks neither: d0 divides, d_coef and growth_rate scale the estimate
    "Prodigy": {"d0": lambda v: v > 0.0, "d_coef": lambda v: v > 0.0, "growth_rate": lambda v: v > 0.0},
}


@pytest.mark.parametrize("name", CLASSES)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_configs_valid_never_raise_invalid_raise_value_or_type_error(name: str, data) -> None:
    """The reference decides validity: what it refuses numopt refuses with ValueError/TypeError;
    what it accepts with plain finite values numopt accepts and steps; nothing else ever escapes."""
    defaults = _hyperparameters(name)
    base = dict(ROWS[name].kwargs)
    keys = data.draw(st.lists(st.sampled_from(sorted(defaults)), min_size=1, max_size=3, unique=True), label="keys")
    kwargs = {**base, **{k: _draw_value(data, defaults[k][0]) for k in keys}}
    plain = all(_is_plain(kwargs[k], *defaults[k]) for k in keys)

    ref_params = [torch.zeros(s, requires_grad=True) for s in _shapes(name)]
    reference = ROWS[name].reference
    try:
        reference(ref_params, **kwargs)
        ref_ok = True
    except REFERENCE_REFUSES + _own_refusals(ROWS[name].reference_name):
        ref_ok = False
    params = _params(name)
    who = ROWS[name].reference_name
    try:
        opt = _make(name, params, **{k: kwargs[k] for k in keys})
    except (ValueError, TypeError):
        bounds = NUMOPT_ONLY_BOUNDS.get(name, {})
        accepted = ref_ok and plain and all(ok(kwargs[k]) for k, ok in bounds.items() if k in keys)
        assert not accepted, f"numopt refused {kwargs} that {who} accepts"
        return
    assert ref_ok, f"numopt accepted {kwargs} that {who} refuses"
    with np.errstate(all="ignore"):
        _step(name, opt, params)
        _step(name, opt, params, seed=2)


# -- reproducibility ----------------------------------------------------------------------


def _run(case: OptimCase, threads: int) -> list[np.ndarray]:
    old = numopt.get_num_threads()
    numopt.set_num_threads(threads)
    try:
        name = case.name
        rng = np.random.default_rng(42)
        shapes = [(257, 300), (40, 33)] if name in MATRIX_ONLY else [(257, 300), (1000,)]  # several CHUNKs
        params = [numopt.Parameter(rng.standard_normal(s).astype(case.dtype)) for s in shapes]
        opt = prepared(case, getattr(numopt, name)(params, **case.kwargs))
        for t in range(5):
            _step(name, opt, params, seed=100 + t)
        return [p.data.copy() for p in params] + [
            np.asarray(v).copy() for p in params for v in opt.state.get(p, {}).values()
        ]
    finally:
        numopt.set_num_threads(old)


_IN_DB = {c.name for c in OPTIM_DB}


@pytest.mark.parametrize("case", OPTIM_DB + [ROWS[n] for n in CLASSES if n not in _IN_DB], ids=lambda c: c.id)
def test_same_seed_same_threads_bit_identical(case: OptimCase) -> None:
    threads = numopt.get_num_threads()
    a, b = _run(case, threads), _run(case, threads)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # Any thread count gives the same bits too: elementwise kernels trivially; reductions (L-BFGS's dot
    # products, Muon's norms, clipping) add per-CHUNK partials in a fixed order, Adafactor reduces
    # each row inside one task. (Muon's matrix products use NumPy's BLAS and its own threads.)
    if threads > 1:
        for x, y in zip(a, _run(case, 1)):
            np.testing.assert_array_equal(x, y)
