"""bfloat16 parameters and gradients (``ml_dtypes.bfloat16``): exactness against a NumPy reference.

The reference is written here, plainly: a float32 "shadow" optimizer (same class and options) is
given the widened bfloat16 parameter (plus its Kahan compensation) and gradient before every step;
its new float32 parameter is then rounded to bfloat16 in NumPy, by the same counter-based
stochastic rounding (murmur3's finalizer of the key and the element's index in the flat buffer)
or to nearest even. The bfloat16 optimizer must hold exactly those bits, and the same state.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numba
import numpy as np
import pytest

import numopt

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)

SHAPES = [(70, 80), (300,), (7, 3)]  # the first is over min_8bit_size (int8 state quantizes it)
CASES = [
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 1e-2}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9}),
    ("SGD", {"lr": 1e-2}),
    ("Lion", {"lr": 1e-3}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.5, "centered": True}),
    ("NAdam", {"lr": 1e-2}),
]
IDS = [f"{n}-{'-'.join(map(str, kw.values()))}" for n, kw in CASES]


# -- the reference ---------------------------------------------------------------------------------
_M32 = 0xFFFFFFFF


def ref_mix32(h: np.ndarray) -> np.ndarray:
    """murmur3's fmix32, in uint64 arithmetic masked to 32 bits."""
    h = np.asarray(h, np.uint64) & _M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


def ref_key(seed: int, step: int) -> int:
    return int(ref_mix32(np.uint64(seed) ^ ref_mix32(np.uint64((step + 0x9E3779B9) & _M32))))


def ref_round(v: np.ndarray, key: int, index: np.ndarray, stochastic: bool) -> np.ndarray:
    """bfloat16 bits of float32 ``v``: ``(bits + random16) >> 16`` or nearest even; NaN -> 0x7FC0."""
    bits = np.ascontiguousarray(v, np.float32).view(np.uint32).astype(np.uint64)
    if stochastic:
        add = ref_mix32(np.uint64(key) ^ (index.astype(np.uint64) & _M32)) & 0xFFFF
    else:
        add = 0x7FFF + ((bits >> 16) & 1)
    out = (((bits + add) & _M32) >> 16).astype(np.uint16)
    return np.where((bits & 0x7FFFFFFF) > 0x7F800000, np.uint16(0x7FC0), out)


def widen(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _params(seed: int = 0, shapes: list = SHAPES) -> list[numopt.Parameter]:
    rng = np.random.default_rng(seed)
    return [numopt.Parameter(rng.standard_normal(s).astype(np.float32).astype(BF16)) for s in shapes]


def _grads(params: list[numopt.Parameter], rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal(p.shape).astype(np.float32).astype(BF16) for p in params]


def _float_state(opt: numopt.Optimizer, p: numopt.Parameter) -> dict:
    return {t.name: opt.state[p][t.name] for t in opt.state_tensors if t.name in opt.state[p]}


def _run_against_reference(name: str, kw: dict, steps: int = 4, **options) -> None:
    """Steps the bfloat16 optimizer and its float32 shadow; checks parameter bits and state every step."""
    seed = options.get("seed", 0)
    stochastic = options.get("rounding", "stochastic") == "stochastic"
    kahan = options.get("compensation") == "kahan"
    params = _params()
    shadow_params = [numopt.Parameter(widen(p.data).copy()) for p in params]
    opt = getattr(numopt, name)(params, **kw, **options)
    shadow = getattr(numopt, name)(shadow_params, **kw)
    offsets = np.cumsum([0] + [p.size for p in params])
    rng = np.random.default_rng(1)
    for step in range(1, steps + 1):
        for p, q, g in zip(params, shadow_params, _grads(params, rng)):
            p.grad, q.grad = g, widen(g).reshape(g.shape).copy()
            start = widen(p.data)
            if kahan and "kahan_comp" in opt.state[p]:
                start = start + widen(opt.state[p]["kahan_comp"])
            q.data[...] = start.reshape(p.shape)
        for p, q in zip(params, shadow_params):  # compact state: the shadow starts from its values
            for k, v in _float_state(opt, p).items():
                if not isinstance(v, np.ndarray):
                    shadow.state[q][k][...] = v.dequantize()
        opt.step()
        shadow.step()
        key = ref_key(seed, step)
        for i, (p, q) in enumerate(zip(params, shadow_params)):
            v = np.asarray(q.data, np.float32).reshape(-1)
            index = np.arange(offsets[i], offsets[i + 1])
            expected = ref_round(v, key, index, stochastic)
            np.testing.assert_array_equal(p.data.view(np.uint16).reshape(-1), expected, err_msg=f"step {step}")
            if kahan:
                error = v - widen(expected)
                error = np.where(np.isfinite(error), error, np.float32(0))
                comp = np.asarray(error, np.float32).astype(BF16)  # nearest even, as ml_dtypes casts
                held = opt.state[p]["kahan_comp"].reshape(-1).view(np.uint16)
                np.testing.assert_array_equal(held, comp.view(np.uint16), err_msg=f"kahan_comp step {step}")
            assert float(opt.state[p]["step"]) == step
            for k, s in _float_state(opt, p).items():
                if isinstance(s, np.ndarray):
                    assert s.dtype == np.float32
                    np.testing.assert_array_equal(s, shadow.state[q][k], err_msg=k)
                elif isinstance(s, numopt.lowbit.BFloat16State):
                    np.testing.assert_array_equal(s.bits, numopt.lowbit.encode_bf16(shadow.state[q][k]), err_msg=k)
                else:
                    codes, absmax = numopt.lowbit.quantize_blocks(shadow.state[q][k], s.signed)
                    np.testing.assert_array_equal(s.codes, codes.reshape(s.shape), err_msg=k)
                    np.testing.assert_array_equal(s.absmax, absmax, err_msg=k)


# -- exactness -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kw", CASES, ids=IDS)
def test_stochastic_rounding_matches_numpy_reference(name: str, kw: dict) -> None:
    _run_against_reference(name, kw, seed=12345)


@pytest.mark.parametrize("name, kw", CASES[:4] + CASES[5:6], ids=IDS[:4] + IDS[5:6])
def test_nearest_rounding_matches_ml_dtypes(name: str, kw: dict) -> None:
    _run_against_reference(name, kw, rounding="nearest")
    # the reference's nearest is ml_dtypes' float32 -> bfloat16 cast
    x = np.random.default_rng(7).standard_normal(10_000).astype(np.float32) * np.float32(1e3)
    x[:4] = [np.inf, -np.inf, 3.3895314e38, np.float32(1) + np.float32(2**-8)]
    np.testing.assert_array_equal(ref_round(x, 0, np.arange(x.size), False), x.astype(BF16).view(np.uint16))


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("name, kw", [CASES[2], CASES[3]], ids=[IDS[2], IDS[3]])
def test_kahan_compensation_matches_numpy_reference(name: str, kw: dict, rounding: str) -> None:
    _run_against_reference(name, kw, rounding=rounding, compensation="kahan", seed=3)


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
@pytest.mark.parametrize("name, kw", [CASES[0], CASES[2], CASES[3], CASES[5]], ids=[IDS[0], IDS[2], IDS[3], IDS[5]])
def test_compact_state_composes(name: str, kw: dict, state_dtype: str) -> None:
    _run_against_reference(name, kw, state_dtype=state_dtype, seed=9)


def test_int8_state_with_kahan() -> None:
    _run_against_reference("AdamW", {"lr": 1e-2}, state_dtype="int8", compensation="kahan", rounding="nearest")


def test_views_are_zero_copy_bfloat16() -> None:
    params = _params()
    opt = numopt.AdamW(params, lr=1e-2)
    flat = opt._flats[0][0]
    assert flat.data.dtype == BF16 and flat.grad.dtype == BF16
    for p in params:
        p.grad = np.ones(p.shape, BF16)
    opt.step()
    for p in params:
        assert p.data.dtype == BF16 and p.grad.dtype == BF16
        assert np.shares_memory(p.data, flat.data) and np.shares_memory(p.grad, flat.grad)
    params[1].data[0] = 5  # written through the view: the optimizer sees it
    assert flat.data[params[0].size] == 5


def test_results_do_not_depend_on_the_thread_count() -> None:
    results = []
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n)
            for state_dtype in (None, "int8"):
                params = _params(shapes=[(300_000,), (70, 80)])
                opt = numopt.AdamW(params, lr=1e-2, state_dtype=state_dtype, seed=5)
                rng = np.random.default_rng(3)
                for _ in range(3):
                    for p, g in zip(params, _grads(params, rng)):
                        p.grad = g
                    opt.step()
                results.append((n, state_dtype, [p.data.view(np.uint16).copy() for p in params]))
    finally:
        numba.set_num_threads(threads)
    by_kind: dict = {}
    for _, state_dtype, arrays in results:
        by_kind.setdefault(state_dtype, []).append(arrays)
    for runs in by_kind.values():
        for a, b in zip(runs[0], runs[-1]):
            np.testing.assert_array_equal(a, b)


# -- small updates ----------------------------------------------------------------------------------
def _small_updates(steps: int, **options) -> numopt.Parameter:
    """SGD (lr 1) with a gradient of 1e-3 on 100_000 elements at 1.5 (a bfloat16 step there is 2**-7):
    every update is under an eighth of a step."""
    w = numopt.Parameter(np.full(100_000, 1.5, BF16))
    opt = numopt.SGD([w], lr=1.0, **options)
    g = np.full(100_000, 1e-3, BF16)
    for _ in range(steps):
        w.grad = g
        opt.step()
    return w, opt


def test_stochastic_rounding_is_unbiased_and_nearest_stalls() -> None:
    steps = 10
    moved = -steps * float(np.float32(np.full(1, 1e-3, BF16).astype(np.float32)[0]))
    w, _ = _small_updates(steps, rounding="nearest")
    assert np.all(w.data.astype(np.float32) == 1.5)  # every update lost: the parameter stalls
    w, _ = _small_updates(steps, seed=1)
    values = w.data.astype(np.float64)
    assert values.max() <= 1.5 and values.min() >= 1.5 - steps * 2**-7  # down by whole bfloat16 steps
    assert abs((values.mean() - 1.5) - moved) < 0.02 * abs(moved)  # but right on average


def test_kahan_compensation_keeps_small_updates() -> None:
    steps = 10
    moved = -steps * float(np.full(1, 1e-3, BF16).astype(np.float32)[0])
    w, opt = _small_updates(steps, rounding="nearest", compensation="kahan")
    total = w.data.astype(np.float32) + opt.state[w]["kahan_comp"].astype(np.float32)
    assert np.all(np.abs(total.astype(np.float64) - (1.5 + moved)) < 1e-4)
    assert np.all(w.data.astype(np.float32) < 1.5)  # the parameter itself moved
    assert opt.state[w]["kahan_comp"].dtype == BF16


# -- state dicts -------------------------------------------------------------------------------------
def _bytes(value: object) -> bytes:
    """A state entry's bits: its arrays' bytes (a float: its float64 bytes)."""
    fields = [getattr(value, f) for f in ("bits", "codes", "absmax") if hasattr(value, f)] or [value]
    return b"".join(np.ascontiguousarray(np.asarray(f)).tobytes() for f in fields)


@pytest.mark.parametrize(
    "name, options",
    [
        ("AdamW", {}),
        ("SGD", {"momentum": 0.9, "compensation": "kahan"}),
        ("SGD", {}),
        ("Adam", {"state_dtype": "int8"}),
    ],
)
def test_state_dict_round_trip_and_resume_are_bit_exact(name: str, options: dict, tmp_path) -> None:
    def run(opt: numopt.Optimizer, params: list, rng: np.random.Generator, steps: int) -> None:
        for _ in range(steps):
            for p, g in zip(params, _grads(params, rng)):
                p.grad = g
            opt.step()

    params = _params()
    opt = getattr(numopt, name)(params, lr=1e-2, seed=7, **options)
    run(opt, params, np.random.default_rng(1), 5)
    expected = [p.data.copy() for p in params]

    params = _params()
    opt = getattr(numopt, name)(params, lr=1e-2, seed=7, **options)
    rng = np.random.default_rng(1)
    run(opt, params, rng, 2)
    numopt.save(opt.state_dict(), tmp_path / "opt.ckpt")  # bfloat16 arrays (the compensation) saved as bits
    sd = numopt.load(tmp_path / "opt.ckpt")
    saved = [p.data.copy() for p in params]
    resumed_params = [numopt.Parameter(a.copy()) for a in saved]
    resumed = getattr(numopt, name)(resumed_params, lr=1e-2, seed=7, **options)
    resumed.load_state_dict(sd)
    sd2 = resumed.state_dict()
    for k, st in sd["state"].items():  # loaded bit for bit
        assert st.keys() == sd2["state"][k].keys()
        for key, v in st.items():
            assert type(v) is type(sd2["state"][k][key])
            assert _bytes(v) == _bytes(sd2["state"][k][key]), key
    run(resumed, resumed_params, rng, 3)
    for a, b in zip(expected, resumed_params):
        np.testing.assert_array_equal(a.view(np.uint16), b.data.view(np.uint16))


def test_pickled_optimizer_resumes_bit_identically() -> None:
    params = _params()
    opt = numopt.AdamW(params, lr=1e-2, compensation="kahan")
    rng = np.random.default_rng(2)
    grads = [_grads(params, rng) for _ in range(4)]
    for gs in grads[:2]:
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
    clone = pickle.loads(pickle.dumps(opt))
    clone_params = clone.param_groups[0]["params"]
    for gs in grads[2:]:
        for ps in (params, clone_params):
            for p, g in zip(ps, gs):
                p.grad = g
        opt.step()
        clone.step()
    for a, b in zip(params, clone_params):
        np.testing.assert_array_equal(a.data.view(np.uint16), b.data.view(np.uint16))


def test_gradient_clipping() -> None:
    w = numopt.Parameter(np.ones(100, BF16))
    opt = numopt.AdamW([w], lr=1e-2)
    w.grad = np.full(100, 3, BF16)
    assert opt.clip_grad_norm_(1.0) == 30.0  # the norm of the float32 values, applied inside the step
    opt.step()
    assert np.all(w.data.astype(np.float32) < 1)
    w.grad = np.full(100, 3, BF16)
    assert numopt.utils.clip_grad_norm_([w], 1.0) == 30.0
    np.testing.assert_array_equal(w.grad, np.full(100, 0.1, np.float32).astype(BF16))
    numopt.utils.clip_grad_value_([w], 0.05)
    np.testing.assert_array_equal(w.grad, np.full(100, 0.05, np.float32).astype(BF16))


# -- options and bad input -----------------------------------------------------------------------------
def test_options_change_nothing_for_float32_parameters() -> None:
    results = []
    for options in ({}, {"rounding": "nearest", "compensation": "kahan", "seed": 3}):
        w = numopt.Parameter(np.linspace(-1, 1, 1000, dtype=np.float32))
        opt = numopt.AdamW([w], lr=1e-2, **options)
        for k in range(3):
            w.grad = np.cos(np.arange(1000, dtype=np.float32) * (k + 1))
            opt.step()
        assert "kahan_comp" not in opt.state[w]
        results.append(w.data.copy())
    np.testing.assert_array_equal(results[0], results[1])


def test_mixed_group_of_bfloat16_and_float32_parameters() -> None:
    a = numopt.Parameter(np.ones(50, BF16))
    b = numopt.Parameter(np.ones(50, np.float32))
    opt = numopt.Adam([a, b], lr=1e-2, compensation="kahan")
    a.grad, b.grad = np.ones(50, BF16), np.ones(50, np.float32)
    opt.step()
    assert a.data.dtype == BF16 and b.data.dtype == np.float32
    assert "kahan_comp" in opt.state[a] and "kahan_comp" not in opt.state[b]
    np.testing.assert_allclose(a.data.astype(np.float32), b.data, atol=2**-7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rounding": "up"}, "rounding must be 'stochastic' or 'nearest', got 'up'"),
        ({"rounding": None}, "rounding must be"),
        ({"compensation": "yes"}, "compensation must be None or 'kahan', got 'yes'"),
        ({"seed": -1}, r"seed must be a whole number in \[0, 2\*\*32\)"),
        ({"seed": 2**32}, "seed must be"),
        ({"seed": 1.5}, "seed must be"),
    ],
)
def test_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        numopt.AdamW(_params(), **kwargs)


def test_float32_gradient_on_a_bfloat16_parameter_is_refused() -> None:
    w = numopt.Parameter(np.ones(4, BF16))
    with pytest.raises(TypeError, match=r"parameter has dtype bfloat16; convert the gradient \(g.astype\(ml_dtypes"):
        w.grad = np.ones(4, np.float32)
    numopt.SGD([w], lr=0.1)
    with pytest.raises(TypeError, match="parameter has dtype bfloat16"):
        w.grad = np.ones(4, np.float32)


def test_optimizer_without_bfloat16_support_refuses() -> None:
    with pytest.raises(TypeError, match="ASGD does not update bfloat16 parameters"):
        numopt.ASGD(_params())


def test_parameter_dtype_by_name() -> None:
    w = numopt.Parameter((2, 3), dtype="bfloat16")
    assert w.dtype == BF16 and w.shape == (2, 3)
    w = numopt.Parameter(np.ones(3, np.float32), dtype="bfloat16")
    assert w.dtype == BF16


def test_bfloat16_without_ml_dtypes_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import numopt._bf16

    def missing() -> None:
        raise ImportError("No module named 'ml_dtypes'")

    monkeypatch.setattr(numopt._bf16, "_import_ml_dtypes", missing)
    with pytest.raises(ImportError, match="optional package ml_dtypes.*pip install ml_dtypes"):
        numopt.Parameter((3,), dtype="bfloat16")


def test_numopt_works_without_ml_dtypes() -> None:
    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "import numpy as np, numopt\n"
        "w = numopt.Parameter(np.ones(3, np.float32)); opt = numopt.AdamW([w], lr=0.1)\n"
        "w.grad = np.ones(3, np.float32); opt.step(); assert w.data[0] < 1\n"
        "try:\n    numopt.Parameter((3,), dtype='bfloat16')\n"
        "except ImportError as e:\n    assert 'ml_dtypes' in str(e); print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


# -- torch models -----------------------------------------------------------------------------------------
def test_torch_bind_takes_a_bfloat16_model() -> None:
    torch = pytest.importorskip("torch")
    from numopt.interop.torch import bind

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4).to(torch.bfloat16)
    start = [t.detach().float().numpy().astype(BF16) for t in model.parameters()]
    opt = bind(model, numopt.AdamW, lr=1e-2, seed=3, compensation="kahan")
    ref_params = [numopt.Parameter(a.copy()) for a in start]
    ref = numopt.AdamW(ref_params, lr=1e-2, seed=3, compensation="kahan")
    x = torch.randn(16, 8, dtype=torch.bfloat16)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        for q, t in zip(ref_params, model.parameters()):
            q.grad = t.grad.detach().float().numpy().astype(BF16)
        opt.step()
        ref.step()
    for q, t in zip(ref_params, model.parameters()):
        assert t.dtype == torch.bfloat16
        np.testing.assert_array_equal(t.detach().view(torch.int16).numpy().view(np.uint16), q.data.view(np.uint16))
    flat = opt._flats[0][0]
    assert model.weight.data_ptr() == flat.data.ctypes.data  # zero-copy: torch's tensors view the flat buffers
    assert model.weight.grad.data_ptr() == flat.grad.ctypes.data
    assert opt.binding.copies == 0
    sd = opt.state_dict()  # torch's layout: the compensation a bfloat16 tensor
    assert sd["state"][0]["kahan_comp"].dtype == torch.bfloat16
    opt.load_state_dict(sd)
    weight = opt.param_groups[0]["params"][0]
    np.testing.assert_array_equal(
        opt.state[weight]["kahan_comp"].view(np.uint16), ref.state[ref_params[0]]["kahan_comp"].view(np.uint16)
    )


def test_torch_bind_bfloat16_without_ml_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    import numopt._bf16
    from numopt.interop.torch import bind

    def missing() -> None:
        raise ImportError("No module named 'ml_dtypes'")

    monkeypatch.setattr(numopt._bf16, "_import_ml_dtypes", missing)
    with pytest.raises(ImportError, match="ml_dtypes"):
        bind(torch.nn.Linear(2, 2).to(torch.bfloat16), numopt.AdamW)


def test_lookahead_refuses_bfloat16_parameters() -> None:
    with pytest.raises(TypeError, match="Lookahead does not support bfloat16 parameters"):
        numopt.Lookahead(numopt.AdamW(_params(), lr=1e-2))
