"""The ``fusion-spec`` command line: ``conformance``, ``goldens``, ``tokens``, ``presets``, ``check-module``, ``bench``.

Each subcommand module has ``register(subparsers)``, which adds its parsers and sets ``func`` (a
function of the parsed arguments returning the exit status). :mod:`.common` holds what they share:
one-line usage errors, file checks before any work, ``--json FILE|-``, and the exit statuses.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from .common import Parser, run

#: Subcommand modules of this package, registered in this order.
COMMANDS = ("conformance", "tokens", "interop", "bench", "export", "zoo")

EXAMPLES = """examples:
  fusion-spec conformance --backend all              every installed backend, float64 and float32
  fusion-spec tokens --preset llava-next --size 672x1344
  fusion-spec goldens export bundle/                 then: fusion-spec goldens verify bundle/ --outputs out/
  fusion-spec zoo                                    which transformers models fusion_spec covers

exit status: 0 success, 1 a check failed, 2 a usage error, 130 interrupted (Ctrl-C).
`fusion-spec COMMAND --help` explains each command with an example."""


def parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = Parser(prog="fusion-spec", epilog=EXAMPLES,
               description="The executable specification of vision-language fusion operators: conformance "
               "suite, golden files, token math, interop checks.")
    p.add_argument("--version", action="version", version=f"fusion-spec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="command")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    return run(parser(), argv)
