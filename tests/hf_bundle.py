"""Run a bundle case through a real HF module and check its output with ``goldens verify``.

The case's params go into the module through ``interop.to_state_dict`` (``strict=True``); the module
runs in ``dtype`` on the case's inputs rounded to it (what verify expects of a lower-precision run);
its output, written as ``OUT/<case id>.safetensors``, must pass :func:`fusion_spec.conformance.verify.verify`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fusion_spec import interop
from fusion_spec.conformance import safetensors_io
from fusion_spec.conformance.bundle import Bundle, round_to, spec_from_manifest
from fusion_spec.conformance.verify import verify


def verify_through_module(case_id: str, target: str, make: Callable[[Any], Any],
                          run: Callable[[Any, dict[str, np.ndarray], Mapping[str, Any]], Any],
                          out_dir: Path, dtype: str = "float64", load: Callable[[Any, dict], None] | None = None):
    """``make(spec)`` builds the module, ``run(module, inputs, runtime)`` returns its torch output.
    ``load(module, state)`` replaces the strict ``load_state_dict`` for modules holding more than the spec."""
    import torch

    bundle = Bundle()
    entry = bundle.case(case_id)
    tensors = bundle.tensors(entry)
    spec = spec_from_manifest(entry["op"], entry["config"])
    params = {p["name"]: tensors["param." + p["name"]] for p in entry["params"]}
    inputs = {i["name"]: round_to(tensors["input." + i["name"]], dtype) for i in entry["inputs"]}
    module = make(spec).to(getattr(torch, dtype))
    state = {k: torch.from_numpy(v) for k, v in interop.to_state_dict(spec, params, target=target).items()}
    if load is None:
        module.load_state_dict(state, strict=True)
    else:
        load(module, state)
    module = module.eval()
    torch_inputs = {k: torch.from_numpy(v).to(getattr(torch, dtype)) if v.dtype.kind == "f" else torch.from_numpy(v)
                    for k, v in inputs.items()}
    with torch.no_grad():
        out = run(module, torch_inputs, entry["runtime"])
    safetensors_io.save(out_dir / f"{case_id}.safetensors", {"output.out": out.detach().numpy()})
    (result,) = verify(bundle, out_dir, select=lambda e: e["id"] == case_id)
    return result
