"""Every file fusion_spec reads or writes goes through here: one way to open a file for reading
(:func:`open_regular`), one way to write one (:func:`write`).

Reading: the file is opened **once**, without blocking (``O_NONBLOCK``: a FIFO or a device does not
hang the open) and, for a file inside a directory (a bundle's case files, an outputs directory's
files), relative to that directory's descriptor and without following a link (``O_NOFOLLOW``), so
what is read is the directory's own entry, whatever was there a moment earlier. Everything else is
checked on the opened descriptor (``fstat``): a regular file, no larger than the caller allows.
Nothing is decided from the path, so a file swapped for a link or a FIFO between a check and the
open cannot be read or block. A file named on the command line itself (a checkpoint, ``--inputs``)
is opened as named, links included (Hugging Face's cache is made of them); the opened file must
still be a regular file of bounded size.

Writing: the content goes to a new temporary file in the target's directory (created with
``O_CREAT | O_EXCL | O_NOFOLLOW``), which then replaces the target by ``os.replace`` (a rename,
which never follows a link and never opens the target). The target must be absent or a regular
file: a link, FIFO, device or directory in its place is refused and left as it is, so nothing is
ever written through a link or into a special file.

Both raise :class:`FusionSpecError` (``op``, ``arg``) for every problem; :class:`Missing` (a
subclass) when a file to read does not exist.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Union

from .errors import FusionSpecError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
#: A directory is opened only to name files in it (Linux's O_PATH: no read permission needed).
_DIRECTORY = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_CREATE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
           | getattr(os, "O_BINARY", 0))
#: Whether this system opens relative to a directory descriptor (POSIX); elsewhere paths are joined.
_DIR_FD = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd and bool(_NOFOLLOW)


class Missing(FusionSpecError):
    """The file to read does not exist."""


def kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words ("a regular file", "a FIFO", ...)."""
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _plain_name(name: str, op: str, arg: str) -> str:
    if not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise FusionSpecError(op, arg, "a plain file name inside the directory", repr(name))
    return name


@contextlib.contextmanager
def _directory(path: str | Path, op: str, arg: str) -> Iterator[int | None]:
    """A descriptor of the directory ``path`` (``None`` where the system has no ``dir_fd``)."""
    if not _DIR_FD:
        yield None
        return
    try:
        fd = os.open(path, _DIRECTORY)
    except OSError as exc:
        raise FusionSpecError(op, arg, f"an existing directory {path}", _reason(exc)) from None
    try:
        yield fd
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def open_regular(path: str | Path, *, op: str, arg: str, limit: int | None = None,
                 directory: str | Path | None = None, role: str | None = None) -> BinaryIO:
    """The regular file ``path`` opened for reading (a binary file object; close it, e.g. ``with``).

    ``directory``: ``path`` is a plain name in that directory, opened relative to it without
    following a link, so the file read is that directory's own entry (a symbolic link in its place
    is refused, as one that could lead outside ``role``, default the directory's name; see the
    module docstring for hard links). Otherwise ``path`` is opened as given.
    The open never blocks; the opened file must be a regular file of at most ``limit`` bytes.
    """
    shown = str(path) if directory is None else str(Path(directory) / str(path))
    try:
        if directory is None:
            fd = os.open(path, _READ)
        else:
            name = _plain_name(str(path), op, arg)
            with _directory(directory, op, arg) as dfd:
                if dfd is None:  # no dir_fd here: the best a path allows
                    if os.path.islink(os.path.join(directory, name)):
                        raise OSError(errno.ELOOP, "a symbolic link")
                    fd = os.open(os.path.join(directory, name), _READ)
                else:
                    fd = os.open(name, _READ | _NOFOLLOW, dir_fd=dfd)
    except FileNotFoundError:
        raise Missing(op, arg, "an existing file", f"{shown}: no such file") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and directory is not None:
            raise FusionSpecError(op, arg, f"a regular file inside {directory}", f"{shown}: a symbolic link, which "
                                  f"could lead outside {role or directory} (links are not followed there: refused)"
                                  ) from None
        raise FusionSpecError(op, arg, "a readable regular file", f"{shown}: {_reason(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FusionSpecError(op, arg, "a regular file", f"{shown}: {kind(info.st_mode)} (refused)")
        if limit is not None and info.st_size > limit:
            raise FusionSpecError(op, arg, f"a file of at most {limit} bytes", f"{shown}: {info.st_size} bytes")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, *, op: str, arg: str, limit: int, directory: str | Path | None = None,
               role: str | None = None) -> bytes:
    """The whole content of a regular file of at most ``limit`` bytes (:func:`open_regular`)."""
    with open_regular(path, op=op, arg=arg, limit=limit, directory=directory, role=role) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FusionSpecError(op, arg, f"a file of at most {limit} bytes", f"{path}: it grew while it was read")
    return data


#: What :func:`write` writes: bytes, or a function writing to the (binary) file it is given.
Content = Union[bytes, Callable[[BinaryIO], None]]


def write(path: str | Path, content: Content, *, op: str, arg: str) -> Path:
    """Write ``content`` (bytes, or a function that writes to the binary file it is given) to ``path``.

    The target is replaced as a whole (a temporary file in the same directory, then ``os.replace``),
    never opened: it must be absent or a regular file, anything else (a symbolic link, FIFO, device,
    directory) is refused and left untouched. An existing file's permission bits are kept. A failure
    (no space, no permission) raises :class:`FusionSpecError` and leaves no temporary file behind.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    name = _plain_name(path.name, op, arg)
    with _directory(folder, op, arg) as dfd:
        mode = _replaceable(path, name, dfd, op, arg)
        temp = f".{name[:200]}.{secrets.token_hex(6)}.tmp"
        where = {"dir_fd": dfd} if dfd is not None else {}
        target = name if dfd is not None else str(path)
        temp_path = temp if dfd is not None else str(folder / temp)
        try:
            fd = os.open(temp_path, _CREATE, 0o666 if mode is None else 0o600, **where)
        except OSError as exc:
            raise FusionSpecError(op, arg, f"a writable directory {folder}", f"{path}: {_reason(exc)}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                if mode is not None and hasattr(os, "fchmod"):
                    os.fchmod(f.fileno(), stat.S_IMODE(mode))
                if callable(content):
                    content(f)
                else:
                    f.write(content)
            if dfd is not None:
                os.replace(temp_path, target, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                os.replace(temp_path, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp_path, **where)
            if isinstance(exc, OSError):
                raise FusionSpecError(op, arg, "a file it can write", f"{path}: {_reason(exc)}") from None
            raise
    return path


def install(source: str | Path, path: str | Path, *, op: str, arg: str) -> Path:
    """Move the finished file ``source`` (on the same file system: a private temporary directory inside
    ``path``'s directory) to ``path``, under the rule of :func:`write`: ``path`` must be absent or a
    regular file, and is replaced by a rename, never opened. For writers that need a path of their
    own (``onnx.save_model`` with external data)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    name = _plain_name(path.name, op, arg)
    with _directory(folder, op, arg) as dfd:
        _replaceable(path, name, dfd, op, arg)
        try:
            if dfd is not None:
                os.replace(source, name, dst_dir_fd=dfd)
            else:
                os.replace(source, path)
        except OSError as exc:
            raise FusionSpecError(op, arg, "a file it can write", f"{path}: {_reason(exc)}") from None
    return path


def _replaceable(path: Path, name: str, dfd: int | None, op: str, arg: str) -> int | None:
    """The mode of the regular file at ``path`` (``None`` if there is none); anything else is refused."""
    try:
        info = os.stat(name, dir_fd=dfd, follow_symlinks=False) if dfd is not None else os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FusionSpecError(op, arg, "a new file or a regular file to replace", f"{path}: {_reason(exc)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise FusionSpecError(op, arg, "a new file or a regular file to replace",
                              f"{path}: {kind(info.st_mode)} (refused: nothing is written through it)")
    return info.st_mode
