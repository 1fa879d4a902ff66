"""Write each operator page's tables of its bundle cases, from the bundle's manifest.json.

    python docs/case_tables.py           # rewrite the tables in docs/ops/*.md
    python docs/case_tables.py --check   # exit 1 when a page is out of date (what tests/test_docs.py checks)

A page asks for a table with a marker line and gets it written up to the closing marker::

    <!-- bundle-cases: mrope -->                    every case of the family mrope
    <!-- bundle-cases: presets op=QFormer -->       only its cases of that spec class or ops function
    <!-- /bundle-cases -->

Each table gives every case's inputs and outputs (name, dtype, shape in the case file, axis names from
``fusion_spec.conformance.axes``), runtime arguments and the config fields that differ from the spec's
defaults; below it, every config field of the specs in the table with its meaning, which is the field's
own docstring in ``fusion_spec/specs`` (``fusion_spec.specs.base.field_docs``), and its default. A field
without a docstring stops the script. Not copied into the site (``exclude_docs`` in mkdocs.yml).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "ops"
MARKER = re.compile(r"^<!-- bundle-cases: (?P<family>[\w.-]+)(?: op=(?P<ops>[\w,]+))? -->\n(?P<body>.*?)"
                    r"^<!-- /bundle-cases -->$", re.S | re.M)
NOTICE = "<!-- written by docs/case_tables.py from the bundle's manifest.json: do not edit by hand -->"


def selected(manifest: Mapping[str, Any], family: str, ops: str | None) -> list[Mapping[str, Any]]:
    """The manifest's cases of ``family`` (and of the comma-separated ``ops`` when given), in bundle order."""
    wanted = None if ops is None else set(ops.split(","))
    return [e for e in manifest["cases"] if e["family"] == family and (wanted is None or e["op"] in wanted)]


def _code(text: Any) -> str:
    return f"`{text}`"


def _value(v: Any) -> str:
    return json.dumps(v, separators=(", ", ": ")) if not isinstance(v, str) else repr(v)


def _tensor(t: Mapping[str, Any], keyword: bool = False) -> str:
    """``name dtype [shape] (axis names)``: the names where ``fusion_spec.conformance.axes`` lists them."""
    from fusion_spec.conformance.axes import ranked_axis_names
    shape = "[" + ", ".join(str(d) for d in t["shape"]) + "]"
    ranked = ranked_axis_names(t["name"], len(t["shape"]))
    named = f" ({', '.join(n for n, _ in ranked)})" if ranked and all(r < 2 for _, r in ranked) else ""
    return f"{_code(t['name'])} {t['dtype']} {shape}{named}" + (" keyword" if keyword else "")


def _spec_class(entry: Mapping[str, Any]) -> type | None:
    from fusion_spec import specs
    return getattr(specs, entry["op"]) if entry["kind"] == "spec" else None


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def _jsonable(v: Any) -> Any:
    return [_jsonable(x) for x in v] if isinstance(v, (tuple, list)) else v


def table(cases: list[Mapping[str, Any]], family: str, ops: str | None) -> str:
    """The markdown written between one pair of markers."""
    from fusion_spec.specs.base import field_docs
    if not cases:
        raise SystemExit(f"docs/case_tables.py: no bundle case of family {family!r}" + (f" op={ops}" if ops else ""))
    rows = []
    classes: dict[str, type] = {}
    for e in cases:
        cls = _spec_class(e)
        what = f"`{e['op']}` spec" if cls else f"`ops.{e['function']}`"
        config = ""
        if cls is not None:
            classes[cls.__name__] = cls
            defaults = _defaults(cls)
            changed = {k: v for k, v in e["config"].items() if _jsonable(defaults.get(k, object())) != v}
            config = ", ".join(f"{k}={_value(v)}" for k, v in changed.items()) or "defaults"
        notes = f"<br>{e['notes']}" if e.get("notes") else ""
        inputs = "<br>".join(_tensor(i, i.get("keyword", False)) for i in e["inputs"]) or "-"
        outputs = "<br>".join(_tensor(o) for o in e["outputs"])
        runtime = ", ".join(f"{k}={_value(v)}" for k, v in e["runtime"].items()) or "-"
        rows.append(f"| {_code(e['id'])}<br>{what}{notes} | {inputs} | {outputs} | {runtime} | {config or '-'} |")
    scope = f"family `{family}`" + (f", {', '.join(_code(o) for o in ops.split(','))}" if ops else "")
    out = [NOTICE, "",
           f"Bundle cases of {scope}: {len(cases)} (`fusion-spec goldens export DIR` writes them; shapes are the "
           "case files', axis names `fusion_spec.conformance.axes`'; config: the fields that differ from the "
           "spec's defaults).", "",
           "| case | inputs | outputs | runtime arguments | config |", "|---|---|---|---|---|", *rows]
    for name, cls in classes.items():
        docs, defaults = field_docs(cls), _defaults(cls)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
        if missing:
            raise SystemExit(f"docs/case_tables.py: {name} has config fields without a docstring: {missing} (write "
                             "one right under each field in fusion_spec/specs)")
        out += ["", f"Config fields of `{name}`:", "", "| field | meaning | default |", "|---|---|---|"]
        out += [f"| {_code(f.name)} | {docs[f.name]} | {_code(_value(_jsonable(defaults[f.name]))) if f.name in defaults else '-'} |"
                for f in dataclasses.fields(cls)]
    return "\n".join(out) + "\n"


def render(text: str, manifest: Mapping[str, Any]) -> str:
    """``text`` (a page) with the content of every marker pair rewritten."""
    def fill(m: re.Match) -> str:
        cases = selected(manifest, m["family"], m["ops"])
        head = m.group(0).split("\n", 1)[0]
        return f"{head}\n{table(cases, m['family'], m['ops'])}<!-- /bundle-cases -->"
    return MARKER.sub(fill, text)


def shown(text: str, manifest: Mapping[str, Any]) -> list[str]:
    """The ids of the cases the markers of ``text`` select, in page order."""
    return [e["id"] for m in MARKER.finditer(text) for e in selected(manifest, m["family"], m["ops"])]


def pages() -> Iterable[Path]:
    return sorted(PAGES.glob("*.md"))


def main(argv: list[str] | None = None) -> int:
    from fusion_spec.conformance.bundle import Bundle
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    manifest = Bundle().manifest
    stale = []
    for page in pages():
        text = page.read_text()
        new = render(text, manifest)
        if new != text:
            stale.append(page)
            if not check:
                page.write_text(new)
    for page in stale:
        print(f"{'out of date' if check else 'rewrote'}: {page.relative_to(ROOT)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
