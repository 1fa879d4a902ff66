"""``fusion_spec.files``: size limits exactly at and one past, each refusal's four facts, and the
path-joining fallback of systems without ``dir_fd`` run on this one (the survivors of
``python -m tests.mutmut_areas files``)."""

from __future__ import annotations

import os
import re
import socket
import stat
from pathlib import Path

import pytest

from fusion_spec import files
from fusion_spec.errors import FusionSpecError

OP, ARG = "conformance", "--outputs"


@pytest.fixture(params=[True, False], ids=["dir_fd", "joined paths"])
def dir_fd(request, monkeypatch):
    """Both ways of opening inside a directory: relative to its descriptor (POSIX), and the joined path
    of systems without ``dir_fd`` (what Windows runs)."""
    if not request.param:
        monkeypatch.setattr(files, "_DIR_FD", False)
    return request.param


def facts(call, *args, **kw) -> tuple:
    with pytest.raises(FusionSpecError) as info:
        call(*args, **kw)
    e = info.value
    return type(e), e.op, e.arg, e.expected, e.got


def test_kind_names_every_file_type(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_bytes(b"")
    os.symlink("file", tmp_path / "link")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        modes = {n: os.lstat(tmp_path / n).st_mode for n in ("fifo", "file", "link", "sock")}
    assert files.kind(modes["file"]) == "a regular file"
    assert files.kind(os.stat(tmp_path).st_mode) == "a directory"
    assert files.kind(modes["link"]) == "a symbolic link"
    assert files.kind(modes["fifo"]) == "a FIFO (named pipe)"
    assert files.kind(modes["sock"]) == "a socket"
    assert files.kind(stat.S_IFCHR) == "a character device"
    assert files.kind(stat.S_IFBLK) == "a block device"
    assert files.kind(0) == "a special file"


# --- reading ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("inside", [False, True], ids=["named", "inside a directory"])
def test_boundary_a_file_of_exactly_the_limit_is_read_and_one_byte_less_refuses_it(tmp_path, dir_fd, inside):
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    kw = {"directory": tmp_path} if inside else {}
    path = "a.bin" if inside else tmp_path / "a.bin"
    assert files.read_bytes(path, op=OP, arg=ARG, limit=10, **kw) == b"x" * 10
    with files.open_regular(path, op=OP, arg=ARG, limit=10, **kw) as f:
        assert f.read() == b"x" * 10
    with files.open_regular(path, op=OP, arg=ARG, **kw) as f:  # no limit
        assert f.read() == b"x" * 10
    shown = tmp_path / "a.bin"
    assert facts(files.read_bytes, path, op=OP, arg=ARG, limit=9, **kw) == \
        (FusionSpecError, OP, ARG, "a file of at most 9 bytes", f"{shown}: 10 bytes")


def test_a_file_that_holds_more_than_its_size_says_is_cut_at_the_limit():
    """/proc files report size 0 and hold more: read_bytes reads one byte past the limit and refuses."""
    path = "/proc/self/status"
    if not os.path.exists(path):  # pragma: no cover
        pytest.skip("no /proc on this system (Linux only)")
    assert facts(files.read_bytes, path, op=OP, arg=ARG, limit=10) == \
        (FusionSpecError, OP, ARG, "a file of at most 10 bytes", f"{path}: it grew while it was read")


@pytest.mark.parametrize("inside", [False, True], ids=["named", "inside a directory"])
def test_a_missing_file_is_missing(tmp_path, dir_fd, inside):
    kw = {"directory": tmp_path} if inside else {}
    path = "nope" if inside else tmp_path / "nope"
    assert facts(files.open_regular, path, op=OP, arg=ARG, **kw) == \
        (files.Missing, OP, ARG, "an existing file", f"{tmp_path / 'nope'}: no such file")


@pytest.mark.parametrize("role", [None, "the bundle"])
def test_a_link_inside_a_directory_is_refused_naming_the_role(tmp_path, dir_fd, role):
    (tmp_path / "target").write_bytes(b"secret")
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "target", tmp_path / "d" / "case.bin")
    d = tmp_path / "d"
    assert facts(files.open_regular, "case.bin", op=OP, arg=ARG, directory=d, role=role) == \
        (FusionSpecError, OP, ARG, f"a regular file inside {d}",
         f"{d / 'case.bin'}: a symbolic link, which could lead outside {role or d} (links are not followed there: "
         "refused)")
    with files.open_regular(tmp_path / "d" / "case.bin", op=OP, arg=ARG) as f:  # named on the command line
        assert f.read() == b"secret"


@pytest.mark.parametrize("inside", [False, True], ids=["named", "inside a directory"])
def test_a_fifo_and_a_directory_are_refused_without_blocking(tmp_path, dir_fd, inside):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "sub").mkdir()
    for name, what in (("fifo", "a FIFO (named pipe)"), ("sub", "a directory")):
        kw = {"directory": tmp_path} if inside else {}
        path = name if inside else tmp_path / name
        assert facts(files.open_regular, path, op=OP, arg=ARG, **kw) == \
            (FusionSpecError, OP, ARG, "a regular file", f"{tmp_path / name}: {what} (refused)")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/abs"])
def test_only_a_plain_name_is_opened_inside_a_directory(tmp_path, name):
    assert facts(files.open_regular, name, op=OP, arg=ARG, directory=tmp_path) == \
        (FusionSpecError, OP, ARG, "a plain file name inside the directory", repr(name))


def test_a_directory_that_is_not_there(tmp_path):
    d = tmp_path / "none"
    assert facts(files.open_regular, "a", op=OP, arg=ARG, directory=d) == \
        (FusionSpecError, OP, ARG, f"an existing directory {d}", "FileNotFoundError: No such file or directory")


def test_an_unreadable_path_names_the_os_error(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    assert facts(files.open_regular, tmp_path / "f" / "x", op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, "a readable regular file", f"{tmp_path / 'f' / 'x'}: NotADirectoryError: Not a directory")


# --- writing ------------------------------------------------------------------------------------------------

def _only(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_creates_replaces_and_keeps_the_permission_bits(tmp_path, dir_fd):
    target = tmp_path / "out.json"
    assert files.write(target, b"one", op=OP, arg=ARG) == target
    assert target.read_bytes() == b"one"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    target.chmod(0o640)
    files.write(target, lambda f: f.write(b"two"), op=OP, arg=ARG)
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _only(tmp_path) == ["out.json"]


def test_write_into_the_working_directory(tmp_path, dir_fd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert files.write("here.txt", b"x", op=OP, arg=ARG) == Path("here.txt")
    assert (tmp_path / "here.txt").read_bytes() == b"x"


def test_write_goes_through_a_private_temporary_file_beside_the_target(tmp_path, dir_fd):
    name = "n" * 250
    seen = {}

    def content(f):
        seen["names"] = _only(tmp_path)
        seen["mode"] = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        f.write(b"x")

    (tmp_path / name).write_bytes(b"old")
    (tmp_path / name).chmod(0o604)
    files.write(tmp_path / name, content, op=OP, arg=ARG)
    temp = [n for n in seen["names"] if n != name]
    assert len(temp) == 1 and re.fullmatch(rf"\.{'n' * 200}\.[0-9a-f]{{12}}\.tmp", temp[0]), temp
    assert seen["mode"] == 0o604
    assert _only(tmp_path) == [name]


def test_write_refuses_links_and_special_files_and_leaves_them(tmp_path, dir_fd):
    (tmp_path / "real").write_bytes(b"keep")
    os.symlink("real", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name, what in (("link", "a symbolic link"), ("fifo", "a FIFO (named pipe)"), ("dir", "a directory")):
        assert facts(files.write, tmp_path / name, b"x", op=OP, arg=ARG) == \
            (FusionSpecError, OP, ARG, "a new file or a regular file to replace",
             f"{tmp_path / name}: {what} (refused: nothing is written through it)")
    assert os.readlink(tmp_path / "link") == "real" and (tmp_path / "real").read_bytes() == b"keep"
    assert _only(tmp_path) == ["dir", "fifo", "link", "real"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path, dir_fd):
    def full(f):
        f.write(b"part")
        raise OSError(28, "No space left on device")

    def bug(f):
        raise KeyError("not an OSError")

    target = tmp_path / "out"
    assert facts(files.write, target, full, op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, "a file it can write", f"{target}: OSError: No space left on device")
    with pytest.raises(KeyError):
        files.write(target, bug, op=OP, arg=ARG)
    assert _only(tmp_path) == []


def test_write_into_a_missing_directory(tmp_path, dir_fd):
    target = tmp_path / "none" / "out"
    got = facts(files.write, target, b"x", op=OP, arg=ARG)
    if dir_fd:
        assert got == (FusionSpecError, OP, ARG, f"an existing directory {tmp_path / 'none'}",
                       "FileNotFoundError: No such file or directory")
    else:
        assert got == (FusionSpecError, OP, ARG, f"a writable directory {tmp_path / 'none'}",
                       f"{target}: FileNotFoundError: No such file or directory")


def test_install_moves_a_finished_file_under_the_same_rule(tmp_path, dir_fd):
    (tmp_path / "work").mkdir()
    source = tmp_path / "work" / "model.onnx"
    source.write_bytes(b"graph")
    target = tmp_path / "model.onnx"
    assert files.install(source, target, op=OP, arg=ARG) == target
    assert target.read_bytes() == b"graph" and not source.exists()
    os.symlink("model.onnx", tmp_path / "link.onnx")
    source.write_bytes(b"again")
    assert facts(files.install, source, tmp_path / "link.onnx", op=OP, arg=ARG)[4] == \
        f"{tmp_path / 'link.onnx'}: a symbolic link (refused: nothing is written through it)"
    assert facts(files.install, tmp_path / "work" / "gone", target, op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, "a file it can write", f"{target}: FileNotFoundError: No such file or directory")
    assert source.read_bytes() == b"again" and target.read_bytes() == b"graph"


def test_install_into_the_working_directory(tmp_path, dir_fd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").write_bytes(b"x")
    files.install(tmp_path / "w", "final", op=OP, arg=ARG)
    assert (tmp_path / "final").read_bytes() == b"x"


# --- the survivors of the first run -------------------------------------------------------------------------

@pytest.mark.parametrize(("sep", "altsep", "refused", "accepted"), [
    ("\\", None, ["a/b", "a\\b"], ["ab", "a:b"]),  # a system whose separator is not '/': '/' is still refused
    ("\\", "/", ["a/b", "a\\b"], ["ab"]),  # Windows
    ("/", ":", ["a/b", "a:b"], ["ab"]),  # an alternative separator of its own
])
def test_plain_names_on_systems_with_other_separators(monkeypatch, sep, altsep, refused, accepted):
    monkeypatch.setattr(files.os, "sep", sep)
    monkeypatch.setattr(files.os, "altsep", altsep)
    for name in refused:
        with pytest.raises(FusionSpecError):
            files._plain_name(name, OP, ARG)
    for name in accepted:
        assert files._plain_name(name, OP, ARG) == name


def test_a_name_the_system_cannot_hold_is_an_os_error_not_a_link(tmp_path, dir_fd):
    long = "n" * 300
    assert facts(files.open_regular, long, op=OP, arg=ARG, directory=tmp_path) == \
        (FusionSpecError, OP, ARG, "a readable regular file", f"{tmp_path / long}: OSError: File name too long")
    assert facts(files.write, tmp_path / long, b"x", op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, "a new file or a regular file to replace",
         f"{tmp_path / long}: OSError: File name too long")


def test_a_link_loop_named_on_the_command_line_is_an_os_error(tmp_path):
    os.symlink("loop", tmp_path / "loop")
    assert facts(files.open_regular, tmp_path / "loop", op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, "a readable regular file",
         f"{tmp_path / 'loop'}: OSError: Too many levels of symbolic links")


def test_writing_below_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_DIR_FD", False)
    (tmp_path / "f").write_bytes(b"")
    assert facts(files.write, tmp_path / "f" / "x", b"x", op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, "a new file or a regular file to replace",
         f"{tmp_path / 'f' / 'x'}: NotADirectoryError: Not a directory")


def test_read_bytes_reads_one_byte_past_the_limit_and_no_more(tmp_path, monkeypatch):
    """Enough to see a file that grew after its size was checked, never the whole of one that keeps
    growing."""
    asked = []

    class Endless:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n=-1):
            asked.append(n)
            return b"x" * n

    monkeypatch.setattr(files, "open_regular", lambda *a, **k: Endless())
    assert facts(files.read_bytes, tmp_path / "grows", op=OP, arg=ARG, limit=10)[4] == \
        f"{tmp_path / 'grows'}: it grew while it was read"
    assert asked == [11]


def test_errors_of_install_name_its_operator_and_argument(tmp_path):
    (tmp_path / "s").write_bytes(b"x")
    assert facts(files.install, tmp_path / "s", tmp_path / "..", op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, "a plain file name inside the directory", "'..'")
    assert facts(files.install, tmp_path / "s", tmp_path / "none" / "t", op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, f"an existing directory {tmp_path / 'none'}",
         "FileNotFoundError: No such file or directory")
    os.symlink("s", tmp_path / "link")
    assert facts(files.install, tmp_path / "s", tmp_path / "link", op=OP, arg=ARG) == \
        (FusionSpecError, OP, ARG, "a new file or a regular file to replace",
         f"{tmp_path / 'link'}: a symbolic link (refused: nothing is written through it)")
    assert facts(files.write, tmp_path / "..", b"x", op=OP, arg=ARG)[1:3] == (OP, ARG)


@pytest.fixture
def swapped(tmp_path, monkeypatch):
    """The directory is renamed to d_old after it was opened, and a new d holding a symbolic link 'out'
    takes its place: whatever is decided must be the opened directory's (d_old's) own entries."""
    (tmp_path / "d").mkdir()
    (tmp_path / "elsewhere").write_bytes(b"keep")
    opened = files._directory

    @__import__("contextlib").contextmanager
    def swap(path, op, arg):
        with opened(path, op, arg) as fd:
            os.rename(tmp_path / "d", tmp_path / "d_old")
            (tmp_path / "d").mkdir()
            os.symlink(tmp_path / "elsewhere", tmp_path / "d" / "out")
            yield fd

    monkeypatch.setattr(files, "_directory", swap)
    return tmp_path


def test_write_lands_in_the_directory_it_opened(swapped):
    seen = {}

    def content(f):
        seen["new"], seen["old"] = _only(swapped / "d"), _only(swapped / "d_old")
        f.write(b"data")

    files.write(swapped / "d" / "out", content, op=OP, arg=ARG)
    assert seen["new"] == ["out"] and len(seen["old"]) == 1 and seen["old"][0].endswith(".tmp")
    assert (swapped / "d_old" / "out").read_bytes() == b"data"
    assert os.path.islink(swapped / "d" / "out") and (swapped / "elsewhere").read_bytes() == b"keep"


def test_install_lands_in_the_directory_it_opened(swapped):
    (swapped / "src").write_bytes(b"graph")
    files.install(swapped / "src", swapped / "d" / "out", op=OP, arg=ARG)
    assert (swapped / "d_old" / "out").read_bytes() == b"graph"
    assert os.path.islink(swapped / "d" / "out") and (swapped / "elsewhere").read_bytes() == b"keep"


def test_the_temporary_file_is_private_from_its_creation(tmp_path, dir_fd, monkeypatch):
    """Without fchmod (as on Windows) the file is left as it was created: a replacement 0o600 (its
    content never readable by others, even for a moment), a new file 0o666 less the umask."""
    monkeypatch.delattr(files.os, "fchmod")
    target = tmp_path / "out"
    target.write_bytes(b"old")
    target.chmod(0o644)
    files.write(target, b"new", op=OP, arg=ARG)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"new"


def test_a_temporary_file_removed_before_the_failure_is_handled(tmp_path, dir_fd):
    def gone(f):
        for n in _only(tmp_path):
            os.unlink(tmp_path / n)
        raise OSError(5, "Input/output error")

    assert facts(files.write, tmp_path / "out", gone, op=OP, arg=ARG)[3:] == \
        ("a file it can write", f"{tmp_path / 'out'}: OSError: Input/output error")
    assert _only(tmp_path) == []
