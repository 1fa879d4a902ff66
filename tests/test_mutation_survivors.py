"""Minimal tests for the slips that once passed the whole suite (issue 18 and later; tests/mutation.py ids in
brackets). Each compares with an independent computation: transformers' own code, the spec's own
structure, the verifier's stated metric."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_spec import cost, specs, tokens
from fusion_spec.conformance import grad, safetensors_io, tolerance
from fusion_spec.conformance.bundle import Bundle
from fusion_spec.conformance.verify import produce, verify


def _hf_unpad(height: int, width: int, rows: int, cols: int) -> tuple[int, int]:
    """transformers' ``unpad_image`` arithmetic (>= 4.47), on a ``rows x cols`` feature grid."""
    if width / height > cols / rows:
        new = int(round(height * (cols / width), 7))
        pad = (rows - new) // 2
        return rows - 2 * pad, cols
    new = int(round(width * (rows / height), 7))
    pad = (cols - new) // 2
    return rows, cols - 2 * pad


@pytest.mark.parametrize("size", [(55, 176), (176, 55), (147, 196), (196, 147)])
def test_llava_next_unpadding_rounds_sizes_just_below_an_integer(size):
    """[anyres.unpad_int] 55 * 48 / 176 = 14.999999999999998 in floats: int() keeps 14 rows, HF 16."""
    pipe = tokens.AnyRes()
    h, w = tokens.select_best_resolution(*size, pipe.grid_pinpoints)
    p = pipe.image_size // pipe.patch_size
    grid = (p * h // pipe.image_size, p * w // pipe.image_size)
    assert tokens.llava_next_unpadded(*size, *grid) == _hf_unpad(*size, *grid)
    assert tokens.llava_next_unpadded(55, 176, 24, 48) == (16, 48)


def test_llava_next_unpadding_matches_transformers():
    hf = pytest.importorskip("transformers.models.llava_next.modeling_llava_next")
    torch = pytest.importorskip("torch")
    for size in [(55, 176), (176, 55), (147, 196), (333, 1000)]:
        pipe = tokens.AnyRes()
        h, w = tokens.select_best_resolution(*size, pipe.grid_pinpoints)
        p = pipe.image_size // pipe.patch_size
        rows, cols = p * h // pipe.image_size, p * w // pipe.image_size
        got = hf.unpad_image(torch.zeros(1, rows, cols), size)
        assert tokens.llava_next_unpadded(*size, rows, cols) == tuple(got.shape[1:])


def test_verify_fails_at_3x_and_passes_at_half_the_tolerance(tmp_path):
    """[verify.rtol_x10] One element moved by k * (atol + rtol |want|), at the largest |want|."""
    bundle = Bundle()
    entry = bundle.case("primitives.layer_norm.eps1e-5")
    bundle.cases = [entry]
    tol = entry["tolerance"]["float64"]
    want = bundle.tensors(entry)["output.out"]
    i = np.unravel_index(np.argmax(np.abs(want)), want.shape)
    assert abs(want[i]) > tol["atol"] / tol["rtol"]  # the rtol term dominates there
    for k, status in ((3.0, "fail"), (0.5, "pass")):
        out = produce(bundle, tmp_path / str(k))
        got = want.copy()
        got[i] += k * (tol["atol"] + tol["rtol"] * abs(want[i]))
        assert tolerance.norm_ratio(got, want, tol["norm"], tolerance.rms([want])) < 0.5 * k  # elementwise decides
        (out / entry["file"]).write_bytes(safetensors_io.dumps({"output.out": got}))
        (result,) = verify(bundle, out)
        assert result.status == status, (k, result)
        assert result.ratio == pytest.approx(k, rel=1e-2)



def test_verify_grad_fails_at_3x_and_passes_at_half_the_gradient_tolerance(tmp_path):
    """[verify_grad.rtol_x10] The float64 golden gradients with one element moved by
    k * (atol + rtol |want|) of the gradient tolerance, at the largest |want| of the case."""
    bundle = Bundle()
    entry = bundle.case("gated_xattn.mllama.hf")
    bundle.cases = [entry]
    tol = entry["grad"]["tolerance"]["float64"]
    _, golden = grad.load(bundle, entry)
    # the largest value of a leaf with many elements (one moved element keeps the normwise test below k)
    leaf = max((k for k in golden if golden[k].size >= 64), key=lambda k: float(np.max(np.abs(golden[k]))))
    want = golden[leaf]
    i = np.unravel_index(np.argmax(np.abs(want)), want.shape)
    assert abs(want[i]) > 5 * tol["atol"] / tol["rtol"]  # the rtol term dominates there
    for k, status in ((3.0, "fail"), (0.5, "pass")):
        def moved(entry, tensors, cot, k=k):
            out = {name: g.copy() for name, g in golden.items()}
            out[leaf][i] += k * (tol["atol"] + tol["rtol"] * abs(want[i]))
            return out
        out = grad.produce(bundle, tmp_path / str(k), "float64", producer=moved)
        (result,) = grad.verify(bundle, out)
        moved_leaf = moved(entry, {}, {})[leaf]
        assert tolerance.norm_ratio(moved_leaf, want, tol["norm"], tolerance.rms(list(golden.values()))) < 0.5 * k
        assert result.status == status, (k, result)
        assert result.ratio == pytest.approx(k, rel=1e-2)

@pytest.mark.parametrize("layers, frequency", [(3, 2), (5, 2), (4, 3), (12, 2), (2, 5)])
def test_qformer_flops_counts_the_cross_attention_layers_the_spec_has(layers, frequency):
    """[cost.qformer_cross_blocks] 3 layers at frequency 2 have 2 cross-attention blocks (0 and 2), not 3 // 2."""
    spec = specs.QFormer(vision_dim=6, hidden_size=8, num_heads=2, intermediate_size=12, num_queries=3,
                         output_dim=5, num_visual_tokens=7, num_layers=layers, cross_attention_frequency=frequency)
    n_cross = len({k.split(".")[3] for k in spec.param_shapes() if ".crossattention." in k})
    args = dict(encoder_tokens=7, num_queries=3, hidden_size=8, intermediate_size=12, encoder_hidden_size=6)
    every = cost.qformer_flops(num_layers=layers, cross_attention_frequency=1, **args)
    got = cost.qformer_flops(num_layers=layers, cross_attention_frequency=frequency, **args)
    block = cost.attention_block_flops(3, 7, 8, 6, 1, 8)
    assert every - got == (layers - n_cross) * block


def test_internvl_to_state_dict_keys_belong_to_each_target_class():
    """[interop.internvl_prefix_lost] Keys outside the class's state_dict load with strict=False as
    'unexpected' and set no weight: every key returned for a target must be one of its own."""
    transformers = pytest.importorskip("transformers")
    from fusion_spec import interop
    from transformers.models.internvl import modeling_internvl as m
    cfg = transformers.InternVLConfig(
        vision_config=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=[8, 8], patch_size=[2, 2]),
        text_config=dict(hidden_size=12, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=32))
    spec = specs.TokenMerge.internvl(8, 12)
    params = spec.init(seed=0)
    for target, module in (("InternVLMultiModalProjector", m.InternVLMultiModalProjector(cfg)),
                           ("InternVLModel", m.InternVLModel(cfg)),
                           ("InternVLForConditionalGeneration", m.InternVLForConditionalGeneration(cfg))):
        keys = set(interop.to_state_dict(spec, params, target=target))
        assert keys and keys <= set(module.state_dict()), (target, sorted(keys - set(module.state_dict()))[:3])
