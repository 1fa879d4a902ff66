"""``fusion-spec zoo``: which of the installed transformers' image-text-to-text models fusion_spec covers.

The coverage is derived (:mod:`fusion_spec.interop.zoo`): each model is built from its default config
on PyTorch's meta device, its fusion modules are located and converted by the registry.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from ..errors import printable
from .common import json_argument, note, printer, require, write_json

EXAMPLES = """examples:
  fusion-spec zoo                               every model type of the image-text-to-text mapping
  fusion-spec zoo --model-type qwen3_vl_moe --model-type aria
  fusion-spec zoo --json zoo.json               also the whole report as JSON (pieces, reasons, sequence side)
  fusion-spec zoo --markdown                    the table as Markdown (docs/zoo.md is this output)

Statuses: covered (every fusion module converts to a spec), not covered (the mechanism it lacks),
refused (every class converts, but the default config builds a module the converter refuses: an
inconsistent default), no fusion (text-only, VQ codes, proteins), not built (the default config
builds neither the model nor its fusion classes). Sequence: the token counts and layout (a preset of
the model type, or of one with the same processor) and the positions (1-D, or an M-RoPE
get_rope_index identical to one fusion_spec reproduces).

exit status: 0 the report was written, 2 a usage error (transformers or torch missing)."""

STATUSES = ("covered", "refused", "not covered", "not built", "no fusion")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="coverage of the installed transformers' image-text-to-text models",
                       description="For every model type of transformers' image-text-to-text mapping: its fusion "
                       "modules, whether each converts to a fusion_spec spec (or the mechanism it lacks), and "
                       "whether its sequence side (token counts, layout, positions) is covered. Derived by "
                       "building each model from its default config on the meta device (needs torch and "
                       "transformers: the [interop] extra).", epilog=EXAMPLES)
    p.add_argument("--model-type", action="append", metavar="TYPE",
                   help="only this model type (repeatable), e.g. --model-type qwen3_vl_moe")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown, e.g. --markdown")
    json_argument(p, "the report (every model type's pieces and sequence side)")
    p.set_defaults(func=_zoo)


def _zoo(args: argparse.Namespace) -> int:
    require("torch", "zoo", "interop")
    transformers = require("transformers", "zoo", "interop")
    from ..interop import zoo

    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as MAPPING
    unknown = [t for t in args.model_type or () if t not in MAPPING]
    if unknown:
        from .common import UsageError
        raise UsageError(f"zoo: no model type {', '.join(map(repr, unknown))} in transformers' image-text-to-text "
                         "mapping (fusion-spec zoo lists them)")
    if args.json != "-" and not args.markdown:
        note(f"building {len(args.model_type or MAPPING)} models on the meta device (about a minute for all)")
    report = zoo.survey(args.model_type)
    out = printer(args)
    out(markdown(report, transformers.__version__) if args.markdown else table(report, transformers.__version__))
    if args.json:
        write_json(args.json, {"transformers": transformers.__version__, "summary": summary(report),
                               "models": [r.as_dict() for r in report]})
    return 0


def summary(report: list[Any]) -> dict[str, Any]:
    """Counts by status, and how many covered model types have their sequence side covered too."""
    counts = Counter(r.status for r in report)
    return {"model_types": len(report), **{s: counts.get(s, 0) for s in STATUSES},
            "covered_with_sequence_side": sum(r.status == "covered" and r.sequence_covered for r in report)}


def headline(report: list[Any], version: str) -> str:
    s = summary(report)
    return (f"transformers {version}: {s['covered']} of {s['model_types']} image-text-to-text model types covered "
            f"({s['covered_with_sequence_side']} with their sequence side), {s['refused']} refused at an inconsistent "
            f"default config, {s['not covered']} not covered, {s['no fusion']} with no fusion piece"
            + (f", {s['not built']} not built" if s["not built"] else ""))


def _classes(r: Any) -> str:
    counts = Counter(p.cls for p in r.pieces)
    return ", ".join(f"{c} x{n}" if n > 1 else c for c, n in counts.items()) or "-"


def _fusion(r: Any) -> str:
    if r.status == "covered":
        return "covered: " + ", ".join(dict.fromkeys(p.spec for p in r.pieces))
    if r.status == "no fusion":
        return "no fusion piece: " + r.note
    return f"{r.status}: " + "; ".join(r.missing)


def _sequence(r: Any) -> str:
    return f"tokens: {r.tokens}; positions: {r.positions}"


def rows(report: list[Any]) -> list[list[str]]:
    return [[r.model_type, _classes(r), _fusion(r), _sequence(r)] for r in report]


def table(report: list[Any], version: str) -> str:
    """The report as a plain-text table, one model type a line, then the headline."""
    header = ["model type", "fusion module classes", "fusion", "sequence side"]
    body = [[printable(c, 90) for c in row] for row in rows(report)]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body]]
    return "\n".join(lines + ["", headline(report, version)])


def markdown(report: list[Any], version: str) -> str:
    """The report as a Markdown table under its headline (``docs/zoo.md``)."""
    def cell(text: str) -> str:
        return printable(text).replace("|", "\\|")
    lines = [headline(report, version) + ".", "", "| model type | fusion module classes | fusion | sequence side |",
             "|---|---|---|---|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows(report)]
    return "\n".join(lines)
