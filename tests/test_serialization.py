"""numopt.save / numopt.load: round trips, atomic writes, and corrupt or foreign files."""

from __future__ import annotations

import json
import math
import os
import struct
from collections import OrderedDict

import numpy as np
import pytest

import numopt
from numopt import serialization

from .optim_db import OPTIM_DB, OptimCase
from .reference import make_pair, random_grads


def assert_same(a, b, where="obj") -> None:
    """Equal values, types, dtypes and shapes, recursively (NaN equals NaN)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, (where, a.dtype, b.dtype, a.shape, b.shape)
        np.testing.assert_array_equal(a, b, err_msg=where)
        assert b.flags.writeable and b.flags.c_contiguous, where
        return
    if isinstance(a, dict):
        assert type(b) is dict and list(a) == list(b), where
        for k in a:
            assert type(k) is type(next(kk for kk in b if kk == k)), (where, k)
            assert_same(a[k], b[k], f"{where}[{k!r}]")
        return
    if isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
        return
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), where  # bit-exact, -0.0 included
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and (a == b or (a != a and b != b)), where
    else:
        assert a == b, where


NESTED = {
    "model": {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(4, np.float64)},
    0: [1, -2, 2**70, 0.1, -0.0, 1e-310, float("inf"), float("-inf"), float("nan"), 3 + 4j, None, True, False],
    1: ("tuple", ("nested", ()), [], {}),
    "strings": ["", "naïve ✓", "\x00nul", "\ud800"[:0] + "quote\"'", "line\nbreak"],
    "bytes": b"\x00\xffraw",
    "scalars": [np.float32(1.5), np.float64(-2.25), np.int64(-7), np.bool_(True), np.complex64(1 - 2j)],
    "dtypes": [
        np.array([True, False]),
        np.arange(5, dtype=np.int8),
        np.arange(5, dtype=np.uint64),
        np.array([1 + 2j, 3 - 4j], np.complex128),
        np.array(["ab", "c"]),
        np.array([b"xy", b"z"]),
        np.arange(6, dtype=">f4").reshape(2, 3),
        np.array(3.5, np.float32),
        np.zeros((0, 3), np.float32),
        np.zeros((2, 0, 4), np.float64),
    ],
    "layout": {"fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "strided": np.arange(20.0)[::3]},
    "empty": {},
}


def test_round_trip_nested(tmp_path) -> None:
    path = tmp_path / "nested.npt"
    numopt.save(NESTED, path)
    assert_same(NESTED, numopt.load(path))
    assert_same(NESTED, numopt.load(str(path)))
    assert os.listdir(tmp_path) == ["nested.npt"]  # no temporary file left behind


@pytest.mark.parametrize("obj", [None, 3, 2.5, "s", [], (), {}, np.ones(3), np.float32(2), [[[[[]]]]]])
def test_round_trip_top_level(tmp_path, obj) -> None:
    numopt.save(obj, tmp_path / "x")
    assert_same(obj, numopt.load(tmp_path / "x"))


def test_dict_subclasses_and_named_tuples_load_as_builtins(tmp_path) -> None:
    from typing import NamedTuple

    class Pair(NamedTuple):
        a: int
        b: float

    obj = {"od": OrderedDict([("z", 1), ("a", 2)]), "nt": Pair(1, 2.0), "npkey": {np.int64(4): "four"}}
    numopt.save(obj, tmp_path / "x")
    out = numopt.load(tmp_path / "x")
    assert out == {"od": {"z": 1, "a": 2}, "nt": (1, 2.0), "npkey": {4: "four"}}
    assert type(out["od"]) is dict and list(out["od"]) == ["z", "a"] and type(out["nt"]) is tuple


def test_large_array_and_alignment(tmp_path) -> None:
    rng = np.random.default_rng(0)
    big = rng.standard_normal(3_000_000).astype(np.float32)  # larger than one I/O chunk
    obj = {"a": np.ones(3, np.int8), "big": big, "c": np.arange(7.0)}
    numopt.save(obj, tmp_path / "x")
    assert_same(obj, numopt.load(tmp_path / "x"))
    meta = _structure(tmp_path / "x")
    assert all(d["offset"] % 64 == 0 for d in meta["arrays"])


@pytest.mark.parametrize("case", OPTIM_DB, ids=lambda c: c.id)
def test_round_trip_optimizer_state_dict(tmp_path, case: OptimCase) -> None:
    """A state dict saved and loaded resumes exactly like the original (every OPTIM_DB row)."""
    pair = make_pair(case)
    rng = np.random.default_rng(4)
    for t in range(5):
        pair.set_grads(random_grads(rng, t, pair.dtype, pair.shapes))
        pair.step()
    sd = pair.ours.state_dict()
    numopt.save({"optimizer": sd, "params": [p.data for p in pair.params]}, tmp_path / "ckpt")
    loaded = numopt.load(tmp_path / "ckpt")
    assert_same(sd, loaded["optimizer"])
    fresh = make_pair(case)
    for p, v in zip(fresh.params, loaded["params"]):
        p.data = v
    fresh.ours.load_state_dict(loaded["optimizer"])
    for t in range(5, 8):
        grads = random_grads(rng, t, pair.dtype, pair.shapes)
        for opt, params in ((pair.ours, pair.params), (fresh.ours, fresh.params)):
            for p, g in zip(params, grads):
                p.grad = None if g is None else g.copy()
            opt.step()
    for a, b in zip(pair.params, fresh.params):
        np.testing.assert_array_equal(a.data, b.data)


# -- what cannot be saved -----------------------------------------------------------


class _Thing:
    pass


@pytest.mark.parametrize(
    ("obj", "error", "match"),
    [
        ({"x": _Thing()}, TypeError, r"obj\['x'\]: cannot save an object of type _Thing"),
        ({1.5: 1}, TypeError, "dict keys must be str or int"),
        ({True: 1}, TypeError, "dict keys must be str or int"),
        ({(1, 2): 1}, TypeError, "dict keys must be str or int"),
        ([np.array([object()])], TypeError, r"obj\[0\]: cannot save an array of dtype object"),
        (np.zeros(2, [("a", "f4")]), TypeError, "structured"),
        (np.datetime64("2020-01-01"), TypeError, "dtype datetime64"),
        ({1, 2}, TypeError, "type set"),
        (lambda: 0, TypeError, "type function"),
    ],
)
def test_unsupported_objects_raise_before_any_file_is_written(tmp_path, obj, error, match) -> None:
    with pytest.raises(error, match=match):
        numopt.save(obj, tmp_path / "x")
    assert os.listdir(tmp_path) == []


def test_self_containing_structure(tmp_path) -> None:
    a: list = [1]
    a.append(a)
    with pytest.raises(ValueError, match="contains itself"):
        numopt.save(a, tmp_path / "x")
    shared = [1, 2]
    numopt.save([shared, shared], tmp_path / "y")  # the same object twice is fine
    assert numopt.load(tmp_path / "y") == [[1, 2], [1, 2]]


# -- atomic writes ------------------------------------------------------------------


def test_replaces_atomically_and_follows_symlinks(tmp_path) -> None:
    numopt.save({"v": 1}, tmp_path / "ckpt")
    numopt.save({"v": 2}, tmp_path / "ckpt")
    assert numopt.load(tmp_path / "ckpt") == {"v": 2}
    os.symlink(tmp_path / "ckpt", tmp_path / "latest")
    numopt.save({"v": 3}, tmp_path / "latest")
    assert os.path.islink(tmp_path / "latest")
    assert numopt.load(tmp_path / "ckpt") == {"v": 3}
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "latest"]


def test_file_mode_follows_umask(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        numopt.save(1, tmp_path / "x")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "x").st_mode & 0o777) == 0o640


@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch, fail_in) -> None:
    """An error at any point of a save leaves the previous checkpoint intact and cleans up."""
    path = tmp_path / "ckpt"
    numopt.save({"epoch": 1, "w": np.ones(10)}, path)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    if fail_in == "write":
        monkeypatch.setattr(serialization, "_byte_view", boom)
    else:
        monkeypatch.setattr(serialization.os, fail_in, boom)
    with pytest.raises(OSError, match="No space left"):
        numopt.save({"epoch": 2, "w": np.zeros(10)}, path)
    monkeypatch.undo()
    assert_same({"epoch": 1, "w": np.ones(10)}, numopt.load(path))
    assert os.listdir(tmp_path) == ["ckpt"]


def test_missing_file_and_directory(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        numopt.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        numopt.save(1, tmp_path / "no_dir" / "x")


# -- damaged and foreign files ------------------------------------------------------


def _sample_bytes(tmp_path) -> bytes:
    obj = {"state": {0: {"step": 3.0, "exp_avg": np.linspace(-1, 1, 40, dtype=np.float32)}}, "names": ["a", "b"]}
    numopt.save(obj, tmp_path / "good")
    return (tmp_path / "good").read_bytes()


def _structure(path) -> dict:
    raw = open(path, "rb").read()
    n = struct.unpack_from("<Q", raw, 16)[0]
    return json.loads(raw[40 : 40 + n])


def _load_bytes(tmp_path, raw: bytes) -> None:
    path = tmp_path / "bad.npt"
    path.write_bytes(raw)
    numopt.load(path)


def test_truncation_at_every_offset_raises(tmp_path) -> None:
    raw = _sample_bytes(tmp_path)
    for n in range(len(raw)):
        with pytest.raises(numopt.CheckpointError, match=r"bad\.npt: (truncated|empty file)") as info:
            _load_bytes(tmp_path, raw[:n])
        assert info.value.path.endswith("bad.npt")
    with pytest.raises(numopt.CheckpointError, match="unexpected bytes after the end"):
        _load_bytes(tmp_path, raw + b"\x00")


def test_every_single_bit_flip_raises(tmp_path) -> None:
    raw = _sample_bytes(tmp_path)
    reasons = set()
    for bit in range(len(raw) * 8):
        bad = bytearray(raw)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(numopt.CheckpointError, match=r"bad\.npt: ") as info:
            _load_bytes(tmp_path, bytes(bad))
        reasons.add(info.value.reason.split(" (")[0].split(":")[0])
    assert reasons == {"corrupted"}, reasons


def test_random_multi_byte_damage_raises(tmp_path) -> None:
    raw = _sample_bytes(tmp_path)
    rng = np.random.default_rng(7)
    for _ in range(300):
        bad = bytearray(raw)
        for pos in rng.integers(0, len(raw), rng.integers(1, 8)):
            bad[pos] = int(rng.integers(0, 256))
        if bytes(bad) == raw:
            continue
        with pytest.raises(numopt.CheckpointError):
            _load_bytes(tmp_path, bytes(bad))


def test_damage_in_a_large_array_is_caught(tmp_path) -> None:
    numopt.save({"big": np.ones(2_500_000, np.float32)}, tmp_path / "x")
    raw = bytearray((tmp_path / "x").read_bytes())
    raw[len(raw) // 2] ^= 0x10
    with pytest.raises(numopt.CheckpointError, match="data checksum does not match"):
        _load_bytes(tmp_path, bytes(raw))


def test_foreign_files_raise(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.ones(3))
    np.savez(tmp_path / "b.npz", a=np.ones(3))
    import pickle

    (tmp_path / "c.pkl").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "d.txt").write_text("epoch: 3\nlr: 0.1\n")
    (tmp_path / "e.json").write_text('{"state": {}}')
    (tmp_path / "f").write_bytes(b"")
    (tmp_path / "g").write_bytes(bytes(range(256)))
    import torch

    torch.save({"a": torch.ones(2)}, tmp_path / "h.pt")
    expected = {
        "a.npy": "NumPy .npy",
        "b.npz": "zip archive",
        "c.pkl": "pickle",
        "d.txt": "text file",
        "e.json": "JSON or text",
        "f": "empty file",
        "g": "not a numopt checkpoint",
        "h.pt": "zip archive",
    }
    for name, what in expected.items():
        with pytest.raises(numopt.CheckpointError, match=what) as info:
            numopt.load(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name) + ": ")
    with pytest.raises(IsADirectoryError):
        numopt.load(tmp_path)


def test_newer_format_version_is_refused(tmp_path) -> None:
    raw = bytearray(_sample_bytes(tmp_path))
    struct.pack_into("<I", raw, 12, 99)
    struct.pack_into("<I", raw, 36, __import__("zlib").crc32(bytes(raw[:36])))
    with pytest.raises(numopt.CheckpointError, match="unsupported format version 99"):
        _load_bytes(tmp_path, bytes(raw))


def test_checkpoint_error_is_a_value_error() -> None:
    err = numopt.CheckpointError("/x/y", "truncated: 3 bytes")
    assert isinstance(err, ValueError) and str(err) == "/x/y: truncated: 3 bytes" and err.reason.startswith("trunc")


def test_load_executes_nothing(tmp_path) -> None:
    """The structure is JSON: a crafted file can only describe data, never objects to build."""
    raw = _sample_bytes(tmp_path)
    meta = _structure(tmp_path / "good")
    assert set(meta) == {"format", "writer", "arrays", "root"}
    assert all(set(d) == {"dtype", "shape", "offset", "nbytes"} for d in meta["arrays"])
    assert b"pickle" not in raw and b"__reduce__" not in raw
