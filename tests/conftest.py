"""Shared pytest setup: the reliability tests' counters, printed at the end of every run.

The fuzz tests (tests/test_fuzz_bundle.py) and the validation audit (tests/test_validation_audit.py)
record each bad input they try in :data:`COUNTS` through the session fixture ``reliability_counts``;
:func:`pytest_terminal_summary` prints the totals, so a plain ``pytest -q`` shows how many malformed
bundles, files and operator inputs were tried and how each was handled.

Every hypothesis test runs under the ``deterministic`` settings profile, loaded here by default: the
examples are derived from each test's name (``derandomize``), so every run tries the same inputs and a
failure reproduces on any machine; no example database is read or written (a failure found in one
folder is never replayed by a later run); no per-example deadline (a slow shared machine is not a
failure). ``HYPOTHESIS_PROFILE=explore`` searches with fresh random inputs instead (still without a
database); whatever it finds belongs in the test as a pinned ``@example``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal

import pytest
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", derandomize=False, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

#: ``COUNTS[kind][outcome]``: kind such as "malformed bundles"; outcome "tried", "rejected", "crash",
#: "silent pass" or "hang".
COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

#: What a clean outcome is called, per kind (for the summary line).
CLEAN = {
    "malformed bundles": "rejected with FusionSpecError",
    "malformed safetensors files": "rejected with FusionSpecError",
    "malformed verify outputs": "reported as failed cases, non-zero exit",
    "bad operator inputs": "rejected with FusionSpecError naming the operator",
    "hostile files (issue classes)": "refused (FusionSpecError or that case's error/fail) within the time and "
                                     "memory bounds",
    "converter settings (module instance changed)": "refused by the converter (FusionSpecError)",
}


@pytest.fixture(scope="session")
def reliability_counts() -> dict[str, collections.Counter]:
    return COUNTS


#: Every :func:`time_limit` is multiplied by this (environment variable ``FUSION_SPEC_TEST_TIME_SCALE``,
#: default 1): ``python -m tests.mutmut_areas`` sets it, because mutmut's trampolines make each call of
#: the mutated file's functions slower (a million-number JSON header parses several times slower), and a
#: mutant must be killed by what it computes, not by the instrumentation's cost.
TIME_SCALE = float(os.environ.get("FUSION_SPEC_TEST_TIME_SCALE", "1"))


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError if the block runs longer than ``seconds`` times :data:`TIME_SCALE` (a hang is
    a failure, not a wait)."""
    seconds = seconds * TIME_SCALE

    def _alarm(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"still running after {seconds} s")

    if not hasattr(signal, "setitimer"):  # pragma: no cover - Windows: no timer, no hang guard
        yield
        return
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not COUNTS:
        return
    terminalreporter.section("reliability: bad inputs and fuzz cases")
    for kind, c in COUNTS.items():
        others = "".join(f", {n} {outcome}" for outcome, n in c.items()
                         if outcome not in ("tried", "rejected", "crash", "silent pass", "hang"))
        terminalreporter.write_line(
            f"{c['tried']} {kind} tried: {c['rejected']} {CLEAN.get(kind, 'rejected cleanly')}{others}, "
            f"{c['crash']} crashes, {c['silent pass']} silent passes, {c['hang']} hangs")
