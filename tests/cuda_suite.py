"""The CUDA path: parity table, state dicts, memory traffic, kernels.

Run by ``tests/test_cuda.py`` in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``
(the simulator must be chosen before Numba is imported), and also without it
when a GPU is present. Direct use: ``NUMBA_ENABLE_CUDASIM=1 python -m pytest
tests/cuda_suite.py`` (or without the variable on a machine with a GPU).

Under the simulator the kernels run as Python on NumPy scalars and match the
CPU kernels bit for bit, which is asserted; on a GPU, NVVM's fused
multiply-adds allow last-bit differences, so the comparison there uses the
parity tolerances. Either way every step is also compared with torch.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
import torch
from numba import cuda

import numopt
import numopt.kernels.segments
import numopt.kernels.sgd
from numopt._jit import CHUNK
from numopt.kernels import averaging as cpu_averaging
from numopt.kernels import clip as cpu_clip
from numopt.kernels import cuda as ncuda
from numopt.optimizer import registered

from .optim_db import OPTIM_DB, OptimCase, prepared
from .reference import SHAPES, SPLIT, _check, make_pair, random_grads

SIMULATOR = ncuda.SIMULATOR
#: the optimizers whose update is elementwise, hence runs on the GPU
#: every optimizer declared with an elementwise rule (derived from the registry)
ELEMENTWISE = [c.__name__ for c in registered(elementwise=True)]
#: the optimizers without an elementwise rule that run on the GPU: their reductions (trust ratios,
#: Prodigy's sums) have CUDA twins (numopt.kernels.cuda.segments)
REDUCING = ["Lamb", "LARS", "Prodigy"]
#: steps per parity row: covers a parameter skipped now and then and one starting late (see reference.py)
CUDA_STEPS = 8
# rows on small parameters (the simulator runs each thread in Python: large rows would take minutes)
CUDA_ROWS = [c for c in OPTIM_DB if c.name in ELEMENTWISE and c.shapes is None]


def _host(x):
    return x.copy_to_host() if hasattr(x, "copy_to_host") else np.asarray(x)


def _device_twin(case: OptimCase, pair) -> tuple[numopt.Optimizer, list[numopt.Parameter]]:
    """The same optimizer as ``pair.ours``, over CUDA copies of its initial parameters."""
    params = [numopt.Parameter(cuda.to_device(p.data.copy())) for p in pair.params]
    opt = getattr(numopt, case.name)(
        [{"params": params[:SPLIT]}, {"params": params[SPLIT:], **case.group2}], **case.kwargs
    )
    return prepared(case, opt), params


def _assert_same(what: str, ours, ref, exact: bool, tol: dict[str, float]) -> None:
    ours = _host(ours)
    ref = np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, (what, ours.shape, ref.shape, ours.dtype, ref.dtype)
    if exact:
        np.testing.assert_array_equal(ours, ref, err_msg=what)
    else:
        np.testing.assert_allclose(ours, ref, err_msg=what, **tol)


def test_every_elementwise_optimizer_has_rows() -> None:
    assert {c.name for c in CUDA_ROWS} == set(ELEMENTWISE)


@pytest.mark.parametrize("case", CUDA_ROWS, ids=lambda c: c.id)
def test_parity_on_cuda(case: OptimCase) -> None:
    """Each step on the device equals numopt's CPU step (exactly, in the simulator) and torch's."""
    pair = make_pair(case)
    dev, dparams = _device_twin(case, pair)
    assert all(p.is_cuda for p in dparams) and all(f.is_cuda for fl in dev._flats for f in fl)
    rng = np.random.default_rng(1)
    tol = case.tolerances
    for t in range(min(case.steps, CUDA_STEPS)):
        grads = random_grads(rng, t, pair.dtype, pair.shapes)
        pair.set_grads(grads)
        for p, g in zip(dparams, grads):
            p.grad = None if g is None else cuda.to_device(g)
        pair.step()
        dev.step()
        for i, (p, cp, tp) in enumerate(zip(dparams, pair.params, pair.ref_params)):
            _assert_same(f"step {t}: param {i}", p.data, cp.data, SIMULATOR, tol)
            if case.compare == "elementwise":  # else: equal to the CPU, which test_parity compares
                _check(f"step {t}: param {i} vs torch", _host(p.data), tp.detach().numpy(), **tol)
            ours, cpu_state = dev.state.get(p, {}), pair.ours.state.get(cp, {})
            assert set(ours) == set(cpu_state), (t, i, set(ours), set(cpu_state))
            tstate = pair.ref.state.get(tp, {})
            for key, v in cpu_state.items():
                if key == "step" or key in type(dev)._scalar_keys:
                    assert float(ours[key]) == float(v), (t, i, key)
                    continue
                _assert_same(f"step {t}: param {i} state {key!r}", ours[key], v, SIMULATOR, tol)
                if key in tstate and case.compare == "elementwise":
                    _check(f"step {t}: param {i} {key!r} vs torch", _host(ours[key]), tstate[key].numpy(), **tol)


@pytest.mark.parametrize("name", ["SGDScheduleFree", "AdamWScheduleFree"])
def test_schedulefree_train_eval_on_cuda(name: str) -> None:
    """The Schedule-Free modes switch on the device as on the host (eval(), train(), eval() again)."""
    case = next(c for c in CUDA_ROWS if c.name == name and c.group2)
    pair = make_pair(case)
    dev, dparams = _device_twin(case, pair)
    rng = np.random.default_rng(3)
    for t in range(4):
        grads = random_grads(rng, t, pair.dtype, pair.shapes)
        pair.set_grads(grads)
        for p, g in zip(dparams, grads):
            p.grad = None if g is None else cuda.to_device(g)
        pair.ours.step()
        dev.step()
    for switch in ("eval", "train", "eval"):
        getattr(pair.ours, switch)()
        getattr(dev, switch)()
        for i, (p, cp) in enumerate(zip(dparams, pair.params)):
            _assert_same(f"{switch}: param {i}", p.data, cp.data, SIMULATOR, case.tolerances)


@pytest.mark.parametrize("name", ["SGD", "Adam", "NAdam", "ASGD", "Rprop", "RMSprop"])
def test_state_dict_is_host_numpy_and_resumes_exactly(name: str) -> None:
    case = next(c for c in CUDA_ROWS if c.name == name and c.group2)
    rng = np.random.default_rng(2)
    steps = 8
    grads = [random_grads(rng, t, np.dtype(case.dtype), case.shapes) for t in range(steps)]
    init = [p.data.copy() for p in make_pair(case).params]

    def build(values):
        params = [numopt.Parameter(cuda.to_device(v)) for v in values]
        groups = [{"params": params[:SPLIT]}, {"params": params[SPLIT:], **case.group2}]
        return getattr(numopt, case.name)(groups, **case.kwargs), params

    def run(split: int | None) -> list[np.ndarray]:
        opt, params = build(init)
        for t in range(steps):
            if t == split:
                sd = opt.state_dict()
                for entry in sd["state"].values():
                    for v in entry.values():
                        assert isinstance(v, (float, np.ndarray)), type(v)
                opt, params = build([p.data.copy_to_host() for p in params])
                opt.load_state_dict(sd)
            for p, g in zip(params, grads[t]):
                p.grad = None if g is None else g.copy()  # host gradients: copied to the device at the step
            opt.step()
        return [p.data.copy_to_host() for p in params]

    for a, b in zip(run(None), run(steps // 2)):
        np.testing.assert_array_equal(a, b)


def test_a_step_moves_no_arrays_between_host_and_device(monkeypatch) -> None:
    """With gradients written in place into ``p.grad``, a step only launches kernels."""
    params = [numopt.Parameter(cuda.to_device(np.ones(s, np.float32))) for s in SHAPES]
    opt = numopt.Adam(params, lr=0.1, amsgrad=True)
    for p in params:
        p.zero_grad_()
    opt.step()  # first step: state is allocated (and filled on the device)
    assert _copies_during_steps(opt, params, 3, monkeypatch) == []
    assert opt.state[params[0]]["step"] == 4.0


def _copies_during_steps(opt: numopt.Optimizer, params: list, steps: int, monkeypatch) -> list[str]:
    """The host-device copies made by ``steps`` steps of ``opt``, gradients written in place before each."""
    copies: list[str] = []
    cls = type(params[0].data)
    for meth in ("copy_to_host", "copy_to_device"):
        orig = getattr(cls, meth)
        monkeypatch.setattr(cls, meth, lambda self, *a, _m=meth, _o=orig, **k: copies.append(_m) or _o(self, *a, **k))
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: copies.append("to_device"))
    for _ in range(steps):
        for p in params:
            ncuda.memory.fill_(p.grad, 0.5)
        opt.step()
    return copies


def test_parameter_with_cuda_data() -> None:
    x = cuda.to_device(np.arange(6, dtype=np.float32).reshape(2, 3))
    p = numopt.Parameter(x, name="w")
    assert p.is_cuda and p.shape == (2, 3) and p.dtype == np.float32 and p.size == 6
    assert p.data is x  # kept without copying, like a host array
    with pytest.raises(TypeError, match="GPU memory"):
        np.asarray(p)
    with pytest.raises(TypeError, match="GPU memory"):
        p.numpy()
    with pytest.raises(TypeError, match="convert it on the device"):
        numopt.Parameter(x, dtype=np.float64)
    with pytest.raises(TypeError, match="float32 or float64"):
        numopt.Parameter(cuda.to_device(np.zeros(3, np.int32)))
    with pytest.raises(TypeError, match="host memory"):
        numopt.Parameter(np.zeros(3, np.float32)).grad = cuda.to_device(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="dense gradients"):
        p.grad = numopt.SparseGrad([0], np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        p.grad = cuda.to_device(np.zeros(3, np.float32))
    p.zero_grad_()
    assert p.grad.copy_to_host().tolist() == [[0, 0, 0], [0, 0, 0]]
    assert not numopt.Parameter((2,)).is_cuda
    assert not hasattr(numopt.Parameter((2,)), "__cuda_array_interface__")


def test_packed_cuda_parameter_data_and_grad() -> None:
    a = numopt.Parameter(cuda.to_device(np.ones(3, np.float32)))
    b = numopt.Parameter(cuda.to_device(np.full((2, 2), 2.0, np.float32)))
    h = numopt.Parameter(np.ones(2, np.float64))  # host and device parameters may share a group
    opt = numopt.SGD([a, b, h], lr=0.5)
    assert [f.is_cuda for f in opt._flats[0]] == [True, False]
    a.data = np.full(3, 4.0, np.float32)  # host values: copied into the device buffer
    with pytest.raises(TypeError, match="host parameter"):
        h.data = cuda.to_device(np.ones(2, np.float64))
    b.data = cuda.to_device(np.full((2, 2), 3.0, np.float32))  # device values: device to device
    a.grad = np.ones(3, np.float32)
    b.grad = cuda.to_device(np.ones((2, 2), np.float32))
    h.grad = np.ones(2, np.float64)
    opt.step()
    assert a.data.copy_to_host().tolist() == [3.5] * 3
    assert b.data.copy_to_host().tolist() == [[2.5, 2.5], [2.5, 2.5]]
    assert h.data.tolist() == [0.5, 0.5]
    flat = opt._flats[0][0]
    assert a.grad.copy_to_host().tolist() == [1.0] * 3  # now a view of the device grad buffer
    opt.zero_grad(set_to_none=False)
    assert flat.grad.copy_to_host().tolist() == [0.0] * 7
    opt.zero_grad()
    assert a.grad is None


def test_optimizers_without_cuda_kernels_refuse_cuda_parameters_before_packing() -> None:
    p = numopt.Parameter(cuda.to_device(np.ones((3, 2), np.float32)))
    # (Lookahead wraps an optimizer: it updates CUDA parameters when the wrapped optimizer does)
    skip = (*ELEMENTWISE, *REDUCING, "Lookahead")
    others = [getattr(numopt, name) for name in numopt.optim.__all__ if name not in skip]
    assert {"Adafactor", "SparseAdam"} <= {cls.__name__ for cls in others}
    assert not any(cls.runs_on_cuda for cls in others)
    for cls in others:
        # NotImplementedError from the device buffer, or the class's own refusal (LBFGS: TypeError)
        with pytest.raises((NotImplementedError, TypeError), match=f"{cls.__name__}.*CUDA parameters"):
            cls([p])
        assert p._flat is None


def test_failed_group_releases_cuda_parameters() -> None:
    a = numopt.Parameter(cuda.to_device(np.ones(3, np.float32)))
    b = numopt.Parameter(cuda.to_device(np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="learning rate"):
        numopt.SGD([{"params": [a]}, {"params": [b], "lr": -1.0}])
    assert a._flat is None and a.is_cuda and a.data.copy_to_host().tolist() == [1.0] * 3
    numopt.SGD([a, b])  # both free again


def _rules() -> list:
    """Every generated kernel: the optimizers' rules, the averaging and the elementwise clipping kernels."""
    kernels = [c.rule for c in registered(elementwise=True)]
    kernels += [cpu_averaging.lerp_, cpu_averaging.running_mean_, cpu_clip.scale_, cpu_clip.clamp_]
    return list({id(k): k for k in kernels}.values())


def test_launchers_take_the_cpu_kernels_arguments() -> None:
    # the CUDA loops are generated from the rules; only the reductions are written for CUDA by hand
    twins = {"norm_partials", "segment_sum_squares", "lamb_update", "lars_update", "prodigy_reduce"}
    assert {key.rsplit(".", 1)[1] for key in ncuda.KERNELS} == twins
    for key, twin in ncuda.KERNELS.items():
        module, name = key.rsplit(".", 1)
        cpu = getattr(importlib.import_module(module), name)
        ours, theirs = inspect.signature(twin).parameters, inspect.signature(cpu.py_func).parameters
        assert [(n, q.default) for n, q in ours.items()] == [(n, q.default) for n, q in theirs.items()], key
    for cpu in _rules():
        launcher = cpu.rule.cuda()
        ours, theirs = inspect.signature(launcher).parameters, inspect.signature(cpu.py_func).parameters
        assert [(n, q.default) for n, q in ours.items()] == [(n, q.default) for n, q in theirs.items()], cpu


def test_launcher_refuses_host_arrays_and_skips_empty_work() -> None:
    sgd = numopt.kernels.sgd.sgd_step.rule.cuda()
    with pytest.raises(TypeError, match="host array"):
        sgd(np.ones(3, np.float32), *([cuda.to_device(np.ones(3, np.float32))] * 2), *[0.1] * 4, False, False, True)
    z = cuda.to_device(np.zeros(0, np.float32))
    sgd(z, z, z, *[0.1] * 4, False, False, True)


def test_grid_stride_covers_every_element_with_several_blocks(monkeypatch) -> None:
    monkeypatch.setattr(ncuda._launch, "SIM_BLOCKS", 3)
    monkeypatch.setattr(ncuda._launch, "SIM_THREADS", 2)
    rng = np.random.default_rng(5)
    avg, cur = rng.standard_normal(37).astype(np.float32), rng.standard_normal(37).astype(np.float32)
    d_avg = cuda.to_device(avg)
    cpu_averaging.lerp_.rule.cuda()(d_avg, cuda.to_device(cur), np.float32(0.3))
    cpu_averaging.lerp_(avg, cur, np.float32(0.3))
    np.testing.assert_array_equal(d_avg.copy_to_host(), avg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_averaging_and_clipping_kernels_match_the_cpu(dtype) -> None:
    rng = np.random.default_rng(6)
    n = 2 * numopt._jit.CHUNK + 5 if not SIMULATOR else 300
    a, c = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    t = np.dtype(dtype).type
    for name, args in [("lerp_", (t(0.3),)), ("lerp_", (t(0.7),)), ("running_mean_", (t(3.0),))]:
        ours, ref = cuda.to_device(a), a.copy()
        getattr(cpu_averaging, name).rule.cuda()(ours, cuda.to_device(c), *args)
        getattr(cpu_averaging, name)(ref, c, *args)
        _assert_same(name, ours, ref, SIMULATOR, {"rtol": 1e-6, "atol": 1e-7})
    for name, args in [("scale_", (t(0.25),)), ("clamp_", (t(-0.5), t(0.5)))]:
        ours, ref = cuda.to_device(a), a.copy()
        getattr(cpu_clip, name).rule.cuda()(ours, *args)
        getattr(cpu_clip, name)(ref, *args)
        _assert_same(name, ours, ref, True, {})
    g = a.copy()
    g[7] = np.nan if dtype == np.float64 else g[7]
    for mode, p in [(cpu_clip.SUM_SQUARES, 2.0), (cpu_clip.SUM_ABS, 1.0), (cpu_clip.SUM_POW, 3.0),
                    (cpu_clip.MAX_ABS, np.inf), (cpu_clip.MIN_ABS, -np.inf)]:  # fmt: skip
        nchunks = (n + numopt._jit.CHUNK - 1) // numopt._jit.CHUNK
        ref = np.empty(nchunks)
        cpu_clip.norm_partials(g, mode, p, ref)
        host_out = np.empty(nchunks)
        ncuda.clip.norm_partials(cuda.to_device(g), mode, p, host_out)  # host partials: copied back
        dev_out = cuda.device_array(nchunks, np.float64)
        ncuda.clip.norm_partials(cuda.to_device(g), mode, p, dev_out)
        np.testing.assert_allclose(host_out, ref, rtol=1e-13, err_msg=str(mode))
        np.testing.assert_array_equal(dev_out.copy_to_host(), host_out)


# -- numopt.utils (gradient clipping) on GPU parameters ---------------------------------------------------

#: 0-1 in SGD group 1, 2-4 in group 2, 5-6 loose; 6 is a host parameter on both sides (a mixed list)
CLIP_SHAPES: list[tuple[int, ...]] = [(5, 3), (7,), (), (2, 3, 4), (0, 2), (4, 4), (3,)]
NORM_TYPES = [2.0, 1.0, np.inf, -np.inf, 0.0, 3.0, 0.5, -2.0]


def _clip_models(dtype, seed: int = 7, special: dict[int, float] | None = None) -> list[tuple]:
    """``[(params, optimizer, listed)]`` for the host model, then its GPU twin, with equal gradients.

    The gradients reach the parameters every way they can: written in place into the flat buffer
    (0, 4), assigned as a NumPy array (1: host to device for the GPU twin, at clipping), none (2),
    assigned as a CUDA array (3), a loose CUDA gradient (5), a host parameter (6). ``special``
    overwrites one element of a gradient (``{index: value}``). ``listed`` names 0 and 5 twice.
    """
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in CLIP_SHAPES]
    grads = [(rng.standard_normal(s) * 2.0).astype(dtype) for s in CLIP_SHAPES]
    for i, v in (special or {}).items():
        grads[i].reshape(-1)[0] = v
    models = []
    for gpu in (False, True):
        params = [numopt.Parameter(cuda.to_device(v) if gpu and i != 6 else v.copy()) for i, v in enumerate(init)]
        opt = numopt.SGD([{"params": params[:2]}, {"params": params[2:5]}], lr=0.1)
        for i, (p, g) in enumerate(zip(params, grads)):
            if i in (0, 4):
                p.zero_grad_()  # a view of the flat buffer
                if gpu:
                    ncuda.memory.copy_into(p.grad, g)
                else:
                    p.grad[...] = g
            elif i in (3, 5) and gpu:
                p.grad = cuda.to_device(g)
            elif i != 2:
                p.grad = g.copy()
        models.append((params, opt, [*params, params[0], params[5]]))
    assert [p.is_cuda for p in models[1][0]] == [True] * 6 + [False]
    return models


def _grads(params) -> list:
    return [None if p.grad is None else _host(p.grad) for p in params]


def _assert_grads(dev, host, exact: bool, dtype) -> None:
    tol = {"rtol": 1e-6 if np.dtype(dtype) == np.float32 else 1e-13, "atol": 0.0}
    for i, (d, h) in enumerate(zip(_grads(dev), _grads(host))):
        assert (d is None) == (h is None), i
        if d is not None:
            _assert_same(f"grad {i}", d, h, exact, tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
def test_clip_grad_norm_on_gpu_matches_the_host(norm_type: float, dtype) -> None:
    """Reduced and scaled on the device: the host path's norm (to float64 rounding) and gradients."""
    (hp, hopt, hlist), (dp, dopt, dlist) = _clip_models(dtype)
    if norm_type == 0:  # a gradient of zeros is not counted
        hp[5].grad = np.zeros((4, 4), dtype)
        dp[5].grad = cuda.to_device(np.zeros((4, 4), dtype))
    host = numopt.utils.clip_grad_norm_(hlist, max_norm=0.005, norm_type=norm_type)
    dev = numopt.utils.clip_grad_norm_(dlist, max_norm=0.005, norm_type=norm_type)
    assert type(dev) is type(host) is np.dtype(dtype).type
    exact = norm_type in (0.0, np.inf, -np.inf)  # no sum: nothing depends on the order
    rtol = 2e-7 if np.dtype(dtype) == np.float32 else 1e-13
    if exact:
        assert dev == host, (dev, host)
    else:
        np.testing.assert_allclose(dev, host, rtol=rtol)
    assert float(host) > 0.005 or norm_type == -np.inf  # the gradients were scaled
    same = exact or dev == host  # then the gradients were scaled by the same coefficient
    _assert_grads(dp, hp, same, dtype)
    assert dp[0].grad is dopt._flats[0][0].grad_view(0) and dp[1].grad is dopt._flats[0][0].grad_view(1)
    assert dp[3].grad is dopt._flats[1][0].grad_view(1)  # the assigned arrays were moved into the buffer
    # the same again through get_total_norm + clip_grads_with_norm_, on the clipped gradients
    host = numopt.utils.get_total_norm(hlist, norm_type)
    dev = numopt.utils.get_total_norm(dlist, norm_type)
    np.testing.assert_allclose(dev, host, rtol=rtol)
    numopt.utils.clip_grads_with_norm_(hlist, 0.25 * float(host), host)
    numopt.utils.clip_grads_with_norm_(dlist, 0.25 * float(host), host)
    _assert_grads(dp, hp, same, dtype)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the simulator's inf * 0 (NumPy scalars)
@pytest.mark.parametrize("norm_type", [2.0, np.inf, 1.5])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clip_grad_norm_nonfinite_on_gpu(norm_type: float, bad: float) -> None:
    (hp, _, hlist), (dp, _, dlist) = _clip_models(np.float32, special={5: bad})
    before = _grads(dp)
    for params in (hlist, dlist):
        with pytest.raises(RuntimeError, match="non-finite"):
            numopt.utils.clip_grad_norm_(params, 1.0, norm_type, error_if_nonfinite=True)
    for a, b in zip(_grads(dp), before):
        assert (a is None and b is None) or np.array_equal(a, b, equal_nan=True)  # nothing was changed
    host = numopt.utils.clip_grad_norm_(hlist, 1.0, norm_type)
    dev = numopt.utils.clip_grad_norm_(dlist, 1.0, norm_type)
    np.testing.assert_array_equal(dev, host)
    assert not np.isfinite(dev)
    _assert_grads(dp, hp, True, np.float32)  # scaled by the same non-finite coefficient (NaN stays NaN)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_on_gpu_matches_the_host(dtype) -> None:
    (hp, _, hlist), (dp, _, dlist) = _clip_models(dtype, special={3: np.nan, 5: -np.inf})
    numopt.utils.clip_grad_value_(hlist, 0.75)
    numopt.utils.clip_grad_value_(dlist, 0.75)
    _assert_grads(dp, hp, True, dtype)
    assert np.isnan(_host(dp[3].grad).reshape(-1)[0]) and _host(dp[5].grad)[0, 0] == -0.75


def test_get_total_norm_of_cuda_arrays() -> None:
    rng = np.random.default_rng(8)
    arrays = [rng.standard_normal(s) for s in [(4, 3), (0,), (5,)]]
    for p in NORM_TYPES:
        host = numopt.utils.get_total_norm(arrays, p)
        mixed = numopt.utils.get_total_norm([cuda.to_device(arrays[0]), arrays[1], cuda.to_device(arrays[2])], p)
        np.testing.assert_allclose(mixed, host, rtol=1e-13)
        assert type(mixed) is np.float64
    one = numopt.utils.get_total_norm(cuda.to_device(arrays[0]))
    np.testing.assert_allclose(one, np.linalg.norm(arrays[0]), rtol=1e-13)


@pytest.mark.parametrize("norm_type", [2.0, 0.0])
def test_clipping_copies_only_the_partials(monkeypatch, norm_type: float) -> None:
    """No gradient goes between host and device: the only copy is each range's few-bytes partials, to the host."""
    _, (dp, dopt, dlist) = _clip_models(np.float32)
    numopt.utils.clip_grad_value_(dlist, 10.0)  # moves the assigned gradients into the buffers first
    copies = []
    cls = type(dp[0].data)
    for meth in ("copy_to_host", "copy_to_device"):
        orig = getattr(cls, meth)
        monkeypatch.setattr(
            cls, meth, lambda self, *a, _m=meth, _o=orig, **k: copies.append((_m, self.size)) or _o(self, *a, **k)
        )
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: copies.append(("to_device", 0)))
    numopt.utils.clip_grad_norm_(dlist, 0.1, norm_type)
    numopt.utils.clip_grad_value_(dlist, 0.01)
    assert copies and all(c == ("copy_to_host", 1) for c in copies), copies  # one chunk per range here


def test_clipping_refuses_a_non_contiguous_cuda_gradient() -> None:
    p = numopt.Parameter(cuda.to_device(np.ones((3, 2), np.float32)))
    p._grad = cuda.to_device(np.ones((2, 3), np.float32)).T  # (not something the grad setter makes)
    assert not p._grad.is_c_contiguous()
    with pytest.raises(ValueError, match="non-contiguous CUDA gradient"):
        numopt.utils.clip_grad_norm_([p], 1.0)


# -- numopt.swa_utils.AveragedModel on GPU parameters ----------------------------------------------------

AVG_VARIANTS = {
    "default mean": {},
    "swa multi": {"multi_avg_fn": numopt.swa_utils.get_swa_multi_avg_fn()},
    "ema multi 0.9": {"multi_avg_fn": numopt.swa_utils.get_ema_multi_avg_fn(0.9)},
    "ema multi 0.3": {"multi_avg_fn": numopt.swa_utils.get_ema_multi_avg_fn(0.3)},  # lerp's other branch
}


def _avg_models(dtype, seed: int = 9) -> list[tuple[list[numopt.Parameter], numopt.Optimizer]]:
    """Host parameters and their GPU twin: 0-2 in SGD group 1, 3-4 in group 2, 5 loose, 6 a host parameter."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in CLIP_SHAPES]
    out = []
    for gpu in (False, True):
        params = [numopt.Parameter(cuda.to_device(v) if gpu and i != 6 else v.copy()) for i, v in enumerate(init)]
        out.append((params, numopt.SGD([{"params": params[:3]}, {"params": params[3:5]}], lr=0.1)))
    return out


def _move(rng, models) -> None:
    """A new gradient for every parameter and an SGD step, on both sides."""
    grads = [rng.standard_normal(s).astype(models[0][0][0].dtype) for s in CLIP_SHAPES]
    for params, opt in models:
        for p, g in zip(params, grads):
            p.grad = cuda.to_device(g) if p.is_cuda else g.copy()
        opt.step()
        if params[5].is_cuda:
            ncuda.memory.copy_into(params[5].data, _host(params[5].data) - 0.1)
        else:
            params[5].data[...] -= 0.1
        params[6].data[...] += 0.2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", list(AVG_VARIANTS))
def test_averaged_model_on_gpu_matches_the_host(variant: str, dtype) -> None:
    """The average is kept in GPU memory and updated by the CUDA twins: the host path's values."""
    rng = np.random.default_rng(10)
    models = _avg_models(dtype)
    (hp, hopt), (dp, dopt) = models
    host = numopt.swa_utils.AveragedModel(hp, **AVG_VARIANTS[variant])
    dev = numopt.swa_utils.AveragedModel(dp, **AVG_VARIANTS[variant])
    assert [q.is_cuda for q in dev.module] == [True] * 6 + [False]
    assert {k for k in dev._buffers} == {(np.dtype(dtype), True), (np.dtype(dtype), False)}
    tol = {"rtol": 1e-6, "atol": 1e-7} if np.dtype(dtype) == np.float32 else {"rtol": 1e-13, "atol": 1e-14}
    for t in range(5):
        _move(rng, models)
        host.update_parameters(hp)
        dev.update_parameters([*dopt.parameters(), *dp[5:]])
        assert dev.n_averaged == host.n_averaged == t + 1
        for i, (d, h) in enumerate(zip(dev.module, host.module)):
            _assert_same(f"update {t}: param {i}", d.data, h.data, SIMULATOR, tol)
    # state_dict: host NumPy copies, equal to the host model's; loading resumes exactly
    sd = dev.state_dict()
    assert all(isinstance(a, np.ndarray) for a in sd["params"])
    for i, (a, b) in enumerate(zip(sd["params"], host.state_dict()["params"])):
        _assert_same(f"state_dict param {i}", a, b, SIMULATOR, tol)
    again = numopt.swa_utils.AveragedModel(dp, **AVG_VARIANTS[variant])
    again.load_state_dict(sd)
    assert again.n_averaged == dev.n_averaged and again.module[0].is_cuda
    _move(rng, models)
    dev.update_parameters(dp)
    again.update_parameters(dp)
    for d, a in zip(dev.module, again.module):
        np.testing.assert_array_equal(_host(a.data), _host(d.data))


def test_averaged_model_on_gpu_refuses_what_it_cannot_do() -> None:
    (hp, _), (dp, _) = _avg_models(np.float32)
    swa = numopt.swa_utils
    with pytest.raises(NotImplementedError, match="user avg_fn"):
        swa.AveragedModel(dp, avg_fn=swa.get_ema_avg_fn(0.9))
    with pytest.raises(NotImplementedError, match="user multi_avg_fn"):
        swa.AveragedModel(dp, multi_avg_fn=lambda averaged, current, n: None)
    swa.AveragedModel(hp, avg_fn=swa.get_ema_avg_fn(0.9))  # host parameters: fine
    with pytest.raises(ValueError, match="device must be None"):
        swa.AveragedModel(dp, device="cpu")
    with pytest.raises(ValueError, match="device must be None"):
        swa.AveragedModel(dp[:6], device="cuda:1")
    avg = swa.AveragedModel(dp[:6], device="cuda")
    with pytest.raises(ValueError, match="host or GPU memory"):
        avg.update_parameters(hp[:6])  # same shapes and dtypes, but on the host
    with pytest.raises(TypeError, match="current CUDA array"):
        swa.get_ema_multi_avg_fn(0.5)([avg.module[0].data], [hp[0].data], 0)


@pytest.mark.filterwarnings("ignore:Simulator timings are bogus")
def test_bench_pieces_run_on_the_cuda_path() -> None:
    """``bench --device cuda``'s numopt side and stream kernel (the simulator has no timings: values only)."""
    from numopt.bench import Workload
    from numopt.bench import cuda as bench_cuda
    from numopt.kernels.cuda.stream import stream_

    for row in ("Adam", "Adam+bf16"):  # (a compact-state row: its state in GPU memory)
        res = bench_cuda.bench_numopt_cuda(row, Workload("w", [(5,), (2, 3)]), min_repeats=2, budget_s=0, warmup=1)
        assert res["n"] == 2
    ro, a, b = (cuda.to_device(np.full(9, v, np.float32)) for v in (1.0, 2.0, 3.0))
    stream_[1, 2](ro, a, b, a, a, 2)
    assert a.copy_to_host().tolist() == [3.0] * 9 and b.copy_to_host().tolist() == [4.0] * 9
    row = bench_cuda.GpuRow("Adam", "flat 1e7", 10**7, 0.1, 1400.0, 42.0, 90.0, {"fused": 0.09}, {"fused": 1555.0})
    table = bench_cuda.render_gpu_table([row], peak=3350.0)
    assert "| Adam | flat 1e7 | 0.100 | 1400 | 42 | 90 |" in table and "| 46 |" in table


if not SIMULATOR and torch.cuda.is_available():  # foreign CUDA arrays exist only on a real GPU

    def test_torch_cuda_tensors_as_parameters() -> None:
        w = torch.randn(4, 3, device="cuda")
        ref = w.clone().requires_grad_(True)
        p = numopt.Parameter(w)
        opt, topt = numopt.Adam([p], lr=0.1), torch.optim.Adam([ref], lr=0.1)
        for _ in range(3):
            g = torch.randn(4, 3, device="cuda")
            p.grad, ref.grad = g, g.clone()
            opt.step()
            topt.step()
        live = torch.as_tensor(p, device="cuda")  # a view through __cuda_array_interface__
        torch.testing.assert_close(live, ref.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["SGD", "AdamW", "Lion"])
def test_clipping_fused_into_the_step_matches_the_cpu(name: str) -> None:
    """``opt.clip_grad_norm_`` on device gradients: the norm from the device partials, the coefficient
    applied by the CUDA loop; equal to the same on the CPU (exactly in the simulator)."""
    case = next(c for c in CUDA_ROWS if c.name == name)
    pair = make_pair(case)
    dev, dparams = _device_twin(case, pair)
    rng = np.random.default_rng(7)
    for t in range(4):
        grads = [None if g is None else g * np.float32(10) for g in random_grads(rng, t, pair.dtype, pair.shapes)]
        for p, q, g in zip(pair.params, dparams, grads):
            p.grad = None if g is None else g.copy()
            q.grad = None if g is None else cuda.to_device(g)
        assert float(pair.ours.clip_grad_norm_(1.0)) == pytest.approx(float(dev.clip_grad_norm_(1.0)), rel=1e-6)
        pair.ours.step()
        dev.step()
        for i, (p, q) in enumerate(zip(pair.params, dparams)):
            _assert_same(f"step {t}: param {i}", q.data, p.data, SIMULATOR, case.tolerances)


def test_lookahead_on_the_device_matches_the_host() -> None:
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (5,), ()]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    host = [numopt.Parameter(a.copy()) for a in init]
    dev = [numopt.Parameter(cuda.to_device(a.copy())) for a in init]
    opts = [
        numopt.Lookahead(numopt.SGD(ps, lr=0.05, momentum=0.9), k=2, alpha=0.4, pullback_momentum="pullback")
        for ps in (host, dev)
    ]
    for _ in range(5):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for ps in (host, dev):
            for p, g in zip(ps, grads):
                p.grad = cuda.to_device(g) if p.is_cuda else g
        for opt in opts:
            opt.step()
    for h, d in zip(host, dev):
        np.testing.assert_allclose(_host(d.data), h.data, rtol=1e-6, atol=1e-7)
        for key in ("slow_params", "slow_momentum"):
            np.testing.assert_allclose(_host(opts[1].state[d][key]), opts[0].state[h][key], rtol=1e-6, atol=1e-7)


# -- Lamb, LARS, Prodigy: reductions on the device, scalars on the host -----------------------------
#: (class, constructor arguments, the second group's overrides)
REDUCING_CASES = [
    ("Lamb", {"lr": 1e-2}, {"lr": 5e-3}),
    ("Lamb", {"lr": 1e-2, "pre_norm": True, "max_grad_norm": 0.5}, {"lr": 5e-3}),
    ("Lamb", {"lr": 1e-2, "rectify": True}, {"weight_decay": 0.1}),  # no step until the threshold
    ("Lamb", {"lr": 1e-2, "rectify": True, "degenerated_to_sgd": True, "n_sma_threshold": 7}, {}),
    ("Lamb", {"lr": 1e-2, "adam": True, "weight_decay": 0.1}, {"weight_decouple": False}),
    ("Lamb", {"lr": 1e-2, "foreach": False, "maximize": True}, {"fixed_decay": True, "weight_decay": 0.1}),
    ("LARS", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, {"lr": 0.05}),
    ("LARS", {"lr": 0.1, "weight_decay": 0.1, "trust_coefficient": 0.02}, {"momentum": 0.0, "dampening": 0.1}),
    ("Prodigy", {}, {"eps": None}),
    ("Prodigy", {"safeguard_warmup": True, "bias_correction": True}, {"safeguard_warmup": False}),
    ("Prodigy", {"growth_rate": 1.5, "d0": 1e-3, "weight_decay": 0.1}, {"fixed_decay": True}),
]


def _reducing_pair(name: str, kwargs: dict, group2: dict, values: list[np.ndarray], split: int = SPLIT):
    """The optimizer over host parameters and over device copies of them (two groups each)."""
    made = []
    for on_device in (False, True):
        params = [numopt.Parameter(cuda.to_device(v.copy()) if on_device else v.copy()) for v in values]
        groups = [{"params": params[:split]}, {"params": params[split:], **group2}]
        made.append((getattr(numopt, name)(groups, **kwargs), params))
    return made


def _assert_same_steps(host, dev, values, steps, seed, shapes=None) -> None:
    """Step both optimizers with the same gradients; assert parameters, state and groups equal after each step.

    Exactly for float32 in the simulator. The device adds a block's float64 terms in another order than
    the CPU (threads' strided shares, then a tree), which float32 norms and sums round away; float64
    ones keep it (last bits), and a GPU's fused multiply-adds differ in the last bits too.
    """
    (hopt, hparams), (dopt, dparams) = host, dev
    dtype = values[0].dtype
    exact = SIMULATOR and dtype == np.float32
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-14}

    def same(a, b) -> bool:
        return a == b if exact or not isinstance(b, float) else a == pytest.approx(b, rel=tol["rtol"], abs=tol["atol"])

    rng = np.random.default_rng(seed)
    for t in range(steps):
        grads = random_grads(rng, t, dtype, shapes)
        for hp, dp, g in zip(hparams, dparams, grads):
            hp.grad = None if g is None else g.copy()
            dp.grad = None if g is None else cuda.to_device(g)
        hopt.step()
        dopt.step()
        for i, (hp, dp) in enumerate(zip(hparams, dparams)):
            _assert_same(f"step {t}: param {i}", dp.data, hp.data, exact, tol)
            hs, ds = hopt.state.get(hp, {}), dopt.state.get(dp, {})
            assert set(hs) == set(ds), (t, i, set(hs), set(ds))
            for key, v in hs.items():
                if key in type(dopt)._scalar_keys:  # per-parameter scalars stay on the host
                    assert isinstance(ds[key], np.ndarray), (t, i, key)
                    assert same(float(ds[key]), float(v)), (t, i, key, float(ds[key]), float(v))
                else:
                    _assert_same(f"step {t}: param {i} state {key!r}", ds[key], v, exact, tol)
        for hg, dg in zip(hopt.param_groups, dopt.param_groups):
            for key, v in hg.items():
                if key != "params":
                    assert same(dg[key], v), (t, key, dg[key], v)


@pytest.mark.parametrize(("name", "kwargs", "group2"), REDUCING_CASES, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reducing_optimizers_on_cuda_match_the_cpu(name: str, kwargs: dict, group2: dict, dtype) -> None:
    """Each step on the device equals the same class's step on the host (exactly for float32, in the
    simulator), with a parameter skipped now and then, one starting late, one never stepped, an empty one."""
    rng = np.random.default_rng(11)
    values = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    host, dev = _reducing_pair(name, kwargs, group2, values)
    assert all(f.is_cuda for fl in dev[0]._flats for f in fl)
    _assert_same_steps(host, dev, values, CUDA_STEPS, seed=12)


@pytest.mark.parametrize("name", REDUCING)
def test_reducing_optimizers_on_cuda_with_several_blocks_per_parameter(name: str, monkeypatch) -> None:
    """A parameter over ``CHUNK`` elements spans several blocks (partials added on the host in block
    order), and the grid is smaller than the block table (blocks loop): the same steps as the CPU's."""
    monkeypatch.setattr(ncuda.segments, "MAX_BLOCKS", 2)
    shapes = [(CHUNK + 5,), (3, 4), (2, 2)]
    rng = np.random.default_rng(13)
    values = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    kwargs = {"Lamb": {"lr": 1e-2, "pre_norm": True}, "LARS": {"lr": 0.1, "weight_decay": 0.1}, "Prodigy": {}}[name]
    host, dev = _reducing_pair(name, kwargs, {}, values, split=2)
    _assert_same_steps(host, dev, values, 2, seed=14, shapes=shapes)


def test_reduction_partials_do_not_depend_on_the_grid(monkeypatch) -> None:
    """One partial per block of the table, whatever the number of CUDA blocks launched."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal(CHUNK * 2 + 9).astype(np.float32)
    offs = np.array([0, 3, CHUNK * 2 + 3, CHUNK * 2 + 9], np.int64)
    seg = numopt.kernels.segments.BlockTable(offs, np.float32)
    seg.offs, seg.start, seg.owner = (cuda.to_device(a) for a in (seg.offs, seg.start, seg.owner))
    seg.partials = cuda.device_array(seg.partials.shape, np.float64)
    outs = []
    for blocks in (1, 2, 64):
        monkeypatch.setattr(ncuda.segments, "MAX_BLOCKS", blocks)
        out = np.empty(offs.size - 1)
        twin = ncuda.KERNELS["numopt.kernels.segments.segment_sum_squares"]
        twin(cuda.to_device(x), seg, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    expected = [np.sum(np.square(x[a:b], dtype=np.float64)) for a, b in zip(offs[:-1], offs[1:])]
    np.testing.assert_allclose(outs[0], expected, rtol=1e-12)


@pytest.mark.parametrize("name", REDUCING)
def test_reducing_state_dict_is_host_numpy_and_resumes_exactly(name: str) -> None:
    kwargs = {"Lamb": {"lr": 1e-2, "weight_decay": 0.1}, "LARS": {"lr": 0.1}, "Prodigy": {"d0": 1e-3}}[name]
    rng = np.random.default_rng(16)
    steps = 6
    grads = [random_grads(rng, t, np.dtype(np.float32)) for t in range(steps)]
    init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]

    def build(values):
        params = [numopt.Parameter(cuda.to_device(v)) for v in values]
        return getattr(numopt, name)([{"params": params[:SPLIT]}, {"params": params[SPLIT:]}], **kwargs), params

    def run(split: int | None) -> list[np.ndarray]:
        opt, params = build(init)
        for t in range(steps):
            if t == split:
                sd = opt.state_dict()
                for entry in sd["state"].values():
                    for v in entry.values():
                        assert isinstance(v, (float, np.ndarray)), type(v)
                opt, params = build([p.data.copy_to_host() for p in params])
                opt.load_state_dict(sd)
            for p, g in zip(params, grads[t]):
                p.grad = None if g is None else g.copy()  # host gradients: copied to the device at the step
            opt.step()
        return [p.data.copy_to_host() for p in params]

    for a, b in zip(run(None), run(steps // 2)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", REDUCING)
def test_reducing_step_copies_only_partials_and_scalars(name: str, monkeypatch) -> None:
    """With gradients written in place, a step copies two float64 per block back to the host and, for
    Lamb and LARS, one number per parameter to the device: never a parameter-sized array."""
    params = [numopt.Parameter(cuda.to_device(np.full(s, 0.5, np.float32))) for s in SHAPES]
    opt = getattr(numopt, name)(params)
    for p in params:
        p.zero_grad_()
        ncuda.memory.fill_(p.grad, 0.25)
    opt.step()  # first step: state and block tables are allocated
    copies = []
    cls = type(params[0].data)
    for meth in ("copy_to_host", "copy_to_device"):
        orig = getattr(cls, meth)
        monkeypatch.setattr(
            cls, meth, lambda self, *a, _m=meth, _o=orig, **k: copies.append((_m, self.size)) or _o(self, *a, **k)
        )
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: copies.append(("to_device", 0)))
    for _ in range(2):
        opt.step()
    blocks = sum(p.size > 0 for p in params)  # one block per (small) parameter, in one run
    expected = [("copy_to_host", 2 * blocks)] + ([("copy_to_device", len(params))] if name != "Prodigy" else [])
    assert copies == expected * 2, copies


def test_prodigy_sums_host_and_device_parameters_of_one_group() -> None:
    """A group mixing host and device parameters: the device buffer's sums join the host's in order."""
    rng = np.random.default_rng(17)
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    made = []
    for mixed in (False, True):
        params = [
            numopt.Parameter(cuda.to_device(v.copy()) if mixed and i >= 3 else v.copy()) for i, v in enumerate(values)
        ]
        made.append((numopt.Prodigy(params, d0=1e-3), params))
    (hopt, hp), (mopt, mp) = made
    for t in range(4):
        for a, b, g in zip(hp, mp, random_grads(rng, t, np.dtype(np.float32))):
            a.grad = None if g is None else g.copy()
            b.grad = None if g is None else g.copy()
        hopt.step()
        mopt.step()
        for a, b in zip(hp, mp):
            _assert_same(f"step {t}", b.data, a.data, SIMULATOR, {"rtol": 1e-5, "atol": 1e-6})
        assert mopt.param_groups[0]["d"] == hopt.param_groups[0]["d"] or not SIMULATOR


# -- compact optimizer state (state_dtype='bfloat16' / 'int8') in GPU memory ------------------------
#: 600 and 300 elements (quantized with int8: blocks of 256, the last of each partial, one run across both),
#: 15 (under COMPACT_MIN: full-precision state with int8)
COMPACT_SHAPES: list[tuple[int, ...]] = [(600,), (2, 150), (5, 3)]
COMPACT_MIN = 100
COMPACT_CASES = [
    ("Adam", {"lr": 1e-2, "amsgrad": True}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9}),
    ("Lion", {"lr": 1e-3}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr": 1e-2, "initial_accumulator_value": 0.1}),
]
STATE_DTYPES = ["int8", "bfloat16"]


def _compact_pair(name: str, kwargs: dict, state_dtype: str | None, dtype=np.float32, seed: int = 21):
    """``[(optimizer, params)]`` on the host, then on the device, over equal initial values."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in COMPACT_SHAPES]
    made = []
    for on_device in (False, True):
        params = [numopt.Parameter(cuda.to_device(v.copy()) if on_device else v.copy()) for v in init]
        opt = getattr(numopt, name)(params, state_dtype=state_dtype, min_8bit_size=COMPACT_MIN, **kwargs)
        made.append((opt, params))
    return made


def _compact_grads(rng, t: int, dtype=np.float32) -> list[np.ndarray | None]:
    """One step's gradients: the second parameter has none at step 1 (the runs split there)."""
    return [None if (i == 1 and t == 1) else rng.standard_normal(s).astype(dtype) for i, s in enumerate(COMPACT_SHAPES)]


def _state_arrays(value) -> dict[str, np.ndarray]:
    """The arrays of a state entry, on the host: a compact view's fields, or the array itself."""
    if isinstance(value, numopt.lowbit.Int8State):
        return {"codes": _host(value.codes), "absmax": _host(value.absmax), "signed": np.uint8([value.signed])}
    if isinstance(value, numopt.lowbit.BFloat16State):
        return {"bits": _host(value.bits)}
    return {"values": _host(value)}


def _assert_same_compact(where: str, hopt, hparams, dopt, dparams) -> None:
    """Parameters and state bit for bit (in the simulator), the views of the same kinds."""
    for i, (hp, dp) in enumerate(zip(hparams, dparams)):
        _assert_same(f"{where}: param {i}", dp.data, hp.data, SIMULATOR, {"rtol": 1e-5, "atol": 1e-6})
        hs, ds = hopt.state.get(hp, {}), dopt.state.get(dp, {})
        assert set(hs) == set(ds), (where, i, set(hs), set(ds))
        for key, v in hs.items():
            if key == "step":
                assert float(ds[key]) == float(v), (where, i)
                continue
            assert type(ds[key]) is type(v) or hasattr(ds[key], "copy_to_host"), (where, i, key, type(ds[key]))
            ours, ref = _state_arrays(ds[key]), _state_arrays(v)
            assert ours.keys() == ref.keys(), (where, i, key)
            for field in ref:  # (on a GPU, fused multiply-adds may move a code by one)
                if SIMULATOR or field != "codes":
                    tol = {"rtol": 1e-4, "atol": 1e-6}
                    _assert_same(f"{where}: param {i} {key}.{field}", ours[field], ref[field], SIMULATOR, tol)


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
@pytest.mark.parametrize(("name", "kwargs"), COMPACT_CASES, ids=[c[0] for c in COMPACT_CASES])
def test_compact_state_on_cuda_matches_the_host(name: str, kwargs: dict, state_dtype: str) -> None:
    """Steps on the device equal the host's bit for bit (in the simulator): parameters, bfloat16 bits, 8-bit
    codes and scales, and the full-precision state of the parameter under ``min_8bit_size``."""
    (hopt, hp), (dopt, dp) = _compact_pair(name, kwargs, state_dtype)
    rng = np.random.default_rng(22)
    for t in range(3):
        for a, b, g in zip(hp, dp, _compact_grads(rng, t)):
            a.grad = None if g is None else g.copy()
            b.grad = None if g is None else cuda.to_device(g)
        hopt.step()
        dopt.step()
        _assert_same_compact(f"{name} {state_dtype} step {t}", hopt, hp, dopt, dp)
    view = next(v for k, v in dopt.state[dp[0]].items() if k != "step")
    assert not isinstance(view.bits if state_dtype == "bfloat16" else view.codes, np.ndarray)  # in GPU memory
    values = view.dequantize()
    assert isinstance(values, np.ndarray) and values.dtype == np.float32 and values.shape == COMPACT_SHAPES[0]
    np.testing.assert_array_equal(np.asarray(view), values)


def test_int8_state_on_cuda_float64_and_any_block_of_threads(monkeypatch) -> None:
    """float64 parameters (their rows in float64 shared memory), and the kernel's threads per block and
    blocks per grid changed (1, 3 and 8 threads; one block looping over every quantization block): the same
    bits as the host's."""
    (hopt, hp), (dopt, dp) = _compact_pair("AdamW", {"lr": 1e-2, "amsgrad": True}, "int8", np.float64)
    rng = np.random.default_rng(23)
    for t, (blocks, threads) in enumerate([(1, 1), (2, 3), (3, 8)]):
        monkeypatch.setattr(ncuda._launch, "SIM_Q8_BLOCKS", blocks)
        monkeypatch.setattr(ncuda._launch, "SIM_Q8_THREADS", threads)
        for a, b, g in zip(hp, dp, _compact_grads(rng, t, np.float64)):
            a.grad = None if g is None else g.copy()
            b.grad = None if g is None else cuda.to_device(g)
        hopt.step()
        dopt.step()
        _assert_same_compact(f"float64 step {t}", hopt, hp, dopt, dp)


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_compact_state_dict_is_host_numpy_and_resumes_exactly(state_dtype: str) -> None:
    """``state_dict()`` of a device optimizer holds host copies equal to the host optimizer's; loaded into a
    new device optimizer, the run resumes exactly as if uninterrupted."""
    name, kwargs = "Adam", {"lr": 1e-2, "amsgrad": True}
    rng = np.random.default_rng(24)
    steps = 4
    grads = [_compact_grads(rng, t) for t in range(steps)]
    (hopt, hp), (dopt, dp) = _compact_pair(name, kwargs, state_dtype)

    def step(opt, params, t) -> None:
        for p, g in zip(params, grads[t]):
            p.grad = None if g is None else g.copy()  # host gradients: copied to the device at the step
        opt.step()

    for t in range(steps // 2):
        step(hopt, hp, t)
        step(dopt, dp, t)
    sd, host_sd = dopt.state_dict(), hopt.state_dict()
    assert sd["state"].keys() == host_sd["state"].keys()
    for k, entry in sd["state"].items():
        for key, v in entry.items():
            assert isinstance(v, (float, np.ndarray, numopt.lowbit.Int8State, numopt.lowbit.BFloat16State)), type(v)
            if key == "step":
                assert v == host_sd["state"][k][key]
                continue
            ours, ref = _state_arrays(v), _state_arrays(host_sd["state"][k][key])
            arrays = [getattr(v, f) for f in ("bits", "codes", "absmax") if hasattr(v, f)] or [v]
            assert all(isinstance(a, np.ndarray) for a in arrays), (k, key, arrays)
            for field in ref:  # (on a GPU, fused multiply-adds may move a code by one)
                if SIMULATOR or field != "codes":
                    _assert_same(f"{k} {key}.{field}", ours[field], ref[field], SIMULATOR, {"rtol": 1e-4, "atol": 1e-6})
    resumed = [numopt.Parameter(cuda.to_device(p.data.copy_to_host())) for p in dp]
    ropt = getattr(numopt, name)(resumed, state_dtype=state_dtype, min_8bit_size=COMPACT_MIN, **kwargs)
    ropt.load_state_dict(sd)
    _assert_same_compact("loaded", dopt, dp, ropt, resumed)
    for t in range(steps // 2, steps):
        step(dopt, dp, t)
        step(ropt, resumed, t)
    _assert_same_compact("resumed", dopt, dp, ropt, resumed)


def test_compact_state_converts_to_and_from_full_precision_on_cuda() -> None:
    """A full-precision state dict loaded into int8/bfloat16 device state, and an int8 one into full-precision
    device state, convert as on the host."""
    rng = np.random.default_rng(25)
    (fopt, fp), _ = _compact_pair("Adam", {"lr": 1e-2}, None)
    for p, g in zip(fp, _compact_grads(rng, 0)):
        p.grad = g
    fopt.step()
    full_sd = fopt.state_dict()
    for state_dtype in STATE_DTYPES:
        (hopt, hp), (dopt, dp) = _compact_pair("Adam", {"lr": 1e-2}, state_dtype)
        hopt.load_state_dict(full_sd)
        dopt.load_state_dict(full_sd)
        _assert_same_compact(f"full -> {state_dtype}", hopt, hp, dopt, dp)
    (hopt, hp), (dopt, dp) = _compact_pair("Adam", {"lr": 1e-2}, None)
    (qopt, qp), _ = _compact_pair("Adam", {"lr": 1e-2}, "int8")
    for p, g in zip(qp, _compact_grads(rng, 0)):
        p.grad = g
    qopt.step()
    int8_sd = qopt.state_dict()
    hopt.load_state_dict(int8_sd)
    dopt.load_state_dict(int8_sd)
    _assert_same_compact("int8 -> full", hopt, hp, dopt, dp)


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_a_compact_step_moves_no_arrays_between_host_and_device(state_dtype: str, monkeypatch) -> None:
    """With gradients written in place, a step with compact state only launches kernels (the maps and the
    block offsets went to the device once, at the first step)."""
    params = [numopt.Parameter(cuda.to_device(np.ones(s, np.float32))) for s in COMPACT_SHAPES]
    opt = numopt.Adam(params, lr=0.1, amsgrad=True, state_dtype=state_dtype, min_8bit_size=COMPACT_MIN)
    for p in params:
        p.zero_grad_()
    opt.step()
    assert _copies_during_steps(opt, params, 2, monkeypatch) == []
    assert opt.state[params[0]]["step"] == 3.0


@pytest.mark.parametrize("state_dtype", STATE_DTYPES)
def test_clipping_fused_into_a_compact_step_on_cuda(state_dtype: str) -> None:
    """``opt.clip_grad_norm_`` with compact state on the device: the coefficient applied by the CUDA loops, the
    same steps as the host's."""
    (hopt, hp), (dopt, dp) = _compact_pair("AdamW", {"lr": 1e-2}, state_dtype)
    rng = np.random.default_rng(26)
    for t in range(2):
        for a, b, g in zip(hp, dp, _compact_grads(rng, t)):
            g = None if g is None else g * np.float32(10)
            a.grad = None if g is None else g.copy()
            b.grad = None if g is None else cuda.to_device(g)
        assert float(dopt.clip_grad_norm_(1.0)) == pytest.approx(float(hopt.clip_grad_norm_(1.0)), rel=1e-6)
        assert dopt._grad_scale < 1.0
        hopt.step()
        dopt.step()
        _assert_same_compact(f"clipped step {t}", hopt, hp, dopt, dp)
