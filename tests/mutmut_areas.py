"""Systematic mutation testing with mutmut, one area (one source file) at a time.

    python -m tests.mutmut_areas AREA [AREA...]      # run mutmut on those areas, print their score rows
    python -m tests.mutmut_areas --count [AREA...]   # only count the mutants (no test is run)
    python -m tests.mutmut_areas --list              # the areas, their files and test selections

Each run copies the files git knows (tracked and new, not ignored) to ``build/mutmut/AREA/`` (ignored
by git; the working tree is never edited), writes a ``setup.cfg`` there that scopes mutmut to the
area's one source file and the area's test files, and runs ``mutmut run`` in it under ``nice -n 10``.
mutmut then

1. runs the area's test files once with every function of the source file instrumented, recording
   which tests reach which function (its "stats"), and
2. runs each mutant against only the tests that reach its function (function-based test selection),
   stopping at the first failure (``pytest -x``).

The copy stays after the run, so ``cd build/mutmut/AREA && ../../../.venv/bin/mutmut show NAME`` shows
any mutant's diff and ``mutmut browse`` all of them.

A surviving mutant is either a missing test or an *equivalent* mutant (no input can tell it from the
original). The equivalent ones are listed in ``tests/equivalent_mutants.json`` with the reason, each
identified by its area, file, function and the original and mutated source text (not by mutmut's
number, which changes when a mutant is added above it); ``tests/test_equivalent_mutants.py`` checks in
the fast tier that every entry still matches the code. The score is

    killed / (mutants - equivalent)

where "killed" includes timeouts (a mutant no test reaches counts as a survivor; mutmut's "suspicious"
and "not checked" fail the run). The run prints each non-equivalent survivor's diff, a gap to close with
a test, and each entry of the equivalent file that did not survive (its reason was wrong, or the code
changed): the run fails on either.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from difflib import unified_diff
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutmut"
EQUIVALENT = ROOT / "tests" / "equivalent_mutants.json"
#: mutmut's version: the one pinned in .ci/constraints.txt and the ``mutation`` extra of pyproject.toml.
MUTMUT = "3.8.1"


@dataclasses.dataclass(frozen=True)
class Area:
    source: str  #: the one file mutated, relative to the repository root
    tests: tuple[str, ...]  #: the test files whose tests may kill its mutants (mutmut picks per function)


#: The areas run so far (docs/mutation.md, "Systematic mutation testing"): the file and the test files
#: that exercise it; each mutant runs only those of their tests that reach its function.
AREAS = {
    "tolerance": Area("fusion_spec/conformance/tolerance.py",
                      ("tests/test_mutmut_tolerance.py", "tests/test_tolerance_boundary.py",
                       "tests/test_hostile_files.py::test_error_ratio_is_never_nan")),
    "strict_json": Area("fusion_spec/conformance/strict_json.py",
                        ("tests/test_mutmut_strict_json.py",
                         "tests/test_hostile_files.py::test_strict_json_refuses_what_python_json_accepts")),
    "validate": Area("fusion_spec/validate.py", ("tests/test_mutmut_validate.py", "tests/test_validation_audit.py")),
    "files": Area("fusion_spec/files.py",
                  ("tests/test_mutmut_files.py",
                   "tests/test_hostile_inputs.py::test_the_writer_itself_refuses_fifos_links_and_directories",
                   "tests/test_hostile_files.py::test_links_out_of_the_bundle_are_refused")),
    "safetensors_io": Area("fusion_spec/conformance/safetensors_io.py",
                           ("tests/test_fuzz_bundle.py",)),  # run once, survivors not closed yet
    # a sample of ops/ for the cost estimate of the areas not run (docs/mutation.md): its own test file only
    "ops.projection": Area("fusion_spec/ops/projection.py", ("tests/test_projection_merge.py",)),
}

#: The rest of the issue's scope, not run yet: counted with ``--count`` for the cost estimate.
NOT_RUN = ("fusion_spec/ops", "fusion_spec/tokens", "fusion_spec/presets.py", "fusion_spec/conformance/bundle.py",
           "fusion_spec/conformance/verify.py", "fusion_spec/conformance/grad.py", "fusion_spec/interop",
           "fusion_spec/backends/onnx.py")

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
SURVIVED = {"survived", "no tests"}


# --- the identity of a mutant: function, original text, mutated text ------------------------------------

def function_of(mutant_name: str) -> str:
    """``Class.method`` or ``function`` of a mutmut mutant name
    (``pkg.mod.x_func__mutmut_3``, ``pkg.mod.x\u01c1Class\u01c1method__mutmut_1``)."""
    mangled = mutant_name.partition("__mutmut_")[0].rpartition(".")[2]
    if mangled.startswith("x_"):
        return mangled[2:]
    _, cls, method = mangled.split("\u01c1")
    return f"{cls}.{method}"


def changed_lines(original: str, mutated: str) -> tuple[str, str]:
    """The lines a mutant removes and adds (each stripped, joined by a newline): its stable identity."""
    a, b = original.strip().splitlines(), mutated.strip().splitlines()
    diff = list(unified_diff(a, b, lineterm="", n=0))[2:]
    removed = "\n".join(line[1:].strip() for line in diff if line.startswith("-"))
    added = "\n".join(line[1:].strip() for line in diff if line.startswith("+"))
    return removed, added


@contextlib.contextmanager
def _default_config():
    """mutmut reads its configuration from the working directory: an empty one's defaults."""
    with tempfile.TemporaryDirectory() as empty:
        Path(empty, "setup.cfg").write_text("[mutmut]\nsource_paths = fusion_spec\n")
        old = os.getcwd()
        os.chdir(empty)
        try:
            yield
        finally:
            os.chdir(old)


def file_mutants(source_path: str, code: str) -> list[dict[str, str]]:
    """Every mutant mutmut makes of ``code`` (without running anything): function, original, mutated.
    Needs mutmut (and its libcst)."""
    import libcst as cst
    from mutmut.mutation.file_mutation import create_mutations, deep_replace

    with _default_config():
        _, mutations, _, _ = create_mutations(source_path, code)
    out = []
    for m in mutations:
        fn = m.contained_by_top_level_function
        if not isinstance(fn, cst.FunctionDef):
            continue
        before = cst.Module([fn]).code
        after = cst.Module([deep_replace(fn, m.original_node, m.mutated_node)]).code
        removed, added = changed_lines(before, after)
        out.append({"function": fn.name.value, "original": removed, "mutated": added})
    return out


def load_equivalent() -> list[dict[str, str]]:
    return json.loads(EQUIVALENT.read_text())["mutants"]


def is_equivalent(entry: dict[str, str], area: str, source: str, function: str, original: str, mutated: str) -> bool:
    return (entry["area"], entry["file"], entry["function"], entry["original"], entry["mutated"]) == \
        (area, source, function, original, mutated)


# --- a run --------------------------------------------------------------------------------------------------

def _copy_tree(dest: Path) -> None:
    """The files git knows (tracked and untracked, not ignored) under fusion_spec/ and tests/."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "fusion_spec",
                             "tests", "pyproject.toml"], cwd=ROOT, check=True, capture_output=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _config(area: Area) -> str:
    tests = "".join(f"\n    {t}" for t in area.tests if (ROOT / t.partition("::")[0]).exists())
    return (f"[mutmut]\nsource_paths = fusion_spec\nonly_mutate = {area.source}\n"
            f"pytest_add_cli_args_test_selection ={tests}\n"
            "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -m\n    not slow\n")


def _mutmut() -> str:
    return str(Path(sys.executable).with_name("mutmut"))


def run(name: str, children: int) -> dict:
    area = AREAS[name]
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _copy_tree(work)
    (work / "setup.cfg").write_text(_config(area))
    command = ["nice", "-n", "10", _mutmut(), "run", "--max-children", str(children)]
    start = time.monotonic()
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
    seconds = time.monotonic() - start
    (work / "mutmut-run.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        raise SystemExit(f"mutmut failed for area {name} (log: {work / 'mutmut-run.log'})")
    return score(name, work, seconds, "mutmut " + " ".join(command[4:]))


def _diffs(work: Path, names: list[str]) -> dict[str, str]:
    """mutmut's own diff of each named mutant (run inside the copy, where its config is)."""
    script = ("import json, sys\nfrom mutmut.mutation.diff_apply import get_diff_for_mutant\n"
              "print(json.dumps({n: get_diff_for_mutant(n) for n in sys.argv[1:]}))")
    out = subprocess.run([sys.executable, "-c", script, *names], cwd=work, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def score(name: str, work: Path, seconds: float, command: str) -> dict:
    from mutmut.stats import status_by_exit_code  # noqa: PLC0415 (mutmut is optional)

    area = AREAS[name]
    meta = json.loads((work / "mutants" / (area.source + ".meta")).read_text())
    status = {k: status_by_exit_code[v] for k, v in meta["exit_code_by_key"].items()}
    survivors = sorted(k for k, s in status.items() if s in SURVIVED)
    diffs = _diffs(work, survivors) if survivors else {}
    equivalent, gaps = [], []
    entries = load_equivalent()
    for k in survivors:
        removed = "\n".join(line[1:].strip() for line in diffs[k].splitlines()[2:] if line.startswith("-"))
        added = "\n".join(line[1:].strip() for line in diffs[k].splitlines()[2:] if line.startswith("+"))
        fn = function_of(k)
        if any(is_equivalent(e, name, area.source, fn, removed, added) for e in entries):
            equivalent.append(k)
        else:
            gaps.append((k, status[k], diffs[k]))
    matched = {(e["function"], e["original"], e["mutated"]) for e in entries if e["area"] == name}
    for k in equivalent:
        d = diffs[k].splitlines()[2:]
        matched.discard((function_of(k), "\n".join(x[1:].strip() for x in d if x.startswith("-")),
                         "\n".join(x[1:].strip() for x in d if x.startswith("+"))))
    for function, original, mutated in sorted(matched):  # listed as equivalent, yet killed or not made
        print(f"\n--- listed as equivalent but did not survive: {function}: {original!r} -> {mutated!r}")
    total = len(status)
    killed = sum(s in KILLED for s in status.values())
    unknown = total - killed - len(survivors)
    row = {"area": name, "file": area.source, "mutants": total, "equivalent": len(equivalent), "killed": killed,
           "survived": len(gaps), "not checked": unknown, "stale equivalents": len(matched),
           "score": 100.0 * killed / max(total - len(equivalent), 1), "seconds": round(seconds),
           "command": f"cd build/mutmut/{name} && FUSION_SPEC_TEST_TIME_SCALE=20 nice -n 10 {command}"}
    for k, s, d in gaps:
        print(f"\n--- {s}: {k}\n{d}")
    return row


def count(paths: list[str]) -> dict[str, int]:
    """Mutants per file under ``paths`` (files or folders)."""
    from mutmut.mutation.file_mutation import mutate_file_contents

    out = {}
    for p in paths:
        files = [ROOT / p] if p.endswith(".py") else sorted((ROOT / p).rglob("*.py"))
        for f in files:
            rel = str(f.relative_to(ROOT))
            with _default_config():
                out[rel] = len(mutate_file_contents(rel, f.read_text()).mutant_names)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("areas", nargs="*", help=f"areas: {', '.join(AREAS)}")
    parser.add_argument("--count", action="store_true", help="count mutants (areas, or every NOT_RUN path)")
    parser.add_argument("--list", action="store_true", help="list the areas")
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutant workers (default 2)")
    args = parser.parse_args(argv)
    if args.list:
        for n, a in AREAS.items():
            print(f"{n}: {a.source}  <- {' '.join(a.tests)}")
        return 0
    if args.count:
        counted = count([AREAS[a].source for a in args.areas] if args.areas else list(NOT_RUN))
        for f, c in counted.items():
            print(f"{c:6d}  {f}")
        print(f"{sum(counted.values()):6d}  total")
        return 0
    unknown = [a for a in args.areas if a not in AREAS]
    if unknown or not args.areas:
        parser.error(f"name one or more areas of {', '.join(AREAS)} (unknown: {unknown})")
    os.environ.setdefault("FUSION_SPEC_TEST_TIME_SCALE", "20")  # tests/conftest.py: the trampolines' cost
    failed = False
    for a in args.areas:
        row = run(a, args.max_children)
        print("\n" + json.dumps(row))
        failed |= row["survived"] > 0 or row["not checked"] > 0 or row["stale equivalents"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
