"""Every python code block in the docs and README runs; the site builds with --strict."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks():
    for page in PAGES:
        if page.exists():
            for i, code in enumerate(BLOCK.findall(page.read_text())):
                yield pytest.param(code, id=f"{page.relative_to(ROOT)}#{i}")


@pytest.mark.parametrize("code", list(blocks()))
def test_code_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    mkdocs = shutil.which("mkdocs") or str(pathlib.Path(sys.executable).with_name("mkdocs"))
    out = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_figures_script_draws_every_figure(tmp_path):
    """docs/figures.py runs on the current code and writes each PNG that docs/tokens.md embeds."""
    pytest.importorskip("matplotlib")
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "figures.py"), str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    embedded = set(re.findall(r"\(img/([\w.-]+\.png)\)", (ROOT / "docs" / "tokens.md").read_text()))
    assert embedded, "docs/tokens.md embeds no figure"
    for name in embedded:
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size < 200_000, (name, png.stat().st_size)
        assert (ROOT / "docs" / "img" / name).exists(), f"docs/img/{name} not committed"


def _case_tables():
    import importlib.util
    spec = importlib.util.spec_from_file_location("case_tables", ROOT / "docs" / "case_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_operator_pages_case_tables_are_the_manifests():
    """Every operator page (docs/ops/*.md) has its bundle-case tables, each exactly what
    docs/case_tables.py writes from the bundle's manifest (rerun it after changing the bundle or a spec
    field's docstring); every case of the bundle is in exactly one table, so every family is on a page."""
    from fusion_spec.conformance.bundle import Bundle
    tables = _case_tables()
    manifest = Bundle().manifest
    shown = []
    for page in tables.pages():
        text = page.read_text()
        assert tables.MARKER.search(text), f"{page.name} has no bundle-cases table"
        assert tables.render(text, manifest) == text, f"{page.name} is out of date: run python docs/case_tables.py"
        shown += tables.shown(text, manifest)
    ids = [e["id"] for e in manifest["cases"]]
    assert sorted(shown) == sorted(ids), (sorted(set(ids) - set(shown)), sorted({i for i in shown if shown.count(i) > 1}))
    assert {e["family"] for e in manifest["cases"]} <= {e["family"] for e in manifest["cases"] if e["id"] in shown}


def test_case_tables_name_every_config_field_with_its_docstring():
    """A spec field's meaning comes from its docstring: the table shows it, and a field without one stops
    the script (so a new spec cannot reach the pages with an undocumented field)."""
    import dataclasses

    from fusion_spec import specs
    from fusion_spec.specs.base import Spec, field_docs
    tables = _case_tables()
    for name in dir(specs):
        cls = getattr(specs, name)
        if isinstance(cls, type) and issubclass(cls, Spec) and cls is not Spec:
            missing = [f.name for f in dataclasses.fields(cls) if f.name not in field_docs(cls)]
            assert not missing, f"{name}: write a docstring under each of {missing}"
    page = (ROOT / "docs" / "ops" / "connectors.md").read_text()
    assert f"| `patches_per_image` | {field_docs(specs.Gemma3Projector)['patches_per_image']} |" in page

    @dataclasses.dataclass(frozen=True)
    class Undocumented(Spec):
        width: int = 1
    entry = {"id": "x.y", "family": "x", "kind": "spec", "op": "Undocumented", "function": "u", "config": {"width": 2},
             "inputs": [], "outputs": [{"name": "out", "shape": [1], "dtype": "float64"}], "runtime": {}}
    setattr(specs, "Undocumented", Undocumented)
    try:
        with pytest.raises(SystemExit, match="Undocumented has config fields without a docstring: \\['width'\\]"):
            tables.table([entry], "x", None)
    finally:
        delattr(specs, "Undocumented")


def test_quick_start_matches_readme():
    """The docs' quick-start commands are the README's, character for character."""
    index = (ROOT / "docs" / "index.md").read_text()
    quick = index.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^```sh\n(.*?)^```", quick, re.S | re.M)
    assert commands, "docs/index.md has no ```sh block under 'Quick start'"
    readme = (ROOT / "README.md").read_text()
    for command in commands:
        assert command in readme, command


def test_ci_runs_the_readme_test_command_with_the_lock():
    """.ci/run runs the README's test command verbatim, and that command installs the locked versions."""
    readme = (ROOT / "README.md").read_text()
    commands = [c.strip() for c in re.findall(r"^```sh\n(.*?)^```", readme, re.S | re.M) if "pytest" in c]
    assert len(commands) == 1, commands
    assert commands[0] in (ROOT / ".ci" / "run").read_text()
    assert "-c .ci/constraints.txt" in commands[0]
    locked = {line.split("==")[0].lower() for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    assert {"transformers", "tokenizers", "torch", "jax", "numpy"} <= locked
