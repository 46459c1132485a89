"""numopt.interop.torch.bind: a torch model trained zero-copy by a numopt optimizer, as torch.optim would."""

from __future__ import annotations

import copy
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

import numopt
from numopt.interop.torch import TorchBinding, bind


def _mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
    ).to(dtype)


def _batches(n: int, seed: int = 1, dtype: torch.dtype = torch.float32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(32, 6, generator=g, dtype=dtype), torch.randn(32, 2, generator=g, dtype=dtype)) for _ in range(n)
    ]


def _loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_allclose(pa.detach().numpy(), pb.detach().numpy(), rtol=rtol, atol=atol, err_msg=name)


def _is_bound(opt: numopt.Optimizer, model: torch.nn.Module) -> bool:
    """Every trainable tensor's data and grad live in the optimizer's flat buffers."""
    flats = [f for fl in opt._flats for f in fl]
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if not any(np.shares_memory(p.detach().numpy(), f.data) for f in flats):
            return False
        if p.grad is None or not any(np.shares_memory(p.grad.numpy(), f.grad) for f in flats):
            return False
    return True


def test_mlp_200_steps_with_bound_adamw_matches_torch_adamw() -> None:
    ours, ref = _mlp(), _mlp()
    opt = bind(ours, numopt.AdamW, lr=3e-3, weight_decay=0.05)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=3e-3, weight_decay=0.05)
    for batch in _batches(200):
        opt.zero_grad()
        _loss(ours, batch).backward()
        opt.step()
        ref_opt.zero_grad()
        _loss(ref, batch).backward()
        ref_opt.step()
    _assert_same_weights(ours, ref, rtol=1e-5, atol=1e-6)
    assert _is_bound(opt, ours) and opt.binding.copies == 0  # nothing was copied after bind
    np.testing.assert_allclose(  # and the optimizer state is torch's too
        opt.state[opt.binding.params[0]]["exp_avg_sq"], ref_opt.state[ref[0].weight]["exp_avg_sq"], rtol=1e-5, atol=1e-9
    )


def test_backward_writes_straight_into_the_flat_gradient_buffer() -> None:
    model = _mlp()
    opt = bind(model, numopt.SGD, lr=0.1)
    flat = opt._flats[0][0]
    assert flat.size == sum(p.numel() for p in model.parameters())
    assert _is_bound(opt, model)
    _loss(model, _batches(1)[0]).backward()
    offsets = flat.offsets
    for i, p in enumerate(model.parameters()):
        np.testing.assert_array_equal(flat.grad[offsets[i] : offsets[i + 1]], p.grad.numpy().reshape(-1))
    before = flat.data.copy()
    opt.step()
    # torch's SGD step, param.add_(grad, alpha=-lr): one fused multiply-add per element
    expected = torch.from_numpy(before).add(torch.from_numpy(flat.grad.copy()), alpha=-0.1).numpy()
    np.testing.assert_array_equal(flat.data, expected)
    np.testing.assert_array_equal(model[0].weight.detach().numpy().reshape(-1), flat.data[: model[0].weight.numel()])


def test_second_backward_accumulates_like_torch() -> None:
    ours, ref = _mlp(), _mlp()
    opt = bind(ours, numopt.SGD, lr=0.05, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    batches = _batches(20)
    for a, b in zip(batches[::2], batches[1::2]):
        opt.zero_grad()
        _loss(ours, a).backward()
        _loss(ours, b).backward()  # accumulates into the bound buffer
        opt.step()
        ref_opt.zero_grad()
        _loss(ref, a).backward()
        _loss(ref, b).backward()
        ref_opt.step()
    _assert_same_weights(ours, ref)
    assert opt.binding.copies == 0


def test_model_zero_grad_set_to_none_and_replaced_grads_are_copied_in_and_rebound() -> None:
    ours, ref = _mlp(), _mlp()
    opt = bind(ours, numopt.Adam, lr=1e-2)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for t, batch in enumerate(_batches(12)):
        if t % 3 == 0:
            ours.zero_grad()  # torch's: .grad = None; the next backward allocates new tensors
        elif t % 3 == 1:
            opt.zero_grad()
        else:
            ours.zero_grad(set_to_none=False)  # torch zeroes the bound views in place
        _loss(ours, batch).backward()
        opt.step()
        assert _is_bound(opt, ours)  # step() rebound what torch replaced
        ref_opt.zero_grad()
        _loss(ref, batch).backward()
        ref_opt.step()
    _assert_same_weights(ours, ref)
    assert opt.binding.copies == 4 * len(list(ours.parameters()))  # one copy per tensor after model.zero_grad()


def test_none_grad_skips_the_parameter_as_in_torch() -> None:
    ours, ref = _mlp(), _mlp()
    bias0 = ours[4].bias.detach().clone()
    opt = bind(ours, numopt.Adam, lr=1e-2)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for model, o in ((ours, opt), (ref, ref_opt)):
        for batch in _batches(3):
            model.zero_grad()
            _loss(model, batch).backward()
            model[4].bias.grad = None  # no gradient for the last bias at this step
            o.step()
    _assert_same_weights(ours, ref)
    assert torch.equal(ours[4].bias, bias0) and "exp_avg" not in opt.state[opt.binding.params[-1]]


def test_bind_survives_train_eval_and_model_state_dict_save_load() -> None:
    ours, ref = _mlp(), _mlp()
    opt = bind(ours, numopt.AdamW, lr=1e-2)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    batches = _batches(16)

    def train(model, o, part):
        model.train()
        for batch in part:
            o.zero_grad()
            _loss(model, batch).backward()
            o.step()
        model.eval()
        with torch.no_grad():
            return float(_loss(model, batches[0]))

    assert train(ours, opt, batches[:5]) == pytest.approx(train(ref, ref_opt, batches[:5]), rel=1e-5)
    buf = io.BytesIO()
    torch.save(ours.state_dict(), buf)  # the model's tensors share numopt's memory: saved as they are
    saved_ref = copy.deepcopy(ref.state_dict())
    train(ours, opt, batches[5:10])  # go on, then roll the model back to the checkpoint
    train(ref, ref_opt, batches[5:10])
    buf.seek(0)
    ours.load_state_dict(torch.load(buf))  # copies in place: the binding holds
    ref.load_state_dict(saved_ref)
    assert _is_bound(opt, ours) and opt.binding.copies == 0
    np.testing.assert_array_equal(opt.binding.params[0].data, ours[0].weight.detach().numpy())
    train(ours, opt, batches[10:])
    train(ref, ref_opt, batches[10:])
    _assert_same_weights(ours, ref)


def test_replaced_data_is_copied_in_and_rebound() -> None:
    model = _mlp()
    opt = bind(model, numopt.SGD, lr=0.0)
    with torch.no_grad():
        model[0].weight.data = torch.full_like(model[0].weight, 0.5)  # a tensor of its own
    _loss(model, _batches(1)[0]).backward()
    opt.step()
    assert _is_bound(opt, model)
    np.testing.assert_array_equal(opt.binding.params[0].data, 0.5)
    with torch.no_grad():
        model[0].weight.data = torch.zeros(3, 3)
    with pytest.raises(RuntimeError, match=r"parameter '0.weight' was replaced by a tensor of shape \(3, 3\)"):
        opt.step()


def test_frozen_parameters_are_skipped_and_names_reach_the_state_dict() -> None:
    model = _mlp()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    opt = bind(model, numopt.Adam, lr=0.1)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert opt.binding.names == names and "0.weight" not in names
    assert [p.name for p in opt.binding.params] == names
    for batch in _batches(3):
        opt.zero_grad()
        _loss(model, batch).backward()
        opt.step()
    assert torch.equal(model[0].weight, frozen) and model[0].weight.grad is None
    sd = opt.state_dict()
    assert sd["param_groups"][0]["param_names"] == names
    ref_opt = torch.optim.Adam([(n, p) for n, p in model.named_parameters() if p.requires_grad], lr=0.1)
    assert ref_opt.state_dict()["param_groups"][0]["param_names"] == names  # torch records the same names


def test_param_groups_tensor_lists_and_float64() -> None:
    model = _mlp(dtype=torch.float64)
    ref = _mlp(dtype=torch.float64)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = bind([{"params": weights}, {"params": biases, "weight_decay": 0.0}], numopt.AdamW, lr=1e-2, weight_decay=0.1)
    rw = [p for n, p in ref.named_parameters() if n.endswith("weight")]
    rb = [p for n, p in ref.named_parameters() if n.endswith("bias")]
    ref_opt = torch.optim.AdamW([{"params": rw}, {"params": rb, "weight_decay": 0.0}], lr=1e-2, weight_decay=0.1)
    for batch in _batches(10, dtype=torch.float64):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            _loss(m, batch).backward()
            o.step()
    assert opt.binding.names == [None] * 6 and len(opt.param_groups) == 2
    _assert_same_weights(model, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")
def test_lbfgs_with_a_closure_that_calls_model_zero_grad() -> None:
    torch.manual_seed(3)
    x = torch.randn(64, 4, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=torch.float64) + 0.1
    results = []
    for use_numopt in (True, False):
        torch.manual_seed(4)
        model = torch.nn.Linear(4, 1).double()
        opt = bind(model, numopt.LBFGS, lr=1) if use_numopt else torch.optim.LBFGS(model.parameters(), lr=1)

        def closure(model=model):
            model.zero_grad()  # torch's, set_to_none: the bound optimizer copies the new gradients in
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        for _ in range(5):
            opt.step(closure)
        results.append([p.detach().numpy().copy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(results[0][0], [[1.0, -2.0, 0.5, 3.0]], atol=1e-4)  # converged


def test_bound_optimizer_works_with_a_scheduler_and_clipping() -> None:
    ours, ref = _mlp(), _mlp()
    opt = bind(ours, numopt.AdamW, lr=1e-2)
    sched = numopt.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=20)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=1e-2, total_steps=20)
    for batch in _batches(20):
        opt.zero_grad()
        _loss(ours, batch).backward()
        numopt.utils.clip_grad_norm_(opt.binding.params, 0.5)  # on numopt's flat gradients = the model's .grad
        opt.step()
        sched.step()
        ref_opt.zero_grad()
        _loss(ref, batch).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        ref_opt.step()
        ref_sched.step()
    _assert_same_weights(ours, ref)


def _train(model: torch.nn.Module, opt, batches) -> None:
    for batch in batches:
        opt.zero_grad()
        _loss(model, batch).backward()
        opt.step()


def _holds_numpy(value) -> bool:
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, dict):
        return any(_holds_numpy(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_numpy(v) for v in value)
    return False


def test_bound_state_dict_round_trips_through_torch_save_and_weights_only_load() -> None:
    kw = dict(lr=1e-2, weight_decay=0.05, amsgrad=True)
    batches = _batches(12)
    model = _mlp()
    opt = bind(model, numopt.AdamW, **kw)
    _train(model, opt, batches[:6])
    sd = opt.state_dict()
    assert not _holds_numpy(sd)  # torch's form: tensors, as to_torch_state_dict makes them
    assert isinstance(sd["state"][0]["exp_avg"], torch.Tensor)
    assert isinstance(sd["state"][0]["step"], torch.Tensor) and sd["state"][0]["step"].dim() == 0
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": sd}, buf)
    _train(model, opt, batches[6:])  # the uninterrupted run

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed = _mlp(seed=5)
    resumed.load_state_dict(ckpt["model"])
    opt2 = bind(resumed, numopt.AdamW, **kw)
    opt2.load_state_dict(ckpt["optimizer"])
    _train(resumed, opt2, batches[6:])
    for (name, a), (_, b) in zip(model.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name
    assert _is_bound(opt2, resumed)
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        np.testing.assert_array_equal(opt2.state[opt2.binding.params[2]][key], opt.state[opt.binding.params[2]][key])


def test_torch_adamw_state_dict_loads_into_the_bound_optimizer() -> None:
    batches = _batches(12)
    ref = _mlp()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.05)
    _train(ref, ref_opt, batches[:6])
    buf = io.BytesIO()
    torch.save({"model": ref.state_dict(), "optimizer": ref_opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    ours = _mlp(seed=5)
    ours.load_state_dict(ckpt["model"])
    opt = bind(ours, numopt.AdamW, lr=0.5)  # the hyperparameters come from the checkpoint, as in torch
    opt.load_state_dict(ckpt["optimizer"])
    assert opt.param_groups[0]["lr"] == 1e-2 and opt.state[opt.binding.params[0]]["step"] == 6.0
    _train(ours, opt, batches[6:])
    _train(ref, ref_opt, batches[6:])
    _assert_same_weights(ours, ref, rtol=1e-5, atol=1e-6)
    ref_sd = ref_opt.state_dict()  # and the state it writes is torch's again, close to torch's own
    sd = opt.state_dict()
    for i, entry in ref_sd["state"].items():
        assert torch.equal(sd["state"][i]["step"], entry["step"])
        torch.testing.assert_close(sd["state"][i]["exp_avg_sq"], entry["exp_avg_sq"], rtol=1e-5, atol=1e-9)


def test_numopt_form_state_dicts_still_load_into_the_bound_optimizer(tmp_path) -> None:
    kw = dict(lr=1e-2, weight_decay=0.05)
    batches = _batches(12)
    model = _mlp()
    params = [numopt.Parameter(p.detach().numpy().copy()) for p in model.parameters()]
    plain = numopt.AdamW(params, **kw)  # numopt on its own: NumPy state dicts, numopt.save files

    def train_plain(part):
        for batch in part:
            for p, t in zip(params, model.parameters()):
                t.data = torch.from_numpy(p.data.copy()).requires_grad_()
                t.grad = None
            _loss(model, batch).backward()
            for p, t in zip(params, model.parameters()):
                p.grad = t.grad.numpy().copy()
            plain.step()

    train_plain(batches[:6])
    numopt.save(plain.state_dict(), tmp_path / "opt.ckpt")
    resumed = _mlp(seed=5)
    with torch.no_grad():
        for t, p in zip(resumed.parameters(), params):
            t.copy_(torch.from_numpy(p.data))
    train_plain(batches[6:])

    opt = bind(resumed, numopt.AdamW, **kw)
    opt.load_state_dict(numopt.load(tmp_path / "opt.ckpt"))  # NumPy arrays and floats
    _train(resumed, opt, batches[6:])
    for p, t in zip(params, resumed.parameters()):
        np.testing.assert_allclose(t.detach().numpy(), p.data, rtol=1e-6, atol=1e-7)
    sd = opt.state_dict()  # and its own checkpoints are torch's, loadable the numopt way too
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    opt.load_state_dict(numopt.interop.torch.from_torch_state_dict(loaded))
    np.testing.assert_array_equal(opt.state[opt.binding.params[0]]["exp_avg"], sd["state"][0]["exp_avg"].numpy())


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: [torch.zeros(3, dtype=torch.float16, requires_grad=True)], TypeError, "dtype torch.float16"),
        (lambda: [torch.zeros(3, 4).t().requires_grad_()], ValueError, "not contiguous"),
        (lambda: [torch.zeros(3, device="meta", requires_grad=True)], ValueError, "is on meta"),
        (lambda: [torch.zeros(3, requires_grad=True) * 2], ValueError, "not a leaf tensor"),
        (lambda: [np.zeros(3, np.float32)], TypeError, "not a torch.Tensor"),
        (lambda: torch.zeros(3, requires_grad=True), TypeError, "not a single tensor"),
        (lambda: [torch.zeros(3)], ValueError, "no parameter requires grad"),
        (lambda: [("w", torch.zeros(3, requires_grad=True)), torch.zeros(2, requires_grad=True)], ValueError, "name"),
        (lambda: [torch.zeros(3, 3, requires_grad=True).to_sparse()], ValueError, "layout"),
    ],
)
def test_bind_refuses_what_it_cannot_share(make, exc, match) -> None:
    with pytest.raises(exc, match=match):
        bind(make(), numopt.SGD, lr=0.1)


def test_bind_refuses_non_numopt_and_sparse_optimizers() -> None:
    model = _mlp()
    with pytest.raises(TypeError, match="numopt optimizer class"):
        bind(model, torch.optim.SGD, lr=0.1)
    with pytest.raises(TypeError, match="SparseGrad"):
        bind(model, numopt.SparseAdam, lr=0.1)
    t = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="listed twice"):
        bind([t, t], numopt.SGD, lr=0.1)
    assert isinstance(bind(model, numopt.SGD, lr=0.1).binding, TorchBinding)


def test_import_numopt_and_its_interop_module_never_import_torch() -> None:
    code = "import sys, numopt, numopt.interop.torch, numopt.functional; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
