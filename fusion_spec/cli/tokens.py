"""``fusion-spec tokens`` and ``fusion-spec presets``: token counts, context share, a plot.

``register(subparsers)`` adds both subcommands to the main CLI; ``python -m fusion_spec.cli.tokens
--preset llava-next --size 672x1344`` runs ``tokens`` on its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import cost, files, presets, tokens
from ..errors import FusionSpecError, printable
from .common import Parser, install_hint, int_at_least, json_argument, note, one_of, output_file, printer, require, run, \
    write_json

COMMON_SIZES = ((224, 224), (336, 336), (448, 448), (672, 672), (672, 1344), (1080, 1920))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def parse_size(text: str) -> tuple[int, int]:
    """``--size``: ``HEIGHTxWIDTH`` (also ``H×W``, ``H,W``), each side in ``[1, tokens.MAX_SIDE]``."""
    parts = str(text).strip().lower().replace("×", "x").replace(",", "x").split("x")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 672x1344, got {printable(text, 40)!r}")
    sides = []
    for side, part in zip(("height", "width"), parts):
        try:
            value = int(part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{side} must be a whole number of pixels, "
                                             f"got {printable(part.strip(), 40)!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{side} must be >= 1, got {value}")
        if value > tokens.MAX_SIDE:
            raise argparse.ArgumentTypeError(f"{side} must be <= {tokens.MAX_SIDE}, got {value}")
        sides.append(value)
    return sides[0], sides[1]


#: ``--context`` suffixes: 1K = 1024 tokens, 1M = 1024 * 1024 tokens.
SUFFIXES = {"K": 1024, "M": 1024 * 1024}


def parse_context(text: str) -> int:
    """``--context``: a token count (``5000``) or ``4K``, ``128K``, ``1M`` (K = 1024, M = 1024 * 1024), at
    most ``cost.EXACT`` (2**53)."""
    s = str(text).strip().upper()
    scale = SUFFIXES.get(s[-1:], 1)
    try:
        value = int(s[:-1] if scale > 1 else s) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a token count such as 5000, 4K, 128K or 1M, got {printable(text, 40)!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 token, got {value}")
    if value > cost.EXACT:
        raise argparse.ArgumentTypeError(f"must be <= {cost.EXACT} tokens, got {value}")
    return value


def run_tokens(args: argparse.Namespace) -> int:
    """Print, per preset, the tokens of one image of ``--size`` and the share of ``--context`` that
    ``--images`` such images take; optionally plot tokens against resolution."""
    height, width = args.size
    context, out = args.context, printer(args)
    names = args.preset or presets.names()
    if args.plot:
        require("matplotlib", "--plot")  # before any output, not after the table
        plot_format(args.plot)
    rows, records = [], []
    for name in names:
        b = tokens.breakdown(name, height, width)
        ctx = b.context_tokens * args.images
        budget = cost.context_budget(b.context_tokens, args.images, context)
        kind = "cross-attn K/V" if b.cross_attention_tokens else "in sequence"
        rows.append([name, str(b.visual_tokens), kind, str(b.marker_tokens), str(ctx),
                     f"{100 * budget.fraction:.1f}%", "yes" if budget.fits else "NO", b.detail])
        records.append({"preset": name, "visual_tokens": b.visual_tokens, "where": kind,
                        "marker_tokens": b.marker_tokens, "context_tokens": ctx, "share": budget.fraction,
                        "fits": budget.fits, "how": b.detail})
    out(f"image {height}x{width} (height x width), {args.images} image(s), context {context}")
    out(_table(rows, ["preset", "tokens", "where", "markers", "context used", "share", "fits", "how"]))
    if args.plot:
        plot(names, args.plot, aspect=width / height)
        note(f"wrote {args.plot}")
    if args.json:
        write_json(args.json, {"height": height, "width": width, "images": args.images, "context": context,
                               "presets": records})
    if args.layout:
        for name in names:
            print(f"\n{name}: " + format_layout(name, height, width))
    return 0


def format_layout(name: str, height: int, width: int) -> str:
    """The preset's token layout for one image on one line: ``<img> <IMG_CONTEXT>x256 </img>``
    (text in quotes; cross-attention presets have none)."""
    try:
        runs = tokens.layout(name, height, width)
    except FusionSpecError:
        return "(no layout: cross-attention, or not written down)"
    return " ".join((repr(r.token) if r.kind == "text" else r.token) + (f"x{r.count}" if r.count > 1 else "")
                    for r in runs)


def run_presets(args: argparse.Namespace) -> int:
    """List the presets with their per-image token counts at common sizes and fusion parameters."""
    rows, records = [], []
    for name in presets.names():
        p = presets.get(name)
        counts = [tokens.count(p, h, w) for h, w in COMMON_SIZES]
        rows.append([name, p.family, f"{p.num_params() / 1e6:.1f}M", *map(str, counts), p.checkpoint])
        records.append({"preset": name, "fusion": p.family, "params": p.num_params(), "checkpoint": p.checkpoint,
                        "tokens": {f"{h}x{w}": c for (h, w), c in zip(COMMON_SIZES, counts)}})
    header = ["preset", "fusion", "params", *(f"{h}x{w}" for h, w in COMMON_SIZES), "checkpoint"]
    out = printer(args)
    out("visual tokens per image (height x width); cross-attention models: keys/values per image")
    out(_table(rows, header))
    if args.json:
        write_json(args.json, records)
    return 0


def plot_format(path: str) -> str:
    """The image format of ``path``'s extension, if matplotlib writes it; else :class:`FusionSpecError`
    naming ``--plot`` (checked before anything is drawn or printed)."""
    from matplotlib.figure import Figure
    supported = Figure().canvas.get_supported_filetypes()
    fmt = os.path.splitext(str(path))[1][1:].lower()
    if fmt not in supported:
        raise FusionSpecError("fusion-spec tokens", "--plot", "a file name ending in one of "
                              + ", ".join("." + f for f in sorted(supported)), repr(str(path)))
    return fmt


def plot(names: Sequence[str], path: str, aspect: float = 1.0, max_side: int = 2048) -> None:
    """Draw tokens against image height (width = height * aspect) for ``names`` into ``path`` (its
    extension names the format: :func:`plot_format`), written by :func:`fusion_spec.files.write`.

    matplotlib is an optional dependency (``pip install fusion-spec[plot]``), imported only here.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FusionSpecError("fusion-spec tokens", "--plot", f"matplotlib installed ({install_hint('matplotlib')})",
                              "matplotlib is not installed") from None
    fmt = plot_format(path)
    sides = list(range(28, max_side + 1, 28))
    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        for name in names:
            ys = []
            for h in sides:
                try:
                    ys.append(tokens.count(name, h, max(1, round(h * aspect))))
                except FusionSpecError:
                    ys.append(float("nan"))
            ax.plot(sides, ys, label=name)
        ax.set_xlabel(f"image height in px (width = {aspect:g} x height)")
        ax.set_ylabel("visual tokens per image")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        files.write(path, lambda f: fig.savefig(f, format=fmt, dpi=120), op="fusion-spec tokens", arg="--plot")
    finally:
        plt.close(fig)


TOKENS_EXAMPLES = """examples:
  fusion-spec tokens --size 672x1344                         every preset, one image, 4K context
  fusion-spec tokens --preset llava-next --preset qwen2-vl --size 1344x672 --images 4 --context 32K
  fusion-spec tokens --preset qwen2-vl --size 448x448 --plot tokens.png --json -"""

PRESETS_EXAMPLES = """examples:
  fusion-spec presets
  fusion-spec presets --json presets.json"""


def add_tokens_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tokens", help="visual tokens of an image per preset, and its share of a context",
                              description=run_tokens.__doc__, epilog=TOKENS_EXAMPLES)
    _tokens_arguments(p)
    p.set_defaults(func=run_tokens)
    return p


def _tokens_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", action="append", type=one_of("preset", presets.names(), " (fusion-spec presets lists them)"),
                   help="a real model's preset, e.g. --preset llava-next (repeatable; default: all; "
                   "`fusion-spec presets` lists them)")
    p.add_argument("--size", required=True, type=parse_size, metavar="HxW",
                   help="image height x width in pixels, e.g. --size 672x1344")
    p.add_argument("--images", type=int_at_least(0), default=1, metavar="N",
                   help="images in the context, e.g. --images 4 (default 1)")
    p.add_argument("--context", type=parse_context, default=4096, metavar="TOKENS",
                   help="context window: a token count or 4K, 32K, 128K, 1M (K = 1024), e.g. --context 32K "
                   "(default 4K)")
    p.add_argument("--plot", metavar="FILE.png", type=output_file,
                   help="also draw tokens against resolution, e.g. --plot tokens.png (needs the [plot] extra)")
    p.add_argument("--layout", action="store_true",
                   help="also print the tokens the processor inserts for the image, in order, e.g. --layout")
    json_argument(p, "the table")


def add_presets_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("presets", help="list real-model presets with token counts at common sizes",
                              description=run_presets.__doc__, epilog=PRESETS_EXAMPLES)
    json_argument(p, "every preset")
    p.set_defaults(func=run_presets)
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tokens`` and ``presets`` subcommands (each sets ``func`` to call with the parsed args)."""
    add_tokens_parser(subparsers)
    add_presets_parser(subparsers)


add_parser = register


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone ``tokens`` command: ``python -m fusion_spec.cli.tokens --preset P --size HxW``."""
    parser = Parser(prog="fusion-spec tokens", description=run_tokens.__doc__, epilog=TOKENS_EXAMPLES)
    _tokens_arguments(parser)
    parser.set_defaults(func=run_tokens)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
