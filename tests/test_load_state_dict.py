"""load_state_dict: validation that leaves the optimizer untouched, and loading by name."""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest

import numopt

from .optim_db import OPTIM_DB, OptimCase
from .reference import SPLIT, make_pair, random_grads


def snapshot(opt: numopt.Optimizer) -> dict:
    """Every buffer, step count, state entry and hyperparameter of ``opt``, copied."""
    flats = []
    for group_flats in opt._flats:
        for flat in group_flats:
            flats.append(
                {
                    "data": flat.data.copy(),
                    "grad": flat.grad.copy(),
                    "steps": flat.steps.copy(),
                    "state": {k: v.copy() for k, v in flat.state.items()},
                    "scalars": {k: v.copy() for k, v in flat.scalars.items()},
                }
            )
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]
    members = [[id(p) for p in g["params"]] for g in opt.param_groups]
    state = {id(p): {k: np.array(v, copy=True) for k, v in st.items()} for p, st in opt.state.items()}
    return {"flats": flats, "groups": groups, "members": members, "state": state}


def assert_same_snapshot(a: dict, b: dict) -> None:
    assert a["groups"] == b["groups"] and a["members"] == b["members"]
    assert a["state"].keys() == b["state"].keys()
    for pid, st in a["state"].items():
        assert st.keys() == b["state"][pid].keys()
        for k, v in st.items():
            np.testing.assert_array_equal(v, b["state"][pid][k])
    assert len(a["flats"]) == len(b["flats"])
    for fa, fb in zip(a["flats"], b["flats"]):
        for key in ("data", "grad", "steps"):
            np.testing.assert_array_equal(fa[key], fb[key])
        for key in ("state", "scalars"):
            # a buffer may be allocated lazily (a step with no gradients prepares the state arrays),
            # but every buffer that existed must be unchanged
            assert fa[key].keys() <= fb[key].keys()
            for name in fa[key]:
                np.testing.assert_array_equal(fa[key][name], fb[key][name])


def stepped_pair(case: OptimCase, steps: int = 6):
    pair = make_pair(case)
    rng = np.random.default_rng(11)
    for t in range(steps):
        pair.set_grads(random_grads(rng, t, pair.dtype, pair.shapes))
        pair.step()
    return pair


def _first_entry(sd: dict) -> tuple:
    """The first parameter index with state, and its group index and position."""
    for gi, g in enumerate(sd["param_groups"]):
        for j, k in enumerate(g["params"]):
            if sd["state"].get(k):
                return k, gi, j
    raise AssertionError("no state to break")


def _tensor_key(opt: numopt.Optimizer, entry: dict) -> str | None:
    for name, v in entry.items():
        if isinstance(v, np.ndarray) and name != "step" and name not in opt._scalar_keys:
            return name
    return None


def broken_state_dicts(opt: numopt.Optimizer) -> list[tuple[str, dict, str]]:
    """(description, state dict, regex of the ValueError) for everything load_state_dict must refuse."""
    good = opt.state_dict()
    k, gi, j = _first_entry(good)
    where = rf"param_groups\[{gi}\] parameter {j}"
    tkey = _tensor_key(opt, good["state"][k])
    cases = []

    def add(desc: str, mutate, match: str) -> None:
        sd = copy.deepcopy(good)
        mutate(sd)
        cases.append((desc, sd, match))

    add("extra group", lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), "number of parameter groups")
    add("one group fewer", lambda sd: sd["param_groups"].pop(), "number of parameter groups")
    add("param dropped", lambda sd: sd["param_groups"][1]["params"].pop(), r"doesn't match the size.*param_groups\[1\]")
    add("param added", lambda sd: sd["param_groups"][0]["params"].append(99), r"param_groups\[0\] has 5 params saved")
    add("id listed twice", lambda sd: sd["param_groups"][1]["params"].__setitem__(0, 0), "lists parameter id 0 twice")
    add("state for an unknown id", lambda sd: sd["state"].update({99: {}}), "parameter 99, which no group lists")
    add("state not a dict", lambda sd: sd["state"].update({k: [1.0]}), rf"state\[{k}\] \({where}.*must be a dict")
    add("invalid hyperparameter", lambda sd: sd["param_groups"][1].update(lr=-1.0), r"param_groups\[1\].*-1\.0")
    add("lr not a number", lambda sd: sd["param_groups"][0].update(lr="fast"), r"param_groups\[0\].*lr")
    add("no 'state'", lambda sd: sd.pop("state"), "missing the key 'state'")
    add("no 'param_groups'", lambda sd: sd.pop("param_groups"), "missing the key 'param_groups'")
    add("group without params", lambda sd: sd["param_groups"][0].pop("params"), r"param_groups\[0\].*'params'")
    add("unknown state key", lambda sd: sd["state"][k].update(bogus=np.zeros(3)), rf"'bogus'.*{where}")
    if opt._tracks_step:
        add("step missing", lambda sd: sd["state"][k].pop("step"), rf"{where}.*missing \['step'\]")
        add("step negative", lambda sd: sd["state"][k].update(step=-2.0), rf"'step'.*non-negative.*{where}")
        add("step NaN", lambda sd: sd["state"][k].update(step=float("nan")), rf"'step'.*finite.*{where}")
        add("step a string", lambda sd: sd["state"][k].update(step="3"), rf"'step'.*number.*{where}")
    if tkey is not None:
        arr = good["state"][k][tkey]
        bad_shape = np.zeros((*arr.shape, 2), arr.dtype)
        if len(good["state"][k]) > 1:  # (an entry left empty means "never stepped", which is valid)
            add("tensor missing", lambda sd: sd["state"][k].pop(tkey), rf"{where}.*missing \['{tkey}'\]")
        add("wrong shape", lambda sd: sd["state"][k].update({tkey: bad_shape}), rf"'{tkey}'.*shape.*{where}")
        add("integer dtype", lambda sd: sd["state"][k].update({tkey: arr.astype(np.int64)}), rf"'{tkey}'.*float")
        add("a list", lambda sd: sd["state"][k].update({tkey: arr.tolist()}), rf"'{tkey}'.*NumPy array.*{where}")
        add("None", lambda sd: sd["state"][k].update({tkey: None}), rf"'{tkey}'.*NumPy array.*{where}")
        add("a string", lambda sd: sd["state"][k].update({tkey: "zeros"}), rf"'{tkey}'.*NumPy array")
        last = max(good["state"])
        if last != k and good["state"][last].get(tkey) is not None:
            # a bad entry late in the dict: the earlier entries must not have been applied either
            add("late bad entry", lambda sd: sd["state"][last].update({tkey: bad_shape}), rf"'{tkey}'.*shape")
    return cases


# One configuration per optimizer class, plus every float64 row: enough to reach every code path.
_SEEN: set[str] = set()
VALIDATION_ROWS = [c for c in OPTIM_DB if c.name not in _SEEN and not _SEEN.add(c.name)]
VALIDATION_ROWS += [c for c in OPTIM_DB if np.dtype(c.dtype) == np.float64 and c not in VALIDATION_ROWS]


@pytest.mark.parametrize("case", VALIDATION_ROWS, ids=lambda c: c.id)
def test_bad_state_dicts_raise_and_change_nothing(case: OptimCase) -> None:
    pair = stepped_pair(case)
    opt = pair.ours
    before = snapshot(opt)
    cases = broken_state_dicts(opt)
    assert len(cases) >= 12
    for desc, sd, match in cases:
        try:
            opt.load_state_dict(sd)
        except ValueError as e:
            assert re.search(match, str(e)), f"{desc}: message {str(e)!r} does not match {match!r}"
        else:
            pytest.fail(f"{desc}: load_state_dict raised no ValueError")
        assert_same_snapshot(before, snapshot(opt))
    # and the optimizer still works normally afterwards
    opt.load_state_dict(opt.state_dict())
    assert_same_snapshot(before, snapshot(opt))


def test_bad_argument_values() -> None:
    p = numopt.Parameter((2,), name="w")
    opt = numopt.SGD([p], lr=0.1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="match must be 'position' or 'name'"):
        opt.load_state_dict(sd, match="order")
    with pytest.raises(TypeError, match="strict must be True or False"):
        opt.load_state_dict(sd, match="name", strict=0)
    with pytest.raises(ValueError, match="strict=False needs match='name'"):
        opt.load_state_dict(sd, strict=False)
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        opt.load_state_dict([sd])


@pytest.mark.parametrize("case", VALIDATION_ROWS, ids=lambda c: c.id)
def test_state_is_cast_to_the_parameter_dtype(case: OptimCase) -> None:
    """A state saved in the other float dtype loads cast to the parameter's dtype, as in torch."""
    pair = stepped_pair(case)
    sd = pair.ours.state_dict()
    other = np.float64 if np.dtype(case.dtype) == np.float32 else np.float32
    cast = copy.deepcopy(sd)
    for entry in cast["state"].values():
        for name, v in entry.items():
            if isinstance(v, np.ndarray) and v.dtype.kind == "f":
                entry[name] = v.astype(other)
    fresh = make_pair(case)
    fresh.ours.load_state_dict(cast)
    expected = make_pair(case)
    expected.ours.load_state_dict(sd)
    for p, q in zip(fresh.params, expected.params):
        st, st_ref = fresh.ours.state.get(p, {}), expected.ours.state.get(q, {})
        assert st.keys() == st_ref.keys()
        for name, v in st.items():
            assert np.asarray(v).dtype == np.asarray(st_ref[name]).dtype
            if np.dtype(case.dtype) == np.float32:  # float32 -> float64 -> float32 is exact
                np.testing.assert_array_equal(v, st_ref[name])


def test_state_dtype_follows_the_parameter() -> None:
    p = numopt.Parameter(np.zeros(3, np.float64))
    opt = numopt.SGD([p], lr=0.1, momentum=0.9)
    sd = {
        "state": {0: {"momentum_buffer": np.full(3, 0.5, np.float32)}},
        "param_groups": opt.state_dict()["param_groups"],
    }
    opt.load_state_dict(sd)
    assert opt.state[p]["momentum_buffer"].dtype == np.float64
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], 0.5)


def test_zero_d_float64_state_is_exported_as_an_array() -> None:
    p = numopt.Parameter(np.zeros((), np.float64))
    opt = numopt.SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.ones((), np.float64)
    opt.step()
    buf = opt.state_dict()["state"][0]["momentum_buffer"]
    assert isinstance(buf, np.ndarray) and buf.shape == () and buf.dtype == np.float64
    opt.load_state_dict(opt.state_dict())


# -- loading by name ------------------------------------------------------------------


#: classes whose step adds up terms from every parameter in their order (Prodigy's float32 sums, as its
#: reference): with the groups swapped and the parameters reversed they round differently (~1e-6)
ORDER_SENSITIVE = {"Prodigy"}


def _named_pair(case: OptimCase):
    pair = stepped_pair(case)
    for i, p in enumerate(pair.params):
        p.name = f"layer{i}.weight"
    return pair


def _continue(opt: numopt.Optimizer, params: list[numopt.Parameter], grads_by_name: list[dict]) -> None:
    for grads in grads_by_name:
        for p in params:
            g = grads.get(p.name)
            p.grad = None if g is None else g.copy()
        opt.step()


@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda c: c.id)
def test_load_by_name_whatever_the_group_order(case: OptimCase) -> None:
    """Groups swapped and parameters reversed: match='name' resumes exactly where position would scramble."""
    pair = _named_pair(case)
    sd = pair.ours.state_dict()
    assert [g["param_names"] for g in sd["param_groups"]] == [
        [p.name for p in pair.params[:SPLIT]],
        [p.name for p in pair.params[SPLIT:]],
    ]
    fresh = [numopt.Parameter(p.data.copy(), name=p.name) for p in pair.params]
    groups = [{"params": fresh[SPLIT:][::-1], **case.group2}, {"params": fresh[:SPLIT][::-1]}]
    opt = getattr(numopt, case.name)(groups, **case.kwargs)
    result = opt.load_state_dict(sd, match="name")
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []
    for p, q in zip(pair.params, fresh):
        st, st2 = pair.ours.state.get(p, {}), opt.state.get(q, {})
        assert st.keys() == st2.keys(), p.name
        for name in st:
            np.testing.assert_array_equal(st[name], st2[name])
    # hyperparameters came with the parameters: group 0 here is saved group 1
    for key, value in sd["param_groups"][1].items():
        if key not in ("params", "param_names"):
            assert opt.param_groups[0][key] == value, key
    rng = np.random.default_rng(5)
    grads = [
        {p.name: g for p, g in zip(pair.params, random_grads(rng, t, np.dtype(case.dtype), case.shapes))}
        for t in range(6, 10)
    ]
    _continue(pair.ours, pair.params, grads)
    _continue(opt, fresh, grads)
    for p, q in zip(pair.params, fresh):
        if case.name in ORDER_SENSITIVE:
            np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6, err_msg=p.name)
        else:
            np.testing.assert_array_equal(p.data, q.data, err_msg=p.name)


def test_position_loading_warns_when_names_disagree() -> None:
    a, b = numopt.Parameter((2,), name="a"), numopt.Parameter((3,), name="b")
    opt = numopt.SGD([a, b], lr=0.1)
    sd = opt.state_dict()
    c, d = numopt.Parameter((2,), name="c"), numopt.Parameter((3,), name="b")
    with pytest.warns(UserWarning, match=r"parameter 0 is named 'c' here but 'a'.*match='name'"):
        numopt.SGD([c, d], lr=0.1).load_state_dict(sd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        numopt.SGD([numopt.Parameter((2,), name="a"), numopt.Parameter((3,), name="b")]).load_state_dict(sd)
        numopt.SGD([numopt.Parameter((2,)), numopt.Parameter((3,))]).load_state_dict(sd)


def _momentum_state(names_shapes, groups=None, **kw):
    params = {n: numopt.Parameter(np.full(s, 1.0, np.float32), name=n) for n, s in names_shapes}
    opt = numopt.SGD(groups(params) if groups else list(params.values()), lr=0.1, momentum=0.9, **kw)
    for i, p in enumerate(params.values()):
        p.grad = np.full(p.shape, i + 1.0, np.float32)
    opt.step()
    return opt, params


def test_strict_name_matching_reports_both_sides() -> None:
    opt, _ = _momentum_state([("a", (2,)), ("b", (3,)), ("c", (4,))])
    sd = opt.state_dict()
    new = [numopt.Parameter((2,), name="a"), numopt.Parameter((4,), name="c"), numopt.Parameter((5,), name="d")]
    target = numopt.SGD(new, lr=0.1, momentum=0.9)
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"missing \['d'\], unexpected \['b'\].*strict=False"):
        target.load_state_dict(sd, match="name")
    assert_same_snapshot(before, snapshot(target))


def test_non_strict_loads_the_matches_and_keeps_the_rest() -> None:
    opt, old = _momentum_state([("a", (2,)), ("b", (3,)), ("c", (4,))])
    sd = opt.state_dict()
    target, new = _momentum_state([("c", (4,)), ("d", (5,)), ("a", (2,))])
    d_buf = target.state[new["d"]]["momentum_buffer"].copy()
    result = target.load_state_dict(sd, match="name", strict=False)
    assert result.missing_keys == ["d"] and result.unexpected_keys == ["b"]
    np.testing.assert_array_equal(target.state[new["a"]]["momentum_buffer"], 1.0)  # a's state from sd
    np.testing.assert_array_equal(target.state[new["c"]]["momentum_buffer"], 3.0)
    np.testing.assert_array_equal(target.state[new["d"]]["momentum_buffer"], d_buf)  # d kept its own
    np.testing.assert_array_equal(d_buf, 2.0)
    new["d"].grad = np.zeros(5, np.float32)
    target.step()  # d's buffer is still initialized: it decays instead of restarting from the grad
    np.testing.assert_allclose(target.state[new["d"]]["momentum_buffer"], 1.8)


def test_unsaved_state_is_reset_by_name() -> None:
    """A parameter matched by name that had no saved state starts afresh."""
    src = [numopt.Parameter((2,), name="a"), numopt.Parameter((3,), name="b")]
    opt = numopt.SGD(src, lr=0.1, momentum=0.9)
    src[0].grad = np.ones(2, np.float32)
    opt.step()  # only 'a' has state
    target, new = _momentum_state([("b", (3,)), ("a", (2,))])
    target.load_state_dict(opt.state_dict(), match="name")
    assert new["b"] not in target.state or not target.state[new["b"]]
    np.testing.assert_array_equal(target.state[new["a"]]["momentum_buffer"], 1.0)


def test_name_errors() -> None:
    opt, _ = _momentum_state([("a", (2,)), ("b", (3,))])
    sd = opt.state_dict()
    unnamed = numopt.SGD([numopt.Parameter((2,)), numopt.Parameter((3,), name="b")], lr=0.1)
    with pytest.raises(ValueError, match=r"param_groups\[0\] parameter 0 has none"):
        unnamed.load_state_dict(sd, match="name")
    dup = numopt.SGD([numopt.Parameter((2,), name="a"), numopt.Parameter((3,), name="a")], lr=0.1)
    with pytest.raises(ValueError, match=r"'a' names param_groups\[0\] parameter 0 and param_groups\[0\] parameter 1"):
        dup.load_state_dict(sd, match="name")
    bad = copy.deepcopy(sd)
    bad["param_groups"][0]["param_names"] = ["a", "a"]
    with pytest.raises(ValueError, match="names two parameters 'a'"):
        opt.load_state_dict(bad, match="name")
    bad["param_groups"][0]["param_names"] = ["a"]
    with pytest.raises(ValueError, match=r"'param_names'.*2 strings"):
        opt.load_state_dict(bad, match="name")
    anonymous = numopt.SGD([numopt.Parameter((2,)), numopt.Parameter((3,))], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="records no 'param_names'.*match='position'"):
        opt.load_state_dict(anonymous, match="name")


def test_names_from_pairs_and_partial_names() -> None:
    a, b = numopt.Parameter((2,)), numopt.Parameter((3,), name="ignored")
    opt = numopt.SGD([("x", a), ("y", b)], lr=0.1, momentum=0.9)
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["x", "y"]
    c, d = numopt.Parameter((3,)), numopt.Parameter((2,))
    other = numopt.SGD([("y", c), ("x", d)], lr=0.1, momentum=0.9)
    a.grad = np.ones(2, np.float32)
    opt.step()
    other.load_state_dict(opt.state_dict(), match="name")
    np.testing.assert_array_equal(other.state[d]["momentum_buffer"], 1.0)
    assert other.param_groups[0]["param_names"] == ["y", "x"]  # its own names stay
    partly = numopt.SGD([numopt.Parameter((2,), name="a"), numopt.Parameter((3,))], lr=0.1)
    assert "param_names" not in partly.state_dict()["param_groups"][0]


def test_regrouping_with_conflicting_hyperparameters_is_refused() -> None:
    opt, params = _momentum_state(
        [("a", (2,)), ("b", (3,))], groups=lambda ps: [{"params": [ps["a"]]}, {"params": [ps["b"]], "lr": 0.5}]
    )
    sd = opt.state_dict()
    merged = numopt.SGD([numopt.Parameter((2,), name="a"), numopt.Parameter((3,), name="b")], lr=0.1, momentum=0.9)
    before = snapshot(merged)
    with pytest.raises(ValueError, match=r"param_groups\[0\] gets parameters from saved groups 0 and 1.*\(lr\)"):
        merged.load_state_dict(sd, match="name")
    assert_same_snapshot(before, snapshot(merged))
    sd["param_groups"][1]["lr"] = 0.1  # equal hyperparameters: merging is fine
    merged.load_state_dict(sd, match="name")
    np.testing.assert_array_equal(merged.state[merged.param_groups[0]["params"][1]]["momentum_buffer"], 2.0)


def test_new_group_keeps_its_hyperparameters() -> None:
    opt, _ = _momentum_state([("a", (2,))])
    sd = opt.state_dict()
    a, b = numopt.Parameter((2,), name="a"), numopt.Parameter((3,), name="b")
    target = numopt.SGD([{"params": [a]}, {"params": [b], "lr": 0.7}], lr=0.3, momentum=0.9)
    result = target.load_state_dict(sd, match="name", strict=False)
    assert result == (["b"], [])
    assert target.param_groups[0]["lr"] == 0.1 and target.param_groups[1]["lr"] == 0.7


def test_hyperparameter_edit_is_checked_at_step() -> None:
    """An invalid edit raises at the next step, before any group is updated."""
    a, b = numopt.Parameter(np.ones(2, np.float32)), numopt.Parameter(np.ones(3, np.float32))
    opt = numopt.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad, b.grad = np.ones(2, np.float32), np.ones(3, np.float32)
    opt.param_groups[1]["lr"] = float("nan")
    with pytest.raises(ValueError, match=r"param_groups\[1\]: Invalid learning rate: nan"):
        opt.step()
    np.testing.assert_array_equal(a.data, 1.0)
    opt.param_groups[1]["lr"] = np.float64(0.5)
    opt.step()
    np.testing.assert_allclose(b.data, 0.5)
