"""``numopt.save`` / ``numopt.load``: checkpoints that load without running code and never half-exist.

File format (version 1), all integers little-endian::

    offset  size  field
    0       12    magic  b"\\x89NUMOPT\\r\\n\\x1a\\n\\0"
    12      4     format version (uint32)
    16      8     length J of the structure section (uint64)
    24      8     length D of the data section (uint64)
    32      4     CRC-32 of the structure section
    36      4     CRC-32 of bytes 0..35 (the header itself)
    40      J     structure: UTF-8 JSON (see below)
    ...           zero padding up to a multiple of 64
    S       D     data: raw array bytes, each array starting on a multiple of 64
    S+D     32    BLAKE2b-256 digest of every byte before it

The structure section is ``{"format": 1, "writer": ..., "arrays": [...], "root": ...}``.
``arrays`` lists ``{"dtype", "shape", "offset", "nbytes"}`` descriptors (offsets
relative to the data section). ``root`` encodes the saved object: JSON strings,
finite floats, integers, booleans, ``null`` and lists stand for themselves; every
other value is a one-key object: ``{"d": [[key, value], ...]}`` a dict,
``{"t": [...]}`` a tuple, ``{"a": i}`` an array, ``{"s": i}`` a NumPy scalar
(stored as a 0-d array), ``{"f": "nan" | "inf" | "-inf"}`` a non-finite float,
``{"c": [re, im]}`` a complex number, ``{"b": i}`` a bytes object and ``{"h": i}``
a bfloat16 array (``ml_dtypes.bfloat16``, stored as its ``uint16`` bits; loading it
needs ``ml_dtypes``).

Loading reads JSON and raw bytes only: no unpickling, no imports, no code.
The magic, the header CRC, the file size, the structure CRC and the final
digest are each checked, so a truncated, bit-flipped or foreign file raises
:class:`CheckpointError` naming the file and what is wrong with it. Arrays are
read straight into their final buffers while the digest is computed, so loading
a 1 GB state needs 1 GB of memory, not 2.

Saving writes a temporary file next to the target (``.<name>.<random>.tmp``),
flushes and ``fsync``s it, renames it over the target with ``os.replace`` and
``fsync``s the directory: at every instant the target is either the previous
complete file or the new complete file. A process killed mid-save can leave its
temporary file behind (nothing else is touched); such files are safe to delete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import struct
import sys
import zlib
from typing import Any

import numpy as np

from ._bf16 import bfloat16, is_bfloat16

__all__ = ["CheckpointError", "FORMAT_VERSION", "load", "save"]

#: 12 bytes: a non-ASCII first byte, the name, then CR LF, Ctrl-Z and LF to expose text-mode transfers (as PNG does)
MAGIC = b"\x89NUMOPT\r\n\x1a\n\x00"
#: the newest file format this module writes and reads
FORMAT_VERSION = 1
_HEADER = struct.Struct("<12sIQQII")  # magic, version, json length, data length, json crc, header crc
_DIGEST_SIZE = 32
_ALIGN = 64
_CHUNK = 1 << 23  # bytes per read/write/hash call: bounds the work done with the GIL held
_ARRAY_KINDS = "biufcSU"  # bool, ints, floats, complex, fixed-width bytes and unicode

# How foreign files start, to say what a file is when it is not a checkpoint.
_FOREIGN = (
    (b"\x93NUMPY", "a NumPy .npy file (read it with np.load)"),
    (b"PK\x03\x04", "a zip archive (an .npz file or a torch.save file?)"),
    (b"\x80", "a pickle (torch.save's legacy format?); numopt never unpickles files"),
    (b"\x89HDF\r\n", "an HDF5 file"),
    (b"{", "a JSON or text file"),
)


class CheckpointError(ValueError):
    """A file is not a complete, intact numopt checkpoint.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        What is wrong with it (truncated, corrupted, foreign, too new, ...).
    """

    def __init__(self, path: Any, reason: str) -> None:
        self.path = os.fspath(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


# -- encoding ---------------------------------------------------------------------


class _Encoder:
    """Turn a nest of containers into JSON-able data plus the list of arrays it refers to."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self._active: set[int] = set()

    def _array(self, a: np.ndarray, where: str) -> int:
        dt = a.dtype
        if dt.kind not in _ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise TypeError(
                f"{where}: cannot save an array of dtype {dt} (numeric, bool, bytes and str arrays only; "
                "object and structured arrays would need pickle)"
            )
        self.arrays.append(a)
        return len(self.arrays) - 1

    def encode(self, obj: Any, where: str = "obj") -> Any:
        # Order matters: np.float64 is a float subclass and bool an int subclass.
        if obj is None or isinstance(obj, str):
            return obj
        if isinstance(obj, np.ndarray) and is_bfloat16(obj.dtype):  # ml_dtypes.bfloat16: its bits, as uint16
            return {"h": self._array(obj.view(np.uint16), where)}
        if isinstance(obj, np.ndarray):
            return {"a": self._array(obj, where)}
        if isinstance(obj, np.generic):
            return {"s": self._array(np.asarray(obj), where)}
        if isinstance(obj, bool):
            return bool(obj)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            x = float(obj)
            if math.isfinite(x):
                return x
            return {"f": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}
        if isinstance(obj, complex):
            return {"c": [self.encode(obj.real, where), self.encode(obj.imag, where)]}
        if isinstance(obj, (bytes, bytearray)):
            return {"b": self._array(np.frombuffer(bytes(obj), np.uint8), where)}
        if type(obj).__name__ in ("BFloat16State", "Int8State") and hasattr(obj, "dequantize"):
            # compact optimizer state (numopt.lowbit): its arrays, bit for bit
            if obj.state_dtype == "bfloat16":
                return {"q": ["bfloat16", self._array(obj.bits, where)]}
            return {"q": ["int8", self._array(obj.codes, where), self._array(obj.absmax, where), bool(obj.signed)]}
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self._active:
                raise ValueError(f"{where}: cannot save a structure that contains itself")
            self._active.add(id(obj))
            try:
                if isinstance(obj, dict):
                    items = []
                    for k, v in obj.items():
                        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (str, int, np.integer)):
                            raise TypeError(f"{where}: dict keys must be str or int, got {type(k).__name__} {k!r}")
                        key = k if isinstance(k, str) else int(k)
                        items.append([key, self.encode(v, f"{where}[{k!r}]")])
                    return {"d": items}
                out = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
                return out if isinstance(obj, list) else {"t": out}
            finally:
                self._active.discard(id(obj))
        raise TypeError(
            f"{where}: cannot save an object of type {type(obj).__name__} (numopt.save takes dicts, lists, "
            "tuples, NumPy arrays and scalars, int, float, complex, bool, None, str and bytes)"
        )


# -- saving ---------------------------------------------------------------------


def _byte_view(a: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, without copying."""
    return memoryview(a.reshape(-1).view(np.uint8))


def _fsync_dir(directory: str) -> None:
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened there
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_temp(target: str) -> tuple[int, str]:
    """Create a new temporary file next to ``target`` (mode from the umask, like ``open``)."""
    directory, base = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    raise FileExistsError(f"could not create a temporary file next to {target}")  # pragma: no cover


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` to ``path`` atomically, as a numopt checkpoint.

    Parameters
    ----------
    obj : nest of dict, list, tuple, ndarray and scalars
        Typically ``{"model": ..., "optimizer": opt.state_dict(), "epoch": 3}``.
        Dict keys must be ``str`` or ``int``. Leaves may be NumPy arrays
        (numeric, bool, bytes or str dtypes) and NumPy scalars, ``int``,
        ``float``, ``complex``, ``bool``, ``None``, ``str`` and ``bytes``.
        Dict subclasses load as ``dict`` and named tuples as ``tuple``.
    path : str or os.PathLike
        The file to create or replace. A symbolic link is followed: the file it
        points to is replaced.

    Raises
    ------
    TypeError, ValueError
        ``obj`` holds something that cannot be saved (checked before any file
        is created).
    OSError
        The file could not be written; ``path`` is then left as it was.

    Notes
    -----
    The data goes to a temporary file in the same directory, which is flushed,
    ``fsync``-ed and renamed over ``path``; the directory is ``fsync``-ed last.
    A crash or ``SIGKILL`` at any moment leaves ``path`` holding either the old
    or the new checkpoint in full, never a mix (and possibly an orphaned
    ``.<name>.<random>.tmp`` file, safe to delete).

    Examples
    --------
    >>> import numpy as np, numopt, os, tempfile
    >>> w = numopt.Parameter(np.ones(3, np.float32))
    >>> opt = numopt.SGD([w], lr=0.1, momentum=0.9)
    >>> w.grad = np.ones(3, np.float32)
    >>> opt.step()
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npt")
    >>> numopt.save({"optimizer": opt.state_dict(), "epoch": 1}, path)
    >>> numopt.load(path)["optimizer"]["state"][0]["momentum_buffer"]
    array([1., 1., 1.], dtype=float32)
    """
    encoder = _Encoder()
    root = encoder.encode(obj)
    descriptors = []
    offset = 0
    arrays = []
    for a in encoder.arrays:
        arrays.append((offset, a))
        descriptors.append({"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": a.nbytes})
        offset = _align(offset + a.nbytes)
    data_len = offset
    from . import __version__

    structure = json.dumps(
        {"format": FORMAT_VERSION, "writer": f"numopt {__version__}", "arrays": descriptors, "root": root},
        allow_nan=False,
        separators=(",", ":"),
    ).encode("utf-8")
    head = MAGIC + struct.pack("<IQQI", FORMAT_VERSION, len(structure), data_len, zlib.crc32(structure))
    header = head + struct.pack("<I", zlib.crc32(head))
    data_start = _align(len(header) + len(structure))

    target = os.path.realpath(os.fspath(path))
    fd, tmp = _open_temp(target)
    try:
        with os.fdopen(fd, "wb") as f:
            digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)

            def put(buf: bytes | memoryview) -> None:
                for i in range(0, len(buf), _CHUNK):
                    part = buf[i : i + _CHUNK]
                    digest.update(part)
                    f.write(part)

            put(header)
            put(structure)
            put(bytes(data_start - len(header) - len(structure)))
            pos = 0
            for off, a in arrays:
                put(bytes(off - pos))
                # one array at a time, copied only if it is not C-contiguous already
                put(_byte_view(a if a.flags.c_contiguous else a.copy(order="C")))
                pos = off + a.nbytes
            put(bytes(data_len - pos))
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.dirname(target))


# -- loading --------------------------------------------------------------------


class _Reader:
    """Sequential reads that feed the digest and report short files."""

    def __init__(self, f: Any, path: str, size: int) -> None:
        self.f, self.path, self.size = f, path, size
        self.digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
        self.pos = 0

    def into(self, view: memoryview) -> None:
        n = len(view)
        done = 0
        while done < n:
            got = self.f.readinto(view[done : min(n, done + _CHUNK)])
            if not got:
                raise CheckpointError(
                    self.path, f"truncated: the file ended at byte {self.pos + done} (it shrank while being read?)"
                )
            self.digest.update(view[done : done + got])
            done += got
        self.pos += n

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        self.into(memoryview(buf))
        return bytes(buf)

    def skip(self, n: int) -> None:
        scratch = memoryview(bytearray(min(n, _CHUNK)))
        while n:
            k = min(n, len(scratch))
            self.into(scratch[:k])
            n -= k


def _describe_foreign(start: bytes) -> str:
    for prefix, what in _FOREIGN:
        if start.startswith(prefix):
            return f"not a numopt checkpoint: it looks like {what}"
    if start and all(32 <= b < 127 or b in b"\t\r\n" for b in start):
        return "not a numopt checkpoint: it looks like a text file"
    return f"not a numopt checkpoint (it starts with {start[:12]!r}, not numopt's magic bytes)"


def _check_descriptors(path: str, arrays: Any, data_len: int) -> list[tuple[int, np.dtype, tuple[int, ...], int]]:
    if not isinstance(arrays, list):
        raise CheckpointError(path, "invalid structure: 'arrays' is not a list")
    out = []
    end = 0
    for i, d in enumerate(arrays):
        try:
            dt = np.dtype(str(d["dtype"]))
            shape = tuple(int(s) for s in d["shape"])
            offset, nbytes = int(d["offset"]), int(d["nbytes"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(path, f"invalid structure: array {i} has a bad descriptor ({e})") from None
        if dt.kind not in _ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise CheckpointError(path, f"invalid structure: array {i} has unsupported dtype {dt}")
        if any(s < 0 for s in shape) or nbytes != math.prod(shape) * dt.itemsize:
            raise CheckpointError(path, f"invalid structure: array {i} has shape {shape} but {nbytes} bytes")
        if offset < end or offset % _ALIGN or offset + nbytes > data_len:
            raise CheckpointError(path, f"invalid structure: array {i} lies outside the data section")
        end = offset + nbytes
        out.append((offset, dt, shape, nbytes))
    return out


def _decode(path: str, node: Any, arrays: list[np.ndarray]) -> Any:
    if node is None or isinstance(node, (str, bool, int, float)):
        return node
    if isinstance(node, list):
        return [_decode(path, v, arrays) for v in node]
    if isinstance(node, dict) and len(node) == 1:
        ((tag, v),) = node.items()
        try:
            if tag == "d":
                out = {}
                for key, value in v:
                    if isinstance(key, bool) or not isinstance(key, (str, int)):
                        raise ValueError(f"bad dict key {key!r}")
                    out[key] = _decode(path, value, arrays)
                return out
            if tag == "t":
                return tuple(_decode(path, x, arrays) for x in v)
            if tag == "a":
                return arrays[v]
            if tag == "s":
                return arrays[v][()]
            if tag == "h":
                return arrays[v].view(bfloat16())  # ImportError naming ml_dtypes without it
            if tag == "f":
                return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[v]
            if tag == "c":
                re, im = (_decode(path, x, arrays) for x in v)
                return complex(float(re), float(im))
            if tag == "b":
                return arrays[v].tobytes()
            if tag == "q":
                from .lowbit import BFloat16State, Int8State

                if v[0] == "bfloat16":
                    return BFloat16State(arrays[v[1]])
                if v[0] == "int8":
                    return Int8State(arrays[v[1]], arrays[v[2]], bool(v[3]))
                raise ValueError(f"unknown compact state {v[0]!r}")
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise CheckpointError(path, f"invalid structure: bad {tag!r} entry ({e})") from None
    raise CheckpointError(path, f"invalid structure: unexpected node {str(node)[:60]}")


def load(path: str | os.PathLike) -> Any:
    """Read a checkpoint written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    The saved object: dicts, lists, tuples, fresh writable NumPy arrays (in C
    order, with their saved dtype) and scalars.

    Raises
    ------
    CheckpointError
        The file is empty, truncated, corrupted (a checksum does not match),
        not a numopt checkpoint, or written in a newer format. The message
        names the file and the problem.
    OSError
        The file cannot be opened (``FileNotFoundError``, ``PermissionError``, ...).

    Notes
    -----
    Nothing in the file is executed: the structure is JSON and the arrays are
    raw bytes. Every byte is checked against a BLAKE2b digest before the
    result is returned; arrays are read directly into their own memory.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CheckpointError(name, "empty file (0 bytes): not a numopt checkpoint")
        reader = _Reader(f, name, size)
        start = f.read(_HEADER.size)
        reader.digest.update(start)
        reader.pos = len(start)
        if start[: len(MAGIC)] != MAGIC[: len(start)]:
            if len(start) >= len(MAGIC) and sum(a != b for a, b in zip(start, MAGIC)) <= 2:
                raise CheckpointError(name, f"corrupted: the magic bytes are damaged ({start[: len(MAGIC)]!r})")
            raise CheckpointError(name, _describe_foreign(start))
        if len(start) < _HEADER.size:
            raise CheckpointError(name, f"truncated: {size} bytes, shorter than the {_HEADER.size}-byte header")
        magic, version, json_len, data_len, json_crc, header_crc = _HEADER.unpack(start)
        if magic != MAGIC:
            raise CheckpointError(name, _describe_foreign(start))
        if zlib.crc32(start[:-4]) != header_crc:
            raise CheckpointError(name, "corrupted: the header checksum does not match (damaged file)")
        if version > FORMAT_VERSION or version == 0:
            raise CheckpointError(
                name,
                f"unsupported format version {version}: this numopt reads versions 1 to {FORMAT_VERSION} "
                "(written by a newer numopt?)",
            )
        data_start = _align(_HEADER.size + json_len)
        expected = data_start + data_len + _DIGEST_SIZE
        if size < expected:
            raise CheckpointError(name, f"truncated: {size} bytes, the header promises {expected}")
        if size > expected:
            raise CheckpointError(name, f"{size - expected} unexpected bytes after the end of the checkpoint")

        structure = reader.read(json_len)
        if zlib.crc32(structure) != json_crc:
            raise CheckpointError(name, "corrupted: the structure section's checksum does not match (damaged file)")
        try:
            meta = json.loads(structure.decode("utf-8"))
            fmt, descriptors, root = meta["format"], meta["arrays"], meta["root"]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(name, f"invalid structure section ({e})") from None
        if fmt != version:
            raise CheckpointError(name, f"invalid structure: format {fmt!r} differs from the header's {version}")
        layout = _check_descriptors(name, descriptors, data_len)
        reader.skip(data_start - reader.pos)

        arrays = []
        pos = 0
        for offset, dt, shape, nbytes in layout:
            reader.skip(offset - pos)
            a = np.empty(shape, dt)
            if nbytes:
                reader.into(_byte_view(a))
            arrays.append(a)
            pos = offset + nbytes
        reader.skip(data_len - pos)
        stored = f.read(_DIGEST_SIZE)
        if len(stored) != _DIGEST_SIZE:
            raise CheckpointError(name, "truncated: the final checksum is missing (it shrank while being read?)")
        if reader.digest.digest() != stored:
            raise CheckpointError(name, "corrupted: the data checksum does not match (damaged file)")
    return _decode(name, root, arrays)
