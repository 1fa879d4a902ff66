"""The query poolers' own properties (no transformers needed): InstructBLIP's instruction path, Kosmos's
latents as keys, Aria's query choice, Granite's windows and area resize; the errors a wrong input gets."""

import numpy as np
import pytest

from fusion_spec import FusionSpecError, ops
from fusion_spec.specs import AriaProjector, InstructQFormer, LatentQueryPooler, QFormer, WindowQFormer

RNG = np.random.default_rng(0)
IQ = InstructQFormer(vision_dim=6, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=12, num_queries=3,
                     output_dim=5, num_visual_tokens=4, vocab_size=20, max_position_embeddings=10)


def test_instruct_qformer_without_text_is_blip2_with_renamed_keys():
    """No instruction: the queries alone run BLIP-2's Q-Former (the text FFN and tables unread)."""
    params = IQ.init(0)
    blip2 = QFormer(**{k: v for k, v in IQ.config().items() if k not in ("vocab_size", "max_position_embeddings")})
    renamed = {k.replace("qformer.embeddings.layernorm", "qformer.layernorm"): v for k, v in params.items()
               if k in blip2.param_shapes() or k.startswith("qformer.embeddings.layernorm")}
    x = RNG.standard_normal((2, 4, 6))
    np.testing.assert_array_equal(IQ.apply(params, x), blip2.apply(renamed, x))


def test_instruction_position_and_mask():
    params, x = IQ.init(1), RNG.standard_normal((1, 4, 6))
    ids = np.array([[3, 7, 2]])
    base = IQ.apply(params, x, instruction_ids=ids)
    assert np.abs(base - IQ.apply(params, x, instruction_ids=ids[:, ::-1])).max() > 1e-6  # positions matter
    padded = IQ.apply(params, x, instruction_ids=np.array([[3, 7, 2, 0, 0]]),
                      instruction_mask=np.array([[True, True, True, False, False]]))
    np.testing.assert_allclose(padded, base, rtol=1e-12, atol=1e-12)
    video = IQ.apply(params, np.stack([x[0], 2 * x[0]])[None], instruction_ids=ids)
    np.testing.assert_allclose(video[:, :3], base, rtol=1e-12, atol=1e-12)  # frame 0 first
    np.testing.assert_allclose(video[:, 3:], IQ.apply(params, 2 * x, instruction_ids=ids), rtol=1e-12, atol=1e-12)


def test_latent_queries_are_keys_too():
    spec = LatentQueryPooler(4, 6, 2, 3)
    params, x = spec.init(0), RNG.standard_normal((2, 5, 4))
    h = x @ params["dense.weight"].T + params["dense.bias"]
    lat = np.broadcast_to(params["latent_query"], (2, 3, 6))
    kv = np.concatenate([h, lat], axis=1)

    def proj(t, name):
        return t @ params[f"x_attn.{name}.weight"].T + params[f"x_attn.{name}.bias"]
    q, k, v = (proj(t, n).reshape(2, -1, 2, 3).transpose(0, 2, 1, 3) for t, n in
               ((lat, "q_proj"), (kv, "k_proj"), (kv, "v_proj")))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(3)
    p = np.exp(s - s.max(-1, keepdims=True))
    a = (p / p.sum(-1, keepdims=True) @ v).transpose(0, 2, 1, 3).reshape(2, 3, 6)
    np.testing.assert_allclose(spec.apply(params, x), proj(a, "out_proj"), rtol=1e-12, atol=1e-12)


def test_aria_takes_the_first_queries():
    spec = AriaProjector(4, 2, 6, 6, ((4, 2), (9, 3)))
    params = spec.init(0)
    x = RNG.standard_normal((1, 4, 4))
    assert spec.apply(params, x).shape == (1, 2, 6)
    changed = dict(params, query=params["query"].copy())
    changed["query"][2] += 1.0  # the third query is only read for 9 patches
    np.testing.assert_array_equal(spec.apply(changed, x), spec.apply(params, x))
    mask = np.array([[True, True, False, False]])
    np.testing.assert_allclose(spec.apply(params, x, patch_mask=mask),
                               spec.apply(params, np.concatenate([x[:, :2], 9 * x[:, 2:]], axis=1), patch_mask=mask),
                               rtol=1e-12, atol=1e-12)  # masked patches are not read


def test_window_qformer_sees_only_its_window():
    spec = WindowQFormer.from_rate("2/4", vision_dim=8, llm_dim=3, image_side=8, num_heads=2, intermediate_size=8)
    params = spec.init(0)
    x = RNG.standard_normal((1, 64, 8))
    out = spec.apply(params, x)
    grid = x.reshape(1, 8, 8, 8).copy()
    grid[0, 4:, 4:] += RNG.standard_normal((4, 4, 8))  # the bottom-right window only
    changed = spec.apply(params, grid.reshape(1, 64, 8)).reshape(4, 4, 3)
    diff = np.abs(changed - out.reshape(4, 4, 3)).max(axis=-1)
    assert (diff[2:, 2:] > 1e-6).all() and (diff[:2] < 1e-14).all() and (diff[:, :2] < 1e-14).all()


def test_errors():
    with pytest.raises(FusionSpecError, match=r"q_former.*'instruction_ids'.*\[0, 20\)"):
        IQ.apply(IQ.init(), RNG.standard_normal((1, 4, 6)), instruction_ids=np.array([[20]]))
    with pytest.raises(FusionSpecError, match=r"InstructQFormer.*'instruction_ids'.*max_position_embeddings=10"):
        IQ.apply(IQ.init(), RNG.standard_normal((1, 4, 6)), instruction_ids=np.zeros((1, 11), np.int64))
    with pytest.raises(FusionSpecError, match=r"q_former.*'instruction_ids'.*BLIP-2"):
        ops.q_former(RNG.standard_normal((1, 4, 6)), IQ.init(), num_layers=2, num_heads=2,
                     instruction_ids=np.zeros((1, 2), np.int64))
    with pytest.raises(FusionSpecError, match=r"WindowQFormer.*'window_side'"):
        WindowQFormer(image_side=10, window_side=4)
    with pytest.raises(FusionSpecError, match=r"WindowQFormer.*'query_side'.*window_side / 2"):
        WindowQFormer(image_side=8, query_side=3, window_side=4, spatial_offset=1)
    with pytest.raises(FusionSpecError, match=r"AriaProjector.*'patch_to_query'"):
        AriaProjector(patch_to_query=((4, 2), (4, 3)))
    with pytest.raises(FusionSpecError, match=r"LatentQueryPooler.*'x'.*\[B, N, 4\]"):
        LatentQueryPooler(4, 6, 2, 3).apply(LatentQueryPooler(4, 6, 2, 3).init(), np.zeros((1, 5, 5)))
