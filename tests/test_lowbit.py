"""Compact optimizer state (``state_dtype='bfloat16'`` / ``'int8'``): exactness against NumPy references.

The references are written here, plainly: a float32 "shadow" optimizer (``state_dtype=None``) is
given the dequantized state before every step, and its new state is quantized (or rounded to
bfloat16) in NumPy; the compact optimizer must hold exactly those bits, and the same parameters.
"""

from __future__ import annotations

import copy
import pickle

import numba
import numpy as np
import pytest

import numopt
from numopt.kernels._lowbit import dynamic_map

SHAPES = [(70, 80), (300,), (4096 + 100,), (7, 3)]  # two quantized (one with a partial block), two small
CASES = [
    ("Adam", {"lr": 1e-2}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"lr": 1e-2}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9}),
    ("Adagrad", {"lr": 1e-2, "initial_accumulator_value": 0.1}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.5, "centered": True}),
    ("Lion", {"lr": 1e-3}),
    ("Adamax", {"lr": 1e-2}),
    ("NAdam", {"lr": 1e-2, "weight_decay": 0.1}),
    ("RAdam", {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("Adadelta", {"lr": 1.0}),
    ("ADOPT", {"lr": 1e-2}),
    ("AdEMAMix", {"lr": 1e-2, "t_alpha_beta3": 10}),
]


# -- the references ----------------------------------------------------------------------------------
def ref_quantize(values: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of 256: scale = max |v| (float32), code = nearest map entry of v / scale (by midpoints)."""
    qmap = dynamic_map(signed)
    mids = (qmap[:-1] + qmap[1:]) / np.float32(2)
    v = values.astype(np.float32).reshape(-1)
    codes = np.empty(v.size, np.uint8)
    scales = []
    for lo in range(0, v.size, 256):
        block = v[lo : lo + 256]
        scale = np.float32(np.max(np.abs(block)))
        inv = np.float32(1) / scale if scale > 0 else np.float32(0)
        x = block * inv
        codes[lo : lo + 256] = np.searchsorted(mids, x, side="left")
        codes[lo : lo + 256][(codes[lo : lo + 256] == 0) & (x > 0)] = 1  # a positive value: code 1 at least
        scales.append(scale)
    return codes.reshape(values.shape), np.array(scales, np.float32)


def ref_dequantize(codes: np.ndarray, absmax: np.ndarray, signed: bool) -> np.ndarray:
    scales = np.repeat(absmax, 256)[: codes.size].reshape(codes.shape)
    return dynamic_map(signed)[codes] * scales


def ref_bf16_bits(x: np.ndarray) -> np.ndarray:
    """torch's float32 -> bfloat16 (round to nearest even), as bit patterns."""
    torch = pytest.importorskip("torch")
    return (
        torch.from_numpy(np.ascontiguousarray(x, np.float32))
        .to(torch.bfloat16)
        .view(torch.int16)
        .numpy()
        .view(np.uint16)
    )


def _params(seed: int = 0) -> list[numopt.Parameter]:
    rng = np.random.default_rng(seed)
    return [numopt.Parameter(rng.standard_normal(s).astype(np.float32)) for s in SHAPES]


def _grads(params: list[numopt.Parameter], rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal(p.shape).astype(np.float32) for p in params]


def _arrays(opt: numopt.Optimizer, p: numopt.Parameter) -> dict:
    """The per-element state arrays of ``p`` (no step count, no per-parameter scalars such as NAdam's)."""
    return {t.name: opt.state[p][t.name] for t in opt.state_tensors if t.name in opt.state[p]}


def _signed(opt: numopt.Optimizer, name: str) -> bool:
    return next(t.signed for t in opt.state_tensors if t.name == name)


# -- int8 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kw", CASES, ids=lambda x: x if isinstance(x, str) else "-".join(map(str, x.values())))
def test_int8_state_matches_numpy_reference(name: str, kw: dict) -> None:
    params, shadow_params = _params(), _params()
    opt = getattr(numopt, name)(params, state_dtype="int8", **kw)
    shadow = getattr(numopt, name)(shadow_params, **kw)
    rng = np.random.default_rng(1)
    for step in range(4):
        for p, q, g in zip(params, shadow_params, _grads(params, rng)):
            p.grad, q.grad = g, g.copy()
        for p, q in zip(params, shadow_params):  # the shadow starts each step from the dequantized state
            for k, v in _arrays(opt, p).items():
                if isinstance(v, numopt.lowbit.Int8State):
                    shadow.state[q][k][...] = ref_dequantize(v.codes, v.absmax, _signed(opt, k))
        opt.step()
        shadow.step()
        for p, q in zip(params, shadow_params):
            np.testing.assert_array_equal(p.data, q.data)
            for k, v in _arrays(opt, p).items():
                if p.size >= 4096:
                    codes, absmax = ref_quantize(shadow.state[q][k], _signed(opt, k))
                    assert isinstance(v, numopt.lowbit.Int8State)
                    np.testing.assert_array_equal(v.codes, codes, err_msg=f"{k} step {step}")
                    np.testing.assert_array_equal(v.absmax, absmax)
                else:  # small parameters keep full-precision state
                    assert isinstance(v, np.ndarray) and v.dtype == np.float32
                    np.testing.assert_array_equal(v, shadow.state[q][k])


def test_int8_quantization_error_is_within_the_map_resolution() -> None:
    rng = np.random.default_rng(2)
    for signed in (True, False):
        x = rng.standard_normal(256 * 40).astype(np.float32) * np.repeat(10.0 ** rng.uniform(-6, 2, 40), 256)
        x = x if signed else np.abs(x)
        state = numopt.lowbit.Int8State(*numopt.lowbit.quantize_blocks(x, signed), signed)
        codes, absmax = ref_quantize(x, signed)
        np.testing.assert_array_equal(state.codes, codes)
        qmap = dynamic_map(signed)
        scale = np.repeat(absmax, 256)
        err = np.abs(state.dequantize() - x)
        # nearest entry: the error is at most half the gap to the neighbour on x's side (plus rounding)
        lo = qmap[np.maximum(codes.astype(int) - 1, 0)]
        hi = qmap[np.minimum(codes.astype(int) + 1, 255)]
        half_gap = np.maximum(qmap[codes] - lo, hi - qmap[codes]) / 2 * scale
        # the signed map stops short of -1: -scale itself is as far from its code as that
        half_gap = np.where(codes == 0, np.maximum(half_gap, (1 + qmap[0]) * scale), half_gap)
        assert np.all(err <= half_gap * (1 + 1e-5) + 1e-30)


@pytest.mark.parametrize("signed", [True, False])
def test_int8_code_table_gives_the_nearest_entry(signed: bool) -> None:
    """The loops' constant-time look-up (``QuantMap.packed``, read as ``QuantMap.lookup`` reads it) gives the
    codes ``searchsorted`` gives: on random values over every decade, on every threshold and its neighbours,
    and on the edges of the table's buckets; the compiled ``quantize`` reads the table the same way."""
    from numba import njit

    from numopt.kernels._lowbit import quant_map, quantize

    qmap = quant_map(signed)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, 200_000) * 10.0 ** rng.uniform(-9, 0, 200_000)
    x = np.concatenate([x.astype(np.float32), qmap._probes()])
    x = x if signed else np.abs(x)
    expected = np.searchsorted(qmap.thresholds[:-1], x, side="left").astype(np.uint8)
    np.testing.assert_array_equal(qmap.lookup(x), expected)

    @njit
    def codes(values, packed):
        out = np.empty(values.size, np.uint8)
        for i in range(values.size):
            out[i] = quantize(values[i], np.float32(1), packed)
        return out

    # the compiled quantize: the table's code, and code 1 for a positive value the table puts at code 0
    np.testing.assert_array_equal(codes(x, qmap.packed), qmap.quantize(x))
    bumped = (expected == 0) & (x > 0)
    assert signed or bumped.any()
    np.testing.assert_array_equal(qmap.quantize(x), np.where(bumped, 1, expected))


def test_int8_second_moment_never_reads_back_as_zero() -> None:
    """A gradient 1e-4 of its block's largest: its float32 second moment (1e-11 of the block's) is below
    the unsigned map's smallest entry. It still reads back positive, so a zero gradient on the next step
    (a dead unit) moves the weight by about what float32 state moves it, not by lr * m / eps."""
    moves = {}
    for state_dtype in (None, "int8"):
        w = numopt.Parameter(np.zeros(4096, np.float32))
        opt = numopt.AdamW([w], lr=1e-3, weight_decay=0.0, state_dtype=state_dtype)
        g = np.ones(4096, np.float32)
        g[1] = 1e-4
        w.grad = g
        opt.step()
        g[1] = 0.0
        w.grad = g
        before = float(w.data[1])
        opt.step()
        moves[state_dtype] = abs(float(w.data[1]) - before)
        if state_dtype == "int8":
            assert np.asarray(opt.state[w]["exp_avg_sq"].dequantize())[1] > 0
    assert moves["int8"] < 10 * moves[None]  # without the rule: 4.2, 6000 times float32's 0.00067


def test_int8_results_do_not_depend_on_the_thread_count() -> None:
    results = []
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, threads}):
            numba.set_num_threads(n)
            params = _params()
            opt = numopt.AdamW8bit(params, lr=1e-2)
            rng = np.random.default_rng(3)
            for _ in range(3):
                for p, g in zip(params, _grads(params, rng)):
                    p.grad = g
                opt.step()
            results.append([p.data.copy() for p in params] + [opt.state[params[0]]["exp_avg"].codes.copy()])
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(results[0], results[-1]):
        np.testing.assert_array_equal(a, b)


def test_min_8bit_size_and_aliases() -> None:
    params = _params()
    opt = numopt.Adam8bit(params, lr=1e-2, min_8bit_size=100)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    kinds = [type(opt.state[p]["exp_avg"]).__name__ for p in params]
    assert kinds == ["Int8State", "Int8State", "Int8State", "ndarray"]
    assert numopt.Lion8bit(_params(), lr=1e-4).state_dtype == "int8"
    assert numopt.AdamW8bit(_params()).defaults["weight_decay"] == 1e-2


# -- bfloat16 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kw", CASES, ids=lambda x: x if isinstance(x, str) else "-".join(map(str, x.values())))
def test_bfloat16_state_matches_numpy_reference(name: str, kw: dict) -> None:
    params, shadow_params = _params(), _params()
    opt = getattr(numopt, name)(params, state_dtype="bfloat16", **kw)
    shadow = getattr(numopt, name)(shadow_params, **kw)
    rng = np.random.default_rng(4)
    for _ in range(4):
        for p, q, g in zip(params, shadow_params, _grads(params, rng)):
            p.grad, q.grad = g, g.copy()
        for p, q in zip(params, shadow_params):
            for k, v in _arrays(opt, p).items():
                shadow.state[q][k][...] = (v.bits.astype(np.uint32) << 16).view(np.float32)
        opt.step()
        shadow.step()
        for p, q in zip(params, shadow_params):
            np.testing.assert_array_equal(p.data, q.data)
            for k, v in _arrays(opt, p).items():
                assert isinstance(v, numopt.lowbit.BFloat16State)
                np.testing.assert_array_equal(v.bits, ref_bf16_bits(shadow.state[q][k]), err_msg=k)


def test_bfloat16_encoding_matches_torch_on_edge_values() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
            np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, 3.4e38, -3.4e38, 1.0 + 2**-8, 1.0 + 3 * 2**-8], np.float32),
        ]
    )
    ours, ref = numopt.lowbit.encode_bf16(x), ref_bf16_bits(x)
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(ours[finite], ref[finite])
    assert np.all(np.isnan(numopt.lowbit.decode_bf16(ours[~finite])))


# -- state dicts, checkpoints, resume ------------------------------------------------------------------
@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
def test_state_dict_save_load_and_resume_are_bit_exact(tmp_path, state_dtype: str) -> None:
    def run(params, opt, rng, steps):
        for _ in range(steps):
            for p, g in zip(params, _grads(params, rng)):
                p.grad = g
            opt.step()

    params = _params()
    opt = numopt.AdamW(params, lr=1e-2, amsgrad=True, state_dtype=state_dtype)
    rng = np.random.default_rng(6)
    run(params, opt, rng, 3)
    sd = opt.state_dict()
    entry = sd["state"][0]["exp_avg"]
    assert entry.state_dtype == state_dtype  # compact in the state dict too
    numopt.save(sd, tmp_path / "ckpt")
    loaded = numopt.load(tmp_path / "ckpt")
    resumed_params = [numopt.Parameter(p.data.copy()) for p in params]
    resumed = numopt.AdamW(resumed_params, lr=1e-2, amsgrad=True, state_dtype=state_dtype)
    resumed.load_state_dict(loaded)
    for a, b in zip(opt.state.values(), resumed.state.values()):
        for k in a:
            x, y = a[k], b[k]
            fields = ("bits",) if state_dtype == "bfloat16" else ("codes", "absmax")
            for f in fields if hasattr(x, "dequantize") else ():
                np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
    state = rng.bit_generator.state
    run(params, opt, rng, 3)
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = state
    run(resumed_params, resumed, rng2, 3)
    for p, q in zip(params, resumed_params):
        np.testing.assert_array_equal(p.data, q.data)
    # a pickled optimizer keeps stepping the same buffers
    clone = pickle.loads(pickle.dumps(opt))
    clone_params = clone.param_groups[0]["params"]
    assert type(clone.state[clone_params[0]]["exp_avg"]) is type(opt.state[params[0]]["exp_avg"])
    deep = copy.deepcopy(opt)
    assert deep.state_dtype == state_dtype


def test_conversions_between_full_and_compact_state() -> None:
    params = _params()
    full = numopt.Adam(params, lr=1e-2)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    full.step()
    eight = numopt.Adam([numopt.Parameter(p.data.copy()) for p in params], lr=1e-2, state_dtype="int8")
    eight.load_state_dict(full.state_dict())  # quantized on load
    q = eight.state[eight.param_groups[0]["params"][0]]["exp_avg"]
    codes, absmax = ref_quantize(full.state[params[0]]["exp_avg"], True)
    np.testing.assert_array_equal(q.codes, codes)
    back = numopt.Adam([numopt.Parameter(p.data.copy()) for p in params], lr=1e-2)
    back.load_state_dict(eight.state_dict())  # dequantized on load
    np.testing.assert_array_equal(back.state[back.param_groups[0]["params"][0]]["exp_avg"], q.dequantize())
    torch_sd = numopt.interop.torch.to_torch_state_dict(eight.state_dict())
    assert torch_sd["state"][0]["exp_avg"].dtype == pytest.importorskip("torch").float32


# -- bad input -------------------------------------------------------------------------------------------
def test_bad_state_dtype_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"state_dtype must be None, 'bfloat16' or 'int8', got 'float16'"):
        numopt.Adam(_params(), state_dtype="float16")
    with pytest.raises(ValueError, match="min_8bit_size must be a whole number"):
        numopt.Adam(_params(), state_dtype="int8", min_8bit_size=-1)
    check = numopt.lowbit.check_state_dtype
    with pytest.raises(ValueError, match="LBFGS has no generated elementwise rule"):
        check(numopt.LBFGS, "int8", 4096)
    with pytest.raises(ValueError, match="Adafactor has no generated elementwise rule"):
        check(numopt.Adafactor, "bfloat16", 4096)

    class NoState:  # a declaration with a generated rule but no per-element state
        rule = numopt.SGD.rule
        state_tensors = ()

    with pytest.raises(ValueError, match="NoState keeps no per-element state"):
        check(NoState, "int8", 4096)
