"""Mutation testing (tests/mutation.py): the curated slips are well-formed, docs/mutation.md lists
every one of them as killed, and (slow) the command reproduces the documented tables."""

from __future__ import annotations

import ast

import mutation  # tests/mutation.py
import pytest
from mutation import MUTANTS, ROOT, TESTS

from fusion_spec.conformance.bundle import Bundle


def test_mutants_are_unique_and_name_a_family_and_tests():
    assert len({m.id for m in MUTANTS}) == len(MUTANTS)
    families = {e["family"] for e in Bundle().cases}
    for m in MUTANTS:
        assert m.family in families | {""}, m.id
        assert (m.group or m.family) in TESTS, m.id
    for selection in TESTS.values():
        for path in selection.split():
            assert (ROOT / path.split("::")[0]).is_file(), path


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_mutant_applies_to_the_current_code_and_compiles(mutant):
    """A mutant whose text no longer occurs once is stale: update it with the code it mutates."""
    source = (ROOT / mutant.file).read_text()
    mutated = mutation.apply(source, mutant)
    assert mutated != source
    ast.parse(mutated)


def test_documented_tables_list_every_mutant_and_all_are_killed():
    """docs/mutation.md is regenerated (``python -m tests.mutation --write-docs``) when a mutant is added."""
    matrix, report = (mutation.statuses(t) for t in mutation.documented())
    assert [row[0] for row in matrix] == [f"`{m.id}`" for m in MUTANTS if m.family]
    assert [row[0] for row in report] == [f"`{m.id}`" for m in MUTANTS]
    # float32, bfloat16 and float16: every operator mutant killed in each
    assert all(row[2:5] == ("killed",) * 3 for row in matrix), [row[0] for row in matrix if row[2:5] != ("killed",) * 3]
    assert all(row[2].startswith("`tests/") for row in report), [row[0] for row in report if row[2] == "SURVIVES"]


@pytest.mark.slow
def test_every_mutant_is_killed_and_the_docs_show_it():
    """Runs the whole command (minutes): no survivor in float32 or in the tests, and the same kill
    statuses and killing tests as docs/mutation.md."""
    results = mutation.run(MUTANTS, log=lambda line: None)
    assert mutation.failures(results) == []
    matrix, report = mutation.documented()
    assert mutation.statuses(mutation.matrix_table(results)) == mutation.statuses(matrix)
    assert mutation.statuses(mutation.report_table(results)) == mutation.statuses(report)
