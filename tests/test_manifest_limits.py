"""The manifest's documented caps exactly at the limit and one past it (the hostile-input tests probe
them far past: 60 MB, 1.4M values, 2001 cases): MAX_MANIFEST_BYTES (8 MiB), MAX_MANIFEST_VALUES
(500,000, counted on the bytes before parsing) and MAX_CASES (2,000)."""

from __future__ import annotations

import pytest

from fusion_spec.conformance import bundle as b
from fusion_spec.conformance.verify import export
from fusion_spec.errors import FusionSpecError


def test_the_documented_caps():
    assert (b.MAX_MANIFEST_BYTES, b.MAX_MANIFEST_VALUES, b.MAX_CASES) == (8 << 20, 500_000, 2_000)


def test_boundary_a_manifest_of_exactly_max_values_is_parsed_and_one_more_is_refused():
    n = b.MAX_MANIFEST_VALUES
    at = b"[" + b"0," * (n - 2) + b"0]"  # n - 2 commas, one '[', plus one: n values
    assert len(b.parse_manifest(at, "m")) == n - 1
    with pytest.raises(FusionSpecError) as info:
        b.parse_manifest(b"[" + b"0," * (n - 1) + b"0]", "m")
    e = info.value
    assert (e.op, e.arg, e.expected, e.got) == ("conformance", "m", f"a manifest of at most {n} JSON values",
                                                f"up to {n + 1} (counted before parsing)")


def test_boundary_exactly_max_cases_pass_the_count_and_one_more_is_refused():
    with pytest.raises(FusionSpecError) as info:  # 2000: past the count, refused for the first case's content
        b.check_cases([{}] * b.MAX_CASES)
    assert info.value.arg.startswith("manifest.json case 0")
    with pytest.raises(FusionSpecError) as info:
        b.check_cases([{}] * (b.MAX_CASES + 1))
    assert (info.value.arg, info.value.expected, info.value.got) == \
        ("manifest.json cases", f"at most {b.MAX_CASES} cases", b.MAX_CASES + 1)


@pytest.mark.parametrize("extra", [0, 1])
def test_boundary_a_manifest_of_exactly_max_bytes_is_read(tmp_path, extra):
    d = export(tmp_path / "b")
    size = b.MAX_MANIFEST_BYTES + extra
    (d / "manifest.json").write_bytes(b"{" + b" " * (size - 2) + b"}")
    with pytest.raises(FusionSpecError) as info:
        b.Bundle(d)
    said = str(info.value)
    assert (f"at most {b.MAX_MANIFEST_BYTES} bytes" in said) == bool(extra), said
