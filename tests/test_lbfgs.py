"""LBFGS: torch's loss sequence, state dicts, several groups, maximize, the line search knobs, errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

import numopt
from numopt.optim import lbfgs as lbfgs_module

from .optim_db import reference_for

torch.set_num_threads(1)

#: largest relative difference from torch's loss sequence seen per problem (printed by -s runs)
MAX_REL_ERR: dict[str, float] = {}


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    """scipy's (chained) Rosenbrock function and its gradient."""
    t = x[1:] - x[:-1] ** 2
    f = float(np.sum(100.0 * t * t + (1.0 - x[:-1]) ** 2))
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * t - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * t
    return f, g


_rng = np.random.default_rng(0)
_A = _rng.standard_normal((60, 20)) * np.logspace(0, 2, 20)
_B = _rng.standard_normal(60)


def least_squares(x: np.ndarray) -> tuple[float, np.ndarray]:
    r = _A @ x - _B
    return 0.5 * float(r @ r), _A.T @ r


@dataclass(frozen=True)
class Problem:
    name: str
    fn: Callable[[np.ndarray], tuple[float, np.ndarray]]
    x0: np.ndarray
    kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 5


STD_100 = np.tile([-1.2, 1.0], 50)
PROBLEMS = [
    Problem("rosen2-wolfe", rosenbrock, np.array([-1.2, 1.0]), {"line_search_fn": "strong_wolfe"}),
    Problem("rosen2-fixed-step", rosenbrock, np.array([-1.2, 1.0]), {"lr": 0.1}),
    Problem(
        "rosen100-wolfe", rosenbrock, np.random.default_rng(0).uniform(0, 2, 100), {"line_search_fn": "strong_wolfe"}
    ),
    # From (-1.2, 1, ...) the two runs agree to ~1e-16 at first, but Rosenbrock's line-search dynamics
    # amplify the last-bit differences of MKL's dot products ~10x per 10 evaluations: compare ~75.
    Problem("rosen100-std-wolfe", rosenbrock, STD_100, {"line_search_fn": "strong_wolfe"}, steps=3),
    Problem("rosen100-std-fixed-step", rosenbrock, STD_100, {"lr": 0.05}, steps=10),
    Problem("lstsq-wolfe", least_squares, np.zeros(20), {"line_search_fn": "strong_wolfe"}),
    Problem("lstsq-fixed-step", least_squares, np.zeros(20), {}),
    Problem("lstsq-short-history", least_squares, np.zeros(20), {"lr": 0.5, "history_size": 3, "max_iter": 7}),
    Problem("lstsq-tight-budget", least_squares, np.zeros(20), {"line_search_fn": "strong_wolfe", "max_eval": 9}),
]


def run_numopt(problem: Problem, **extra: Any) -> tuple[list[float], numopt.Parameter, numopt.LBFGS]:
    p = numopt.Parameter(problem.x0.copy())
    opt = numopt.LBFGS([p], **problem.kwargs, **extra)
    losses: list[float] = []

    def closure() -> float:
        f, g = problem.fn(p.data)
        p.grad = g
        losses.append(f)
        return f

    for _ in range(problem.steps):
        opt.step(closure)
    return losses, p, opt


def run_torch(problem: Problem) -> tuple[list[float], torch.Tensor, Any]:
    tp = torch.tensor(problem.x0.copy(), requires_grad=True)
    opt = reference_for("LBFGS")([tp], **problem.kwargs)
    losses: list[float] = []

    def closure() -> float:
        f, g = problem.fn(tp.detach().numpy())  # the same f and g arithmetic on both sides
        tp.grad = torch.from_numpy(g)
        losses.append(f)
        return f

    for _ in range(problem.steps):
        opt.step(closure)
    return losses, tp, opt


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_loss_sequence_matches_torch(problem: Problem) -> None:
    ours, p, opt = run_numopt(problem)
    ref, tp, topt = run_torch(problem)
    assert len(ours) == len(ref), f"{len(ours)} function evaluations, torch made {len(ref)}"
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=0)
    MAX_REL_ERR[problem.name] = float(np.max(np.abs(np.subtract(ours, ref)) / np.abs(ref)))
    st, tst = opt.state[p], topt.state[tp]
    assert st["func_evals"] == tst["func_evals"] and st["n_iter"] == tst["n_iter"]
    assert len(st["old_dirs"]) == len(tst["old_dirs"])
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_state_dict_has_torchs_layout() -> None:
    problem = PROBLEMS[0]
    _, _, opt = run_numopt(problem)
    _, _, topt = run_torch(problem)
    ours, ref = opt.state_dict(), topt.state_dict()
    assert set(ours["state"]) == set(ref["state"]) == {0}
    assert set(ours["state"][0]) == set(ref["state"][0])
    assert set(ref["param_groups"][0]) <= set(ours["param_groups"][0])
    st = ours["state"][0]
    assert isinstance(st["d"], np.ndarray) and st["d"].shape == (2,)
    assert all(isinstance(v, np.ndarray) for v in st["old_dirs"] + st["old_stps"])
    assert len(st["al"]) == len(ref["state"][0]["al"])
    # copies: stepping on does not change a saved state dict
    before = st["d"].copy()
    opt.step(lambda: 0.0)
    np.testing.assert_array_equal(st["d"], before)


@pytest.mark.parametrize(
    "kwargs", [{"max_iter": 3}, {"max_iter": 3, "line_search_fn": "strong_wolfe", "history_size": 4}]
)
def test_state_dict_resume_is_exact(kwargs: dict[str, Any]) -> None:
    x0 = np.random.default_rng(0).uniform(0, 2, 10)

    def run(split: int | None) -> tuple[list[float], np.ndarray]:
        p = numopt.Parameter(x0.copy())
        opt = numopt.LBFGS([p], **kwargs)
        losses: list[float] = []
        for s in range(6):
            if s == split:
                sd = opt.state_dict()
                p = numopt.Parameter(p.data.copy())
                opt = numopt.LBFGS([p], **kwargs)
                opt.load_state_dict(sd)

            def closure(p: numopt.Parameter = p) -> float:
                f, g = rosenbrock(p.data)
                p.grad = g
                losses.append(f)
                return f

            opt.step(closure)
        return losses, p.data.copy()

    straight, resumed = run(None), run(3)
    assert straight[0] == resumed[0]
    np.testing.assert_array_equal(straight[1], resumed[1])


def test_loads_torchs_state_dict() -> None:
    problem = Problem("rosen10", rosenbrock, np.random.default_rng(1).uniform(0, 2, 10), {"max_iter": 3}, steps=4)
    _, tp, topt = run_torch(problem)
    tsd = topt.state_dict()

    def to_numpy(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.numpy().copy() if v.ndim else float(v)
        return [to_numpy(u) for u in v] if isinstance(v, list) else v

    sd = {"state": {0: {k: to_numpy(v) for k, v in tsd["state"][0].items()}}, "param_groups": tsd["param_groups"]}
    p = numopt.Parameter(tp.detach().numpy().copy())
    opt = numopt.LBFGS([p])
    opt.load_state_dict(sd)
    ours, ref = [], []

    def closure() -> float:
        f, g = rosenbrock(p.data)
        p.grad = g
        ours.append(f)
        return f

    def tclosure() -> float:
        f, g = rosenbrock(tp.detach().numpy())
        tp.grad = torch.from_numpy(g)
        ref.append(f)
        return f

    for _ in range(3):
        opt.step(closure)
        topt.step(tclosure)
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_load_state_dict_rejects_bad_state_and_changes_nothing() -> None:
    p = numopt.Parameter(np.ones(3))
    opt = numopt.LBFGS([p])
    opt.step(lambda: (setattr(p, "grad", 2 * p.data), float(p.data @ p.data))[1])
    good = opt.state_dict()
    for bad, match in [
        ({"d": np.zeros(4)}, "shape"),
        ({"old_dirs": [np.zeros(3)], "old_stps": [], "ro": []}, "one entry per stored pair"),
        ({"n_iter": -1}, "non-negative whole number"),
        ({"exp_avg": np.zeros(3)}, "unexpected state keys"),
    ]:
        sd = {"state": {0: {**good["state"][0], **bad}}, "param_groups": good["param_groups"]}
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(sd)
    after = opt.state_dict()
    np.testing.assert_array_equal(after["state"][0]["d"], good["state"][0]["d"])


def test_two_groups_are_block_coordinate_lbfgs() -> None:
    """Two groups: each an L-BFGS of its own (own hyperparameters), run in turn with the other fixed."""
    x0 = np.random.default_rng(2).uniform(0, 2, 8)

    def f_and_g(x: np.ndarray) -> tuple[float, np.ndarray]:
        return rosenbrock(x)

    kw_a = {"line_search_fn": "strong_wolfe", "max_iter": 5}
    kw_b = {"lr": 0.05, "max_iter": 4, "history_size": 3}

    a, b = numopt.Parameter(x0[:4].copy()), numopt.Parameter(x0[4:].copy())
    opt = numopt.LBFGS([{"params": [a], **kw_a}, {"params": [b], **kw_b}])
    seen: list[float] = []

    def closure() -> float:
        f, g = f_and_g(np.concatenate([a.data, b.data]))
        a.grad, b.grad = g[:4], g[4:]
        seen.append(f)
        return f

    # the same with two single-group optimizers, stepped one after the other
    a2, b2 = numopt.Parameter(x0[:4].copy()), numopt.Parameter(x0[4:].copy())
    opt_a, opt_b = numopt.LBFGS([a2], **kw_a), numopt.LBFGS([b2], **kw_b)
    seen2: list[float] = []

    def closure2() -> float:
        f, g = f_and_g(np.concatenate([a2.data, b2.data]))
        a2.grad, b2.grad = g[:4], g[4:]
        seen2.append(f)
        return f

    for _ in range(3):
        loss = opt.step(closure)
        first = len(seen2)
        opt_a.step(closure2)
        opt_b.step(closure2)
        assert loss == seen2[first]  # step returns the loss before any group moved
    assert seen == seen2
    np.testing.assert_array_equal(a.data, a2.data)
    np.testing.assert_array_equal(b.data, b2.data)
    assert opt.param_groups[1]["max_eval"] == 5  # a group's own max_iter sets its default max_eval
    assert set(opt.state) == {a, b}  # one state per group, under its first parameter
    sd = opt.state_dict()
    assert set(sd["state"]) == {0, 1}


def test_maximize_equals_minimizing_the_negation() -> None:
    x0 = np.random.default_rng(3).uniform(0, 2, 6)
    runs = []
    for maximize in (False, True):
        p = numopt.Parameter(x0.copy())
        opt = numopt.LBFGS([p], line_search_fn="strong_wolfe", maximize=maximize)
        sign = -1.0 if maximize else 1.0

        def closure(p: numopt.Parameter = p, sign: float = sign) -> float:
            f, g = rosenbrock(p.data)
            p.grad = sign * g
            return sign * f

        losses = [opt.step(closure) for _ in range(3)]
        runs.append((losses, p.data.copy()))
    assert runs[0][0] == [-v for v in runs[1][0]]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_line_search_constants_and_max_ls() -> None:
    x0 = np.array([-1.2, 1.0])
    problem = Problem("rosen2", rosenbrock, x0, {"line_search_fn": "strong_wolfe"}, steps=3)
    default, _, _ = run_numopt(problem)
    explicit, _, _ = run_numopt(problem, c1=1e-4, c2=0.9)
    assert default == explicit  # torch's hard-coded values are the defaults
    _, _, opt = run_numopt(problem, max_ls=1)
    st = opt.state[opt.param_groups[0]["params"][0]]
    assert st["func_evals"] <= 3 * (2 * st["n_iter"] + 1)  # at most 2 evaluations per line search
    tight, _, _ = run_numopt(problem, c2=0.1)
    assert tight != default  # a stricter curvature condition takes other steps
    exact, p, _ = run_numopt(Problem("rosen2", rosenbrock, x0, {"line_search_fn": "strong_wolfe"}, steps=10))
    assert np.allclose(p.data, 1.0, atol=1e-4)


def test_missing_gradient_counts_as_zero_like_torch() -> None:
    x0 = np.random.default_rng(4).uniform(0, 2, 5)
    p, q = numopt.Parameter(x0.copy()), numopt.Parameter(np.array([3.0, -1.0]))
    opt = numopt.LBFGS([p, q], line_search_fn="strong_wolfe")
    tp, tq = torch.tensor(x0.copy(), requires_grad=True), torch.tensor([3.0, -1.0], requires_grad=True)
    topt = reference_for("LBFGS")([tp, tq], line_search_fn="strong_wolfe")

    def closure() -> float:
        f, g = rosenbrock(p.data)
        p.grad = g
        q.grad = None
        return f

    def tclosure() -> float:
        f, g = rosenbrock(tp.detach().numpy())
        tp.grad = torch.from_numpy(g)
        tq.grad = None
        return f

    for _ in range(2):
        assert opt.step(closure) == topt.step(tclosure)
    np.testing.assert_array_equal(q.data, [3.0, -1.0])
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10)


def test_converged_at_start_returns_without_iterating() -> None:
    p = numopt.Parameter(np.ones(4))
    opt = numopt.LBFGS([p])

    def closure() -> float:
        p.grad = np.zeros(4)
        return 0.0

    assert opt.step(closure) == 0.0
    assert opt.state[p] == {"func_evals": 1, "n_iter": 0}


def test_float32_converges() -> None:
    p = numopt.Parameter(np.array([-1.2, 1.0], np.float32))
    opt = numopt.LBFGS([p], line_search_fn="strong_wolfe", max_iter=200, tolerance_grad=1e-5)

    def closure() -> float:
        f, g = rosenbrock(p.data.astype(np.float64))
        p.grad = g.astype(np.float32)
        return f

    opt.step(closure)
    assert opt.state[p]["d"].dtype == np.float32
    np.testing.assert_allclose(p.data, [1.0, 1.0], atol=1e-3)


def test_parallel_path_equals_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the threshold the kernels run prange loops; per-chunk sums make them bit-identical."""
    n = lbfgs_module._PARALLEL_MIN + 1000
    d = np.linspace(1.0, 50.0, n)
    c = np.sin(np.arange(n))

    def run() -> np.ndarray:
        p = numopt.Parameter(np.zeros(n))
        opt = numopt.LBFGS([p], line_search_fn="strong_wolfe", max_iter=6, history_size=3)

        def closure() -> float:
            r = p.data - c
            p.grad = d * r
            return 0.5 * float(r @ (d * r))

        opt.step(closure)
        return p.data.copy()

    parallel = run()
    monkeypatch.setattr(lbfgs_module, "_PARALLEL_MIN", 1 << 62)
    serial = run()
    np.testing.assert_array_equal(parallel, serial)


def test_step_requires_a_closure() -> None:
    opt = numopt.LBFGS([numopt.Parameter(np.ones(2))])
    with pytest.raises(TypeError, match="LBFGS.step needs a closure"):
        opt.step()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lr": -1.0}, ValueError, "Invalid learning rate"),
        ({"max_iter": 0}, ValueError, "Invalid max_iter"),
        ({"max_iter": 2.5}, TypeError, "max_iter must be an int"),
        ({"max_eval": 0}, ValueError, "Invalid max_eval"),
        ({"history_size": 0}, ValueError, "Invalid history_size: 0 .*at least one curvature pair"),
        ({"history_size": -1}, ValueError, "Invalid history_size"),
        ({"tolerance_grad": float("nan")}, ValueError, "Invalid tolerance_grad"),
        ({"tolerance_change": float("inf")}, ValueError, "Invalid tolerance_change"),
        ({"line_search_fn": "backtracking"}, ValueError, "only 'strong_wolfe' is supported"),
        ({"c1": 0.95}, ValueError, "need 0 < c1 < c2 < 1"),
        ({"c2": 1.0}, ValueError, "Invalid c2 value"),
        ({"max_ls": 0}, ValueError, "Invalid max_ls"),
        ({"maximize": 1}, TypeError, "maximize must be True or False"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        numopt.LBFGS([numopt.Parameter(np.ones(2))], **kwargs)


def test_negative_tolerances_are_accepted_as_in_torch() -> None:
    # torch accepts them: a negative tolerance never stops the iterations early
    x = numopt.Parameter(np.array([1.5, -0.5]))
    opt = numopt.LBFGS([x], tolerance_grad=-1.0, tolerance_change=-1.0, max_iter=5)

    def closure() -> float:
        opt.zero_grad()
        x.grad = 2 * (x.data - 1.0)
        return float(((x.data - 1.0) ** 2).sum())

    opt.step(closure)
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-12)


def test_one_dtype_per_group() -> None:
    a, b = numopt.Parameter(np.ones(2)), numopt.Parameter(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="one dtype"):
        numopt.LBFGS([a, b])
    opt = numopt.LBFGS([{"params": [a]}, {"params": [b]}])  # separate groups are fine
    assert len(opt.param_groups) == 2


def _named_quadratic_run(groups_before: list[list[str]], groups_after: list[list[str]] | None, load: bool = True):
    """LBFGS on a separable quadratic over named parameters a, b, c; optionally saved at ``split`` and
    resumed (by name) in an optimizer whose groups and parameter order are ``groups_after``."""
    rng = np.random.default_rng(3)
    shapes = {"a": (4,), "b": (2, 3), "c": (3,)}
    scale = {k: rng.uniform(0.5, 20.0, s) for k, s in shapes.items()}
    target = {k: rng.standard_normal(s) for k, s in shapes.items()}
    values = {k: rng.standard_normal(s) for k, s in shapes.items()}
    kwargs = {"max_iter": 2, "history_size": 3, "line_search_fn": "strong_wolfe"}

    def build(groups: list[list[str]]) -> tuple[numopt.LBFGS, dict[str, numopt.Parameter]]:
        params = {k: numopt.Parameter(values[k].copy(), name=k) for k in shapes}
        return numopt.LBFGS([{"params": [params[k] for k in g]} for g in groups], **kwargs), params

    opt, params = build(groups_before)
    for s in range(6):
        if s == 3 and groups_after is not None:
            sd = opt.state_dict()
            values.update({k: p.data.copy() for k, p in params.items()})
            opt, params = build(groups_after)
            if load:
                assert opt.load_state_dict(sd, match="name") == ([], [])

        def closure(params: dict[str, numopt.Parameter] = params) -> float:
            loss = 0.0
            for k, p in params.items():
                r = p.data - target[k]
                loss += 0.5 * float(np.sum(scale[k] * r * r))
                p.grad = scale[k] * r
            return loss

        opt.step(closure)
    return {k: p.data.copy() for k, p in params.items()}


def test_load_state_dict_by_name_follows_the_names_across_group_and_parameter_order() -> None:
    straight = _named_quadratic_run([["a", "b"], ["c"]], None)
    same_order = _named_quadratic_run([["a", "b"], ["c"]], [["a", "b"], ["c"]])
    shuffled = _named_quadratic_run([["a", "b"], ["c"]], [["c"], ["b", "a"]])
    for k in straight:
        np.testing.assert_array_equal(same_order[k], straight[k])
        np.testing.assert_allclose(shuffled[k], straight[k], rtol=1e-12, atol=1e-14)  # sums in another order
    fresh = _named_quadratic_run([["a", "b"], ["c"]], [["c"], ["b", "a"]], load=False)
    assert any(not np.allclose(fresh[k], straight[k], rtol=1e-6) for k in straight)  # the history mattered


def test_load_state_dict_by_name_refuses_groups_that_do_not_match_whole() -> None:
    a, b, c = (numopt.Parameter(np.ones(2), name=n) for n in "abc")
    src = numopt.LBFGS([{"params": [a, b]}, {"params": [c]}], max_iter=2)

    def closure() -> float:
        for p in (a, b, c):
            p.grad = p.data.copy()
        return float(sum(np.sum(p.data**2) for p in (a, b, c)))

    src.step(closure)
    sd = src.state_dict()
    a2, b2, c2 = (numopt.Parameter(np.ones(2), name=n) for n in "abc")
    dst = numopt.LBFGS([{"params": [a2]}, {"params": [b2, c2]}], max_iter=2)
    before = dst.state_dict()
    with pytest.raises(ValueError, match="exactly the names of one saved group"):
        dst.load_state_dict(sd, match="name")
    with pytest.raises(ValueError, match="strict=False"):
        dst.load_state_dict(sd, match="name", strict=False)
    with pytest.raises(ValueError, match="match must be"):
        dst.load_state_dict(sd, match="id")
    unnamed = numopt.LBFGS([numopt.Parameter(np.ones(2))])
    with pytest.raises(ValueError, match="needs every parameter to have a name"):
        unnamed.load_state_dict(numopt.LBFGS([numopt.Parameter(np.ones(2), name="a")]).state_dict(), match="name")
    after = dst.state_dict()
    assert after["state"] == before["state"] and after["param_groups"] == before["param_groups"]
