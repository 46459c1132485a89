"""numopt.Parameter and the flat buffers it is packed into."""

from __future__ import annotations

import numpy as np
import pytest

import numopt


def test_from_shape_is_float32_zeros() -> None:
    p = numopt.Parameter((2, 3))
    assert p.shape == (2, 3) and p.dtype == np.float32 and p.size == 6
    assert not p.data.any() and p.grad is None
    assert numopt.Parameter(4).shape == (4,)
    assert numopt.Parameter((2,), dtype=np.float64).dtype == np.float64


def test_wraps_array_without_copy_until_packed() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    p = numopt.Parameter(a, name="w")
    assert p.data is a and np.asarray(p) is a and p.name == "w"
    opt = numopt.SGD([p], lr=0.1)
    assert p.data is not a and p._flat is opt._flats[0][0]  # packed: one documented copy
    np.testing.assert_array_equal(p.data, a)
    assert np.shares_memory(np.asarray(p), p.data)


def test_float64_kept() -> None:
    assert numopt.Parameter(np.zeros(3)).dtype == np.float64


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros(3, np.int64), TypeError, "float32 or float64"),
        (np.zeros(3, np.float16), TypeError, "float32 or float64"),
        (np.zeros(3, np.complex64), TypeError, "float32 or float64"),
        (np.zeros((4, 4), np.float32)[:, ::2], ValueError, "C-contiguous"),
        ([1.0, 2.0], TypeError, "ndarray or a shape"),
        ("abc", TypeError, "ndarray or a shape"),
        ((2, -1), ValueError, "non-negative"),
    ],
)
def test_bad_data_is_refused(bad, error, match) -> None:
    with pytest.raises(error, match=match):
        numopt.Parameter(bad)


def test_read_only_is_refused() -> None:
    a = np.zeros(3, np.float32)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numopt.Parameter(a)


def test_dtype_argument_converts() -> None:
    p = numopt.Parameter(np.ones(3), dtype=np.float32)
    assert p.dtype == np.float32
    with pytest.raises(TypeError):
        numopt.Parameter(np.ones(3), dtype=np.int32)


def test_zero_d_and_empty_parameters_step() -> None:
    a, b = numopt.Parameter(np.array(2.0, np.float32)), numopt.Parameter((0, 3))
    opt = numopt.SGD([a, b], lr=0.5)
    a.grad, b.grad = np.array(1.0, np.float32), np.zeros((0, 3), np.float32)
    opt.step()
    assert float(a.data) == 1.5 and b.data.shape == (0, 3)


def test_grad_shape_and_dtype_checked_on_assignment() -> None:
    p = numopt.Parameter((2, 2))
    with pytest.raises(ValueError, match="shape"):
        p.grad = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="dtype"):
        p.grad = np.ones((2, 2), np.float64)
    opt = numopt.SGD([p])  # noqa: F841
    with pytest.raises(ValueError, match="shape"):
        p.grad = np.ones((2, 3), np.float32)


def test_views_into_one_buffer_per_dtype() -> None:
    ps = [numopt.Parameter((3,)), numopt.Parameter((2, 2)), numopt.Parameter((2,), dtype=np.float64)]
    opt = numopt.SGD(ps, lr=0.1, momentum=0.9)
    flats = opt._flats[0]
    assert [f.dtype for f in flats] == [np.float32, np.float64]
    assert flats[0].size == 7 and flats[1].size == 2
    for p in ps:
        assert np.shares_memory(p.data, p._flat.data)
        p.grad = np.ones(p.shape, p.dtype)
    opt.step()
    for p in ps:
        assert np.shares_memory(p.grad, p._flat.grad)
        assert np.shares_memory(opt.state[p]["momentum_buffer"], p._flat.state["momentum_buffer"])
    # writes through p.data reach the buffer and the next step
    ps[0].data[...] = 10.0
    opt.step()
    np.testing.assert_allclose(ps[0].data, 10.0 - 0.1 * (0.9 + 1.0))


def test_assigned_grad_is_copied_at_step_and_rebound() -> None:
    p = numopt.Parameter(np.zeros(3, np.float32))
    opt = numopt.SGD([p], lr=1.0)
    g = np.ones(3, np.float32)
    p.grad = g
    assert p.grad is g  # kept until the step
    g[0] = 5.0  # later edits before the step count, as in torch
    opt.step()
    np.testing.assert_array_equal(p.data, [-5.0, -1.0, -1.0])
    assert p.grad is not g and np.shares_memory(p.grad, p._flat.grad)
    p.grad[...] = 2.0  # in-place writes are seen without a copy
    opt.step()
    np.testing.assert_array_equal(p.data, [-7.0, -3.0, -3.0])


def test_data_assignment_after_packing_copies_into_buffer() -> None:
    p = numopt.Parameter(np.zeros(3, np.float32))
    opt = numopt.SGD([p])  # noqa: F841  (the binding lasts as long as the optimizer)
    view = p.data
    p.data = np.ones(3, np.float32)
    assert p.data is view and view.sum() == 3
    with pytest.raises(ValueError):
        p.data = np.ones(4, np.float32)
    with pytest.raises(TypeError):
        p.data = np.ones(3, np.float64)


def test_none_grad_skips_param() -> None:
    a, b = numopt.Parameter(np.ones(2, np.float32)), numopt.Parameter(np.ones(2, np.float32))
    opt = numopt.SGD([a, b], lr=1.0, momentum=0.5)
    a.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_array_equal(b.data, 1.0)
    assert b not in opt.state or "momentum_buffer" not in opt.state[b]
    np.testing.assert_array_equal(a.data, 0.0)


def test_sparse_grad_densified_for_sgd() -> None:
    p = numopt.Parameter(np.zeros((4, 2), np.float32))
    opt = numopt.SGD([p], lr=1.0)
    p.grad = numopt.SparseGrad([1, 3, 1], np.ones((3, 2), np.float32))
    opt.step()
    np.testing.assert_array_equal(p.data, [[0, 0], [-2, -2], [0, 0], [-1, -1]])
    with pytest.raises(ValueError, match="row shape"):
        p.grad = numopt.SparseGrad([0], np.ones((1, 3), np.float32))
    with pytest.raises(IndexError):
        p.grad = numopt.SparseGrad([4], np.ones((1, 2), np.float32))


def test_zero_grad_set_to_none_false_is_one_memset() -> None:
    ps = [numopt.Parameter((3,)), numopt.Parameter((2,))]
    opt = numopt.SGD(ps)
    ps[0].grad = np.ones(3, np.float32)
    opt.zero_grad(set_to_none=False)
    assert ps[1].grad is None  # None stays None, as in torch
    assert np.shares_memory(ps[0].grad, ps[0]._flat.grad) and not ps[0].grad.any()
    opt.zero_grad()
    assert ps[0].grad is None


# -- messages a newcomer meets (each names the fix) ---------------------------------------------------


def test_a_torch_tensor_is_refused_with_the_way_to_train_torch_models() -> None:
    import torch  # the reference is a test dependency: never skipped

    t = torch.zeros(3)
    with pytest.raises(TypeError, match=r"does not take a torch tensor.*interop\.torch\.bind.*detach\(\)\.numpy\(\)"):
        numopt.Parameter(t)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"optimizer params are torch tensors.*interop\.torch\.bind"):
        numopt.Adam(model.parameters())
    # the deliberate copy still works
    assert numopt.Parameter(t.detach().numpy().copy()).shape == (3,)


def test_a_float64_gradient_for_a_float32_parameter_names_both_fixes() -> None:
    p = numopt.Parameter(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"g\.astype\(np\.float32\).*Parameter\(arr\.astype\(np\.float64\)\)"):
        p.grad = np.zeros(3)


def test_loading_a_raw_torch_state_dict_points_to_the_converter() -> None:
    import torch

    w = torch.zeros(3, requires_grad=True)
    ref = torch.optim.Adam([w])
    w.grad = torch.ones(3)
    ref.step()
    opt = numopt.Adam([numopt.Parameter(np.zeros(3, np.float32))])
    with pytest.raises(ValueError, match=r"from_torch_state_dict"):
        opt.load_state_dict(ref.state_dict())
