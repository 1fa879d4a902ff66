"""What every subcommand shares: a parser whose errors are one line, argument types that check files
before any work starts, ``--json FILE|-`` output, notes on stderr, and the one place that turns a
user's mistake, a closed pipe or Ctrl-C into a one-line message and an exit status.

Exit status: 0 success, 1 a check failed, 2 a usage error (bad argument, missing file), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import files
from ..errors import FusionSpecError, printable
from ..validate import MAX_SIZE

#: The extra that installs each optional array library (``pip install "fusion-spec[EXTRA]"``).
EXTRAS = {"torch": "torch", "jax": "jax", "mlx": "mlx", "transformers": "interop", "matplotlib": "plot"}


class UsageError(Exception):
    """A mistake in the command line or its files, found by the CLI itself: exit 2, message on one line."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit 2), pointing at ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        # `--size -5x10`: a value that starts with '-' (and is no option) belongs to the option before
        # it, as if written `--size=-5x10`; argparse alone would say "expected one argument".
        args = list(sys.argv[1:] if args is None else args)
        takes_value = {s for a in self._actions if a.nargs is None for s in a.option_strings}
        joined: list[str] = []
        for arg in args:
            if joined and joined[-1] in takes_value and arg.startswith("-") and arg not in self._option_string_actions:
                joined[-1] = f"{joined[-1]}={arg}"
            else:
                joined.append(arg)
        return super().parse_known_args(joined, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.removeprefix("argument ")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def install_hint(package: str, extra: str | None = None) -> str:
    """``pip install "fusion-spec[extra]"`` for ``extra``, or the extra that brings ``package``."""
    return f'pip install "fusion-spec[{extra or EXTRAS.get(package, package)}]"'


def require(module: str, needed_for: str, extra: str | None = None) -> Any:
    """``import module`` or a :class:`UsageError` that names the extra to install (``extra``, or the one
    that brings ``module``)."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise UsageError(f"{needed_for} needs {top}, which is not installed ({install_hint(top, extra)})") from None


def open_flamingo_helpers() -> Any:
    """open_flamingo's ``src/helpers.py`` (its fusion modules), loaded by file path: the package itself
    pins torch 2.0.1 and imports open_clip, so it is installed with ``--no-deps`` and never imported
    whole. A :class:`UsageError` naming the install command when it is missing."""
    import importlib.util
    name = "_fusion_spec_open_flamingo_helpers"
    if name in sys.modules:
        return sys.modules[name]
    found = importlib.util.find_spec("open_flamingo")
    path = Path(list(found.submodule_search_locations)[0]) / "src" / "helpers.py" if found and \
        found.submodule_search_locations else None
    if path is None or not path.is_file():
        raise UsageError("open_flamingo is not installed (pip install --no-deps open-flamingo==2.0.1 einops einops-exts)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def note(message: str) -> None:
    """A remark for the user (not the command's result): stderr, so stdout stays the result."""
    print(f"note: {printable(message)}", file=sys.stderr)


# --- argument types: checked while parsing, before any work ------------------------------------------

def output_file(value: str) -> str:
    """``-`` (stdout) or a path whose folder exists and that is absent or a regular file (not a link, a
    FIFO, a device or a folder). Checked early, for a clear message before any work; the writing itself
    (:func:`fusion_spec.files.write`) checks again and never writes through anything else."""
    if value == "-":
        return value
    path = Path(value)
    try:
        mode = path.lstat().st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise argparse.ArgumentTypeError(f"{printable(value)} is {files.kind(mode)}, expected a new or regular file "
                                         "(nothing is written through a link or into a special file)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"directory {parent} is not writable")
    return value


def input_file(value: str) -> str:
    """An existing, readable file."""
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value} does not exist")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value} is not a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{value} is not readable")
    return value


def input_dir(value: str) -> Path:
    """An existing directory."""
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} {'is not a directory' if path.exists() else 'does not exist'}")
    return path


def int_at_least(low: int, high: int = MAX_SIZE) -> Callable[[str], int]:
    """An integer in ``[low, high]`` (default high: :data:`fusion_spec.validate.MAX_SIZE`, the bound of
    every size argument), checked before any work."""
    def parse(value: str) -> int:
        try:
            n = int(value) if len(value) <= 40 else None
        except ValueError:
            n = None
        if n is None:
            raise argparse.ArgumentTypeError(f"expected an integer, got {printable(value, 40)!r}")
        if n < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {n}")
        if n > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {n}")
        return n
    parse.__name__ = f"integer in [{low}, {high}]"
    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (NaN and infinity refused)."""
    def parse(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {printable(value, 40)!r}") from None
        if not (math.isfinite(x) and low <= x <= high):
            raise argparse.ArgumentTypeError(f"must be a finite number in [{low:g}, {high:g}], got {x}")
        return x
    parse.__name__ = f"number in [{low:g}, {high:g}]"
    return parse


def one_of(kind: str, names: Sequence[str], listing: str = "") -> Callable[[str], str]:
    """A name from ``names``; an unknown one is answered with the closest names ("did you mean")."""
    def parse(value: str) -> str:
        if value in names:
            return value
        close = difflib.get_close_matches(value, names, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "known: " + ", ".join(names)
        raise argparse.ArgumentTypeError(f"unknown {kind} {value!r}; {hint}{listing}")
    parse.__name__ = kind
    return parse


def write_json(destination: str, data: Any) -> None:
    """``data`` as indented JSON to the file ``destination`` (:func:`fusion_spec.files.write`: never
    through a link or into a special file), or to stdout for ``-``."""
    text = json.dumps(data, indent=1, default=str) + "\n"
    if destination == "-":
        sys.stdout.write(text)
    else:
        files.write(destination, text.encode("utf-8"), op="fusion-spec", arg="--json")


def json_argument(p: argparse.ArgumentParser, what: str) -> None:
    """The ``--json FILE|-`` option every subcommand has."""
    p.add_argument("--json", type=output_file, metavar="FILE", help=f"also write {what} as JSON to FILE; '-' writes "
                   "only the JSON to stdout (the table is left out), e.g. --json out.json")


def printer(args: argparse.Namespace) -> Callable[..., None]:
    """``print`` for the human-readable result, silent when ``--json -`` makes stdout the JSON's."""
    if getattr(args, "json", None) == "-":
        return lambda *a, **k: None
    return print


# --- running a command ----------------------------------------------------------------------------

def run(parser: argparse.ArgumentParser, argv: Iterable[str] | None) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``func``; every expected failure becomes one
    line on stderr and an exit status, never a traceback."""
    prog = parser.prog
    try:
        try:
            args = parser.parse_args(None if argv is None else list(argv))
        except SystemExit as exc:  # a usage error (2), --help or --version (0): already printed
            return exc.code if isinstance(exc.code, int) else 0
        if not hasattr(args, "func"):
            parser.print_help(sys.stderr)
            return 2
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk or a closed pipe behind stdout is reported here, not at exit
        return status
    except (FusionSpecError, UsageError) as exc:
        return _fail(prog, str(exc))
    except FileNotFoundError as exc:
        return _fail(prog, f"{exc.filename}: no such file or directory")
    except IsADirectoryError as exc:
        return _fail(prog, f"{exc.filename}: is a directory")
    except PermissionError as exc:
        return _fail(prog, f"{exc.filename}: permission denied")
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")  # clear a progress line
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) has gone: stop quietly.
        _discard_stdout()
        return 141
    except OSError as exc:  # e.g. writing stdout failed (`--json - > /dev/full`: no space left on device)
        try:
            sys.stdout.flush()  # what the command printed before, if stdout still takes it
        except OSError:
            _discard_stdout()
        return _fail(prog, f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")


def _discard_stdout() -> None:
    """Point stdout at devnull, so that Python's final flush of what stdout still holds does not fail
    again (with a traceback) at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file (a test's StringIO)
        pass


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {printable(' '.join(message.split()))}", file=sys.stderr)
    return 2
