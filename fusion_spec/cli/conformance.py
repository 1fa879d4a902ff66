"""``fusion-spec conformance`` and ``fusion-spec goldens {generate,export,verify}`` (CONTRACT §5)."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from ..conformance.runner import BACKENDS
    from ..conformance.tolerance import DTYPES

    p = sub.add_parser("conformance", help="run the conformance suite on a backend and print error vs tolerance",
                       description="Run every golden case on a backend in a dtype. For each case the error "
                       "metric is max |got - want| / (atol + rtol |want|) against the float64 reference on the "
                       "same rounded inputs; a case passes when it is <= 1. Exits 1 on any failure.")
    p.add_argument("--backend", default="numpy", choices=[*BACKENDS, "all"],
                   help="array library to run on; 'all' = every installed one (default numpy)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", action="append", choices=[*DTYPES, "all"],
                   help="repeatable; default float64 and float32; 'all' = every dtype")
    p.add_argument("--bundle", type=Path, default=None, help="bundle directory (default: the packaged one)")
    p.add_argument("--case", action="append", metavar="PATTERN", help="only cases whose id matches (glob)")
    p.add_argument("--summary-only", action="store_true", help="omit the per-case table")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every result as JSON")
    p.add_argument("--grad", action="store_true",
                   help="check the backend's autodiff (torch, jax, mlx; fast paths on) against the gradient goldens")
    p.set_defaults(func=_conformance)

    g = sub.add_parser("goldens", help="generate, export or verify the golden bundle")
    gsub = g.add_subparsers(dest="goldens_command", metavar="action", required=True)
    gen = gsub.add_parser("generate", help="regenerate the bundle from the NumPy reference")
    gen.add_argument("dir", nargs="?", type=Path, default=None, help="default: the packaged bundle")
    gen.set_defaults(func=_generate)
    exp = gsub.add_parser("export", help="copy the packaged bundle (integrity-checked) to DIR")
    exp.add_argument("dir", type=Path)
    exp.set_defaults(func=_export)
    ver = gsub.add_parser("verify", help="check another implementation's outputs against the bundle")
    ver.add_argument("dir", type=Path, help="the bundle directory")
    ver.add_argument("--outputs", type=Path, required=True, metavar="OUT",
                     help="directory of <case id>.safetensors files holding output.<name> tensors")
    ver.add_argument("--case", action="append", metavar="PATTERN",
                     help="verify only cases whose id matches (glob; repeatable), e.g. 'q_former.*'")
    ver.add_argument("--trust-bundle", action="store_true",
                     help="check against DIR even if its manifest is not the one this fusion-spec ships "
                     "(its tolerances are then not vouched for, and every result says so)")
    ver.add_argument("--grad", action="store_true", help="OUT holds gradients (grad.input.<name>, "
                     "grad.param.<name>) of the differentiable cases instead of outputs")
    ver.set_defaults(func=_verify)


def _selector(patterns: list[str] | None) -> Callable[[Mapping[str, Any]], bool] | None:
    """Cases whose id matches any of the glob ``patterns`` (all cases when there are none)."""
    if not patterns:
        return None
    return lambda entry: any(fnmatch.fnmatchcase(entry["id"], pat) for pat in patterns)


def _conformance(args: argparse.Namespace) -> int:
    from ..conformance import runner
    from ..conformance.bundle import Bundle
    from ..conformance.tolerance import DTYPES

    bundle = Bundle(args.bundle) if args.bundle else Bundle()
    backends = list(runner.BACKENDS) if args.backend == "all" else [args.backend]
    dtypes = list(DTYPES) if args.dtype and "all" in args.dtype else list(dict.fromkeys(args.dtype or
                                                                                       ["float64", "float32"]))
    select = _selector(args.case)
    start = time.monotonic()
    if args.grad:
        from ..conformance import grad
        results, notes = grad.run(backends, dtypes, args.device, bundle, select, runner.Progress(sys.stderr))
    else:
        results, notes = runner.run(backends, dtypes, args.device, bundle, select, runner.Progress(sys.stderr))
    elapsed = time.monotonic() - start
    if results and not args.summary_only:
        print(runner.case_table(results))
        print()
    for note in notes:
        print(f"note: {note}")
    if not results:
        print("no case was run")
        return 1
    print(runner.summary_table(results))
    bad = runner.failures(results)
    if bad:
        print()
        print(bad)
    n_bad = sum(not r.ok for r in results)
    print(f"\n{len(results)} runs of {len({r.case for r in results})} cases in {elapsed:.1f}s: "
          f"{len(results) - n_bad} passed, {n_bad} failed")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1, default=str))
    return 1 if n_bad else 0


def _generate(args: argparse.Namespace) -> int:
    from ..conformance import generate
    return generate.main([str(args.dir)] if args.dir else [])


def _export(args: argparse.Namespace) -> int:
    from ..conformance.verify import export
    path = export(args.dir)
    print(f"exported the conformance bundle to {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..conformance import runner
    from ..conformance.bundle import Bundle
    from ..conformance.grad import verify as verify_grad
    from ..conformance.verify import verify

    results = (verify_grad if args.grad else verify)(Bundle(args.dir), args.outputs, _selector(args.case),
                                                     trust=args.trust_bundle)
    if not results:
        print("no case matches --case")
        return 1
    rows = [[r.case, r.dtype, r.status.upper() if not r.ok else r.status, runner.fmt_ratio(r).split()[0]
             if r.status in ("pass", "fail") else "-", f"{r.max_abs:.3g}" if r.status in ("pass", "fail") else "-",
             r.detail] for r in results]
    print(runner.table(["case", "dtype", "status", "error/tol", "max |err|", "detail"], rows))
    n_bad = sum(not r.ok for r in results)
    print(f"\n{len(results)} cases: {len(results) - n_bad} passed, {n_bad} failed or missing")
    return 1 if n_bad else 0
