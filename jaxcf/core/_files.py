"""Atomic file writers, checksummed ``.npz`` archives and JSON conversion shared by the runner,
results, metrics and reports.

Every file is written to a temporary sibling, fsynced and moved into place with ``os.replace``,
so a reader (or a run resumed after a kill) never sees a half-written file.

Atomic writes do not protect a file after it is in place: a partial copy, a full disk or a
shared file system's hiccup can still truncate or garble it. So the ``.npz`` archives that hold
results (the runner's chunk files, ``results.npz``) are written by :class:`NpzWriter`, which
ends each archive with one more member, ``sha256.npy``: the SHA-256 of every other member's
stored bytes. :func:`npz_problem` checks an archive against it, reading a block at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

PathLike = str | os.PathLike


def write_atomic(path: PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Calls ``write(f)`` on a temporary file beside ``path``, fsyncs it, then renames it into
    place, so readers never see a partial file; creates missing parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; keep an existing file's mode, else make it world-readable.
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically; creates missing parent directories."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda f: f.write(data))


def write_json_atomic(path: PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Writes ``obj`` as strict JSON (numpy values converted, NaN/inf as null) atomically."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def to_jsonable(obj: Any) -> Any:
    """Converts numpy/jax scalars and arrays, tuples and non-finite floats (to None) into plain
    JSON-serialisable Python objects, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, np.generic):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` data starting at ``f``'s position;
    leaves ``f`` at the first byte of the array."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")


# ----------------------------------------------------------------------------- checksummed .npz

CHECKSUM_MEMBER = "sha256"  # the member (``sha256.npy``) holding an archive's checksum
_CHECKSUM_FILE = CHECKSUM_MEMBER + ".npy"
_BLOCK = 1 << 20  # bytes read at a time while checking an archive
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip member's local file header
_LOCAL_SIGNATURE = b"PK\x03\x04"
_END_RECORD = struct.Struct("<4s4H2LH")  # the zip end-of-directory record
_END_SIGNATURE = b"PK\x05\x06"
# What reading a garbled archive raises (zipfile takes flipped flag bits for encryption or an
# unknown compression: RuntimeError, NotImplementedError; garbled sizes: OverflowError).
_READ_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    struct.error,
    RuntimeError,
    OverflowError,
)


class DamagedFileError(ValueError):
    """A file on disk is truncated or its content fails its checksum.

    Attributes:
      path: the damaged file.
      problem: what is wrong with it, in words.
    """

    def __init__(self, path: PathLike, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} is damaged: {problem}")


def _frame(sha: Any, filename: str, size: int | None = None) -> None:
    """Adds a member's name (before its bytes) or its size in bytes (after them) to ``sha``: so
    the checksum also changes when bytes move from one member to the next."""
    if size is None:
        sha.update(filename.encode("utf-8") + b"\0")
    else:
        sha.update(size.to_bytes(8, "little"))


class _HashingWriter:
    """A writable that hashes (and counts) the bytes on their way to ``out``."""

    def __init__(self, out: IO[bytes], sha: Any):
        self._out, self._sha, self.size = out, sha, 0

    def write(self, data: Any) -> int:
        self._sha.update(data)
        self.size += memoryview(data).nbytes
        return self._out.write(data)


class NpzWriter:
    """Writes an uncompressed ``.npz`` archive member by member and ends it with its checksum.

    Members are stored uncompressed (so readers can memory-map them) and may be written a block
    at a time with :meth:`member`; closing the writer adds ``sha256.npy``, the SHA-256 (hex) of
    every member's name, stored bytes (the whole ``.npy``: header and data) and size, in order.
    ``np.load`` reads the archive as any ``.npz``, with one more array, ``sha256``.

    Use as a context manager around an open binary file (such as :func:`write_atomic` gives);
    the checksum is written only when the block exits without an exception.
    """

    def __init__(self, file: IO[bytes]):
        self._zip = zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._sha = hashlib.sha256()

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if kind is None:
                with self._zip.open(_CHECKSUM_FILE, "w") as out:
                    digest = np.asarray(self._sha.hexdigest())
                    np.lib.format.write_array(out, digest, allow_pickle=False)
        finally:
            self._zip.close()

    @contextlib.contextmanager
    def member(self, name: str) -> Iterator[IO[bytes]]:
        """A writable for member ``name`` (``name.npy``): write its ``.npy`` header, then its
        data in as many blocks as convenient."""
        if name == CHECKSUM_MEMBER:
            raise ValueError(f"{name!r} is reserved for the archive's checksum")
        filename = name + ".npy"
        _frame(self._sha, filename)
        # force_zip64: the size is unknown until the member ends and may pass 4 GiB.
        with self._zip.open(filename, "w", force_zip64=True) as out:
            writer = _HashingWriter(out, self._sha)
            yield writer
        _frame(self._sha, filename, writer.size)

    def array(self, name: str, value: Any) -> None:
        """Writes ``value`` (any array without Python objects) as member ``name``."""
        with self.member(name) as out:
            np.lib.format.write_array(out, np.asarray(value), allow_pickle=False)


def write_npz(file: IO[bytes], arrays: Mapping[str, Any]) -> None:
    """Writes ``{name: array}`` to ``file`` as an uncompressed ``.npz`` that ends with its
    checksum; use it inside :func:`write_atomic`, as ``np.savez``.

    The last member, ``sha256``, is the SHA-256 (hex) of every other member's name, stored bytes
    (the whole ``.npy``: header and data) and size, in order; :func:`npz_problem` checks it.
    ``np.load`` reads the file as any ``.npz``, with that one more array. See
    :class:`NpzWriter` to write members a block at a time.
    """
    with NpzWriter(file) as npz:
        for name, value in arrays.items():
            npz.array(name, value)


def member_offset(raw: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where member ``info``'s stored bytes start in the archive open (binary) as ``raw``.

    Raises:
      ValueError: the member's local header is not where the archive's directory says.
    """
    raw.seek(info.header_offset)
    head = raw.read(_LOCAL_HEADER.size)
    if len(head) < _LOCAL_HEADER.size:
        raise ValueError(f"member {info.filename}: the file ends inside its header")
    fields = _LOCAL_HEADER.unpack(head)
    name = raw.read(fields[-2])
    if fields[0] != _LOCAL_SIGNATURE or name != info.orig_filename.encode("utf-8"):
        raise ValueError(f"member {info.filename}: its header is not where the index says")
    return info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]


def npz_problem(path: PathLike) -> str | None:
    """What is wrong with the ``.npz`` archive at ``path``, in words, or ``None`` if it is whole.

    An archive written by :class:`NpzWriter` is checked against its SHA-256: every member's
    stored bytes are read once, a block (1 MiB) at a time, so memory stays small whatever the
    file's size. Its index (the zip directory at the end) is checked too: the members it lists,
    and for each the CRC-32, compression and flags that ``np.load`` goes by. An archive without
    a checksum (written before they existed, or by ``np.savez``) is checked against zip's
    CRC-32 of each member instead.

    Raises:
      FileNotFoundError: nothing at ``path`` (a missing file is not a damaged one).
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        zf = zipfile.ZipFile(path)
    except _READ_ERRORS as e:
        # The archive's index sits at its end: a truncated file loses it first.
        return f"it is not a whole .npz archive ({size} bytes; truncated?): {e}"
    try:
        with zf, open(path, "rb") as raw:
            return _archive_problem(zf, raw, size)
    except _READ_ERRORS as e:
        return f"its structure is broken: {e}"


def _archive_problem(zf: zipfile.ZipFile, raw: IO[bytes], size: int) -> str | None:
    """:func:`npz_problem` of an archive whose index could be found."""
    infos = zf.infolist()
    # A garbled directory entry can hide the entries after it from zipfile without an error;
    # the end record's count (the file's last 22 bytes when, as here, there is no comment)
    # still says how many there are.
    raw.seek(max(size - _END_RECORD.size, 0))
    end = raw.read(_END_RECORD.size)
    if len(end) == _END_RECORD.size and end[:4] == _END_SIGNATURE:
        listed = _END_RECORD.unpack(end)[4]
        if listed != 0xFFFF and listed != len(infos):  # 0xFFFF: the count is in zip64's record
            return f"its index lists {listed} members, of which {len(infos)} can be read"
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        return f"its index lists a member twice: {sorted(names)}"
    if _CHECKSUM_FILE not in names:
        for info in infos:  # through zip's own checks: local header, flags, CRC-32
            try:
                with zf.open(info) as member:
                    while member.read(_BLOCK):
                        pass
            except _READ_ERRORS as e:
                return f"member {info.filename} cannot be read back: {e}"
        return None
    checksum = zf.getinfo(_CHECKSUM_FILE)
    if checksum.file_size > 1024:  # a 64-character string: its size is garbled
        return f"member {_CHECKSUM_FILE} is {checksum.file_size} bytes, not a checksum"
    with zf.open(checksum) as member:
        stored = str(np.lib.format.read_array(member, allow_pickle=False))
    sha, garbled = hashlib.sha256(), []
    for info in infos:
        if info.filename == _CHECKSUM_FILE:
            continue
        _frame(sha, info.filename)
        raw.seek(member_offset(raw, info))
        crc, left = 0, info.compress_size
        while left:
            block = raw.read(min(left, _BLOCK))
            if not block:
                return f"member {info.filename} ends {left} bytes early"
            sha.update(block)
            crc = zlib.crc32(block, crc)
            left -= len(block)
        _frame(sha, info.filename, info.compress_size)
        # What np.load checks besides the bytes: a wrong one makes it fail on a whole member.
        if (
            crc != info.CRC
            or info.compress_type != zipfile.ZIP_STORED
            or info.flag_bits & 0x1  # "encrypted"
            or info.file_size != info.compress_size
        ):
            garbled.append(info.filename)
    if sha.hexdigest() != stored:
        return (
            f"its content fails its SHA-256 checksum (stored {stored[:16]}..., "
            f"content {sha.hexdigest()[:16]}...)"
        )
    if garbled:
        return f"the index entries of members {garbled} are garbled (CRC-32, sizes or flags)"
    return None


def check_npz(path: PathLike) -> Path:
    """``path``, after :func:`npz_problem` found nothing wrong with it.

    Raises:
      DamagedFileError: naming the file and what is wrong.
      FileNotFoundError: nothing at ``path``.
    """
    problem = npz_problem(path)
    if problem is not None:
        raise DamagedFileError(path, problem)
    return Path(path)
