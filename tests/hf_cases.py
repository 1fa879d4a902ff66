"""Every bundle case of a family through the real HF module its spec describes, checked by ``goldens verify``.

``through_modules(family, build, tmp_path)``: for each case of the family, ``build(spec)`` returns the
real module (built from a tiny config matching the case's spec); the case's parameters go in through
``interop.to_state_dict`` (``load_state_dict(strict=True)``, or ``strict=False`` with no unexpected key for
a whole model, whose fusion keys are a subset); the module runs in float32 on the case's inputs rounded
to float32 (the converter's ``run_module``, with the case's runtime arguments), and its output must pass
:func:`fusion_spec.conformance.verify.verify` at float32. A family case with no module fails the test:
the list of modules cannot fall behind the cases.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion_spec import interop
from fusion_spec.conformance import safetensors_io
from fusion_spec.conformance.bundle import Bundle, round_to, spec_from_manifest
from fusion_spec.conformance.verify import verify

def meta_count(build: Callable[[], Any]) -> int:
    """The parameter count of the module ``build()`` makes on the meta device (no storage)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def check_module(module: Any, *inputs: Any, atol: float = 1e-13, **runtime: Any) -> Any:
    """``interop.check`` of module and spec on these inputs, printed (``pytest -s``) and held to ``atol``."""
    report = interop.check(module, *inputs, **runtime)
    print(f"\n{report}")
    assert report.max_abs < atol, report
    return report


#: Converters of whole models: ``to_state_dict`` gives their fusion keys only.
WHOLE_MODELS = {"MuseGlimmerModel", "MuseSparkModel", "Gemma4VisionModel", "DeepseekOcr2Model",
                "DeepseekOcr2ForConditionalGeneration", "UnlimitedOcrModel", "UnlimitedOcrForConditionalGeneration"}


def load(module: Any, spec: Any, params: dict[str, np.ndarray]) -> None:
    """The case's parameters into ``module`` through ``interop.to_state_dict``, strictly."""
    state = {k: torch.from_numpy(np.ascontiguousarray(v)).to(next(module.parameters()).dtype)
             for k, v in interop.to_state_dict(spec, params, target=type(module).__name__).items()}
    if type(module).__name__ in WHOLE_MODELS:
        result = module.load_state_dict(state, strict=False)
        assert not result.unexpected_keys and set(state) <= set(module.state_dict())
    else:
        module.load_state_dict(state, strict=True)


def run_case(bundle: Bundle, entry: dict, module: Any, dtype: str = "float32") -> dict[str, np.ndarray]:
    """The case's inputs (rounded to ``dtype``) through ``module`` (its converter's ``run_module``); the
    output named as the bundle names the case's outputs (a stacked array split back where there are several)."""
    tensors = bundle.tensors(entry)
    spec = spec_from_manifest(entry["op"], entry["config"])
    module = module.to(getattr(torch, dtype)).eval()
    load(module, spec, {p["name"]: tensors["param." + p["name"]] for p in entry["params"]})
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    lists: dict[str, list[np.ndarray]] = {}
    for i in entry["inputs"]:
        value = round_to(tensors["input." + i["name"]], dtype) if i["dtype"].startswith("float") else \
            tensors["input." + i["name"]]
        group = i.get("list")
        if group is not None:
            if group not in lists:
                lists[group] = []
                (kwargs.__setitem__(group, lists[group]) if i["keyword"] else args.append(lists[group]))
            lists[group].append(value)
        elif i["keyword"]:
            kwargs[i["name"]] = value
        else:
            args.append(value)
    out = np.asarray(interop.converter_for(module).run_module(module, *args, **kwargs, **entry["runtime"]))
    names = [o["name"] for o in entry["outputs"]]
    if names == ["out"]:
        return {"out": out.astype(dtype)}
    sizes = [o["shape"][0] for o in entry["outputs"]]  # several outputs: stacked along the first axis, in order
    parts = np.split(out, np.cumsum(sizes)[:-1], axis=0)
    return {n: p.astype(dtype) for n, p in zip(names, parts)}


def through_modules(family: str, build: Callable[[Any], Any], out_dir: Path, dtype: str = "float32") -> list[str]:
    """Every case of ``family`` through ``build(spec)`` in ``dtype``; returns the case ids checked."""
    bundle = Bundle()
    entries = [e for e in bundle.cases if e["family"] == family]
    assert entries, family
    for e in entries:
        spec = spec_from_manifest(e["op"], e["config"])
        outs = run_case(bundle, e, build(spec), dtype)
        safetensors_io.save(out_dir / f"{e['id']}.safetensors", {f"output.{k}": v for k, v in outs.items()})
    ids = {e["id"] for e in entries}
    results = verify(bundle, out_dir, select=lambda e: e["id"] in ids)
    assert len(results) == len(ids), results
    bad = [r for r in results if r.status != "pass" or r.dtype != dtype]
    assert not bad, bad
    return sorted(ids)
