"""functional.lbfgs_minimize and numopt.minimize_batch: the class's L-BFGS compiled whole, and its batches."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit, prange

import numopt
from numopt.bench.lennard_jones import lj_fg, random_starts
from numopt.functional import lbfgs_minimize


@njit(cache=True)
def rosen_fg(x, g, args):  # type: ignore[no-untyped-def]
    """scipy's chained Rosenbrock."""
    f = 0.0
    for i in range(x.size):
        g[i] = 0.0
    for i in range(x.size - 1):
        t = x[i + 1] - x[i] * x[i]
        u = 1.0 - x[i]
        f += 100.0 * t * t + u * u
        g[i] += -400.0 * x[i] * t - 2.0 * u
        g[i + 1] += 200.0 * t
    return f


@njit(cache=True)
def quad_fg(x, g, d):  # type: ignore[no-untyped-def]
    """0.5 x.D x - 1.x with D = diag(d)."""
    f = 0.0
    for i in range(x.size):
        g[i] = d[i] * x[i] - 1.0
        f += 0.5 * d[i] * x[i] * x[i] - x[i]
    return f


@njit(cache=True)
def poisoned_fg(x, g, flag):  # type: ignore[no-untyped-def]
    """A quadratic that is NaN everywhere but at x[0] = 0 when ``flag`` is set."""
    f = 0.0
    for i in range(x.size):
        g[i] = 2.0 * (x[i] - 3.0)
        f += (x[i] - 3.0) ** 2
    if flag[0] > 0 and x[0] != 0.0:
        return np.nan
    return f


def lj_start(atoms: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, 3 * atoms) * atoms ** (1 / 3) * 0.7


def class_run(fg, x0: np.ndarray, args, gtol: float = 1e-5, ftol: float = 2.2e-9):  # type: ignore[no-untyped-def]
    """numopt.LBFGS(line_search_fn='strong_wolfe') under minimize's stopping rules (numopt.minimize, Python fun)."""

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        g = np.empty_like(x)
        return fg(np.ascontiguousarray(x), g, args), g

    return numopt.minimize(fun, x0, options={"gtol": gtol, "ftol": ftol})


PROBLEMS = {
    "rosenbrock-10": (rosen_fg, np.tile([-1.2, 1.0], 5), 0.0),
    "quadratic": (quad_fg, np.zeros(50), np.logspace(0, 3, 50)),
    "lj13": (lj_fg, lj_start(13, 0), 0.0),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_same_iterates_as_the_class(name: str) -> None:
    fg, x0, args = PROBLEMS[name]
    ref = class_run(fg, x0, args)
    x = x0.copy()
    f, nit, nfev, status = lbfgs_minimize(fg, x, args)
    assert (nit, nfev, status) == (ref.nit, ref.nfev, ref.status)
    assert np.abs(x - ref.x).max() <= 1e-10
    assert f == pytest.approx(ref.fun, rel=1e-12, abs=1e-14)
    # the class counts the same iterations on its own
    p = numopt.Parameter(x0.copy())
    opt = numopt.LBFGS(
        [p], line_search_fn="strong_wolfe", history_size=10, max_iter=15000, max_eval=15000,
        tolerance_grad=1e-5, tolerance_change=0.0,
    )  # fmt: skip

    def closure() -> float:
        g = np.empty_like(p.data)
        value = fg(p.data, g, args)
        p.grad = g
        return value

    opt.step(closure)
    if ref.message.startswith("converged: max|grad|"):  # (an ftol stop is minimize's, not the class's)
        assert opt.state[p]["n_iter"] == nit and np.abs(p.data - x).max() <= 1e-10


def test_minimize_with_an_njit_fg_runs_compiled_with_the_same_result() -> None:
    fg, x0, args = PROBLEMS["lj13"]
    ref = class_run(fg, x0, args)
    res = numopt.minimize(fg, x0, args=args)
    assert (res.nit, res.nfev, res.status, res.method) == (ref.nit, ref.nfev, ref.status, "LBFGS")
    assert np.abs(res.x - ref.x).max() <= 1e-10 and np.abs(res.jac - ref.jac).max() <= 1e-8
    # options the compiled loop does not take: fg is called from Python, same answer
    res2 = numopt.minimize(fg, x0, args=args, callback=lambda xk: False)
    assert res2.nit == ref.nit and np.abs(res2.x - ref.x).max() <= 1e-10


def test_inside_prange_and_float32() -> None:
    @njit(parallel=True)
    def solve(xs, ds):  # type: ignore[no-untyped-def]
        out = np.empty((xs.shape[0], 4))
        for b in prange(xs.shape[0]):
            f, nit, nfev, status = lbfgs_minimize(quad_fg, xs[b], ds[b], 10, 15000, 1e-6, 0.0)
            out[b, 0], out[b, 1], out[b, 2], out[b, 3] = f, nit, nfev, status
        return out

    ds = np.random.default_rng(1).uniform(1.0, 10.0, (6, 8))
    xs = np.zeros((6, 8))
    out = solve(xs, ds)
    assert (out[:, 3] == 0).all() and np.allclose(xs, 1.0 / ds, atol=1e-6)
    x32 = np.zeros(8, np.float32)
    f, nit, nfev, status = lbfgs_minimize(quad_fg, x32, ds[0].astype(np.float32), gtol=1e-4)
    assert x32.dtype == np.float32 and status == 0 and np.allclose(x32, 1.0 / ds[0], atol=1e-4)


def test_minimize_batch_matches_one_by_one_and_isolates_non_finite_problems() -> None:
    starts = np.stack([lj_start(13, s) for s in range(6)])
    res = numopt.minimize_batch(lj_fg, starts, ftol=0.0)
    for b in range(6):
        x = starts[b].copy()
        f, nit, nfev, status = lbfgs_minimize(lj_fg, x, 0.0, ftol=0.0)
        assert (res.nit[b], res.nfev[b], res.status[b]) == (nit, nfev, status) and np.array_equal(res.x[b], x)
    assert res.success.all() and np.abs(res.jac).max() <= 1e-5
    # problem 1 is NaN at its first trial point: status 3, x back at its start; the others converge
    flags = np.array([[0.0], [1.0], [0.0]])
    res = numopt.minimize_batch(poisoned_fg, np.zeros((3, 4)), flags, gtol=1e-8)
    assert res.status.tolist() == [0, 3, 0] and res.success.tolist() == [True, False, True]
    assert np.allclose(res.x[[0, 2]], 3.0) and np.array_equal(res.x[1], np.zeros(4)) and res.fun[1] == 36.0
    # leading-axis shapes: X0 (B, atoms, 3) keeps its shape
    res = numopt.minimize_batch(lj_fg, starts.reshape(6, 13, 3), maxiter=3)
    assert res.x.shape == (6, 13, 3) and (res.nit <= 3).all() and (res.status == 1).all()


def test_bad_input_names_what_is_wrong() -> None:
    def plain(x, g, args):  # type: ignore[no-untyped-def]
        return 0.0

    with pytest.raises(TypeError, match=r"@njit function fg\(x, g, args\)"):
        lbfgs_minimize(plain, np.zeros(3), None)
    with pytest.raises(TypeError, match=r"@njit function fg\(x, g, args\)"):
        numopt.minimize_batch(plain, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="1-D float64 or float32"):
        lbfgs_minimize(quad_fg, np.zeros((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="history_size must be an int >= 1"):
        lbfgs_minimize(quad_fg, np.zeros(3), np.ones(3), history_size=0)
    with pytest.raises(ValueError, match=r"X0 must have a leading batch axis.*\(5,\)"):
        numopt.minimize_batch(quad_fg, np.zeros(5), np.ones(5))
    with pytest.raises(ValueError, match=r"args has shape \(3, 5\).*batch size 2 \(X0 has shape \(2, 5\)\)"):
        numopt.minimize_batch(quad_fg, np.zeros((2, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"args\[1\] has shape \(4,\)"):
        numopt.minimize_batch(quad_fg, np.zeros((2, 5)), (np.ones((2, 5)), np.ones(4)))
    with pytest.raises(TypeError, match="unknown options.*'lr'"):
        numopt.minimize_batch(quad_fg, np.zeros((2, 5)), np.ones((2, 5)), lr=0.1)


def test_scipy_method_names() -> None:
    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        return float(x @ x), 2 * x

    res = numopt.minimize(fun, np.ones(3), method="L-BFGS-B", options={"maxcor": 5})
    assert res.success and res.method == "LBFGS"
    assert numopt.minimize(fun, np.ones(3), method="L-BFGS-B", bounds=[(None, None)] * 3).success
    with pytest.raises(ValueError, match="does not take bounds.*unconstrained"):
        numopt.minimize(fun, np.ones(3), method="L-BFGS-B", bounds=[(0, 1)] * 3)
    for name in ("BFGS", "CG", "Newton-CG", "Nelder-Mead", "trust-constr"):
        with pytest.raises(ValueError, match=f"method '{name}' .*closest is 'lbfgs'|method '{name}' .*'lbfgs'"):
            numopt.minimize(fun, np.ones(3), method=name)


def test_a_stalled_run_refreshes_its_history_as_scipy_does() -> None:
    # Seed 0's cluster 42: two atoms start 0.04 apart (loss 4e17). The first step's curvature pair
    # (gradient change ~1e20) scales every later direction to ~1e-18, below the iterate's last bit:
    # torch's L-BFGS would repeat that iteration without moving until its evaluation limit (it did:
    # 18,751 evaluations, stuck at loss 317). numopt.minimize and the compiled loop drop the history
    # on a step with no progress and go on from steepest descent, as scipy's L-BFGS-B does.
    x0 = random_starts(1000, 13, seed=0)[42]

    def python_fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        g = np.empty_like(x)
        return lj_fg(x, g, 0.0), g

    opts = {"gtol": 1e-5, "ftol": 0.0}
    compiled = numopt.minimize(lj_fg, x0, args=0.0, options=opts)
    from_python = numopt.minimize(python_fg, x0, options=opts)
    assert compiled.status == 0 and compiled.fun < -35 and compiled.nfev < 1000
    assert (compiled.nit, compiled.nfev) == (from_python.nit, from_python.nfev)
    np.testing.assert_array_equal(compiled.x, from_python.x)

    # torch's semantics are kept where the class is used directly: with tolerance_change=0 it stays put
    p = numopt.Parameter(x0.copy())
    opt = numopt.LBFGS([p], max_iter=20, tolerance_change=0.0, line_search_fn="strong_wolfe")

    def closure() -> float:
        return lj_fg(p.data, p.grad, 0.0)

    p.grad = np.empty_like(x0)
    opt.step(closure)
    assert closure() > 300
