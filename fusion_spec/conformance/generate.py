"""Regenerate the golden bundle: ``python -m fusion_spec.conformance.generate [DIR]``.

Inputs come from ``numpy.random.default_rng([case seed, 1])``, parameters from ``spec.init(case seed)``
(the case seed is the CRC-32 of the case id), outputs from the NumPy reference in float64. The float16
and bfloat16 tolerances come from the measurements in ``baselines.json`` (:mod:`.baseline`); a case
without one (new, or changed) is measured first, which needs PyTorch, JAX and MLX. The files
are byte-deterministic on a given platform (see :mod:`.safetensors_io`); float64 results of BLAS
matrix products may differ in the last bit between CPU/BLAS builds, which is why the regeneration
test runs where the bundle is maintained.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import printable
from ..files import write as write_file
from ..specs.base import _NORM_WEIGHT, Spec
from . import backward, baseline, safetensors_io, tolerance
from .bundle import FORMAT_VERSION, MANIFEST, PACKAGE_BUNDLE, TRUSTED_HASH, call, describe, sha256
from .cases import FAMILIES, Case

#: Meaning of each flag a case may carry (Wycheproof-style).
FLAGS = {
    "mask": "a boolean mask input (True = attend / real token)",
    "fully-masked-row": "some query rows have every key masked: the output rows must be zeros",
    "grouped-query": "fewer key/value heads than query heads",
    "compress_ratio": "consecutive tokens concatenated before the projector (Edifice compress_ratio)",
    "edifice": "Edifice's structure (build_mlp_projection and friends)",
    "edifice-default": "Edifice's default config, unchanged",
    "erf-gelu": "uses GELU in its exact erf form (not the tanh approximation)",
    "bert-eps": "LayerNorm eps 1e-12 (BERT / Q-Former): eps 1e-5 gives a visible difference",
    "post-norm": "the normalisation comes after the merge / residual (not before)",
    "placeholder-scatter": "image features replace placeholder token rows in order",
    "anyres": "LLaVA-NeXT anyres packing (base view, unpadded tile grid, image_newline per row)",
    "preset": "a named real-model preset's fusion module at small widths",
    "llava": "LLaVA's projector", "qwen2-vl": "Qwen2-VL's patch merger", "internvl": "InternVL's mlp1",
    "qwen2.5-vl": "Qwen2.5-VL's patch merger", "rms-norm": "the normalisation is an RMSNorm (no mean, no bias)",
    "media-locations": "Flamingo media_locations pattern",
    "text-before-image": "text tokens before the first image",
    "immediate-only": "only_attend_immediate_media=True",
    "all-previous": "only_attend_immediate_media=False (attend to every previous image)",
    "multi-head": "multi-head attention (Edifice's cross-attention is single-head)",
    "uniform-rows": "text rows with no attendable media attend uniformly to all of them (open_flamingo's "
                    "fully_masked_rows='uniform': the mean of V), not zeros",
    "cached-media": "use_cached_media=True: every text token sees the media of the whole media_locations row",
    "text-row-masked": "Mllama: text rows with no image (full_text_row_masked_out_mask False)",
    "media-time": "Perceiver frame and/or media-time embeddings added before resampling",
    "integer-output": "integer or boolean outputs: must match exactly",
    "list-input": "an argument that is a list of arrays (inputs <name>.0, <name>.1, ...)",
    "blip2": "BLIP-2's Q-Former", "flamingo": "OpenFlamingo's modules", "idefics2": "Idefics2's perceiver",
    "mllama": "Llama-3.2-Vision's (Mllama) modules",
    # the sequence side
    "m-rope": "Qwen2-VL-style three-axis (temporal, height, width) rope position ids",
    "image-mask": "a self-attention mask with bidirectional image (Gemma 3) or prefix (PaliGemma) blocks",
    "gate-zero": "tanh gates at their init value 0: the gated branches' weights get exactly zero gradient",
    "low-precision": "designed for float16 and bfloat16: inputs where a slip that is below one rounding "
                     "elsewhere changes the output by more than the measured tolerance",
}
# today's connectors: Gemma 3, Idefics3/SmolVLM, Llama 4, PaliGemma, Aya Vision, Idefics2
FLAGS |= {
    "gemma3": "Gemma 3's projector (average pool, RMSNorm scaled by 1 + weight, x @ W)",
    "idefics3": "Idefics3's / SmolVLM's connector (pixel shuffle, linear without bias)",
    "llama4": "Llama 4's vision adapter (pixel shuffle MLP) or multimodal projector",
    "paligemma": "PaliGemma's projector",
    "aya-vision": "Aya Vision's / Cohere2 Vision's projector (pixel shuffle, [LayerNorm], SwiGLU over halves)",
}
# Mistral 3, Qwen3-VL DeepStack, LLaVA-OneVision, GLM-4V, DeepSeek-VL, Janus
FLAGS |= {
    "mistral3": "Mistral 3 / Pixtral's projector: per-image unfold merge, channel order (c, di, dj)",
    "qwen3-vl": "Qwen3-VL's patch merger or DeepStack",
    "post-shuffle-norm": "a LayerNorm over each merged k*k*C vector of consecutive patches (Qwen3-VL's DeepStack mergers)",
    "deepstack": "visual features added to decoder hidden states at the visual positions (Qwen3-VL DeepStack)",
    "llava-onevision": "LLaVA-OneVision: anyres_max token budget, bilinear downsample of an oversized map",
    "glm4v": "GLM-4V's patch merger: linear, LayerNorm, GELU, gated MLP, no biases",
    "deepseek-vl": "DeepSeek-VL's aligners (MLP; the hybrid concatenates two projected streams)",
    "janus": "Janus's aligner MLPs (fc1, then act and hidden_layers)",
}
# issue 26: deep fusion outside Flamingo/Mllama, small embedders, encoder-free patch embedders, mergers
FLAGS |= {
    "idefics": "IDEFICS 1's gated cross-attention layer (tanh(alpha) gates, row mask on the attention branch only)",
    "vector-gate": "one tanh gate per feature ([1, 1, hidden]) instead of one float",
    "decoder-cross-attention": "an encoder-decoder model's ungated cross-attention sub-layer (BERT/BLIP post-norm, "
                               "T5/Pix2Struct pre-norm)",
    "git": "GIT's projection (linear, LayerNorm)",
    "gemma3n": "Gemma 3n's multimodal embedder (soft tokens scaled by sqrt(d), or hard vision-vocabulary ids)",
    "hard-tokens": "integer ids of a vision vocabulary embedded by a table",
    "gemma4": "Gemma 4's vision pooler or multimodal embedder (Gemma 4 Unified, DiffusionGemma)",
    "position-pool": "k x k average pooling found from each patch's (column, row) position",
    "non-square": "a patch grid that is not square",
    "padding": "padding patches marked by position (-1, -1)",
    "encoder-free": "raw pixel patches straight to text embeddings (no vision tower)",
    "muse": "Muse Glimmer's / Spark's vision adapter (activation after both linears), projection and norm",
    "florence2": "Florence-2's projector (learned 2D and cosine temporal positions, [mean; tokens], LayerNorm)",
    "inkling": "Inkling's space/time-to-depth patch embedder",
    "granite-docling": "Granite-Docling's connector (coarse/fine pixel-shuffle paths, 2D sine-cosine positions)",
    "glm5-next": "GLM-5-Next's merger: GLM-4V's with a clamped SwiGLU",
    "perception-lm": "PerceptionLM's projector (MLP, then adaptive average pooling)",
    "adaptive-pool": "adaptive average pooling whose windows overlap (the grid does not divide)",
    "minimax-m3-vl": "MiniMax-M3-VL's projector (MLP, k x k merge, MLP)",
    "ernie-4.5-vl": "ERNIE-4.5-VL's resampler (spatial merge, temporal frame pairs, MLPs, RMSNorm)",
    "temporal-pairs": "video frames concatenated in pairs (an image paired with itself)",
    "minicpm-v": "MiniCPM-V 4.6's window-attention merger or cascaded merge MLPs",
    "tanh-gelu": "uses GELU in its tanh approximation",
    "molmo2": "Molmo2's adapter (attention pooling of index-defined patch groups, SwiGLU)",
}

# the rest of the zoo (issue 26): convolutional abstractors, conditioned Q-Formers, query poolers, visual tables
FLAGS |= {
    "conv-abstractor": "strided convolutions over the patch grid, then tokens (GOT-OCR2, PP-FormulaNet, Step3, "
                       "HunYuan-VL, HY-V4-VL)",
    "got-ocr2": "GOT-OCR2's / PP-Chart2Table's projector", "pp-formulanet": "PP-FormulaNet's projector",
    "step3": "Step3's tower downsamplers and projector", "hunyuan-vl": "HunYuan-VL's patch merger",
    "hy-v4-vl": "HY-V4-VL's patch merger",
    "newline-column": "a learned newline vector appended after each row of the merged grid",
    "instructblip": "InstructBLIP's Q-Former (queries and instruction tokens share the self-attention)",
    "instruction-tokens": "integer instruction token ids embedded inside the fusion module",
    "video-frames": "a video: every frame through the module, the frames' tokens concatenated",
    "query-pooler": "learned queries attend once to the image (no Q-Former stack)",
    "kosmos-2": "Kosmos-2's / Kosmos-2.5's image-to-text projection (latent queries are keys too)",
    "aria": "Aria's projector (query count from the patch count, double projection, tanh-GELU MLP)",
    "granite4-vision": "Granite 4 Vision's windowed Q-Former downsampler",
    "window-q-former": "a Q-Former run on each window of the patch grid, queries from the downsampled window",
    "area-downsample": "PyTorch's area interpolation (adaptive average pooling, overlapping windows)",
    "visual-table": "probabilistic visual tokens: softmax over a visual vocabulary, then the table's expectation",
    "indicator-tokens": "the visual vocabulary's last words are indicator tokens, with probability 0",
    "ovis2": "Ovis2's visual tokenizer head and embedding table", "ovis2.5": "Ovis2.5's projector",
    "vq-table": "VQ codebook indices as token ids through a code-to-token table",
    "chameleon": "Chameleon's image vocabulary mapping", "emu3": "Emu3's image vocabulary mapping (row ends)",
    "apertus": "Apertus 1.5's image token offset and row separators",
}


def _entry(family: str, case: Case, measurements: dict[str, Any] | None = None) -> tuple[dict[str, Any], bytes]:
    """One case's manifest entry and file. Its float16 and bfloat16 tolerances come from
    ``measurements`` (``baselines.json``, loaded when not given), measured first if it has none for the
    case (:func:`.baseline.lookup`)."""
    spec = case.target if isinstance(case.target, Spec) else None
    params = spec.init(case.seed) if spec is not None else {}
    params |= {name: np.asarray(g(np.random.default_rng([case.seed, 4]))) for name, g in case.param_values}
    rng = np.random.default_rng([case.seed, 1])
    arrays, keyword, lists = {}, set(), {}
    keyword_names = {name for name, _ in case.kwargs}
    for name, gen in case.args + case.kwargs:
        items = [(name, gen)] if callable(gen) else [(f"{name}.{i}", g) for i, g in enumerate(gen)]
        for item, g in items:
            arrays[item] = np.asarray(g(rng))
            if name in keyword_names:
                keyword.add(item)
            if not callable(gen):
                lists[item] = name
    entry: dict[str, Any] = {
        "id": case.id,
        "family": family,
        "kind": "spec" if spec is not None else "function",
        "op": type(spec).__name__ if spec is not None else case.target,
        "function": spec.op if spec is not None else case.target,
        "config": spec.config() if spec is not None else {},
        "file": case.id + ".safetensors",
        "inputs": [{"name": n, **describe(a), "keyword": n in keyword, **({"list": lists[n]} if n in lists else {})}
                   for n, a in arrays.items()],
        "params": [{"name": n, **describe(a)} for n, a in params.items()],
        "runtime": case.runtime,
    }
    tensors = {"input." + n: a for n, a in arrays.items()} | {"param." + n: a for n, a in params.items()}
    outs = {n: _store(np.asarray(a)) for n, a in call(entry, tensors).items()}
    for n, a in {**tensors, **outs}.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"case {case.id!r}: {n} is not finite (goldens must be finite numbers)")
    tensors |= {"output." + n: a for n, a in outs.items()}
    matrices = sum(1 for a in params.values() if a.ndim >= 2)
    norms = sum(1 for n in params if _NORM_WEIGHT.search(n))
    stages = 1 + matrices + norms + case.stages
    longest = tolerance.reduction([*arrays.values(), *params.values()])
    scale = tolerance.rms(list(outs.values()))
    data = safetensors_io.dumps(tensors)
    entry |= {
        "outputs": [{"name": n, **describe(a)} for n, a in outs.items()],
        "tolerance": tolerance.tolerances(stages, longest, scale),
        "error_model": {"stages": stages, "reduction": longest, "output_rms": float(f"{scale:.3g}")},
        "sha256": sha256(data),
        "flags": list(case.flags),
        "notes": case.notes,
    }
    measured = baseline.lookup(baseline.load() if measurements is None else measurements, entry, tensors, case.seed,
                               measure_missing=True, log=lambda line: print(line, file=sys.stderr, flush=True))
    measured_tolerances(entry, measured, "forward")
    return entry, data


def _store(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    return a


def build() -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and ``{file name: bytes}`` of every case. Cases without a current measurement in
    ``baselines.json`` are measured, and the file is updated."""
    entries, files = [], {}
    measurements = baseline.load()
    before = json.dumps(measurements, sort_keys=True)
    for family, fn in FAMILIES.items():
        for case in fn():
            entry, data = _entry(family, case, measurements)
            if entry["file"] in files:
                raise ValueError(f"duplicate case id {case.id!r}")
            entries.append(entry)
            files[entry["file"]] = data
            tensors = safetensors_io.loads(data)
            gradient = backward.golden(entry, tensors, case.seed)
            if gradient is not None:
                files[gradient[0]] = gradient[1]
                measured_tolerances(entry["grad"], measurements["cases"][entry["id"]], "grad")
    if json.dumps(measurements, sort_keys=True) != before:
        measurements["cases"] = {k: measurements["cases"][k] for k in sorted(measurements["cases"])}
        baseline.save(measurements)
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": f"fusion_spec {__version__}",
        "description": "Golden cases for fusion_spec operators: inputs, parameters and float64 reference "
                       "outputs. Format: docs/conformance/format.md.",
        "tensor_naming": {"input.<name>": "an input", "param.<name>": "a parameter (spec.init(seed))",
                          "output.<name>": "a float64 reference output",
                          "cotangent.<output>": "(in <id>.grad.safetensors) the fixed random cotangent of an output",
                          "grad.input.<name>, grad.param.<name>": "(in <id>.grad.safetensors) the float64 "
                          "vector-Jacobian product sum_o <cotangent.o, d output.o / d name>"},
        "metric": "pass iff, for every floating output o, max over elements of |got - want| / (atol + rtol * "
                  "|want|) <= 1 and RMS(got_o - want_o) / (norm * max(RMS(want_o), S)) <= 1, S the RMS of all "
                  "the case's floating reference outputs; integer and boolean outputs must match exactly",
        "tolerance_model": {
            "float64, float32": {"rtol": "SAFETY * stages * (1 + sqrt(reduction)) * u(dtype)",
                                 "atol": "rtol * output_rms", "norm": "rtol", "SAFETY": tolerance.SAFETY},
            "float64, float32 widened": "the larger, key by key, of the model above and the measured "
                                        "tolerance below",
            "float16, bfloat16": {"rtol": "max(FACTOR * baseline.elem, FLOOR_ELEM * u(dtype))",
                                  "atol": "rtol * output_rms",
                                  "norm": "max(FACTOR * baseline.norm, FLOOR_NORM * u(dtype))",
                                  "FACTOR": tolerance.FACTOR, "FLOOR_ELEM": tolerance.FLOOR_ELEM,
                                  "FLOOR_NORM": tolerance.FLOOR_NORM,
                                  "baseline": "the largest error of the honest implementations " + ", ".join(
                                      baseline.HONEST) + " (elem: max |got - want| / (|want| + S); norm: "
                                      "RMS(got - want) / max(RMS(want), S)); 'by' names the one with the "
                                      "largest normwise error"},
            "u": tolerance.UNIT_ROUNDOFF},
        "flags": FLAGS,
        "cases": entries,
    }
    return manifest, files


def measured_tolerances(part: dict[str, Any], measured: dict[str, Any], direction: str) -> None:
    """Set the measured tolerances of a case (``part`` its entry, ``direction`` "forward") or of its
    gradients (its ``grad`` object, "grad") from the case's baselines (:func:`.tolerance.measured`):
    float16 and bfloat16 take the measured tolerance, float64 and float32 the larger of it and the
    model's (:func:`.tolerance.widest`). Each baseline is recorded beside them."""
    model = part["error_model"]
    scale = model["output_rms"] if direction == "forward" else model["grad_rms"]
    part["baseline"] = {}
    for dtype in baseline.DTYPES:
        largest = baseline.largest(measured[direction][dtype])
        found = tolerance.measured(dtype, largest["elem"], largest["norm"], scale)
        part["tolerance"][dtype] = tolerance.widest(part["tolerance"][dtype], found) if dtype in tolerance.MODELLED \
            else found
        part["baseline"][dtype] = largest


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """Canonical manifest text: indented JSON with lists of numbers (shapes) on one line."""
    text = json.dumps(manifest, indent=1, ensure_ascii=True)
    text = re.sub(r"\[\s+([-\d., \n]+?)\s+\]", lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
                  text)
    return (text + "\n").encode("utf-8")


def write(directory: str | Path = PACKAGE_BUNDLE) -> dict[str, Any]:
    """Regenerate the bundle into ``directory`` (stale case files there are removed). Returns the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest, files = build()
    for old in directory.glob("*.safetensors"):
        if old.name not in files:
            old.unlink()
    for name, data in files.items():
        write_file(directory / name, data, op="goldens generate", arg="dir")
    text = manifest_bytes(manifest)
    write_file(directory / MANIFEST, text, op="goldens generate", arg="dir")
    write_file(directory / TRUSTED_HASH, (sha256(text) + "\n").encode("ascii"), op="goldens generate", arg="dir")
    return manifest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    directory = Path(argv[0]) if argv else PACKAGE_BUNDLE
    manifest = write(directory)
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    print(f"wrote {len(manifest['cases'])} cases to {printable(directory)} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
