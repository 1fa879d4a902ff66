"""``fusion-spec conformance`` and ``fusion-spec goldens {generate,export,verify}``."""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import printable
from .common import UsageError, input_dir, install_hint, json_argument, note, printer, write_json

CONFORMANCE_EXAMPLES = """examples:
  fusion-spec conformance                                   NumPy, float64 and float32: a row per family
  fusion-spec conformance --cases --case 'mrope.*'          a row per case
  fusion-spec conformance --backend all --summary-only      every installed backend: a row per backend
  fusion-spec conformance --backend torch --dtype bfloat16 --case 'q_former.*'
  fusion-spec conformance --backend jax --json results.json
  fusion-spec conformance --backend torch --device cuda --dtype all --wide

exit status: 0 every case passed, 1 a case failed, 2 a usage error."""

GOLDENS_EXAMPLES = """examples:
  fusion-spec goldens export bundle/
  fusion-spec goldens verify bundle/ --outputs out/ --case 'q_former.*'
  fusion-spec goldens generate /tmp/new-bundle/"""

VERIFY_EXAMPLES = """examples:
  fusion-spec goldens verify bundle/ --outputs out/
  fusion-spec goldens verify bundle/ --outputs out/ --dtype bfloat16
  fusion-spec goldens verify bundle/ --outputs out/ --case 'q_former.*' --output out --json report.json

OUT/<case id>.safetensors holds one tensor output.<name> per output of the case (see the bundle
format page). Each case is judged at the dtype the table's "judged at" column names: --dtype when given
(a file stored in a lower precision then fails), else the dtype the file stores. Exit status: 0 every checked case passed, 1 a case failed or is missing, 2 a usage error."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..conformance.runner import BACKENDS
    from ..conformance.tolerance import DTYPES

    p = sub.add_parser("conformance", help="run the conformance suite on a backend and print error vs tolerance",
                       description="Run every golden case on a backend in a dtype. Each output is judged "
                       "elementwise, max |got - want| / (atol + rtol |want|), and normwise, RMS(got - want) / "
                       "(norm max(RMS(want), S)), against the float64 reference on the same rounded inputs; a case "
                       "passes when both are <= 1.", epilog=CONFORMANCE_EXAMPLES)
    p.add_argument("--backend", default="numpy", choices=[*BACKENDS, "all"],
                   help="array library to run on, e.g. --backend torch; 'all' = every installed one except ndonnx and "
                   "onnxruntime (slow: name them) (default numpy)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="e.g. --device cuda (default cpu)")
    p.add_argument("--dtype", action="append", choices=[*DTYPES, "all"],
                   help="e.g. --dtype float32 (repeatable; default float64 and float32; 'all' = every dtype)")
    p.add_argument("--bundle", type=input_dir, default=None, metavar="DIR",
                   help="bundle directory, e.g. --bundle bundle/ (default: the packaged one)")
    p.add_argument("--case", action="append", metavar="PATTERN",
                   help="only cases whose id matches (glob; repeatable), e.g. --case 'attention.*'")
    p.add_argument("--cases", action="store_true",
                   help="a row per case (error/tolerance per backend/dtype) instead of a row per family, e.g. --cases")
    p.add_argument("--summary-only", action="store_true",
                   help="only the row per backend/dtype (no family or case table), e.g. --summary-only")
    p.add_argument("--wide", action="store_true",
                   help="the per-case table (implies --cases) with every backend/dtype column and the max |err| of "
                   "each cell; by default it is cut to 100 columns, e.g. --wide")
    p.add_argument("--no-cache", action="store_true",
                   help="do not keep JAX's compiled cases for the next run (by default they are kept in "
                   "$XDG_CACHE_HOME/fusion_spec/jax or ~/.cache/fusion_spec/jax), e.g. --no-cache")
    p.add_argument("--grad", action="store_true",
                   help="check the backend's autodiff (torch, jax, mlx; fast paths on) against the gradient goldens, "
                   "e.g. --grad --backend torch --dtype float32")
    json_argument(p, "every result")
    p.set_defaults(func=_conformance)

    g = sub.add_parser("goldens", help="generate, export or verify the golden bundle", epilog=GOLDENS_EXAMPLES,
                       description="The language-neutral bundle of golden tensors: copy it out, check another "
                       "implementation's outputs against it, or regenerate it.")
    gsub = g.add_subparsers(dest="goldens_command", metavar="action", required=True)
    gen = gsub.add_parser("generate", help="regenerate the bundle from the NumPy reference into DIR",
                          epilog="examples:\n  fusion-spec goldens generate /tmp/new-bundle/\n"
                          "  fusion-spec goldens generate --in-place      (development: rewrites the packaged bundle)")
    gen.add_argument("dir", nargs="?", type=Path, default=None, help="the directory to write, e.g. /tmp/new-bundle/")
    gen.add_argument("--in-place", action="store_true",
                     help="rewrite the bundle inside the installed package (for developers of fusion_spec), e.g. --in-place")
    gen.set_defaults(func=_generate)
    exp = gsub.add_parser("export", help="copy the packaged bundle (integrity-checked) to DIR",
                          epilog="example:\n  fusion-spec goldens export bundle/")
    exp.add_argument("dir", type=Path, help="a new or existing directory, e.g. bundle/")
    exp.set_defaults(func=_export)
    ver = gsub.add_parser("verify", help="check another implementation's outputs against the bundle",
                          epilog=VERIFY_EXAMPLES, description="Compare OUT/<case id>.safetensors with each "
                          "case's reference, at the claimed dtype (--dtype) or else the dtype of the outputs.")
    ver.add_argument("dir", type=input_dir, help="the bundle directory, e.g. bundle/")
    ver.add_argument("--outputs", type=input_dir, required=True, metavar="OUT",
                     help="directory of <case id>.safetensors files holding output.<name> tensors, e.g. --outputs out/")
    ver.add_argument("--case", action="append", metavar="PATTERN",
                     help="verify only cases whose id matches (glob; repeatable), e.g. --case 'q_former.*'")
    ver.add_argument("--output", action="append", metavar="NAME",
                     help="check only this output of each case (repeatable), e.g. --output out")
    ver.add_argument("--trust-bundle", action="store_true",
                     help="check against DIR even if its manifest is not the one this fusion-spec ships (its "
                     "tolerances are then not vouched for, and every result says so), e.g. --trust-bundle")
    ver.add_argument("--dtype", choices=list(DTYPES), default=None,
                     help="the precision the implementation claims: every case is judged at it, and a file stored "
                     "in a lower precision fails (default: each file's own dtype), e.g. --dtype float32")
    ver.add_argument("--grad", action="store_true", help="OUT holds gradients (grad.input.<name>, "
                     "grad.param.<name>) of the differentiable cases instead of outputs, e.g. --grad")
    json_argument(ver, "every result")
    ver.set_defaults(func=_verify)


def _selector(patterns: list[str] | None) -> Callable[[Mapping[str, Any]], bool] | None:
    """Cases whose id matches any of the glob ``patterns`` (all cases when there are none)."""
    if not patterns:
        return None
    return lambda entry: any(fnmatch.fnmatchcase(entry["id"], pat) for pat in patterns)


def plural(n: int, word: str) -> str:
    """``1 case``, ``2 cases``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _conformance(args: argparse.Namespace) -> int:
    from ..conformance import runner
    from ..conformance.bundle import Bundle
    from ..conformance.tolerance import DTYPES

    out = printer(args)
    bundle = Bundle(args.bundle) if args.bundle else Bundle()
    backends = list(runner.ALL) if args.backend == "all" else [args.backend]
    dtypes = list(DTYPES) if args.dtype and "all" in args.dtype else list(dict.fromkeys(args.dtype or
                                                                                       ["float64", "float32"]))
    if "jax" in backends:
        runner.fast_jax_compile(None if args.no_cache else runner.jax_cache_dir())
    start = time.monotonic()
    select = _selector(args.case)
    if args.grad:
        from ..conformance import grad
        results, notes = grad.run(backends, dtypes, args.device, bundle, select, runner.Progress(sys.stderr))
    else:
        results, notes = runner.run(backends, dtypes, args.device, bundle, select, runner.Progress(sys.stderr))
    elapsed = time.monotonic() - start
    for text in notes:
        backend = text.split(":")[0]
        note(f"{text} ({install_hint(backend)})" if text.endswith("not installed, skipped") else text)
    if not results:
        matched = any(select is None or select(e) for e in bundle.cases)
        why = "every backend/dtype was skipped (see the notes above)" if matched else "no case matches --case"
        print(f"fusion-spec conformance: no case was run: {why}", file=sys.stderr)
        return 1
    if not args.summary_only:
        out(runner.case_table(results, wide=args.wide) if args.cases or args.wide else runner.family_table(results))
        out()
    out(runner.summary_table(results))
    bad = runner.failures(results)
    if bad:
        out()
        out(bad)
    n_bad = sum(not r.ok for r in results)
    out(f"\n{plural(len(results), 'run')} of {plural(len({r.case for r in results}), 'case')} in {elapsed:.1f}s: "
        f"{len(results) - n_bad} passed, {n_bad} failed{runner.bias_note(results)}")
    if args.json:
        write_json(args.json, [runner.as_json(r) for r in results])
    return 1 if n_bad else 0


def _generate(args: argparse.Namespace) -> int:
    from ..conformance import generate
    from ..conformance.bundle import PACKAGE_BUNDLE
    if args.dir is None and not args.in_place:
        raise UsageError("goldens generate needs a directory to write (or --in-place to rewrite the packaged "
                         "bundle), e.g. fusion-spec goldens generate /tmp/new-bundle/")
    if args.dir is not None and args.in_place:
        raise UsageError("goldens generate: give a directory or --in-place, not both")
    target = PACKAGE_BUNDLE if args.in_place else args.dir
    if target.exists() and not target.is_dir():
        raise UsageError(f"goldens generate: {target} is a file, expected a directory")
    if not args.in_place and target.resolve() == PACKAGE_BUNDLE.resolve():
        raise UsageError(f"goldens generate: {target} is the packaged bundle; write it with --in-place")
    return generate.main([str(target)])


def _export(args: argparse.Namespace) -> int:
    from ..conformance.bundle import PACKAGE_BUNDLE
    from ..conformance.verify import export
    if args.dir.exists() and not args.dir.is_dir():
        raise UsageError(f"goldens export: {args.dir} is a file, expected a directory")
    if args.dir.resolve() == PACKAGE_BUNDLE.resolve():
        raise UsageError(f"goldens export: {args.dir} is the packaged bundle itself; choose another directory")
    if not args.dir.parent.is_dir():
        raise UsageError(f"goldens export: directory {args.dir.parent} does not exist (create it first)")
    path = export(args.dir)
    print(f"exported the conformance bundle to {printable(path)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..conformance import runner
    from ..conformance.bundle import Bundle
    from ..conformance.grad import verify as verify_grad
    from ..conformance.verify import verify

    out = printer(args)
    bundle = Bundle(args.dir, trust=args.trust_bundle, command="goldens verify")  # refused before parsing
    select = _selector(args.case)
    if args.grad:
        if args.output:
            raise UsageError("goldens verify: --output selects forward outputs; with --grad every gradient is checked")
        results = verify_grad(bundle, args.outputs, select, trust=args.trust_bundle, dtype=args.dtype)
    elif args.output:
        known = {o["name"] for e in bundle.cases if select is None or select(e) for o in e["outputs"]}
        unknown = sorted(set(args.output) - known)
        if unknown:
            raise UsageError(f"goldens verify: --output {', '.join(unknown)}: no selected case has such an output "
                             f"(outputs: {', '.join(sorted(known))})")
        results = verify(bundle, args.outputs, select, outputs=set(args.output), trust=args.trust_bundle,
                         dtype=args.dtype)
    else:
        results = verify(bundle, args.outputs, select, trust=args.trust_bundle, dtype=args.dtype)
    if not results:
        print("fusion-spec goldens verify: no case matches --case", file=sys.stderr)
        return 1
    measured = ("pass", "fail")
    rows = [[r.case, r.dtype, r.stored or "-", r.status.upper() if not r.ok else r.status,
             runner.fmt_ratio(r).split()[0] if r.status in measured else "-",
             f"{r.max_abs:.3g}" if r.status in measured else "-", runner.fmt_bias(r), r.detail] for r in results]
    out(runner.table(["case", "judged at", "stored", "status", "error/tol", "max |err|", "bias z", "detail"], rows))
    n_bad = sum(not r.ok for r in results)
    judged = ", ".join(sorted({r.dtype for r in results if r.dtype != "-"})) or "-"
    out(f"\n{plural(len(results), 'case')} judged at {judged}: {len(results) - n_bad} passed, {n_bad} failed or "
        f"missing{runner.bias_note(results)}")
    if args.json:
        write_json(args.json, [runner.as_json(r) for r in results])
    return 1 if n_bad else 0
