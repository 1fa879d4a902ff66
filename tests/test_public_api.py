"""The public API the docs describe is there: every name of each module's ``__all__``, every entry of the
API reference (docs/api.md) and every ``fusion_spec`` name the pages and the README mention resolves."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

from mutation import MUTANTS  # tests/mutation.py: its mutant ids (``tokens.llava_next_...``) are not API names

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
#: The modules the docs refer to by their short name (``tokens.count``, ``presets.get``).
SHORT = ("tokens", "presets", "cost", "ops", "specs", "interop")
#: File name endings that follow a module's name in a path or a link (``tokens.md``), not an attribute.
FILE_ENDINGS = {"md", "py", "png", "json", "safetensors", "sha256", "onnx"}


def resolve(dotted: str) -> Any:
    """The object a dotted name refers to: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def unresolved(names: set[str]) -> list[str]:
    bad = []
    for name in sorted(names):
        try:
            resolve(name)
        except (ImportError, AttributeError):
            bad.append(name)
    return bad


def modules_with_all() -> list[str]:
    """Every module of the package that declares ``__all__`` (read from the source)."""
    found = []
    for path in sorted((ROOT / "fusion_spec").rglob("*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
               for node in tree.body):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_name_in_each_modules_all_resolves():
    modules = modules_with_all()
    assert {"fusion_spec", "fusion_spec.ops", "fusion_spec.specs", "fusion_spec.tokens", "fusion_spec.interop",
            "fusion_spec.conformance"} <= set(modules)
    names = {f"{m}.{name}" for m in modules for name in importlib.import_module(m).__all__}
    assert unresolved(names) == []


def test_every_entry_of_the_api_reference_resolves():
    text = (ROOT / "docs" / "api.md").read_text()
    names = set()
    for entry, options in re.findall(r"^::: (\S+)\n((?:    .*\n)*)", text, re.M):
        names.add(entry)
        for members in re.findall(r"members: \[([^\]]*)\]", options):
            names |= {f"{entry}.{m.strip()}" for m in members.split(",")}
    assert len(names) > 20
    assert unresolved(names) == []


def test_every_name_the_docs_mention_resolves():
    """``fusion_spec.<...>``, ``from fusion_spec... import a, b`` and ``tokens.count``-style names in
    docs/ and README.md, in code and prose alike."""
    mutant_ids = {m.id for m in MUTANTS}
    names = set()
    for page in PAGES:
        text = page.read_text()
        names |= set(re.findall(r"\bfusion_spec(?:\.[A-Za-z_]\w*)+", text))
        for module, imported in re.findall(r"^\s*from (fusion_spec(?:\.\w+)*) import ([^\n#]+)", text, re.M):
            names |= {f"{module}.{n}" for n in re.split(r"[\s,()]+", imported) if n and n != "as"}
        for module, name in re.findall(r"(?<![\w./-])(%s)\.([A-Za-z_]\w*)" % "|".join(SHORT), text):
            if f"{module}.{name}" not in mutant_ids:
                names.add(f"fusion_spec.{module}.{name}")
    names = {n for n in names if n.rsplit(".", 1)[1] not in FILE_ENDINGS}
    assert {"fusion_spec.tokens.count", "fusion_spec.tokens.layout", "fusion_spec.presets.get"} <= names
    assert unresolved(names) == []
