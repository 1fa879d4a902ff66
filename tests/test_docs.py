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
