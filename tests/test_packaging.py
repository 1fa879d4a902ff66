"""The wheel and the sdist that ``python -m build`` makes install into a fresh venv and pass the quick start.

Built from a copy of the tracked files (so the checkout gets no ``build/`` or ``*.egg-info``): the sdist
first, then the wheel from the sdist, as ``python -m build`` does, which proves the sdist holds
everything the wheel needs. Each is installed with ``--no-deps`` into its own venv made without the
system's site-packages, next to numpy and array-api-compat from the package index (at the lock's
versions), and ``fusion-spec conformance --backend numpy --summary-only`` must pass every case from a
directory outside the checkout, on the bundle inside the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"


def _run(*argv: str | Path, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _tracked_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted in the working tree but not yet in git is left out
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (the tracked files are what is packaged)")
    source = _tracked_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, source, cwd=source)
    return out


def _fresh_venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(where)
    return where / "bin"


@pytest.mark.slow  # builds both artifacts and installs each into its own venv: about a minute
@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_built_artifact_installs_in_a_fresh_venv_and_passes_the_quick_start(dist, kind, tmp_path):
    artifact = next(dist.glob("*.whl" if kind == "wheel" else "*.tar.gz"))
    if kind == "wheel":
        names = set(zipfile.ZipFile(artifact).namelist())
        for inside in ("fusion_spec/conformance/bundle/manifest.json", "fusion_spec/conformance/baselines.json",
                       "fusion_spec/py.typed"):
            assert inside in names, inside
        assert sum(n.startswith("fusion_spec/conformance/bundle/") and n.endswith(".safetensors") for n in names) == \
            len(list((ROOT / "fusion_spec" / "conformance" / "bundle").glob("*.safetensors")))
    bin_dir = _fresh_venv(tmp_path / "venv")
    pip = [bin_dir / "python", "-m", "pip", "install", "-q", "-c", CONSTRAINTS]
    _run(*pip, "numpy", "array-api-compat", cwd=tmp_path)
    _run(*pip, "--no-deps", artifact, cwd=tmp_path)
    probe = _run(bin_dir / "python", "-c", "import fusion_spec, sys; print(fusion_spec.__file__)", cwd=tmp_path)
    assert str(tmp_path / "venv") in probe.stdout, probe.stdout  # the installed copy, not the checkout
    done = _run(bin_dir / "fusion-spec", "conformance", "--backend", "numpy", "--summary-only", cwd=tmp_path)
    assert " 0 failed" in done.stdout, done.stdout
