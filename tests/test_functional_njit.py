"""numopt.functional inside a user's own @njit code: the same parameters as the optimizer classes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numba import njit, prange

import numopt
import numopt.functional as F

N = 67  # not a multiple of anything
K = 7  # gradient noise rows, cycled


def _problem(dtype: np.dtype, n: int = N, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Start point, curvatures, minimum and a table of gradient noise: g_t = a * (x - b) + noise[t % K]."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n).astype(dtype)
    a = rng.uniform(0.5, 3.0, n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    noise = (0.1 * rng.standard_normal((K, n))).astype(dtype)
    return x0, a, b, noise


@njit(cache=True)
def _grad(x, a, b, noise, t, g):
    k = (t - 1) % noise.shape[0]
    for i in range(x.size):
        g[i] = a[i] * (x[i] - b[i]) + noise[k, i]


@pytest.fixture
def one_thread():
    """Small arrays on one thread: a parallel launch per step costs more than the step itself on a busy
    machine (the results do not depend on the thread count)."""
    before = numopt.get_num_threads()
    numopt.set_num_threads(1)
    yield
    numopt.set_num_threads(before)


def _run_class(opt_cls: type, kwargs: dict, problem: tuple[np.ndarray, ...], steps: int) -> tuple[np.ndarray, dict]:
    """The reference: the optimizer class stepped from Python with the same gradients."""
    x0, a, b, noise = problem
    p = numopt.Parameter(x0.copy())
    opt = opt_cls([p], **kwargs)
    for t in range(1, steps + 1):
        p.grad = a * (p.data - b) + noise[(t - 1) % K]
        opt.step()
    return p.data.copy(), {k: np.array(v) for k, v in opt.state[p].items() if k != "step"}


# -- one jitted training loop per rule: what a user writes -------------------------------------------


@njit(cache=True)
def _loop_sgd(x, a, b, noise, st, steps, lr, momentum, dampening, weight_decay, nesterov):
    dt = x.dtype.type
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        F.sgd(x, g, st.momentum_buffer, dt(lr), dt(momentum), dt(dampening), dt(weight_decay), nesterov, False, t == 1)


@njit(cache=True)
def _loop_adam(x, a, b, noise, st, steps, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled):
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        bc1, bc2_sqrt = F.adam_scalars(beta1, beta2, t)
        F.adam(
            x,
            g,
            st.exp_avg,
            st.exp_avg_sq,
            st.max_exp_avg_sq,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            bc1,
            bc2_sqrt,
            amsgrad,
            False,
            decoupled,
        )


@njit(cache=True)
def _loop_adamax(x, a, b, noise, st, steps, lr, beta1, beta2, eps, weight_decay):
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        bc = F.adamax_scalars(beta1, t)
        F.adamax(x, g, st.exp_avg, st.exp_inf, lr, beta1, beta2, eps, weight_decay, bc, False)


@njit(cache=True)
def _loop_nadam(x, a, b, noise, st, steps, lr, beta1, beta2, eps, weight_decay, momentum_decay):
    g = np.empty_like(x)
    mu_product = 1.0
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        bc2, gss, ess, mu_product = F.nadam_scalars(lr, beta1, beta2, momentum_decay, t, mu_product)
        F.nadam(x, g, st.exp_avg, st.exp_avg_sq, lr, beta1, beta2, eps, weight_decay, bc2, gss, ess, False, False)
    return mu_product


@njit(cache=True)
def _loop_radam(x, a, b, noise, st, steps, lr, beta1, beta2, eps, weight_decay):
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        bc1, bc2_sqrt, rect = F.radam_scalars(beta1, beta2, t)
        F.radam(x, g, st.exp_avg, st.exp_avg_sq, lr, beta1, beta2, eps, weight_decay, bc1, bc2_sqrt, rect, False, False)


@njit(cache=True)
def _loop_adagrad(x, a, b, noise, st, steps, lr, lr_decay, eps, weight_decay):
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        F.adagrad(x, g, st.sum, F.adagrad_scalars(lr, lr_decay, t), eps, weight_decay, False)


@njit(cache=True)
def _loop_adadelta(x, a, b, noise, st, steps, lr, rho, eps, weight_decay):
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        F.adadelta(x, g, st.square_avg, st.acc_delta, lr, rho, eps, weight_decay, False)


@njit(cache=True)
def _loop_rmsprop(x, a, b, noise, st, steps, lr, alpha, eps, weight_decay, momentum, centered):
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        F.rmsprop(
            x,
            g,
            st.square_avg,
            st.grad_avg,
            st.momentum_buffer,
            lr,
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
            False,
        )


@njit(cache=True)
def _loop_rprop(x, a, b, noise, st, steps, lr, etaminus, etaplus, smin, smax):
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        F.rprop(x, g, st.prev, st.step_size, lr, etaminus, etaplus, smin, smax, False, t == 1)


@njit(cache=True)
def _loop_asgd(x, a, b, noise, st, steps, lr, lambd, alpha, t0, weight_decay):
    g = np.empty_like(x)
    eta, mu = F.asgd_scalars(lr, lambd, alpha, t0, 0)
    for t in range(1, steps + 1):
        _grad(x, a, b, noise, t, g)
        F.asgd(x, g, st.ax, eta, 1.0 - lambd * eta, mu, weight_decay, False)
        eta, mu = F.asgd_scalars(lr, lambd, alpha, t0, t)


# (id, class, class kwargs, init_state name and options, loop, loop's hyperparameter arguments)
CASES: list[tuple[str, type, dict, tuple[str, dict], Callable, tuple]] = [
    (
        "sgd-nesterov",
        numopt.SGD,
        dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True),
        ("sgd", dict(momentum=0.9)),
        _loop_sgd,
        (0.05, 0.9, 0.0, 0.01, True),
    ),
    (
        "sgd-dampening",
        numopt.SGD,
        dict(lr=0.05, momentum=0.8, dampening=0.3),
        ("sgd", dict(momentum=0.8)),
        _loop_sgd,
        (0.05, 0.8, 0.3, 0.0, False),
    ),
    (
        "adam-amsgrad-l2",
        numopt.Adam,
        dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True),
        ("adam", dict(amsgrad=True)),
        _loop_adam,
        (0.02, 0.8, 0.99, 1e-8, 0.01, True, False),
    ),
    (
        "adamw",
        numopt.AdamW,
        dict(lr=0.02, weight_decay=0.05),
        ("adamw", {}),
        _loop_adam,
        (0.02, 0.9, 0.999, 1e-8, 0.05, False, True),
    ),
    (
        "adamax",
        numopt.Adamax,
        dict(lr=0.02, weight_decay=0.01),
        ("adamax", {}),
        _loop_adamax,
        (0.02, 0.9, 0.999, 1e-8, 0.01),
    ),
    (
        "nadam",
        numopt.NAdam,
        dict(lr=0.02, weight_decay=0.01, momentum_decay=0.01),
        ("nadam", {}),
        _loop_nadam,
        (0.02, 0.9, 0.999, 1e-8, 0.01, 0.01),
    ),
    ("radam", numopt.RAdam, dict(lr=0.02), ("radam", {}), _loop_radam, (0.02, 0.9, 0.999, 1e-8, 0.0)),
    (
        "adagrad",
        numopt.Adagrad,
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
        ("adagrad", dict(initial_accumulator_value=0.1)),
        _loop_adagrad,
        (0.1, 0.01, 1e-10, 0.01),
    ),
    ("adadelta", numopt.Adadelta, dict(lr=0.5, rho=0.8), ("adadelta", {}), _loop_adadelta, (0.5, 0.8, 1e-6, 0.0)),
    (
        "rmsprop-centered-momentum",
        numopt.RMSprop,
        dict(lr=0.01, momentum=0.5, centered=True),
        ("rmsprop", dict(momentum=0.5, centered=True)),
        _loop_rmsprop,
        (0.01, 0.99, 1e-8, 0.0, 0.5, True),
    ),
    ("rprop", numopt.Rprop, dict(lr=0.01), ("rprop", {}), _loop_rprop, (0.01, 0.5, 1.2, 1e-6, 50.0)),
    (
        "asgd",
        numopt.ASGD,
        dict(lr=0.05, lambd=1e-3, t0=20, weight_decay=0.01),
        ("asgd", {}),
        _loop_asgd,
        (0.05, 1e-3, 0.75, 20.0, 0.01),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_jitted_loop_equals_the_optimizer_class(case, one_thread) -> None:
    _, cls, kwargs, (name, options), loop, hparams = case
    problem = _problem(np.dtype(np.float32))
    steps = 60
    expected, state = _run_class(cls, kwargs, problem, steps)
    x0, a, b, noise = problem
    x = x0.copy()
    st = F.init_state(name, x, **options)
    loop(x, a, b, noise, st, steps, *hparams)
    np.testing.assert_array_equal(x, expected)
    for key, value in state.items():
        if key in st._fields:
            np.testing.assert_array_equal(getattr(st, key), value.reshape(-1), err_msg=key)


def test_ten_thousand_adam_steps_in_one_jitted_loop_equal_the_class(one_thread) -> None:
    """The issue's example: a simulation running 10_000 Adam steps on its own parameters, float64 too."""
    for dtype in (np.float32, np.float64):
        problem = _problem(np.dtype(dtype), n=40, seed=1)
        expected, state = _run_class(numopt.Adam, dict(lr=1e-3), problem, 10_000)
        x0, a, b, noise = problem
        x = x0.copy()
        st = F.init_state("adam", x)
        _loop_adam(x, a, b, noise, st, 10_000, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
        assert x.dtype == dtype
        np.testing.assert_array_equal(x, expected)
        np.testing.assert_array_equal(st.exp_avg_sq, state["exp_avg_sq"])


@njit(cache=True, parallel=True)
def _parallel_fit(x, a, b, noise, st, steps):
    """A parallel caller: the gradient in a prange loop, the update rule called outside it."""
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        k = (t - 1) % noise.shape[0]
        for i in prange(x.size):
            g[i] = a[i] * (x[i] - b[i]) + noise[k, i]
        bc1, bc2_sqrt = F.adam_scalars(0.9, 0.999, t)
        F.adam(
            x, g, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, 0.01, 0.9, 0.999, 1e-8, 0.0, bc1, bc2_sqrt, False, False
        )


def test_parallel_user_function_calls_the_kernels() -> None:
    problem = _problem(np.dtype(np.float32), n=40_000, seed=2)  # several chunks: a real parallel launch
    expected, _ = _run_class(numopt.Adam, dict(lr=0.01), problem, 30)
    x0, a, b, noise = problem
    x = x0.copy()
    _parallel_fit(x, a, b, noise, F.init_state("adam", x), 30)
    np.testing.assert_array_equal(x, expected)


def test_module_docstring_example_runs(one_thread) -> None:
    import doctest

    result = doctest.testmod(F, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_readme_embedding_example_runs(one_thread) -> None:
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## Inside your own `@njit` code.*?```python\n(.*?)```", readme, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    np.testing.assert_allclose(scope["x"], np.linspace(-1, 1, 1000), atol=1e-3)


# -- init_state -------------------------------------------------------------------------------------


def test_init_state_shapes_dtypes_and_options() -> None:
    p = np.zeros((3, 5), np.float64)
    st = F.init_state("Adam", p)
    assert type(st).__name__ == "AdamState" and st._fields == ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    assert st.exp_avg.shape == (15,) and st.exp_avg.dtype == np.float64 and st.max_exp_avg_sq.size == 0
    assert F.init_state("adamw", p, amsgrad=True).max_exp_avg_sq.shape == (15,)
    assert F.init_state("sgd", p).momentum_buffer.size == 0
    assert F.init_state("sgd", p, momentum=0.9).momentum_buffer.size == 15
    np.testing.assert_array_equal(F.init_state("adagrad", p, initial_accumulator_value=0.5).sum, 0.5)
    st = F.init_state("rmsprop", numopt.Parameter(np.ones(4, np.float32)), centered=True)
    assert (st.grad_avg.size, st.momentum_buffer.size, st.square_avg.dtype) == (4, 0, np.float32)
    for name in ("adamax", "nadam", "radam", "adadelta", "rprop", "asgd"):
        st = F.init_state(name, p)
        assert all(arr.shape == (15,) and not arr.any() for arr in st), name
    # the field names are those of optimizer.state[p]
    w = numopt.Parameter(np.ones(3, np.float32))
    opt = numopt.RMSprop([w], centered=True, momentum=0.1)
    w.grad = np.ones(3, np.float32)
    opt.step()
    assert set(F.init_state("rmsprop", w, centered=True, momentum=0.1)._fields) == set(opt.state[w]) - {"step"}


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (("lamb", np.zeros(3)), {}, ValueError, "unknown algorithm 'lamb'"),
        (("adafactor", np.zeros(3)), {}, ValueError, "use their optimizer classes"),
        (("adam", np.zeros(3)), {"momentum": 0.9}, TypeError, r"unexpected option\(s\) \['momentum'\]"),
        (("adadelta", np.zeros(3)), {"rho": 0.9}, TypeError, "takes no options"),
        (("adam", np.zeros(3, np.int32)), {}, TypeError, "float32 or float64"),
    ],
)
def test_init_state_errors(args, kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        F.init_state(*args, **kwargs)


def test_scalar_helpers_from_python_match_the_classes_formulas() -> None:
    bc1, bc2 = F.adam_scalars(0.9, 0.999, 3)
    assert bc1 == 1 - 0.9**3.0 and bc2 == (1 - 0.999**3.0) ** 0.5
    assert F.radam_scalars(0.9, 0.999, 2)[2] == 0.0  # variance not tractable yet: momentum step
    assert F.radam_scalars(0.9, 0.999, 10)[2] > 0.0
    assert F.adagrad_scalars(0.1, 0.5, 3) == -(0.1 / 2.0)
    assert F.asgd_scalars(0.01, 1e-4, 0.75, 1e6, 0) == (float(np.float32(0.01)), 1.0)


# -- a cached, non-parallel caller loaded from Numba's cache in a fresh process (numba issue 8578) ----

_USER_MODULE = """
import torch  # noqa: F401  (imported first, as in the reported crash)
import numpy as np
from numba import njit
from numopt.functional import adam, adam_scalars, init_state, sgd


@njit(cache=True)  # not parallel: the case that crashed when loaded from the cache
def fit(x, st, buf, steps):
    g = np.empty_like(x)
    for t in range(1, steps + 1):
        g[:] = 2 * x
        bc1, bc2 = adam_scalars(0.9, 0.999, t)
        adam(x, g, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, 0.01, 0.9, 0.999, 1e-8, 0.0, bc1, bc2, False, False)
        g[:] = 2 * x
        sgd(x, g, buf, np.float32(0.01), np.float32(0.9), np.float32(0), np.float32(0), False, False, t == 1)
    return x
"""

_DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import user_fit
from numba.np.ufunc import parallel

assert parallel._is_initialized, "importing numopt.functional starts numba's thread pool"
x = np.ones(50_000, np.float32)
user_fit.fit(x, user_fit.init_state("adam", x), np.zeros_like(x), 50)
hits = sum(user_fit.fit.stats.cache_hits.values())
print(f"x0={x[0]:.9g} cache_hits={hits}")
"""


def test_cached_serial_caller_of_parallel_kernels_loads_in_a_new_process(tmp_path: Path) -> None:
    """First process compiles and caches the user's function; the second loads it from the cache and runs it."""
    (tmp_path / "user_fit.py").write_text(textwrap.dedent(_USER_MODULE))
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(_DRIVER))
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(tmp_path / "numba_cache"))
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, str(driver), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
        runs.append(proc.stdout.strip())
    assert runs[0].endswith("cache_hits=0"), runs[0]
    assert runs[1].endswith("cache_hits=1"), runs[1]  # loaded from the cache, not compiled again
    assert runs[0].split()[0] == runs[1].split()[0]  # and it computes the same thing


def test_serial_twins_give_the_same_result() -> None:
    import numpy as np

    from numopt import functional as F

    x1 = np.linspace(-1, 1, 50).astype(np.float32)
    x2 = x1.copy()
    g = np.cos(x1)
    s1, s2 = F.init_state("adam", x1), F.init_state("adam", x2)
    bc1, bc2 = F.adam_scalars(0.9, 0.999, 1)
    for fn, x, s in ((F.adam, x1, s1), (F.adam_serial, x2, s2)):
        fn(x, g, s.exp_avg, s.exp_avg_sq, s.max_exp_avg_sq, 0.01, 0.9, 0.999, 1e-8, 0.0, bc1, bc2, False, False)
    np.testing.assert_array_equal(x1, x2)
    assert {n + "_serial" for n in ("sgd", "adam", "rprop", "asgd")} <= set(F.__all__)
