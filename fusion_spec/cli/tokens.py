"""``fusion-spec tokens`` and ``fusion-spec presets``: token counts, context share, a plot.

``register(subparsers)`` adds both subcommands to the main CLI; ``python -m fusion_spec.cli.tokens
--preset llava-next --size 672x1344`` runs ``tokens`` on its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import cost, presets, tokens
from ..errors import FusionSpecError

COMMON_SIZES = ((224, 224), (336, 336), (448, 448), (672, 672), (672, 1344), (1080, 1920))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def run_tokens(args: argparse.Namespace) -> int:
    """Print, per preset, the tokens of one image of ``--size`` and the share of ``--context`` that
    ``--images`` such images take; optionally plot tokens against resolution."""
    height, width = tokens.parse_size(args.size)
    context = cost.parse_context(args.context)
    names = args.preset or presets.names()
    rows = []
    for name in names:
        b = tokens.breakdown(name, height, width)
        ctx = b.context_tokens * args.images
        budget = cost.context_budget(b.context_tokens, args.images, context)
        kind = "cross-attn K/V" if b.cross_attention_tokens else "in sequence"
        rows.append([name, str(b.visual_tokens), kind, str(b.marker_tokens), str(ctx),
                     f"{100 * budget.fraction:.1f}%", "yes" if budget.fits else "NO", b.detail])
    print(f"image {height}x{width} (height x width), {args.images} image(s), context {context}")
    print(_table(rows, ["preset", "tokens", "where", "markers", "context used", "share", "fits", "how"]))
    if args.plot:
        plot(names, args.plot, aspect=width / height)
        print(f"wrote {args.plot}")
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
    rows = []
    for name in presets.names():
        p = presets.get(name)
        counts = [str(tokens.count(p, h, w)) for h, w in COMMON_SIZES]
        rows.append([name, p.family, f"{p.num_params() / 1e6:.1f}M", *counts, p.checkpoint])
    header = ["preset", "fusion", "params", *(f"{h}x{w}" for h, w in COMMON_SIZES), "checkpoint"]
    print("visual tokens per image (height x width); cross-attention models: keys/values per image")
    print(_table(rows, header))
    return 0


def plot(names: Sequence[str], path: str, aspect: float = 1.0, max_side: int = 2048) -> None:
    """Draw tokens against image height (width = height * aspect) for ``names`` into ``path``.

    matplotlib is an optional dependency (``pip install fusion-spec[plot]``), imported only here.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FusionSpecError("fusion-spec tokens", "--plot", "matplotlib installed (pip install matplotlib)",
                              "matplotlib is not installed") from None
    sides = list(range(28, max_side + 1, 28))
    fig, ax = plt.subplots(figsize=(8, 5))
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_tokens_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tokens", help="visual tokens of an image per preset, and its share of a context")
    _tokens_arguments(p)
    p.set_defaults(func=run_tokens)
    return p


def _tokens_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", action="append", choices=presets.names(),
                   help="preset (repeatable; default: all)")
    p.add_argument("--size", required=True, help="image size HEIGHTxWIDTH, e.g. 672x1344")
    p.add_argument("--images", type=int, default=1, help="number of images (default 1)")
    p.add_argument("--context", default="4K", help="context window: 4K, 8K, 32K, 128K or a number (default 4K)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw tokens against resolution (needs matplotlib)")
    p.add_argument("--layout", action="store_true",
                   help="also print the tokens the processor inserts for the image, in order")


def add_presets_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("presets", help="list real-model presets with token counts at common sizes")
    p.set_defaults(func=run_presets)
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tokens`` and ``presets`` subcommands (each sets ``func`` to call with the parsed args)."""
    add_tokens_parser(subparsers)
    add_presets_parser(subparsers)


add_parser = register


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone ``tokens`` command: ``python -m fusion_spec.cli.tokens --preset P --size HxW``."""
    parser = argparse.ArgumentParser(prog="fusion-spec tokens", description=run_tokens.__doc__)
    _tokens_arguments(parser)
    args = parser.parse_args(argv)
    if args.images < 0:
        parser.error("--images must be >= 0")
    try:
        return run_tokens(args)
    except FusionSpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
