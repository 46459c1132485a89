"""numopt.minimize: scipy's calling convention, result fields, methods, options, stops, callback, progress."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.optimize

import numopt
from numopt.minimize import OptimizeResult, available_methods


def rosen(x: np.ndarray) -> tuple[float, np.ndarray]:
    t = x[1:] - x[:-1] ** 2
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * t - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * t
    return float(np.sum(100.0 * t * t + (1.0 - x[:-1]) ** 2)), g


def quadratic(x: np.ndarray, scale: float = 1.0) -> tuple[float, np.ndarray]:
    return 0.5 * scale * float(x.ravel() @ x.ravel()), scale * x


def test_lbfgs_solves_rosenbrock_and_fills_every_field() -> None:
    res = numopt.minimize(rosen, [-1.2, 1.0])
    assert isinstance(res, OptimizeResult)
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "success", "status", "message"):
        assert key in res and getattr(res, key) is res[key]
    assert res.success and res.status == 0
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-5)
    assert res.fun == pytest.approx(rosen(res.x)[0], abs=0)
    np.testing.assert_array_equal(res.jac, rosen(res.x)[1])
    assert 0 < res.nit < res.nfev < 100 and res.method == "LBFGS"
    assert "x:" in repr(res)


def test_reaches_scipys_loss_on_rosenbrock() -> None:
    x0 = np.random.default_rng(0).uniform(0.5, 1.5, 50)
    ref = scipy.optimize.minimize(rosen, x0, jac=True, method="L-BFGS-B")
    res = numopt.minimize(rosen, x0, options={"ftol": 1e-12, "gtol": 1e-7})
    assert res.fun <= ref.fun + 1e-6 * abs(ref.fun)


def test_jac_callable_and_args() -> None:
    def f(x: np.ndarray, scale: float) -> float:
        return quadratic(x, scale)[0]

    def g(x: np.ndarray, scale: float) -> np.ndarray:
        return quadratic(x, scale)[1]

    x0 = np.arange(1.0, 7.0).reshape(2, 3)
    a = numopt.minimize(f, x0, jac=g, args=(3.0,))
    b = numopt.minimize(quadratic, x0, args=(3.0,))
    assert a.x.shape == (2, 3) and a.success
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nfev == b.nfev == a.njev
    with pytest.raises(ValueError, match="does not approximate gradients"):
        numopt.minimize(f, x0, jac=False, args=(3.0,))


def test_x_is_read_only_and_x0_untouched() -> None:
    x0 = np.array([3.0, -2.0])
    seen = []

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        seen.append(x.flags.writeable)
        return quadratic(x)

    numopt.minimize(f, x0)
    assert not any(seen)
    np.testing.assert_array_equal(x0, [3.0, -2.0])


@pytest.mark.parametrize("method", ["SGD", "adam", "Rprop", "lbfgs", "LBFGS"])
def test_methods_by_name_case_insensitive(method: str) -> None:
    opts = {"lr": 0.1, "maxiter": 2000} if method.lower() != "lbfgs" else {}
    res = numopt.minimize(quadratic, np.array([1.0, -2.0, 0.5]), method=method, options=opts)
    assert res.success, res.message
    assert np.abs(res.x).max() <= 1e-4


def test_methods_are_looked_up_at_call_time() -> None:
    methods = available_methods()
    assert {"sgd", "lbfgs", "muon"} <= set(methods)
    assert all(issubclass(cls, numopt.Optimizer) for cls in methods.values())
    with pytest.raises(ValueError, match="unknown method 'newton'.*lbfgs"):
        numopt.minimize(quadratic, [1.0], method="newton")
    res = numopt.minimize(quadratic, [1.0], method=numopt.SGD, options={"lr": 0.5})
    assert res.method == "SGD"


def test_options_reach_the_constructor() -> None:
    res = numopt.minimize(quadratic, [1.0, 2.0], method="sgd", options={"lr": 0.5, "maxiter": 3})
    assert res.nit == 3 and res.status == 1 and not res.success  # x halves each step: 0.125, 0.25
    np.testing.assert_allclose(res.x, [0.125, 0.25])
    with pytest.raises(TypeError, match=r"options \['history'\] are not arguments of numopt.LBFGS"):
        numopt.minimize(quadratic, [1.0], options={"history": 5})
    with pytest.raises(ValueError, match="Invalid learning rate"):
        numopt.minimize(quadratic, [1.0], method="adam", options={"lr": -1.0})


def test_maxiter_and_ftol() -> None:
    res = numopt.minimize(rosen, [-1.2, 1.0], options={"maxiter": 5})
    assert res.nit == 5 and res.status == 1 and not res.success
    assert res.fun == pytest.approx(rosen(res.x)[0], abs=0)
    loose = numopt.minimize(rosen, [-1.2, 1.0], options={"ftol": 1e-2, "gtol": 0.0})
    assert loose.success and "ftol" in loose.message and loose.nit < 30
    zero = numopt.minimize(rosen, [-1.2, 1.0], options={"maxiter": 0})
    assert zero.nit == 0 and zero.nfev == 1 and zero.fun == rosen(np.array([-1.2, 1.0]))[0]


def test_lbfgs_without_line_search_reports_the_final_point() -> None:
    res = numopt.minimize(rosen, [-1.2, 1.0], options={"line_search_fn": None, "lr": 0.1, "maxiter": 7})
    assert res.nit == 7
    assert res.fun == rosen(res.x)[0]


def test_non_finite_loss_stops_cleanly() -> None:
    calls = []

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        calls.append(1)
        if len(calls) > 6:
            return float("nan"), x
        return quadratic(x + 3.0)

    res = numopt.minimize(f, np.zeros(3), method="adam", options={"lr": 0.1})
    assert not res.success and res.status == 3
    assert "non-finite loss" in res.message
    assert np.isfinite(res.x).all() and np.isfinite(res.fun)
    assert res.nit == 5 and res.nfev == 7

    def g(x: np.ndarray) -> tuple[float, np.ndarray]:
        return quadratic(x)[0], np.full_like(x, np.inf)

    res = numopt.minimize(g, np.ones(2))
    assert res.status == 3 and "gradient" in res.message

    def h(x: np.ndarray) -> tuple[float, np.ndarray]:  # overflows far from the start: inside the line search
        with np.errstate(over="ignore"):
            return (float(np.exp(50 * x[0])) if x[0] > 10 else float(-x[0])), np.array([-1.0])

    res = numopt.minimize(h, [0.0])
    assert res.status in (1, 3) and np.isfinite(res.fun)


def test_callback_styles_and_stopping() -> None:
    points = []
    res = numopt.minimize(rosen, [-1.2, 1.0], callback=lambda xk: points.append(xk))
    assert len(points) == res.nit
    np.testing.assert_array_equal(points[-1], res.x)

    seen = []

    def cb(intermediate_result: OptimizeResult) -> None:
        seen.append(intermediate_result.fun)
        if intermediate_result.nit == 4:
            raise StopIteration

    res = numopt.minimize(rosen, [-1.2, 1.0], callback=cb)
    assert res.status == 99 and not res.success and len(seen) == 4
    assert res.fun == seen[-1]
    res = numopt.minimize(quadratic, [5.0], method="sgd", options={"lr": 0.1}, callback=lambda xk: True)
    assert res.status == 99 and res.nit == 1


def test_float32_stays_float32() -> None:
    res = numopt.minimize(quadratic, np.ones(4, np.float32), options={"gtol": 1e-4})
    assert res.x.dtype == np.float32 and res.jac.dtype == np.float32
    assert res.success


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    res = numopt.minimize(rosen, [-1.2, 1.0], progress=True)
    assert res.success
    assert "minimize (LBFGS)" in capsys.readouterr().err


def test_progress_without_tqdm_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match="progress=True needs the optional tqdm package"):
        numopt.minimize(rosen, [-1.2, 1.0], progress=True)


def test_docstring_examples() -> None:
    import doctest
    import importlib

    for name in ("numopt.minimize", "numopt.optim.lbfgs", "numopt.optim.muon"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0 and result.attempted > 0, name
