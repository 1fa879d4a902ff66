"""``tests/equivalent_mutants.json`` must describe the current code.

Each entry names a mutant mutmut makes (``python -m tests.mutmut_areas``) that no input can tell from the
original, by area, file, function and the original and mutated source text. An entry whose function or
original line is gone, or whose mutant mutmut no longer makes, would excuse a mutant that does not exist
while a new survivor stays unexplained; it fails here and must be re-reviewed with the code.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from tests import mutmut_areas

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = mutmut_areas.load_equivalent()
FIELDS = {"area", "file", "function", "original", "mutated", "why"}


def _functions(path: Path) -> dict[str, str]:
    """``name`` or ``Class.name`` -> source text of every function and method of the file."""
    text = path.read_text()
    tree = ast.parse(text)
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = ast.get_source_segment(text, node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{node.name}.{item.name}"] = ast.get_source_segment(text, item)
    return out


def _id(e: dict) -> str:
    return f"{e.get('area')}:{e.get('function')}:{e.get('mutated')}"


def test_the_file_is_well_formed_and_has_no_duplicates():
    for e in ENTRIES:
        assert set(e) == FIELDS, (_id(e), sorted(set(e) ^ FIELDS))
        assert all(isinstance(e[k], str) for k in FIELDS), _id(e)
        assert e["area"] in mutmut_areas.AREAS and mutmut_areas.AREAS[e["area"]].source == e["file"], _id(e)
        assert e["original"] != e["mutated"], _id(e)
        assert len(e["why"].split()) >= 8, f"{_id(e)}: say why no input can tell it from the code"
    keys = [(e["area"], e["function"], e["original"], e["mutated"]) for e in ENTRIES]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_each_entry_still_matches_the_code(entry):
    """The function exists and still holds every original line of the mutant (stripped, in order)."""
    functions = _functions(ROOT / entry["file"])
    assert entry["function"] in functions, f"{entry['function']} is no longer in {entry['file']}"
    lines = [line.strip() for line in functions[entry["function"]].splitlines()]
    want = entry["original"].splitlines()
    assert any(lines[i:i + len(want)] == want for i in range(len(lines))), \
        f"{entry['file']}::{entry['function']} no longer has {entry['original']!r}"


@pytest.mark.skipif(importlib.util.find_spec("mutmut") is None,
                    reason="mutmut is not installed (pip install -e .[mutation]); the text check above still runs")
def test_each_entry_is_a_mutant_mutmut_makes():
    """Stronger: mutmut, asked for the file's mutants now (no test is run), still makes each one."""
    by_file: dict[str, list[dict]] = {}
    for e in ENTRIES:
        by_file.setdefault(e["file"], []).append(e)
    for file, entries in by_file.items():
        made = {(m["function"], m["original"], m["mutated"])
                for m in mutmut_areas.file_mutants(file, (ROOT / file).read_text())}
        stale = [_id(e) for e in entries if (e["function"].rpartition(".")[2], e["original"], e["mutated"]) not in made]
        assert not stale, f"mutmut no longer makes these mutants of {file}: {stale}"
