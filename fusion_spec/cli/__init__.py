"""The ``fusion-spec`` command line: ``conformance``, ``goldens``, ``tokens``, ``presets``, ``check-module``, ``bench``.

Each subcommand module has ``register(subparsers)``, which adds its parsers and sets ``func`` (a
function of the parsed arguments returning the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import FusionSpecError

#: Subcommand modules of this package, registered in this order.
COMMANDS = ("conformance", "tokens", "interop", "bench")


def parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="fusion-spec", description="The executable specification of vision-language "
                                "fusion operators: conformance suite, golden files, token math, interop checks.")
    p.add_argument("--version", action="version", version=f"fusion-spec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="command")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    p = parser()
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not hasattr(args, "func"):
        p.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FusionSpecError as exc:
        print(f"fusion-spec: error: {exc}", file=sys.stderr)
        return 2
